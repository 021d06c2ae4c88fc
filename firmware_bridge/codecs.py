"""Wire formats: how a device's samples travel as bytes, both ways, behind one interface.

`CODECS` maps each `--wire` name to its codec:

- "frame": binary frames (firmware_bridge/protocol.py, PROTOCOL.md): any number of streams, int16 values with a
  scale per stream, device time and a seq number in every frame;
- "text": one "v0,v1,...\\n" line per sample (firmware_bridge/text.py): one stream, the values as printed, no
  time on the wire (sample i is at i / rate).

Every codec gives
- `decoder(streams, where)`: a Decoder whose `feed(bytes)` returns the list of `Samples` the bytes complete and
  whose `counters()` says what it saw (valid, bad, lost);
- `encoder(streams, where)`: an Encoder that turns a recording into what the device holds (`device_values`), what
  a decoder gets back from it (`sent_values`), the bytes of one write (`encode`), and line noise (`junk`);
- `device_streams(streams, rate_hz)`: the streams as this wire delivers them, given the device's rate if the
  wire carries no time (`check_rate` says whether a rate may be given).

numpy, click (for --wire) and the standard library; no TensorFlow.
"""

from __future__ import annotations

import dataclasses
import functools
from dataclasses import dataclass

import click
import numpy as np

from edgekd.errors import UserError
from firmware_bridge import protocol, text

# --------------------------------------------------------------------------- what a decoder returns


@dataclass(frozen=True, eq=False)
class Samples:
    """Consecutive samples of one stream, as they came off the wire."""

    stream_id: int  # index into the streams (0 = the model's first)
    timestamp_us: int  # device time of the first sample (binary frames: uint32, wraps; text: counted from 0)
    seq: int | None  # the frame's sequence number; None where the wire has none
    values: np.ndarray  # float32 (n_samples, channels), in the units the device measures


# --------------------------------------------------------------------------- binary frames


class FrameCodec:
    name = "frame"

    def check_rate(self, rate_hz: float | None) -> None:
        if rate_hz is not None:
            raise UserError("--rate applies to --wire text; binary frames carry their own timing")

    def device_streams(self, streams, rate_hz: float | None = None):
        self.check_rate(rate_hz)
        return tuple(streams)

    def decoder(self, streams, where: str) -> FrameSamplesDecoder:
        return FrameSamplesDecoder()

    def encoder(self, streams, where: str) -> FrameEncoder:
        return FrameEncoder(streams)


class FrameSamplesDecoder:
    """protocol.FrameDecoder (resynchronising, counts CRC errors and lost frames), giving Samples."""

    def __init__(self):
        self.frames = protocol.FrameDecoder()

    def feed(self, data: bytes) -> list[Samples]:
        return [Samples(f.stream_id, f.timestamp_us, f.seq, f.values()) for f in self.frames.feed(data)]

    def counters(self) -> dict:
        return self.frames.stats.as_dict()


class FrameEncoder:
    """int16 frames with one scale per stream, chosen from every recording `observe`d (a firmware has one
    fixed gain): observe all recordings first, then encode."""

    def __init__(self, streams):
        self.streams = tuple(streams)
        self._witnesses: dict[str, list[np.ndarray]] = {s.name: [] for s in self.streams}
        self._scales: dict[str, float] | None = None

    def observe(self, signals: dict[str, np.ndarray]) -> None:
        for s in self.streams:
            self._witnesses[s.name].append(_scale_witnesses(signals[s.name]))
        self._scales = None

    @property
    def scales(self) -> dict[str, float]:
        """Physical units per int16 count, per stream."""
        if self._scales is None:
            self._scales = {
                name: float(protocol.choose_scale(np.concatenate(witnesses)))
                for name, witnesses in self._witnesses.items()
            }
        return self._scales

    def device_values(self, signals: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        """int16 counts, as the device's ADC and gain would give them."""
        return {s.name: protocol.quantize(signals[s.name], self.scales[s.name]) for s in self.streams}

    def sent_values(self, device_values: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        """What a decoder reconstructs: counts * scale, in float32 as protocol.Frame.values() computes it."""
        return {
            name: protocol.Frame(0, 0, 0, self.scales[name], counts).values() for name, counts in device_values.items()
        }

    def encode(self, stream_id: int, seq: int, timestamp_us: int, values: np.ndarray) -> bytes:
        """One frame; seq and device time are taken modulo their wraps, as the device's counters wrap."""
        scale = self.scales[self.streams[stream_id].name]
        return protocol.encode_frame(
            stream_id, seq % protocol.SEQ_WRAP, timestamp_us % protocol.TIME_WRAP, values, scale
        )

    def junk(self, rng: np.random.Generator, n: int) -> bytes:
        """n random bytes: what a noisy line or a device's boot banner puts between frames."""
        return rng.integers(0, 256, n, dtype=np.uint8).tobytes()


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


# --------------------------------------------------------------------------- text lines

# Junk for text mode: no digits, '.', ',', '-', 'e', 'inf' or 'nan' letters, so a junk line never parses as samples.
# No '#' either: the text decoder would take the line for a comment, not count it as bad.
_TEXT_JUNK = np.frombuffer(b"bcdghjkmopqrstuvwxyz!?*~@$%^&", dtype=np.uint8)


class TextCodec:
    name = "text"

    def check_rate(self, rate_hz: float | None) -> None:
        pass  # any rate: text carries no time, the device's rate places its samples

    def device_streams(self, streams, rate_hz: float | None = None):
        """The one stream at the device's own rate (`--rate`; windows resample from it to the model's rate)."""
        streams = tuple(streams)
        if not rate_hz:
            return streams
        return tuple(dataclasses.replace(s, rate_hz=float(rate_hz)) for s in streams)

    def decoder(self, streams, where: str) -> TextSamplesDecoder:
        return TextSamplesDecoder(_one_stream(streams, where))

    def encoder(self, streams, where: str) -> TextEncoder:
        return TextEncoder(_one_stream(streams, where))


def _one_stream(streams, where: str):
    if len(streams) != 1:
        names = ", ".join(s.name for s in streams)
        raise UserError(
            f"{where}: has {len(streams)} streams ({names}) and text mode carries one; use binary mode (--wire frame)"
        )
    return streams[0]


class TextSamplesDecoder:
    """text.TextDecoder (skips and counts bad lines), giving Samples timed by their count: the i-th sample of
    the session is at i / rate."""

    def __init__(self, stream):
        self.lines = text.TextDecoder(len(stream.channels))
        self.rate_hz = stream.rate_hz
        self._samples = 0

    def feed(self, data: bytes) -> list[Samples]:
        rows = self.lines.feed(data)
        if not len(rows):
            return []
        timestamp_us = int(round(self._samples * protocol.US / self.rate_hz))
        self._samples += len(rows)
        return [Samples(0, timestamp_us, None, rows)]

    def counters(self) -> dict:
        return self.lines.stats.as_dict()


class TextEncoder:
    """One line per sample, the values as they are (formatted so that they parse back exactly)."""

    def __init__(self, stream):
        self.stream = stream

    def observe(self, signals: dict[str, np.ndarray]) -> None:
        pass  # text needs no scale: the values go as they are

    @property
    def scales(self) -> dict[str, float]:
        return {}

    def device_values(self, signals: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        return signals

    def sent_values(self, device_values: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        """Through the real text decoder, so that formatting precision is accounted for."""
        values = device_values[self.stream.name]
        decoder = text.TextDecoder(len(self.stream.channels))
        return {self.stream.name: decoder.feed(b"".join(text.encode_text_line(row) for row in values))}

    def encode(self, stream_id: int, seq: int, timestamp_us: int, values: np.ndarray) -> bytes:
        """The lines of `values`; text carries no stream id, seq or time."""
        return b"".join(text.encode_text_line(row) for row in values)

    def junk(self, rng: np.random.Generator, n: int) -> bytes:
        """A line of n noise characters that no parser takes for samples, ended so the next real line stays whole."""
        return rng.choice(_TEXT_JUNK, n).tobytes() + b"\n"


# --------------------------------------------------------------------------- the registry

CODECS = {codec.name: codec for codec in (FrameCodec(), TextCodec())}
DEFAULT_WIRE = "frame"


def codec(wire: str):
    """The codec named `wire` (a key of CODECS)."""
    try:
        return CODECS[wire]
    except KeyError:
        raise UserError(f"--wire {wire}: unknown wire format; use one of {', '.join(CODECS)}") from None


def wire_option(command):
    """Adds --wire (a key of firmware_bridge.codecs.CODECS) to `command`, which receives it as `wire`. Also takes
    the older --text, hidden: the same as --wire text, so that scripts written for it keep working."""

    @functools.wraps(command)
    def with_wire(*args, wire, text, **kwargs):
        if text and wire not in (None, "text"):
            raise UserError(f"--text is the old spelling of --wire text; give --wire {wire} or --text, not both")
        return command(*args, wire="text" if text else wire or DEFAULT_WIRE, **kwargs)

    with_wire = click.option("--text", is_flag=True, hidden=True, help="Deprecated: the same as --wire text.")(
        with_wire
    )
    return click.option(
        "--wire",
        type=click.Choice(list(CODECS)),
        help="frame: the binary frames of edgekd's firmware protocol, any number of streams; text: one line of "
        f"comma-, tab- or space-separated values per sample, one stream. [default: {DEFAULT_WIRE}]",
    )(with_wire)
