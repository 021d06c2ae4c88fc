"""Turn a dataset and a split into normalised window arrays, one per part."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from edgekd.data.dataset import Dataset, natural_sorted
from edgekd.data.splits import PARTS, Split
from edgekd.data.windows import Preprocessor, WindowSpec
from edgekd.errors import UserError


@dataclass
class Windows:
    x: np.ndarray  # (n, window_len, channels), float32, normalised
    y: np.ndarray  # (n,), int class index
    recording: np.ndarray  # (n,), index into dataset.recordings: lets tests prove no recording leaks


def recording_windows(
    dataset: Dataset,
    indices: list[int],
    preprocessor: Preprocessor,
    normalized: bool = True,
    classes: tuple[str, ...] | list[str] | None = None,
) -> Windows:
    """`classes`: the order labels are numbered in (a model's classes); default the dataset's own."""
    label_index = (dataset.classes if classes is None else tuple(classes)).index
    xs, ys, recs = [], [], []
    for i in indices:
        rec = dataset.recordings[i]
        signals = dataset.load_signals(rec)
        w = preprocessor.raw_windows(signals)
        if len(w) == 0:
            raise UserError(
                f"{dataset.root / rec.path}: {dataset.duration_s(signals):.2f} s is shorter than one "
                f"{preprocessor.spec.window_s} s window; use a shorter --window or drop row {rec.row} of "
                f"{dataset.index_path}"
            )
        xs.append(w)
        ys.append(np.full(len(w), label_index(rec.label)))
        recs.append(np.full(len(w), i))
    if not xs:
        empty = np.empty((0, preprocessor.spec.window_len, preprocessor.channels), np.float32)
        return Windows(empty, np.empty(0, np.int64), np.empty(0, np.int64))
    x = np.concatenate(xs)
    return Windows(
        preprocessor.normalize(x) if normalized else x, np.concatenate(ys).astype(np.int64), np.concatenate(recs)
    )


def prepare_windows(dataset: Dataset, split: Split, spec: WindowSpec) -> tuple[Preprocessor, dict[str, Windows]]:
    """Windows for train/val/test, z-scored with statistics of the training windows only."""
    try:
        raw = Preprocessor(dataset.streams, spec)
    except UserError as e:
        raise UserError(f"{dataset.root / 'dataset.toml'}: {e.message}") from None
    train = recording_windows(dataset, split.indices["train"], raw, normalized=False)
    for k, label in enumerate(dataset.classes):
        if not np.any(train.y == k):
            raise UserError(
                f"{dataset.index_path}: class '{label}' has no training windows under --split {split.method}; "
                f"add recordings of it to the training subjects/repetitions or hold out others"
            )
    fitted = raw.fit(train.x)
    parts = {"train": Windows(fitted.normalize(train.x), train.y, train.recording)}
    for part in PARTS[1:]:
        parts[part] = recording_windows(dataset, split.indices[part], fitted)
        if len(parts[part].y) == 0:
            raise UserError(
                f"{dataset.index_path}: the {part} split has no recordings; hold out another subject or repetition"
            )
    return fitted, parts


def check_dataset_fits(dataset: Dataset, preprocessor: Preprocessor, classes, model: str) -> None:
    """A UserError unless `dataset` has the streams, channels and classes that `model` was trained on."""
    check_streams_fit(dataset, preprocessor, model)
    if tuple(classes) != dataset.classes:
        raise UserError(
            f"{dataset.root / 'dataset.toml'}: classes {list(dataset.classes)} differ from those of {model} "
            f"({list(classes)}); use the dataset it was trained on"
        )


def check_streams_fit(dataset: Dataset, preprocessor: Preprocessor, model: str) -> None:
    """A UserError unless `dataset` has the streams, channels (names and order) and sample rates that `model` reads
    (the model's windows are cut at its own rates)."""
    model_streams = {s.name: (s.channels, float(s.rate_hz)) for s in preprocessor.streams}
    data_streams = {s.name: (s.channels, float(s.rate_hz)) for s in dataset.streams}
    if model_streams != data_streams:
        raise UserError(
            f"{dataset.root / 'dataset.toml'}: streams {_describe(data_streams)} do not match those of "
            f"{model} ({_describe(model_streams)}); use a dataset recorded with the same streams, channels "
            f"and sample rates"
        )


def check_labels_known(dataset: Dataset, indices: list[int], classes, model: str) -> None:
    """A UserError unless every chosen recording's label is one of the model's classes (in any order)."""
    unknown = natural_sorted({dataset.recordings[i].label for i in indices} - set(classes))
    if unknown:
        raise UserError(
            f"{dataset.index_path}: the chosen recordings are labelled {', '.join(unknown)}, which {model} does not "
            f"know (its classes: {', '.join(classes)}); choose recordings of its classes with --where"
        )


def _describe(streams: dict) -> str:
    return ", ".join(f"{name} ({len(ch)} ch, {rate:g} Hz)" for name, (ch, rate) in streams.items())
