"""Text mode: one sample per line, the convention many sensor sketches already print (spec: PROTOCOL.md).

    12,-7,3.5,0,0,1\\n          values separated by commas, tabs or spaces (any mix, repeated separators ok)
    # comment\\n                 ignored, as are blank lines
    '\\r\\n' or '\\n' line ends

A line with the wrong number of values, or with anything that is not a finite number, is counted in
`stats.bad_lines` and skipped. A partial last line waits for the bytes that complete it. A "line" that grows
past MAX_LINE_BYTES without a newline (binary data on a text link, say) is dropped up to its next newline and
counted once as bad, so memory stays bounded.

numpy + standard library only (no TensorFlow).
"""

from __future__ import annotations

import math
import re
from dataclasses import asdict, dataclass

import numpy as np

MAX_LINE_BYTES = 4096

_SPLIT = re.compile(rb"[,\t ]+")
_STRIP = b",\t \r"


@dataclass
class TextStats:
    lines: int = 0  # valid sample lines decoded (rows returned)
    bad_lines: int = 0  # lines skipped: wrong value count, not numbers, non-finite, or over MAX_LINE_BYTES

    def as_dict(self) -> dict:
        return asdict(self)


class TextDecoder:
    """Incremental text-mode decoder: feed() bytes in any split, get the complete valid lines as rows."""

    def __init__(self, channels: int):
        channels = int(channels)
        if channels < 1:
            raise ValueError(f"channels must be >= 1, got {channels}")
        self.channels = channels
        self.stats = TextStats()
        self._partial = b""
        self._skipping = False  # dropping an over-long line up to its newline

    @property
    def buffered(self) -> int:
        """Bytes of the partial last line held back."""
        return len(self._partial)

    def feed(self, data: bytes) -> np.ndarray:
        """Bytes just read -> float32 (n_rows, channels) for the complete valid lines among them."""
        data = self._partial + bytes(data)
        lines = data.split(b"\n")
        tail = lines.pop()
        if self._skipping and lines:  # the first line here is the rest of an over-long one: drop it
            lines.pop(0)
            self._skipping = False
        if self._skipping:
            tail = b""
        elif len(tail) > MAX_LINE_BYTES:
            self.stats.bad_lines += 1
            self._skipping = True
            tail = b""
        self._partial = tail
        rows = []
        channels = self.channels
        bad = 0
        for line in lines:
            line = line.strip(_STRIP)
            if not line or line[:1] == b"#":
                continue
            if len(line) > MAX_LINE_BYTES:
                bad += 1
                continue
            fields = _SPLIT.split(line)
            if len(fields) != channels:
                bad += 1
                continue
            try:
                rows.append([float(f) for f in fields])
            except ValueError:
                bad += 1
        if rows:
            with np.errstate(over="ignore", invalid="ignore"):
                out = np.array(rows, dtype=np.float64).astype(np.float32)
            finite = np.isfinite(out).all(axis=1)  # nan, inf, or beyond the float32 range: bad
            if not finite.all():
                bad += int((~finite).sum())
                out = out[finite]
        else:
            out = np.zeros((0, channels), dtype=np.float32)
        self.stats.bad_lines += bad
        self.stats.lines += len(out)
        return out


def _format(v) -> str:
    if isinstance(v, (bool, np.bool_)):
        return "1" if v else "0"
    if isinstance(v, (int, np.integer)):
        return str(int(v))
    f = float(v)
    if not math.isfinite(f):
        raise ValueError(f"encode_text_line: values must be finite, got {v!r}")
    if f.is_integer() and abs(f) < 2.0**53:
        return str(int(f))
    return repr(f)


def encode_text_line(values) -> bytes:
    """One text-mode line, b"v0,v1,...\\n": integers (and integral floats) as ints, other floats with repr(),
    which round-trips exactly through float()."""
    flat = np.asarray(values).reshape(-1) if isinstance(values, np.ndarray) else list(values)
    if len(flat) == 0:
        raise ValueError("encode_text_line: no values")
    items = flat.tolist() if isinstance(flat, np.ndarray) else flat
    return (",".join(_format(v) for v in items) + "\n").encode("ascii")
