"""The device simulator: frames and their timing, pacing, faults, links, text mode."""

from __future__ import annotations

import itertools
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest
import serial

from edgekd.cli import main as edgekd_main
from edgekd.data.dataset import load_dataset
from edgekd.errors import UserError
from firmware_bridge.faults import Faults, parse_faults
from firmware_bridge.link import open_link
from firmware_bridge.protocol import FrameDecoder, choose_scale
from firmware_bridge.simulator import GAP_US, Simulator
from firmware_bridge.text import TextDecoder

REPO = Path(__file__).resolve().parents[1]
EMG_RATE, IMU_RATE = 1000, 100
LENGTHS = [(1050, 105), (800, 81)]  # (emg, imu) samples of the two recordings


def write_two_stream_dataset(root: Path, fractional: bool = False) -> Path:
    """sEMG at 1000 Hz (2 channels) + IMU at 100 Hz (3 channels), two recordings of integer-valued samples
    (or, with `fractional`, the second recording non-integer and larger, so the scale is not 1)."""
    root.mkdir(parents=True)
    (root / "dataset.toml").write_text(
        'name = "sim"\nclasses = ["rest", "fist"]\n'
        f"[streams.emg]\nrate_hz = {EMG_RATE}\nchannels = 2\n"
        f"[streams.imu]\nrate_hz = {IMU_RATE}\nchannels = 3\n"
    )
    rng = np.random.default_rng(7)
    rows = ["path,subject,label,repetition"]
    for i, (n_emg, n_imu) in enumerate(LENGTHS):
        emg = rng.integers(-2000, 2000, (n_emg, 2)).astype(np.float32)
        imu = rng.integers(-500, 500, (n_imu, 3)).astype(np.float32)
        if fractional and i == 1:
            emg, imu = emg * 20.37, imu / 7
        np.savez(root / f"r{i}.npz", emg=emg, imu=imu)
        rows.append(f"r{i}.npz,s0,{['rest', 'fist'][i]},{i}")
    (root / "recordings.csv").write_text("\n".join(rows) + "\n")
    return root


@pytest.fixture
def two_streams(tmp_path):
    return load_dataset(write_two_stream_dataset(tmp_path / "sim"))


def decode_all(chunks) -> tuple[list, FrameDecoder]:
    decoder = FrameDecoder()
    frames = [f for data in chunks for f in decoder.feed(data)]
    return frames + decoder.flush(), decoder


def reconstruct(sim: Simulator, frames) -> dict[int, dict[str, np.ndarray]]:
    """Decoded frames -> {recording: {stream: values}}, cut by the simulator's schedule."""
    per_stream = {}
    for sid, s in enumerate(sim.streams):
        mine = [f for f in frames if f.stream_id == sid]
        per_stream[s.name] = np.concatenate([f.values() for f in mine])
    out, taken = {}, {s.name: 0 for s in sim.streams}
    for row in sim.schedule():
        start = taken[row["stream"]]
        out.setdefault(row["recording"], {})[row["stream"]] = per_stream[row["stream"]][
            start : start + row["n_samples"]
        ]
        taken[row["stream"]] += row["n_samples"]
    assert taken == {name: len(v) for name, v in per_stream.items()}
    return out


class FakeTime:
    """A clock that only moves when slept on."""

    def __init__(self):
        self.now = 100.0
        self.sleeps: list[float] = []

    def clock(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now += seconds


# --------------------------------------------------------------------------- faults option


def test_parse_faults_reads_every_fault():
    assert parse_faults("") == Faults()
    assert parse_faults("drop=0.01, corrupt=0.02,garbage=0.01,disconnect=5") == Faults(0.01, 0.02, 0.01, 5.0)
    assert parse_faults("drop=1,corrupt=0") == Faults(drop=1.0)


@pytest.mark.parametrize(
    "text",
    [
        "dorp=0.1",
        "drop=x",
        "drop",
        "drop=1.5",
        "garbage=-0.1",
        "corrupt=nan",
        "disconnect=0",
        "disconnect=-2",
        "drop=0.1,drop=0.2",
    ],
)
def test_parse_faults_rejects_bad_input(text):
    with pytest.raises(UserError, match="--faults"):
        parse_faults(text)


# --------------------------------------------------------------------------- frames and their timing


@pytest.mark.parametrize("fractional", [False, True])
def test_frames_decode_to_exactly_the_sent_values(tmp_path, fractional):
    dataset = load_dataset(write_two_stream_dataset(tmp_path / "sim", fractional))
    sim = Simulator(dataset)
    sent = list(sim.frames())
    frames, decoder = decode_all(data for _, data in sent)
    assert decoder.stats.crc_errors == decoder.stats.resyncs == decoder.stats.sequence_gaps == 0

    # One scale per stream for the whole session, chosen from all its recordings; integer data goes through exactly.
    raw = [dataset.load_signals(rec) for rec in dataset.recordings]
    for sid, name in enumerate(("emg", "imu")):
        assert {f.scale for f in frames if f.stream_id == sid} == {sim.scales[name]}
        assert sim.scales[name] == choose_scale(np.concatenate([r[name] for r in raw]))
        assert (sim.scales[name] == 1.0) != fractional
    got = reconstruct(sim, frames)
    for i in range(len(raw)):
        for name in ("emg", "imu"):
            np.testing.assert_array_equal(got[i][name], sim.sent_values(i)[name])
            assert np.abs(got[i][name] - raw[i][name]).max() <= sim.scales[name] * 0.51
            if not fractional:
                np.testing.assert_array_equal(got[i][name], raw[i][name])


def test_frame_counts_seq_numbers_and_device_time(two_streams):
    sim = Simulator(two_streams)  # 10 ms frames: 10 sEMG samples, 1 IMU sample
    assert sim.frame_samples == {"emg": 10, "imu": 1}
    sent = list(sim.frames())
    frames, _ = decode_all(data for _, data in sent)
    emg = [f for f in frames if f.stream_id == 0]
    imu = [f for f in frames if f.stream_id == 1]
    assert len(emg) == 105 + 80 and len(imu) == 105 + 81
    assert [f.seq for f in emg] == list(range(len(emg))) and [f.seq for f in imu] == list(range(len(imu)))

    # Recording 1 starts 0.5 s (of device time) after the end of recording 0, the longer stream deciding.
    schedule = sim.schedule()
    assert [(r["recording"], r["stream"], r["first_sample_us"], r["n_samples"]) for r in schedule] == [
        (0, "emg", 0, 1050),
        (0, "imu", 0, 105),
        (1, "emg", 1_050_000 + GAP_US, 800),
        (1, "imu", 1_050_000 + GAP_US, 81),
    ]
    start1 = 1_050_000 + GAP_US
    assert [f.timestamp_us for f in emg[:3]] == [0, 10_000, 20_000]
    assert emg[105].timestamp_us == start1 and imu[105].timestamp_us == start1
    assert [f.timestamp_us for f in imu[105:108]] == [start1, start1 + 10_000, start1 + 20_000]

    # A frame goes out one sample period after its last sample; all streams merged in that order.
    times = [t for t, _ in sent]
    assert times == sorted(times)
    for (t, _), f in zip(sent, frames):
        rate = EMG_RATE if f.stream_id == 0 else IMU_RATE
        assert t * 1e6 == pytest.approx(f.timestamp_us + f.n_samples * 1e6 / rate, abs=1)
    assert sim.duration_s == pytest.approx((start1 + 810_000 + GAP_US) / 1e6)


def test_loop_keeps_counting_seq_and_device_time(two_streams):
    sim = Simulator(two_streams, loop=True, recordings=[1])
    n_per_pass = 80 + 81
    frames, _ = decode_all(data for _, data in itertools.islice(sim.frames(), 3 * n_per_pass))
    emg = [f for f in frames if f.stream_id == 0]
    assert [f.seq for f in emg] == list(range(3 * 80))
    assert emg[80].timestamp_us == sim.pass_us == 810_000 + GAP_US
    assert sim.schedule(passes=2)[2]["first_seq"] == 80


def test_start_us_wraps_the_device_clock(two_streams):
    sim = Simulator(two_streams, start_us=2**32 - 5_000, recordings=[0])
    frames, _ = decode_all(data for _, data in sim.frames())
    assert [f.timestamp_us for f in frames if f.stream_id == 0][:2] == [2**32 - 5_000, 5_000]


def test_bad_simulator_settings_are_user_errors(two_streams):
    for kwargs in ({"speed": -1}, {"speed": float("nan")}, {"recordings": [5]}, {"recordings": []}, {"frame_ms": 0}):
        with pytest.raises(UserError):
            Simulator(two_streams, **kwargs)


# --------------------------------------------------------------------------- pacing


@pytest.mark.parametrize("speed", [1.0, 10.0])
def test_run_paces_by_speed(two_streams, speed):
    fake, received = FakeTime(), bytearray()
    sim = Simulator(two_streams, speed=speed)
    stats = sim.run(received.extend, sleep=fake.sleep, clock=fake.clock)
    last_send = max(t for t, _ in sim.frames())
    assert sum(fake.sleeps) == pytest.approx(last_send / speed)
    assert bytes(received) == b"".join(data for _, data in sim.frames())
    assert stats.frames_sent == 185 + 186 and stats.bytes_sent == len(received) and stats.recordings == 2
    assert stats.samples_sent == {"emg": 1850, "imu": 186}


@pytest.mark.parametrize("speed", [0.0, float("inf")])
def test_run_without_pacing_never_sleeps(two_streams, speed):
    fake = FakeTime()
    stats = Simulator(two_streams, speed=speed).run(lambda data: None, sleep=fake.sleep, clock=fake.clock)
    assert fake.sleeps == [] and stats.frames_sent == 371


def test_write_returning_false_counts_as_lost(two_streams):
    stats = Simulator(two_streams, speed=0).run(lambda data: False)
    assert stats.frames_lost == 371 and stats.frames_sent == stats.bytes_sent == 0


# --------------------------------------------------------------------------- faults


def test_dropped_frames_show_as_sequence_gaps(two_streams):
    received = []
    sim = Simulator(two_streams, speed=0, faults=Faults(drop=0.5), seed=3)
    stats = sim.run(received.append)
    assert 0.4 < stats.frames_dropped / 371 < 0.6
    frames, decoder = decode_all(received)
    assert len(frames) == stats.frames_sent == 371 - stats.frames_dropped
    # The decoder sees the drops between two received frames; those before the first or after the last it cannot.
    totals = {0: 185, 1: 186}
    unseen = sum(
        min(f.seq for f in frames if f.stream_id == sid)
        + totals[sid]
        - 1
        - max(f.seq for f in frames if f.stream_id == sid)
        for sid in totals
    )
    assert decoder.stats.frames_lost + unseen == stats.frames_dropped
    assert decoder.stats.crc_errors == 0


def test_corruption_and_garbage_are_caught_and_the_rest_recovered(two_streams):
    received = []
    sim = Simulator(two_streams, speed=0, faults=Faults(corrupt=0.1, garbage=0.1), seed=1)
    stats = sim.run(received.append)
    assert stats.frames_corrupted > 10 and stats.garbage_bursts > 10
    frames, decoder = decode_all(received)
    assert decoder.stats.crc_errors > 0 and decoder.stats.resyncs > 0
    assert len(frames) == stats.frames_sent - stats.frames_corrupted  # a CRC catches every flipped byte
    originals, _ = decode_all(data for _, data in sim.frames())
    by_key = {(f.stream_id, f.seq): f for f in originals}
    assert all(f == by_key[f.stream_id, f.seq] for f in frames)


def test_disconnect_fault_silences_the_link_and_drops_it(two_streams):
    received, drops = [], []
    sim = Simulator(two_streams, speed=0, faults=Faults(disconnect=0.5))  # 0.25 s down every 0.5 s
    stats = sim.run(received.append, drop_link=lambda: drops.append(1))
    last_send = max(t for t, _ in sim.frames())
    assert stats.disconnects == len(drops) == int(last_send / 0.5)
    assert stats.frames_lost > 0 and stats.frames_sent + stats.frames_lost == 371
    frames, _ = decode_all(received)
    for f in frames:
        rate = EMG_RATE if f.stream_id == 0 else IMU_RATE
        send = (f.timestamp_us + f.n_samples * 1e6 / rate) / 1e6
        assert send < 0.5 or (send % 0.5) >= 0.25 - 1e-9


# --------------------------------------------------------------------------- links


def test_link_choice_and_bad_ports_are_user_errors():
    with pytest.raises(UserError, match="exactly one"):
        open_link(None, False, None, 115200)
    with pytest.raises(UserError, match="exactly one"):
        open_link("loop://", True, None, 115200)
    with pytest.raises(UserError, match="/dev/no-such-serial-port"):
        open_link("/dev/no-such-serial-port", False, None, 115200)
    with pytest.raises(UserError, match="socket://127.0.0.1:1"):
        open_link("socket://127.0.0.1:1", False, None, 115200)  # nothing listens on port 1
    with pytest.raises(UserError, match="HOST:PORT"):
        open_link(None, False, "localhost", 115200)


def test_pty_link_delivers_every_byte(two_streams):
    with open_link(None, True, None, 115200) as link:
        reader = serial.Serial(link.describe(), timeout=2)
        try:
            sim = Simulator(two_streams, speed=0, recordings=[1])
            expected = b"".join(data for _, data in sim.frames())  # ~8 KB: more than a pty buffers, so read as we go
            got = bytearray()
            thread = threading.Thread(target=lambda: got.extend(reader.read(len(expected))))
            thread.start()
            sim.run(link.write)
            thread.join(5)
            assert bytes(got) == expected
        finally:
            reader.close()


def test_listen_link_serves_a_new_client_after_a_disconnect():
    with open_link(None, False, "127.0.0.1:0", 115200) as link:
        url = link.describe()
        assert url.startswith("socket://127.0.0.1:") and not url.endswith(":0")
        assert not link.write(b"nobody")  # no client yet: lost
        first = serial.serial_for_url(url, timeout=2)
        try:
            assert link.wait_ready(timeout=2)
            assert link.write(b"hello")
            assert first.read(5) == b"hello"
            link.drop()  # what the disconnect fault does
            with pytest.raises(serial.SerialException):
                first.read(1)
        finally:
            first.close()
        assert not link.write(b"lost")
        second = serial.serial_for_url(url, timeout=2)
        try:
            deadline = time.monotonic() + 2
            while not link.write(b"later") and time.monotonic() < deadline:
                time.sleep(0.01)
            assert second.read(5) == b"later"
        finally:
            second.close()


# --------------------------------------------------------------------------- text mode


def test_text_mode_round_trips_a_single_stream_dataset(myo5):
    dataset = load_dataset(myo5)
    sim = Simulator(dataset, wire="text", recordings=[0, 3])
    decoder = TextDecoder(8)
    values = np.concatenate([decoder.feed(data) for _, data in sim.frames()])
    raw = [dataset.load_signals(dataset.recordings[i])["emg"] for i in (0, 3)]
    np.testing.assert_array_equal(values, np.concatenate(raw))
    np.testing.assert_array_equal(sim.sent_values(3)["emg"], raw[1])
    assert decoder.stats.bad_lines == 0


def test_text_mode_faults(myo5):
    received = []
    sim = Simulator(load_dataset(myo5), wire="text", recordings=[0], speed=0, faults=Faults(drop=0.2, garbage=0.2))
    stats = sim.run(received.append)
    decoder = TextDecoder(8)
    rows = decoder.feed(b"".join(received))
    assert stats.frames_dropped > 0 and stats.garbage_bursts > 0
    assert len(rows) == stats.samples_sent["emg"] and decoder.stats.bad_lines == stats.garbage_bursts


def test_text_mode_needs_a_single_stream(two_streams):
    with pytest.raises(UserError, match="binary mode"):
        Simulator(two_streams, wire="text")


# --------------------------------------------------------------------------- program and imports


def test_command_line_replays_to_a_tcp_reader(tmp_path, capsys):
    root = write_two_stream_dataset(tmp_path / "sim")
    server = socket.create_server(("127.0.0.1", 0))
    received = bytearray()

    def serve():
        client, _ = server.accept()
        with client:
            while chunk := client.recv(65536):
                received.extend(chunk)

    thread = threading.Thread(target=serve)
    thread.start()
    try:
        port = f"socket://127.0.0.1:{server.getsockname()[1]}"
        with pytest.raises(SystemExit) as exit_:
            edgekd_main(["simulate", str(root), "--port", port, "--speed", "0", "--recordings", "1"])
        thread.join(5)
    finally:
        server.close()
    assert exit_.value.code == 0
    assert "frames_sent=161" in capsys.readouterr().err
    frames, _ = decode_all([bytes(received)])
    assert len(frames) == 161


def test_python_m_firmware_bridge_simulator_is_edgekd_simulate(tmp_path):
    program = [sys.executable, "-m", "firmware_bridge.simulator"]
    shown = subprocess.run([*program, "--help"], cwd=REPO, capture_output=True, text=True, timeout=60)
    assert shown.returncode == 0, shown.stderr
    assert shown.stdout.startswith("Usage: python -m firmware_bridge.simulator [OPTIONS] DATASET")
    assert "--wire [frame|text]" in shown.stdout and "--faults" in shown.stdout and "--hold" in shown.stdout
    root = write_two_stream_dataset(tmp_path / "sim")
    refused = subprocess.run(
        [*program, str(root), "--pty", "--wire", "text"], cwd=REPO, capture_output=True, text=True, timeout=60
    )
    assert refused.returncode == 2 and "Traceback" not in refused.stderr
    assert "has 2 streams (emg, imu) and text mode carries one; use binary mode (--wire frame)" in refused.stderr


def test_import_pulls_in_no_tensorflow():
    code = (
        "import sys, firmware_bridge.simulator, firmware_bridge.link, firmware_bridge.codecs, firmware_bridge.live; "
        "bad = [m for m in sys.modules if m.split('.')[0] in ('tensorflow', 'keras', 'tf_keras')]; "
        "assert not bad, bad"
    )
    subprocess.run([sys.executable, "-c", code], cwd=REPO, check=True, timeout=60)


def test_pty_close_waits_for_a_slow_reader_to_take_everything():
    """Closing a pty discards unread bytes: the last frames of a replay must reach a reader that lags."""
    link = open_link(pty=True)
    reader = serial.serial_for_url(link.describe(), timeout=0)
    link.write(b"x" * 52)
    got = bytearray()

    def slow_reader():
        time.sleep(0.3)
        while len(got) < 52:
            got.extend(reader.read(64))
            time.sleep(0.01)

    thread = threading.Thread(target=slow_reader)
    thread.start()
    link.close()
    thread.join(3)
    reader.close()
    assert len(got) == 52


def test_hold_plays_each_recording_for_exactly_that_long_without_a_pause(myo5):
    dataset = load_dataset(myo5)
    sim = Simulator(dataset, recordings=[0, 1, 2], hold_s=5.5, speed=0)
    rows = sim.schedule()
    assert [r["first_sample_us"] for r in rows] == [0, 5_500_000, 11_000_000]  # no gap: one continuous wearing
    assert all(r["n_samples"] == 1100 for r in rows)  # 5.5 s at 200 Hz, longer than the ~3 s recordings: repeated
    original = dataset.load_signals(dataset.recordings[0])["emg"]
    sent = sim.sent_values(0)["emg"]
    n = len(original)  # 602 samples: the second copy is cut at 1100
    np.testing.assert_allclose(sent[n:], sent[: len(sent) - n])
    with pytest.raises(UserError, match="--hold 0"):
        Simulator(dataset, hold_s=0)
