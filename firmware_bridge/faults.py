"""What goes wrong on a real link, on purpose: the simulator's `--faults drop=0.01,corrupt=0.02,garbage=0.01,
disconnect=5`, so that the live path's resynchronisation, loss counting and reconnects are tested.

- drop: a write never leaves (a frame lost in a radio fade);
- corrupt: one random byte of a write is flipped (line noise; a frame's CRC catches it);
- garbage: 1-64 junk bytes go out before a write (a boot banner, a noisy line);
- disconnect: every this many seconds of replay the link goes down for OUTAGE_S (a TCP server drops its client).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from edgekd.errors import UserError

OUTAGE_S = 1.0  # how long the `disconnect` fault keeps the link down
MAX_GARBAGE = 64


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


class Injector:
    """Applies drop, corrupt and garbage to each write, from one seed. `junk(rng, n)` makes n bytes of noise
    that suit the wire (random bytes between frames, a line no parser takes for samples in text mode)."""

    def __init__(self, faults: Faults, seed: int, junk: Callable[[np.random.Generator, int], bytes]):
        self.faults, self.junk = faults, junk
        self.rng = np.random.default_rng(seed)

    def apply(self, data: bytes, stats) -> bytes | None:
        """`data` as the faults leave it, None when dropped; counts what it did in `stats`."""
        f, rng = self.faults, self.rng
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
            data = self.junk(rng, int(rng.integers(1, MAX_GARBAGE + 1))) + data
        return data


class Outages:
    """The `disconnect` fault's timetable: down for OUTAGE_S (at most half the period) every `period` s."""

    def __init__(self, period: float | None):
        self.period = period
        self.length = min(OUTAGE_S, period / 2) if period else 0.0
        self.next = period if period else math.inf
        self.until = -math.inf

    def fired(self, t: float) -> int:
        """How many outages began by replay time t since the last call."""
        count = 0
        while t >= self.next:
            self.until = self.next + self.length
            self.next += self.period
            count += 1
        return count

    def down(self, t: float) -> bool:
        return t < self.until
