"""Datasets, windows, resampling, normalisation and splits (no TensorFlow)."""

from __future__ import annotations

import numpy as np
import pytest

from edgekd.data.dataset import StreamSpec, load_dataset
from edgekd.data.prepare import prepare_windows
from edgekd.data.splits import split_indices_from_dict, split_recordings
from edgekd.data.windows import Preprocessor, WindowSpec, align_streams, cut_windows, resample_ratio
from edgekd.errors import UserError


def test_windows_slide_by_hop_and_drop_a_short_tail():
    stream = StreamSpec("emg", 10.0, ("a", "b"))
    x = np.arange(20, dtype=np.float32).reshape(10, 2)  # 1 s at 10 Hz
    w = Preprocessor((stream,), WindowSpec(10.0, 0.4, 0.3)).raw_windows({"emg": x})
    assert w.shape == (3, 4, 2)  # starts 0, 3, 6; a window at 9 would run past the end
    np.testing.assert_array_equal(w[1], x[3:7])
    assert cut_windows(x, 4, []).shape == (0, 4, 2)


def test_window_starts_do_not_drift_with_a_fractional_hop():
    stream = StreamSpec("imu", 148.148, ("a",))
    x = np.arange(2000, dtype=np.float32)[:, None]
    w = Preprocessor((stream,), WindowSpec(148.148, 0.5, 0.1)).raw_windows({"imu": x})
    assert w[100, 0, 0] == round(100 * 0.1 * 148.148)  # 1481, not 100 * round(14.8) = 1500


def test_resampled_windows_need_no_samples_after_their_end(two_stream_dataset):
    """What makes live inference equal offline inference: a window computed from a truncated stream is identical."""
    from edgekd.data.windows import stream_window, window_from_streams

    ds = load_dataset(two_stream_dataset)
    spec = WindowSpec(200.0, 0.5, 0.25)
    signals = ds.load_signals(ds.recordings[0])
    full = Preprocessor(ds.streams, spec).raw_windows(signals)
    k = 1
    received = {s.name: signals[s.name][: sum(stream_window(s, spec, k))] for s in ds.streams}
    np.testing.assert_array_equal(window_from_streams(received, ds.streams, spec, k), full[k])


def test_resample_ratio_handles_seed_rates():
    assert resample_ratio(1000 / 0.9, 200) == (9, 50)  # 1,111.1 Hz sEMG -> 200 Hz
    up, down = resample_ratio(1000 / 6.75, 200)
    assert abs(up / down - 200 / (1000 / 6.75)) < 1e-3


def test_align_streams_resamples_to_one_rate_and_keeps_signal():
    streams = (StreamSpec("emg", 1000.0, ("a", "b")), StreamSpec("imu", 100.0, ("c",)))
    t_emg, t_imu = np.arange(2000) / 1000.0, np.arange(200) / 100.0
    signals = {"emg": np.stack([np.sin(2 * np.pi * 3 * t_emg)] * 2, 1), "imu": np.sin(2 * np.pi * 3 * t_imu)[:, None]}
    aligned = align_streams(signals, streams, 200.0)
    assert aligned.shape == (400, 3)
    middle = slice(20, 380)  # away from the filter's edges
    t = np.arange(400) / 200.0
    for ch in range(3):
        np.testing.assert_allclose(aligned[middle, ch], np.sin(2 * np.pi * 3 * t)[middle], atol=0.02)


def test_two_rate_dataset_gives_windows_of_all_channels(two_stream_dataset):
    ds = load_dataset(two_stream_dataset)
    assert [s.name for s in ds.streams] == ["emg", "imu"] and len(ds.channels) == 42
    pre = Preprocessor(ds.streams, WindowSpec(200.0, 0.5, 0.25))
    w = pre.raw_windows(ds.load_signals(ds.recordings[0]))
    assert w.shape[1:] == (100, 42) and len(w) >= 2


def test_normalisation_uses_training_windows_only(myo5):
    ds = load_dataset(myo5)
    split = split_recordings(ds, "repetition", ["2"], ["1"])
    pre, parts = prepare_windows(ds, split, WindowSpec(200.0, 0.5, 0.1))
    train = parts["train"].x.reshape(-1, 8)
    np.testing.assert_allclose(train.mean(0), 0, atol=1e-3)
    np.testing.assert_allclose(train.std(0), 1, atol=1e-3)
    assert np.abs(parts["test"].x.reshape(-1, 8).mean(0)).max() > 1e-3  # test statistics were not used


@pytest.mark.parametrize("method", ["subject", "repetition", "random"])
def test_no_recording_lands_in_two_splits(two_stream_dataset, method):
    ds = load_dataset(two_stream_dataset)
    split = split_recordings(ds, method, seed=3)
    _, parts = prepare_windows(ds, split, WindowSpec(200.0, 0.5, 0.25))
    seen = [set(parts[p].recording.tolist()) for p in ("train", "val", "test")]
    assert not (seen[0] & seen[1]) and not (seen[0] & seen[2]) and not (seen[1] & seen[2])
    assert set().union(*seen) == set(range(len(ds.recordings)))
    if method != "random":
        groups = split.groups
        assert not set(groups["train"]) & set(groups["test"]) and not set(groups["val"]) & set(groups["test"])


def test_default_split_is_subject_with_three_subjects_else_repetition(two_stream_dataset, myo5):
    assert split_recordings(load_dataset(two_stream_dataset)).method == "subject"
    split = split_recordings(load_dataset(myo5))
    assert split.method == "repetition" and split.groups["test"] == ["3"] and split.groups["val"] == ["2"]


def test_split_recorded_in_a_model_selects_the_same_recordings(two_stream_dataset):
    ds = load_dataset(two_stream_dataset)
    for method in ("subject", "random"):
        split = split_recordings(ds, method, seed=5)
        assert split_indices_from_dict(ds, split.to_dict(ds), "test") == sorted(split.indices["test"])


def test_random_split_is_stratified(two_stream_dataset):
    ds = load_dataset(two_stream_dataset)
    split = split_recordings(ds, "random", seed=0)
    for part in ("train", "val", "test"):
        assert {ds.recordings[i].label for i in split.indices[part]} == set(ds.classes)


def test_preprocessor_round_trips_through_json(myo5):
    ds = load_dataset(myo5)
    pre = Preprocessor(ds.streams, WindowSpec(200.0, 0.5, 0.1)).fit(np.random.default_rng(0).normal(size=(10, 100, 8)))
    back = Preprocessor.from_dict(pre.to_dict())
    signals = ds.load_signals(ds.recordings[0])
    np.testing.assert_array_equal(back.windows(signals), pre.windows(signals))


def test_unknown_split_and_group_are_user_errors(myo5):
    ds = load_dataset(myo5)
    with pytest.raises(UserError, match="no repetition '9'"):
        split_recordings(ds, "repetition", ["9"])
    with pytest.raises(UserError, match="at least 3 subjects"):
        split_recordings(ds, "subject")
