"""`edgekd compare`: every model of every run in one table."""

from __future__ import annotations

from pathlib import Path

import click


@click.command()
@click.argument("runs", nargs=-1, type=click.Path(path_type=Path))
@click.option(
    "--out",
    type=click.Path(file_okay=False, path_type=Path),
    help="Folder for accuracy_vs_params.png and confusion_<run>.png (the best student). Needs `pip install "
    "'edgekd[plot]'`.",
)
@click.option(
    "--json", "json_out", type=click.Path(dir_okay=False, path_type=Path), help="Also write the table's rows as JSON."
)
@click.option("--force", is_flag=True, help="Replace the --json file if it exists.")
def compare(runs, out, json_out, force):
    """Compare runs: one table of every model's held-out accuracy, size and training time, and with --out the plots.

    RUNS are folders written by `edgekd distill`; everything but the confusion matrix comes from their report.json."""
    from edgekd import compare as comparing
    from edgekd.io import check_output, write_json_atomic

    if json_out:
        check_output(json_out, "--json", force)
    loaded = comparing.load_runs(runs)
    if out:
        comparing.require_matplotlib()  # now, not after the table
    rows = comparing.compare_rows(loaded)
    for line in [*map(comparing.run_summary, loaded), *comparing.comparability_notes(loaded)]:
        click.echo(line)
    click.echo("\n" + comparing.comparison_table(rows))
    click.echo(comparing.TIME_NOTE)
    if json_out:
        write_json_atomic(json_out, rows)
        click.echo(f"wrote {json_out}")
    if out:
        for line in comparing.write_plots(loaded, rows, out):
            click.echo(line)
