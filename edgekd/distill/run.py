"""`edgekd distill`: teachers -> ensemble -> scratch student and KD student, written to a run folder.

distill() runs the stages of distill/stages.py (prepare, teachers, targets, students, evaluate) and writes what they
give. The run folder holds everything export needs:
    run.json                 classes, preprocessing (streams, rates, window, normalisation), split, config
    teacher_<i>.h5        each teacher (how they were made: run.json's "teachers" block, see distill/teachers.py)
    student_kd.h5         the distilled student (what export converts)
    student_scratch.h5    the same architecture trained on labels only (the baseline)
    windows.npz              representative training windows and the test windows with labels
    report.json              accuracies (with the classical LDA / random-forest baseline), teacher diversity,
                             sizes, timings
                             (written last: its presence means the run finished)
"""

from __future__ import annotations

import functools
import json
import time
from dataclasses import asdict
from pathlib import Path

import numpy as np

from edgekd.distill.options import DistillConfig
from edgekd.distill.stages import (
    Evaluation,
    Prepared,
    Presets,
    Students,
    Targets,
    TeacherSet,
    describe,
    evaluate,
    load_presets,
    log_to,
    make_targets,
    prepare,
    train_students,
    train_teachers,
)
from edgekd.errors import UserError
from edgekd.io import write_bytes_atomic, write_json_atomic
from edgekd.models.classical import FEATURES, ZC_SSC_THRESHOLD
from edgekd.models.saved import save_model

REPRESENTATIVE_WINDOWS = 500  # enough to calibrate int8 ranges; keeps the run folder small


def distill(cfg: DistillConfig) -> dict:
    """The run folder of `cfg`, stage by stage; returns its report."""
    cfg.check()
    out, log, clock = Path(cfg.out), log_to(cfg), Stopwatch()
    if (out / "report.json").exists():
        raise UserError(f"{out}: already holds a finished run; choose another --out or delete it")
    presets = load_presets(cfg)
    data = prepare(cfg)
    clock.lap("prepare")
    log(describe(data))
    out.mkdir(parents=True, exist_ok=True)
    # TensorFlow is imported only from here on, once the data has passed its checks: bad input fails within a second.
    teachers = train_teachers(cfg, data, presets.teacher, log)
    save_models(out, {f"teacher_{i}": t.model for i, t in enumerate(teachers.teachers)})
    clock.lap("teachers")
    targets = make_targets(cfg, data, teachers, presets.students)
    clock.lap("soft_targets")
    students = train_students(cfg, data, targets, presets, log)
    save_models(out, student_files(students))
    clock.add(students.timings)
    evaluation = evaluate(cfg, data, teachers, targets, students, log)
    clock.add(evaluation.timings)
    _save_windows(out / "windows.npz", **run_windows(data, cfg.seed))
    write_json_atomic(out / "run.json", run_record(cfg, presets, data, teachers))
    report = report_of(cfg, presets, data, teachers, targets, students, evaluation, clock.total())
    write_json_atomic(out / "report.json", report)
    return report


class Stopwatch:
    """Seconds per stage, for the report's timings."""

    def __init__(self):
        self.started = self.last = time.perf_counter()
        self.timings: dict[str, float] = {}

    def lap(self, name: str) -> None:
        now = time.perf_counter()
        self.timings[name], self.last = now - self.last, now

    def add(self, timings: dict[str, float]) -> None:
        """A stage that timed its own parts."""
        self.timings.update(timings)
        self.last = time.perf_counter()

    def total(self) -> dict[str, float]:
        return {**self.timings, "total": time.perf_counter() - self.started}


def save_models(out: Path, models: dict) -> None:
    for name, model in models.items():
        save_model(model, out / f"{name}.h5")


def run_windows(data: Prepared, seed: int) -> dict:
    """windows.npz: representative training windows (int8 calibration) and the test windows with their labels."""
    train, test = data.parts["train"], data.parts["test"]
    representative = np.random.default_rng(seed).permutation(len(train.y))[:REPRESENTATIVE_WINDOWS]
    return dict(representative=train.x[representative], test_x=test.x, test_y=test.y)


def student_files(students: Students) -> dict:
    """student_scratch, student_kd; --students: student_kd_<j>; --selector: selector (it routes between them)."""
    others = {f"student_kd_{j}": model for j, model in enumerate(students.others, 1)}
    return {**students.models, **others, **({"selector": students.selector.model} if students.selector else {})}


@functools.cache
def training_device() -> str:
    """What trained: the first GPU TensorFlow sees (with `pip install 'edgekd[train,gpu]'` on a machine with CUDA), by
    name where the driver gives one, else "CPU" and its thread count."""
    import os

    from edgekd._tf import tf

    gpus = tf.config.list_physical_devices("GPU")
    if gpus:
        name = tf.config.experimental.get_device_details(gpus[0]).get("device_name")
        return f"GPU ({name})" if name else "GPU"
    return f"CPU ({tf.config.threading.get_intra_op_parallelism_threads() or os.cpu_count()} threads)"


def run_record(cfg: DistillConfig, presets: Presets, data: Prepared, teachers: TeacherSet) -> dict:
    """run.json: what export and every later command need to know about the run."""
    dataset = data.dataset
    return {
        "dataset": {"name": dataset.name, "path": str(Path(cfg.dataset).resolve()), "synthetic": dataset.synthetic},
        "classes": list(dataset.classes),
        "preprocessing": data.preprocessor.to_dict(),
        "split": data.split.to_dict(dataset),
        "architectures": {"teacher": presets.teacher.name, "student": presets.students[0].name},
        # --students: student_kd.h5 is the first, student_kd_<j>.h5 the others; selector.h5 routes between them.
        "students": [p.name for p in presets.students],
        "selector": cfg.selector,
        "teachers": teachers.details,  # channels[i]: the input channels teacher_<i>.h5 reads (modalities), else null
        # what --batch-size auto came to, and what trained
        "training": {"batch_size": data.batch_size, "device": training_device()},
        "config": asdict(cfg),
    }


def report_of(
    cfg: DistillConfig,
    presets: Presets,
    data: Prepared,
    teachers: TeacherSet,
    targets: Targets,
    students: Students,
    evaluation: Evaluation,
    timings: dict[str, float],
) -> dict:
    """report.json: every accuracy, size and timing of the run."""
    from edgekd.models.build import count_params

    def median(xs):
        return float(np.median(xs)) if xs else None

    parts, kd = data.parts, count_params(students.models["student_kd"])
    teacher_params = [count_params(t.model) for t in teachers.teachers]
    return {
        "dataset": data.dataset.name,
        "classes": list(data.dataset.classes),
        "split": data.split.to_dict(data.dataset),
        "windows": {
            **{part: int(len(parts[part].y)) for part in ("train", "val", "test")},
            "length": data.window_len,
            "channels": data.channels,
        },
        "params": {
            "teacher": teacher_params[0],
            "teachers": teacher_params,
            "student": kd,
            # the LDA branch adds one Dense layer: a weight per feature and class, and a bias per class
            "student_with_lda_branch": kd + (len(FEATURES) * data.channels + 1) * data.n_classes,
        },
        "architectures": {"teacher": presets.teacher.name, "student": presets.students[0].name},
        "test_accuracy": evaluation.test_accuracy,
        "repeats": {"seeds": students.seeds, **{kind: _spread(a) for kind, a in students.test_accuracy.items()}},
        **({"multi_student": evaluation.multi_student} if evaluation.multi_student else {}),
        "lda_branch": evaluation.lda_branch,
        **({"held_out": evaluation.held_out} if evaluation.held_out else {}),
        "diversity": evaluation.diversity,
        "val_accuracy": evaluation.val_accuracy,
        "epochs": {
            "teachers": [t.fit.epochs_run for t in teachers.teachers],
            **{kind: fit.epochs_run for kind, fit in students.fits.items()},
        },
        "epoch_time_s": {
            kind: median(students.fits[kind].epoch_seconds[1:]) for kind in ("student_scratch", "student_kd")
        },
        "timings_s": {k: round(v, 3) for k, v in timings.items()},
        "baselines": {
            "features": list(FEATURES),
            "feature_count": len(FEATURES) * data.channels,
            "zc_ssc_threshold": ZC_SSC_THRESHOLD,
            "models": evaluation.baselines,
        },
        "config": report_config(cfg, data, teachers, targets),
    }


def report_config(cfg: DistillConfig, data: Prepared, teachers: TeacherSet, targets: Targets) -> dict:
    """The settings that explain the report's numbers (run.json has every option)."""
    return {
        "temperature": cfg.temperature,
        "alpha": cfg.alpha,
        "teachers": len(teachers.teachers),
        "seed": cfg.seed,
        "fusion": cfg.fusion,
        "loss": cfg.loss,
        "hint_weight": cfg.hint_weight if cfg.loss == "hint" else None,
        "teachers_from": cfg.teachers_from,
        "teacher_details": teachers.details,
        "repeats": cfg.repeats,
        "augmentation": {"gain_sd": cfg.augment_gain, "noise_sd": cfg.augment_noise, "teachers": cfg.augment_teachers}
        if targets.presented["augmentation"].active
        else None,
        "targets_in_step": targets.in_step,
        "mixup": cfg.mixup,
        "classical_teacher": cfg.classical_teacher,
        "epochs": cfg.epochs,
        "patience": cfg.patience,
        "lr_schedule": cfg.lr_schedule,
        "batch_size": data.batch_size,
        "device": training_device(),
        "window_s": cfg.window,
        "hop_s": cfg.hop,
        "model_rate_hz": data.rate,
    }


def _spread(accuracies: list[float]) -> dict:
    """Per-seed test accuracies with their mean and sample standard deviation (None for one seed)."""
    return {
        "test_accuracy": accuracies,
        "mean": float(np.mean(accuracies)),
        "std": float(np.std(accuracies, ddof=1)) if len(accuracies) > 1 else None,
    }


def _save_windows(path: Path, **arrays) -> None:
    import io

    buffer = io.BytesIO()
    np.savez_compressed(buffer, **arrays)
    write_bytes_atomic(path, buffer.getvalue())


# What every reader of a run folder needs from its two JSON files (older runs have all of these too).
RUN_KEYS = {
    "dataset": dict,
    "classes": list,
    "preprocessing": dict,
    "split": dict,
    "architectures": dict,
    "config": dict,
}
REPORT_KEYS = {"dataset": str, "classes": list, "split": dict, "test_accuracy": dict}


def load_run(run_dir: str | Path) -> tuple[dict, dict]:
    """(run.json, report.json) of a finished run, or a UserError saying what is missing or damaged."""
    run = Path(run_dir)
    loaded = []
    for name, keys in (("run.json", RUN_KEYS), ("report.json", REPORT_KEYS)):
        path = run / name
        if not path.is_file():
            raise UserError(
                f"{run}: no {name}; this is not a finished `edgekd distill` run (run it again with --out {run})"
            )
        try:
            doc = json.loads(path.read_bytes().decode("utf-8"))
        except (json.JSONDecodeError, UnicodeDecodeError) as e:
            raise UserError(f"{path}: is not valid JSON ({e}); run `edgekd distill` again") from None
        wrong = [key for key, kind in keys.items() if not isinstance(doc, dict) or not isinstance(doc.get(key), kind)]
        if wrong:
            raise UserError(f"{path}: lacks {', '.join(wrong)} (it was edited or damaged); run `edgekd distill` again")
        loaded.append(doc)
    return loaded[0], loaded[1]


def load_run_windows(run_dir: str | Path) -> dict[str, np.ndarray]:
    """windows.npz of a run: representative training windows, the test windows and their labels."""
    path = Path(run_dir) / "windows.npz"
    try:
        with np.load(path, allow_pickle=False) as w:
            windows = {key: w[key] for key in ("representative", "test_x", "test_y")}
    except FileNotFoundError:
        raise UserError(
            f"{path}: missing; export needs the run's test and calibration windows: run `edgekd distill` again"
        ) from None
    except (KeyError, ValueError, OSError, EOFError) as e:
        raise UserError(
            f"{path}: damaged ({str(e).splitlines()[0] if str(e) else type(e).__name__}); run `edgekd distill` again"
        ) from None
    if (
        windows["test_x"].ndim != 3
        or len(windows["test_x"]) != len(windows["test_y"])
        or windows["representative"].ndim != 3
    ):
        raise UserError(
            f"{path}: its arrays do not fit together (windows x length x channels, one label per window); "
            f"run `edgekd distill` again"
        )
    return windows
