"""`edgekd stream`: live recognition from a sensor stream, without TensorFlow."""

from __future__ import annotations

import signal
import sys
from pathlib import Path

import click

from edgekd.errors import UserError
from firmware_bridge.codecs import wire_option
from firmware_bridge.link import DEFAULT_BAUD


@click.command()
@click.option("--port", required=True, help="Serial device (/dev/ttyACM0) or pyserial URL (socket://127.0.0.1:7000).")
@click.option(
    "--model",
    "model_path",
    required=True,
    type=click.Path(dir_okay=False, path_type=Path),
    help="A .tflite written by `edgekd export`.",
)
@click.option(
    "--baud", default=DEFAULT_BAUD, show_default=True, help="Baud rate (ignored by USB CDC devices and sockets)."
)
@wire_option
@click.option(
    "--rate", type=float, help="--wire text: the device's sample rate in Hz. [default: the model's stream rate]"
)
@click.option("--smooth", default=1, show_default=True, type=int, help="Majority vote over the last K windows.")
@click.option(
    "--threshold", default=0.0, show_default=True, type=float, help="Below this mean probability, report no sign."
)
@click.option("--jsonl", is_flag=True, help="One JSON object per decision instead of a live terminal line.")
@click.option(
    "--record",
    type=click.Path(file_okay=False, path_type=Path),
    help="Folder to write the raw received samples to, as they arrive.",
)
@click.option("--max-windows", type=click.IntRange(1), help="Stop after this many decisions.")
@click.option("--idle-exit", type=float, help="Stop after this many seconds without data.")
@click.option(
    "--calibrate",
    type=click.FloatRange(min=0, min_open=True),
    metavar="SECONDS",
    help="First ask for each of the model's classes in turn (a 2 s countdown, then hold it SECONDS), "
    "personalize the model on those windows as `edgekd personalize` does, then recognise with the "
    "personal model. With --record DIR it is kept as DIR/personal.tflite, the calibration as the dataset "
    "DIR/calibration/.",
)
def stream(port, model_path, baud, wire, rate, smooth, threshold, jsonl, record, max_windows, idle_exit, calibrate):
    """Recognise signs live from a device on PORT: windows cut and normalised exactly as in training,
    LSTM state reset per window. Ctrl-C stops and prints the counters. No TensorFlow."""
    from edgekd.runtime.interpreter import TFLiteModel
    from firmware_bridge.codecs import CODECS
    from firmware_bridge.link import reader_opener
    from firmware_bridge.live import LiveSession, run_session

    CODECS[wire].check_rate(rate)  # before the model loads: a wire that carries its own time takes no --rate
    model = TFLiteModel.load(model_path)
    guided = _guided_calibration(model, calibrate, record, port) if calibrate else {}
    session = LiveSession(model, wire=wire, rate_hz=rate, smooth=smooth, threshold=threshold, record=record, **guided)
    interactive = sys.stdout.isatty() and not jsonl

    def emit(d):
        if jsonl:
            click.echo(d.to_json())
            return
        line = f"{d.end_time_s:9.2f} s  {d.label or '(no sign)':<16} p={d.probability:.2f}  {d.latency_ms:6.2f} ms"
        click.echo(("\r" + line) if interactive else line, nl=not interactive)

    click.echo(f"listening on {port} with {model_path.name} ({', '.join(session.classes)})", err=True)
    signal.signal(signal.SIGTERM, _stop_on_sigterm)  # `kill` ends a session like Ctrl-C: counters, closed files
    try:
        run_session(
            session,
            reader_opener(port, baud),
            emit,
            max_windows=max_windows,
            idle_exit_s=idle_exit,
            log=lambda m: click.echo(m, err=True),
        )
    except KeyboardInterrupt:
        pass
    finally:
        if interactive:
            click.echo()
        if session.calibration is not None:
            kept = session.calibration.calibration_set()[1]
            click.echo(
                f"calibration not finished ({len(set(kept.tolist()))} of {len(session.classes)} classes held); "
                "nothing personalized",
                err=True,
            )
        counters = session.counters()
        click.echo("counters: " + ", ".join(f"{k}={v}" for k, v in counters.items()), err=True)


def _guided_calibration(model, seconds: float, record: Path | None, port: str) -> dict:
    """LiveSession's calibration and on_calibrated for `stream --calibrate SECONDS`, checked before the device is
    opened: a model personalize can refit, enough windows per class, and (with --record) a free calibration folder."""
    import tempfile

    from edgekd.data.windows import Preprocessor
    from edgekd.io import write_bytes_atomic
    from edgekd.runtime import personalize as personal
    from edgekd.runtime.interpreter import TFLiteModel
    from firmware_bridge.calibrate import GuidedCalibration, write_calibration_dataset

    personal.check_personalizable(model)
    pre = Preprocessor.from_dict(model.metadata["preprocessing"])
    per_class = int((seconds - pre.spec.window_s) / pre.spec.hop_s + 1e-9) + 1 if seconds >= pre.spec.window_s else 0
    if per_class < personal.MIN_WINDOWS_PER_CLASS:
        least = pre.spec.window_s + (personal.MIN_WINDOWS_PER_CLASS - 1) * pre.spec.hop_s
        raise UserError(
            f"--calibrate {seconds:g}: gives {per_class} windows of each class, personalize needs "
            f"{personal.MIN_WINDOWS_PER_CLASS}; hold each class at least {least:g} s"
        )
    as_dataset = len(pre.streams) == 1 and pre.streams[0].rate_hz == pre.spec.model_rate_hz
    for kept in ("calibration", "personal.tflite"):
        if record and (Path(record) / kept).exists():
            raise UserError(f"{Path(record) / kept}: exists; choose another --record folder")
    classes = list(model.metadata["classes"])
    interactive = sys.stderr.isatty()

    def say(live: str, plain: str | None) -> None:
        if interactive:
            click.echo("\r" + live.ljust(72), nl=False, err=True)
        elif plain:
            click.echo(plain, err=True)

    def on_calibrated(windows, labels):
        if interactive:
            click.echo(err=True)
        made = personal.personalize(model, personal.Calibration(windows, labels, f"live calibration on {port}"))
        shipped, personal_accuracy = made.calibration_accuracy
        click.echo(
            f"personalized on {len(labels)} windows: calibration accuracy {shipped:.1%} -> {personal_accuracy:.1%}; "
            "recognising with the personal model",
            err=True,
        )
        if not record:
            with tempfile.TemporaryDirectory() as tmp:  # the model is read into memory: the file can go
                return TFLiteModel.load(write_bytes_atomic(Path(tmp) / "personal.tflite", made.model_bytes))
        path = write_bytes_atomic(Path(record) / "personal.tflite", made.model_bytes)
        click.echo(f"wrote {path}", err=True)
        if as_dataset:
            write_calibration_dataset(Path(record) / "calibration", windows, labels, pre, classes)
            click.echo(f"calibration kept as the dataset {Path(record) / 'calibration'}", err=True)
        else:
            click.echo(
                f"calibration not kept as a dataset (the model resamples or stacks its streams); the raw "
                f"samples are in {record}",
                err=True,
            )
        return TFLiteModel.load(path)

    return {"calibration": GuidedCalibration(classes, seconds, pre.spec.window_s, say), "on_calibrated": on_calibrated}


def _stop_on_sigterm(signum, frame):
    raise KeyboardInterrupt
