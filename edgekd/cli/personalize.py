"""`edgekd personalize`: a model recalibrated to one wearer, without TensorFlow."""

from __future__ import annotations

import time
from pathlib import Path

import click

from edgekd.errors import UserError
from edgekd.table import format_table


@click.command()
@click.argument("model", type=click.Path(dir_okay=False, path_type=Path))
@click.argument("calibration", type=click.Path(path_type=Path))
@click.option(
    "--out", required=True, type=click.Path(dir_okay=False, path_type=Path), help="The personal .tflite to write."
)
@click.option(
    "--where",
    "where",
    multiple=True,
    metavar="KEY=V1,V2",
    help="Calibrate on these recordings of CALIBRATION only; KEY is subject, repetition or session; repeat for more "
    "keys (all must hold).",
)
@click.option(
    "--keep-missing",
    is_flag=True,
    help="Let classes the calibration lacks keep the shipped model's behaviour (without it they are refused).",
)
@click.option("--force", is_flag=True, help="Replace --out if it exists.")
def personalize(model, calibration, out, where, keep_missing, force):
    """Fit MODEL's last layer to one person from CALIBRATION, a dataset folder of their recordings (what `edgekd stream
    --record` writes, or part of a bigger dataset with --where). Writes one .tflite, int8 or float32 as MODEL, that
    bench and stream take like any other. No TensorFlow."""
    from edgekd.data.splits import parse_where
    from edgekd.io import check_output, write_bytes_atomic
    from edgekd.runtime import personalize as personal
    from edgekd.runtime.interpreter import TFLiteModel

    started = time.perf_counter()
    chosen = parse_where(where)
    out = check_output(out, "--out", force)
    if model.exists() and out.resolve() == model.resolve():
        raise UserError(f"--out {out}: is MODEL itself; personalize never modifies its input, choose another --out")
    shipped_model = TFLiteModel.load(model)
    calibration_set = personal.load_calibration(shipped_model, calibration, chosen)
    result = personal.personalize(shipped_model, calibration_set, keep_missing=keep_missing)
    write_bytes_atomic(out, result.model_bytes)
    record = result.record
    rows = [[name, count] for name, count in record["windows"].items()]
    rows += [[name, "none: kept the shipped model's"] for name in record["kept_shipped"]]
    click.echo(format_table(["class", "calibration windows"], rows))
    shipped, personal_accuracy = result.calibration_accuracy
    click.echo(
        f"accuracy on the calibration windows: shipped {shipped:.1%}, personal {personal_accuracy:.1%} "
        f"(measure on other recordings with bench --data ... --where ...)"
    )
    click.echo(f"wrote {out} ({len(result.model_bytes):,} bytes) in {time.perf_counter() - started:.1f} s")
    click.echo(f"next: edgekd stream --port PORT --model {out}")
