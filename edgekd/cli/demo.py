"""`edgekd demo`: distil, export and bench on the bundled recordings."""

from __future__ import annotations

from datetime import datetime
from pathlib import Path

import click

from edgekd.cli.bench import bench_table
from edgekd.cli.distill import distill_table
from edgekd.distill.options import OPTION


@click.command()
@click.option(
    "--out",
    type=click.Path(file_okay=False, path_type=Path),
    help="Folder for the run and the model. [default: runs/demo-<time>]",
)
@click.option(
    "--epochs", default=OPTION["epochs"].default, show_default=True, type=click.IntRange(1), help=OPTION["epochs"].help
)
@click.option("--quiet", is_flag=True, help="No progress bars.")
def demo(out, epochs, quiet):
    """Distil, export int8 and bench on the bundled real Myo sEMG recordings (myo5).

    Tests on repetition 2 and validates on 1 (repetition 3 was recorded with the armband shifted)."""
    from edgekd.datasets import bundled_dataset
    from edgekd.distill.run import DistillConfig
    from edgekd.distill.run import distill as run_distill
    from edgekd.export.export import export_run
    from edgekd.runtime.bench import bench_model

    out = out or Path("runs") / f"demo-{datetime.now():%Y%m%d-%H%M%S}"
    dataset = bundled_dataset("myo5")
    click.echo(f"edgekd demo: real sEMG ({dataset}), run folder {out}")
    cfg = DistillConfig(
        dataset=str(dataset),
        out=str(out / "run"),
        epochs=epochs,
        test_on=["2"],
        val_on=["1"],
        verbose=0 if quiet else 1,
    )
    report = run_distill(cfg)
    model = export_run(out / "run", "int8", out / "student-int8.tflite", log=click.echo)
    result = bench_model(model.path, data=dataset)
    click.echo("\n" + distill_table(report))
    click.echo("\n" + bench_table([result]))
    click.echo(
        f"\nint8 student: {model.bytes:,} bytes, test accuracy {result.accuracy:.3f} "
        f"(ensemble {report['test_accuracy']['ensemble']:.3f}), p50 {result.latency_ms['p50']:.3f} ms per window"
    )
