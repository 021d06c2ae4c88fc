"""edgekd stream against the simulator: live decisions equal offline inference, reconnects, bad input."""

from __future__ import annotations

import subprocess
import sys
import threading

import numpy as np
import pytest
import serial
from click.testing import CliRunner

from edgekd.cli import main
from edgekd.data.dataset import load_dataset
from edgekd.data.splits import split_indices_from_dict
from edgekd.data.windows import Preprocessor
from edgekd.runtime.interpreter import TFLiteModel
from firmware_bridge.link import open_link
from firmware_bridge.live import LiveSession, run_session
from firmware_bridge.simulator import Simulator


@pytest.mark.parametrize("variant", ["float32", "int8"])
def test_live_probabilities_equal_offline_window_for_window_over_a_pty(exported, myo5, variant):
    model = TFLiteModel.load(exported[variant])
    dataset = load_dataset(myo5)
    test_recordings = split_indices_from_dict(dataset, model.metadata["split"], "test")[:3]
    sim = Simulator(dataset, speed=20, recordings=test_recordings)
    link = open_link(pty=True)
    reader = serial.serial_for_url(link.describe(), timeout=0)  # open before the device starts sending
    replay = threading.Thread(target=sim.run, args=(link.write,))
    replay.start()
    decisions = []
    try:
        run_session(LiveSession(model), lambda first: reader, decisions.append, idle_exit_s=1.0, log=lambda m: None)
    finally:
        replay.join(30)
        link.close()

    pre = Preprocessor.from_dict(model.metadata["preprocessing"])
    segments = sorted({d.segment for d in decisions})
    assert len(segments) == len(test_recordings)  # each recording (after a device pause) is its own segment
    for segment, recording in zip(segments, test_recordings):
        live = np.array([d.probs for d in decisions if d.segment == segment])
        offline = model.predict_proba(pre.windows(sim.sent_values(recording)))
        assert live.shape == offline.shape and len(live) > 10
        np.testing.assert_allclose(live, offline, rtol=0, atol=1e-6)


def _start_simulator(*args):
    proc = subprocess.Popen(
        [sys.executable, "-m", "edgekd.cli", "simulate", *map(str, args)], stderr=subprocess.PIPE, text=True
    )
    first = proc.stderr.readline()
    assert first.startswith("writing to "), first
    return proc, first.split()[-1]


def test_stream_reconnects_after_the_device_drops_the_link(exported, myo5):
    proc, url = _start_simulator(
        myo5, "--listen", "127.0.0.1:0", "--speed", "2", "--recordings", "10,11", "--faults", "disconnect=1.5"
    )
    try:
        result = CliRunner().invoke(
            main, ["stream", "--port", url, "--model", exported["int8"], "--jsonl", "--idle-exit", "2.5"]
        )
    finally:
        proc.kill()
        proc.wait()
    assert result.exit_code == 0, result.output + repr(result.exception)
    assert "link lost" in result.output and "link back" in result.output
    decisions = [line for line in result.output.splitlines() if line.startswith("{")]
    assert len(decisions) > 5
    counters = [line for line in result.output.splitlines() if line.startswith("counters:")][0]
    assert "reconnects=0" not in counters


def test_stream_cli_end_to_end_text_mode_with_smoothing(exported, myo5):
    proc, url = _start_simulator(
        myo5, "--listen", "127.0.0.1:0", "--speed", "0", "--wire", "text", "--recordings", "10"
    )
    try:
        result = CliRunner().invoke(
            main,
            [
                "stream",
                "--port",
                url,
                "--model",
                exported["float32"],
                "--wire",
                "text",
                "--smooth",
                "3",
                "--threshold",
                "0.0",
                "--idle-exit",
                "1.5",
            ],
        )
    finally:
        proc.kill()
        proc.wait()
    assert result.exit_code == 0, result.output + repr(result.exception)
    lines = [line for line in result.output.splitlines() if " ms" in line and "p=" in line]
    model = TFLiteModel.load(exported["float32"])
    dataset = load_dataset(myo5)
    offline = Preprocessor.from_dict(model.metadata["preprocessing"]).windows(
        dataset.load_signals(dataset.recordings[10])
    )
    assert len(lines) == len(offline) > 5  # every window of the recording, none lost
    assert "decoder_bad_lines=0" in result.output


def test_stream_reports_a_model_built_for_other_channels(exported, two_stream_dataset):
    proc, url = _start_simulator(two_stream_dataset, "--listen", "127.0.0.1:0", "--speed", "0")
    try:
        result = CliRunner().invoke(main, ["stream", "--port", url, "--model", exported["int8"], "--idle-exit", "2"])
    finally:
        proc.kill()
        proc.wait()
    assert result.exit_code == 2
    assert "use the model trained for this device" in result.output  # stream id or channel count, whichever comes first


def test_stream_on_a_missing_port_is_a_clear_error(exported):
    result = CliRunner().invoke(main, ["stream", "--port", "/dev/ttyNOPE0", "--model", exported["int8"]])
    assert result.exit_code == 2 and "/dev/ttyNOPE0" in result.output and "no such port" in result.output


def test_record_after_kill_9_of_the_stream_process_reads_back_as_the_samples_sent(exported, myo5, tmp_path):
    """`edgekd stream --record` killed abruptly: the folder is a dataset recording of exactly what arrived."""
    import os
    import signal
    import time

    proc_sim, url = _start_simulator(myo5, "--listen", "127.0.0.1:0", "--speed", "1", "--recordings", "0")
    folder = tmp_path / "rec"
    stream = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "edgekd.cli",
            "stream",
            "--port",
            url,
            "--model",
            str(exported["int8"]),
            "--jsonl",
            "--record",
            str(folder),
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:  # about 1 s of samples received, mid-recording
            if (folder / "emg.csv").exists() and (folder / "emg.csv").read_text().count("\n") > 200:
                break
            time.sleep(0.05)
        os.kill(stream.pid, signal.SIGKILL)
        stream.wait(10)
    finally:
        for proc in (proc_sim, stream):
            proc.kill()
            proc.wait()

    (tmp_path / "dataset.toml").write_text((myo5 / "dataset.toml").read_text())
    (tmp_path / "recordings.csv").write_text("path,subject,label\nrec,live,close\n")
    recorded = load_dataset(tmp_path)
    received = recorded.load_signals(recorded.recordings[0])["emg"]
    sent = load_dataset(myo5).load_signals(load_dataset(myo5).recordings[0])["emg"]
    assert 200 <= len(received) < len(sent)
    np.testing.assert_array_equal(received, sent[: len(received)])  # nothing lost, nothing corrupted


def test_one_read_spanning_two_recordings_loses_no_window(exported, myo5):
    """A burst (a loaded reader) can bring the end of one segment and the start of the next in one read."""
    model = TFLiteModel.load(exported["float32"])
    dataset = load_dataset(myo5)
    sim = Simulator(dataset, speed=0, recordings=[10, 11])
    session = LiveSession(model)
    decisions = session.feed(b"".join(data for _, data in sim.frames()), arrival=0.0)
    pre = Preprocessor.from_dict(model.metadata["preprocessing"])
    expected = [len(pre.windows(sim.sent_values(i))) for i in (10, 11)]
    assert [sum(d.segment == s for d in decisions) for s in (1, 2)] == expected
