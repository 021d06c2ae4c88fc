"""`edgekd data inspect` and `edgekd data synth`."""

from __future__ import annotations

import json
from pathlib import Path

import click

from edgekd.errors import UserError
from edgekd.table import format_table


@click.group()
def data():
    """Inspect and generate datasets."""


@data.command()
@click.argument("dataset", type=click.Path(path_type=Path))
@click.option("--json", "as_json", is_flag=True, help="Print the summary as JSON.")
def inspect(dataset, as_json):
    """Summarise DATASET (classes, subjects, repetitions, durations, rates) and check every recording.

    Exits with status 2 if any problem is found; each problem names its file and row."""
    from edgekd.data.inspect import summarize

    summary = summarize(dataset)
    if as_json:
        click.echo(json.dumps(summary, indent=2))
    else:
        _print_summary(summary)
    if summary["problems"]:
        raise UserError(
            f"{dataset}: {len(summary['problems'])} problem(s) found, listed above; fix them and inspect again"
        )


def _print_summary(s: dict) -> None:
    click.echo(
        f"{s['name']}{'  (SYNTHETIC)' if s['synthetic'] else ''}: {s['recordings']} recordings, "
        f"{len(s['classes'])} classes, {len(s['subjects'])} subject(s), {len(s['repetitions'])} repetition(s)"
    )
    click.echo(
        format_table(
            ["stream", "rate_hz", "channels"], [[k, v["rate_hz"], v["channels"]] for k, v in s["streams"].items()]
        )
    )
    click.echo()
    click.echo(format_table(["class", "recordings"], [[c, n] for c, n in s["recordings_per_class"].items()]))
    d = s["duration_s"]
    if d:
        click.echo(f"\ndurations: min {d['min']:.2f} s, median {d['median']:.2f} s, max {d['max']:.2f} s")
    click.echo(f"subjects: {', '.join(s['subjects'])}")
    if s["repetitions"]:
        click.echo(f"repetitions: {', '.join(s['repetitions'])}")
    for p in s["problems"]:
        click.echo(f"problem: {p}", err=True)
    if not s["problems"]:
        click.echo("no problems found")


@data.command()
@click.argument("out", type=click.Path(path_type=Path))
@click.option("--preset", default="isl50", show_default=True, help="Shape of the dataset to imitate.")
@click.option("--classes", type=click.IntRange(2), help="Override the preset's class count.")
@click.option("--subjects", type=click.IntRange(1), help="Override the preset's subject count.")
@click.option("--repetitions", type=click.IntRange(1), help="Override the preset's repetitions per class and subject.")
@click.option("--duration", type=click.FloatRange(0.1), help="Mean recording length in seconds.")
@click.option("--seed", default=0, show_default=True)
def synth(out, preset, classes, subjects, repetitions, duration, seed):
    """Write a SYNTHETIC dataset to OUT, shaped like a wearable sign-language corpus (for tests and scale checks)."""
    from edgekd.data.synth import PRESETS, write_synthetic_dataset

    if preset not in PRESETS:
        raise UserError(f"unknown synthetic preset '{preset}'; use one of {', '.join(PRESETS)}")
    try:
        path = write_synthetic_dataset(
            out, preset, classes=classes, subjects=subjects, repetitions=repetitions, duration_s=duration, seed=seed
        )
    except FileExistsError as e:
        raise UserError(f"{out}: {e}; choose an empty or new folder") from None
    click.echo(f"wrote synthetic dataset {path}; check it with `edgekd data inspect {path}`")
