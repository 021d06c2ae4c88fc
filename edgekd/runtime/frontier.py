"""The size-latency-accuracy frontier of benched models (`edgekd bench A.tflite B.tflite --plot front.png`).

How models compare with each other: argmax agreement with the float model of their run, which ones are
Pareto-optimal, and the plot. It reads edgekd.runtime.bench's results and bench never imports it (the command does).
Device side: no TensorFlow, and matplotlib only when a plot is asked for.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from edgekd import plots

if TYPE_CHECKING:
    from edgekd.runtime.bench import BenchResult

_LABEL_OFFSETS = (4, -11, 15)  # points above each point, cycled


def compare(results: Sequence[BenchResult]) -> Sequence[BenchResult]:
    """Fill agreement_with_float, agreement_source and pareto of every result, in place; returns results."""
    for result, (agreement, source) in zip(results, agreements_with_float(results)):
        result.agreement_with_float, result.agreement_source = agreement, source
    for result, optimal in zip(results, pareto_flags(results)):
        result.pareto = optimal
    return results


# ---- agreement with the float model -----------------------------------------------------------------


def agreements_with_float(results: Sequence[BenchResult]) -> list[tuple[float | None, str | None]]:
    """(agreement, source) per result: the share of test windows where its argmax equals the float model's.

    source "bench": measured here against the least-compressed float32 model of the same run among
    `results`; "export": no such model was benched, so the agreement export measured against the Keras
    float student. (None, None) without predictions, i.e. without --data.
    """
    references = float_references(results)
    out = []
    for result in results:
        reference = references.get(result.run)
        if result.predictions is None:
            out.append((None, None))
        elif reference is not None and len(reference.predictions) == len(result.predictions):
            out.append((float(np.mean(result.predictions == reference.predictions)), "bench"))
        elif result.export_agreement is not None:
            out.append((float(result.export_agreement), "export"))
        else:
            out.append((None, None))
    return out


def float_references(results: Sequence[BenchResult]) -> dict[str, BenchResult]:
    """run -> the least-compressed float32 model of that run among results that have predictions."""
    candidates: dict[str, list] = {}
    for result in results:
        if result.variant == "float32" and result.run is not None and result.predictions is not None:
            candidates.setdefault(result.run, []).append(result)
    return {run: min(models, key=_compression_rank) for run, models in candidates.items()}


def _compression_rank(result: BenchResult) -> tuple[int, int]:
    """Lower is less compressed: fewer techniques first, then the larger gzip size (pruning shrinks it)."""
    compression = result.compression if isinstance(result.compression, dict) else {}
    techniques = [value for value in compression.values() if value is not None and value is not False]
    return len(techniques), -result.gzip_bytes


# ---- Pareto front -----------------------------------------------------------------------------------


def pareto_flags(results: Sequence[BenchResult]) -> list[bool]:
    """True for every result that no other result dominates on accuracy, gzip bytes and p50 latency.

    Dominates: at least as good on every objective and strictly better on one, so tied models are all
    optimal. Accuracy counts only when every result has one (bench with --data).
    """
    use_accuracy = bool(results) and all(result.accuracy is not None for result in results)
    costs = [_costs(result, use_accuracy) for result in results]
    return [not any(_dominates(other, mine) for other in costs) for mine in costs]


def _costs(result: BenchResult, use_accuracy: bool) -> tuple[float, ...]:
    """The objectives as costs, lower is better everywhere."""
    size_and_speed = (float(result.gzip_bytes), float(result.latency_ms["p50"]))
    return ((-result.accuracy,) if use_accuracy else ()) + size_and_speed


def _dominates(a: tuple[float, ...], b: tuple[float, ...]) -> bool:
    return all(x <= y for x, y in zip(a, b)) and any(x < y for x, y in zip(a, b))


# ---- plot -------------------------------------------------------------------------------------------


def require_matplotlib():
    return plots.require_matplotlib("--plot", "bench without --plot")


def plot_frontier(results: Sequence[BenchResult], path: str | Path) -> Path:
    """A PNG: accuracy against gzip bytes and against p50 latency (p50 against gzip bytes without accuracy).

    Every model is a labelled point, the Pareto-optimal ones are highlighted, and a step line joins those
    on each panel's own front. Drawn on an Agg canvas (no display, no pyplot state), written atomically.
    """
    Figure, FigureCanvasAgg = require_matplotlib()
    optimal = pareto_flags(results)
    names = point_names(results)
    sizes = [r.gzip_bytes for r in results]
    p50s = [r.latency_ms["p50"] for r in results]
    if all(r.accuracy is not None for r in results):
        accuracies = [r.accuracy for r in results]
        panels = [(sizes, accuracies, "gzip bytes", "accuracy"), (p50s, accuracies, "p50 latency (ms)", "accuracy")]
    else:
        panels = [(sizes, p50s, "gzip bytes", "p50 latency (ms)")]
    figure = Figure(figsize=(5.5 * len(panels), 4.5), layout="constrained")
    FigureCanvasAgg(figure)
    for axes, (xs, ys, xlabel, ylabel) in zip(figure.subplots(1, len(panels), squeeze=False)[0], panels):
        _draw_panel(axes, xs, ys, names, optimal, higher_is_better=ylabel == "accuracy")
        axes.set_xlabel(xlabel)
        axes.set_ylabel(ylabel)
    figure.suptitle(f"{results[0].runtime}, {results[0].threads} thread(s)", fontsize=10)
    return plots.write_png(figure, path, "--plot")


def point_names(results: Sequence[BenchResult]) -> list[str]:
    """The model label of each point, or its file name where two models share a label."""
    labels = [r.label or r.variant or Path(r.model).stem for r in results]
    return [label if labels.count(label) == 1 else Path(r.model).stem for label, r in zip(labels, results)]


def _draw_panel(axes, xs, ys, names, optimal, higher_is_better: bool) -> None:
    for optimal_kind, style in (
        (False, dict(color="0.6", s=30, label="dominated")),
        (True, dict(color="C3", s=60, label="Pareto-optimal", zorder=3)),
    ):
        chosen = [i for i, flag in enumerate(optimal) if flag == optimal_kind]
        if chosen:
            axes.scatter([xs[i] for i in chosen], [ys[i] for i in chosen], **style)
    step_x, step_y = front_steps([(xs[i], ys[i]) for i, flag in enumerate(optimal) if flag], higher_is_better)
    axes.plot(step_x, step_y, drawstyle="steps-post", color="C3", linewidth=1)
    for i, (x, y, name) in enumerate(zip(xs, ys, names)):  # staggered: near-equal models would overprint
        axes.annotate(
            name, (x, y), textcoords="offset points", xytext=(4, _LABEL_OFFSETS[i % len(_LABEL_OFFSETS)]), fontsize=8
        )
    if higher_is_better:  # accuracy: no padding above 1, where nothing can be
        axes.set_ylim(top=min(axes.get_ylim()[1], 1.01))
    axes.grid(alpha=0.3)
    axes.legend(fontsize=8, loc="best")


def front_steps(points: list[tuple[float, float]], higher_is_better: bool) -> tuple[list[float], list[float]]:
    """The points on the 2-D front, left to right: each one better in y than every point left of it.

    Drawn as steps-post, the line reads "the best y reachable at this x or less". A model optimal in three
    dimensions can be off a panel's front (it wins on the other panel's axis), so it is a point, not a step.
    """
    sign = -1.0 if higher_is_better else 1.0  # as a cost: lower is better
    front: list[tuple[float, float]] = []
    for x, y in sorted(points, key=lambda p: (p[0], sign * p[1])):
        if not front or sign * y < sign * front[-1][1]:
            front.append((x, y))
    return [x for x, _ in front], [y for _, y in front]
