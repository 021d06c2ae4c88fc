"""`edgekd bench`: bytes, load time, per-window latency and peak memory of .tflite models, and accuracy on a dataset.

Device side: numpy, scipy and a TFLite runtime only (LiteRT, or TensorFlow Lite Micro's interpreter with
`runtime="tflm"`). Every timed invoke starts from reset LSTM state, as live inference does. How the models compare
(agreement with float, Pareto front) is edgekd.runtime.frontier, which reads these results.
"""

from __future__ import annotations

import gzip
import json
import time
from dataclasses import dataclass, field, fields
from pathlib import Path

import numpy as np

from edgekd.data.dataset import Dataset, load_dataset
from edgekd.data.prepare import check_dataset_fits, check_labels_known, check_streams_fit, recording_windows
from edgekd.data.splits import select_recordings, split_indices_from_dict
from edgekd.data.windows import Preprocessor
from edgekd.errors import UserError
from edgekd.runtime.interpreter import TFLiteModel
from edgekd.runtime.memory import measure_peak_rss_kb
from edgekd.runtime.metadata import model_label


@dataclass
class BenchResult:
    model: str
    variant: str | None
    bytes: int
    gzip_bytes: int
    init_ms: float
    first_invoke_ms: float
    latency_ms: dict[str, float]  # p50, p90, p99
    accuracy: float | None
    windows: int | None  # test windows the accuracy is measured on (the recorded test split, or --where's recordings)
    runtime: str
    threads: int
    # What the metadata says about the model; defaults keep hand-made results (tests) short.
    label: str | None = None  # e.g. "int8+prune50", see model_label
    run: str | None = None  # the distill run it was exported from
    compression: dict | None = None
    export_agreement: float | None = None  # argmax agreement with the Keras float student, measured at export
    peak_rss_kb: int | None = None  # peak RSS the model adds on top of the imported runtime
    arena_bytes: int | None = None  # runtime "tflm": the smallest tensor arena TFLM runs the model in
    predictions: np.ndarray | None = field(default=None, repr=False, compare=False)  # argmax per test window
    # Filled by edgekd.runtime.frontier.compare, which needs every benched model.
    agreement_with_float: float | None = None
    agreement_source: str | None = None  # "bench" (a benched float32 model of the run) or "export"
    pareto: bool | None = None

    def to_dict(self) -> dict:
        """Every field but the per-window predictions, which are for comparing models, not for reports."""
        return {f.name: getattr(self, f.name) for f in fields(self) if f.name != "predictions"}


def bench_model(
    path: str | Path,
    data: str | Path | None = None,
    runs: int = 200,
    warmup: int = 20,
    threads: int = 1,
    measure_memory: bool = True,
    where: dict[str, list[str]] | None = None,
    runtime: str = "litert",
) -> BenchResult:
    """`where` ({key: values}, splits.parse_where): measure accuracy on those recordings of `data` instead of the
    test split recorded in the model. `runtime` "tflm": under TensorFlow Lite Micro's interpreter in its smallest
    arena, which the result reports instead of peak RSS (a host process's RSS says nothing of a microcontroller)."""
    if runs < 1 or warmup < 0 or threads < 1:
        raise UserError("--runs and --threads must be at least 1, --warmup at least 0")
    arena = None
    if runtime == "tflm":
        from edgekd.runtime.tflm import load_tflm

        if threads != 1:
            raise UserError("--runtime tflm runs one thread, as on a microcontroller; drop --threads")
        model, arena = load_tflm(path)
        measure_memory = False
    else:
        model = TFLiteModel.load(path, num_threads=threads)
    raw = model.model_bytes
    accuracy = n_windows = predictions = None
    if data is not None:
        x, y = _cached_held_out_windows(model, data, where)
        predictions = np.argmax(model.predict_logits(x), 1)
        accuracy, n_windows = float(np.mean(predictions == y)), len(y)
        timing_windows = x
    else:  # no data: standard-normal windows, the scale of z-scored input
        timing_windows = np.random.default_rng(0).standard_normal((64, *model.window_shape)).astype(np.float32)

    start = time.perf_counter()
    model.invoke_once(timing_windows[0])
    first_ms = (time.perf_counter() - start) * 1e3
    for i in range(warmup):
        model.invoke_once(timing_windows[i % len(timing_windows)])
    times = np.empty(runs)
    for i in range(runs):
        window = timing_windows[i % len(timing_windows)]
        start = time.perf_counter()
        model.invoke_once(window)
        times[i] = (time.perf_counter() - start) * 1e3
    p50, p90, p99 = np.percentile(times, [50, 90, 99])
    meta = model.metadata or {}
    return BenchResult(
        model=str(path),
        variant=meta.get("variant"),
        bytes=len(raw),
        gzip_bytes=len(gzip.compress(raw, compresslevel=9, mtime=0)),
        init_ms=model.init_ms,
        first_invoke_ms=first_ms,
        latency_ms={"p50": float(p50), "p90": float(p90), "p99": float(p99)},
        accuracy=accuracy,
        windows=n_windows,
        runtime=model.runtime,
        threads=threads,
        label=model_label(meta),
        run=meta.get("run"),
        compression=meta.get("compression"),
        export_agreement=meta.get("agreement"),
        peak_rss_kb=measure_peak_rss_kb(path, threads) if measure_memory else None,
        arena_bytes=arena,
        predictions=predictions,
    )


_held_out: dict[tuple, tuple[np.ndarray, np.ndarray]] = {}


def _cached_held_out_windows(model: TFLiteModel, data: str | Path, where=None) -> tuple[np.ndarray, np.ndarray]:
    """Models exported from one run share their test windows: a frontier of many variants windows them once."""
    meta = model.metadata or {}
    key = (
        str(Path(data).resolve()),
        json.dumps([meta.get(k) for k in ("preprocessing", "split", "classes")] + [where], sort_keys=True),
    )
    if key not in _held_out:
        _held_out.clear()  # one dataset's windows at a time: they can be hundreds of MB
        _held_out[key] = held_out_windows(model, load_dataset(data), where)
    return _held_out[key]


def held_out_windows(
    model: TFLiteModel, dataset: Dataset, where: dict[str, list[str]] | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """The test split recorded in the model, or with `where` the recordings it selects (of any dataset with the
    model's streams and classes), windowed and normalised exactly as in training."""
    meta = model.metadata
    if not meta or "preprocessing" not in meta:
        raise UserError(
            f"{model.path}: carries no edgekd metadata, so its test split and normalisation are unknown; "
            f"export it with `edgekd export` or bench it without --data"
        )
    preprocessor = Preprocessor.from_dict(meta["preprocessing"])
    if where:
        check_streams_fit(dataset, preprocessor, f"the model {model.path}")
        indices = select_recordings(dataset, where)
        check_labels_known(dataset, indices, meta["classes"], f"the model {model.path}")
        windows = recording_windows(dataset, indices, preprocessor, classes=meta["classes"])
        return windows.x, windows.y
    check_dataset_fits(dataset, preprocessor, meta["classes"], f"the model {model.path}")
    indices = split_indices_from_dict(dataset, meta["split"], "test")
    if not indices:
        raise UserError(
            f"{dataset.root}: holds none of the model's test recordings ({meta['split']['method']} "
            f"{meta['split']['test']}); bench with the dataset the model was trained on"
        )
    windows = recording_windows(dataset, indices, preprocessor)
    return windows.x, windows.y
