"""The classical baseline: time-domain features checked by hand, LDA / random forest, and the distill report."""

from __future__ import annotations

import json
import math
import subprocess
import sys

import numpy as np
import pytest

from edgekd.models.classical import FEATURES, evaluate, fit_baselines, time_domain_features

# One window, 6 samples x 2 channels; the expected values below are worked out by hand from these numbers.
CH0 = [1.0, -2.0, 3.0, 3.0, -1.0, 0.0]
CH1 = [0.0, 2.0, 1.0, 1.5, -0.5, -0.2]
WINDOW = np.array([CH0, CH1], dtype=np.float32).T[None]  # (1, 6, 2)


def feature(features: np.ndarray, name: str) -> np.ndarray:
    """The (channels,) values of one feature of the first window (columns are feature-major)."""
    channels = features.shape[1] // len(FEATURES)
    i = FEATURES.index(name)
    return features[0, i * channels : (i + 1) * channels]


@pytest.fixture(scope="module")
def hand_window_features():
    return time_domain_features(WINDOW)


def test_shape_is_six_features_per_channel():
    windows = np.zeros((7, 40, 5), np.float32)
    assert time_domain_features(windows).shape == (7, 30)
    assert time_domain_features(windows[:0]).shape == (0, 30)


def test_mean_absolute_value(hand_window_features):
    # ch0: (1 + 2 + 3 + 3 + 1 + 0) / 6; ch1: (0 + 2 + 1 + 1.5 + 0.5 + 0.2) / 6
    np.testing.assert_allclose(feature(hand_window_features, "mav"), [10 / 6, 5.2 / 6], rtol=1e-6)


def test_root_mean_square(hand_window_features):
    # ch0: sqrt((1 + 4 + 9 + 9 + 1 + 0) / 6) = 2; ch1: sqrt((0 + 4 + 1 + 2.25 + 0.25 + 0.04) / 6)
    np.testing.assert_allclose(feature(hand_window_features, "rms"), [2.0, math.sqrt(7.54 / 6)], rtol=1e-6)


def test_waveform_length(hand_window_features):
    # ch0: 3 + 5 + 0 + 4 + 1; ch1: 2 + 1 + 0.5 + 2 + 0.3
    np.testing.assert_allclose(feature(hand_window_features, "wl"), [13.0, 5.8], rtol=1e-6)


def test_zero_crossings(hand_window_features):
    # ch0: 1|-2, -2|3, 3|-1 cross; 3|3 does not, nor -1|0 (touching zero is not crossing it).
    # ch1: only 1.5|-0.5; 0|2 starts at zero.
    np.testing.assert_array_equal(feature(hand_window_features, "zc"), [3, 1])


def test_slope_sign_changes(hand_window_features):
    # ch0: turning points at -2 (between 1 and 3) and -1 (between 3 and 0); the flat 3, 3 is none.
    # ch1: every inner sample 2, 1, 1.5, -0.5 is a peak or a trough.
    np.testing.assert_array_equal(feature(hand_window_features, "ssc"), [2, 4])


def test_variance_is_about_the_window_mean(hand_window_features):
    # ch0: mean 2/3, mean square 4 -> 4 - 4/9; ch1: mean 3.8/6, mean square 7.54/6
    expected = [4 - 4 / 9, 7.54 / 6 - (3.8 / 6) ** 2]
    np.testing.assert_allclose(feature(hand_window_features, "var"), expected, rtol=1e-6)


def test_threshold_ignores_small_crossings_and_turns():
    features = time_domain_features(WINDOW, threshold=2.5)
    # ch0's crossings jump 3, 5 and 4 (all >= 2.5); ch1's one crossing jumps only 2.
    np.testing.assert_array_equal(feature(features, "zc"), [3, 0])
    # ch0's turns at -2 (steps 3 and 5) and -1 (steps 4 and 1) stay; ch1's steps are all below 2.5.
    np.testing.assert_array_equal(feature(features, "ssc"), [2, 0])
    jitter = np.array([0.01, -0.01] * 5, np.float32)[None, :, None]
    assert feature(time_domain_features(jitter), "zc")[0] == 9
    assert feature(time_domain_features(jitter, threshold=0.1), "zc")[0] == 0


def separable_windows(per_class: int, seed: int):
    """3 classes told apart by amplitude on channel 0; channel 1 is constant, so LDA's covariance is singular."""
    rng = np.random.default_rng(seed)
    labels = np.repeat(np.arange(3), per_class)
    windows = np.zeros((len(labels), 30, 2), np.float32)
    windows[:, :, 0] = rng.standard_normal((len(labels), 30)) * (1 + 2 * labels[:, None])
    return windows, labels


def test_lda_and_random_forest_learn_a_separable_set():
    train_x, train_y = separable_windows(40, seed=0)
    test_x, test_y = separable_windows(20, seed=1)
    baselines = fit_baselines(time_domain_features(train_x), train_y, seed=0)
    assert set(baselines) == {"lda", "random_forest"}
    accuracies = evaluate(baselines, time_domain_features(test_x), test_y)
    assert accuracies["lda"] >= 0.9 and accuracies["random_forest"] >= 0.9, accuracies


def test_device_side_does_not_import_the_baseline():
    code = (
        "import sys, edgekd.runtime.bench, edgekd.runtime.interpreter, edgekd.runtime.frontier, "
        "firmware_bridge.live, firmware_bridge.simulator; "
        "assert 'edgekd.models.classical' not in sys.modules and 'sklearn' not in sys.modules"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


def test_distill_report_holds_the_baseline(tiny_run):
    from edgekd.cli.distill import distill_table

    report = json.loads((tiny_run / "report.json").read_text())
    for part in ("test_accuracy", "val_accuracy"):
        for name in ("lda", "random_forest"):
            assert 0.0 <= report[part][name] <= 1.0
    channels = report["windows"]["channels"]
    assert report["baselines"]["features"] == list(FEATURES)
    assert report["baselines"]["feature_count"] == 6 * channels
    assert report["timings_s"]["baselines"] >= 0
    table = distill_table(report)
    assert "LDA (time-domain features)" in table and "random forest (time-domain features)" in table
    print(
        "\ntest accuracy: "
        + ", ".join(
            f"{k} {report['test_accuracy'][k]:.3f}"
            for k in ("lda", "random_forest", "student_kd", "student_scratch", "ensemble")
        )
    )
