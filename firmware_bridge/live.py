"""Live recognition: bytes from a serial link -> samples per stream -> windows -> model -> decisions.

Windows are cut by edgekd's own windowing function (`edgekd.data.windows.window_from_streams`) with the
model's own preprocessing, so a live window equals the offline window of the same samples. No TensorFlow.

Time comes from the device: each frame carries the device time of its first sample, and a sample's place
in its stream is (time - segment start) * rate. Lost frames leave a hole; a short hole (up to
`max_fill_s`) is filled by holding the last value, so the streams stay aligned; a longer one (the device
paused, or a new recording began) starts a new segment whose windows start afresh. A clock that jumps back by
more than RESTART_S is a device that restarted (its clock starts again at 0): a new segment starts there too, rather
than every sample being taken for one already received until the clock catches up.
"""

from __future__ import annotations

import dataclasses
import json
import os
import time
from collections import Counter, deque
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from edgekd.data.windows import Preprocessor, stream_window, window_from_streams
from edgekd.errors import UserError
from firmware_bridge import link
from firmware_bridge.codecs import DEFAULT_WIRE, codec
from firmware_bridge.protocol import TIME_WRAP, US

# A repeated or reordered frame lands a few frames back; a restarted device's clock lands back at its start.
RESTART_S = 1.0


@dataclass
class TimelineStats:
    samples: int = 0
    filled_samples: int = 0  # held-last-value samples put into short holes
    dropped_samples: int = 0  # samples from before the current segment, or overlapping ones already received
    segments: int = 0
    restarts: int = 0  # the device clock jumped back by more than RESTART_S: a new segment began there


class Timeline:
    """Per-stream sample buffers of the current segment, placed by device time."""

    def __init__(self, preprocessor: Preprocessor, max_fill_s: float = 0.1):
        self.pre = preprocessor
        self.streams = preprocessor.streams
        self.max_fill_s = max_fill_s
        self.stats = TimelineStats()
        self.segment_start_us: int | None = None  # unwrapped device time of sample 0 of the segment
        self._last_raw_us: int | None = None
        self._unwrap = 0
        self._reset_buffers()

    def _reset_buffers(self) -> None:
        self.buffers = {s.name: np.empty((0, len(s.channels)), np.float32) for s in self.streams}
        self.offsets = {s.name: 0 for s in self.streams}  # sample index held by buffers[name][0]
        self.next_window = 0

    def _unwrapped(self, timestamp_us: int) -> int:
        if self._last_raw_us is not None and timestamp_us < self._last_raw_us - TIME_WRAP // 2:
            self._unwrap += TIME_WRAP
        self._last_raw_us = timestamp_us
        return timestamp_us + self._unwrap

    def end_index(self, name: str) -> int:
        return self.offsets[name] + len(self.buffers[name])

    def add(self, stream_index: int, timestamp_us: int, values: np.ndarray) -> None:
        stream = self.streams[stream_index]
        t = self._unwrapped(timestamp_us)
        if self.segment_start_us is None:
            self._start_segment(t)
        index = int(round((t - self.segment_start_us) * stream.rate_hz / US))
        hole = index - self.end_index(stream.name)
        if -hole / stream.rate_hz > RESTART_S:
            self._unwrap, self._last_raw_us = 0, timestamp_us  # the restarted clock counts from its own 0
            t = timestamp_us
            self.stats.restarts += 1
            self._start_segment(t)
            index, hole = 0, 0
        elif hole * 1.0 / stream.rate_hz > self.max_fill_s:
            self._start_segment(t)
            index, hole = 0, 0
        if hole < 0:  # samples from before the segment began, or already placed (a repeated frame)
            skip = min(len(values), -hole)
            self.stats.dropped_samples += skip
            values, hole = values[skip:], 0
        if len(values) == 0:
            return
        buffer = self.buffers[stream.name]
        if hole > 0:
            last = buffer[-1] if len(buffer) else values[0]
            buffer = np.concatenate([buffer, np.repeat(last[np.newaxis], hole, axis=0)])
            self.stats.filled_samples += hole
        self.buffers[stream.name] = np.concatenate([buffer, values.astype(np.float32, copy=False)])
        self.stats.samples += len(values)

    def _start_segment(self, t_us: int) -> None:
        self.segment_start_us = t_us
        self.stats.segments += 1
        self._reset_buffers()

    def ready_windows(self):
        """Yield (segment, window index, raw window) for every window whose samples have all arrived."""
        while all(
            sum(stream_window(s, self.pre.spec, self.next_window)) <= self.end_index(s.name) for s in self.streams
        ):
            k = self.next_window
            window = window_from_streams(self.buffers, self.streams, self.pre.spec, k, self.offsets)
            self.next_window += 1
            self._trim()
            yield self.stats.segments, k, window

    def window_end_s(self, k: int) -> float:
        """Device time (s) of the end of window k."""
        return (self.segment_start_us or 0) / US + k * self.pre.spec.hop_s + self.pre.spec.window_s

    def _trim(self) -> None:
        for s in self.streams:  # keep only what the next window needs: bounded memory however long the session
            first_needed = stream_window(s, self.pre.spec, self.next_window)[0]
            drop = first_needed - self.offsets[s.name]
            if drop > 0:
                self.buffers[s.name] = self.buffers[s.name][drop:]
                self.offsets[s.name] += drop


class Smoother:
    """Majority vote over the last K windows; below the confidence threshold it reports no sign."""

    def __init__(self, k: int = 1, threshold: float = 0.0):
        if k < 1:
            raise UserError("--smooth counts windows and must be at least 1")
        if not 0.0 <= threshold <= 1.0:
            raise UserError("--threshold is a probability in [0, 1], e.g. 0.6")
        self.threshold = threshold
        self.recent: deque[np.ndarray] = deque(maxlen=k)

    def reset(self) -> None:
        self.recent.clear()

    def update(self, probs: np.ndarray) -> tuple[int | None, float]:
        self.recent.append(probs)
        votes = Counter(int(np.argmax(p)) for p in self.recent)
        best = max(votes, key=lambda c: (votes[c], np.mean([p[c] for p in self.recent])))
        confidence = float(np.mean([p[best] for p in self.recent]))
        return (best if confidence >= self.threshold else None), confidence


class Recorder:
    """Writes the raw received samples as they arrive: one CSV per stream in a folder, a header of channel
    names, whole lines only. The folder is a dataset recording (`path` in recordings.csv may name it), and
    after an abrupt stop every flushed line is readable.

    The folder is checked at once but its files are created with the first samples, so a port that fails to open
    leaves nothing behind. A file is never written through a symlink, and one that holds samples is never replaced."""

    def __init__(self, folder: Path, preprocessor: Preprocessor):
        self.folder = Path(folder)
        if self.folder.is_symlink() or (self.folder.exists() and not self.folder.is_dir()):
            raise UserError(
                f"{self.folder}: is a symlink or a file; --record writes into a folder of its own: choose a new one"
            )
        self.channels = {s.name: s.channels for s in preprocessor.streams}
        for name in self.channels:
            self._check_free(self.folder / f"{name}.csv")
        self.files = {}

    @staticmethod
    def _check_free(path: Path) -> None:
        if path.is_symlink():
            raise UserError(f"{path}: is a symlink; --record never writes through one: choose a new folder")
        if path.exists() and path.read_bytes().count(b"\n") > 1:
            raise UserError(f"{path}: exists; --record never overwrites a recording: choose a new folder")

    def _file(self, name: str):
        if name not in self.files:
            self.folder.mkdir(parents=True, exist_ok=True)
            path = self.folder / f"{name}.csv"
            self._check_free(path)  # again: the folder may have changed since the session began
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | getattr(os, "O_NOFOLLOW", 0), 0o666)
            f = os.fdopen(fd, "w", encoding="utf-8")
            f.write(",".join(self.channels[name]) + "\n")
            self.files[name] = f
        return self.files[name]

    def write(self, name: str, values: np.ndarray) -> None:
        integral = np.all(values == np.round(values))
        rows = values.astype(np.int64) if integral else values
        text = "\n".join(",".join(map(repr, row.tolist())) for row in rows) + "\n"
        self._file(name).write(text)

    def flush(self) -> None:
        for f in self.files.values():
            f.flush()

    def close(self) -> None:
        for f in self.files.values():
            f.close()


@dataclass
class Decision:
    segment: int
    window: int
    end_time_s: float
    end_seq: int | None
    label: str | None
    probability: float
    probs: list[float]
    latency_ms: float  # from the arrival of the window's last sample (the read that brought it) to this decision
    arrival: float = field(default=0.0, repr=False)  # perf_counter() of that read, for callers that time printing too

    def to_json(self) -> str:
        return json.dumps({k: v for k, v in self.__dict__.items() if k != "arrival"})


@dataclass
class SessionStats:
    bytes: int = 0
    windows: int = 0
    reconnects: int = 0
    decoder: dict = field(default_factory=dict)
    timeline: dict = field(default_factory=dict)


class LiveSession:
    """One model listening to one device: feed it bytes as they arrive, get decisions back."""

    def __init__(
        self,
        model,
        *,
        wire: str = DEFAULT_WIRE,
        rate_hz: float | None = None,
        smooth: int = 1,
        threshold: float = 0.0,
        record: Path | None = None,
        max_fill_s: float = 0.1,
        calibration=None,
        on_calibrated=None,
    ):
        """`wire`: a key of codecs.CODECS; `rate_hz`: the device's sample rate, for a wire that carries no time.
        `calibration` (firmware_bridge/calibrate.GuidedCalibration): its windows come first and are not decided;
        when it is over, on_calibrated(windows, labels) returns the model to go on with."""
        meta = model.metadata
        if not meta or "preprocessing" not in meta:
            raise UserError(
                f"{model.path}: carries no edgekd metadata (streams, window, normalisation); "
                f"export it with `edgekd export`"
            )
        pre = Preprocessor.from_dict(meta["preprocessing"])
        wire_codec = codec(wire)
        # The streams as the device sends them (at its own rate, if given): windows resample to the model's rate.
        pre = dataclasses.replace(pre, streams=wire_codec.device_streams(pre.streams, rate_hz))
        self.decoder = wire_codec.decoder(pre.streams, str(model.path))
        self.model, self.pre = model, pre
        self.classes = meta["classes"]
        self.timeline = Timeline(pre, max_fill_s)
        self.smoother = Smoother(smooth, threshold)
        self.recorder = Recorder(record, pre) if record else None
        self.stats = SessionStats()
        self.calibration, self.on_calibrated = calibration, on_calibrated
        self._warm_up()
        self._segment = None
        self._last_seq = None

    def _warm_up(self) -> None:
        """One window of zeros through the whole path before the first real one: the resampling filters get
        designed (about 5 ms for 1,111 -> 150 Hz) and the interpreter's first invoke happens now, not while a
        user waits for the first decision."""
        zeros = {
            s.name: np.zeros((sum(stream_window(s, self.pre.spec, 0)), len(s.channels)), np.float32)
            for s in self.pre.streams
        }
        window = window_from_streams(zeros, self.pre.streams, self.pre.spec, 0)
        self.model.predict_proba(self.pre.normalize(window[np.newaxis]))

    def feed(self, data: bytes, arrival: float) -> list[Decision]:
        """Bytes just read (at perf_counter time `arrival`) -> the decisions of every window they complete.

        Windows are decided after each frame, not after the whole read: a read that holds the end of one
        segment and the start of the next must not lose the first segment's last windows."""
        self.stats.bytes += len(data)
        decisions = []
        for samples in self.decoder.feed(data):
            self._check_samples(samples)
            self._last_seq = samples.seq
            self._place(samples.stream_id, samples.timestamp_us, samples.values)
            decisions += self._decide(arrival)
        if self.recorder:
            self.recorder.flush()
        return decisions

    def _decide(self, arrival: float) -> list[Decision]:
        decisions = []
        for segment, k, raw in self.timeline.ready_windows():
            window = self.pre.normalize(raw[np.newaxis])
            if self.calibration is not None:
                if self.calibration.take(self.timeline.window_end_s(k), window[0]):
                    continue
                self.model = self.on_calibrated(*self.calibration.calibration_set())
                self.calibration = None
                self.smoother.reset()
            if segment != self._segment:
                self._segment = segment
                self.smoother.reset()
            probs = self.model.predict_proba(window)[0]
            label, confidence = self.smoother.update(probs)
            decisions.append(
                Decision(
                    segment,
                    k,
                    round(self.timeline.window_end_s(k), 6),
                    self._last_seq,
                    None if label is None else self.classes[label],
                    confidence,
                    [float(p) for p in probs],
                    (time.perf_counter() - arrival) * 1e3,
                    arrival,
                )
            )
            self.stats.windows += 1
        return decisions

    def _place(self, stream_index: int, timestamp_us: int, values: np.ndarray) -> None:
        if self.recorder:
            self.recorder.write(self.pre.streams[stream_index].name, values)
        self.timeline.add(stream_index, timestamp_us, values)

    def _check_samples(self, samples) -> None:
        streams, sid = self.pre.streams, samples.stream_id
        if sid >= len(streams):
            names = ", ".join(s.name for s in streams)
            raise UserError(
                f"{self.model.path}: the device sends stream id {sid}, but the model takes "
                f"{len(streams)} stream(s) ({names}); use the model trained for this device"
            )
        sent, expected = samples.values.shape[1], len(streams[sid].channels)
        if sent != expected:
            raise UserError(
                f"{self.model.path}: the device sends {sent} channels on stream {sid} ({streams[sid].name}), "
                f"the model expects {expected}; use the model trained for this device"
            )

    def counters(self) -> dict:
        return {
            "bytes": self.stats.bytes,
            "windows": self.stats.windows,
            "reconnects": self.stats.reconnects,
            **{f"decoder_{k}": v for k, v in self.decoder.counters().items()},
            **{f"timeline_{k}": v for k, v in self.timeline.stats.__dict__.items()},
        }

    def close(self) -> None:
        if self.recorder:
            self.recorder.close()


def run_session(
    session: LiveSession,
    open_port,
    emit,
    *,
    max_windows: int | None = None,
    idle_exit_s: float | None = None,
    log=print,
    sleep=time.sleep,
) -> None:
    """Read until stopped (Ctrl-C), `max_windows` decisions, or `idle_exit_s` without data (time spent
    reconnecting counts). A link that drops is reopened with backoff (link.READER_BACKOFF); failing to open
    the port the first time is a UserError. `open_port(first)` is link.reader_opener's, or any function that
    returns a pyserial-like port."""
    port = open_port(first=True)
    last_data = time.monotonic()

    def idle() -> bool:
        return idle_exit_s is not None and time.monotonic() - last_data > idle_exit_s

    try:
        while True:
            try:
                data = link.read_available(port)
            except Exception as e:  # serial.SerialException, OSError: the device or the socket went away
                if not link.is_link_error(e):
                    raise
                port.close()
                session.stats.reconnects += 1
                log(f"link lost ({link.first_line(e)}); reconnecting")
                port = link.reopen(open_port, log, sleep, idle)
                if port is None:
                    return
                continue
            if data:
                arrival = time.perf_counter()
                for decision in session.feed(data, arrival):
                    emit(decision)
                    if max_windows is not None and session.stats.windows >= max_windows:
                        return
                last_data = time.monotonic()
            elif idle():
                return
    finally:
        if port is not None:
            port.close()
        session.close()
