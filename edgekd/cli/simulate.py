"""`edgekd simulate`: a dataset replayed as a live sensor stream."""

from __future__ import annotations

from pathlib import Path

import click

from edgekd.cli.options import parse_comma_list
from edgekd.cli.wire import wire_option
from edgekd.errors import UserError


@click.command()
@click.argument("dataset", type=click.Path(path_type=Path))
@click.option("--port", help="Serial device or pyserial URL to write to, e.g. /dev/ttyUSB0.")
@click.option("--pty", is_flag=True, help="Create a pseudo-terminal and print its path for `edgekd stream --port`.")
@click.option("--listen", help="Serve one TCP client at HOST:PORT (the reader uses --port socket://HOST:PORT).")
@click.option("--baud", default=921600, show_default=True)
@click.option(
    "--speed",
    default=1.0,
    show_default=True,
    type=float,
    help="1 = real time, 10 = ten times faster, 0 = as fast as possible.",
)
@wire_option
@click.option("--faults", default="", help="Inject faults, e.g. drop=0.01,corrupt=0.02,garbage=0.01,disconnect=5.")
@click.option(
    "--frame-ms", default=10.0, show_default=True, type=float, help="Samples per frame, in milliseconds of each stream."
)
@click.option(
    "--recordings",
    callback=parse_comma_list,
    help="Recording indices (rows of recordings.csv from 0) in replay order. [default: all]",
)
@click.option("--loop", is_flag=True, help="Start over after the last recording, until interrupted.")
@click.option(
    "--hold",
    type=float,
    metavar="SECONDS",
    help="Play each recording for exactly SECONDS (cut, or repeated from its start) with no pause between: "
    "a wearer changing gesture on cue, as `edgekd stream --calibrate` prompts (use --calibrate SECONDS-2, "
    "and --recordings one per class in the model's class order).",
)
@click.option("--seed", default=0, show_default=True, type=int, help="Seed of the fault injection.")
def simulate(dataset, port, pty, listen, baud, speed, wire, faults, frame_ms, recordings, loop, hold, seed):
    """Replay DATASET's recordings as a wearable would send them: binary frames (firmware_bridge/PROTOCOL.md)
    or text lines, at real-time pace or --speed, with optional fault injection. No TensorFlow."""
    from edgekd.data.dataset import load_dataset
    from firmware_bridge.faults import parse_faults
    from firmware_bridge.link import open_link
    from firmware_bridge.simulator import Simulator

    try:
        chosen = [int(i) for i in recordings] if recordings else None
    except ValueError:
        raise UserError(f"--recordings {','.join(recordings)}: give comma-separated indices, e.g. 0,3,5") from None
    sim = Simulator(
        load_dataset(dataset),
        speed=speed,
        wire=wire,
        faults=parse_faults(faults),
        frame_ms=frame_ms,
        recordings=chosen,
        loop=loop,
        seed=seed,
        hold_s=hold,
    )
    with open_link(port, pty, listen, baud) as link:
        click.echo(f"writing to {link.describe()}", err=True)
        if not link.wait_ready(timeout=None):
            return
        try:
            stats = sim.run(link.write, drop_link=link.drop)
        except KeyboardInterrupt:
            return
    click.echo(stats.summary(), err=True)
