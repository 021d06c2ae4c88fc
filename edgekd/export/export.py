"""`edgekd export`: a run's distilled student -> one self-describing .tflite file.

The file carries its metadata (classes, streams and rates, window, normalisation, split, variant), so
bench and stream need nothing else. Before the file is kept, the TFLite model runs on the run's test
windows and its decisions are compared with the Keras student's; a model below the agreement threshold
(a collapsed int8 model, for instance) is never written.
"""
from __future__ import annotations

import gzip
import os
import tempfile
import time
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

import numpy as np

import edgekd
from edgekd.compress.apply import CompressionOptions
from edgekd.distill.run import load_run
from edgekd.errors import UserError
from edgekd.export.convert import INT8_QUANTIZERS, builtin_op_names, convert
from edgekd.export.metadata_writer import embed_metadata
from edgekd.runtime.interpreter import TFLiteModel
from edgekd.runtime.metadata import model_label

# Argmax agreement with the Keras student on test windows that each variant must reach by default.
# Float variants differ only by rounding; int8 measured 90-100% on healthy models and ~20% when collapsed.
MIN_AGREEMENT = {"float32": 0.99, "float16": 0.98, "dynamic": 0.95, "int8": 0.90}
METADATA_FORMAT = "edgekd-model/1"


@dataclass
class ExportResult:
    path: Path
    variant: str
    quantizer: str | None
    bytes: int
    agreement: float
    keras_accuracy: float
    tflite_accuracy: float
    tried: dict[str, float]  # quantizer -> agreement, for every attempt
    ops: list[str]
    seconds: float
    gzip_bytes: int = 0
    compression: dict | None = None  # what compress() did: low_rank, prune (measured sparsity per layer), qat
    student_accuracy: float | None = None  # the run's uncompressed Keras student, for comparison

    @property
    def label(self) -> str:
        return model_label({"variant": self.variant, "compression": self.compression})


def export_run(run_dir: str | Path, variant: str, out: str | Path, min_agreement: float | None = None,
               compression: CompressionOptions | None = None, log=print) -> ExportResult:
    """`compression` (pruning, QAT, low rank) is applied to the student first; agreement is then measured
    against the compressed Keras model, and the accuracy of both is reported."""
    started = time.perf_counter()
    run_dir, out = Path(run_dir), Path(out)
    compression = compression or CompressionOptions()
    compression.check(variant)
    run, report = load_run(run_dir)
    if not (run_dir / "student_kd.h5").is_file():
        raise UserError(f"{run_dir}: has no student_kd.h5; run `edgekd distill` to completion first")
    threshold = MIN_AGREEMENT[variant] if min_agreement is None else min_agreement
    if not 0.0 <= threshold <= 1.0:
        raise UserError("--min-agreement is a fraction of windows in [0, 1], e.g. 0.95")

    from edgekd._tf import keras

    student = keras.models.load_model(run_dir / "student_kd.h5", compile=False)
    with np.load(run_dir / "windows.npz", allow_pickle=False) as w:
        representative, test_x, test_y = w["representative"], w["test_x"], w["test_y"]
    student_accuracy = float(np.mean(np.argmax(student(test_x, training=False).numpy(), 1) == test_y))
    done = None
    if compression.any:
        from edgekd.compress.apply import compress

        student, done = compress(student, run_dir, run, compression, log=log)
    keras_logits = student(test_x, training=False).numpy()

    quantizers = INT8_QUANTIZERS if variant == "int8" else (None,)
    tried, best = {}, None
    for quantizer in quantizers:
        log(f"converting to {variant}" + (f" with the {quantizer} quantizer" if quantizer else ""))
        try:
            flat = convert(student, variant, representative, quantizer or "mlir")
        except Exception as e:  # noqa: BLE001 - the converter raises many types; the other quantizer may succeed
            tried[quantizer or variant] = 0.0
            log(f"  the converter failed: {str(e).strip().splitlines()[-1][:200]}")
            continue
        metadata = _metadata(run, report, run_dir, variant, quantizer, done, student)
        candidate = _write_candidate(embed_metadata(flat, metadata), out)
        try:
            tflite_logits = TFLiteModel.load(candidate).predict_logits(test_x)
        except UserError as e:  # a degenerate quantization (a zero scale, say) that the runtime refuses
            candidate.unlink(missing_ok=True)
            tried[quantizer or variant] = 0.0
            log(f"  the runtime cannot load this conversion: {e.message}")
            continue
        agreement = float(np.mean(np.argmax(tflite_logits, 1) == np.argmax(keras_logits, 1)))
        tried[quantizer or variant] = agreement
        log(f"  agreement with the Keras student on {len(test_y)} test windows: {agreement:.1%}"
            + (f"; it predicts only {len(np.unique(np.argmax(tflite_logits, 1)))} class(es)" if agreement < threshold else ""))
        if best is None or agreement > best[1]:
            if best is not None:
                best[0].unlink(missing_ok=True)
            best = (candidate, agreement, quantizer, tflite_logits, metadata)
        else:
            candidate.unlink(missing_ok=True)
        if agreement >= threshold:
            break

    if best is not None and best[1] < threshold:
        best[0].unlink(missing_ok=True)
    if best is None or best[1] < threshold:
        agreement = 0.0 if best is None else best[1]
        attempts = ", ".join(f"{k} {v:.1%}" for k, v in tried.items())
        raise UserError(
            f"{out}: not written: the {variant} model agrees with the Keras student on only {agreement:.1%} of test "
            f"windows ({attempts}; needed {threshold:.0%}); export --float16 or --dynamic instead, or retrain with more data"
        )
    candidate, agreement, quantizer, tflite_logits, metadata = best
    keras_accuracy = float(np.mean(np.argmax(keras_logits, 1) == test_y))
    tflite_accuracy = float(np.mean(np.argmax(tflite_logits, 1) == test_y))
    final = embed_metadata(candidate.read_bytes(), {**metadata, "agreement": agreement, "test_accuracy": tflite_accuracy,
                                                    "keras_test_accuracy": keras_accuracy})
    candidate.write_bytes(final)
    os.replace(candidate, out)
    return ExportResult(out, variant, quantizer, len(final), agreement, keras_accuracy, tflite_accuracy, tried,
                        builtin_op_names(final), time.perf_counter() - started,
                        gzip_bytes=len(gzip.compress(final, compresslevel=9, mtime=0)), compression=done,
                        student_accuracy=student_accuracy)


def _write_candidate(model_bytes: bytes, out: Path) -> Path:
    """Write next to the destination under a temporary name: renamed into place only once it passes."""
    out.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=out.parent, prefix=f".{out.name}.", suffix=".tmp")
    with os.fdopen(fd, "wb") as f:
        f.write(model_bytes)
    return Path(tmp)


def _metadata(run: dict, report: dict, run_dir: Path, variant: str, quantizer: str | None, compression: dict | None,
              model) -> dict:
    from edgekd.models.build import count_params

    extra = {} if not compression else {"compression": compression}
    return {
        "format": METADATA_FORMAT,
        "classes": run["classes"],
        "preprocessing": run["preprocessing"],
        "split": run["split"],
        "dataset": run["dataset"],
        "architecture": run["architectures"]["student"],
        "params": count_params(model),
        "variant": variant,
        "quantizer": quantizer,
        "run": str(run_dir.resolve()),
        "run_test_accuracy": report["test_accuracy"],
        "exported_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "edgekd_version": edgekd.__version__,
        **extra,
    }
