"""`edgekd compare RUN [RUN ...]`: every model of every distill run in one table, and with --out the plots.

Everything in the table comes from each run's report.json, so comparing is instant and needs no
TensorFlow. Only the confusion matrix runs a model (the best student), and only it imports TensorFlow;
matplotlib is imported only when plots are asked for.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from edgekd import plots
from edgekd.distill.run import load_run
from edgekd.errors import UserError
from edgekd.table import format_table

STUDENTS = ("student_scratch", "student_kd")
CLASSICAL = {"lda": "LDA", "random_forest": "random forest"}
MODEL_LABELS = {
    "ensemble": "ensemble",
    "student_scratch": "student (scratch)",
    "student_kd": "student (KD)",
    **CLASSICAL,
}
ANNOTATE_MAX_CLASSES = 20  # beyond this the numbers in the confusion matrix's cells overprint
_LABEL_OFFSETS = (4, -11, 15)  # points above each point, cycled, so near-equal models do not overprint
HEADERS = ["run", "method", "model", "test_acc", "params", "train_s"]
TIME_NOTE = (
    "train_s: a teacher's is its stage's total over the teachers, the ensemble's the whole stage; "
    "LDA and random forest share one stage"
)


@dataclass
class Run:
    name: str  # the folder name, or the path as given where two runs share a folder name
    path: Path
    report: dict


# ---- loading ----------------------------------------------------------------------------------------


def load_runs(paths: Sequence[str | Path]) -> list[Run]:
    """Every run's report; a UserError for no runs or for a folder that is not a finished run."""
    if not paths:
        raise UserError("give at least one run folder written by `edgekd distill`, e.g. edgekd compare runs/a runs/b")
    paths = [Path(p) for p in paths]
    resolved = [p.resolve() for p in paths]
    for i, path in enumerate(resolved):
        if path in resolved[:i]:
            raise UserError(f"{paths[i]}: given twice; name each run once")
    names = [p.name for p in resolved]
    runs = []
    for path, name in zip(paths, names):
        _, report = load_run(path)
        runs.append(Run(name if names.count(name) == 1 else str(path), path, report))
    return runs


# ---- rows -------------------------------------------------------------------------------------------


def method_label(report: dict) -> str:
    """How the run distilled, e.g. "mean of 3, kl T=4 alpha=0.3"; older reports lack fusion and loss."""
    config = report.get("config", {})
    teachers = config.get("teachers", len(report["test_accuracy"].get("teachers", [])))
    text = f"{config.get('fusion', 'mean')} of {teachers}, {config.get('loss', 'kl')}"
    if "temperature" in config:
        text += f" T={config['temperature']:g}"
    if "alpha" in config:
        text += f" alpha={config['alpha']:g}"
    if augmentation := config.get("augmentation"):
        text += f", augment gain={augmentation['gain_sd']:g} noise={augmentation['noise_sd']:g}"
        text += " (teachers too)" if augmentation["teachers"] else ""
    if config.get("mixup"):
        text += f", mixup={config['mixup']:g}"
    if config.get("targets_in_step") or config.get("consistent"):  # "consistent": reports from before it was automatic
        text += ", targets in the step"
    if config.get("classical_teacher", "none") != "none":
        text += f", + {config['classical_teacher'].upper()} teacher"
    if config.get("lr_schedule", "constant") != "constant":
        text += f", {config['lr_schedule']} lr over {config['epochs']} epochs"
    return text


def model_rows(run: Run) -> list[dict]:
    """One row per model of the run, in distill_table's order: teachers, ensemble, students, classical."""
    report = run.report
    accuracy, params, timings = report["test_accuracy"], report.get("params", {}), report.get("timings_s", {})
    teacher_accuracies = accuracy.get("teachers", [])
    n_teachers = len(teacher_accuracies)
    teacher_params, student_params = params.get("teacher"), params.get("student")
    teachers_s = timings.get("teachers")

    def row(key, label, test_accuracy, n_params, train_s):
        return {
            "run": run.name,
            "path": str(run.path),
            "dataset": report.get("dataset"),
            "method": method_label(report),
            "model": key,
            "label": label,
            "test_accuracy": test_accuracy,
            "params": n_params,
            "train_time_s": None if train_s is None else round(train_s, 3),
        }

    # Per-teacher sizes where the report has them (modality experts differ in input width).
    each_teacher = params.get("teachers") or [teacher_params] * n_teachers
    rows = [
        row(f"teacher_{i}", f"teacher {i + 1}", a, each_teacher[i], teachers_s / n_teachers if teachers_s else None)
        for i, a in enumerate(teacher_accuracies)
    ]
    if "ensemble" in accuracy:
        # The ensemble is the teachers together: their parameters and their training time, all of it.
        ensemble_s = teachers_s + timings.get("soft_targets", 0.0) if teachers_s is not None else None
        ensemble_params = sum(each_teacher) if None not in each_teacher else None
        rows.append(row("ensemble", "ensemble", accuracy["ensemble"], ensemble_params, ensemble_s))
        rows += [
            row(key, ensemble_label(key), accuracy[key], ensemble_params, ensemble_s)
            for key in fused_ensemble_keys(accuracy)
        ]
    rows += [
        row(key, MODEL_LABELS[key], accuracy[key], student_params, timings.get(key))
        for key in STUDENTS
        if key in accuracy
    ]
    branch = report.get("lda_branch")
    if branch and "student_kd_lda_branch" in accuracy:  # `edgekd export --classical-branch lda`'s model
        rows.append(
            row(
                "student_kd_lda_branch",
                "student (KD) + LDA branch" if branch["kept"] else "student (KD), LDA branch left out",
                accuracy["student_kd_lda_branch"],
                params.get("student_with_lda_branch") if branch["kept"] else student_params,
                timings.get("student_kd"),
            )
        )
    multi = (report.get("multi_student") or {}).get("test")
    if multi:  # --students: the other students; --selector: the system (the first student is student_kd above)
        n_params = (multi.get("params") or {}).get("students", {})
        rows += [
            row(f"student_kd_{j}", f"student (KD) {name}", acc, n_params.get(name), None)
            for j, (name, acc) in enumerate(multi["students"].items())
            if j > 0
        ]
        if "system" in multi:
            rows.append(
                row(
                    "selector_system",
                    "selector system",
                    multi["system"],
                    multi["params"]["system"],
                    timings.get("students", 0.0) + timings.get("selector", 0.0) + timings.get("student_kd", 0.0),
                )
            )
    # No params for the classical models: a forest's node count is not comparable with network weights.
    rows += [
        row(key, label, accuracy[key], None, timings.get("baselines"))
        for key, label in CLASSICAL.items()
        if key in accuracy
    ]
    return rows


def ensemble_label(key: str) -> str:
    """ensemble_<fusion>: what the KD targets decide; ensemble_with_<classical>: the networks and the classical
    teacher."""
    if key.startswith("ensemble_with_"):
        return f"ensemble + {key.removeprefix('ensemble_with_').upper()} teacher"
    return f"ensemble ({key.removeprefix('ensemble_')} fusion)"


def fused_ensemble_keys(accuracy: dict) -> list[str]:
    """The "ensemble_<fusion>" accuracies newer reports add: what the KD targets themselves decide.

    "ensemble_mean" repeats the plain ensemble when they agree, so it gets no row of its own then.
    """
    return [
        key
        for key in accuracy
        if key.startswith("ensemble_")
        and isinstance(accuracy[key], (int, float))
        and not (key == "ensemble_mean" and accuracy[key] == accuracy.get("ensemble"))
    ]


def compare_rows(runs: Sequence[Run]) -> list[dict]:
    return [row for run in runs for row in model_rows(run)]


def comparison_table(rows: Sequence[dict]) -> str:
    return format_table(
        HEADERS, [[r["run"], r["method"], r["label"], r["test_accuracy"], r["params"], r["train_time_s"]] for r in rows]
    )


def run_summary(run: Run) -> str:
    """One line: dataset, split and held-out groups, windows per part."""
    report = run.report
    split, windows = report.get("split", {}), report.get("windows", {})
    method = split.get("method", "?")
    held_out = "random recordings" if method == "random" else ", ".join(map(str, split.get("test", []))) or "?"
    parts = "/".join(str(windows.get(part, "?")) for part in ("train", "val", "test"))
    dataset = report.get("dataset", "?")
    return f"{run.name}: {dataset}, split by {method} (test on {held_out}), windows train/val/test {parts}"


def comparability_notes(runs: Sequence[Run]) -> list[str]:
    """Say so when accuracies come from different datasets or different held-out data: allowed, but not comparable."""
    datasets = sorted({str(run.report.get("dataset")) for run in runs})
    if len(datasets) > 1:
        return [
            f"note: the runs are on different datasets ({', '.join(datasets)}); their accuracies are not comparable"
        ]
    splits = {_split_key(run.report.get("split", {})) for run in runs}
    if len(splits) > 1:
        return ["note: the runs hold out different test data; their accuracies are not strictly comparable"]
    return []


def _split_key(split: dict) -> tuple:
    return split.get("method"), tuple(map(str, split.get("test", [])))


def best_student(rows: Sequence[dict]) -> dict | None:
    """The student row with the highest test accuracy over all runs.

    On a tie the KD student wins (it is the one export converts), then the earlier run."""
    students = [r for r in rows if r["model"] in STUDENTS and r["test_accuracy"] is not None]
    return max(students, key=lambda r: (r["test_accuracy"], r["model"] == "student_kd")) if students else None


# ---- plots ------------------------------------------------------------------------------------------


def require_matplotlib():
    return plots.require_matplotlib("--out", "compare without --out")


def plot_accuracy_vs_params(rows: Sequence[dict], path: str | Path) -> Path:
    """Every network of every run as a labelled point (params on a log axis), one colour per run.

    The classical models have no parameter count to place them by, so each is a dashed horizontal line at
    its accuracy: the bar every network of its run has to clear.
    """
    Figure, FigureCanvasAgg = require_matplotlib()
    figure = Figure(figsize=(7.5, 5), layout="constrained")
    FigureCanvasAgg(figure)
    axes = figure.subplots()
    run_names = list(dict.fromkeys(r["run"] for r in rows))
    for colour_index, name in enumerate(run_names):
        colour = f"C{colour_index % 10}"
        run_rows = [r for r in rows if r["run"] == name and r["test_accuracy"] is not None]
        networks = [r for r in run_rows if r["params"] is not None]
        axes.scatter(
            [r["params"] for r in networks],
            [r["test_accuracy"] for r in networks],
            color=colour,
            s=40,
            label=name,
            zorder=3,
        )
        for i, r in enumerate(networks):
            axes.annotate(
                r["label"],
                (r["params"], r["test_accuracy"]),
                textcoords="offset points",
                xytext=(4, _LABEL_OFFSETS[i % len(_LABEL_OFFSETS)]),
                fontsize=7,
                color=colour,
            )
        for accuracy, labels in _classical_lines(run_rows).items():
            axes.axhline(accuracy, color=colour, linestyle="--", linewidth=0.8, alpha=0.7)
            axes.annotate(
                f"{labels} ({name})",
                (0.01, accuracy),
                xycoords=("axes fraction", "data"),
                textcoords="offset points",
                xytext=(0, 2 if colour_index % 2 == 0 else -9),
                fontsize=7,
                color=colour,
            )
    axes.set_xscale("log")
    axes.set_xlabel("parameters (log scale)")
    axes.set_ylabel("test accuracy")
    axes.set_ylim(min(axes.get_ylim()[0], 0.0), 1.05)  # the whole range: chance-level models stay in view
    axes.grid(alpha=0.3, which="both")
    axes.legend(fontsize=8, loc="best", title="run", title_fontsize=8)
    return plots.write_png(figure, path, "--out")


def _classical_lines(run_rows: Sequence[dict]) -> dict[float, str]:
    """accuracy -> "LDA, random forest": classical models of one run at the same accuracy share one line."""
    lines: dict[float, list[str]] = {}
    for r in run_rows:
        if r["params"] is None:
            lines.setdefault(r["test_accuracy"], []).append(r["label"])
    return {accuracy: ", ".join(labels) for accuracy, labels in lines.items()}


def confusion_matrix(y_true: np.ndarray, y_pred: np.ndarray, n_classes: int) -> np.ndarray:
    """Counts: row = true class, column = predicted class."""
    matrix = np.zeros((n_classes, n_classes), dtype=np.int64)
    np.add.at(matrix, (np.asarray(y_true, dtype=np.int64), np.asarray(y_pred, dtype=np.int64)), 1)
    return matrix


def normalise_rows(matrix: np.ndarray) -> np.ndarray:
    """Each row as shares of its true class; a class with no test windows stays a row of zeros, not NaN."""
    totals = matrix.sum(axis=1, keepdims=True)
    return np.divide(matrix, totals, out=np.zeros(matrix.shape, dtype=np.float64), where=totals > 0)


def missing_for_confusion(run: Run, model: str) -> list[str]:
    """The files the confusion matrix of `model` needs that the run folder lacks."""
    return [name for name in (f"{model}.h5", "windows.npz") if not (run.path / name).is_file()]


def student_predictions(run: Run, model: str) -> tuple[np.ndarray, np.ndarray]:
    """(true labels, predicted labels) of the run's test windows; TensorFlow is imported only here."""
    windows_path = run.path / "windows.npz"
    try:
        with np.load(windows_path, allow_pickle=False) as windows:
            test_x, test_y = windows["test_x"], windows["test_y"]
    except (OSError, ValueError, KeyError) as e:
        raise UserError(f"{windows_path}: cannot read its test windows ({e}); run `edgekd distill` again") from None
    from edgekd.models.saved import load_model

    student = load_model(run.path / f"{model}.h5")
    logits = student.predict(test_x, batch_size=256, verbose=0)
    return test_y, np.argmax(logits, axis=-1)


def plot_confusion(run: Run, row: dict, path: str | Path) -> Path:
    """The row-normalised confusion matrix of the run's student `row` on its test windows, classes named."""
    Figure, FigureCanvasAgg = require_matplotlib()
    classes = [str(c) for c in run.report["classes"]]
    y_true, y_pred = student_predictions(run, row["model"])
    shares = normalise_rows(confusion_matrix(y_true, y_pred, len(classes)))
    side = max(4.5, 0.32 * len(classes) + 2.5)  # cells stay readable as the class count grows
    figure = Figure(figsize=(side + 1, side), layout="constrained")
    FigureCanvasAgg(figure)
    axes = figure.subplots()
    image = axes.imshow(shares, cmap="Blues", vmin=0.0, vmax=1.0)
    figure.colorbar(image, ax=axes, label="share of the true class")
    ticks = np.arange(len(classes))
    axes.set_xticks(
        ticks,
        classes,
        rotation=90 if len(classes) > 8 else 45,
        ha="center" if len(classes) > 8 else "right",
        fontsize=8,
    )
    axes.set_yticks(ticks, classes, fontsize=8)
    axes.set_xlabel("predicted class")
    axes.set_ylabel("true class")
    if len(classes) <= ANNOTATE_MAX_CLASSES:
        for (i, j), share in np.ndenumerate(shares):
            axes.text(
                j, i, f"{share:.2f}", ha="center", va="center", fontsize=7, color="white" if share > 0.5 else "black"
            )
    axes.set_title(
        f"{run.name}: {row['label']}, test accuracy {row['test_accuracy']:.3f} ({len(y_true)} windows)", fontsize=9
    )
    return plots.write_png(figure, path, "--out")


def write_plots(runs: Sequence[Run], rows: Sequence[dict], out: str | Path) -> list[str]:
    """accuracy_vs_params.png and confusion_<run>.png of the best student; lines to print, notes included."""
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise UserError(f"{out}: is a file; --out takes a folder for the plots")
    lines = [f"wrote {plot_accuracy_vs_params(rows, out / 'accuracy_vs_params.png')}"]
    best = best_student(rows)
    if best is None:
        return lines + ["note: no confusion matrix: no run reports a student's test accuracy"]
    run = next(r for r in runs if r.name == best["run"])
    missing = missing_for_confusion(run, best["model"])
    if missing:
        return lines + [
            f"note: no confusion matrix for the best student ({best['label']} of {run.name}): "
            f"{run.path} has no {' or '.join(missing)}"
        ]
    path = plot_confusion(run, best, out / f"confusion_{_file_safe(run.name)}.png")
    return lines + [f"wrote {path} ({best['label']} of {run.name}, the best student)"]


def _file_safe(name: str) -> str:
    """A run name usable in a file name: a name given as a path (duplicate folder names) loses its slashes."""
    return "".join(c if c.isalnum() or c in "-_." else "_" for c in name).strip("._") or "run"
