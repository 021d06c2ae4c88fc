"""Binary framed wire protocol v1 between the wearable and the host (spec: firmware_bridge/PROTOCOL.md).

Frame layout, all multi-byte fields little-endian::

    offset size  field
    0      2     sync 0xA5 0x5A
    2      1     version = 1
    3      1     stream id (0 = the model's first stream, 1 = the second, ...)
    4      2     sequence number, uint16, per stream, wraps 65535 -> 0
    6      4     device timestamp of the FIRST sample, microseconds, uint32, wraps
    10     2     sample count n, uint16
    12     1     channel count c, uint8, >= 1
    13     1     flags, 0 in v1 (a v1 decoder rejects frames with any flag set)
    14     4     scale, float32, physical units per LSB, finite and > 0
    18     2*n*c payload, int16, sample-major (s0c0 s0c1 ... s1c0 ...), 1 <= n*c <= MAX_VALUES_PER_FRAME
    18+2nc 2     CRC-16/CCITT-FALSE over bytes 2 .. end of payload

numpy + standard library only (no TensorFlow): this module runs on the device side of the project.
"""

from __future__ import annotations

import binascii
import math
import struct
from dataclasses import asdict, dataclass, field

import numpy as np

SYNC: bytes = b"\xa5\x5a"
VERSION: int = 1
MAX_VALUES_PER_FRAME: int = 4096  # samples * channels; bounds a frame so resync never waits on a bogus huge length

# Device time: microseconds in a uint32 that wraps (every 71.6 minutes); seq numbers: a uint16 per stream.
US: int = 1_000_000
TIME_WRAP: int = 1 << 32
SEQ_WRAP: int = 1 << 16

HEADER_SIZE: int = 18
CRC_SIZE: int = 2
MAX_FRAME_SIZE: int = HEADER_SIZE + 2 * MAX_VALUES_PER_FRAME + CRC_SIZE  # 8212 bytes

_HEADER = struct.Struct("<2sBBHIHBBf")  # the whole 18-byte header, sync included
_FIELDS = struct.Struct("<BBHIHBBf")  # the header after the sync (offset 2)
_CRC = struct.Struct("<H")
_SYNC0, _SYNC1 = SYNC[0], SYNC[1]
_FLOAT32_MAX = float(np.finfo(np.float32).max)
_INT16_MIN, _INT16_MAX = -32768, 32767
_FEED_CHUNK = 4096  # feed() appends at most this many bytes to its buffer before decoding them


def crc16(data: bytes, crc: int = 0xFFFF) -> int:
    """CRC-16/CCITT-FALSE (poly 0x1021, init 0xFFFF, no reflection, no final xor); crc16(b"123456789") == 0x29B1.
    Pass the previous result as `crc` to continue over more bytes."""
    return binascii.crc_hqx(data, crc)


def frame_size(n_samples: int, n_channels: int) -> int:
    """Bytes on the wire for a frame of n_samples x n_channels (header + payload + CRC)."""
    return HEADER_SIZE + 2 * n_samples * n_channels + CRC_SIZE


def _samples_array(samples) -> np.ndarray:
    """Validate an (n_samples, n_channels) array of int16-range integers and return it as C-ordered int16."""
    a = np.asarray(samples)
    if a.ndim != 2:
        raise ValueError(f"samples must be a 2-D array (n_samples, n_channels), got shape {a.shape}")
    n, c = a.shape
    if not 1 <= c <= 255:
        raise ValueError(f"a frame carries 1..255 channels, got {c}")
    if not 1 <= n * c <= MAX_VALUES_PER_FRAME:
        raise ValueError(f"a frame carries 1..{MAX_VALUES_PER_FRAME} values (samples * channels), got {n} x {c}")
    if a.dtype == np.int16:
        return np.ascontiguousarray(a)
    if not (np.issubdtype(a.dtype, np.integer) or a.dtype == np.bool_):
        raise ValueError(f"samples must be integers (int16 range), got dtype {a.dtype}; use quantize() first")
    if a.size and (a.min() < _INT16_MIN or a.max() > _INT16_MAX):
        raise ValueError("samples outside the int16 range [-32768, 32767]; use quantize() first")
    return np.ascontiguousarray(a, dtype=np.int16)


def _check_scale(scale: float) -> float:
    """The float32 value that goes on the wire; it must be finite and > 0."""
    s = float(scale)
    s32 = float(np.float32(s)) if abs(s) <= _FLOAT32_MAX else math.inf
    if not 0.0 < s32 < math.inf:
        raise ValueError(f"scale must be a finite float32 > 0, got {scale!r}")
    return s32


@dataclass(frozen=True, eq=False)
class Frame:
    """One decoded (or to-be-encoded) frame. `samples` holds the raw int16 values; `values()` the physical ones."""

    stream_id: int  # 0..255
    seq: int  # uint16, per stream, wraps 65535 -> 0
    timestamp_us: int  # uint32 device time of the FIRST sample in the frame, wraps
    scale: float  # physical units per LSB (float32 on the wire)
    samples: np.ndarray = field(repr=False)  # int16, shape (n_samples, n_channels)

    def __post_init__(self):
        s = self.samples
        if not (isinstance(s, np.ndarray) and s.dtype == np.int16 and s.ndim == 2):
            object.__setattr__(self, "samples", _samples_array(s))

    @property
    def n_samples(self) -> int:
        return self.samples.shape[0]

    @property
    def n_channels(self) -> int:
        return self.samples.shape[1]

    def values(self) -> np.ndarray:
        """float32 (n_samples, n_channels): samples * scale (computed in float32)."""
        return self.samples.astype(np.float32) * np.float32(self.scale)

    def to_bytes(self) -> bytes:
        return encode_frame(self.stream_id, self.seq, self.timestamp_us, self.samples, self.scale)

    def __eq__(self, other):
        if not isinstance(other, Frame):
            return NotImplemented
        return (
            self.stream_id == other.stream_id
            and self.seq == other.seq
            and self.timestamp_us == other.timestamp_us
            and self.scale == other.scale
            and self.samples.shape == other.samples.shape
            and bool(np.array_equal(self.samples, other.samples))
        )

    def __repr__(self) -> str:
        n, c = self.samples.shape
        return (
            f"Frame(stream_id={self.stream_id}, seq={self.seq}, timestamp_us={self.timestamp_us}, "
            f"scale={self.scale!r}, samples=<{n}x{c} int16>)"
        )


def encode_frame(stream_id: int, seq: int, timestamp_us: int, samples: np.ndarray, scale: float) -> bytes:
    """One v1 frame. `samples`: integer array (n_samples, n_channels) within the int16 range (see quantize()).
    `seq` and `timestamp_us` are reduced modulo 2**16 and 2**32 (they wrap on the device too); `scale` must be a
    finite float32 > 0. Raises ValueError on anything that the decoder would not accept."""
    stream_id, seq, timestamp_us = int(stream_id), int(seq), int(timestamp_us)
    if not 0 <= stream_id <= 255:
        raise ValueError(f"stream_id must be 0..255, got {stream_id}")
    if seq < 0 or timestamp_us < 0:
        raise ValueError(f"seq and timestamp_us must be >= 0, got {seq}, {timestamp_us}")
    a = _samples_array(samples)
    s32 = _check_scale(scale)
    n, c = a.shape
    body = _FIELDS.pack(VERSION, stream_id, seq & 0xFFFF, timestamp_us & 0xFFFFFFFF, n, c, 0, s32)
    payload = a.astype("<i2", copy=False).tobytes()
    crc = binascii.crc_hqx(payload, binascii.crc_hqx(body, 0xFFFF))
    return b"".join((SYNC, body, payload, _CRC.pack(crc)))


def quantize(values: np.ndarray, scale: float) -> np.ndarray:
    """float -> int16 as the firmware does it (edgekd_quantize() in firmware/edgekd_frame.c):

    q = float32(value) / float32(scale), divided in float32; rounded half AWAY from zero (2.5 -> 3, -2.5 -> -3);
    clipped to [-32768, 32767]; NaN -> 0 (+-inf clip to the ends)."""
    s32 = _check_scale(scale)
    with np.errstate(over="ignore", invalid="ignore", divide="ignore"):
        q = np.asarray(values, dtype=np.float32) / np.float32(s32)
        t = np.trunc(q)
        frac = q - t  # exact in floating point
        t = t + (frac >= 0.5) - (frac <= -0.5)
        t = np.clip(t, _INT16_MIN, _INT16_MAX)
        t = np.where(np.isnan(t), 0, t)
    return t.astype(np.int16)


def choose_scale(values: np.ndarray) -> float:
    """1.0 when every value is an integer within the int16 range (the frame is then exact); otherwise
    max|x| / 32767 rounded to float32 (quantisation error <= scale / 2 per value, plus float32 rounding).
    Never 0: all-zero data gives 1.0. Raises ValueError on non-finite values."""
    a = np.asarray(values, dtype=np.float64)
    if a.size == 0:
        return 1.0
    if not np.all(np.isfinite(a)):
        raise ValueError("choose_scale: values must be finite")
    lo, hi = float(a.min()), float(a.max())
    if lo >= _INT16_MIN and hi <= _INT16_MAX and np.array_equal(a, np.round(a)):
        return 1.0
    peak = max(-lo, hi)
    if peak > _FLOAT32_MAX:
        raise ValueError("choose_scale: values exceed the float32 range")
    scale = float(np.float32(peak / _INT16_MAX))
    if scale == 0.0:  # subnormal peaks: the smallest positive float32 keeps scale > 0
        scale = float(np.nextafter(np.float32(0), np.float32(1)))
    return scale


@dataclass
class DecoderStats:
    frames: int = 0  # valid frames decoded
    crc_errors: int = 0  # candidate frames whose CRC failed
    resyncs: int = 0  # times the decoder had to search for the sync bytes again
    bytes_discarded: int = 0  # bytes skipped while resynchronising
    sequence_gaps: int = 0  # gap events (per stream: seq != previous seq + 1 mod 65536)
    frames_lost: int = 0  # total frames missing according to the gaps

    def as_dict(self) -> dict:
        return asdict(self)


class FrameDecoder:
    """Incremental, resynchronising v1 decoder: feed() it whatever bytes arrive, in any split; it returns the
    complete valid frames in order (the same frames for any split of the same byte stream, and the same stats).

    Rules: look for the sync bytes; a candidate is rejected when its header is invalid (version != 1, c == 0,
    n*c not in 1..MAX_VALUES_PER_FRAME, flags != 0, scale not finite or <= 0) or, once the whole frame is there,
    when its CRC fails; a rejected candidate is skipped by ONE byte and the search goes on, so a valid frame that
    starts inside a corrupt one's span is still found. `stats.resyncs` counts the runs of discarded bytes (one
    per stretch between valid frames), `stats.bytes_discarded` their bytes. Memory stays bounded: at most one
    maximum frame plus one feed chunk is buffered (`BUFFER_LIMIT`), whatever the size of a feed() call.
    """

    BUFFER_LIMIT = MAX_FRAME_SIZE + _FEED_CHUNK

    def __init__(self):
        self.stats = DecoderStats()
        self._buf = bytearray()
        self._hunting = False  # inside a run of discarded bytes (counted once in stats.resyncs)
        self._last_seq: dict[int, int] = {}
        self._peak = 0  # largest buffer held, for tests
        self._need = 0  # buffer length below which decoding cannot progress (a pending candidate)

    @property
    def buffered(self) -> int:
        """Bytes held back, waiting for the rest of a frame (or for the byte after a trailing 0xA5)."""
        return len(self._buf)

    def feed(self, data: bytes) -> list[Frame]:
        """Decode `data` (appended to whatever was left over) -> the complete valid frames, in stream order."""
        frames: list[Frame] = []
        n = len(data)
        if len(self._buf) + n < self._need:  # still short of the pending frame: nothing can change yet
            self._buf += data
            return frames
        if n <= _FEED_CHUNK:
            self._buf += data
            self._decode(frames, final=False)
        else:
            view = memoryview(data).cast("B") if not isinstance(data, (bytes, bytearray)) else data
            for start in range(0, n, _FEED_CHUNK):
                self._buf += view[start : start + _FEED_CHUNK]
                self._decode(frames, final=False)
        return frames

    def flush(self) -> list[Frame]:
        """End of stream: decode what can still be decoded from the held-back bytes, assuming nothing more
        will come (an incomplete candidate is given up, skipped by one byte, and the search goes on). The
        buffer is empty afterwards; stats and per-stream sequence tracking are kept."""
        frames: list[Frame] = []
        self._decode(frames, final=True)
        return frames

    def reset_sequences(self) -> None:
        """Forget the per-stream sequence numbers (e.g. after reopening the port: no gap is counted then)."""
        self._last_seq.clear()

    def _discard(self, count: int) -> None:
        if count > 0:
            st = self.stats
            st.bytes_discarded += count
            if not self._hunting:
                self._hunting = True
                st.resyncs += 1

    def _decode(self, frames: list, final: bool) -> None:
        buf = self._buf
        if len(buf) > self._peak:
            self._peak = len(buf)
        end = len(buf)
        pos = 0
        need = 0
        st = self.stats
        unpack = _FIELDS.unpack_from
        crc_hqx = binascii.crc_hqx
        frombuffer = np.frombuffer
        while pos < end:
            if buf[pos] != _SYNC0 or (pos + 1 < end and buf[pos + 1] != _SYNC1):
                j = buf.find(SYNC, pos + 1)
                if j < 0:  # no sync: keep only a trailing 0xA5 (it may be the first half of one)
                    j = end - 1 if (buf[end - 1] == _SYNC0 and not final) else end
                    self._discard(j - pos)
                    pos = j
                    break
                self._discard(j - pos)
                pos = j
            if end - pos < HEADER_SIZE:
                if final:
                    self._discard(1)
                    pos += 1
                    continue
                need = HEADER_SIZE
                break
            version, sid, seq, ts, ns, nc, flags, scale = unpack(buf, pos + 2)
            count = ns * nc
            if (
                version != VERSION
                or nc == 0
                or count == 0
                or count > MAX_VALUES_PER_FRAME
                or flags
                or not 0.0 < scale < math.inf
            ):
                self._discard(1)
                pos += 1
                continue
            size = HEADER_SIZE + 2 * count + CRC_SIZE
            if end - pos < size:
                if final:
                    self._discard(1)
                    pos += 1
                    continue
                need = size
                break
            crc_at = pos + size - CRC_SIZE
            if crc_hqx(buf[pos + 2 : crc_at], 0xFFFF) != buf[crc_at] | (buf[crc_at + 1] << 8):
                st.crc_errors += 1
                self._discard(1)
                pos += 1
                continue
            samples = frombuffer(buf, dtype="<i2", count=count, offset=pos + HEADER_SIZE).astype(np.int16)
            frames.append(Frame(sid, seq, ts, scale, samples.reshape(ns, nc)))
            pos += size
            self._hunting = False
            st.frames += 1
            last = self._last_seq.get(sid)
            if last is not None and seq != (last + 1) & 0xFFFF:
                st.sequence_gaps += 1
                missing = (seq - last - 1) & 0xFFFF
                if missing < 0x8000:  # a jump backwards (device restart, duplicate) loses no frames
                    st.frames_lost += missing
            self._last_seq[sid] = seq
        self._need = need
        if pos:
            del buf[:pos]
