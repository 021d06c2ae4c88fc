"""`edgekd distill`: teachers -> ensemble -> scratch student and KD student, written to a run folder.

The run folder holds everything export needs:
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

import json
import time
from dataclasses import asdict
from pathlib import Path

import numpy as np

from edgekd.data.dataset import load_dataset, natural_sorted
from edgekd.data.prepare import prepare_windows
from edgekd.data.splits import split_recordings
from edgekd.data.windows import WindowSpec
from edgekd.distill.fusion import distillation_targets, fused_accuracy, teacher_accuracies, teacher_diversity
from edgekd.distill.options import LOSSES, SCHEDULES, DistillConfig  # noqa: F401  (re-exported: the run's API)
from edgekd.distill.teachers import STRATEGIES, TeacherJob, channel_groups, teacher_input
from edgekd.errors import UserError
from edgekd.io import write_bytes_atomic, write_json_atomic
from edgekd.models.classical import (
    FEATURES,
    ZC_SSC_THRESHOLD,
    evaluate,
    fit_baselines,
    time_domain_features,
    with_classical_teacher,
)
from edgekd.models.presets import load_preset
from edgekd.models.saved import save_model

SELECTOR_PRESET = "selector"  # models/selector.toml

REPRESENTATIVE_WINDOWS = 500  # enough to calibrate int8 ranges; keeps the run folder small


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


def auto_batch_size(training_windows: int) -> int:
    """At least 64 steps per epoch, between 32 and 256 windows per batch. On myo22 (18k training windows per fold) 256
    validated as high as 32 at a third of the seconds per epoch (benchmarks/RESULTS.md, DEFAULTS and TRAINSPEED); on a
    few hundred windows (myo5) 32 keeps enough steps for the epochs early stopping allows."""
    return int(min(256, max(32, training_windows // 64)))


def student_windows_change(cfg: DistillConfig, student_presets) -> str | None:
    """What changes the students' windows in the training step (an option, or a preset's input dropout), or None.
    KD targets must then be computed in the step, on the changed windows (distill/consistent.py)."""
    from edgekd.models.presets import split_input_dropout

    changes = [
        option
        for option, value in (
            ("--augment-gain", cfg.augment_gain),
            ("--augment-noise", cfg.augment_noise),
            ("--mixup", cfg.mixup),
        )
        if value > 0
    ]
    changes += [f"the input-channel dropout of {p.name}" for p in student_presets if split_input_dropout(p)[0] > 0]
    return ", ".join(changes) or None


def classical_teacher_model(kind: str, train, n_classes: int):
    """--classical-teacher lda as a Keras model of the window (its decision values), for targets computed in the
    training step; the same LDA (features, scaler, discriminant) as the precomputed LDA teacher. None without one."""
    if kind == "none":
        return None
    from edgekd.models.hybrid import lda_branch

    return lda_branch(train.x, train.y, n_classes).model


def _log(cfg: DistillConfig, message: str) -> None:
    if cfg.verbose:
        print(message, flush=True)


def distill(cfg: DistillConfig) -> dict:
    cfg.check()
    timings = {}
    started = time.perf_counter()
    out = Path(cfg.out)
    if (out / "report.json").exists():
        raise UserError(f"{out}: already holds a finished run; choose another --out or delete it")
    teacher_preset = load_preset(cfg.teacher)
    student_presets = [load_preset(name) for name in cfg.students or [cfg.student]]
    student_preset = student_presets[0]
    selector_preset = load_preset(SELECTOR_PRESET) if cfg.selector else None

    dataset = load_dataset(cfg.dataset)
    dataset.check_no_duplicates()
    split = split_recordings(dataset, cfg.split, cfg.test_on or None, cfg.val_on or None, seed=cfg.seed)
    rate = cfg.rate or max(s.rate_hz for s in dataset.streams)
    preprocessor, parts = prepare_windows(dataset, split, WindowSpec(rate, cfg.window, cfg.hop))
    train, val, test = parts["train"], parts["val"], parts["test"]
    n_classes, window_len, channels = len(dataset.classes), preprocessor.spec.window_len, preprocessor.channels
    if cfg.teachers_from == "modalities":
        channel_groups(preprocessor.streams)  # a dataset with one group fails here, before TensorFlow loads
    timings["prepare"] = time.perf_counter() - started
    _log(
        cfg,
        f"{dataset.name}: {len(dataset.classes)} classes, split by {split.method} "
        f"(test {split.to_dict(dataset)['test'] if split.method != 'random' else 'random'}), "
        f"windows train/val/test {len(train.y)}/{len(val.y)}/{len(test.y)} of {window_len} x {channels}",
    )
    out.mkdir(parents=True, exist_ok=True)
    # TensorFlow is imported only now, once the data has passed its checks: bad input fails within a second.
    from edgekd.distill.augment import Augmentation
    from edgekd.distill.consistent import online_teachers
    from edgekd.distill.losses import softmax
    from edgekd.distill.student import Objective, train_student
    from edgekd.distill.train import accuracy, predict_logits
    from edgekd.models.build import count_params

    batch_size = cfg.batch_size or auto_batch_size(len(train.y))
    fit_args = dict(
        n_classes=n_classes,
        temperature=cfg.temperature,
        epochs=cfg.epochs,
        batch_size=batch_size,
        patience=cfg.patience,
        learning_rate=cfg.learning_rate,
        schedule=cfg.lr_schedule,
        verbose=cfg.verbose,
        kd_term="mse" if cfg.loss == "mse" else "kl",
    )

    # Teachers: where their diversity comes from is --teachers-from (distill/teachers.py); the default,
    # "bootstrap", gives each its own initialisation and a bootstrap resample of the training windows.
    t0 = time.perf_counter()
    augmentation = Augmentation(cfg.augment_gain, cfg.augment_noise)
    job = TeacherJob(
        cfg,
        teacher_preset,
        train,
        val,
        n_classes,
        window_len,
        channels,
        preprocessor.streams,
        fit_args,
        log=lambda message: _log(cfg, message),
        augmentation=augmentation if cfg.augment_teachers else None,
    )
    ensemble = STRATEGIES[cfg.teachers_from](job)
    teacher_logits = {"train": [], "val": [], "test": []}
    teacher_fits = [t.fit for t in ensemble.teachers]
    teacher_channels = [t.channels for t in ensemble.teachers]
    for i, t in enumerate(ensemble.teachers):
        for part, windows in (("train", train), ("val", val), ("test", test)):
            teacher_logits[part].append(predict_logits(t.model, teacher_input(windows.x, t.channels)))
        save_model(t.model, out / f"teacher_{i}.h5")
    timings["teachers"] = time.perf_counter() - t0
    teacher_params = [count_params(t.model) for t in ensemble.teachers]
    teachers_block = {
        "from": cfg.teachers_from,
        "count": len(ensemble.teachers),
        "channels": teacher_channels if cfg.teachers_from == "modalities" else None,
        **ensemble.details,
    }

    # Soft targets once, before the student trains (and for validation where they are computed in the step); with
    # --classical-teacher lda from the network teachers and the LDA on time-domain features.
    t0 = time.perf_counter()
    target_logits = with_classical_teacher(
        cfg.classical_teacher, teacher_logits, {"train": train, "val": val, "test": test}, n_classes
    )
    targets = distillation_targets(target_logits, val.y, cfg.fusion, cfg.loss, cfg.temperature)
    packed = student_targets(cfg, ensemble.teachers, {"train": train, "val": val}, targets, n_classes)
    objective = kd_objective(cfg, len(target_logits["train"]), packed["hint_dims"])
    # Where the students' windows change in training, the teachers compute the targets in every step, on those windows.
    targets_in_step = student_windows_change(cfg, student_presets) is not None
    online = (
        online_teachers(
            ensemble.teachers,
            cfg.fusion,
            cfg.loss,
            cfg.temperature,
            teacher_accuracies(target_logits["val"], val.y),
            classical_teacher_model(cfg.classical_teacher, train, n_classes),
        )
        if targets_in_step
        else None
    )
    presented = dict(augmentation=augmentation, mixup=cfg.mixup, online=online)
    # The reported "ensemble" stays the plain mean of softmaxes whatever --fusion is, so runs compare across
    # modes; "ensemble_<mode>" is what the chosen fusion's targets would decide on the test windows.
    ensemble_test = np.mean([softmax(z) for z in teacher_logits["test"]], axis=0)
    timings["soft_targets"] = time.perf_counter() - t0

    students, student_fits, student_decisions = {}, {}, {}
    seeds = [cfg.seed + r for r in range(cfg.repeats)]
    repeat_accuracy = {"student_kd": [], "student_scratch": []}
    for r, seed in enumerate(seeds):
        for kind, alpha in (("student_scratch", 1.0), ("student_kd", cfg.alpha)):
            label = (
                f"{'KD' if alpha < 1 else 'scratch'} student ({student_preset.name}"
                f"{', T=%g alpha=%g' % (cfg.temperature, alpha) if alpha < 1 else ''}"
                f"{', seed %d (%d/%d)' % (seed, r + 1, len(seeds)) if len(seeds) > 1 else ''})"
            )
            t0 = time.perf_counter()
            part = packed[kind]
            student, fitted = train_student(
                student_preset,
                window_len,
                channels,
                n_classes,
                train.x,
                part["train"],
                val.x,
                part["val"],
                objective=objective if kind == "student_kd" else Objective(),
                alpha=alpha,
                seed=seed,
                name=kind,
                fit_args={**fit_args, "label": label},
                **presented,
            )
            decisions = np.argmax(predict_logits(student, test.x), axis=1)
            repeat_accuracy[kind].append(float(np.mean(decisions == test.y)))
            if r == 0:  # the first seed's students are the run's: saved, exported, reported as before
                timings[kind] = time.perf_counter() - t0
                students[kind], student_fits[kind], student_decisions[kind] = student, fitted, decisions
                save_model(student, out / f"{kind}.h5")
            else:
                timings["repeats"] = timings.get("repeats", 0.0) + time.perf_counter() - t0

    # --students: the other architectures distil from the same targets; --selector then learns to route between them.
    multi_student = None
    if len(student_presets) > 1:
        t0 = time.perf_counter()
        kd_students = [students["student_kd"]]
        for j, preset in enumerate(student_presets[1:], 1):
            model, _ = train_student(
                preset,
                window_len,
                channels,
                n_classes,
                train.x,
                packed["student_kd"]["train"],
                val.x,
                packed["student_kd"]["val"],
                objective=objective,
                alpha=cfg.alpha,
                seed=cfg.seed,
                name=f"student_kd_{j}",
                fit_args={**fit_args, "label": f"KD student {j + 1}/{len(student_presets)} ({preset.name})"},
                **presented,
            )
            save_model(model, out / f"student_kd_{j}.h5")
            kd_students.append(model)
        timings["students"] = time.perf_counter() - t0
        multi_student = _multi_student(
            cfg,
            kd_students,
            [p.name for p in student_presets],
            selector_preset,
            {"train": train, "val": val, "test": test},
            fit_args,
            out,
            timings,
        )

    # The classical baseline a practitioner would pick instead: the students must beat it to be worth it.
    _log(cfg, "baselines (time-domain features: LDA, random forest)")
    t0 = time.perf_counter()
    baseline_accuracy, lda_decision, baseline_decisions = _classical_baselines(train, val, test, seed=cfg.seed)
    lda_branch = _lda_branch(
        {part: predict_logits(students["student_kd"], w.x) for part, w in (("val", val), ("test", test))},
        lda_decision,
        val,
        test,
    )
    timings["baselines"] = time.perf_counter() - t0

    test_accuracy = {
        "teachers": [accuracy(z, test.y) for z in teacher_logits["test"]],
        "ensemble": accuracy(ensemble_test, test.y),
        f"ensemble_{cfg.fusion}": fused_accuracy(targets["test"], test.y),
        # the mean of softmaxes over every teacher of the targets, the LDA teacher included
        **(
            {
                f"ensemble_with_{cfg.classical_teacher}": accuracy(
                    np.mean([softmax(z) for z in target_logits["test"]], axis=0), test.y
                )
            }
            if cfg.classical_teacher != "none"
            else {}
        ),
        "student_scratch": repeat_accuracy["student_scratch"][0],
        "student_kd": repeat_accuracy["student_kd"][0],
        # `edgekd export --classical-branch lda`'s model (Keras): the KD student with the LDA, or alone where it is left out
        "student_kd_lda_branch": lda_branch["test_accuracy"],
        **baseline_accuracy["test"],
    }
    held_out = accuracy_by_group(
        split.method,
        test_groups(dataset, split.method, test),
        test.y,
        {
            "teachers": [np.argmax(z, axis=1) for z in teacher_logits["test"]],
            "ensemble": np.argmax(ensemble_test, axis=1),
            **student_decisions,
            "student_kd_lda_branch": lda_branch["test_decisions"],
            **baseline_decisions,
        },
    )
    representative = np.random.default_rng(cfg.seed).permutation(len(train.y))[:REPRESENTATIVE_WINDOWS]
    _save_windows(out / "windows.npz", representative=train.x[representative], test_x=test.x, test_y=test.y)

    split_dict = split.to_dict(dataset)
    write_json_atomic(
        out / "run.json",
        {
            "dataset": {"name": dataset.name, "path": str(Path(cfg.dataset).resolve()), "synthetic": dataset.synthetic},
            "classes": list(dataset.classes),
            "preprocessing": preprocessor.to_dict(),
            "split": split_dict,
            "architectures": {"teacher": teacher_preset.name, "student": student_preset.name},
            # --students: student_kd.h5 is the first, student_kd_<j>.h5 the others; selector.h5 routes between them.
            "students": [p.name for p in student_presets],
            "selector": cfg.selector,
            "teachers": teachers_block,  # channels[i]: the input channels teacher_<i>.h5 reads (modalities), else null
            "training": {
                "batch_size": fit_args["batch_size"],
                "device": training_device(),
            },  # what --batch-size auto came to, and what trained
            "config": asdict(cfg),
        },
    )
    timings["total"] = time.perf_counter() - started
    median = lambda xs: float(np.median(xs)) if xs else None  # noqa: E731
    report = {
        "dataset": dataset.name,
        "classes": list(dataset.classes),
        "split": split_dict,
        "windows": {
            "train": int(len(train.y)),
            "val": int(len(val.y)),
            "test": int(len(test.y)),
            "length": window_len,
            "channels": channels,
        },
        "params": {
            "teacher": teacher_params[0],
            "teachers": teacher_params,
            "student": count_params(students["student_kd"]),
            # the LDA branch adds one Dense layer: a weight per feature and class, and a bias per class
            "student_with_lda_branch": count_params(students["student_kd"])
            + (len(FEATURES) * channels + 1) * n_classes,
        },
        "architectures": {"teacher": teacher_preset.name, "student": student_preset.name},
        "test_accuracy": test_accuracy,
        "repeats": {"seeds": seeds, **{kind: _spread(accs) for kind, accs in repeat_accuracy.items()}},
        **({"multi_student": multi_student} if multi_student else {}),
        "lda_branch": {k: v for k, v in lda_branch.items() if k not in ("test_accuracy", "test_decisions")},
        **({"held_out": held_out} if held_out else {}),
        "diversity": teacher_diversity(teacher_logits["test"], test_accuracy["teachers"], test_accuracy["ensemble"]),
        "val_accuracy": {
            "teachers": [f.best_val_accuracy for f in teacher_fits],
            **{k: f.best_val_accuracy for k, f in student_fits.items()},
            **baseline_accuracy["val"],
        },
        "epochs": {
            "teachers": [f.epochs_run for f in teacher_fits],
            **{k: f.epochs_run for k, f in student_fits.items()},
        },
        "epoch_time_s": {
            "student_scratch": median(student_fits["student_scratch"].epoch_seconds[1:]),
            "student_kd": median(student_fits["student_kd"].epoch_seconds[1:]),
        },
        "timings_s": {k: round(v, 3) for k, v in timings.items()},
        "baselines": {
            "features": list(FEATURES),
            "feature_count": len(FEATURES) * channels,
            "zc_ssc_threshold": ZC_SSC_THRESHOLD,
            "models": sorted(baseline_accuracy["test"]),
        },
        "config": {
            "temperature": cfg.temperature,
            "alpha": cfg.alpha,
            "teachers": len(ensemble.teachers),
            "seed": cfg.seed,
            "fusion": cfg.fusion,
            "loss": cfg.loss,
            "hint_weight": cfg.hint_weight if cfg.loss == "hint" else None,
            "teachers_from": cfg.teachers_from,
            "teacher_details": teachers_block,
            "repeats": cfg.repeats,
            "augmentation": {
                "gain_sd": cfg.augment_gain,
                "noise_sd": cfg.augment_noise,
                "teachers": cfg.augment_teachers,
            }
            if augmentation.active
            else None,
            "targets_in_step": targets_in_step,
            "mixup": cfg.mixup,
            "classical_teacher": cfg.classical_teacher,
            "epochs": cfg.epochs,
            "patience": cfg.patience,
            "lr_schedule": cfg.lr_schedule,
            "batch_size": fit_args["batch_size"],
            "device": training_device(),
            "window_s": cfg.window,
            "hop_s": cfg.hop,
            "model_rate_hz": rate,
        },
    }
    write_json_atomic(out / "report.json", report)
    return report


def kd_objective(cfg: DistillConfig, n_teachers: int, hint_dims: tuple[int, ...]):
    """What the KD student's training model carries besides its logits: a head per teacher, or hint projections."""
    from edgekd.distill.student import Objective

    return Objective(
        heads=n_teachers if cfg.fusion == "multi-head" else 1, hint_dims=hint_dims, hint_weight=cfg.hint_weight
    )


def student_targets(cfg: DistillConfig, teachers, parts: dict, targets: dict, n_classes: int) -> dict:
    """Packed targets per student kind and part: {"student_kd": {"train": ..., "val": ...}, "student_scratch": ...,
    "hint_dims": (...)}. The scratch student sees labels only; `--loss hint` appends the teachers' penultimate
    features (computed once, like the soft targets) and records each teacher's feature width."""
    from edgekd.distill.losses import pack_targets
    from edgekd.distill.student import penultimate
    from edgekd.distill.train import predict_logits

    features, hint_dims = {part: None for part in parts}, ()
    if cfg.loss == "hint":
        extractors = [penultimate(t.model) for t in teachers]
        hint_dims = tuple(int(e.output_shape[-1]) for e in extractors)
        features = {
            part: np.concatenate(
                [predict_logits(e, teacher_input(w.x, t.channels)) for e, t in zip(extractors, teachers)], axis=1
            )
            for part, w in parts.items()
        }
    one_hot = np.eye(n_classes, dtype=np.float32)
    return {
        "student_kd": {part: pack_targets(w.y, targets[part], features[part]) for part, w in parts.items()},
        "student_scratch": {part: pack_targets(w.y, one_hot[w.y]) for part, w in parts.items()},
        "hint_dims": hint_dims,
    }


def test_groups(dataset, method: str, windows) -> np.ndarray | None:
    """Each test window's held-out group (its subject, repetition or session), None for a random split."""
    if method == "random":
        return None
    return np.array([dataset.recordings[i].group(method) for i in windows.recording])


def accuracy_by_group(method: str, groups: np.ndarray | None, labels: np.ndarray, decisions: dict) -> dict | None:
    """{"by": method, "groups": [...], "test_accuracy": {model: {group: accuracy}}} for every model's test decisions
    (a list of arrays gives a list of dicts, as for the teachers); None for a random split."""
    if groups is None:
        return None
    names = natural_sorted(set(groups.tolist()))

    def per_group(decided: np.ndarray) -> dict[str, float]:
        return {g: float(np.mean(decided[groups == g] == labels[groups == g])) for g in names}

    return {
        "by": method,
        "groups": names,
        "test_accuracy": {
            model: [per_group(d) for d in decided] if isinstance(decided, list) else per_group(decided)
            for model, decided in decisions.items()
        },
    }


def _multi_student(
    cfg: DistillConfig,
    students: list,
    names: list[str],
    selector_preset,
    parts: dict,
    fit_args: dict,
    out: Path,
    timings: dict,
) -> dict:
    """Each student, and with --selector the selector system and the oracle, on the validation and test windows."""
    from edgekd.distill.selector import correctness, oracle_accuracy, system_report, train_selector
    from edgekd.distill.train import predict_logits
    from edgekd.models.build import count_params

    logits = {part: [predict_logits(s, w.x) for s in students] for part, w in parts.items()}
    params = [count_params(s) for s in students]
    if selector_preset is None:
        return {
            part: {
                "students": {n: float(np.mean(np.argmax(z, -1) == parts[part].y)) for n, z in zip(names, logits[part])},
                "oracle": oracle_accuracy(logits[part], parts[part].y),
            }
            for part in ("val", "test")
        }
    _log(cfg, f"selector ({selector_preset.name}, routes between {', '.join(names)})")
    t0 = time.perf_counter()
    fitted = train_selector(
        selector_preset,
        parts["train"].x,
        correctness(logits["train"], parts["train"].y),
        parts["val"].x,
        correctness(logits["val"], parts["val"].y),
        epochs=cfg.epochs,
        patience=cfg.patience,
        batch_size=fit_args["batch_size"],
        learning_rate=cfg.learning_rate,
        seed=cfg.seed,
        verbose=cfg.verbose,
    )
    save_model(fitted.model, out / "selector.h5")
    timings["selector"] = time.perf_counter() - t0
    result = {
        part: system_report(
            logits[part],
            predict_logits(fitted.model, parts[part].x),
            parts[part].y,
            names,
            params,
            count_params(fitted.model),
        )
        for part in ("val", "test")
    }
    result["selector_epochs"] = fitted.epochs_run
    return result


def _spread(accuracies: list[float]) -> dict:
    """Per-seed test accuracies with their mean and sample standard deviation (None for one seed)."""
    return {
        "test_accuracy": accuracies,
        "mean": float(np.mean(accuracies)),
        "std": float(np.std(accuracies, ddof=1)) if len(accuracies) > 1 else None,
    }


def _classical_baselines(
    train, val, test, seed: int
) -> tuple[dict[str, dict[str, float]], dict[str, np.ndarray], dict[str, np.ndarray]]:
    """({"val": {"lda": acc, "random_forest": acc}, "test": {...}}, the LDA's decision values on val and test, each
    baseline's decisions on the test windows): fitted on the training windows' features."""
    baselines = fit_baselines(time_domain_features(train.x), train.y, seed=seed)
    features = {part: time_domain_features(windows.x) for part, windows in (("val", val), ("test", test))}
    return (
        {part: evaluate(baselines, features[part], windows.y) for part, windows in (("val", val), ("test", test))},
        {part: baselines["lda"].decision_function(features[part]) for part in features},
        {name: estimator.predict(features["test"]) for name, estimator in baselines.items()},
    )


def _lda_branch(student_logits: dict[str, np.ndarray], lda_decision: dict[str, np.ndarray], val, test) -> dict:
    """What `edgekd export --classical-branch lda` would make of the KD student (models/hybrid.py), from the baseline's
    LDA: its temperature, whether it is kept, and the accuracy of the model export would write."""
    from edgekd.models.hybrid import choose_temperature, combined_logits

    temperature, val_accuracy, alone = choose_temperature(student_logits["val"], lda_decision["val"], val.y)
    kept = val_accuracy > alone
    logits = (
        combined_logits(student_logits["test"], lda_decision["test"], temperature) if kept else student_logits["test"]
    )
    return {
        "kept": kept,
        "temperature": temperature,
        "val_accuracy": val_accuracy,
        "student_val_accuracy": alone,
        "test_accuracy": float(np.mean(np.argmax(logits, axis=1) == test.y)),
        "test_decisions": np.argmax(logits, axis=1),
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
