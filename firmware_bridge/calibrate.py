"""Guided calibration in a live session (`edgekd stream --calibrate SECONDS`): the terminal asks for each of the
model's classes in turn, the windows made while the wearer holds it are kept, and the model is then personalized on
them (edgekd/runtime/personalize.py) before recognition goes on with the personal model.

The prompts follow device time, the clock the samples carry, not the host's: the same session replayed by the
simulator faster than real time gets the same windows. Each class takes READY_S (a countdown: change gesture, nothing
kept) and then SECONDS (kept: every window that lies wholly inside it).
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

READY_S = 2.0  # device seconds to change gesture after a prompt; no window of them is kept
BAR_WIDTH = 20


class GuidedCalibration:
    """Feed it each window (end time in device seconds, normalised samples) until `take` says False."""

    def __init__(self, classes: list[str], seconds: float, window_s: float, say: Callable[[str, str | None], None]):
        self.classes, self.seconds, self.window_s, self.say = list(classes), float(seconds), float(window_s), say
        self.period_s = READY_S + self.seconds
        self.start_s: float | None = None
        self.windows: list[np.ndarray] = []
        self.labels: list[int] = []
        self._shown = (-1, "")

    @property
    def duration_s(self) -> float:
        return self.period_s * len(self.classes)

    def take(self, end_s: float, window: np.ndarray) -> bool:
        """Keep `window` if it lies inside a class's hold; False once every class has had its turn (the window is
        then not taken: it is the first one to recognise)."""
        if self.start_s is None:
            self.start_s = end_s - self.window_s
        t_end = end_s - self.start_s
        t_start = t_end - self.window_s
        turn = max(0, int(np.ceil(t_end / self.period_s - 1e-9)) - 1)  # a window ending on a turn's end is its own
        if turn >= len(self.classes):
            return False
        hold_start = turn * self.period_s + READY_S
        if t_start >= hold_start - 1e-9:
            self.windows.append(window)
            self.labels.append(turn)
        self._prompt(turn, t_end - turn * self.period_s)
        return True

    def _prompt(self, turn: int, into_s: float) -> None:
        """say(live line, plain line): the live line (a countdown, then a bar) for every window; the plain line
        ("get ready", "hold it for 5 s") only at the start of each phase, for logs that are not terminals."""
        label = f"[{turn + 1}/{len(self.classes)}] {self.classes[turn]}"
        if into_s < READY_S:
            phase = "ready"
            live, plain = f"{label}: get ready, {READY_S - into_s:.0f}", f"{label}: get ready"
        else:
            phase = "hold"
            held = min(into_s - READY_S, self.seconds)
            filled = int(round(BAR_WIDTH * held / self.seconds))
            live = f"{label}: hold it  {'#' * filled}{'.' * (BAR_WIDTH - filled)} {held:.1f}/{self.seconds:g} s"
            plain = f"{label}: hold it for {self.seconds:g} s"
        first_of_phase = self._shown != (turn, phase)
        self._shown = (turn, phase)
        self.say(live, plain if first_of_phase else None)

    def calibration_set(self) -> tuple[np.ndarray, np.ndarray]:
        """(windows [N, T, C], labels [N]) kept so far."""
        if not self.windows:
            return np.empty((0,)), np.empty((0,), np.int64)
        return np.stack(self.windows).astype(np.float32), np.asarray(self.labels, np.int64)


def write_calibration_dataset(
    folder, windows: np.ndarray, labels: np.ndarray, preprocessor, classes: list[str]
) -> None:
    """The kept windows as a dataset folder (dataset.toml, recordings.csv, one .npz per class) that `edgekd personalize`
    and `distill` read: each class's samples are its windows joined back (the first whole, then each next window's last
    hop), in the units the device sent. Only for a model that reads one stream at that stream's own rate, where windows
    hold the samples as they came."""
    import io
    import json
    from pathlib import Path

    from edgekd.io import write_bytes_atomic

    (stream,) = preprocessor.streams
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=False)
    hop = preprocessor.spec.hop_len
    rows = ["path,subject,label"]
    for k, label in enumerate(classes):
        own = windows[labels == k] * preprocessor.std + preprocessor.mean
        if not len(own):
            continue
        samples = np.concatenate([own[0], *(w[-hop:] for w in own[1:])]).astype(np.float32)
        buffer = io.BytesIO()
        np.savez(buffer, **{stream.name: samples})
        write_bytes_atomic(folder / f"{k}.npz", buffer.getvalue())
        rows.append(f"{k}.npz,calibration,{label}")
    toml = (
        f'name = "calibration"\nclasses = {json.dumps(list(classes))}\n\n[streams.{stream.name}]\n'
        f"rate_hz = {stream.rate_hz!r}\nchannels = {json.dumps(list(stream.channels))}\n"
    )
    write_bytes_atomic(folder / "dataset.toml", toml.encode())
    write_bytes_atomic(folder / "recordings.csv", ("\n".join(rows) + "\n").encode())
