"""The method sweep: distillation methods side by side on the same teachers and held-out data, over student seeds.

    .venv/bin/python benchmarks/methods.py                   # myo5 rep 2 and isl50 s5 (about 2.5 hours on 2 cores)
    .venv/bin/python benchmarks/methods.py --only myo5       # the real-data cases alone (about 25 minutes)
    .venv/bin/python benchmarks/methods.py --run "myo5 test rep 2=PATH/TO/RUN"   # reuse a finished run's teachers
    .venv/bin/python benchmarks/methods.py --only "isl50 synthetic, test subject s5, augmented"
                                                             # one case (about 35 minutes)
    .venv/bin/python benchmarks/methods.py --only myo5 --workers 2   # the students two at a time on a local Ray

For each case, one `edgekd distill` run (spine.py's settings, or --run) provides the teachers. distill/replay.py
rebuilds the run's windows and the teachers' outputs; each method's student then trains with seeds 0..N-1
through `train_student`, the function `edgekd distill` uses, and is converted to int8 as `edgekd export --int8`
converts it. On myo5 the other teacher sources (--teachers-from seeds, subsets, snapshots) are trained too, and
a student distilled from each. The third case distils from teachers trained on augmented windows
(`--augment-teachers`). Results are saved after every student (benchmarks/records/methods/<case>.json, kept in
git so that RESULTS.md can be rebuilt anywhere), so an interrupted sweep resumes; the METHODS section of
benchmarks/RESULTS.md is rebuilt from them.

Records are kept per teacher set: the same `edgekd distill` command trains other teachers on another CPU, and at
times on the same kind of CPU (floating-point differences), so a replayed run whose teachers differ from a record's
starts a record of its own (record_path), shown as its own subsection. Two sweeps of one record with different
--methods may run side by side.

The spread is over student seeds: every method of a case distils from the same teachers, so the comparison
between methods is paired, and a method "beats scratch" only if its worst seed beats scratch's best seed. On isl50
a second student preset (OTHER_STUDENTS: the teacher's shape) trains by scratch and mean kl too: the size axis.
The best student is chosen on validation (accuracy, then log-loss), never on test.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import shlex
import sys
import tempfile
import time
from dataclasses import dataclass, fields, replace
from pathlib import Path

import numpy as np
from results_md import kept_subsection, publish
from spine import OUT, _slug, cases, run_for  # noqa: F401  (sys.path set up by spine)

from edgekd.data.windows import Preprocessor
from edgekd.distill.augment import Augmentation
from edgekd.distill.replay import RunTeacher, load_run_data
from edgekd.distill.run import REPRESENTATIVE_WINDOWS, DistillConfig, load_run
from edgekd.distill.stages import Prepared, TeacherSet, fit_selector, make_targets, train_student_kind, train_teachers
from edgekd.io import write_json_atomic
from edgekd.models.classical import evaluate, fit_baselines, time_domain_features, with_classical_teacher

SAVED = Path(__file__).resolve().parent / "records" / "methods"
MYO5_SHIFTED, ISL50 = "myo5 test rep 3 (shifted armband)", "isl50 synthetic, test subject s5"
AUGMENTED_SUFFIX = ", augmented teachers"
CASE_NAMES = ("myo5 test rep 2", MYO5_SHIFTED, MYO5_SHIFTED + AUGMENTED_SUFFIX, ISL50, ISL50 + AUGMENTED_SUFFIX)
# An augmented-teachers case is its spine case with the teachers (as well as the students of the "+ augment"
# methods) trained on randomly scaled and noised windows.
AUGMENTED_TEACHERS = {"augment_gain": 0.3, "augment_noise": 0.2, "augment_teachers": True}


@dataclass(frozen=True)
class Method:
    """One way to train a student, as `edgekd distill` options would give it. None: the run's own setting."""

    fusion: str = "mean"
    loss: str = "kl"
    alpha: float | None = None  # 1.0: labels only (scratch); None: the run's --alpha (0.3)
    augmentation: Augmentation | None = None  # --augment-gain, --augment-noise on the student's windows
    mixup: float = 0.0  # --mixup
    classical_teacher: str = "none"  # --classical-teacher: "lda" joins the run's teachers in the targets
    schedule: str = "constant"  # --lr-schedule
    epochs: int | None = None  # --epochs
    patience: int | None = None  # --patience
    classical_branch: str = "none"  # `edgekd export --classical-branch`: "lda" puts the LDA beside the trained student
    baseline: str = "scratch"  # the scratch method it is compared with: same size, windows and training length

    @property
    def scratch(self) -> bool:
        return self.alpha == 1.0

    def config(self, run: DistillConfig, student: str | None = None) -> DistillConfig:
        """The run's options with this method's: what `edgekd distill` would train this student with."""
        augmentation = self.augmentation or Augmentation()
        return replace(
            run,
            fusion=self.fusion,
            loss=self.loss,
            classical_teacher=self.classical_teacher,
            augment_gain=augmentation.gain_sd,
            augment_noise=augmentation.noise_sd,
            mixup=self.mixup,
            lr_schedule=self.schedule,
            epochs=run.epochs if self.epochs is None else self.epochs,
            patience=run.patience if self.patience is None else self.patience,
            student=student or run.student,
        )


AUGMENT = Augmentation(gain_sd=0.3, noise_sd=0.2)  # --augment-gain 0.3 --augment-noise 0.2
METHODS = {
    "scratch": Method(alpha=1.0),
    "mean kl": Method(),
    "weighted kl": Method(fusion="weighted"),
    "confidence kl": Method(fusion="confidence"),
    "vote kl": Method(fusion="vote"),
    "mean mse": Method(loss="mse"),
    "multi-head kl": Method(fusion="multi-head"),
    "mean hint": Method(loss="hint"),
    # --students edge-conv,edge-student --selector, both students distilled with "mean kl"
    "selector": Method(),
    "scratch + augment": Method(alpha=1.0, augmentation=AUGMENT),
    "mean kl + augment": Method(augmentation=AUGMENT, baseline="scratch + augment"),
    # windows mixed pairwise (--mixup 0.4), labels alike; the teachers compute the targets in each step on the
    # student's augmented, mixed windows (named when that took --consistent; distill does it for every augmentation now)
    "scratch + augment + mixup": Method(alpha=1.0, augmentation=AUGMENT, mixup=0.4),
    "mean kl + consistent": Method(augmentation=AUGMENT, mixup=0.4, baseline="scratch + augment + mixup"),
    # --classical-teacher lda: the LDA on time-domain features joins the network teachers in the targets
    "mean kl + LDA teacher": Method(classical_teacher="lda"),
    # --lr-schedule cosine --epochs 150 --patience 150: 2.5 times as long, the rate decayed to 0, the best epoch kept
    "scratch + cosine 150": Method(alpha=1.0, schedule="cosine", epochs=150, patience=150),
    "mean kl + cosine 150": Method(schedule="cosine", epochs=150, patience=150, baseline="scratch + cosine 150"),
    "mean kl + LDA teacher + cosine 150": Method(
        classical_teacher="lda", schedule="cosine", epochs=150, patience=150, baseline="scratch + cosine 150"
    ),
    # export --classical-branch lda: the trained student and the LDA in one model (models/hybrid.py)
    "scratch + LDA branch": Method(alpha=1.0, classical_branch="lda"),
    "mean kl + LDA branch": Method(classical_branch="lda", baseline="scratch + LDA branch"),
}
SELECTOR_STUDENTS = ("edge-conv", "edge-student")
# isl50's students take 2.5 (edge-conv) to 3.5 (edge-student) minutes each on two cores: the methods that differ
# most, not every one.
# loss-mean is left out everywhere: its gradient equals mean's (tests/test_fusion.py proves it).
CASE_METHODS = {
    "myo5 test rep 2": list(METHODS),  # about 20 s per student
    ISL50: [
        "scratch",
        "mean kl",
        "vote kl",
        "scratch + augment",
        "mean kl + augment",
        "scratch + augment + mixup",
        "mean kl + consistent",
        "mean kl + LDA teacher",
        "scratch + LDA branch",
        "mean kl + LDA branch",
        "weighted kl",
        "mean mse",
        "multi-head kl",
        "mean hint",
    ],
    ISL50 + AUGMENTED_SUFFIX: [
        "scratch + augment",
        "mean kl + augment",
        "scratch + LDA branch",
        "mean kl + LDA branch",
    ],
    MYO5_SHIFTED: [
        "scratch",
        "mean kl",
        "scratch + augment",
        "mean kl + augment",
        "mean kl + LDA teacher",
        "scratch + LDA branch",
        "mean kl + LDA branch",
    ],
    MYO5_SHIFTED + AUGMENTED_SUFFIX: ["scratch + augment", "mean kl + augment"],
}
# Students other than the run's (edge-conv), each trained by these methods: on isl50 a teacher-sized student
# distilled to the ensemble's accuracy in one run (README), so the sweep measures the size axis over seeds.
OTHER_STUDENTS = {
    ISL50: {
        "conv-teacher": [
            "scratch",
            "mean kl",
            "scratch + augment",
            "mean kl + augment",
            "scratch + augment + mixup",
            "mean kl + consistent",
            "mean kl + LDA teacher",
            "scratch + cosine 150",
            "mean kl + cosine 150",
            "mean kl + LDA teacher + cosine 150",
            "scratch + LDA branch",
            "mean kl + LDA branch",
        ]
    },
    ISL50 + AUGMENTED_SUFFIX: {
        "conv-teacher": ["scratch + augment", "mean kl + augment", "scratch + LDA branch", "mean kl + LDA branch"]
    },
}
# The run's own teachers are "bootstrap". myo5 has one sEMG stream, so no modality experts there; isl50's
# sEMG, accelerometer and gyroscope experts are its only other source (each isl50 teacher set costs ~15 minutes).
OTHER_TEACHERS = {"myo5 test rep 2": ["seeds", "subsets", "snapshots"], ISL50: ["modalities"]}


def is_scratch(method: str) -> bool:
    return METHODS[method].scratch


def sweep_cases(only: str | None) -> list:
    """The swept cases: spine.py's, and augmented-teachers variants of some of them."""
    known = {c.name: c for c in cases(None, generate=False)}
    for name in CASE_NAMES:
        if name.endswith(AUGMENTED_SUFFIX):
            base = known[name.removesuffix(AUGMENTED_SUFFIX)]
            known[name] = replace(base, name=name, options={**base.options, **AUGMENTED_TEACHERS})
    # --only: the case of exactly that name, else every case whose name starts with it
    selected = (
        [known[only]]
        if only in CASE_NAMES
        else [known[name] for name in CASE_NAMES if only is None or name.startswith(only)]
    )
    if any(c.dataset == known[ISL50].dataset for c in selected):
        cases(ISL50)  # writes the isl50 synthetic dataset on first use
    return selected


def record_path(case: str, teacher_accuracy: list[float]) -> Path:
    """Where the students distilled from these teachers are kept. Students of different teacher sets never share a
    record: the same `edgekd distill` command trains other teachers on another CPU, at times on the same one
    (floating-point differences), and
    a comparison between methods holds only on the same teachers. The case's first record keeps the plain name; a
    record of another teacher set is named after a digest of its teachers' test accuracies."""
    plain = SAVED / f"{_slug(case)}.json"
    if not plain.exists() or np.allclose(
        json.loads(plain.read_text()).get("teacher_test_accuracy", teacher_accuracy), teacher_accuracy
    ):
        return plain
    digest = hashlib.sha1(json.dumps([round(a, 6) for a in teacher_accuracy]).encode()).hexdigest()[:8]
    return SAVED / f"{_slug(case)}--teachers-{digest}.json"


def _student_key(entry: dict) -> tuple:
    return entry["method"], entry["teachers"], entry["seed"], entry.get("student")


def case_records(case: str) -> list[tuple[str, dict]]:
    """(heading, record) for every saved record of a case: the first teacher set's under the case's name, then the
    others' in the order they were first swept, each headed with its digest."""
    plain = SAVED / f"{_slug(case)}.json"
    others = [
        (p.stem.rsplit("--teachers-", 1)[1], json.loads(p.read_text()))
        for p in SAVED.glob(f"{_slug(case)}--teachers-*.json")
    ]
    others.sort(key=lambda item: min(item[1].get("sweep_s") or {"": 0}))
    return ([(case, json.loads(plain.read_text()))] if plain.exists() else []) + [
        (f"{case}, teacher set {d}", rec) for d, rec in others
    ]


def _cpu() -> str:
    """The CPU that trained a record's teachers and students: another CPU trains other teachers."""
    import platform

    cpuinfo = Path("/proc/cpuinfo")
    models = [
        line.split(":", 1)[1].strip()
        for line in (cpuinfo.read_text().splitlines() if cpuinfo.exists() else [])
        if line.startswith("model name")
    ]
    return models[0] if models else platform.processor() or platform.machine()


class Sweep:
    """One case: the run's windows and teachers, and every student trained on them so far (saved as they finish)."""

    def __init__(self, case, run_dir: Path, seeds: int):
        self.case, self.run_dir, self.seeds = case, run_dir, list(range(seeds))
        self.run, _ = load_run(run_dir)
        known = {
            f.name for f in fields(DistillConfig)
        }  # a run from before an option was removed (--consistent) still loads
        self.cfg = DistillConfig(
            **{**{k: v for k, v in self.run["config"].items() if k in known}, "verbose": 0, "repeats": 1}
        )
        print(f"\n== {case.name}: replaying {run_dir}", flush=True)
        self.data = load_run_data(run_dir, self.run, Path(self.run["dataset"]["path"]), parts=("train", "val", "test"))
        test = self.data.parts["test"]
        self.teacher_accuracy = [float(np.mean(np.argmax(z, 1) == test.y)) for z in self.data.teacher_logits["test"]]
        self.record_path = record_path(case.name, self.teacher_accuracy)
        self.record = json.loads(self.record_path.read_text()) if self.record_path.exists() else {"students": []}
        print(
            f"  teachers {' / '.join(f'{100 * a:.1f}' for a in self.teacher_accuracy)}: record {self.record_path.name}",
            flush=True,
        )
        self.teacher_sets = {"bootstrap": TeacherSet(self.data.teachers, self.data.teacher_logits)}
        # The replayed windows as distill's stages take them, with the run's batch: its --batch-size, or what auto
        # came to (run.json's training block; 32 before it existed).
        self.prepared = Prepared(
            self.data.parts,
            self.data.n_classes,
            Preprocessor.from_dict(self.run["preprocessing"]).streams,
            self.cfg.batch_size or (self.run.get("training") or {}).get("batch_size") or 32,
        )
        train = self.data.parts["train"]
        self.representative = train.x[np.random.default_rng(0).permutation(len(train.y))[:REPRESENTATIVE_WINDOWS]]

    def save(self) -> None:
        """Writes the record, keeping students that another sweep of the same record saved meanwhile (two sweeps of
        different --methods may run side by side, one per core)."""
        import fcntl

        (OUT / "methods").mkdir(parents=True, exist_ok=True)
        with open(OUT / "methods" / f"{self.record_path.stem}.lock", "w") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            if self.record_path.exists():
                on_disk = json.loads(self.record_path.read_text())
                mine = {_student_key(s) for s in self.record["students"]}
                self.record["students"] += [s for s in on_disk["students"] if _student_key(s) not in mine]
                commands = self.record.setdefault("commands", [])
                commands += [c for c in on_disk.get("commands", []) if c not in commands]
                self.record["sweep_s"] = {**on_disk.get("sweep_s", {}), **self.record.get("sweep_s", {})}
            write_json_atomic(self.record_path, self.record)

    def done(self, method: str, teachers: str, seed: int, student: str | None = None) -> bool:
        student = student or self.cfg.student
        return any(
            s["method"] == method
            and s["teachers"] == teachers
            and s["seed"] == seed
            and s.get("student", self.cfg.student) == student
            for s in self.record["students"]
        )

    def baselines(self) -> None:
        parts = self.data.parts
        test_logits = self.data.teacher_logits["test"]
        from edgekd.runtime.interpreter import softmax

        ensemble = np.mean([softmax(z) for z in test_logits], axis=0)
        # what the "+ LDA teacher" methods distil from: the networks and the LDA, mean of softmaxes
        with_lda = with_classical_teacher("lda", {"test": test_logits}, parts, self.data.n_classes)["test"]
        fitted = fit_baselines(time_domain_features(parts["train"].x), parts["train"].y, seed=0)
        self.record.update(
            {
                "case": self.case.name,
                "run": _in_repo(str(self.run_dir)),
                "seeds": sorted({*self.record.get("seeds", []), *self.seeds}),
                "cpu": self.record.get("cpu") or _cpu(),
                "windows": {part: int(len(w.y)) for part, w in parts.items()},
                "teacher_test_accuracy": self.teacher_accuracy,
                "ensemble_test_accuracy": float(np.mean(np.argmax(ensemble, 1) == parts["test"].y)),
                "ensemble_with_lda_test_accuracy": float(
                    np.mean(np.argmax(np.mean([softmax(z) for z in with_lda], 0), 1) == parts["test"].y)
                ),
                "baselines_test_accuracy": evaluate(fitted, time_domain_features(parts["test"].x), parts["test"].y),
                "config": {
                    k: self.run["config"].get(k)
                    for k in (
                        "temperature",
                        "alpha",
                        "epochs",
                        "patience",
                        "batch_size",
                        "student",
                        "teacher",
                        "augment_gain",
                        "augment_noise",
                        "augment_teachers",
                    )
                },
            }
        )
        self.save()

    def train_teachers(self, source: str) -> None:
        """Another --teachers-from source on the same windows, as distill trains it."""
        from edgekd.models.presets import load_preset

        cfg, test = replace(self.cfg, teachers_from=source), self.data.parts["test"]
        started = time.perf_counter()
        trained = train_teachers(cfg, self.prepared, load_preset(cfg.teacher))
        teachers = [RunTeacher(t.model, t.channels) for t in trained.teachers]
        self.teacher_sets[source] = TeacherSet(teachers, trained.logits)
        self.record.setdefault("other_teachers", {})[source] = {
            "test_accuracy": [float(np.mean(np.argmax(z, 1) == test.y)) for z in trained.logits["test"]],
            "train_s": round(time.perf_counter() - started, 1),
        }
        print(f"  teachers from {source}: {self.record['other_teachers'][source]}", flush=True)

    def student(self, method: str, teachers: str, seed: int, student: str | None = None) -> str:
        """`student`: a preset other than the run's. Returns the line it prints."""
        from edgekd.models.build import count_params
        from edgekd.models.presets import load_preset

        if method == "selector":
            return self.selector_system(teachers, seed)
        m = METHODS[method]
        cfg, kind = m.config(self.cfg, student), "student_scratch" if m.scratch else "student_kd"
        preset, parts = load_preset(cfg.student), self.data.parts
        targets = make_targets(cfg, self.prepared, self.teacher_sets[teachers], [preset])
        started = time.perf_counter()
        model, fitted = train_student_kind(cfg, self.prepared, targets, kind, seed, preset, kind)
        val_accuracy, branch = fitted.best_val_accuracy, None
        if m.classical_branch != "none":
            from edgekd.models.hybrid import hybrid

            model, branch = hybrid(
                model, parts["train"].x, parts["train"].y, parts["val"].x, parts["val"].y, self.data.n_classes
            )
            val_accuracy = float(np.mean(np.argmax(model.predict(parts["val"].x, verbose=0), 1) == parts["val"].y))
        train_s = time.perf_counter() - started
        entry = {
            "method": method,
            "teachers": teachers,
            "student": cfg.student,
            "params": count_params(model),
            "seed": seed,
            "val_accuracy": val_accuracy,
            "val_log_loss": self._val_log_loss(model),
            **({"classical_branch": branch.describe()} if branch else {}),
            "epochs": fitted.epochs_run,
            "train_s": round(train_s, 1),
            **self._test(model, branch.float_layers if branch and branch.kept else ()),
        }
        self.record["students"].append(entry)
        self.save()
        line = (
            f"  {method:<16} teachers {teachers:<9} {cfg.student} seed {seed}: val {entry['val_accuracy']:.3f} test "
            f"{entry['test_accuracy']:.3f} int8 {entry['int8_test_accuracy']:.3f} ({train_s:.0f} s)"
        )
        print(line, flush=True)
        return line

    def selector_system(self, teachers: str, seed: int) -> None:
        """SELECTOR_STUDENTS distilled with mean KL, a selector routing between them, and the system as one model."""
        from edgekd.distill.selector import system_model, system_report
        from edgekd.distill.train import predict_logits
        from edgekd.models.build import count_params
        from edgekd.models.presets import load_preset

        cfg, parts = replace(METHODS["selector"].config(self.cfg), seed=seed), self.data.parts
        presets = [load_preset(name) for name in SELECTOR_STUDENTS]
        targets = make_targets(cfg, self.prepared, self.teacher_sets[teachers], presets)
        started = time.perf_counter()
        students = [
            train_student_kind(cfg, self.prepared, targets, "student_kd", seed, preset, f"student_{j}")[0]
            for j, preset in enumerate(presets)
        ]
        fitted = fit_selector(cfg, self.prepared, students, load_preset("selector"), seed)
        logits = {part: [predict_logits(s, parts[part].x) for s in students] for part in ("val", "test")}
        train_s = time.perf_counter() - started
        reports = {
            part: system_report(
                logits[part],
                predict_logits(fitted.model, parts[part].x),
                parts[part].y,
                list(SELECTOR_STUDENTS),
                [count_params(s) for s in students],
                count_params(fitted.model),
            )
            for part in ("val", "test")
        }
        system = system_model(students, fitted.model)
        entry = {
            "method": "selector",
            "teachers": teachers,
            "student": "+".join(SELECTOR_STUDENTS),
            "params": reports["test"]["params"]["system"],
            "seed": seed,
            "val_accuracy": reports["val"]["system"],
            "val_log_loss": self._val_log_loss(system),
            "epochs": fitted.epochs_run,
            "train_s": round(train_s, 1),
            "system": reports["test"],
            **self._test(system),
        }
        self.record["students"].append(entry)
        self.save()
        line = (
            f"  selector         teachers {teachers:<9} seed {seed}: val {entry['val_accuracy']:.3f} test "
            f"{entry['test_accuracy']:.3f} int8 {entry['int8_test_accuracy']} students {reports['test']['students']} "
            f"oracle {reports['test']['oracle']:.3f} ({train_s:.0f} s)"
        )
        print(line, flush=True)
        return line

    def _val_log_loss(self, model) -> float:
        """Mean cross-entropy of the model's logits on the validation labels: it ranks students whose validation
        accuracy ties (on myo5 most methods reach 100%)."""
        from scipy.special import log_softmax

        from edgekd.distill.train import predict_logits

        val = self.data.parts["val"]
        log_p = log_softmax(predict_logits(model, val.x).astype(np.float64), axis=1)
        return float(-np.mean(log_p[np.arange(len(val.y)), val.y]))

    def _test(self, model, float_layers: tuple[str, ...] = ()) -> dict:
        """Keras and int8 test accuracy; int8 converted as `edgekd export --int8` converts (MLIR, then legacy; an LDA
        branch's float_layers in float32)."""
        from edgekd.export.export import MIN_AGREEMENT, convert_checked

        test = self.data.parts["test"]
        keras_accuracy = float(np.mean(np.argmax(model(test.x, training=False).numpy(), 1) == test.y))
        with tempfile.TemporaryDirectory() as tmp:
            best = convert_checked(
                model,
                "int8",
                self.representative,
                test.x,
                MIN_AGREEMENT["int8"],
                Path(tmp) / "s.tflite",
                lambda quantizer: {},
                {},
                log=lambda m: None,
                float_layers=float_layers,
            )
            if best is None:
                return {"test_accuracy": keras_accuracy, "int8_test_accuracy": None, "int8_agreement": None}
            best.path.unlink(missing_ok=True)
        return {
            "test_accuracy": keras_accuracy,
            "int8_test_accuracy": float(np.mean(np.argmax(best.logits, 1) == test.y)),
            "int8_agreement": best.agreement,
            "int8_quantizer": best.quantizer,
        }


def summarise(record: dict) -> list[dict]:
    """One row per (teachers, student, method): mean, sd, min and max over seeds of val, test and int8 test accuracy."""
    groups: dict[tuple[str, str, str], list[dict]] = {}
    for s in record["students"]:
        groups.setdefault((s["teachers"], s.get("student", record["config"]["student"]), s["method"]), []).append(s)
    rows = []
    for (teachers, student, method), entries in groups.items():
        row = {
            "teachers": teachers,
            "student": student,
            "method": method,
            "seeds": len(entries),
            "params": entries[0].get("params"),
        }
        for key in ("val_accuracy", "val_log_loss", "test_accuracy", "int8_test_accuracy"):
            values = np.array([e[key] for e in entries if e.get(key) is not None], dtype=float)
            row[key] = (
                {
                    "mean": float(values.mean()),
                    "sd": float(values.std(ddof=1)) if len(values) > 1 else 0.0,
                    "min": float(values.min()),
                    "max": float(values.max()),
                }
                if len(values)
                else None
            )
        row["train_s"] = float(np.median([e["train_s"] for e in entries]))
        rows.append(row)
    return rows


def _augmented_teachers(rec: dict) -> str:
    config = rec["config"]
    return (
        f", trained on augmented windows: `--augment-gain {config['augment_gain']:g} "
        f"--augment-noise {config['augment_noise']:g} --augment-teachers`"
    )


def _pct(stats: dict | None) -> str:
    return "-" if stats is None else f"{100 * stats['mean']:.1f} ± {100 * stats['sd']:.1f}"


def markdown(records: list[tuple[str, dict]], kept: dict[str, str] | None = None) -> str:
    """`records`: (heading, record) as case_records gives them; `kept`: case name -> its subsection as RESULTS.md has
    it, for cases whose saved numbers are not on this machine."""
    lines = [
        "## Distillation methods (`.venv/bin/python benchmarks/methods.py`)",
        "",
        "Every student of a case distils from the same teachers (one `edgekd distill` run) on the same held-out data; "
        "the spread (± sample sd, and the range) is over student seeds. "
        "int8: converted as `edgekd export --int8` does. "
        "A method beats scratch only if its worst seed beats scratch's best. The best method is chosen on validation, "
        "not on test: the highest mean validation accuracy, ties broken by the lower mean validation log-loss.",
        "",
    ]
    by_case, kept = {}, kept or {}
    for heading, rec in records:
        by_case.setdefault(rec["case"], []).append((heading, rec))
    items = [
        item for name in CASE_NAMES for item in by_case.get(name) or ([(None, kept[name])] if name in kept else [])
    ]
    for heading, rec in items:
        if heading is None:  # a kept subsection
            lines += [rec, ""]
            continue
        # the run's student first, then the others; each in METHODS order
        rows = sorted(
            summarise(rec),
            key=lambda r: (r["student"] != rec["config"]["student"], r["student"], list(METHODS).index(r["method"])),
        )
        base = rec["baselines_test_accuracy"]
        swept = max(rec.get("sweep_s", {}).values(), default=None)  # the longest invocation (some ran side by side)
        augmented = rec["config"].get("augment_teachers")
        lines += [
            f"### {heading}",
            "",
            f"Commands: {', then '.join(f'`{c}`' for c in _commands(rec))} "
            f"(teachers: run `{_in_repo(rec['run'])}`; {len(rec['seeds'])} student seeds; "
            f"windows train/val/test {rec['windows']['train']}/{rec['windows']['val']}/{rec['windows']['test']}; "
            f"{rec['config']['student']} student, T={rec['config']['temperature']:g}, alpha={rec['config']['alpha']:g}"
            + (f"; longest sweep {swept / 60:.0f} min" if swept else "")
            + ").",
            "",
            *([f"Trained on: {rec['cpu']}.", ""] if rec.get("cpu") else []),
            f"Teachers (bootstrap, the run's{_augmented_teachers(rec) if augmented else ''}): "
            f"{' / '.join(f'{100 * a:.1f}' for a in rec['teacher_test_accuracy'])}, "
            f"ensemble {100 * rec['ensemble_test_accuracy']:.1f}"
            + (
                " (with the LDA as one more teacher, mean of softmaxes: "
                f"{100 * rec['ensemble_with_lda_test_accuracy']:.1f})"
                if "ensemble_with_lda_test_accuracy" in rec
                else ""
            )
            + f"; classical baselines: LDA {100 * base['lda']:.1f}, "
            f"random forest {100 * base['random_forest']:.1f} (test %).",
            "",
        ]
        for source, info in rec.get("other_teachers", {}).items():
            lines.append(
                f"- teachers from {source}: {' / '.join(f'{100 * a:.1f}' for a in info['test_accuracy'])} "
                f"(trained in {info['train_s']:.0f} s)"
            )
        lines += [
            "",
            "| teachers | student | params | method | seeds | val % | val log-loss | test % | test range | int8 test % "
            "| vs scratch | train s |",
            "|---|---|---|---|---|---|---|---|---|---|---|---|",
        ]
        for r in rows:
            scratch = _scratch_for(r, rows)
            t = r["test_accuracy"]
            val_loss = "-" if r["val_log_loss"] is None else f"{r['val_log_loss']['mean']:.3g}"
            params = "-" if r["params"] is None else f"{r['params']:,}"
            lines.append(
                f"| {r['teachers']} | {r['student']} | {params} | {r['method']} | {r['seeds']} | "
                f"{_pct(r['val_accuracy'])} | {val_loss} | {_pct(t)} | {100 * t['min']:.1f}–{100 * t['max']:.1f} | "
                f"{_pct(r['int8_test_accuracy'])} | "
                f"{_versus(r, scratch)} | {r['train_s']:.0f} |"
            )
        lines += _selector_lines(rec) + _branch_lines(rec)
        lines += ["", "Targets (issue 3):", ""] + [f"- {t}" for t in targets(rec, rows)] + [""]
    return "\n".join(lines)


def _in_repo(path: str) -> str:
    """A path under the checkout as the commands above write it (relative to the repository root)."""
    repo = Path(__file__).resolve().parents[1]
    return str(Path(path).resolve().relative_to(repo)) if Path(path).resolve().is_relative_to(repo) else path


def _selector_lines(rec: dict) -> list[str]:
    systems = [s["system"] for s in rec["students"] if s["method"] == "selector"]
    if not systems:
        return []
    mean = lambda values: f"{100 * np.mean(values):.1f}"  # noqa: E731
    students = " / ".join(f"{name} {mean([s['students'][name] for s in systems])}" for name in SELECTOR_STUDENTS)
    routing = ", ".join(f"{np.mean([s['routing'][name] for s in systems]):.0%} to {name}" for name in SELECTOR_STUDENTS)
    return [
        "",
        f"Selector (mean over {len(systems)} seeds, test %): students {students}; "
        f"system {mean([s['system'] for s in systems])}; "
        f"oracle {mean([s['oracle'] for s in systems])}; it sends {routing}. The system file computes the selector "
        f"and both students for every window: {systems[0]['params']['system']:,} parameters against "
        f"{systems[0]['params']['students'][SELECTOR_STUDENTS[0]]:,} for {SELECTOR_STUDENTS[0]} alone.",
    ]


def _branch_lines(rec: dict) -> list[str]:
    """Where export's rule kept the LDA branch: a left-out branch makes the row the student alone."""
    runs = {}
    for s in rec["students"]:
        if s.get("classical_branch"):
            runs.setdefault((s["student"], s["method"]), []).append(s["classical_branch"])
    if not runs:
        return []
    parts = []
    for (student, method), branches in runs.items():
        kept = [b for b in branches if b["kept"]]
        temperatures = ", ".join(f"{b['temperature']:g}" for b in kept)
        parts.append(
            f"{method} ({student}) on {len(kept)} of {len(branches)} seeds" + (f", T = {temperatures}" if kept else "")
        )
    return [
        "",
        "LDA branch kept (it must raise the validation accuracy over the student alone): " + "; ".join(parts) + ".",
    ]


def _commands(rec: dict) -> list[str]:
    """The invocations that made the record (older records kept one)."""
    return rec.get("commands") or [
        rec.get("command") or ".venv/bin/python benchmarks/methods.py --only " + rec["case"].split()[0]
    ]


def _scratch_for(row: dict, rows: list[dict]) -> dict | None:
    """What a student is compared with: scratch at the same size with the same augmentation and mixup (plain
    scratch when the case has no such scratch row)."""
    same_size = {r["method"]: r for r in rows if r["student"] == row["student"] and is_scratch(r["method"])}
    return same_size.get(METHODS[row["method"]].baseline) or same_size.get("scratch")


def _versus(row: dict, scratch: dict | None) -> str:
    if scratch is None or is_scratch(row["method"]):
        return ""
    a, b = row["test_accuracy"], scratch["test_accuracy"]
    delta = 100 * (a["mean"] - b["mean"])
    if min(row["seeds"], scratch["seeds"]) < 2:  # one seed has no spread to be beaten beyond
        return f"{delta:+.1f} (one seed)"
    verdict = "beats" if a["min"] > b["max"] else "below" if a["max"] < b["min"] else "within spread"
    return f"{delta:+.1f} ({verdict})"


def targets(rec: dict, rows: list[dict]) -> list[str]:
    kd = [r for r in rows if not is_scratch(r["method"]) and r["int8_test_accuracy"] is not None]
    if not kd:
        return ["no KD student yet"]
    # As KeepBest chooses epochs: higher mean validation accuracy, then lower mean validation log-loss.
    loss = lambda r: r["val_log_loss"]["mean"] if r.get("val_log_loss") else float("inf")  # noqa: E731
    best = max(kd, key=lambda r: (r["val_accuracy"]["mean"], -loss(r)))
    tied = [r for r in kd if r is not best and r["val_accuracy"]["mean"] == best["val_accuracy"]["mean"]]
    int8 = best["int8_test_accuracy"]["mean"]
    ensemble, classical = rec["ensemble_test_accuracy"], max(rec["baselines_test_accuracy"].values())
    met = lambda ok: "met" if ok else "NOT met"  # noqa: E731
    # A student taught by the LDA too is also held to the ensemble it learnt from: the networks and the LDA.
    with_lda = (
        rec.get("ensemble_with_lda_test_accuracy") if METHODS[best["method"]].classical_teacher == "lda" else None
    )
    lda_line = (
        [
            f"within 1 point of the ensemble it distilled from, networks + LDA ({100 * with_lda:.1f}%): "
            f"{100 * (int8 - with_lda):+.1f} points, {met(int8 >= with_lda - 0.01)}"
        ]
        if with_lda is not None
        else []
    )
    return [
        f"best KD student by validation: {best['method']} (teachers {best['teachers']}, student {best['student']}), "
        "int8 test "
        f"{100 * int8:.1f}% (mean of {best['seeds']} seeds)"
        + (
            f"; {len(tied)} others tie at {100 * best['val_accuracy']['mean']:.1f}% validation accuracy, and its "
            f"validation log-loss ({loss(best):.3g}) is the lowest of them"
            if tied
            else ""
        ),
        f"within 1 point of the teacher ensemble ({100 * ensemble:.1f}%): {100 * (int8 - ensemble):+.1f} points, "
        f"{met(int8 >= ensemble - 0.01)}",
        *lda_line,
        f"not below the best classical baseline ({100 * classical:.1f}%): {100 * (int8 - classical):+.1f} points, "
        f"{met(int8 >= classical)}",
    ]


def sweep_on_ray(case, run_dir: Path, seeds: int, jobs: list[tuple], workers: int) -> None:
    """The students of `jobs` ((method, teachers, seed, student)) as tasks of Ray actors, each actor with its own replay
    of the case (the windows and the teachers' outputs: built once per actor, not per student), one CPU and one
    TensorFlow thread. Each saves into the case's record as it finishes, as two serial sweeps side by side do
    (Sweep.save merges under a lock), so an interrupted sweep still resumes."""
    import os

    import ray
    from ray.util import ActorPool

    here = Path(__file__).resolve().parent
    ray.init(
        num_cpus=workers,
        include_dashboard=False,
        log_to_driver=False,
        logging_level="ERROR",
        runtime_env={"env_vars": {"PYTHONPATH": os.pathsep.join([str(here), str(here.parent)])}},
    )

    @ray.remote(num_cpus=1)
    class SweepWorker:
        def __init__(self):
            from edgekd._tf import tf

            tf.config.threading.set_intra_op_parallelism_threads(1)
            tf.config.threading.set_inter_op_parallelism_threads(1)
            self.sweep = Sweep(case, run_dir, seeds)

        def student(self, method, teachers, seed, student):
            return self.sweep.student(method, teachers, seed, student)

    print(f"  {len(jobs)} students on Ray, {workers} at a time", flush=True)
    try:
        pool = ActorPool([SweepWorker.remote() for _ in range(min(workers, len(jobs)))])
        for line in pool.map_unordered(lambda worker, job: worker.student.remote(*job), jobs):
            print(line, flush=True)
    finally:
        ray.shutdown()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--only", help="the case of this name, else the cases whose name starts with this")
    parser.add_argument(
        "--run", action="append", default=[], help="CASE=RUN_DIR: distil from a finished run's teachers"
    )
    parser.add_argument(
        "--seeds", type=int, default=3, help="student seeds per method (0..N-1); the record keeps every seed swept"
    )
    parser.add_argument(
        "--methods", help="comma-separated: of the case's methods (CASE_METHODS, OTHER_STUDENTS) only these"
    )
    parser.add_argument("--report-only", action="store_true", help="rebuild the section from saved numbers")
    parser.add_argument(
        "--workers",
        type=int,
        help="train the students of the run's own teachers N at a time on a local "
        "Ray (`pip install 'edgekd[scale]'`), each worker with its own replay",
    )
    args = parser.parse_args()
    given = dict(item.split("=", 1) for item in args.run)
    unknown = [m for m in (args.methods or "").split(",") if args.methods and m not in METHODS]
    if unknown:
        parser.error(f"--methods: unknown {', '.join(map(repr, unknown))}; known: {', '.join(METHODS)}")
    if not args.report_only:
        for case in sweep_cases(args.only):
            started = time.perf_counter()
            sweep = Sweep(case, run_for(case, given, OUT / "methods"), args.seeds)
            sweep.baselines()
            # Every invocation that swept the case: together they reproduce its record.
            command = shlex.join([".venv/bin/python", "benchmarks/methods.py", *sys.argv[1:]])
            commands = sweep.record.setdefault(
                "commands", [sweep.record.pop("command")] if "command" in sweep.record else []
            )
            if command not in commands:
                commands.append(command)
            methods = args.methods.split(",") if args.methods else CASE_METHODS[case.name]
            # --methods filters the other students' methods too
            jobs = [(None, m) for m in CASE_METHODS[case.name] if m in methods] + [
                (student, m)
                for student, listed in OTHER_STUDENTS.get(case.name, {}).items()
                for m in listed
                if m in methods
            ]
            # seed-major: an interrupted sweep still has every method at some seeds
            pending = [
                (method, "bootstrap", seed, student)
                for seed in sweep.seeds
                for student, method in jobs
                if not sweep.done(method, "bootstrap", seed, student)
            ]
            if args.workers and pending:
                sweep_on_ray(case, sweep.run_dir, args.seeds, pending, args.workers)
                sweep.record = json.loads(sweep.record_path.read_text())  # what the workers saved
            else:
                for job in pending:
                    sweep.student(*job)
            for source in OTHER_TEACHERS.get(case.name, []) if not args.methods else []:
                if all(sweep.done("mean kl", source, seed) for seed in sweep.seeds):
                    continue
                sweep.train_teachers(source)
                for seed in sweep.seeds:
                    if not sweep.done("mean kl", source, seed):
                        sweep.student("mean kl", source, seed)
            sweep.record.setdefault("sweep_s", {})[time.strftime("%Y-%m-%d %H:%M")] = round(
                time.perf_counter() - started
            )
            sweep.save()
    records = [item for n in CASE_NAMES for item in case_records(n)]
    kept = {n: kept_subsection("METHODS", n) for n in CASE_NAMES if not case_records(n)}
    publish("METHODS", markdown(records, {n: t for n, t in kept.items() if t}))


if __name__ == "__main__":
    main()
