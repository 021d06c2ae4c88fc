"""The stages of `edgekd distill`, each a function with a small typed result:

    load_presets -> prepare -> train_teachers -> make_targets -> train_students -> evaluate  (-> run.py's report)

distill() (run.py) runs them in that order; the method sweep (benchmarks/methods.py) runs the teachers, targets and
students stages on a replayed run. TensorFlow is imported inside the stages after prepare: bad input fails within a
second, before it loads.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

import numpy as np

from edgekd.data.dataset import load_dataset, natural_sorted
from edgekd.data.prepare import prepare_windows
from edgekd.data.splits import split_recordings
from edgekd.data.windows import WindowSpec
from edgekd.distill.fusion import distillation_targets, fused_accuracy, teacher_accuracies, teacher_diversity
from edgekd.distill.options import DistillConfig
from edgekd.distill.teachers import STRATEGIES, TeacherJob, channel_groups, teacher_input
from edgekd.models.classical import evaluate as evaluate_baselines
from edgekd.models.classical import fit_baselines, time_domain_features, with_classical_teacher
from edgekd.models.presets import load_preset

PARTS = ("train", "val", "test")
SELECTOR_PRESET = "selector"  # models/selector.toml


def log_to(cfg: DistillConfig):
    """A log function that prints unless the run is quiet."""
    return lambda message: print(message, flush=True) if cfg.verbose else None


# ----------------------------------------------------------------------------------------------------- prepare
@dataclass
class Presets:
    teacher: object
    students: list  # --students, else [--student]; the first is the run's student
    selector: object | None  # --selector


def load_presets(cfg: DistillConfig) -> Presets:
    """First of all: a bad preset name fails before any data loads."""
    return Presets(
        load_preset(cfg.teacher),
        [load_preset(name) for name in cfg.students or [cfg.student]],
        load_preset(SELECTOR_PRESET) if cfg.selector else None,
    )


@dataclass
class Prepared:
    """The windows every later stage trains and tests on, and what run.json records about them."""

    parts: dict  # "train", "val", "test": Windows (x, y, recording)
    n_classes: int
    streams: tuple  # StreamSpec, in the order their channels are stacked
    batch_size: int  # --batch-size, or what auto came to
    dataset: object = None  # with split, preprocessor, rate: None for a replayed run
    split: object = None
    preprocessor: object = None
    rate: float | None = None

    @property
    def window_len(self) -> int:
        return int(self.parts["train"].x.shape[1])

    @property
    def channels(self) -> int:
        return int(self.parts["train"].x.shape[2])

    def fit_args(self, cfg: DistillConfig) -> dict:
        return fit_arguments(cfg, self.n_classes, self.batch_size)


def auto_batch_size(training_windows: int) -> int:
    """At least 64 steps per epoch, between 32 and 256 windows per batch. On myo22 (18k training windows per fold) 256
    validated as high as 32 at a third of the seconds per epoch (benchmarks/RESULTS.md, DEFAULTS and TRAINSPEED); on a
    few hundred windows (myo5) 32 keeps enough steps for the epochs early stopping allows."""
    return int(min(256, max(32, training_windows // 64)))


def fit_arguments(cfg: DistillConfig, n_classes: int, batch_size: int) -> dict:
    """distill/train.py fit()'s arguments that the options set, for every model of a run."""
    return dict(
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


def prepare(cfg: DistillConfig) -> Prepared:
    """The dataset, checked, split and cut into normalised windows."""
    dataset = load_dataset(cfg.dataset)
    dataset.check_no_duplicates()
    split = split_recordings(dataset, cfg.split, cfg.test_on or None, cfg.val_on or None, seed=cfg.seed)
    rate = cfg.rate or max(s.rate_hz for s in dataset.streams)
    preprocessor, parts = prepare_windows(dataset, split, WindowSpec(rate, cfg.window, cfg.hop))
    if cfg.teachers_from == "modalities":
        channel_groups(preprocessor.streams)  # a dataset with one group fails here, before TensorFlow loads
    batch_size = cfg.batch_size or auto_batch_size(len(parts["train"].y))
    return Prepared(parts, len(dataset.classes), preprocessor.streams, batch_size, dataset, split, preprocessor, rate)


def describe(data: Prepared) -> str:
    dataset, split, (train, val, test) = data.dataset, data.split, (data.parts[p] for p in PARTS)
    return (
        f"{dataset.name}: {len(dataset.classes)} classes, split by {split.method} "
        f"(test {split.to_dict(dataset)['test'] if split.method != 'random' else 'random'}), "
        f"windows train/val/test {len(train.y)}/{len(val.y)}/{len(test.y)} of {data.window_len} x {data.channels}"
    )


# ---------------------------------------------------------------------------------------------------- teachers
@dataclass
class TeacherSet:
    teachers: list  # each with .model and .channels (distill/teachers.py's Teacher, or a replayed RunTeacher)
    logits: dict  # part -> one n x C array per teacher
    details: dict = field(default_factory=dict)  # how they were made: run.json's "teachers" block


def train_teachers(cfg: DistillConfig, data: Prepared, preset, log=lambda message: None) -> TeacherSet:
    """Where their diversity comes from is --teachers-from (distill/teachers.py); the default, "bootstrap", gives each
    its own initialisation and a bootstrap resample of the training windows."""
    from edgekd.distill.train import predict_logits

    ensemble = STRATEGIES[cfg.teachers_from](teacher_job(cfg, data, preset, log))
    outputs = [
        {part: predict_logits(t.model, teacher_input(data.parts[part].x, t.channels)) for part in PARTS}
        for t in ensemble.teachers
    ]
    details = {
        "from": cfg.teachers_from,
        "count": len(ensemble.teachers),
        # the input channels teacher_<i>.h5 reads (modalities), else null
        "channels": [t.channels for t in ensemble.teachers] if cfg.teachers_from == "modalities" else None,
        **ensemble.details,
    }
    return TeacherSet(ensemble.teachers, {part: [o[part] for o in outputs] for part in PARTS}, details)


def teacher_job(cfg: DistillConfig, data: Prepared, preset, log=lambda message: None) -> TeacherJob:
    """What a --teachers-from strategy trains with: the windows, fit()'s arguments and, with --augment-teachers,
    the augmentation."""
    from edgekd.distill.augment import Augmentation

    return TeacherJob(
        cfg,
        preset,
        data.parts["train"],
        data.parts["val"],
        data.n_classes,
        data.window_len,
        data.channels,
        data.streams,
        data.fit_args(cfg),
        log=log,
        augmentation=Augmentation(cfg.augment_gain, cfg.augment_noise) if cfg.augment_teachers else None,
    )


# ----------------------------------------------------------------------------------------------------- targets
@dataclass
class Targets:
    logits: dict  # part -> what the targets fuse: the teachers' logits, and --classical-teacher's
    fused: dict  # part -> --fusion's targets
    packed: dict  # student kind -> part -> targets packed for the loss (distill/losses.py)
    objective: object  # the KD student's (distill/student.py's Objective)
    presented: dict  # how the students' training windows change: augmentation, mixup, online (teachers in the step)
    in_step: bool  # whether the teachers compute the KD targets in the training step


def make_targets(cfg: DistillConfig, data: Prepared, teachers: TeacherSet, student_presets: list) -> Targets:
    """Soft targets once, before the students train (and for validation where they are computed in the step); with
    --classical-teacher lda from the network teachers and the LDA on time-domain features."""
    from edgekd.distill.augment import Augmentation
    from edgekd.distill.consistent import online_teachers

    logits = with_classical_teacher(cfg.classical_teacher, teachers.logits, data.parts, data.n_classes)
    fused = distillation_targets(logits, data.parts["val"].y, cfg.fusion, cfg.loss, cfg.temperature)
    packed = student_targets(
        cfg, teachers.teachers, {p: data.parts[p] for p in ("train", "val")}, fused, data.n_classes
    )
    # Where the students' windows change in training, the teachers compute the targets in every step, on those windows.
    in_step = student_windows_change(cfg, student_presets) is not None
    online = (
        online_teachers(
            teachers.teachers,
            cfg.fusion,
            cfg.loss,
            cfg.temperature,
            teacher_accuracies(logits["val"], data.parts["val"].y),
            classical_teacher_model(cfg.classical_teacher, data.parts["train"], data.n_classes),
        )
        if in_step
        else None
    )
    presented = dict(augmentation=Augmentation(cfg.augment_gain, cfg.augment_noise), mixup=cfg.mixup, online=online)
    objective = kd_objective(cfg, len(logits["train"]), packed.pop("hint_dims"))
    return Targets(logits, fused, packed, objective, presented, in_step)


def student_windows_change(cfg: DistillConfig, student_presets) -> str | None:
    """What changes the students' windows in the training step (an option, or a preset's input dropout), or None.
    KD targets must then be computed in the step, on the changed windows (distill/consistent.py)."""
    from edgekd.models.presets import split_input_dropout

    options = (("--augment-gain", cfg.augment_gain), ("--augment-noise", cfg.augment_noise), ("--mixup", cfg.mixup))
    changes = [option for option, value in options if value > 0]
    changes += [f"the input-channel dropout of {p.name}" for p in student_presets if split_input_dropout(p)[0] > 0]
    return ", ".join(changes) or None


def classical_teacher_model(kind: str, train, n_classes: int):
    """--classical-teacher lda as a Keras model of the window (its decision values), for targets computed in the
    training step; the same LDA (features, scaler, discriminant) as the precomputed LDA teacher. None without one."""
    if kind == "none":
        return None
    from edgekd.models.hybrid import lda_branch

    return lda_branch(train.x, train.y, n_classes).model


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
    from edgekd.distill.train import predict_logits
    from edgekd.models.build import penultimate

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


# ---------------------------------------------------------------------------------------------------- students
def train_student_kind(
    cfg: DistillConfig, data: Prepared, targets: Targets, kind: str, seed: int, preset, name: str, label: str = ""
):
    """(model, FitResult): one student of `preset`, "student_scratch" on the labels alone or "student_kd" on the
    targets (alpha weighs the labels), its windows presented as the targets say."""
    from edgekd.distill.student import Objective, train_student

    packed = targets.packed[kind]
    return train_student(
        preset,
        data.window_len,
        data.channels,
        data.n_classes,
        data.parts["train"].x,
        packed["train"],
        data.parts["val"].x,
        packed["val"],
        objective=targets.objective if kind == "student_kd" else Objective(),
        alpha=cfg.alpha if kind == "student_kd" else 1.0,
        seed=seed,
        name=name,
        fit_args={**data.fit_args(cfg), "label": label or name},
        **targets.presented,
    )


@dataclass
class Students:
    models: dict  # "student_scratch", "student_kd": the first seed's (the run's)
    fits: dict  # the same kinds: FitResult
    seeds: list[int]
    test_accuracy: dict  # kind -> one test accuracy per seed
    test_decisions: dict  # kind -> the first seed's decisions on the test windows
    names: list[str] = field(default_factory=list)  # the KD students' architectures, the run's first
    others: list = field(default_factory=list)  # --students: the other KD students, student_kd_<j>
    selector: object = None  # --selector: distill/selector.py's SelectorResult
    timings: dict = field(default_factory=dict)


def train_students(cfg: DistillConfig, data: Prepared, targets: Targets, presets: Presets, log) -> Students:
    """The scratch and the KD student for every seed of --repeats; --students: the other architectures distil from
    the same targets; --selector then learns to route between them."""
    from edgekd.distill.train import predict_logits

    seeds, test = [cfg.seed + r for r in range(cfg.repeats)], data.parts["test"]
    result = Students({}, {}, seeds, {"student_kd": [], "student_scratch": []}, {}, [p.name for p in presets.students])
    for r, seed in enumerate(seeds):
        for kind in ("student_scratch", "student_kd"):
            t0 = time.perf_counter()
            label = student_label(cfg, presets.students[0], kind, seed, r)
            model, fitted = train_student_kind(cfg, data, targets, kind, seed, presets.students[0], kind, label)
            decisions = np.argmax(predict_logits(model, test.x), axis=1)
            result.test_accuracy[kind].append(float(np.mean(decisions == test.y)))
            if r == 0:  # the first seed's students are the run's: saved, exported, reported as before
                result.timings[kind] = time.perf_counter() - t0
                result.models[kind], result.fits[kind], result.test_decisions[kind] = model, fitted, decisions
            else:
                result.timings["repeats"] = result.timings.get("repeats", 0.0) + time.perf_counter() - t0
    if len(presets.students) > 1:
        t0 = time.perf_counter()
        for j, preset in enumerate(presets.students[1:], 1):
            label = f"KD student {j + 1}/{len(presets.students)} ({preset.name})"
            model, _ = train_student_kind(cfg, data, targets, "student_kd", cfg.seed, preset, f"student_kd_{j}", label)
            result.others.append(model)
        result.timings["students"] = time.perf_counter() - t0
    if presets.selector is not None:
        t0 = time.perf_counter()
        log(f"selector ({presets.selector.name}, routes between {', '.join(p.name for p in presets.students)})")
        result.selector = fit_selector(cfg, data, kd_students(result), presets.selector, cfg.seed)
        result.timings["selector"] = time.perf_counter() - t0
    return result


def student_label(cfg: DistillConfig, preset, kind: str, seed: int, r: int) -> str:
    """What the progress bar calls the student."""
    kd = kind == "student_kd"
    settings = f", T={cfg.temperature:g} alpha={cfg.alpha:g}" if kd else ""
    repeat = f", seed {seed} ({r + 1}/{cfg.repeats})" if cfg.repeats > 1 else ""
    return f"{'KD' if kd else 'scratch'} student ({preset.name}{settings}{repeat})"


def kd_students(students: Students) -> list:
    """The run's KD student and those of the other --students, in --students order."""
    return [students.models["student_kd"], *students.others]


def fit_selector(cfg: DistillConfig, data: Prepared, students: list, preset, seed: int):
    """A selector that learns, on the training windows, which student is right on each window."""
    from edgekd.distill.selector import correctness, train_selector
    from edgekd.distill.train import predict_logits

    train, val = data.parts["train"], data.parts["val"]
    return train_selector(
        preset,
        train.x,
        correctness([predict_logits(s, train.x) for s in students], train.y),
        val.x,
        correctness([predict_logits(s, val.x) for s in students], val.y),
        epochs=cfg.epochs,
        patience=cfg.patience,
        batch_size=data.batch_size,
        learning_rate=cfg.learning_rate,
        seed=seed,
        verbose=cfg.verbose,
    )


# ---------------------------------------------------------------------------------------------------- evaluate
@dataclass
class Evaluation:
    test_accuracy: dict  # model -> accuracy (teachers: a list)
    val_accuracy: dict
    held_out: dict | None  # per held-out group (subject, repetition, session); None for a random split
    lda_branch: dict  # what `edgekd export --classical-branch lda` would make of the KD student
    multi_student: dict | None  # --students: each student, the oracle, and with --selector the system
    diversity: dict
    baselines: list[str]  # the classical baselines' names
    timings: dict = field(default_factory=dict)


def evaluate(cfg: DistillConfig, data: Prepared, teachers: TeacherSet, targets: Targets, students: Students, log):
    """Every model on the held-out windows, beside the classical baseline a practitioner would pick instead: the
    students must beat it to be worth it."""
    from edgekd.distill.train import predict_logits

    val, test = data.parts["val"], data.parts["test"]
    log("baselines (time-domain features: LDA, random forest)")
    t0 = time.perf_counter()
    baseline_accuracy, lda_decision, baseline_decisions = classical_baselines(data.parts, seed=cfg.seed)
    kd_logits = {part: predict_logits(students.models["student_kd"], data.parts[part].x) for part in ("val", "test")}
    branch = lda_branch(kd_logits, lda_decision, val, test)
    timings = {"baselines": time.perf_counter() - t0}
    test_accuracy, decisions = networks_on_test(cfg, teachers, targets, students, test)
    # `edgekd export --classical-branch lda`'s model (Keras): the KD student with the LDA, or alone where it is left out
    test_accuracy.update({"student_kd_lda_branch": branch["test_accuracy"], **baseline_accuracy["test"]})
    decisions.update({"student_kd_lda_branch": branch["test_decisions"], **baseline_decisions})
    return Evaluation(
        test_accuracy,
        {
            "teachers": [t.fit.best_val_accuracy for t in teachers.teachers],
            **{kind: fit.best_val_accuracy for kind, fit in students.fits.items()},
            **baseline_accuracy["val"],
        },
        accuracy_by_group(data.split.method, test_groups(data.dataset, data.split.method, test), test.y, decisions),
        {k: v for k, v in branch.items() if k not in ("test_accuracy", "test_decisions")},
        multi_student_report(data, students) if students.others else None,
        teacher_diversity(teachers.logits["test"], test_accuracy["teachers"], test_accuracy["ensemble"]),
        sorted(baseline_accuracy["test"]),
        timings,
    )


def networks_on_test(cfg: DistillConfig, teachers: TeacherSet, targets: Targets, students: Students, test):
    """(test accuracy, test decisions) of the teachers, their ensemble and the run's students."""
    from edgekd.distill.losses import softmax
    from edgekd.distill.train import accuracy

    # The reported "ensemble" stays the plain mean of softmaxes whatever --fusion is, so runs compare across
    # modes; "ensemble_<mode>" is what the chosen fusion's targets would decide on the test windows.
    ensemble = np.mean([softmax(z) for z in teachers.logits["test"]], axis=0)
    with_classical = np.mean([softmax(z) for z in targets.logits["test"]], axis=0)  # the LDA teacher included
    classical = cfg.classical_teacher
    test_accuracy = {
        "teachers": [accuracy(z, test.y) for z in teachers.logits["test"]],
        "ensemble": accuracy(ensemble, test.y),
        f"ensemble_{cfg.fusion}": fused_accuracy(targets.fused["test"], test.y),
        **({f"ensemble_with_{classical}": accuracy(with_classical, test.y)} if classical != "none" else {}),
        "student_scratch": students.test_accuracy["student_scratch"][0],  # the first seed's: the run's
        "student_kd": students.test_accuracy["student_kd"][0],
    }
    decisions = {
        "teachers": [np.argmax(z, axis=1) for z in teachers.logits["test"]],
        "ensemble": np.argmax(ensemble, axis=1),
        **students.test_decisions,
    }
    return test_accuracy, decisions


def multi_student_report(data: Prepared, students: Students) -> dict:
    """Each student, and with --selector the selector system and the oracle, on the validation and test windows."""
    from edgekd.distill.selector import oracle_accuracy, system_report
    from edgekd.distill.train import predict_logits
    from edgekd.models.build import count_params

    models, names = kd_students(students), students.names
    parts = {part: data.parts[part] for part in ("val", "test")}
    logits = {part: [predict_logits(s, w.x) for s in models] for part, w in parts.items()}
    if students.selector is None:
        return {
            part: {
                "students": {n: float(np.mean(np.argmax(z, -1) == w.y)) for n, z in zip(names, logits[part])},
                "oracle": oracle_accuracy(logits[part], w.y),
            }
            for part, w in parts.items()
        }
    selector = students.selector.model
    result = {
        part: system_report(
            logits[part],
            predict_logits(selector, w.x),
            w.y,
            names,
            [count_params(s) for s in models],
            count_params(selector),
        )
        for part, w in parts.items()
    }
    result["selector_epochs"] = students.selector.epochs_run
    return result


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


def classical_baselines(parts: dict, seed: int) -> tuple[dict, dict, dict]:
    """({"val": {"lda": acc, "random_forest": acc}, "test": {...}}, the LDA's decision values on val and test, each
    baseline's decisions on the test windows): fitted on the training windows' features."""
    baselines = fit_baselines(time_domain_features(parts["train"].x), parts["train"].y, seed=seed)
    features = {part: time_domain_features(parts[part].x) for part in ("val", "test")}
    return (
        {part: evaluate_baselines(baselines, features[part], parts[part].y) for part in features},
        {part: baselines["lda"].decision_function(features[part]) for part in features},
        {name: estimator.predict(features["test"]) for name, estimator in baselines.items()},
    )


def lda_branch(student_logits: dict[str, np.ndarray], lda_decision: dict[str, np.ndarray], val, test) -> dict:
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
