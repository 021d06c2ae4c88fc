"""From a recording's streams to model input: align rates, cut sliding windows, z-score per channel.

This is the one place windows are built. Training, export, bench and live streaming all go through
`Preprocessor.windows`, so what the device sees is what the model was trained on.

Windows are defined in each stream's own time: window k covers seconds [k * hop, k * hop + window) of
every stream, and each stream's raw samples of that span are resampled to the model rate on their own.
Resampling the whole recording first would make a window depend on samples after it (the filter's
reach), which a live stream has not received yet; per-window resampling makes live windows equal
offline windows exactly.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from fractions import Fraction
from functools import lru_cache

import numpy as np
from scipy.signal import firwin, resample_poly

from edgekd.data.dataset import StreamSpec
from edgekd.errors import UserError

_MIN_STD = 1e-6  # a flat channel (a dead electrode) must not blow up to inf after z-scoring
MIN_STREAM_SAMPLES = 2


@dataclass(frozen=True)
class WindowSpec:
    model_rate_hz: float
    window_s: float
    hop_s: float

    def __post_init__(self):
        if not (self.model_rate_hz > 0 and self.window_s > 0 and self.hop_s > 0):
            raise UserError("window, hop and model rate must be positive; e.g. --window 0.5 --hop 0.1")
        if self.window_len < 4:
            raise UserError(
                f"a {self.window_s} s window at {self.model_rate_hz:g} Hz is only {self.window_len} samples; "
                f"use a longer --window or a higher --rate"
            )

    @property
    def window_len(self) -> int:
        return int(round(self.window_s * self.model_rate_hz))

    @property
    def hop_len(self) -> int:
        return max(1, int(round(self.hop_s * self.model_rate_hz)))


@lru_cache(maxsize=64)
def _antialias_filter(up: int, down: int) -> np.ndarray:
    """The FIR filter scipy's resample_poly designs by default (Kaiser, beta 5), made once per ratio: designing
    its thousands of taps on every window cost live streaming several milliseconds per window."""
    g = math.gcd(up, down)
    max_rate = max(up, down) // g
    return firwin(2 * 10 * max_rate + 1, 1.0 / max_rate, window=("kaiser", 5.0)).astype(np.float32)


def resample(x: np.ndarray, up: int, down: int) -> np.ndarray:
    """Polyphase resampling along time; padtype="line" avoids the edge transients that zero padding adds
    to offset signals (gravity on an accelerometer)."""
    h = _antialias_filter(up, down).copy()  # resample_poly scales its filter in place
    return resample_poly(x, up, down, axis=0, window=h, padtype="line").astype(np.float32)


def resample_ratio(from_hz: float, to_hz: float) -> tuple[int, int]:
    """(up, down) for polyphase resampling; rates like 1111.1 Hz need a rational approximation."""
    ratio = Fraction(to_hz / from_hz).limit_denominator(1000)
    return ratio.numerator, ratio.denominator


def stream_window(stream: StreamSpec, spec: WindowSpec, k: int) -> tuple[int, int]:
    """(first sample, sample count) of window k in this stream's own samples."""
    return int(round(k * spec.hop_s * stream.rate_hz)), int(round(spec.window_s * stream.rate_hz))


def count_windows(lengths: dict[str, int], streams: tuple[StreamSpec, ...], spec: WindowSpec) -> int:
    """How many whole windows every stream holds, given each stream's sample count."""
    n = 0
    while all(sum(stream_window(s, spec, n)) <= lengths[s.name] for s in streams):
        n += 1
    return n


def window_from_streams(
    signals: dict[str, np.ndarray],
    streams: tuple[StreamSpec, ...],
    spec: WindowSpec,
    k: int,
    offsets: dict[str, int] | None = None,
) -> np.ndarray:
    """Window k (window_len, channels): each stream's span resampled to the model rate, channels stacked.

    `signals` may hold only the samples received so far (a live stream): window k needs none after its end.
    `offsets` gives, per stream, the sample index that signals[name][0] holds (a live buffer drops old samples)."""
    parts = []
    for stream in streams:
        start, count = stream_window(stream, spec, k)
        start -= (offsets or {}).get(stream.name, 0)
        x = np.asarray(signals[stream.name][start : start + count], dtype=np.float32)
        if count != spec.window_len:  # the exact ratio window_len / count: every window comes out window_len long
            x = resample(x, spec.window_len, count)
        parts.append(x)
    return np.concatenate(parts, axis=1)


def align_streams(signals: dict[str, np.ndarray], streams: tuple[StreamSpec, ...], model_rate_hz: float) -> np.ndarray:
    """A whole recording resampled to the model rate, channels stacked: (samples, channels). For plots and
    inspection; model input comes from `window_from_streams`."""
    parts = []
    for stream in streams:
        x = np.asarray(signals[stream.name], dtype=np.float32)
        up, down = resample_ratio(stream.rate_hz, model_rate_hz)
        if up != down:
            x = resample(x, up, down)
        parts.append(x)
    length = min(len(p) for p in parts)  # streams of one recording end a few samples apart
    return np.concatenate([p[:length] for p in parts], axis=1)


def cut_windows(aligned: np.ndarray, window_len: int, starts: list[int]) -> np.ndarray:
    """Windows (n, window_len, channels) of `aligned` beginning at the given sample indices."""
    if not starts:
        return np.empty((0, window_len, aligned.shape[1]), dtype=np.float32)
    view = np.lib.stride_tricks.sliding_window_view(aligned, window_len, axis=0)[np.asarray(starts)]
    return np.ascontiguousarray(view.transpose(0, 2, 1), dtype=np.float32)


@dataclass(frozen=True)
class Preprocessor:
    """Everything that turns raw streams into normalised model input; travels inside the exported model."""

    streams: tuple[StreamSpec, ...]
    spec: WindowSpec
    mean: np.ndarray | None = None  # per channel, from training windows only
    std: np.ndarray | None = None

    def __post_init__(self):
        for stream in self.streams:  # a window needs a few of each stream's own samples to resample from
            count = stream_window(stream, self.spec, 0)[1]
            if count < MIN_STREAM_SAMPLES:
                raise UserError(
                    f"stream '{stream.name}' at {stream.rate_hz:g} Hz has {count} sample(s) in a "
                    f"{self.spec.window_s:g} s window; check its rate_hz in dataset.toml, or use a longer --window"
                )

    @property
    def channels(self) -> int:
        return sum(len(s.channels) for s in self.streams)

    def raw_windows(self, signals: dict[str, np.ndarray]) -> np.ndarray:
        n = count_windows({s.name: len(signals[s.name]) for s in self.streams}, self.streams, self.spec)
        if n == 0:
            return np.empty((0, self.spec.window_len, self.channels), dtype=np.float32)
        if all(s.rate_hz == self.spec.model_rate_hz for s in self.streams):  # nothing to resample: plain slices
            length = min(len(signals[s.name]) for s in self.streams)
            aligned = np.concatenate([np.asarray(signals[s.name][:length], np.float32) for s in self.streams], axis=1)
            return cut_windows(
                aligned, self.spec.window_len, [stream_window(self.streams[0], self.spec, k)[0] for k in range(n)]
            )
        return np.stack([window_from_streams(signals, self.streams, self.spec, k) for k in range(n)])

    def fit(self, train_windows: np.ndarray) -> Preprocessor:
        flat = train_windows.reshape(-1, train_windows.shape[-1]).astype(np.float64)
        mean, std = flat.mean(axis=0), np.maximum(flat.std(axis=0), _MIN_STD)
        return Preprocessor(self.streams, self.spec, mean.astype(np.float32), std.astype(np.float32))

    def normalize(self, windows: np.ndarray) -> np.ndarray:
        if self.mean is None:
            raise RuntimeError("Preprocessor.normalize before fit")
        return ((windows - self.mean) / self.std).astype(np.float32)

    def windows(self, signals: dict[str, np.ndarray]) -> np.ndarray:
        return self.normalize(self.raw_windows(signals))

    def to_dict(self) -> dict:
        return {
            "streams": [s.to_dict() for s in self.streams],
            "model_rate_hz": self.spec.model_rate_hz,
            "window_s": self.spec.window_s,
            "hop_s": self.spec.hop_s,
            "window_len": self.spec.window_len,
            "hop_len": self.spec.hop_len,
            "mean": None if self.mean is None else [float(v) for v in self.mean],
            "std": None if self.std is None else [float(v) for v in self.std],
        }

    @classmethod
    def from_dict(cls, d: dict) -> Preprocessor:
        spec = WindowSpec(float(d["model_rate_hz"]), float(d["window_s"]), float(d["hop_s"]))

        def as_array(v):
            return None if v is None else np.asarray(v, dtype=np.float32)

        return cls(tuple(StreamSpec.from_dict(s) for s in d["streams"]), spec, as_array(d["mean"]), as_array(d["std"]))
