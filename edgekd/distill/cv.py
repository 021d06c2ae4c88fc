"""`edgekd distill DATASET --out DIR --cv loso`: leave-one-subject-out cross-validation.

One full distill run per subject, each a normal (exportable) run folder DIR/fold-<subject>/ that tests on
that subject and validates on the next one in sorted order (cyclically); then DIR/cv_report.json with each
fold's test accuracies and, per model, the mean, sample std, min and max across folds.

Which subjects are held out moves accuracy by more than the choice of method does, so one split is not a
result; the spread across folds says how far one can trust a single number.

A fold whose folder already holds a finished report.json is reused, not retrained: an interrupted CV resumes.
"""
from __future__ import annotations

import json
from dataclasses import MISSING, asdict, fields, replace
from pathlib import Path

import numpy as np

from edgekd.data.dataset import load_dataset
from edgekd.distill.run import DistillConfig, distill
from edgekd.errors import UserError
from edgekd.io import write_json_atomic
from edgekd.table import format_table

METHODS = ("loso",)
# Fields that must match for a finished fold to be reused (everything but where it lives and how loud it was).
_NOT_COMPARED = ("dataset", "out", "verbose")
TABLE_MODELS = ("ensemble", "student_kd", "student_kd_lda_branch", "student_scratch", "lda", "random_forest")


def fold_configs(cfg: DistillConfig, subjects: list[str]) -> list[DistillConfig]:
    """One config per held-out subject: test on it, validate on the next subject (cyclically)."""
    out = Path(cfg.out)
    return [replace(cfg, out=str(out / f"fold-{s}"), split="subject", test_on=[s], val_on=[subjects[(i + 1) % len(subjects)]])
            for i, s in enumerate(subjects)]


def cross_validate(cfg: DistillConfig, method: str = "loso") -> dict:
    if method not in METHODS:
        raise UserError(f"unknown --cv method '{method}'; use one of {', '.join(METHODS)}")
    given = [name for name, v in (("--split", cfg.split), ("--test-on", cfg.test_on), ("--val-on", cfg.val_on)) if v]
    if given:
        raise UserError(f"--cv {method} chooses the held-out subjects itself; drop {', '.join(given)}")
    cfg.check()
    dataset = load_dataset(cfg.dataset)
    subjects = dataset.subjects
    if len(subjects) < 3:
        raise UserError(f"{cfg.dataset}: --cv {method} needs at least 3 subjects (test, validation and training), "
                        f"this dataset has {len(subjects)} ({', '.join(subjects)}); use --split repetition without --cv")
    out = Path(cfg.out)
    if out.exists() and (out / "report.json").exists():
        raise UserError(f"{out}: holds a single distill run, not a cross-validation; choose another --out")

    folds = []
    for i, fold_cfg in enumerate(fold_configs(cfg, subjects)):
        subject, fold_dir = fold_cfg.test_on[0], Path(fold_cfg.out)
        where = f"fold {i + 1}/{len(subjects)} (test on {subject}, validate on {fold_cfg.val_on[0]})"
        if (fold_dir / "report.json").exists():
            _check_reusable(fold_dir, fold_cfg)
            print(f"{where}: reusing the finished run in {fold_dir}", flush=True)
            report = json.loads((fold_dir / "report.json").read_text())
        else:
            print(f"{where}: training in {fold_dir}", flush=True)
            report = distill(fold_cfg)
        folds.append({"subject": subject, "run": str(fold_dir), "val_on": fold_cfg.val_on[0],
                      "test_accuracy": fold_accuracies(report["test_accuracy"])})

    cv_report = {
        "dataset": dataset.name,
        "method": method,
        "folds": folds,
        "summary": summarise(folds),
        "config": {k: v for k, v in asdict(cfg).items() if k not in ("verbose", "split", "test_on", "val_on")},
    }
    write_json_atomic(out / "cv_report.json", cv_report)
    return cv_report


def fold_accuracies(test_accuracy: dict) -> dict[str, float]:
    """A report's test accuracies as one number per model: the teachers as their mean."""
    out = {}
    for key, value in test_accuracy.items():
        if isinstance(value, list) and value and all(isinstance(v, (int, float)) for v in value):
            out[key] = float(np.mean(value))
        elif isinstance(value, (int, float)) and not isinstance(value, bool):
            out[key] = float(value)
    return out


def summarise(folds: list[dict]) -> dict[str, dict[str, float]]:
    """Per model: mean, sample std (ddof=1), min and max of the test accuracy over the folds that report it."""
    models = []
    for fold in folds:
        models += [m for m in fold["test_accuracy"] if m not in models]
    summary = {}
    for model in models:
        values = np.array([f["test_accuracy"][model] for f in folds if model in f["test_accuracy"]], dtype=float)
        summary[model] = {"mean": float(values.mean()), "std": float(values.std(ddof=1)) if len(values) > 1 else 0.0,
                          "min": float(values.min()), "max": float(values.max())}
    return summary


def _check_reusable(fold_dir: Path, fold_cfg: DistillConfig) -> None:
    """A finished fold is reused only if it was trained with the same settings and split."""
    try:
        run = json.loads((fold_dir / "run.json").read_text())
    except (OSError, ValueError):
        raise UserError(f"{fold_dir}: has report.json but no readable run.json; delete the folder to retrain that fold") from None
    before = run.get("config", {})
    # A setting newer than the fold's run.json counts as its default (what that run did).
    defaults = {f.name: f.default for f in fields(DistillConfig) if f.default is not MISSING}
    now = {k: v for k, v in asdict(fold_cfg).items() if k not in _NOT_COMPARED}
    changed = sorted(k for k, v in now.items() if before.get(k, defaults.get(k)) != v)
    if changed:
        raise UserError(f"{fold_dir}: finished with other settings ({', '.join(changed)}); "
                        f"use the same options, another --out, or delete the folder to retrain that fold")


def cv_table(cv_report: dict) -> str:
    """Rows: each held-out subject, then mean ± std; columns: the models present."""
    models = [m for m in TABLE_MODELS if m in cv_report["summary"]]
    rows = [[f["subject"], *(f["test_accuracy"].get(m) for m in models)] for f in cv_report["folds"]]
    summary = cv_report["summary"]
    rows.append(["mean ± std", *(f"{summary[m]['mean']:.3f} ± {summary[m]['std']:.3f}" for m in models)])
    return format_table(["test subject", *models], rows,
                        title=f"{cv_report['dataset']}: leave-one-subject-out, {len(cv_report['folds'])} folds (test accuracy)")
