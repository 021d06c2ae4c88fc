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
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

import numpy as np

import edgekd
from edgekd.compress.apply import CompressionOptions
from edgekd.distill.run import load_run, load_run_windows
from edgekd.errors import UserError
from edgekd.export import formats
from edgekd.export.convert import INT8_QUANTIZERS, builtin_op_names
from edgekd.export.metadata_writer import embed_metadata, embed_signed_metadata
from edgekd.io import check_output, file_mode
from edgekd.models.saved import load_model
from edgekd.runtime.interpreter import TFLiteModel
from edgekd.runtime.metadata import model_label
from edgekd.runtime.personalize import RECORD_ROOM

# Read from edgekd/export/formats.py, where each variant's default is declared, for benchmarks/ that import it here.
MIN_AGREEMENT = {f.name: f.min_agreement for f in formats.VARIANTS}
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
    classical_branch: dict | None = None  # --classical-branch: models/hybrid.Branch.describe(), "kept" among it
    made: dict[str, dict] | None = None  # files made from the .tflite, per format row: {"tflm": {"files": ...}}

    @property
    def label(self) -> str:
        return model_label({"variant": self.variant, "compression": self.compression})


def export_run(
    run_dir: str | Path,
    variant: str,
    out: str | Path,
    min_agreement: float | None = None,
    compression: CompressionOptions | None = None,
    log=print,
    classical_branch: str = "none",
    force: bool = False,
    progress: bool = True,
    made_from: tuple[str, ...] = (),
) -> ExportResult:
    """`compression` (pruning, QAT, low rank) is applied to the student first; agreement is then measured
    against the compressed Keras model, and the accuracy of both is reported. `classical_branch` "lda": the
    (compressed) student and the LDA baseline in one model (models/hybrid.py), fitted on the run's training windows
    and calibrated on its validation windows, which are rebuilt from the dataset (compression.data if it moved).
    An existing `out` is replaced only with `force`, and never when it is one of a run's own files. `progress`: a live
    line per fine-tuning. `made_from`: names of formats.FORMATS rows whose files are made from the .tflite (--target
    mcu: "tflm"), checked by their verifier before the .tflite is put in place."""
    started = time.perf_counter()
    run_dir, out = Path(run_dir), check_output(out, "--out", force)
    compression = compression or CompressionOptions()
    request = _check_request(run_dir, variant, out, min_agreement, compression, classical_branch, made_from, force)
    windows = load_run_windows(run_dir)
    student = _prepare_student(request, windows["test_x"], windows["test_y"], compression, log, progress)
    best = _convert_agreeing(request, student, windows["representative"], windows["test_x"], log)
    final, ops, made = _put_in_place(request, best, windows["test_x"], windows["test_y"], log)
    return ExportResult(
        out,
        variant,
        best.quantizer,
        len(final),
        best.agreement,
        best.metadata["keras_test_accuracy"],
        best.metadata["test_accuracy"],
        request.tried,
        ops,
        time.perf_counter() - started,
        gzip_bytes=len(gzip.compress(final, compresslevel=9, mtime=0)),
        compression=best.done,
        student_accuracy=student.accuracy,
        classical_branch=student.branch.describe() if student.branch else None,
        made=made or None,
    )


@dataclass
class _Request:
    """What export_run was asked for, checked before minutes of work start."""

    run_dir: Path
    run: dict
    report: dict
    variant: str
    out: Path
    threshold: float  # least agreement with the Keras model
    made_rows: list[formats.ExportFormat]
    classical_branch: str
    tried: dict = field(default_factory=dict)  # agreement of each conversion tried, for the result and errors


def _check_request(run_dir, variant, out, min_agreement, compression, classical_branch, made_from, force) -> _Request:
    made_rows = [formats.find(name, variant=False) for name in made_from]
    for row in made_rows:
        for path in row.files(out):
            if path == out:
                raise UserError(f"{out}: {row.name} writes {path.name} from it; give --out a .tflite name")
            check_output(path, "--out", force)  # now, not after minutes of converting
    compression.check(variant)
    check_classical_branch(classical_branch, compression)
    run, report = load_run(run_dir)
    if not (run_dir / "student_kd.h5").is_file():
        raise UserError(f"{run_dir}: has no student_kd.h5; run `edgekd distill` to completion first")
    if run.get("selector") and compression.any:
        raise UserError(
            f"{run_dir}: is a selector system (--students ... --selector); --prune, --qat and --low-rank "
            f"compress one student and cannot be applied to it; export it without them"
        )
    threshold = formats.find(variant, variant=True).min_agreement if min_agreement is None else min_agreement
    if not 0.0 <= threshold <= 1.0:
        raise UserError("--min-agreement is a fraction of windows in [0, 1], e.g. 0.95")
    return _Request(run_dir, run, report, variant, out, threshold, made_rows, classical_branch)


@dataclass
class _Student:
    """The Keras model to convert: the run's student, compressed and with the LDA branch as asked."""

    model: object
    accuracy: float  # the run's student before compression, on the test windows
    compressed: object | None  # compress.apply's result, None without compression
    branch: object | None  # models/hybrid.py's branch with --classical-branch


def _prepare_student(request: _Request, test_x, test_y, compression, log, progress) -> _Student:
    student = _load_student(request.run_dir, request.run)
    accuracy = float(np.mean(np.argmax(student(test_x, training=False).numpy(), 1) == test_y))
    compressed = None
    if compression.any:
        from edgekd.compress.apply import compress

        compressed = compress(student, request.run_dir, request.run, compression, log=log, progress=progress)
        student = compressed.model
    branch = None
    if request.classical_branch != "none":
        student, branch = _with_branch(student, request.run_dir, request.run, compression.data, log)
    return _Student(student, accuracy, compressed, branch)


def _convert_agreeing(request: _Request, student: _Student, representative, test_x, log) -> _Conversion:
    """The best conversion (int8 QAT: or the post-training one, by validation), refused below the threshold."""
    r, compressed = request, student.compressed
    done = compressed.done if compressed else None
    per_channel = not (done and "cluster" in done)
    if not per_channel and r.variant in ("dynamic", "int8"):
        log(
            "quantizing with one scale per weight tensor: per-channel scales would turn each kernel's shared values "
            "into as many per output channel"
        )

    def metadata_for(model, quantizer, done):
        return _metadata(r.run, r.report, r.run_dir, r.variant, quantizer, done, model, student.branch)

    best = convert_checked(
        student.model,
        r.variant,
        representative,
        test_x,
        r.threshold,
        r.out,
        lambda q: metadata_for(student.model, q, done),
        r.tried,
        log,
        per_channel=per_channel,
        float_layers=student.branch.float_layers if student.branch and student.branch.kept else (),
    )
    if best is not None:
        best.done = done
    if compressed is not None and compressed.before_qat is not None and best is not None:
        best, done = _qat_or_post_training(
            best,
            compressed,
            representative,
            test_x,
            r.threshold,
            r.out,
            lambda q, d: _metadata(r.run, r.report, r.run_dir, r.variant, q, d, compressed.before_qat),
            log,
        )
        best.done = done
    if best is not None and best.agreement < r.threshold:
        best.path.unlink(missing_ok=True)
    if best is None or best.agreement < r.threshold:
        agreement = 0.0 if best is None else best.agreement
        attempts = ", ".join(f"{k} {v:.1%}" for k, v in r.tried.items())
        raise UserError(
            f"{r.out}: not written: the {r.variant} model agrees with the Keras student on only {agreement:.1%} of "
            f"test windows ({attempts}; needed {r.threshold:.0%}); export --float16 or --dynamic instead, or "
            f"retrain with more data"
        )
    return best


def _put_in_place(request: _Request, best: _Conversion, test_x, test_y, log) -> tuple[bytes, list[str], dict]:
    """Sign the file with its measured accuracies, verify and write the files made from it, then rename it to
    --out: any failure before the rename leaves the user's files as they were. Returns (the file, its ops, made
    files)."""
    best.metadata = {
        **best.metadata,
        "agreement": best.agreement,
        "test_accuracy": float(np.mean(np.argmax(best.logits, 1) == test_y)),
        "keras_test_accuracy": float(np.mean(np.argmax(best.keras_logits, 1) == test_y)),
    }
    final = embed_signed_metadata(best.path.read_bytes(), best.metadata, reserve=RECORD_ROOM)
    best.path.write_bytes(final)
    ops = builtin_op_names(final)
    try:
        made = {}
        for row in request.made_rows:
            check = _verify(row, best.path, request.out, test_x, best.logits, log)
            made[row.name] = _convert_from(row, request.out, final, ops, check)
    except BaseException:
        best.path.unlink(missing_ok=True)
        raise
    os.chmod(best.path, file_mode(request.out))
    os.replace(best.path, request.out)
    return final, ops, made


def _verify(row: formats.ExportFormat, candidate: Path, out: Path, test_x, litert_logits, log):
    """The row's verifier on the final .tflite, not yet in place at `out`; None where the verifier's runtime is an
    optional extra that is not installed (the verifier says so)."""
    try:
        check = row.function("verifier")(candidate, test_x, litert_logits, log)
    except UserError as e:  # name the file the user asked for, not the candidate that is about to go
        raise UserError(str(e).replace(str(candidate), str(out))) from None
    if check is not None and check.agreement < row.min_agreement:
        raise UserError(
            f"{out}: not written: under TensorFlow Lite Micro it picks LiteRT's class on only {check.agreement:.1%} "
            f"of test windows (needed {row.min_agreement:.0%}), so firmware would not decide as the file checked "
            f"here; export without --target mcu for LiteRT, and report the run as a bug"
        )
    return check


def _convert_from(row: formats.ExportFormat, tflite: Path, model: bytes, ops: list[str], check) -> dict:
    """The row's converter on the exported .tflite (`model`, to be put at `tflite`): {"files": [...], the check}."""
    note = f"measured by {check.runtime}'s interpreter at export" if check else "tflite-micro was not installed"
    arena = check.arena_bytes if check else None
    files = row.function("converter")(tflite, row.files(tflite), ops, arena, note, model=model)
    return {"files": [str(f) for f in files], "check": check}


@dataclass
class _Conversion:
    path: Path  # a candidate file next to the destination, not yet renamed into place
    agreement: float  # with the Keras model it was converted from, on the test windows
    quantizer: str | None
    logits: np.ndarray  # TFLite, on the test windows
    keras_logits: np.ndarray
    metadata: dict
    done: dict | None = None  # the compression steps applied to the model it was converted from


def convert_checked(
    model,
    variant: str,
    representative,
    test_x,
    threshold: float,
    out: Path,
    metadata_for,
    tried: dict,
    log,
    per_channel: bool = True,
    float_layers: tuple[str, ...] = (),
) -> _Conversion | None:
    """The conversion that agrees best with `model` (int8: the MLIR quantizer, then the legacy one if needed;
    with `float_layers`, convert.py's selective quantization, MLIR only)."""
    keras_logits = model(test_x, training=False).numpy()
    row = formats.find(variant, variant=True)
    converter, verifier = row.function("converter"), row.function("verifier")
    best = None
    quantizers = (INT8_QUANTIZERS[:1] if float_layers else INT8_QUANTIZERS) if variant == "int8" else (None,)
    for quantizer in quantizers:
        log(
            f"converting to {variant}"
            + (f" with the {quantizer} quantizer" if quantizer else "")
            + (f", {', '.join(float_layers)} in float32" if float_layers and variant == "int8" else "")
        )
        try:
            flat = converter(
                model, variant, representative, quantizer or "mlir", per_channel=per_channel, float_layers=float_layers
            )
        except Exception as e:  # noqa: BLE001 - the converter raises many types; the other quantizer may succeed
            tried[quantizer or variant] = 0.0
            log(f"  the converter failed: {str(e).strip().splitlines()[-1][:200]}")
            continue
        metadata = metadata_for(quantizer)
        candidate = _write_candidate(embed_metadata(flat, metadata), out)
        try:
            agreement, logits = verifier(candidate, test_x, keras_logits)
        except UserError as e:  # a degenerate quantization (a zero scale, say) that the runtime refuses
            candidate.unlink(missing_ok=True)
            tried[quantizer or variant] = 0.0
            log(f"  the runtime cannot load this conversion: {e.message}")
            continue
        tried[quantizer or variant] = agreement
        log(
            f"  agreement with the Keras model on {len(test_x)} test windows: {agreement:.1%}"
            + (f"; it predicts only {len(np.unique(np.argmax(logits, 1)))} class(es)" if agreement < threshold else "")
        )
        if best is None or agreement > best.agreement:
            if best is not None:
                best.path.unlink(missing_ok=True)
            best = _Conversion(candidate, agreement, quantizer, logits, keras_logits, metadata)
        else:
            candidate.unlink(missing_ok=True)
        if agreement >= threshold:
            break
    return best


def keras_agreement(candidate: Path, test_x, keras_logits) -> tuple[float, np.ndarray]:
    """(share of test windows where the .tflite under LiteRT picks the Keras model's class, its logits)."""
    logits = TFLiteModel.load(candidate).predict_logits(test_x)
    return float(np.mean(np.argmax(logits, 1) == np.argmax(keras_logits, 1))), logits


def _qat_or_post_training(
    qat: _Conversion, compressed, representative, test_x, threshold: float, out: Path, metadata_for, log
) -> tuple[_Conversion, dict]:
    """QAT fine-tuning also moves the weights, and on a weak student that can cost more than quantization does.
    The model QAT started from is converted post-training as well; the one with the better int8 validation
    accuracy is kept, and the output says which and why."""
    log("converting the model QAT started from post-training, to keep whichever int8 model validates better")
    ptq_done = {**compressed.done, "qat": False}
    ptq = convert_checked(
        compressed.before_qat,
        "int8",
        representative,
        test_x,
        threshold,
        out,
        lambda q: metadata_for(q, ptq_done),
        {},
        log,
    )
    val_x, val_y = compressed.data.val_x, compressed.data.val_y

    def accuracy(conversion: _Conversion) -> float:
        return float(np.mean(np.argmax(TFLiteModel.load(conversion.path).predict_logits(val_x), 1) == val_y))

    qat_val = accuracy(qat)
    ptq_val = accuracy(ptq) if ptq is not None and ptq.agreement >= threshold else -1.0
    if ptq_val > qat_val:
        log(f"kept post-training int8: validation accuracy {ptq_val:.1%} against {qat_val:.1%} with QAT")
        qat.path.unlink(missing_ok=True)
        ptq.metadata["notes"] = [
            f"--qat: post-training int8 kept; validation accuracy {ptq_val:.4f}, QAT int8 {qat_val:.4f}"
        ]
        return ptq, ptq_done
    log(
        f"kept QAT int8: validation accuracy {qat_val:.1%}"
        + (f" against {ptq_val:.1%} post-training" if ptq_val >= 0 else "")
    )
    if ptq is not None:
        ptq.path.unlink(missing_ok=True)
    done = {
        **compressed.done,
        "qat": {
            **compressed.done["qat"],
            "val_accuracy": qat_val,
            "post_training_val_accuracy": None if ptq_val < 0 else ptq_val,
        },
    }
    qat.metadata["compression"] = done
    return qat, done


def _write_candidate(model_bytes: bytes, out: Path) -> Path:
    """Write next to the destination under a temporary name: renamed into place only once it passes."""
    out.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=out.parent, prefix=f".{out.name}.", suffix=".tmp")
    with os.fdopen(fd, "wb") as f:
        f.write(model_bytes)
    return Path(tmp)


def check_classical_branch(kind: str, compression: CompressionOptions) -> None:
    """Before TensorFlow is imported: a bad --classical-branch fails at once."""
    from edgekd.models.classical import CLASSICAL_BRANCHES

    if kind not in CLASSICAL_BRANCHES:
        raise UserError(f"--classical-branch must be one of {', '.join(CLASSICAL_BRANCHES)}, not {kind!r}")
    if kind != "none" and compression.qat:
        raise UserError(
            f"--classical-branch {kind} and --qat cannot be combined: QAT fine-tunes the student's int8 ranges "
            f"alone; export --classical-branch {kind} --int8 without --qat (post-training int8 covers both)"
        )


def _with_branch(student, run_dir: Path, run: dict, data, log):
    """(the student with the LDA branch, the branch): models/hybrid.py, on the run's rebuilt windows."""
    from edgekd.distill.replay import dataset_path_of, load_run_windows
    from edgekd.models.hybrid import hybrid

    dataset = dataset_path_of(run_dir, run, data, "--classical-branch fits the LDA on the run's training windows")
    log("fitting the LDA branch on the run's training windows, calibrating it on the validation windows")
    parts = load_run_windows(run_dir, run, dataset, ("train", "val"))
    model, branch = hybrid(
        student, parts["train"].x, parts["train"].y, parts["val"].x, parts["val"].y, len(run["classes"])
    )
    accuracies = (
        f"validation accuracy {branch.val_accuracy:.1%} with it at T={branch.temperature:g}, "
        f"{branch.student_val_accuracy:.1%} without"
    )
    if not branch.kept:
        log(
            f"  the LDA branch is left out: it does not raise the validation accuracy ({accuracies}); "
            f"exporting the student alone"
        )
        return model, branch
    log(f"  LDA temperature {branch.temperature:g}, chosen on the validation windows ({accuracies})")
    return model, branch


def _load_student(run_dir: Path, run: dict):
    """The run's student, or for a --selector run the whole system: selector.h5 routing between its students."""
    student = load_model(run_dir / "student_kd.h5")
    if not run.get("selector"):
        return student
    from edgekd.distill.selector import system_model

    paths = [run_dir / f"student_kd_{j}.h5" for j in range(1, len(run["students"]))] + [run_dir / "selector.h5"]
    missing = [p.name for p in paths if not p.is_file()]
    if missing:
        raise UserError(f"{run_dir}: the selector system lacks {', '.join(missing)}; run `edgekd distill` again")
    others = [load_model(p) for p in paths[:-1]]
    return system_model([student, *others], load_model(paths[-1]))


def _architecture(run: dict, branch=None) -> str:
    if run.get("selector"):
        name = f"selector system ({' + '.join(run['students'])})"
    else:
        name = run["architectures"]["student"]
    return f"{name} + LDA branch" if branch is not None and branch.kept else name


def _metadata(
    run: dict,
    report: dict,
    run_dir: Path,
    variant: str,
    quantizer: str | None,
    compression: dict | None,
    model,
    branch=None,
) -> dict:
    from edgekd.models.build import count_params

    extra = {} if not compression else {"compression": compression}
    if branch is not None:
        extra["classical_branch"] = branch.describe()
    return {
        "format": METADATA_FORMAT,
        "classes": run["classes"],
        "preprocessing": run["preprocessing"],
        "split": run["split"],
        "dataset": run["dataset"],
        "architecture": _architecture(run, branch),
        "params": count_params(model),
        "variant": variant,
        "quantizer": quantizer,
        "run": str(run_dir.resolve()),
        "run_test_accuracy": report["test_accuracy"],
        "exported_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "edgekd_version": edgekd.__version__,
        **extra,
    }
