"""From a recording's streams to model input: align rates, cut sliding windows, z-score per channel.

This is the one place windows are built. Training, export, bench and live streaming all go through
`Preprocessor.windows`, so what the device sees is what the model was trained on.
"""
from __future__ import annotations

from dataclasses import dataclass
from fractions import Fraction

import numpy as np
from scipy.signal import resample_poly

from edgekd.data.dataset import StreamSpec
from edgekd.errors import UserError

_MIN_STD = 1e-6  # a flat channel (a dead electrode) must not blow up to inf after z-scoring


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


def resample_ratio(from_hz: float, to_hz: float) -> tuple[int, int]:
    """(up, down) for polyphase resampling; rates like 1111.1 Hz need a rational approximation."""
    ratio = Fraction(to_hz / from_hz).limit_denominator(1000)
    return ratio.numerator, ratio.denominator


def align_streams(signals: dict[str, np.ndarray], streams: tuple[StreamSpec, ...], model_rate_hz: float) -> np.ndarray:
    """Resample every stream to the model rate and stack channels in stream order: (samples, channels)."""
    parts = []
    for stream in streams:
        x = np.asarray(signals[stream.name], dtype=np.float32)
        up, down = resample_ratio(stream.rate_hz, model_rate_hz)
        if up != down:
            # padtype="line" avoids the edge transients that zero padding adds to offset signals (gravity on an accelerometer)
            x = resample_poly(x, up, down, axis=0, padtype="line").astype(np.float32)
        parts.append(x)
    length = min(len(p) for p in parts)  # streams of one recording end a few samples apart
    return np.concatenate([p[:length] for p in parts], axis=1)


def cut_windows(aligned: np.ndarray, window_len: int, hop_len: int) -> np.ndarray:
    """Sliding windows (n, window_len, channels); a tail shorter than a hop is dropped."""
    if len(aligned) < window_len:
        return np.empty((0, window_len, aligned.shape[1]), dtype=np.float32)
    view = np.lib.stride_tricks.sliding_window_view(aligned, window_len, axis=0)[::hop_len]
    return np.ascontiguousarray(view.transpose(0, 2, 1), dtype=np.float32)


@dataclass(frozen=True)
class Preprocessor:
    """Everything that turns raw streams into normalised model input; travels inside the exported model."""

    streams: tuple[StreamSpec, ...]
    spec: WindowSpec
    mean: np.ndarray | None = None  # per channel, from training windows only
    std: np.ndarray | None = None

    @property
    def channels(self) -> int:
        return sum(len(s.channels) for s in self.streams)

    def raw_windows(self, signals: dict[str, np.ndarray]) -> np.ndarray:
        aligned = align_streams(signals, self.streams, self.spec.model_rate_hz)
        return cut_windows(aligned, self.spec.window_len, self.spec.hop_len)

    def fit(self, train_windows: np.ndarray) -> "Preprocessor":
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
    def from_dict(cls, d: dict) -> "Preprocessor":
        spec = WindowSpec(float(d["model_rate_hz"]), float(d["window_s"]), float(d["hop_s"]))
        as_array = lambda v: None if v is None else np.asarray(v, dtype=np.float32)  # noqa: E731
        return cls(tuple(StreamSpec.from_dict(s) for s in d["streams"]), spec, as_array(d["mean"]), as_array(d["std"]))
