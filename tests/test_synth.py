"""The synthetic dataset generator: folder format, determinism, learnability, and refusing to overwrite."""

import csv
import tomllib
from pathlib import Path

import numpy as np
import pytest

from edgekd.data.synth import PRESETS, write_synthetic_dataset

TINY = dict(classes=6, subjects=3, repetitions=4, duration_s=1.0)


@pytest.fixture(scope="module")
def tiny_dataset(tmp_path_factory) -> Path:
    return write_synthetic_dataset(tmp_path_factory.mktemp("synth") / "tiny", **TINY)


def read_rows(folder: Path) -> list[dict]:
    with open(folder / "recordings.csv", newline="") as f:
        return list(csv.DictReader(f))


def test_presets_include_isl50_shaped_like_the_corpus():
    assert PRESETS["isl50"] == {"classes": 50, "subjects": 5, "repetitions": 20, "duration_s": 2.0}


def test_dataset_toml_describes_streams_and_classes(tiny_dataset):
    meta = tomllib.loads((tiny_dataset / "dataset.toml").read_text())

    assert meta["name"] == "isl50-synthetic"
    assert meta["synthetic"] is True
    assert "SYNTHETIC" in meta["description"]
    assert meta["classes"] == [f"sign{c:02d}" for c in range(TINY["classes"])]
    emg, imu = meta["streams"]["emg"], meta["streams"]["imu"]
    assert emg["rate_hz"] == pytest.approx(1e6 / 900)
    assert imu["rate_hz"] == pytest.approx(1e6 / 6750)
    assert emg["channels"] == [f"emg{s}" for s in range(6)]
    assert len(imu["channels"]) == 36
    assert imu["channels"][:7] == ["acc0_x", "acc0_y", "acc0_z", "gyr0_x", "gyr0_y", "gyr0_z", "acc1_x"]
    assert imu["channels"][-1] == "gyr5_z"


def test_recordings_csv_lists_every_recording_once(tiny_dataset):
    with open(tiny_dataset / "recordings.csv", newline="") as f:
        assert next(csv.reader(f)) == ["path", "subject", "label", "repetition"]
    rows = read_rows(tiny_dataset)

    assert len(rows) == TINY["classes"] * TINY["subjects"] * TINY["repetitions"]
    assert len({row["path"] for row in rows}) == len(rows)
    assert {row["subject"] for row in rows} == {"s1", "s2", "s3"}
    assert {int(row["repetition"]) for row in rows} == set(range(TINY["repetitions"]))
    assert "recordings/s2/sign03_r01.npz" in {row["path"] for row in rows}
    for row in rows:
        assert not Path(row["path"]).is_absolute()
        assert (tiny_dataset / row["path"]).is_file()
    # Nothing half-written is left behind.
    assert not list(tiny_dataset.rglob("*.tmp"))


def test_recordings_are_float32_streams_covering_the_same_time(tiny_dataset):
    meta = tomllib.loads((tiny_dataset / "dataset.toml").read_text())
    streams = meta["streams"]
    durations = set()
    for row in read_rows(tiny_dataset):
        with np.load(tiny_dataset / row["path"], allow_pickle=False) as recording:
            assert sorted(recording.files) == ["emg", "imu"]
            seconds = {}
            for name, stream in streams.items():
                samples = recording[name]
                assert samples.dtype == np.float32
                assert samples.ndim == 2 and samples.shape[1] == len(stream["channels"])
                assert np.isfinite(samples).all() and np.abs(samples).max() < 1e4
                seconds[name] = samples.shape[0] / stream["rate_hz"]
        assert seconds["emg"] == pytest.approx(seconds["imu"], abs=1 / streams["imu"]["rate_hz"])
        assert 0.85 * TINY["duration_s"] - 0.01 <= seconds["emg"] <= 1.15 * TINY["duration_s"] + 0.01
        durations.add(round(seconds["emg"], 3))
    assert len(durations) > 10, "recordings should differ in duration"


def test_same_seed_gives_identical_bytes_and_another_seed_does_not(tmp_path):
    small = dict(classes=2, subjects=1, repetitions=2, duration_s=0.5)
    first = write_synthetic_dataset(tmp_path / "a", **small, seed=7)
    again = write_synthetic_dataset(tmp_path / "b", **small, seed=7)
    other = write_synthetic_dataset(tmp_path / "c", **small, seed=8)

    recording = "recordings/s1/sign01_r01.npz"
    assert (first / recording).read_bytes() == (again / recording).read_bytes()
    assert (first / recording).read_bytes() != (other / recording).read_bytes()
    assert (first / "recordings.csv").read_bytes() == (again / "recordings.csv").read_bytes()


def test_a_recording_does_not_depend_on_how_many_others_are_generated(tmp_path, tiny_dataset):
    fewer = write_synthetic_dataset(tmp_path / "fewer", classes=3, subjects=2, repetitions=2, duration_s=1.0)
    recording = "recordings/s2/sign02_r01.npz"
    assert (fewer / recording).read_bytes() == (tiny_dataset / recording).read_bytes()


# --------------------------------------------------------------------------- learnability


def segment_features(recording, segments: int = 4) -> np.ndarray:
    """Mean absolute value and RMS per channel over equal time segments, for both streams."""
    features = []
    for name in ("emg", "imu"):
        for part in np.array_split(recording[name].astype(np.float64), segments, axis=0):
            features += [np.abs(part).mean(axis=0), np.sqrt((part**2).mean(axis=0))]
    # Logs turn per-subject gains into offsets, which a linear classifier copes with better.
    return np.log(np.concatenate(features) + 1e-3)


def lda_predict(train_x, train_y, test_x, shrinkage: float = 0.1) -> np.ndarray:
    """Linear discriminant analysis with a shrunk pooled covariance (few samples, many features)."""
    mean, scale = train_x.mean(axis=0), train_x.std(axis=0) + 1e-9
    train_x, test_x = (train_x - mean) / scale, (test_x - mean) / scale
    labels = np.unique(train_y)
    centroids = np.stack([train_x[train_y == label].mean(axis=0) for label in labels])
    residuals = train_x - centroids[np.searchsorted(labels, train_y)]
    covariance = (1 - shrinkage) * np.cov(residuals, rowvar=False) + shrinkage * np.eye(train_x.shape[1])
    weights = np.linalg.solve(covariance, centroids.T)
    scores = test_x @ weights - 0.5 * np.sum(centroids * weights.T, axis=1)
    return labels[scores.argmax(axis=1)]


def test_classes_are_learnable_across_subjects(tiny_dataset):
    rows = read_rows(tiny_dataset)
    features = []
    for row in rows:
        with np.load(tiny_dataset / row["path"], allow_pickle=False) as recording:
            features.append(segment_features(recording))
    features = np.stack(features)
    labels = np.array([row["label"] for row in rows])
    held_out = np.array([row["subject"] == f"s{TINY['subjects']}" for row in rows])

    predicted = lda_predict(features[~held_out], labels[~held_out], features[held_out])

    accuracy = np.mean(predicted == labels[held_out])
    chance = 1 / TINY["classes"]
    assert accuracy > 2 * chance, f"cross-subject accuracy {accuracy:.2f} is too close to chance {chance:.2f}"


# --------------------------------------------------------------------------- refusing


def test_refuses_a_folder_that_is_not_empty(tmp_path):
    out = tmp_path / "taken"
    out.mkdir()
    (out / "notes.txt").write_text("keep me")

    with pytest.raises(FileExistsError, match="not empty"):
        write_synthetic_dataset(out, **TINY)
    assert sorted(p.name for p in out.iterdir()) == ["notes.txt"]


def test_writes_into_an_existing_empty_folder(tmp_path):
    out = write_synthetic_dataset(tmp_path, classes=1, subjects=1, repetitions=1, duration_s=0.5)
    assert (out / "dataset.toml").is_file()


def test_rejects_an_unknown_preset(tmp_path):
    with pytest.raises(ValueError, match="isl50"):
        write_synthetic_dataset(tmp_path / "x", preset="no-such-preset")
