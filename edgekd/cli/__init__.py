"""The `edgekd` command line: one command per intention.

    edgekd data inspect DATASET     what a dataset holds, and every problem in it
    edgekd data synth OUT           a synthetic dataset shaped like the ISL wearable corpus
    edgekd distill DATASET          teachers -> ensemble -> distilled student, in a run folder
    edgekd export RUN --int8        the student as one self-describing .tflite file
    edgekd bench MODEL.tflite       size, latency and accuracy, without TensorFlow
    edgekd compare RUN RUN          every model of every run in one table, and plots
    edgekd personalize MODEL CAL    a model recalibrated to one wearer from a minute of their gestures
    edgekd simulate DATASET         a dataset replayed as a live sensor stream
    edgekd stream --port PORT       live recognition from a sensor stream
    edgekd demo                     all of it on the bundled real sEMG recordings

One module per command in this package. Training commands import TensorFlow when they run; bench, personalize,
simulate and stream never do (a Raspberry Pi has none).
"""

from __future__ import annotations

import click

from edgekd.cli.bench import bench
from edgekd.cli.compare import compare
from edgekd.cli.data import data
from edgekd.cli.demo import demo
from edgekd.cli.distill import distill
from edgekd.cli.export import export
from edgekd.cli.personalize import personalize
from edgekd.cli.stream import stream
from firmware_bridge.simulator import simulate


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="edgekd")
@click.option(
    "--allow-outside-data",
    is_flag=True,
    help="Let recordings.csv name files outside its dataset folder (absolute paths, '..', symlinks); only for "
    "datasets you trust.",
)
@click.option(
    "--verbose",
    is_flag=True,
    help="Let TensorFlow, the converter and the runtime print what they print (kept quiet by default).",
)
def main(allow_outside_data, verbose):
    """Distil small sEMG/IMU sign-recognition models, export them to TFLite, and run them on the edge."""
    import os

    from edgekd.console import VERBOSE_ENV
    from edgekd.data.dataset import ALLOW_OUTSIDE_ENV

    for flag, variable in ((allow_outside_data, ALLOW_OUTSIDE_ENV), (verbose, VERBOSE_ENV)):
        if flag:
            os.environ[variable] = "1"


for command in (data, distill, export, bench, personalize, compare, simulate, stream, demo):
    main.add_command(command)
