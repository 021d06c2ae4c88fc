"""How distill's defaults were chosen: teachers and students on myo22's held-out people, decided by validation.

    .venv/bin/python benchmarks/defaults.py --teachers drop --students scratch,kd        # one teacher set, two students
    .venv/bin/python benchmarks/defaults.py --report-only                               # rebuild the DEFAULTS section

myo22 (22 people, real Myo sEMG) in the 5 folds of `edgekd distill --cv 5`: each fold tests on 4-5 people and
validates on 3 others. For every fold a teacher set (TEACHER_SETS) is trained once through distill's own teacher
code and kept in benchmarks/out/defaults/ (not in git); each student variant (STUDENTS) then trains against it
through distill's own student code, with the seeds asked for. Every record (benchmarks/records/defaults/<teacher set>/
<student>.json, in git) holds each fold and seed: validation and test accuracy per person, the student's accuracy on
its own training windows and its agreement there with the ensemble (what showed the defect of issue 19), epochs and
seconds. A finished fold and seed is not trained again, so runs resume, and several processes may work on different
students side by side (`--threads 1` each: two one-thread processes train about twice as fast as one on two cores).

Defaults are chosen on the validation people only: the highest mean validation accuracy over people. Test
accuracies are recorded beside them and never used to choose.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))

from results_md import publish  # noqa: E402

from edgekd.data.dataset import load_dataset  # noqa: E402
from edgekd.data.prepare import prepare_windows  # noqa: E402
from edgekd.data.splits import split_recordings  # noqa: E402
from edgekd.data.windows import WindowSpec  # noqa: E402
from edgekd.distill.cv import fold_configs  # noqa: E402
from edgekd.distill.run import DistillConfig  # noqa: E402
from edgekd.distill.stages import Prepared, fit_arguments, teacher_job, test_groups  # noqa: E402
from edgekd.io import write_json_atomic  # noqa: E402

MYO22 = HERE.parents[1] / "shared" / "data" / "myo22"
FOLDS = 5
OUT = HERE / "out" / "defaults"
RECORDS = HERE / "records" / "defaults"
PRESETS = HERE / "presets"  # architectures that exist only to be compared here


@dataclass(frozen=True)
class TeacherSet:
    """How a fold's teachers train: distill options (DistillConfig fields) over the defaults of this sweep."""

    description: str
    options: dict = field(default_factory=dict)


# The sweep's common ground: what distill used before issue 19 except the batch (256, with the learning rate
# unchanged: the 32-window batch cost 3 s per student epoch on 25k windows, 256 costs 0.7 s).
BASE = dict(
    teacher="conv-teacher",
    teachers=3,
    teachers_from="bootstrap",
    batch_size=256,
    learning_rate=2e-3,
    epochs=60,
    patience=12,
    window=0.5,
    hop=0.1,
    temperature=4.0,
    alpha=0.3,
)
TEACHER_SETS = {
    "drop": TeacherSet("conv-teacher (input-channel dropout 0.3), bootstrap resamples"),
    "drop seeds": TeacherSet(
        "conv-teacher, every teacher on all windows from its own seed", {"teachers_from": "seeds"}
    ),
    "drop gain noise": TeacherSet(
        "conv-teacher trained on windows with random gain (0.2) and noise (0.1), bootstrap",
        {"augment_gain": 0.2, "augment_noise": 0.1, "augment_teachers": True},
    ),
    "drop long": TeacherSet(
        "conv-teacher, up to 150 epochs with patience 30, bootstrap", {"epochs": 150, "patience": 30}
    ),
    "no drop": TeacherSet(
        "conv-teacher without input-channel dropout, bootstrap", {"teacher": str(PRESETS / "conv-teacher-nodrop.toml")}
    ),
    "wide": TeacherSet(
        "a conv-teacher of 128 filters, input-channel dropout 0.3, bootstrap",
        {"teacher": str(PRESETS / "conv-teacher-wide.toml")},
    ),
    "wide gain noise": TeacherSet(
        "a conv-teacher of 128 filters, input-channel dropout 0.3, on windows with random gain (0.2) and "
        "noise (0.1), bootstrap, up to 100 epochs with patience 20",
        {
            "teacher": str(PRESETS / "conv-teacher-wide.toml"),
            "augment_gain": 0.2,
            "augment_noise": 0.1,
            "augment_teachers": True,
            "epochs": 100,
            "patience": 20,
        },
    ),
}


@dataclass(frozen=True)
class Student:
    """One way to train the student: `alpha` 1 is scratch (labels only); `clean_targets_under_dropout` reproduces the
    defect of issue 19 (precomputed clean-window targets while the student's own first layer drops input channels)."""

    description: str
    preset: str = "edge-conv"
    alpha: float = 0.3
    options: dict = field(
        default_factory=dict
    )  # DistillConfig fields: temperature, batch_size, epochs, augment_*, mixup
    clean_targets_under_dropout: bool = False


DROPPING = str(PRESETS / "edge-conv-dropout.toml")  # edge-conv as it was: spatial_dropout(0.3) first
STUDENTS = {
    "scratch": Student("edge-conv on labels", alpha=1.0),
    "scratch dropout": Student("edge-conv with input-channel dropout 0.3 on labels", DROPPING, alpha=1.0),
    "kd": Student("edge-conv by KD, T=4 alpha=0.3, targets precomputed"),
    "kd dropout before the fix": Student(
        "edge-conv with input-channel dropout, KD targets precomputed on clean windows",
        DROPPING,
        clean_targets_under_dropout=True,
    ),
    "kd dropout": Student("edge-conv with input-channel dropout, KD targets computed on the dropped windows", DROPPING),
    "kd T=2": Student("KD at T=2", options={"temperature": 2.0}),
    "kd T=8": Student("KD at T=8", options={"temperature": 8.0}),
    "kd alpha=0.1": Student("KD, alpha 0.1", alpha=0.1),
    "kd alpha=0.5": Student("KD, alpha 0.5", alpha=0.5),
    "kd long": Student("KD, up to 150 epochs with patience 30", options={"epochs": 150, "patience": 30}),
    "scratch long": Student(
        "labels, up to 150 epochs with patience 30", alpha=1.0, options={"epochs": 150, "patience": 30}
    ),
    "kd batch 32": Student("KD, batch 32", options={"batch_size": 32}),
    "scratch batch 32": Student("labels, batch 32", alpha=1.0, options={"batch_size": 32}),
    "kd gain noise": Student(
        "KD on windows with random gain 0.2 and noise 0.1 (targets in the step)",
        options={"augment_gain": 0.2, "augment_noise": 0.1},
    ),
    "scratch gain noise": Student(
        "labels, windows with random gain 0.2 and noise 0.1",
        alpha=1.0,
        options={"augment_gain": 0.2, "augment_noise": 0.1},
    ),
    "kd gain noise alpha=0.5": Student(
        "KD, alpha 0.5, windows with random gain 0.2 and noise 0.1 (targets in the step)",
        alpha=0.5,
        options={"augment_gain": 0.2, "augment_noise": 0.1},
    ),
    "kd gain 0.3 noise 0.2": Student(
        "KD on windows with random gain 0.3 and noise 0.2 (targets in the step)",
        options={"augment_gain": 0.3, "augment_noise": 0.2},
    ),
    "scratch gain 0.3 noise 0.2": Student(
        "labels, windows with random gain 0.3 and noise 0.2",
        alpha=1.0,
        options={"augment_gain": 0.3, "augment_noise": 0.2},
    ),
    "kd gain noise mixup": Student(
        "KD on windows with random gain 0.2 and noise 0.1, mixed pairwise (mixup 0.4; targets in the step)",
        options={"augment_gain": 0.2, "augment_noise": 0.1, "mixup": 0.4},
    ),
    "scratch gain noise mixup": Student(
        "labels, windows with random gain 0.2 and noise 0.1, mixed pairwise (mixup 0.4)",
        alpha=1.0,
        options={"augment_gain": 0.2, "augment_noise": 0.1, "mixup": 0.4},
    ),
    "kd gain noise long": Student(
        "KD on windows with random gain 0.2 and noise 0.1, up to 150 epochs with patience 30",
        options={"augment_gain": 0.2, "augment_noise": 0.1, "epochs": 150, "patience": 30},
    ),
    "scratch gain noise long": Student(
        "labels, windows with random gain 0.2 and noise 0.1, up to 150 epochs, patience 30",
        alpha=1.0,
        options={"augment_gain": 0.2, "augment_noise": 0.1, "epochs": 150, "patience": 30},
    ),
}


@dataclass
class Fold:
    number: int
    test_on: list[str]
    val_on: list[str]
    parts: dict  # part -> Windows
    groups: dict  # part -> each window's subject
    n_classes: int
    streams: tuple


def folds() -> list[Fold]:
    dataset = load_dataset(MYO22)
    made = []
    for i, cfg in enumerate(fold_configs(DistillConfig(dataset=str(MYO22), out=""), dataset.subjects, FOLDS), 1):
        split = split_recordings(dataset, "subject", cfg.test_on, cfg.val_on)
        preprocessor, parts = prepare_windows(
            dataset, split, WindowSpec(max(s.rate_hz for s in dataset.streams), BASE["window"], BASE["hop"])
        )
        made.append(
            Fold(
                i,
                cfg.test_on,
                cfg.val_on,
                parts,
                {p: test_groups(dataset, "subject", w) for p, w in parts.items()},
                len(dataset.classes),
                preprocessor.streams,
            )
        )
    return made


def config(options: dict) -> DistillConfig:
    return DistillConfig(dataset=str(MYO22), out="", verbose=0, **{**BASE, **options})


def fit_args(cfg: DistillConfig, n_classes: int) -> dict:
    """distill's fit arguments at this sweep's batch size (BASE, no auto); every variant distils with --loss kl."""
    assert cfg.loss == "kl" and cfg.verbose == 0
    return fit_arguments(cfg, n_classes, cfg.batch_size)


def teachers_of(name: str, fold: Fold) -> list:
    """The fold's teachers of this set: trained through distill's teacher strategies once, then loaded."""
    from edgekd._tf import keras
    from edgekd.distill.replay import RunTeacher
    from edgekd.distill.teachers import STRATEGIES
    from edgekd.models.presets import load_preset

    folder = OUT / "teachers" / name.replace(" ", "-") / f"fold-{fold.number}"
    cfg = config(TEACHER_SETS[name].options)
    files = [folder / f"teacher_{i}.h5" for i in range(cfg.teachers)]
    if not all(f.exists() for f in files):
        started = time.perf_counter()
        data = Prepared(fold.parts, fold.n_classes, fold.streams, cfg.batch_size)
        ensemble = STRATEGIES[cfg.teachers_from](teacher_job(cfg, data, load_preset(cfg.teacher)))
        folder.mkdir(parents=True, exist_ok=True)
        for teacher, path in zip(ensemble.teachers, files):
            teacher.model.save(path, include_optimizer=False)
        write_json_atomic(
            folder / "fits.json",
            {
                "epochs": [t.fit.epochs_run for t in ensemble.teachers],
                "seconds": round(time.perf_counter() - started, 1),
            },
        )
    return [RunTeacher(keras.models.load_model(f, compile=False), None) for f in files]


def train_variant(student: Student, fold: Fold, teachers: list, seed: int) -> dict:
    """One student of the variant on one fold: its accuracies (overall and per person), agreement and cost."""
    from edgekd.distill.augment import Augmentation
    from edgekd.distill.consistent import online_teachers
    from edgekd.distill.fusion import distillation_targets, teacher_accuracies
    from edgekd.distill.losses import pack_targets, softmax
    from edgekd.distill.student import Objective, train_student
    from edgekd.distill.train import fit, predict_logits
    from edgekd.models.build import build_model
    from edgekd.models.presets import load_preset

    cfg = config(student.options)
    train, val, test = (fold.parts[p] for p in ("train", "val", "test"))
    logits = {p: [predict_logits(t.model, fold.parts[p].x) for t in teachers] for p in ("train", "val")}
    targets = distillation_targets(logits, val.y, "mean", "kl", cfg.temperature)
    one_hot = np.eye(fold.n_classes, dtype=np.float32)
    packed = {
        p: pack_targets(fold.parts[p].y, targets[p] if student.alpha < 1 else one_hot[fold.parts[p].y])
        for p in ("train", "val")
    }
    args = fit_args(cfg, fold.n_classes)
    started = time.perf_counter()
    if student.clean_targets_under_dropout:  # before the fix: the dropout layer stays inside the student
        model = build_model(load_preset(student.preset), train.x.shape[1], train.x.shape[2], fold.n_classes, seed=seed)
        fitted = fit(model, train.x, packed["train"], val.x, packed["val"], alpha=student.alpha, seed=seed, **args)
    else:
        online = online_teachers(teachers, "mean", "kl", cfg.temperature, teacher_accuracies(logits["val"], val.y))
        model, fitted = train_student(
            load_preset(student.preset),
            train.x.shape[1],
            train.x.shape[2],
            fold.n_classes,
            train.x,
            packed["train"],
            val.x,
            packed["val"],
            objective=Objective(),
            alpha=student.alpha,
            seed=seed,
            name="student",
            fit_args=args,
            augmentation=Augmentation(cfg.augment_gain, cfg.augment_noise),
            mixup=cfg.mixup,
            online=online,
        )
    seconds = time.perf_counter() - started
    decided = {
        p: np.argmax(predict_logits(model, w.x), axis=1) for p, w in (("train", train), ("val", val), ("test", test))
    }
    ensemble_train = np.argmax(np.mean([softmax(z) for z in logits["train"]], axis=0), axis=1)

    def per_person(p):
        groups = fold.groups[p]
        return {
            s: float(np.mean(decided[p][groups == s] == fold.parts[p].y[groups == s]))
            for s in sorted(set(groups.tolist()))
        }

    return {
        "fold": fold.number,
        "seed": seed,
        "val": per_person("val"),
        "test": per_person("test"),
        "train_accuracy": float(np.mean(decided["train"] == train.y)),
        "train_agreement_with_ensemble": float(np.mean(decided["train"] == ensemble_train)),
        "epochs": fitted.epochs_run,
        "seconds": round(seconds, 1),
    }


def teacher_record(name: str, fold: Fold, teachers: list) -> dict:
    """Each teacher's and the ensemble's accuracy per person on validation and test."""
    from edgekd.distill.losses import softmax
    from edgekd.distill.train import predict_logits

    entry = {"fold": fold.number}
    for p in ("val", "test"):
        w, groups = fold.parts[p], fold.groups[p]
        probabilities = [softmax(predict_logits(t.model, w.x)) for t in teachers]
        models = {
            **{f"teacher {i + 1}": z for i, z in enumerate(probabilities)},
            "ensemble": np.mean(probabilities, axis=0),
        }
        entry[p] = {
            m: {
                s: float(np.mean(np.argmax(z[groups == s], 1) == w.y[groups == s]))
                for s in sorted(set(groups.tolist()))
            }
            for m, z in models.items()
        }
    return entry


def record_path(teacher_set: str, student: str) -> Path:
    return (
        RECORDS / teacher_set.replace(" ", "-") / f"{student.replace(' ', '-').replace('=', '').replace(',', '')}.json"
    )


def update_record(
    path: Path, fresh: dict, entry: dict | None = None, key=("fold", "seed"), field: str = "runs"
) -> dict:
    """Add `entry` to the record at `path` (created from `fresh`) under a lock, re-reading the file first: processes
    working side by side on other folds or seeds of the same record add to it rather than overwrite each other."""
    import fcntl

    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path.with_suffix(".lock"), "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        record = json.loads(path.read_text()) if path.exists() else fresh
        if entry is not None and not any(all(e[k] == entry[k] for k in key) for e in record[field]):
            record[field].append(entry)
            record[field].sort(key=lambda e: tuple(e[k] for k in key))
            write_json_atomic(path, record)
        return record


def run(teacher_set: str, students: list[str], seeds: list[int], fold_numbers: list[int]) -> None:
    all_folds = [f for f in folds() if f.number in fold_numbers]
    teachers_file = record_path(teacher_set, "teachers")
    fresh_teachers = {
        "teacher_set": teacher_set,
        "description": TEACHER_SETS[teacher_set].description,
        "options": {**BASE, **TEACHER_SETS[teacher_set].options},
        "folds": [],
    }
    for fold in all_folds:
        teachers = teachers_of(teacher_set, fold)
        if fold.number not in [f["fold"] for f in update_record(teachers_file, fresh_teachers, field="folds")["folds"]]:
            update_record(
                teachers_file, fresh_teachers, teacher_record(teacher_set, fold, teachers), key=("fold",), field="folds"
            )
        for name in students:
            path = record_path(teacher_set, name)
            fresh = {
                "teacher_set": teacher_set,
                "student": name,
                "description": STUDENTS[name].description,
                "preset": STUDENTS[name].preset,
                "alpha": STUDENTS[name].alpha,
                "options": STUDENTS[name].options,
                "runs": [],
            }
            for seed in seeds:
                if any(r["fold"] == fold.number and r["seed"] == seed for r in update_record(path, fresh)["runs"]):
                    continue
                entry = train_variant(STUDENTS[name], fold, teachers, seed)
                update_record(path, fresh, entry)
                print(
                    f"{teacher_set} / {name} fold {fold.number} seed {seed}: "
                    f"val {np.mean(list(entry['val'].values())):.3f} "
                    f"test {np.mean(list(entry['test'].values())):.3f} ({entry['seconds']:.0f} s)",
                    flush=True,
                )


# ---- report -------------------------------------------------------------------------------------------


def person_mean(runs: list[dict], part: str) -> tuple[float, float, int]:
    """(mean over people, sd over seeds of that mean, seeds): each seed's mean over every person of every fold."""
    seeds = sorted({r["seed"] for r in runs})
    by_seed = [np.mean([a for r in runs if r["seed"] == s for a in r[part].values()]) for s in seeds]
    return float(np.mean(by_seed)), float(np.std(by_seed, ddof=1)) if len(by_seed) > 1 else 0.0, len(seeds)


def markdown() -> str:
    lines = [
        "## Choosing the defaults on real people (`.venv/bin/python benchmarks/defaults.py`)",
        "",
        f"myo22 (22 people, real Myo sEMG) in the {FOLDS} folds of `edgekd distill --cv {FOLDS}`: each fold tests on "
        "4-5 people and validates on 3 others. Accuracies are means over the people (each person's own accuracy, then "
        "the mean); ± is the sd over student seeds of that mean. Choices are made on validation only; test is shown "
        "beside it and chose nothing. train / agree: the student's accuracy on its own training windows and its "
        "agreement there with the ensemble.",
        "",
    ]
    for set_dir in sorted(p for p in RECORDS.iterdir() if p.is_dir()) if RECORDS.exists() else []:
        teachers_file = set_dir / "teachers.json"
        if not teachers_file.exists():
            continue
        t = json.loads(teachers_file.read_text())
        complete = sorted(f["fold"] for f in t["folds"])
        lines += [f"### Teachers: {t['teacher_set']} ({t['description']})", ""]

        def mean(part, model, folds=t["folds"]):
            return float(np.mean([a for f in folds for a in f[part][model].values()]))

        names = [m for m in t["folds"][0]["val"]]
        lines += ["| model | validation | test |", "|---|---|---|"]
        lines += [f"| {m} | {100 * mean('val', m):.1f} | {100 * mean('test', m):.1f} |" for m in names]
        lines += [
            "",
            f"Folds {', '.join(map(str, complete))}.",
            "",
            "| student | seeds | validation | test | train | agree | epochs | s per student |",
            "|---|---|---|---|---|---|---|---|",
        ]
        rows = []
        for path in sorted(set_dir.glob("*.json")):
            if path.name == "teachers.json":
                continue
            rec = json.loads(path.read_text())
            runs = [r for r in rec["runs"] if r["fold"] in complete]
            if {r["fold"] for r in runs} != set(complete):
                continue  # a variant not yet run on every fold of the set is left out rather than compared unfairly
            val, val_sd, n = person_mean(runs, "val")
            test, test_sd, _ = person_mean(runs, "test")
            rows.append(
                (
                    val,
                    f"| {rec['student']} ({rec['description']}) | {n} | {100 * val:.1f} ± {100 * val_sd:.1f} | "
                    f"{100 * test:.1f} ± {100 * test_sd:.1f} | "
                    f"{100 * np.mean([r['train_accuracy'] for r in runs]):.1f} | "
                    f"{100 * np.mean([r['train_agreement_with_ensemble'] for r in runs]):.1f} | "
                    f"{np.mean([r['epochs'] for r in runs]):.0f} | {np.mean([r['seconds'] for r in runs]):.0f} |",
                )
            )
        lines += [row for _, row in sorted(rows, key=lambda r: -r[0])] + [""]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--teachers", default="drop", help=f"teacher set: one of {', '.join(TEACHER_SETS)}")
    parser.add_argument("--students", default="", help=f"comma-separated: of {', '.join(STUDENTS)}")
    parser.add_argument("--seeds", default="0", help="comma-separated student seeds")
    parser.add_argument(
        "--folds", default=",".join(str(i) for i in range(1, FOLDS + 1)), help="comma-separated fold numbers"
    )
    parser.add_argument("--threads", type=int, help="TensorFlow threads (1 for processes side by side)")
    parser.add_argument("--report-only", action="store_true", help="rebuild the DEFAULTS section from the records")
    args = parser.parse_args()
    if not args.report_only:
        if args.teachers not in TEACHER_SETS or any(s not in STUDENTS for s in filter(None, args.students.split(","))):
            parser.error(f"--teachers: one of {', '.join(TEACHER_SETS)}; --students: of {', '.join(STUDENTS)}")
        if args.threads:
            from edgekd._tf import tf

            tf.config.threading.set_intra_op_parallelism_threads(args.threads)
            tf.config.threading.set_inter_op_parallelism_threads(args.threads)
        run(
            args.teachers,
            [s for s in args.students.split(",") if s],
            [int(s) for s in args.seeds.split(",")],
            [int(f) for f in args.folds.split(",")],
        )
    publish("DEFAULTS", markdown())


if __name__ == "__main__":
    main()
