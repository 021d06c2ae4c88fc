"""Guided calibration in a live session (issue 20): `edgekd stream --calibrate` prompts each class, keeps the windows
held, personalizes the model and recognises with it; `edgekd simulate --hold` plays a wearer following the prompts."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
from click.testing import CliRunner

from edgekd.cli import main
from edgekd.data.dataset import load_dataset
from edgekd.runtime.interpreter import TFLiteModel
from firmware_bridge.calibrate import READY_S, GuidedCalibration
from tests.test_bad_input import assert_user_error, run_cli


def test_only_windows_wholly_inside_a_hold_are_kept_and_the_turns_end_on_time():
    said = []
    calibration = GuidedCalibration(["a", "b"], seconds=3.0, window_s=0.5, say=lambda live, plain: said.append(live))
    ends = np.arange(0.5, 12.0, 0.25)
    taken = [end for end in ends if calibration.take(float(end), np.full((4, 1), end))]
    windows, labels = calibration.calibration_set()
    period = READY_S + 3.0
    assert taken[-1] <= 2 * period < ends[len(taken)]  # the first window past the last turn is the recogniser's
    starts = windows[:, 0, 0] - 0.5
    for k in (0, 1):
        inside = (starts[labels == k] >= k * period + READY_S) & (windows[labels == k, 0, 0] <= (k + 1) * period)
        assert inside.all() and (labels == k).sum() == 11  # (3 s - 0.5 s) / 0.25 s + 1
    assert any("[1/2] a: get ready" in t for t in said) and any("[2/2] b: hold it" in t for t in said)


def test_stream_calibrates_then_recognises_with_the_personal_model(exported, myo5, tmp_path):
    model = TFLiteModel.load(exported["int8"])
    dataset = load_dataset(myo5)

    def first_of(label, rep):
        return next(i for i, r in enumerate(dataset.recordings) if r.label == label and r.group("repetition") == rep)

    prompted = [first_of(c, "0") for c in model.metadata["classes"]]
    later = [first_of(c, "2") for c in model.metadata["classes"]]
    seconds = 3.5
    sim = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "edgekd.cli",
            "simulate",
            str(myo5),
            "--listen",
            "127.0.0.1:0",
            "--speed",
            "0",
            "--hold",
            str(READY_S + seconds),
            "--recordings",
            ",".join(map(str, prompted + later)),
        ],
        stderr=subprocess.PIPE,
        text=True,
    )
    url = sim.stderr.readline().split()[-1]
    record = tmp_path / "session"
    try:
        result = CliRunner().invoke(
            main,
            [
                "stream",
                "--port",
                url,
                "--model",
                str(exported["int8"]),
                "--jsonl",
                "--calibrate",
                str(seconds),
                "--record",
                str(record),
                "--idle-exit",
                "2",
            ],
        )
    finally:
        sim.kill()
        sim.wait()
    assert result.exit_code == 0, result.output + repr(result.exception)
    assert "[1/5] close: get ready" in result.output and "[5/5] extension: hold it for 3.5 s" in result.output
    assert "personalized on" in result.output and "calibration kept as the dataset" in result.output
    decisions = [json.loads(line) for line in result.output.splitlines() if line.startswith("{")]
    turns = len(prompted) * (READY_S + seconds)
    assert len(decisions) > 20 and all(d["end_time_s"] > turns for d in decisions)
    personal = TFLiteModel.load(record / "personal.tflite")
    windows = personal.metadata["personalized"]["windows"]
    assert sorted(windows) == sorted(model.metadata["classes"]) and min(windows.values()) >= 10
    # the calibration folder is a dataset: personalize takes it, and gets the same windows back
    again = run_cli("personalize", exported["int8"], record / "calibration", "--out", tmp_path / "again.tflite")
    assert again.exit_code == 0, again.output
    assert TFLiteModel.load(tmp_path / "again.tflite").metadata["personalized"]["windows"] == windows


def test_calibrate_refuses_too_short_a_hold_and_a_model_it_cannot_personalize(exported, tmp_path):
    assert_user_error(
        run_cli("stream", "--port", "loop://", "--model", exported["int8"], "--calibrate", "1"),
        "--calibrate 1: gives",
        "hold each class at least",
    )
    from edgekd.export.metadata_writer import embed_signed_metadata
    from edgekd.runtime.metadata import read_metadata

    data = exported["int8"].read_bytes()
    old = tmp_path / "old.tflite"
    old.write_bytes(embed_signed_metadata(data, {k: v for k, v in read_metadata(data).items() if k != "integrity"}))
    assert_user_error(run_cli("stream", "--port", "loop://", "--model", old, "--calibrate", "5"), "no room")


def test_calibration_over_a_pty_then_the_personal_model_decides(exported, myo5):
    """The same path over a pseudo-terminal, in process: the session's model after calibration is the personal one."""
    import threading

    import serial

    from edgekd.cli.stream import _guided_calibration
    from firmware_bridge.link import open_link
    from firmware_bridge.live import LiveSession, run_session
    from firmware_bridge.simulator import Simulator

    model = TFLiteModel.load(exported["int8"])
    dataset = load_dataset(myo5)
    order = [
        next(i for i, r in enumerate(dataset.recordings) if r.label == c and r.group("repetition") == rep)
        for rep in ("0", "2")
        for c in model.metadata["classes"]
    ]
    seconds = 3.5
    sim = Simulator(dataset, speed=20, recordings=order, hold_s=READY_S + seconds)
    link = open_link(pty=True)
    reader = serial.serial_for_url(link.describe(), timeout=0)  # open before the device starts sending
    session = LiveSession(model, **_guided_calibration(model, seconds, None, link.describe()))
    replay = threading.Thread(target=sim.run, args=(link.write,))
    replay.start()
    decisions = []
    try:
        run_session(session, lambda first: reader, decisions.append, idle_exit_s=1.0, log=lambda m: None)
    finally:
        replay.join(30)
        link.close()
    assert session.calibration is None and "personalized" in session.model.metadata
    assert len(decisions) > 20 and min(d.end_time_s for d in decisions) > 5 * (READY_S + seconds)
