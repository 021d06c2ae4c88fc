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
  frame may carry; the last frame of a recording may be shorter). A frame carries the device time of its first sample (uint32, wraps) and a
  per-stream seq number (uint16, wraps). It is sent when its last sample has been acquired: at the time of
  its last sample + 1 / rate. Frames of all streams go out in the order of those send times.
* The send time in seconds since the replay started (at speed 1) is (device time - start_us) / 1e6, so
  `run` paces a frame to leave `send time / speed` seconds after it started.

Values: a stream's int16 scale is chosen once per run, from all selected recordings (as firmware has one
fixed gain), so `sent_values(i)` -- what a decoder reconstructs from recording i -- is the same on every
pass. Text mode (single-stream datasets) sends one "v0,v1,...\\n" line per sample instead, in chunks of
the same n samples, timed as frames.

Links (`open_link`): a serial device or pyserial URL, a pseudo-terminal whose slave path a reader opens
like a serial port, or a one-client TCP server that a reader reaches with pyserial's socket:// URL.

Run as a program: `python -m firmware_bridge.simulator DATASET --pty` (see --help).
"""

from __future__ import annotations

import errno
import fcntl
import itertools
import math
import os
import select
import socket
import struct
import termios
import time
import tty
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field, fields

import numpy as np

from edgekd.errors import UserError
from firmware_bridge import protocol
from firmware_bridge import text as textproto

US = 1_000_000
GAP_US = 500_000  # device time between two recordings; longer than a short dropout, so a reader sees a new segment
OUTAGE_S = 1.0  # how long the `disconnect` fault keeps the link down
SEQ_WRAP = 1 << 16
TIME_WRAP = 1 << 32
MAX_GARBAGE = 64

# Junk for text mode: no digits, '.', ',', '-', 'e', 'inf' or 'nan' letters, so a junk line never parses as samples.
# No '#' either: the text decoder would take the line for a comment, not count it as bad.
_TEXT_JUNK = np.frombuffer(b"bcdghjkmopqrstuvwxyz!?*~@$%^&", dtype=np.uint8)


# --------------------------------------------------------------------------- faults


@dataclass(frozen=True)
class Faults:
    drop: float = 0.0  # probability a frame is not sent
    corrupt: float = 0.0  # probability one random byte of a frame is flipped
    garbage: float = 0.0  # probability 1-64 junk bytes are sent before a frame
    disconnect: float | None = None  # every this many seconds of replay, the link goes down for OUTAGE_S


_PROBABILITIES = ("drop", "corrupt", "garbage")
_FAULT_EXAMPLE = "e.g. drop=0.01,corrupt=0.02,garbage=0.01,disconnect=5"


def parse_faults(text: str) -> Faults:
    """ "drop=0.01,corrupt=0.02,garbage=0.01,disconnect=5" -> Faults; an empty string means no faults."""
    values: dict[str, float] = {}
    for item in filter(None, (part.strip() for part in text.split(","))):
        key, sep, raw = (s.strip() for s in item.partition("="))
        if key not in (*_PROBABILITIES, "disconnect"):
            raise UserError(
                f"--faults: unknown fault '{key}'; use drop, corrupt, garbage and disconnect, {_FAULT_EXAMPLE}"
            )
        if key in values:
            raise UserError(f"--faults: '{key}' is given twice; give each fault once, {_FAULT_EXAMPLE}")
        try:
            value = float(raw) if sep else math.nan
        except ValueError:
            value = math.nan
        if not math.isfinite(value):
            raise UserError(f"--faults: '{item}' needs a number after '=', {_FAULT_EXAMPLE}")
        if key in _PROBABILITIES and not 0.0 <= value <= 1.0:
            raise UserError(f"--faults: {key}={raw} is not a probability; give a number in [0, 1], e.g. {key}=0.01")
        if key == "disconnect" and value <= 0:
            raise UserError(
                f"--faults: disconnect={raw} must be a positive number of seconds between dropouts, e.g. disconnect=5"
            )
        values[key] = value
    return Faults(**values)


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
        text: bool = False,
        faults: Faults = Faults(),
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
        self.text = bool(text)
        self.faults = faults
        self.loop = bool(loop)
        self.seed = seed
        self.start_us = int(start_us)
        if hold_s is not None and not (math.isfinite(hold_s) and hold_s > 0):
            raise UserError(f"--hold {hold_s}: give the seconds each recording lasts, e.g. --hold 7")
        self.hold_s = hold_s
        self.gap_us = 0 if hold_s else GAP_US
        if not (math.isfinite(frame_ms) and frame_ms > 0):
            raise UserError(f"--frame-ms {frame_ms}: a frame lasts a positive number of milliseconds, e.g. 10")
        if self.text and len(self.streams) != 1:
            names = ", ".join(s.name for s in self.streams)
            raise UserError(
                f"{dataset.root}: text mode sends one stream, but this dataset has {len(self.streams)} "
                f"({names}); use binary mode (leave out --text)"
            )
        self.frame_samples = {s.name: _frame_samples(frame_ms, s) for s in self.streams}
        self.selected = _check_selection(dataset, recordings)
        # One pass over the data up front: lengths place the recordings in time, values fix the int16 scales.
        self._slots, self.pass_us, self.frames_per_pass, self.scales = self._plan()

    # ----------------------------------------------------------------- planning

    def _plan(self):
        slots, start, frames = [], 0, {s.name: 0 for s in self.streams}
        witnesses: dict[str, list[np.ndarray]] = {s.name: [] for s in self.streams}
        for position, index in enumerate(self.selected):
            signals = self._signals(index)
            lengths = {s.name: len(signals[s.name]) for s in self.streams}
            slots.append(_Slot(position, index, start, lengths, dict(frames)))
            for s in self.streams:
                frames[s.name] += -(-lengths[s.name] // self.frame_samples[s.name])
                witnesses[s.name].append(_scale_witnesses(signals[s.name]))
            start += max(sample_offset_us(lengths[s.name], s.rate_hz) for s in self.streams) + self.gap_us
        scales = (
            {}
            if self.text
            else {s.name: float(protocol.choose_scale(np.concatenate(witnesses[s.name]))) for s in self.streams}
        )
        return slots, start, frames, scales

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

    def _device_values(self, index: int) -> dict[str, np.ndarray]:
        """Recording `index` as the device holds it: int16 counts (binary) or the raw floats (text)."""
        signals = self._signals(index)
        if self.text:
            return signals
        return {s.name: protocol.quantize(signals[s.name], self.scales[s.name]) for s in self.streams}

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
        values = self._device_values(recording_index)
        if self.text:  # through the real text codec, so formatting precision is accounted for
            (s,) = self.streams
            decoder = textproto.TextDecoder(len(s.channels))
            return {s.name: decoder.feed(b"".join(textproto.encode_text_line(row) for row in values[s.name]))}
        return {s.name: _dequantize(values[s.name], self.scales[s.name]) for s in self.streams}

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
        values = self._device_values(slot.recording)
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
            chunk = values[s.name][begin:end]
            if self.text:
                data = b"".join(textproto.encode_text_line(row) for row in chunk)
            else:
                seq = (p * self.frames_per_pass[s.name] + slot.frames_before[s.name] + k) % SEQ_WRAP
                timestamp = (first_us + sample_offset_us(begin, s.rate_hz)) % TIME_WRAP
                data = protocol.encode_frame(sid, seq, timestamp, chunk, self.scales[s.name])
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
        rng = np.random.default_rng(self.seed)
        outages = _Outages(self.faults.disconnect)
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
            data = self._apply_faults(packet.data, rng, stats)
            if data is None:
                continue
            if write(data) is False:
                stats.frames_lost += 1
                continue
            stats.frames_sent += 1
            stats.bytes_sent += len(data)
            stats.samples_sent[packet.stream] += packet.n_samples
        return stats

    def _apply_faults(self, data: bytes, rng: np.random.Generator, stats: SimulatorStats) -> bytes | None:
        f = self.faults
        # Three draws for every packet whatever happens, so one seed gives the same fault pattern at any speed.
        u_drop, u_corrupt, u_garbage = rng.random(3)
        if u_drop < f.drop:
            stats.frames_dropped += 1
            return None
        if u_corrupt < f.corrupt:
            stats.frames_corrupted += 1
            data = bytearray(data)
            data[int(rng.integers(len(data)))] ^= int(rng.integers(1, 256))  # a non-zero mask: the byte does change
            data = bytes(data)
        if u_garbage < f.garbage:
            stats.garbage_bursts += 1
            data = self._junk(rng) + data
        return data

    def _junk(self, rng: np.random.Generator) -> bytes:
        n = int(rng.integers(1, MAX_GARBAGE + 1))
        if not self.text:
            return rng.integers(0, 256, n, dtype=np.uint8).tobytes()
        # A line of noise that no parser takes for samples, ended so the next real line stays whole.
        return rng.choice(_TEXT_JUNK, n).tobytes() + b"\n"


class _Outages:
    """The `disconnect` fault's timetable: down for OUTAGE_S (at most half the period) every `period` s."""

    def __init__(self, period: float | None):
        self.period = period
        self.length = min(OUTAGE_S, period / 2) if period else 0.0
        self.next = period if period else math.inf
        self.until = -math.inf

    def fired(self, t: float) -> int:
        count = 0
        while t >= self.next:
            self.until = self.next + self.length
            self.next += self.period
            count += 1
        return count

    def down(self, t: float) -> bool:
        return t < self.until


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


def _scale_witnesses(x: np.ndarray) -> np.ndarray:
    """A few values of x that choose_scale judges as it would judge all of x: the one of largest magnitude
    and, if any, one that is not an integer. Keeps the scale pass over a big dataset small in memory."""
    flat = np.asarray(x, dtype=np.float32).ravel()
    if flat.size == 0:
        return flat
    picks = [flat[int(np.argmax(np.abs(flat)))]]
    fractional = np.flatnonzero(flat != np.round(flat))
    if fractional.size:
        picks.append(flat[fractional[0]])
    return np.array(picks, dtype=np.float32)


def _dequantize(counts: np.ndarray, scale: float) -> np.ndarray:
    """int16 counts -> float32, as protocol.Frame.values() computes it."""
    return protocol.Frame(0, 0, 0, scale, counts).values()


# --------------------------------------------------------------------------- links


class Link:
    """Where the bytes go. write() returns False when they could not be delivered (the link is down)."""

    def write(self, data: bytes) -> bool:
        raise NotImplementedError

    def drop(self) -> None:
        """Break the connection (the `disconnect` fault). Only a TCP server can really do it; elsewhere the
        fault is a silence of OUTAGE_S, as when a radio link fades."""

    def wait_ready(self, timeout: float | None = None) -> bool:
        """Block until a reader is there to receive (a TCP client connected); True when one is."""
        return True

    def close(self) -> None:
        pass

    def describe(self) -> str:
        raise NotImplementedError

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


def open_link(port: str | None = None, pty: bool = False, listen: str | None = None, baud: int = 115200) -> Link:
    """Exactly one of: `port` (a serial device or pyserial URL), `pty` (a new pseudo-terminal), `listen`
    ("HOST:PORT", a TCP server; port 0 picks a free one)."""
    chosen = [name for name, given in (("--port", port), ("--pty", pty), ("--listen", listen)) if given]
    if len(chosen) != 1:
        raise UserError(f"give exactly one of --port, --pty, --listen (got {', '.join(chosen) or 'none'})")
    if port:
        return SerialLink(port, baud)
    if pty:
        return PtyLink()
    return ListenLink(listen)


class SerialLink(Link):
    """A serial device (/dev/ttyUSB0, COM3) or any pyserial URL (socket://host:port, loop://, rfc2217://...).

    If a write fails (the device was unplugged, the TCP peer went away) the bytes count as lost and the
    port is reopened, at most once per REOPEN_S, so the replay carries on when the link comes back.
    """

    WRITE_TIMEOUT_S = 2.0
    REOPEN_S = 1.0

    def __init__(self, port: str, baud: int = 115200):
        self.port, self.baud = port, baud
        self._serial = self._open()
        self._next_reopen = 0.0

    def _open(self):
        import serial  # pyserial: imported here so the simulator's planning works without it

        try:
            # exclusive: a second writer on the same device fails now ("busy") instead of interleaving bytes
            options = {} if "://" in self.port else {"exclusive": True}
            return serial.serial_for_url(self.port, baudrate=self.baud, write_timeout=self.WRITE_TIMEOUT_S, **options)
        except ValueError as e:
            raise UserError(
                f"{self.port}: not a serial port setting pyserial accepts ({e}); give a device path "
                f"such as /dev/ttyUSB0 or a URL such as socket://127.0.0.1:7000"
            ) from None
        except (serial.SerialException, OSError) as e:
            raise UserError(f"{self.port}: cannot open ({e}); {_port_fix(self.port, e)}") from None

    def write(self, data: bytes) -> bool:
        import serial

        if self._serial is None and not self._reopen():
            return False
        try:
            self._serial.write(data)
            return True
        except serial.SerialTimeoutException:  # the reader is not keeping up: these bytes are lost, the port is fine
            return False
        except (serial.SerialException, OSError):
            self._close_port()
            return False

    def _reopen(self) -> bool:
        now = time.monotonic()
        if now < self._next_reopen:
            return False
        self._next_reopen = now + self.REOPEN_S
        try:
            self._serial = self._open()
        except UserError:
            return False
        return True

    def _close_port(self) -> None:
        if self._serial is not None:
            try:
                self._serial.close()
            except Exception:  # closing a port whose device vanished may fail; it is gone either way
                pass
            self._serial = None

    def close(self) -> None:
        self._close_port()

    def describe(self) -> str:
        return self.port


def _port_fix(port: str, error: Exception) -> str:
    code = getattr(error, "errno", None)
    text = str(error).lower()
    if code == errno.EACCES or "permission" in text:
        return "no permission: add yourself to the dialout group (sudo usermod -aG dialout $USER, then log in again)"
    if code == errno.EBUSY or "busy" in text or "lock" in text:
        return "the port is in use: close the other program that has it open (a serial monitor, another simulator)"
    if "refused" in text:
        return "nothing listens there: start the receiving side first, or check the host and port"
    if code == errno.ENOENT or "no such file" in text:
        return "no such device: check the path (ls /dev/ttyUSB* /dev/ttyACM*) and that the device is plugged in"
    return "check the port name and that the device is connected"


class PtyLink(Link):
    """A pseudo-terminal: the simulator writes the master side, a reader opens describe() (/dev/pts/N)
    as a serial port.

    We keep the slave side open ourselves, so the pty exists and buffers writes before any reader has
    opened it (and between readers). The buffer is a few KiB: once it is full, writes block until a
    reader drains it -- the simulator waits for its reader rather than losing bytes. Note that pyserial
    flushes the input buffer when it opens a port, so a reader sees only bytes written after it opened.
    """

    def __init__(self):
        self._master, self._slave = os.openpty()
        tty.setraw(self._slave)  # bytes pass untouched: no echo, no newline translation
        self.path = os.ttyname(self._slave)

    def write(self, data: bytes) -> bool:
        view = memoryview(data)
        while view:  # os.write on a pty may take only part of the buffer
            view = view[os.write(self._master, view) :]
        return True

    def close(self, drain_timeout_s: float = 2.0) -> None:
        # Closing a pty discards what its reader has not read yet: wait (bounded) until the reader has it all.
        deadline = time.monotonic() + drain_timeout_s
        while self._slave >= 0 and self._unread() > 0 and time.monotonic() < deadline:
            time.sleep(0.01)
        for fd in (self._master, self._slave):
            try:
                os.close(fd)
            except OSError:
                pass
        self._master = self._slave = -1

    def _unread(self) -> int:
        try:
            return struct.unpack("i", fcntl.ioctl(self._slave, termios.FIONREAD, b"\0\0\0\0"))[0]
        except OSError:
            return 0

    def describe(self) -> str:
        return self.path


class ListenLink(Link):
    """A TCP server for one reader at a time (pyserial: socket://HOST:PORT). A client that connects while
    another is served replaces it (a reader that reconnects has given up on its old connection). While no
    client is connected, writes return False: those bytes are lost, as a radio's would be, and the replay
    goes on. Use wait_ready() to hold the start until the first reader is there.
    """

    SEND_TIMEOUT_S = 2.0

    def __init__(self, address: str):
        host, port = _parse_address(address)
        try:
            self._server = socket.create_server((host, port))  # SO_REUSEADDR: restarting right away works
        except OSError as e:
            raise UserError(f"--listen {address}: cannot listen there ({e.strerror or e}); {_listen_fix(e)}") from None
        self._server.setblocking(False)
        self.host, self.port = host, self._server.getsockname()[1]
        self._client: socket.socket | None = None

    def wait_ready(self, timeout: float | None = None) -> bool:
        if self._client is None:
            ready, _, _ = select.select([self._server], [], [], timeout)
            if ready:
                self._accept_pending()
        return self._client is not None

    def _accept_pending(self) -> None:
        """Take the newest waiting client, if any (without blocking)."""
        while True:
            try:
                client, _ = self._server.accept()
            except (BlockingIOError, InterruptedError):
                return
            self._close_client()
            client.setblocking(True)
            client.settimeout(self.SEND_TIMEOUT_S)
            client.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)  # frames are small and timely
            self._client = client

    def write(self, data: bytes) -> bool:
        self._accept_pending()
        if self._client is None:
            return False
        try:
            self._client.sendall(data)
            return True
        except OSError:  # reset, broken pipe, or a reader too slow for SEND_TIMEOUT_S: it is gone
            self._close_client()
            return False

    def drop(self) -> None:
        self._close_client()

    def _close_client(self) -> None:
        if self._client is not None:
            try:
                self._client.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            self._client.close()
            self._client = None

    @property
    def connected(self) -> bool:
        return self._client is not None

    def close(self) -> None:
        self._close_client()
        self._server.close()

    def describe(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"socket://{host}:{self.port}"


def _parse_address(address: str) -> tuple[str, int]:
    host, sep, port = address.rpartition(":")
    host = host.strip("[]")
    if not sep or not host or not port.isdigit() or int(port) > 65535:
        raise UserError(f"--listen {address}: give HOST:PORT, e.g. 127.0.0.1:7000 (port 0 picks a free port)")
    return host, int(port)


def _listen_fix(error: OSError) -> str:
    if error.errno == errno.EADDRINUSE:
        return "the port is taken: choose another port or stop the program that uses it"
    if error.errno == errno.EACCES:
        return "ports below 1024 need root: choose a port above 1024"
    if error.errno == errno.EADDRNOTAVAIL:
        return "this machine has no such address: use 127.0.0.1 or one of its own addresses"
    return "check the host and port"


# --------------------------------------------------------------------------- command line
