"""The method sweep: distillation methods side by side on the same teachers and held-out data, over student seeds.

    .venv/bin/python benchmarks/methods.py                   # myo5 rep 2 and isl50 s5 (about 2.5 hours on 2 cores)
    .venv/bin/python benchmarks/methods.py --only myo5       # the real-data cases alone (about 25 minutes)
    .venv/bin/python benchmarks/methods.py --run "myo5 test rep 2=PATH/TO/RUN"   # reuse a finished run's teachers
    .venv/bin/python benchmarks/methods.py --only "isl50 synthetic, test subject s5, augmented"   # one case (about 35 minutes)

For each case, one `edgekd distill` run (spine.py's settings, or --run) provides the teachers. distill/replay.py
rebuilds the run's windows and the teachers' outputs; each method's student then trains with seeds 0..N-1
through `train_student`, the function `edgekd distill` uses, and is converted to int8 as `edgekd export --int8`
converts it. On myo5 the other teacher sources (--teachers-from seeds, subsets, snapshots) are trained too, and
a student distilled from each. The third case distils from teachers trained on augmented windows
(`--augment-teachers`). Results are saved after every student (benchmarks/records/methods/<case>.json, kept in
git so that RESULTS.md can be rebuilt anywhere), so an interrupted sweep resumes; the METHODS section of
benchmarks/RESULTS.md is rebuilt from them.

The spread is over student seeds: every method of a case distils from the same teachers, so the comparison
between methods is paired, and a method "beats scratch" only if its worst seed beats scratch's best seed. On isl50
a second student preset (OTHER_STUDENTS: the teacher's shape) trains by scratch and mean kl too: the size axis.
The best student is chosen on validation (accuracy, then log-loss), never on test.
"""
from __future__ import annotations

import argparse
import json
import shlex
import sys
import tempfile
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
from spine import OUT, _slug, cases, run_for  # noqa: F401  (sys.path set up by spine)

from edgekd.distill.augment import Augmentation
from edgekd.distill.fusion import distillation_targets
from edgekd.distill.replay import RunTeacher, load_run_data
from edgekd.distill.run import REPRESENTATIVE_WINDOWS, DistillConfig, kd_objective, load_run, student_targets
from edgekd.io import write_json_atomic
from edgekd.models.classical import evaluate, fit_baselines, time_domain_features
from results_md import kept_subsection, write_section

SAVED = Path(__file__).resolve().parent / "records" / "methods"
MYO5_SHIFTED, ISL50 = "myo5 test rep 3 (shifted armband)", "isl50 synthetic, test subject s5"
AUGMENTED_SUFFIX = ", augmented teachers"
CASE_NAMES = ("myo5 test rep 2", MYO5_SHIFTED, MYO5_SHIFTED + AUGMENTED_SUFFIX, ISL50, ISL50 + AUGMENTED_SUFFIX)
# An augmented-teachers case is its spine case with the teachers (as well as the students of the "+ augment"
# methods) trained on randomly scaled and noised windows.
AUGMENTED_TEACHERS = {"augment_gain": 0.3, "augment_noise": 0.2, "augment_teachers": True}
# "<--fusion> <--loss>" -> (fusion, loss, alpha); alpha None: the run's own (--alpha's default, 0.3). "scratch" learns from labels.
METHODS = {
    "scratch": ("mean", "kl", 1.0),
    "scratch + augment": ("mean", "kl", 1.0),
    "mean kl": ("mean", "kl", None),
    "weighted kl": ("weighted", "kl", None),
    "confidence kl": ("confidence", "kl", None),
    "vote kl": ("vote", "kl", None),
    "mean mse": ("mean", "mse", None),
    "multi-head kl": ("multi-head", "kl", None),
    "mean hint": ("mean", "hint", None),
    # --students edge-conv,edge-student --selector, both students distilled with "mean kl"
    "selector": ("mean", "kl", None),
    # --augment-gain 0.3 --augment-noise 0.2 (AUGMENTED): the student's training windows randomly scaled and noised
    "mean kl + augment": ("mean", "kl", None),
    # ... and --mixup 0.4 (MIXED): windows mixed pairwise, labels alike; with --consistent (CONSISTENT) the
    # teachers compute the targets in each step on the student's augmented, mixed windows
    "scratch + augment + mixup": ("mean", "kl", 1.0),
    "mean kl + consistent": ("mean", "kl", None),
}
MIXED = {"scratch + augment + mixup": 0.4, "mean kl + consistent": 0.4}
CONSISTENT = ("mean kl + consistent",)
AUGMENTED = {method: Augmentation(gain_sd=0.3, noise_sd=0.2)
             for method in ("scratch + augment", "mean kl + augment", *MIXED)}
SELECTOR_STUDENTS = ("edge-conv", "edge-student")
# isl50's students take 2.5 (edge-conv) to 3.5 (edge-student) minutes each on two cores: the methods that differ most, not every one.
# loss-mean is left out everywhere: its gradient equals mean's (tests/test_fusion.py proves it).
CASE_METHODS = {
    "myo5 test rep 2": list(METHODS),  # about 20 s per student
    ISL50: ["scratch", "mean kl", "vote kl", "scratch + augment", "mean kl + augment", "scratch + augment + mixup", "mean kl + consistent", "weighted kl", "mean mse", "multi-head kl", "mean hint"],
    ISL50 + AUGMENTED_SUFFIX: ["scratch + augment", "mean kl + augment"],
    MYO5_SHIFTED: ["scratch", "mean kl", "scratch + augment", "mean kl + augment"],
    MYO5_SHIFTED + AUGMENTED_SUFFIX: ["scratch + augment", "mean kl + augment"],
}
# Students other than the run's (edge-conv), each trained by these methods: on isl50 a teacher-sized student
# distilled to the ensemble's accuracy in one run (README), so the sweep measures the size axis over seeds.
OTHER_STUDENTS = {ISL50: {"conv-teacher": ["scratch", "mean kl", "scratch + augment", "mean kl + augment",
                                           "scratch + augment + mixup", "mean kl + consistent"]},
                  ISL50 + AUGMENTED_SUFFIX: {"conv-teacher": ["scratch + augment", "mean kl + augment"]}}
# The run's own teachers are "bootstrap". myo5 has one sEMG stream, so no modality experts there; isl50's
# sEMG, accelerometer and gyroscope experts are its only other source (each isl50 teacher set costs ~15 minutes).
OTHER_TEACHERS = {"myo5 test rep 2": ["seeds", "subsets", "snapshots"], ISL50: ["modalities"]}


def is_scratch(method: str) -> bool:
    return METHODS[method][2] == 1.0


def sweep_cases(only: str | None) -> list:
    """The swept cases: spine.py's, and augmented-teachers variants of some of them."""
    known = {c.name: c for c in cases(None, generate=False)}
    for name in CASE_NAMES:
        if name.endswith(AUGMENTED_SUFFIX):
            base = known[name.removesuffix(AUGMENTED_SUFFIX)]
            known[name] = replace(base, name=name, options={**base.options, **AUGMENTED_TEACHERS})
    # --only: the case of exactly that name, else every case whose name starts with it
    selected = [known[only]] if only in CASE_NAMES else [known[name] for name in CASE_NAMES if only is None or name.startswith(only)]
    if any(c.dataset == known[ISL50].dataset for c in selected):
        cases(ISL50)  # writes the isl50 synthetic dataset on first use
    return selected


class Sweep:
    """One case: the run's windows and teachers, and every student trained on them so far (saved as they finish)."""

    def __init__(self, case, run_dir: Path, seeds: int):
        self.case, self.run_dir, self.seeds = case, run_dir, list(range(seeds))
        self.run, _ = load_run(run_dir)
        self.cfg = DistillConfig(**{**self.run["config"], "verbose": 0, "repeats": 1})
        self.record_path = SAVED / f"{_slug(case.name)}.json"
        self.record = json.loads(self.record_path.read_text()) if self.record_path.exists() else {"students": []}
        print(f"\n== {case.name}: replaying {run_dir}", flush=True)
        self.data = load_run_data(run_dir, self.run, Path(self.run["dataset"]["path"]), parts=("train", "val", "test"))
        self.teacher_sets = {"bootstrap": (self.data.teachers, self.data.teacher_logits)}
        train = self.data.parts["train"]
        self.representative = train.x[np.random.default_rng(0).permutation(len(train.y))[:REPRESENTATIVE_WINDOWS]]

    def save(self) -> None:
        write_json_atomic(self.record_path, self.record)

    def done(self, method: str, teachers: str, seed: int, student: str | None = None) -> bool:
        student = student or self.cfg.student
        return any(s["method"] == method and s["teachers"] == teachers and s["seed"] == seed
                   and s.get("student", self.cfg.student) == student for s in self.record["students"])

    def baselines(self) -> None:
        parts = self.data.parts
        test_logits = self.data.teacher_logits["test"]
        from edgekd.runtime.interpreter import softmax

        ensemble = np.mean([softmax(z) for z in test_logits], axis=0)
        fitted = fit_baselines(time_domain_features(parts["train"].x), parts["train"].y, seed=0)
        self.record.update({
            "case": self.case.name, "run": _in_repo(str(self.run_dir)), "seeds": self.seeds,
            "windows": {part: int(len(w.y)) for part, w in parts.items()},
            "teacher_test_accuracy": [float(np.mean(np.argmax(z, 1) == parts["test"].y)) for z in test_logits],
            "ensemble_test_accuracy": float(np.mean(np.argmax(ensemble, 1) == parts["test"].y)),
            "baselines_test_accuracy": evaluate(fitted, time_domain_features(parts["test"].x), parts["test"].y),
            "config": {k: self.run["config"].get(k) for k in ("temperature", "alpha", "epochs", "patience", "batch_size", "student", "teacher",
                                                            "augment_gain", "augment_noise", "augment_teachers")},
        })
        self.save()

    def train_teachers(self, source: str) -> None:
        """Another --teachers-from source on the same windows, as distill trains it."""
        from edgekd.data.windows import Preprocessor
        from edgekd.distill.teachers import STRATEGIES, TeacherJob, teacher_input
        from edgekd.distill.train import predict_logits
        from edgekd.models.presets import load_preset

        parts, cfg = self.data.parts, DistillConfig(**{**self.cfg.__dict__, "teachers_from": source})
        _, window_len, channels = parts["train"].x.shape
        job = TeacherJob(cfg, load_preset(cfg.teacher), parts["train"], parts["val"], self.data.n_classes, window_len, channels,
                         Preprocessor.from_dict(self.run["preprocessing"]).streams, self._fit_args(), log=lambda m: None)
        started = time.perf_counter()
        teachers = [RunTeacher(t.model, t.channels) for t in STRATEGIES[source](job).teachers]
        logits = {part: [predict_logits(t.model, teacher_input(w.x, t.channels)) for t in teachers] for part, w in parts.items()}
        self.teacher_sets[source] = (teachers, logits)
        self.record.setdefault("other_teachers", {})[source] = {
            "test_accuracy": [float(np.mean(np.argmax(z, 1) == parts["test"].y)) for z in logits["test"]],
            "train_s": round(time.perf_counter() - started, 1)}
        print(f"  teachers from {source}: {self.record['other_teachers'][source]}", flush=True)

    def _fit_args(self) -> dict:
        cfg = self.cfg
        return dict(n_classes=self.data.n_classes, temperature=cfg.temperature, epochs=cfg.epochs, batch_size=cfg.batch_size,
                    patience=cfg.patience, learning_rate=cfg.learning_rate, verbose=0)

    def student(self, method: str, teachers: str, seed: int, student: str | None = None) -> None:
        """`student`: a preset other than the run's."""
        from edgekd.distill.student import Objective, train_student
        from edgekd.models.build import count_params
        from edgekd.models.presets import load_preset

        if method == "selector":
            return self.selector_system(teachers, seed)
        fusion, loss, alpha = METHODS[method]
        cfg = DistillConfig(**{**self.cfg.__dict__, "fusion": fusion, "loss": loss, "student": student or self.cfg.student})
        teacher_models, teacher_logits = self.teacher_sets[teachers]
        parts = self.data.parts
        targets = distillation_targets({p: teacher_logits[p] for p in ("train", "val")}, parts["val"].y, fusion, loss, cfg.temperature)
        packed = student_targets(cfg, teacher_models, {p: parts[p] for p in ("train", "val")}, targets, self.data.n_classes)
        kind = "student_scratch" if is_scratch(method) else "student_kd"
        objective = Objective() if is_scratch(method) else kd_objective(cfg, len(teacher_models), packed["hint_dims"])
        _, window_len, channels = parts["train"].x.shape
        started = time.perf_counter()
        model, fitted = train_student(load_preset(cfg.student), window_len, channels, self.data.n_classes, parts["train"].x,
                                      packed[kind]["train"], parts["val"].x, packed[kind]["val"], objective=objective,
                                      alpha=cfg.alpha if alpha is None else alpha, seed=seed, name=kind,
                                      fit_args={**self._fit_args(), "kd_term": "mse" if loss == "mse" else "kl"},
                                      augmentation=AUGMENTED.get(method), mixup=MIXED.get(method, 0.0),
                                      online=self._online(teacher_models, teacher_logits, fusion, loss) if method in CONSISTENT else None)
        train_s = time.perf_counter() - started
        entry = {"method": method, "teachers": teachers, "student": cfg.student, "params": count_params(model), "seed": seed,
                 "val_accuracy": fitted.best_val_accuracy, "val_log_loss": self._val_log_loss(model),
                 "epochs": fitted.epochs_run, "train_s": round(train_s, 1), **self._test(model)}
        self.record["students"].append(entry)
        self.save()
        print(f"  {method:<16} teachers {teachers:<9} {cfg.student} seed {seed}: val {entry['val_accuracy']:.3f} test "
              f"{entry['test_accuracy']:.3f} int8 {entry['int8_test_accuracy']:.3f} ({train_s:.0f} s)", flush=True)

    def _online(self, teacher_models, teacher_logits, fusion: str, loss: str):
        """The teachers as --consistent runs them in the training step, fused as the method fuses them."""
        from edgekd.distill.consistent import online_teachers
        from edgekd.distill.fusion import teacher_accuracies

        val = self.data.parts["val"]
        return online_teachers(teacher_models, fusion, loss, self.cfg.temperature, teacher_accuracies(teacher_logits["val"], val.y))

    def selector_system(self, teachers: str, seed: int) -> None:
        """SELECTOR_STUDENTS distilled with mean KL, a selector routing between them, and the system as one model."""
        from edgekd.distill.selector import correctness, system_model, system_report, train_selector
        from edgekd.distill.student import Objective, train_student
        from edgekd.distill.train import predict_logits
        from edgekd.models.build import count_params
        from edgekd.models.presets import load_preset

        teacher_models, teacher_logits = self.teacher_sets[teachers]
        parts = self.data.parts
        targets = distillation_targets({p: teacher_logits[p] for p in ("train", "val")}, parts["val"].y, "mean", "kl", self.cfg.temperature)
        packed = student_targets(self.cfg, teacher_models, {p: parts[p] for p in ("train", "val")}, targets, self.data.n_classes)
        _, window_len, channels = parts["train"].x.shape
        started = time.perf_counter()
        students = [train_student(load_preset(name), window_len, channels, self.data.n_classes, parts["train"].x,
                                  packed["student_kd"]["train"], parts["val"].x, packed["student_kd"]["val"], objective=Objective(),
                                  alpha=self.cfg.alpha, seed=seed, name=f"student_{j}", fit_args=self._fit_args())[0]
                    for j, name in enumerate(SELECTOR_STUDENTS)]
        logits = {part: [predict_logits(s, w.x) for s in students] for part, w in parts.items()}
        fitted = train_selector(load_preset("selector"), parts["train"].x, correctness(logits["train"], parts["train"].y),
                                parts["val"].x, correctness(logits["val"], parts["val"].y), epochs=self.cfg.epochs,
                                patience=self.cfg.patience, batch_size=self.cfg.batch_size,
                                learning_rate=self.cfg.learning_rate, seed=seed, verbose=0)
        train_s = time.perf_counter() - started
        reports = {part: system_report(logits[part], predict_logits(fitted.model, parts[part].x), parts[part].y, list(SELECTOR_STUDENTS),
                                       [count_params(s) for s in students], count_params(fitted.model)) for part in ("val", "test")}
        system = system_model(students, fitted.model)
        entry = {"method": "selector", "teachers": teachers, "student": "+".join(SELECTOR_STUDENTS),
                 "params": reports["test"]["params"]["system"], "seed": seed, "val_accuracy": reports["val"]["system"],
                 "val_log_loss": self._val_log_loss(system), "epochs": fitted.epochs_run, "train_s": round(train_s, 1),
                 "system": reports["test"], **self._test(system)}
        self.record["students"].append(entry)
        self.save()
        print(f"  selector         teachers {teachers:<9} seed {seed}: val {entry['val_accuracy']:.3f} test "
              f"{entry['test_accuracy']:.3f} int8 {entry['int8_test_accuracy']} students {reports['test']['students']} "
              f"oracle {reports['test']['oracle']:.3f} ({train_s:.0f} s)", flush=True)

    def _val_log_loss(self, model) -> float:
        """Mean cross-entropy of the model's logits on the validation labels: it ranks students whose validation
        accuracy ties (on myo5 most methods reach 100%)."""
        from scipy.special import log_softmax

        from edgekd.distill.train import predict_logits

        val = self.data.parts["val"]
        log_p = log_softmax(predict_logits(model, val.x).astype(np.float64), axis=1)
        return float(-np.mean(log_p[np.arange(len(val.y)), val.y]))

    def _test(self, model) -> dict:
        """Keras and int8 test accuracy; int8 converted as `edgekd export --int8` converts (MLIR, then legacy)."""
        from edgekd.export.export import MIN_AGREEMENT, convert_checked

        test = self.data.parts["test"]
        keras_accuracy = float(np.mean(np.argmax(model(test.x, training=False).numpy(), 1) == test.y))
        with tempfile.TemporaryDirectory() as tmp:
            best = convert_checked(model, "int8", self.representative, test.x, MIN_AGREEMENT["int8"], Path(tmp) / "s.tflite",
                                   lambda quantizer: {}, {}, log=lambda m: None)
            if best is None:
                return {"test_accuracy": keras_accuracy, "int8_test_accuracy": None, "int8_agreement": None}
            best.path.unlink(missing_ok=True)
        return {"test_accuracy": keras_accuracy, "int8_test_accuracy": float(np.mean(np.argmax(best.logits, 1) == test.y)),
                "int8_agreement": best.agreement, "int8_quantizer": best.quantizer}


def summarise(record: dict) -> list[dict]:
    """One row per (teachers, student, method): mean, sd, min and max over seeds of val, test and int8 test accuracy."""
    groups: dict[tuple[str, str, str], list[dict]] = {}
    for s in record["students"]:
        groups.setdefault((s["teachers"], s.get("student", record["config"]["student"]), s["method"]), []).append(s)
    rows = []
    for (teachers, student, method), entries in groups.items():
        row = {"teachers": teachers, "student": student, "method": method, "seeds": len(entries),
               "params": entries[0].get("params")}
        for key in ("val_accuracy", "val_log_loss", "test_accuracy", "int8_test_accuracy"):
            values = np.array([e[key] for e in entries if e.get(key) is not None], dtype=float)
            row[key] = {"mean": float(values.mean()), "sd": float(values.std(ddof=1)) if len(values) > 1 else 0.0,
                        "min": float(values.min()), "max": float(values.max())} if len(values) else None
        row["train_s"] = float(np.median([e["train_s"] for e in entries]))
        rows.append(row)
    return rows


def _pct(stats: dict | None) -> str:
    return "-" if stats is None else f"{100 * stats['mean']:.1f} ± {100 * stats['sd']:.1f}"


def markdown(records: list[dict], seconds: dict[str, float], kept: dict[str, str] | None = None) -> str:
    """`kept`: case name -> its subsection as RESULTS.md has it, for cases whose saved numbers are not on this machine."""
    lines = ["## Distillation methods (`.venv/bin/python benchmarks/methods.py`)", "",
             "Every student of a case distils from the same teachers (one `edgekd distill` run) on the same held-out data; "
             "the spread (± sample sd, and the range) is over student seeds. int8: converted as `edgekd export --int8` does. "
             "A method beats scratch only if its worst seed beats scratch's best. The best method is chosen on validation, "
             "not on test: the highest mean validation accuracy, ties broken by the lower mean validation log-loss.", ""]
    by_case, kept = {rec["case"]: rec for rec in records}, kept or {}
    for name in CASE_NAMES:
        if name not in by_case:
            lines += [kept[name], ""] if name in kept else []
            continue
        rec = by_case[name]
        rows = summarise(rec)
        base = rec["baselines_test_accuracy"]
        # this invocation's time, else the last sweep's (--report-only)
        swept = seconds.get(name) or (list(rec.get("sweep_s", {}).values()) or [None])[-1]
        augmented = rec["config"].get("augment_teachers")
        lines += [f"### {rec['case']}", "",
                  f"Commands: {', then '.join(f'`{c}`' for c in _commands(rec))} "
                  f"(teachers: run `{_in_repo(rec['run'])}`; {len(rec['seeds'])} student seeds; "
                  f"windows train/val/test {rec['windows']['train']}/{rec['windows']['val']}/{rec['windows']['test']}; "
                  f"{rec['config']['student']} student, T={rec['config']['temperature']:g}, alpha={rec['config']['alpha']:g}"
                  + (f"; swept in {swept / 60:.0f} min" if swept else "") + ").", "",
                  f"Teachers (bootstrap, the run's{', trained on augmented windows: `--augment-gain %g --augment-noise %g --augment-teachers`' % (rec['config']['augment_gain'], rec['config']['augment_noise']) if augmented else ''}): {' / '.join(f'{100 * a:.1f}' for a in rec['teacher_test_accuracy'])}, "
                  f"ensemble {100 * rec['ensemble_test_accuracy']:.1f}; classical baselines: LDA {100 * base['lda']:.1f}, "
                  f"random forest {100 * base['random_forest']:.1f} (test %).", ""]
        for source, info in rec.get("other_teachers", {}).items():
            lines.append(f"- teachers from {source}: {' / '.join(f'{100 * a:.1f}' for a in info['test_accuracy'])} "
                         f"(trained in {info['train_s']:.0f} s)")
        lines += ["", "| teachers | student | params | method | seeds | val % | val log-loss | test % | test range | int8 test % "
                      "| vs scratch | train s |",
                  "|---|---|---|---|---|---|---|---|---|---|---|---|"]
        for r in rows:
            scratch = _scratch_for(r, rows)
            t = r["test_accuracy"]
            val_loss = "-" if r["val_log_loss"] is None else f"{r['val_log_loss']['mean']:.3g}"
            params = "-" if r["params"] is None else f"{r['params']:,}"
            lines.append(f"| {r['teachers']} | {r['student']} | {params} | {r['method']} | {r['seeds']} | {_pct(r['val_accuracy'])} | "
                         f"{val_loss} | {_pct(t)} | {100 * t['min']:.1f}–{100 * t['max']:.1f} | {_pct(r['int8_test_accuracy'])} | "
                         f"{_versus(r, scratch)} | {r['train_s']:.0f} |")
        lines += _selector_lines(rec)
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
    return ["", f"Selector (mean over {len(systems)} seeds, test %): students {students}; system {mean([s['system'] for s in systems])}; "
                f"oracle {mean([s['oracle'] for s in systems])}; it sends {routing}. The system file computes the selector "
                f"and both students for every window: {systems[0]['params']['system']:,} parameters against "
                f"{systems[0]['params']['students'][SELECTOR_STUDENTS[0]]:,} for {SELECTOR_STUDENTS[0]} alone."]


def _commands(rec: dict) -> list[str]:
    """The invocations that made the record (older records kept one)."""
    return rec.get("commands") or [rec.get("command") or ".venv/bin/python benchmarks/methods.py --only " + rec["case"].split()[0]]


def _scratch_for(row: dict, rows: list[dict]) -> dict | None:
    """What a student is compared with: scratch at the same size with the same augmentation and mixup (plain
    scratch when the case has no such scratch row)."""
    same_size = {r["method"]: r for r in rows if r["student"] == row["student"] and is_scratch(r["method"])}
    wanted = "scratch + augment + mixup" if row["method"] in MIXED else "scratch + augment" if row["method"] in AUGMENTED else "scratch"
    return same_size.get(wanted) or same_size.get("scratch")


def _versus(row: dict, scratch: dict | None) -> str:
    if scratch is None or row is scratch:
        return ""
    a, b = row["test_accuracy"], scratch["test_accuracy"]
    delta = 100 * (a["mean"] - b["mean"])
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
    return [f"best KD student by validation: {best['method']} (teachers {best['teachers']}, student {best['student']}), int8 test "
            f"{100 * int8:.1f}% (mean of {best['seeds']} seeds)"
            + (f"; {len(tied)} others tie at {100 * best['val_accuracy']['mean']:.1f}% validation accuracy, and its "
               f"validation log-loss ({loss(best):.3g}) is the lowest of them" if tied else ""),
            f"within 1 point of the teacher ensemble ({100 * ensemble:.1f}%): {100 * (int8 - ensemble):+.1f} points, "
            f"{met(int8 >= ensemble - 0.01)}",
            f"not below the best classical baseline ({100 * classical:.1f}%): {100 * (int8 - classical):+.1f} points, "
            f"{met(int8 >= classical)}"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--only", help="the case of this name, else the cases whose name starts with this")
    parser.add_argument("--run", action="append", default=[], help="CASE=RUN_DIR: distil from a finished run's teachers")
    parser.add_argument("--seeds", type=int, default=3, help="student seeds per method (0..N-1)")
    parser.add_argument("--methods", help="comma-separated methods to run (default: the case's list)")
    parser.add_argument("--report-only", action="store_true", help="rebuild the section from saved numbers")
    args = parser.parse_args()
    given = dict(item.split("=", 1) for item in args.run)
    seconds = {}
    if not args.report_only:
        for case in sweep_cases(args.only):
            started = time.perf_counter()
            sweep = Sweep(case, run_for(case, given, OUT / "methods"), args.seeds)
            sweep.baselines()
            # Every invocation that swept the case: together they reproduce its record.
            command = shlex.join([".venv/bin/python", "benchmarks/methods.py", *sys.argv[1:]])
            commands = sweep.record.setdefault("commands", [sweep.record.pop("command")] if "command" in sweep.record else [])
            if command not in commands:
                commands.append(command)
            methods = args.methods.split(",") if args.methods else CASE_METHODS[case.name]
            # --methods filters the other students' methods too
            jobs = [(None, m) for m in methods] + [(student, m) for student, listed in OTHER_STUDENTS.get(case.name, {}).items()
                                                   for m in listed if m in methods]
            for seed in sweep.seeds:  # seed-major: an interrupted sweep still has every method at some seeds
                for student, method in jobs:
                    if not sweep.done(method, "bootstrap", seed, student):
                        sweep.student(method, "bootstrap", seed, student)
            for source in OTHER_TEACHERS.get(case.name, []) if not args.methods else []:
                if all(sweep.done("mean kl", source, seed) for seed in sweep.seeds):
                    continue
                sweep.train_teachers(source)
                for seed in sweep.seeds:
                    if not sweep.done("mean kl", source, seed):
                        sweep.student("mean kl", source, seed)
            seconds[case.name] = time.perf_counter() - started
            sweep.record.setdefault("sweep_s", {})[time.strftime("%Y-%m-%d %H:%M")] = round(seconds[case.name])
            sweep.save()
    records = [json.loads((SAVED / f"{_slug(n)}.json").read_text()) for n in CASE_NAMES if (SAVED / f"{_slug(n)}.json").exists()]
    kept = {n: kept_subsection("METHODS", n) for n in CASE_NAMES if not (SAVED / f"{_slug(n)}.json").exists()}
    text = markdown(records, seconds, {n: t for n, t in kept.items() if t})
    write_section("METHODS", text)
    print(text)


if __name__ == "__main__":
    main()
