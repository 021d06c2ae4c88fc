"""`edgekd distill DATASET --out DIR --cv loso|K`: cross-validation over people.

`loso`: one full distill run per subject, each a normal (exportable) run folder DIR/fold-<subject>/ that tests on
that subject and validates on the next one in sorted order (cyclically). `K` (a number): K folds of people, fold i
(DIR/fold-<i>/) testing on every K-th subject from the i-th in sorted order and validating on 15% of the subjects
(at least one) from the next fold, so every person is tested once and a fold trains on the rest. Then
DIR/cv_report.json with each fold's test accuracies, each held-out person's, and per model the mean, sample std, min
and max over the people.

Which people are held out moves accuracy by more than the choice of method does, so one split is not a result;
the spread over people says how far one can trust a single number.

A fold whose folder already holds a finished report.json is reused, not retrained: an interrupted CV resumes.
"""

from __future__ import annotations

import json
import re
from dataclasses import MISSING, asdict, fields, replace
from pathlib import Path

import numpy as np

from edgekd.data.dataset import load_dataset
from edgekd.data.splits import default_val_count
from edgekd.distill.run import DistillConfig, distill, load_run
from edgekd.errors import UserError
from edgekd.io import write_json_atomic
from edgekd.table import format_table

# Fields that must match for a finished fold to be reused (everything but where it lives and how loud it was).
_NOT_COMPARED = ("dataset", "out", "verbose")
TABLE_MODELS = ("ensemble", "student_kd", "student_kd_lda_branch", "student_scratch", "lda", "random_forest")


def fold_count(method: str, subjects: list[str]) -> int | None:
    """None for loso (a fold per subject), else the number of folds; a UserError for anything else."""
    if method == "loso":
        return None
    if not str(method).isdigit() or not 2 <= int(method) <= len(subjects):
        raise UserError(
            f"--cv {method}: use loso, or a number of folds of people from 2 to the {len(subjects)} subjects, "
            "e.g. --cv 5"
        )
    return int(method)


def fold_configs(cfg: DistillConfig, subjects: list[str], folds: int | None = None) -> list[DistillConfig]:
    """loso (folds None): test on each subject, validate on the next one (cyclically). K folds: fold i tests on
    subjects[i::K] and validates on the first default_val_count subjects of fold i + 1 (cyclically)."""
    out = Path(cfg.out)
    if folds is None:
        return [
            replace(
                cfg,
                out=str(out / fold_folder(s, i)),
                split="subject",
                test_on=[s],
                val_on=[subjects[(i + 1) % len(subjects)]],
            )
            for i, s in enumerate(subjects)
        ]
    groups = [subjects[i::folds] for i in range(folds)]
    n_val = min(default_val_count(len(subjects)), min(len(g) for g in groups))
    return [
        replace(
            cfg, out=str(out / f"fold-{i + 1}"), split="subject", test_on=group, val_on=groups[(i + 1) % folds][:n_val]
        )
        for i, group in enumerate(groups)
    ]


def fold_folder(subject: str, index: int) -> str:
    """fold-<subject> where the name is a plain file name; else fold-<index>: a subject's name from recordings.csv
    never becomes a path (a subject 'a/../../x' wrote outside --out)."""
    plain = re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9._-]*", subject) is not None
    return f"fold-{subject}" if plain else f"fold-{index + 1}"


def cross_validate(
    cfg: DistillConfig, method: str = "loso", workers: int | None = None, ray_address: str | None = None
) -> dict:
    """`workers` (or `ray_address`): the folds left to train run as Ray tasks (distill/parallel.py), with the same
    configs and folders as one after another."""
    given = [name for name, v in (("--split", cfg.split), ("--test-on", cfg.test_on), ("--val-on", cfg.val_on)) if v]
    if given:
        raise UserError(f"--cv {method} chooses the held-out subjects itself; drop {', '.join(given)}")
    if workers is not None and workers < 1:
        raise UserError(f"--workers {workers}: give the number of folds to train at once, 1 or more")
    cfg.check()
    dataset = load_dataset(cfg.dataset)
    subjects = dataset.subjects
    if len(subjects) < 3:
        raise UserError(
            f"{cfg.dataset}: --cv {method} needs at least 3 subjects (test, validation and training), "
            f"this dataset has {len(subjects)} ({', '.join(subjects)}); use --split repetition without --cv"
        )
    folds_of_people = fold_count(method, subjects)
    out = Path(cfg.out)
    if out.exists() and (out / "report.json").exists():
        raise UserError(f"{out}: holds a single distill run, not a cross-validation; choose another --out")

    configs = fold_configs(cfg, subjects, folds_of_people)
    reports = train_folds(configs, workers, ray_address)
    folds, people = [], []
    for i, (fold_cfg, report) in enumerate(zip(configs, reports)):
        fold = {
            "test_on": fold_cfg.test_on,
            "run": fold_cfg.out,
            "val_on": fold_cfg.val_on,
            "test_accuracy": fold_accuracies(report["test_accuracy"]),
        }
        folds.append(
            {"subject": fold_cfg.test_on[0], **fold, "val_on": fold_cfg.val_on[0]} if folds_of_people is None else fold
        )
        people += person_accuracies(report, fold_cfg.test_on, i + 1)

    cv_report = {
        "dataset": dataset.name,
        "method": method,
        "folds": folds,
        "people": people,
        "summary": summarise(people),
        "config": {k: v for k, v in asdict(cfg).items() if k not in ("verbose", "split", "test_on", "val_on")},
    }
    write_json_atomic(out / "cv_report.json", cv_report)
    return cv_report


def train_folds(configs: list[DistillConfig], workers: int | None, ray_address: str | None) -> list[dict]:
    """Each fold's report: a finished fold's is read back (an interrupted CV resumes), the rest are trained, one after
    another in this process, or as Ray tasks with `workers` or `ray_address`."""
    reports: list[dict | None] = [None] * len(configs)

    def where(i: int) -> str:
        held_out = f"test on {', '.join(configs[i].test_on)}, validate on {', '.join(configs[i].val_on)}"
        return f"fold {i + 1}/{len(configs)} ({held_out})"

    for i, fold_cfg in enumerate(configs):
        fold_dir = Path(fold_cfg.out)
        if (fold_dir / "report.json").exists():
            _check_reusable(fold_dir, fold_cfg)
            print(f"{where(i)}: reusing the finished run in {fold_dir}", flush=True)
            _, reports[i] = load_run(fold_dir)  # a damaged report is refused, not a traceback
    left = [i for i, report in enumerate(reports) if report is None]
    if left and (workers or ray_address):
        from edgekd.distill.parallel import run_in_parallel

        print(
            f"training {len(left)} folds on Ray" + (f" at {ray_address}" if ray_address else f", {workers} at a time"),
            flush=True,
        )

        def done(j: int, report: dict) -> None:
            reports[left[j]] = report
            print(f"{where(left[j])}: trained in {configs[left[j]].out}", flush=True)

        run_in_parallel([configs[i] for i in left], workers, ray_address, done)
    for i in left:
        if reports[i] is None:
            print(f"{where(i)}: training in {configs[i].out}", flush=True)
            reports[i] = distill(configs[i])
    return reports


def fold_accuracies(test_accuracy: dict) -> dict[str, float]:
    """A report's test accuracies as one number per model: the teachers as their mean."""
    out = {}
    for key, value in test_accuracy.items():
        if isinstance(value, list) and value and all(isinstance(v, (int, float)) for v in value):
            out[key] = float(np.mean(value))
        elif isinstance(value, (int, float)) and not isinstance(value, bool):
            out[key] = float(value)
    return out


def person_accuracies(report: dict, test_on: list[str], fold: int) -> list[dict]:
    """One entry per held-out person of a fold: {"subject", "fold", "test_accuracy": {model: accuracy}} (the teachers
    as their mean), from the report's per-person accuracies (the fold's own where it held out one person)."""
    held_out = report.get("held_out")
    if not held_out or len(test_on) == 1:
        return [{"subject": test_on[0], "fold": fold, "test_accuracy": fold_accuracies(report["test_accuracy"])}]
    people = []
    for person in held_out["groups"]:
        accuracy = {
            model: [t[person] for t in by_group] if isinstance(by_group, list) else by_group[person]
            for model, by_group in held_out["test_accuracy"].items()
        }
        people.append({"subject": person, "fold": fold, "test_accuracy": fold_accuracies(accuracy)})
    return people


def summarise(folds: list[dict]) -> dict[str, dict[str, float]]:
    """Per model: mean, sample std (ddof=1), min and max of the test accuracy over the folds (or people) that report
    it."""
    models = []
    for fold in folds:
        models += [m for m in fold["test_accuracy"] if m not in models]
    summary = {}
    for model in models:
        values = np.array([f["test_accuracy"][model] for f in folds if model in f["test_accuracy"]], dtype=float)
        summary[model] = {
            "mean": float(values.mean()),
            "std": float(values.std(ddof=1)) if len(values) > 1 else 0.0,
            "min": float(values.min()),
            "max": float(values.max()),
        }
    return summary


def _check_reusable(fold_dir: Path, fold_cfg: DistillConfig) -> None:
    """A finished fold is reused only if it was trained with the same settings and split."""
    try:
        run = json.loads((fold_dir / "run.json").read_text())
    except (OSError, ValueError):
        raise UserError(
            f"{fold_dir}: has report.json but no readable run.json; delete the folder to retrain that fold"
        ) from None
    before = run.get("config", {})
    # A setting newer than the fold's run.json counts as its default (what that run did).
    defaults = {f.name: f.default for f in fields(DistillConfig) if f.default is not MISSING}
    now = {k: v for k, v in asdict(fold_cfg).items() if k not in _NOT_COMPARED}
    changed = sorted(k for k, v in now.items() if before.get(k, defaults.get(k)) != v)
    if changed:
        raise UserError(
            f"{fold_dir}: finished with other settings ({', '.join(changed)}); "
            f"use the same options, another --out, or delete the folder to retrain that fold"
        )


def cv_table(cv_report: dict) -> str:
    """Rows: each held-out person, then mean ± std over them; columns: the models present."""
    models = [m for m in TABLE_MODELS if m in cv_report["summary"]]
    people = cv_report.get("people") or cv_report["folds"]  # reports from before per-person accuracies: one per fold
    by_fold = cv_report["method"] != "loso"
    rows = [
        [p["subject"], *([p["fold"]] if by_fold else []), *(p["test_accuracy"].get(m) for m in models)] for p in people
    ]
    summary = cv_report["summary"]
    rows.append(
        [
            "mean ± std",
            *([""] if by_fold else []),
            *(f"{summary[m]['mean']:.3f} ± {summary[m]['std']:.3f}" for m in models),
        ]
    )
    how = "leave-one-subject-out" if not by_fold else f"{cv_report['method']} folds of people"
    return format_table(
        ["test subject", *(["fold"] if by_fold else []), *models],
        rows,
        title=f"{cv_report['dataset']}: {how}, {len(people)} people held out in {len(cv_report['folds'])} folds "
        "(test accuracy)",
    )
