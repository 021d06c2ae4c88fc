"""The live engine: samples placed by device time give exactly the offline windows; holes, segments, smoothing,
recording."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time

import numpy as np
import pytest

from edgekd.data.dataset import StreamSpec, load_dataset
from edgekd.data.windows import Preprocessor, WindowSpec
from firmware_bridge.live import US, Recorder, Smoother, Timeline


def frames_of(signals, streams, frame_s=0.01, start_us=0):
    """(stream index, timestamp of first sample, values) in order of their last sample, as a device sends them."""
    out = []
    for i, s in enumerate(streams):
        n = max(1, round(frame_s * s.rate_hz))
        x = signals[s.name]
        for first in range(0, len(x), n):
            last_time = (first + min(n, len(x) - first)) / s.rate_hz
            out.append((last_time, i, start_us + int(round(first * US / s.rate_hz)), x[first : first + n]))
    return [(i, t, v) for _, i, t, v in sorted(out, key=lambda f: (f[0], f[1]))]


@pytest.fixture(scope="module")
def two_stream(two_stream_dataset):
    ds = load_dataset(two_stream_dataset)
    pre = Preprocessor(ds.streams, WindowSpec(200.0, 0.5, 0.1))
    return ds, pre, ds.load_signals(ds.recordings[0])


def test_live_windows_equal_offline_windows(two_stream):
    ds, pre, signals = two_stream
    timeline, live = Timeline(pre), []
    for i, t, values in frames_of(signals, ds.streams, start_us=123_456):
        timeline.add(i, t, values)
        live += [w for _, _, w in timeline.ready_windows()]
    offline = pre.raw_windows(signals)
    assert len(live) == len(offline) > 5
    np.testing.assert_array_equal(np.stack(live), offline)


def test_buffers_stay_bounded_in_a_long_session(two_stream):
    ds, pre, signals = two_stream
    timeline, longest = Timeline(pre), 0
    repeated = {k: np.tile(v, (20, 1)) for k, v in signals.items()}  # about 20 s
    for i, t, values in frames_of(repeated, ds.streams):
        timeline.add(i, t, values)
        list(timeline.ready_windows())
        longest = max(longest, len(timeline.buffers["emg"]))
    assert longest < 2 * 0.5 * ds.streams[0].rate_hz  # about one window, however long the session


def test_a_lost_frame_is_filled_and_a_long_pause_starts_a_new_segment():
    stream = StreamSpec("emg", 100.0, ("a",))
    timeline = Timeline(Preprocessor((stream,), WindowSpec(100.0, 0.2, 0.1)), max_fill_s=0.1)
    timeline.add(0, 0, np.arange(10, dtype=np.float32)[:, None])
    timeline.add(0, 150_000, np.arange(15, 20, dtype=np.float32)[:, None])  # samples 10-14 lost: 50 ms hole
    assert timeline.stats.filled_samples == 5 and timeline.stats.segments == 1
    assert timeline.buffers["emg"][10:15, 0].tolist() == [9.0] * 5
    timeline.add(0, 2_000_000, np.ones((5, 1), np.float32))  # 1.8 s later: a new segment
    assert timeline.stats.segments == 2 and len(timeline.buffers["emg"]) == 5


def test_device_clock_wraparound_is_not_a_pause():
    stream = StreamSpec("emg", 1000.0, ("a",))
    timeline = Timeline(Preprocessor((stream,), WindowSpec(1000.0, 0.05, 0.05)))
    start = (1 << 32) - 5_000  # 5 ms before the uint32 microsecond clock wraps
    for k in range(10):
        t = (start + k * 10_000) % (1 << 32)
        timeline.add(0, t, np.full((10, 1), k, np.float32))
    assert timeline.stats.segments == 1 and timeline.stats.filled_samples == 0
    assert len(list(timeline.ready_windows())) == 2


def test_smoother_votes_and_abstains_below_threshold():
    smoother = Smoother(k=3, threshold=0.6)
    a, b = np.array([0.9, 0.1]), np.array([0.2, 0.8])
    assert smoother.update(a) == (0, pytest.approx(0.9))
    assert smoother.update(b) == (None, pytest.approx(0.55))  # 1-1 tie, broken by mean probability; 0.55 < 0.6
    label, confidence = smoother.update(a)
    assert label == 0 and confidence == pytest.approx((0.9 + 0.2 + 0.9) / 3)
    assert Smoother(k=1, threshold=0.95).update(a) == (None, pytest.approx(0.9))


def test_recording_survives_kill_9_and_reads_back_as_a_dataset_recording(tmp_path):
    """A writer killed mid-stream leaves every flushed line readable by the dataset loader."""
    folder = tmp_path / "rec"
    script = textwrap.dedent(f"""
        import time, numpy as np
        from edgekd.data.dataset import StreamSpec
        from edgekd.data.windows import Preprocessor, WindowSpec
        from firmware_bridge.live import Recorder
        pre = Preprocessor((StreamSpec("emg", 100.0, ("a", "b")), StreamSpec("imu", 10.0, ("x",))), WindowSpec(100.0,
        0.5, 0.1))
        rec = Recorder({str(folder)!r}, pre)
        for i in range(100000):
            rec.write("emg", np.array([[i, -i], [i + 0.5, 2.25]], np.float32))
            rec.write("imu", np.array([[i]], np.float32))
            rec.flush()
            if i == 50:
                print("ready", flush=True)
            time.sleep(0.001)
    """)
    proc = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True)
    assert proc.stdout.readline().strip() == "ready"
    time.sleep(0.2)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()

    (tmp_path / "dataset.toml").write_text(
        'classes = ["x", "y"]\n[streams.emg]\nrate_hz = 100\nchannels = ["a", "b"]\n'
        '[streams.imu]\nrate_hz = 10\nchannels = ["x"]\n'
    )
    (tmp_path / "recordings.csv").write_text("path,subject,label\nrec,s1,x\n")
    ds = load_dataset(tmp_path)
    signals = ds.load_signals(ds.recordings[0])
    emg, imu = signals["emg"], signals["imu"]
    assert len(emg) >= 100 and len(imu) >= 50
    rows = len(emg) // 2
    np.testing.assert_array_equal(emg[: 2 * rows : 2, 0], np.arange(rows))
    np.testing.assert_array_equal(
        emg[1 : 2 * rows : 2], np.tile([[0.5, 2.25]], (rows, 1)) + np.c_[np.arange(rows), np.zeros(rows)]
    )


def test_recorder_never_overwrites(tmp_path):
    pre = Preprocessor((StreamSpec("emg", 100.0, ("a",)),), WindowSpec(100.0, 0.5, 0.1))
    Recorder(tmp_path, pre).close()
    (tmp_path / "emg.csv").write_text("a\n1\n")
    from edgekd.errors import UserError

    with pytest.raises(UserError, match="never overwrites"):
        Recorder(tmp_path, pre)


def test_samples_from_before_the_segment_start_are_dropped_once_and_counted():
    """A second stream whose first frame began before the segment's start keeps its samples from the start on."""
    streams = (StreamSpec("emg", 100.0, ("a",)), StreamSpec("imu", 100.0, ("b",)))
    timeline = Timeline(Preprocessor(streams, WindowSpec(100.0, 0.1, 0.1)))
    timeline.add(0, 100_000, np.zeros((10, 1), np.float32))  # the segment starts at 100 ms
    timeline.add(1, 50_000, np.arange(10, dtype=np.float32)[:, None])  # 50-150 ms: the first 5 are too early
    assert timeline.stats.dropped_samples == 5
    assert timeline.buffers["imu"][:, 0].tolist() == [5.0, 6.0, 7.0, 8.0, 9.0]


def test_a_device_that_restarts_its_clock_starts_a_new_segment_at_once(two_stream):
    """Issue 21: a restarted device starts its clock at 0 again; its samples were taken for ones already received
    and dropped until the clock caught up (60 s of frames, a restart: 0 decisions for the next 60 device-seconds)."""
    ds, pre, signals = two_stream
    repeated = {k: np.tile(v, (12, 1)) for k, v in signals.items()}  # about 12 s
    timeline = Timeline(pre)
    for i, t, values in frames_of(repeated, ds.streams):
        timeline.add(i, t, values)
        list(timeline.ready_windows())
    after = []
    for i, t, values in frames_of(signals, ds.streams, start_us=0):  # the device restarted: its clock is back at 0
        timeline.add(i, t, values)
        after += [w for _, _, w in timeline.ready_windows()]
    assert timeline.stats.restarts == 1 and timeline.stats.segments == 2
    offline = pre.raw_windows(signals)
    assert len(after) == len(offline)  # every window of the restarted device's first second, none lost
    np.testing.assert_array_equal(np.stack(after), offline)


def test_a_repeated_frame_is_not_a_restart():
    stream = StreamSpec("emg", 100.0, ("a",))
    timeline = Timeline(Preprocessor((stream,), WindowSpec(100.0, 0.2, 0.1)))
    timeline.add(0, 0, np.arange(10, dtype=np.float32)[:, None])
    timeline.add(0, 0, np.arange(10, dtype=np.float32)[:, None])  # sent twice
    timeline.add(0, 100_000, np.arange(10, 20, dtype=np.float32)[:, None])
    assert timeline.stats.restarts == 0 and timeline.stats.segments == 1 and timeline.stats.dropped_samples == 10
