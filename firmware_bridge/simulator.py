"""A wearable without the wearable: replays an edgekd dataset's recordings over a serial link, timed and
framed as the firmware would send them, so the live path (`edgekd stream`) can be tested and benchmarked.

Timing (device time, microseconds, the same clock the frames carry):

* The first selected recording's first sample is at device time `start_us` (0 by default). Sample i of a
  stream with rate r in a recording starting at S is at S + round(i * 1e6 / r); all streams of a recording
  start together at S.
* Recordings follow one another in the given order with GAP_US (0.5 s) of device time between the end of
  one and the start of the next, with no samples in it: the device clock keeps running, the wearer rests.
  With `hold_s`, each recording lasts exactly hold_s seconds (cut, or repeated from its start) and the next
  follows without a gap: one continuous wearing whose gestures change every hold_s seconds, as
  `edgekd stream --calibrate` prompts them.
  With `loop=True` the whole selection repeats forever (another gap before each repeat); seq numbers and
  device time keep counting up.
* Each stream is cut into frames of n = max(1, round(frame_ms / 1000 * rate)) samples (capped at what one
  frame may carry; the last frame of a recording may be shorter). A frame carries the device time of its first
  sample (uint32, wraps) and a per-stream seq number (uint16, wraps). It is sent when its last sample has been
  acquired: at the time of its last sample + 1 / rate. Frames of all streams go out in the order of those send
  times.
* The send time in seconds since the replay started (at speed 1) is (device time - start_us) / 1e6, so
  `run` paces a frame to leave `send time / speed` seconds after it started.

Values: a stream's int16 scale is chosen once per run, from all selected recordings (as firmware has one
fixed gain), so `sent_values(i)` -- what a decoder reconstructs from recording i -- is the same on every
pass. How values become bytes is the wire's (firmware_bridge/codecs.py): `wire="text"` (single-stream
datasets) sends one "v0,v1,...\\n" line per sample instead, in chunks of the same n samples, timed as frames.

Where the bytes go is a link (firmware_bridge/link.py), what goes wrong on the way the faults
(firmware_bridge/faults.py).

Run as a program: `python -m firmware_bridge.simulator DATASET --pty` is `edgekd simulate` (see --help).
"""

from __future__ import annotations

import itertools
import math
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field, fields
from pathlib import Path

import click
import numpy as np

from edgekd.errors import UserError
from firmware_bridge import protocol
from firmware_bridge.codecs import DEFAULT_WIRE, codec, wire_option
from firmware_bridge.faults import Faults, Injector, Outages
from firmware_bridge.link import DEFAULT_BAUD
from firmware_bridge.protocol import US

GAP_US = 500_000  # device time between two recordings; longer than a short dropout, so a reader sees a new segment

# --------------------------------------------------------------------------- what a run did


@dataclass
class SimulatorStats:
    frames_sent: int = 0  # writes that reached the link (binary frames, or text chunks), corrupted ones included
    frames_dropped: int = 0  # not sent: the `drop` fault
    frames_lost: int = 0  # not sent: the link was down (`disconnect` outage, no client, write failed)
    frames_corrupted: int = 0
    garbage_bursts: int = 0
    bytes_sent: int = 0
    disconnects: int = 0
    recordings: int = 0  # recordings whose replay began (counting every pass when looping)
    samples_sent: dict[str, int] = field(default_factory=dict)  # per stream, in frames that reached the link

    def summary(self) -> str:
        counts = ", ".join(f"{f.name}={getattr(self, f.name)}" for f in fields(self) if f.name != "samples_sent")
        return f"{counts}, samples_sent={self.samples_sent}"


# --------------------------------------------------------------------------- the replay plan


@dataclass(frozen=True)
class Packet:
    """One write's worth: a binary frame, or a chunk of text lines."""

    time_s: float  # send time, seconds since the replay started, at speed 1
    recording: int  # index into dataset.recordings
    turn: int  # position in the replay (pass * selected + position): changes when a new recording begins
    stream: str
    n_samples: int
    data: bytes


@dataclass(frozen=True)
class _Slot:
    """Where one selected recording sits in a pass of the replay."""

    position: int
    recording: int
    start_us: int  # device time of its first sample, from the start of the pass
    lengths: dict[str, int]  # samples per stream
    frames_before: dict[str, int]  # frames per stream sent before this recording in the pass (for seq numbers)


def sample_offset_us(index: int, rate_hz: float) -> int:
    """Device time of sample `index` after a recording's first sample."""
    return int(round(index * US / rate_hz))


class Simulator:
    """Replays `dataset` (an edgekd Dataset) as a wearable: `frames()`/`packets()` give what it would send
    and when (pure, no I/O), `run(write)` sends it paced and with faults, `schedule()` and `sent_values()`
    tell a test what was sent for each recording. `recordings` picks dataset.recordings indices, in
    replay order (default: all, in dataset order). Loads every selected recording once on construction
    (lengths place them in time, values fix the scales), and again while replaying.
    """

    def __init__(
        self,
        dataset,
        *,
        speed: float = 1.0,
        wire: str = DEFAULT_WIRE,
        faults: Faults | None = None,
        frame_ms: float = 10.0,
        recordings: list[int] | None = None,
        loop: bool = False,
        seed: int = 0,
        start_us: int = 0,
        hold_s: float | None = None,
    ):
        self.dataset = dataset
        self.streams = tuple(dataset.streams)
        self.speed = _check_speed(speed)
        self.wire = wire
        self.faults = faults if faults is not None else Faults()
        self.loop = bool(loop)
        self.seed = seed
        self.start_us = int(start_us)
        if hold_s is not None and not (math.isfinite(hold_s) and hold_s > 0):
            raise UserError(f"--hold {hold_s}: give the seconds each recording lasts, e.g. --hold 7")
        self.hold_s = hold_s
        self.gap_us = 0 if hold_s else GAP_US
        if not (math.isfinite(frame_ms) and frame_ms > 0):
            raise UserError(f"--frame-ms {frame_ms}: a frame lasts a positive number of milliseconds, e.g. 10")
        self.encoder = codec(wire).encoder(self.streams, str(dataset.root))
        self.frame_samples = {s.name: _frame_samples(frame_ms, s) for s in self.streams}
        self.selected = _check_selection(dataset, recordings)
        # One pass over the data up front: lengths place the recordings in time, values fix the int16 scales.
        self._slots, self.pass_us, self.frames_per_pass = self._plan()
        self.scales = self.encoder.scales

    # ----------------------------------------------------------------- planning

    def _plan(self):
        slots, start, frames = [], 0, {s.name: 0 for s in self.streams}
        for position, index in enumerate(self.selected):
            signals = self._signals(index)
            lengths = {s.name: len(signals[s.name]) for s in self.streams}
            slots.append(_Slot(position, index, start, lengths, dict(frames)))
            for s in self.streams:
                frames[s.name] += -(-lengths[s.name] // self.frame_samples[s.name])
            self.encoder.observe(signals)
            start += max(sample_offset_us(lengths[s.name], s.rate_hz) for s in self.streams) + self.gap_us
        return slots, start, frames

    def schedule(self, passes: int = 1) -> list[dict]:
        """Per recording replayed and stream: where its samples sit in device time and in the seq numbering.

        Keys: pass, recording (index into dataset.recordings), stream, stream_id, first_sample_us (unwrapped
        device time of its first sample; frames carry it modulo 2**32), n_samples, first_seq (of its first
        frame; frames carry it modulo 2**16), n_frames, start_s (replay time of its first sample, seconds).
        """
        rows = []
        for p in range(passes):
            for slot in self._slots:
                first_us = self.start_us + p * self.pass_us + slot.start_us
                for sid, s in enumerate(self.streams):
                    rows.append(
                        {
                            "pass": p,
                            "recording": slot.recording,
                            "stream": s.name,
                            "stream_id": sid,
                            "first_sample_us": first_us,
                            "n_samples": slot.lengths[s.name],
                            "first_seq": p * self.frames_per_pass[s.name] + slot.frames_before[s.name],
                            "n_frames": -(-slot.lengths[s.name] // self.frame_samples[s.name]),
                            "start_s": (first_us - self.start_us) / US,
                        }
                    )
        return rows

    @property
    def duration_s(self) -> float:
        """Replay time of one pass (to the end of the gap after the last recording), at speed 1."""
        return self.pass_us / US

    # ----------------------------------------------------------------- values

    def _signals(self, index: int) -> dict[str, np.ndarray]:
        """Recording `index`'s samples per stream; with hold_s exactly hold_s seconds of them (repeated if shorter)."""
        signals = self.dataset.load_signals(self.dataset.recordings[index])
        if not self.hold_s:
            return signals
        held = {}
        for s in self.streams:
            n = max(1, int(round(self.hold_s * s.rate_hz)))
            x = signals[s.name]
            held[s.name] = np.concatenate([x] * -(-n // len(x)))[:n] if len(x) else x
        return held

    def sent_values(self, recording_index: int) -> dict[str, np.ndarray]:
        """Exactly what a decoder reconstructs from recording `recording_index` (an index into
        dataset.recordings that this simulator replays): {stream name: float32 (samples, channels)}."""
        if recording_index not in self.selected:
            raise ValueError(f"recording {recording_index} is not among those replayed ({self.selected})")
        return self.encoder.sent_values(self.encoder.device_values(self._signals(recording_index)))

    # ----------------------------------------------------------------- frames

    def frames(self) -> Iterator[tuple[float, bytes]]:
        """(send time in seconds since the replay started at speed 1, bytes), in time order, no faults.
        Endless with loop=True."""
        for packet in self.packets():
            yield packet.time_s, packet.data

    def packets(self) -> Iterator[Packet]:
        """Like frames(), with what each write holds (recording, stream, sample count)."""
        passes = itertools.count() if self.loop else range(1)
        for p in passes:
            for slot in self._slots:
                yield from self._recording_packets(slot, p)

    def _recording_packets(self, slot: _Slot, p: int) -> Iterator[Packet]:
        values = self.encoder.device_values(self._signals(slot.recording))
        first_us = self.start_us + p * self.pass_us + slot.start_us
        turn = p * len(self._slots) + slot.position
        # Cut every stream into frames, then send them in order of their last sample (stream id breaks ties).
        cuts = []
        for sid, s in enumerate(self.streams):
            n, length = self.frame_samples[s.name], slot.lengths[s.name]
            for k, begin in enumerate(range(0, length, n)):
                end = min(begin + n, length)
                cuts.append((sample_offset_us(end, s.rate_hz), sid, k, begin, end))
        cuts.sort()
        for send_us, sid, k, begin, end in cuts:
            s = self.streams[sid]
            seq = p * self.frames_per_pass[s.name] + slot.frames_before[s.name] + k
            timestamp_us = first_us + sample_offset_us(begin, s.rate_hz)
            data = self.encoder.encode(sid, seq, timestamp_us, values[s.name][begin:end])
            send_s = (first_us - self.start_us + send_us) / US
            yield Packet(send_s, slot.recording, turn, s.name, end - begin, data)

    # ----------------------------------------------------------------- running

    def run(
        self,
        write: Callable[[bytes], object],
        *,
        sleep=time.sleep,
        clock=time.monotonic,
        drop_link: Callable[[], None] | None = None,
    ) -> SimulatorStats:
        """Send every packet through `write`, paced by speed, with faults applied; returns what happened.

        `write` returning False means the bytes did not leave (the link is down): counted in frames_lost.
        `drop_link` is called when the `disconnect` fault fires (a Link's `drop`); for the next OUTAGE_S
        of replay time nothing is written. Pacing is against an absolute schedule: a write that blocks
        makes later packets late, and they then go out back to back (a device's UART queue does the same).
        With loop=True this runs until interrupted.
        """
        stats = SimulatorStats(samples_sent={s.name: 0 for s in self.streams})
        injector = Injector(self.faults, self.seed, self.encoder.junk)
        outages = Outages(self.faults.disconnect)
        paced = 0 < self.speed < math.inf
        turn = None
        start = clock()
        for packet in self.packets():
            if paced:
                delay = start + packet.time_s / self.speed - clock()
                if delay > 0:
                    sleep(delay)
            if packet.turn != turn:
                turn, stats.recordings = packet.turn, stats.recordings + 1
            fired = outages.fired(packet.time_s)
            if fired:
                stats.disconnects += fired
                if drop_link is not None:
                    drop_link()
            if outages.down(packet.time_s):
                stats.frames_lost += 1
                continue
            data = injector.apply(packet.data, stats)
            if data is None:
                continue
            if write(data) is False:
                stats.frames_lost += 1
                continue
            stats.frames_sent += 1
            stats.bytes_sent += len(data)
            stats.samples_sent[packet.stream] += packet.n_samples
        return stats


def _frame_samples(frame_ms: float, stream) -> int:
    """Samples per frame: about frame_ms of the stream, at least one, at most what one frame may carry."""
    n = max(1, int(round(frame_ms / 1000 * stream.rate_hz)))
    return min(n, max(1, protocol.MAX_VALUES_PER_FRAME // len(stream.channels)))


def _check_speed(speed: float) -> float:
    speed = float(speed)
    if math.isnan(speed) or speed < 0:
        raise UserError(
            f"--speed {speed}: give a replay speed >= 0 (1 = real time, 10 = ten times faster, 0 = as fast as possible)"
        )
    return speed


def _check_selection(dataset, recordings) -> list[int]:
    count = len(dataset.recordings)
    if recordings is None:
        return list(range(count))
    selected = [int(i) for i in recordings]
    if not selected:
        raise UserError(
            f"{dataset.index_path}: no recordings selected; give indices 0-{count - 1} or leave the selection out"
        )
    for i in selected:
        if not 0 <= i < count:
            raise UserError(
                f"{dataset.index_path}: recording index {i} is out of range; this dataset has "
                f"{count} recordings (indices 0-{count - 1})"
            )
    return selected


# ------------------------------------------------------------------------- the command: edgekd simulate
@click.command()
@click.argument("dataset", type=click.Path(path_type=Path))
@click.option("--port", help="Serial device or pyserial URL to write to, e.g. /dev/ttyUSB0.")
@click.option("--pty", is_flag=True, help="Create a pseudo-terminal and print its path for `edgekd stream --port`.")
@click.option("--listen", help="Serve one TCP client at HOST:PORT (the reader uses --port socket://HOST:PORT).")
@click.option(
    "--baud", default=DEFAULT_BAUD, show_default=True, help="Baud rate of --port (ignored by --pty and --listen)."
)
@click.option(
    "--speed",
    default=1.0,
    show_default=True,
    type=float,
    help="1 = real time, 10 = ten times faster, 0 = as fast as possible.",
)
@wire_option
@click.option("--faults", default="", help="Inject faults, e.g. drop=0.01,corrupt=0.02,garbage=0.01,disconnect=5.")
@click.option(
    "--frame-ms", default=10.0, show_default=True, type=float, help="Samples per frame, in milliseconds of each stream."
)
@click.option(
    "--recordings",
    help="Recording indices (rows of recordings.csv from 0) in replay order. [default: all]",
)
@click.option("--loop", is_flag=True, help="Start over after the last recording, until interrupted.")
@click.option(
    "--hold",
    type=float,
    metavar="SECONDS",
    help="Play each recording for exactly SECONDS (cut, or repeated from its start) with no pause between: "
    "a wearer changing gesture on cue, as `edgekd stream --calibrate` prompts (use --calibrate SECONDS-2, "
    "and --recordings one per class in the model's class order).",
)
@click.option("--seed", default=0, show_default=True, type=int, help="Seed of the fault injection.")
def simulate(dataset, port, pty, listen, baud, speed, wire, faults, frame_ms, recordings, loop, hold, seed):
    """Replay DATASET's recordings as a wearable would send them: binary frames (edgekd's firmware protocol)
    or text lines, at real-time pace or --speed, with optional fault injection. No TensorFlow."""
    from edgekd.data.dataset import load_dataset
    from firmware_bridge.faults import parse_faults
    from firmware_bridge.link import open_link

    try:
        chosen = [int(i) for i in recordings.split(",") if i.strip()] if recordings else None
    except ValueError:
        raise UserError(f"--recordings {recordings}: give comma-separated indices, e.g. 0,3,5") from None
    sim = Simulator(
        load_dataset(dataset),
        speed=speed,
        wire=wire,
        faults=parse_faults(faults),
        frame_ms=frame_ms,
        recordings=chosen,
        loop=loop,
        seed=seed,
        hold_s=hold,
    )
    with open_link(port, pty, listen, baud) as link:
        click.echo(f"writing to {link.describe()}", err=True)
        if not link.wait_ready(timeout=None):
            return
        try:
            stats = sim.run(link.write, drop_link=link.drop)
        except KeyboardInterrupt:
            return
    click.echo(stats.summary(), err=True)


if __name__ == "__main__":  # python -m firmware_bridge.simulator: the same command as `edgekd simulate`
    simulate(prog_name="python -m firmware_bridge.simulator")
