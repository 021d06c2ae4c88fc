"""`edgekd bench`: size, latency and accuracy of model files, without TensorFlow."""

from __future__ import annotations

from pathlib import Path

import click

from edgekd.errors import UserError
from edgekd.table import format_table


@click.command()
@click.argument("models", nargs=-1, required=True, type=click.Path(path_type=Path))
@click.option(
    "--data",
    type=click.Path(path_type=Path),
    help="Dataset to measure accuracy on (the test split recorded in each model).",
)
@click.option(
    "--where",
    "where",
    multiple=True,
    metavar="KEY=V1,V2",
    help="With --data: measure on these recordings instead of the recorded test split; KEY is subject, repetition "
    "or session; repeat for more keys (all must hold).",
)
@click.option("--runs", default=200, show_default=True, type=int, help="Timed windows per model.")
@click.option("--warmup", default=20, show_default=True, type=int, help="Untimed windows first.")
@click.option("--threads", default=1, show_default=True, type=int, help="Interpreter threads.")
@click.option(
    "--runtime",
    default="litert",
    show_default=True,
    type=click.Choice(["litert", "tflm"]),
    help="tflm: TensorFlow Lite Micro's interpreter, in the smallest tensor arena that runs each model (reported "
    "instead of peak_kb). Needs `pip install 'edgekd[mcu]'`.",
)
@click.option(
    "--json", "json_out", type=click.Path(dir_okay=False, path_type=Path), help="Also write the results as JSON."
)
@click.option(
    "--plot",
    type=click.Path(dir_okay=False, path_type=Path),
    help="Also write a PNG: accuracy against gzip bytes and against p50 latency (p50 against gzip bytes without "
    "--data), Pareto-optimal models joined. Needs `pip install 'edgekd[plot]'`.",
)
@click.option("--force", is_flag=True, help="Replace --json and --plot files that exist.")
def bench(models, data, where, runs, warmup, threads, runtime, json_out, plot, force):
    """Measure bytes, load time, per-window latency and peak memory of MODELS, and accuracy with --data. No TensorFlow.

    \b
    peak_kb    peak RSS a model adds on top of the runtime (load + a few windows, fresh process)
    arena      --runtime tflm: the smallest tensor arena TFLM runs the model in, in bytes
    agreement  share of test windows with the class the float32 model of its run picks (--data)
    pareto     *: no other model as good on accuracy, gzip bytes and p50 and better on one
    """
    from edgekd.data.splits import parse_where
    from edgekd.io import check_output, write_json_atomic
    from edgekd.runtime import frontier
    from edgekd.runtime.bench import bench_model

    if where and data is None:
        raise UserError("--where selects recordings of the dataset given with --data; add --data DATASET")
    chosen = parse_where(where)
    for option, path in (("--json", json_out), ("--plot", plot)):
        if path:
            check_output(path, option, force)  # now, not after minutes of benching
    if plot:
        frontier.require_matplotlib()  # now, not after minutes of benching
    if runtime == "tflm":
        from edgekd.runtime.tflm import require_tflm

        require_tflm()  # now, not after minutes of benching
    results = frontier.compare(
        [bench_model(m, data, runs, warmup, threads, where=chosen, runtime=runtime) for m in models]
    )
    click.echo(bench_table(results))
    if chosen:
        click.echo(
            f"accuracy: on the recordings of {data} with "
            + " and ".join(f"{k}={','.join(v)}" for k, v in chosen.items())
        )
    if json_out:
        write_json_atomic(json_out, [_bench_json(r) for r in results])
        click.echo(f"wrote {json_out}")
    if plot:
        frontier.plot_frontier(results, plot)
        click.echo(f"wrote {plot}")


def bench_table(results) -> str:
    with_arena = any(r.arena_bytes is not None for r in results)  # --runtime tflm: beside bytes
    rows = [
        [
            Path(r.model).name,
            r.label or r.variant,
            r.bytes,
            *([r.arena_bytes] if with_arena else []),
            r.gzip_bytes,
            r.peak_rss_kb,
            r.init_ms,
            r.first_invoke_ms,
            r.latency_ms["p50"],
            r.latency_ms["p90"],
            r.latency_ms["p99"],
            r.accuracy,
            _agreement_cell(r),
            "*" if r.pareto else "",
        ]
        for r in results
    ]
    table = format_table(
        [
            "model",
            "variant",
            "bytes",
            *(["arena"] if with_arena else []),
            "gzip",
            "peak_kb",
            "init_ms",
            "first_ms",
            "p50_ms",
            "p90_ms",
            "p99_ms",
            "accuracy",
            "agreement",
            "pareto",
        ],
        rows,
        title=f"runtime: {results[0].runtime}, {results[0].threads} thread(s)",
    )
    return "\n".join([table, *_bench_notes(results)])


def _agreement_cell(r) -> str | None:
    if r.agreement_with_float is None:
        return None
    return f"{r.agreement_with_float:.3f}" + (" e" if r.agreement_source == "export" else "")


def _bench_notes(results) -> list[str]:
    """One line per column that needs explaining, for the columns the results fill (demo fills fewer)."""
    with_accuracy = all(r.accuracy is not None for r in results)
    notes = []
    if any(r.arena_bytes is not None for r in results):
        notes.append("arena: the smallest tensor arena TensorFlow Lite Micro runs the model in, bytes")
    if any(r.peak_rss_kb is not None for r in results):
        notes.append("peak_kb: peak RSS the model adds on top of the imported runtime, measured in a fresh process")
    if any(r.agreement_with_float is not None for r in results):
        notes.append(
            "agreement: share of test windows where the model picks the class the float32 model of its run picks"
        )
    if any(r.agreement_source == "export" for r in results):
        notes.append(
            "e: no float32 model of its run benched here; agreement with the Keras float student, measured at export"
        )
    if any(r.pareto is not None for r in results):
        notes.append(
            f"pareto *: no other model is as good on {'accuracy, ' if with_accuracy else ''}gzip bytes and p50 "
            f"and better on one"
        )
    return notes


def _bench_json(r) -> dict:
    d = r.to_dict()
    return {
        "model": d["model"],
        "bytes": d["bytes"],
        "gzip_bytes": d["gzip_bytes"],
        "init_ms": d["init_ms"],
        "latency_ms": d["latency_ms"],
        "accuracy": d["accuracy"],
        "runtime": d["runtime"],
        "variant": d["variant"],
        "first_invoke_ms": d["first_invoke_ms"],
        "windows": d["windows"],
        "threads": d["threads"],
        "label": d["label"],
        "agreement_with_float": d["agreement_with_float"],
        "agreement_source": d["agreement_source"],
        "peak_rss_kb": d["peak_rss_kb"],
        "arena_bytes": d["arena_bytes"],
        "pareto": d["pareto"],
    }
