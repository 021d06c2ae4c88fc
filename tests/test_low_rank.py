"""Low-rank factorisation: exact at full rank, smaller at low rank, original untouched, still a fused LSTM."""

from __future__ import annotations

import numpy as np
import pytest

from edgekd.compress.low_rank import choose_fraction, factorize
from edgekd.models.build import build_model, count_params
from edgekd.models.presets import load_preset
from tests.conftest import random_windows

WINDOW, CHANNELS, CLASSES = 30, 4, 3


@pytest.fixture(scope="module")
def student():
    return build_model(load_preset("edge-student"), WINDOW, CHANNELS, CLASSES, seed=3)


@pytest.fixture(scope="module")
def windows():
    return random_windows(16, WINDOW, CHANNELS, seed=5)


def logits(model, x):
    return model(x, training=False).numpy()


def test_full_rank_factorisation_reproduces_the_logits(student, windows):
    factorized, report = factorize(student, 1.0, only_if_smaller=False)
    lstm_names = {layer.name for layer in student.layers if layer.__class__.__name__ == "LSTM"}  # auto-named: lstm_<n>
    assert {entry["name"] for entry in report["layers"]} == lstm_names | {"logits"} and len(lstm_names) == 2
    assert all(entry["energy"] == pytest.approx(1.0) for entry in report["layers"])
    np.testing.assert_allclose(logits(factorized, windows), logits(student, windows), atol=1e-5)


def test_low_fraction_saves_parameters_and_the_report_adds_up(student):
    factorized, report = factorize(student, 0.25)
    assert report["params_before"] == count_params(student)
    assert report["params_after"] == count_params(factorized) < count_params(student)
    saved = sum(entry["params_before"] - entry["params_after"] for entry in report["layers"])
    assert report["params_before"] - report["params_after"] == saved
    for entry in report["layers"]:
        n_in, n_out = entry["shape"]
        assert entry["params_before"] == n_in * n_out
        assert entry["params_after"] == entry["rank"] * (n_in + n_out) < n_in * n_out
        assert 0.0 < entry["energy"] <= 1.0
    first_lstm = next(layer.name for layer in student.layers if layer.__class__.__name__ == "LSTM")
    lstm = next(entry for entry in report["layers"] if entry["name"] == first_lstm)
    assert lstm["shape"] == [16, 128] and lstm["rank"] == 4 and lstm["kind"] == "lstm_input"
    assert factorized.layers[-1].name == "logits"
    assert factorized.input_shape == student.input_shape


def test_a_kernel_is_left_whole_when_factorising_would_not_save(student):
    # logits is 32 x 3: rank ceil(0.75 * 3) = 3 costs 3 * 35 = 105 > 96 parameters
    _, report = factorize(student, 0.75)
    assert "logits" not in {entry["name"] for entry in report["layers"]}


def test_factorize_leaves_the_original_model_untouched(student, windows):
    before_weights = [w.copy() for w in student.get_weights()]
    before_logits = logits(student, windows)
    before_layers = [layer.name for layer in student.layers]
    factorize(student, 0.25)
    for before, after in zip(before_weights, student.get_weights(), strict=True):
        np.testing.assert_array_equal(before, after)
    np.testing.assert_array_equal(logits(student, windows), before_logits)
    assert [layer.name for layer in student.layers] == before_layers


def test_batch_one_models_are_accepted_and_keep_their_batch_size():
    fixed = build_model(load_preset("edge-student"), WINDOW, CHANNELS, CLASSES, batch_size=1)
    factorized, _ = factorize(fixed, 0.5)
    assert factorized.input_shape == (1, WINDOW, CHANNELS)


def test_factorised_model_converts_with_the_lstm_still_fused(student):
    from edgekd.export.convert import builtin_op_names, convert

    factorized, report = factorize(student, 0.25)
    assert any(entry["kind"] == "lstm_input" for entry in report["layers"])
    ops = builtin_op_names(convert(factorized, "float32"))
    assert "UNIDIRECTIONAL_SEQUENCE_LSTM" in ops
    assert "WHILE" not in ops


def test_choose_fraction(student, windows):
    labels = np.arange(len(windows)) % CLASSES
    fraction, model, tried = choose_fraction(student, windows, labels, budget=-0.01, fractions=(0.5, 0.25))
    assert fraction is None and model is None
    assert [t["fraction"] for t in tried] == [0.25, 0.5]  # smallest first, every one tried

    tuned = []
    fraction, model, tried = choose_fraction(
        student, windows, labels, budget=1.0, fractions=(0.5, 0.25), tune=tuned.append
    )
    assert (
        fraction == 0.25 and len(tried) == 1 and tuned == [model]
    )  # any accuracy is within one full point of the original
    assert tried[0]["params"] < count_params(student) and 0.0 <= tried[0]["val_accuracy"] <= 1.0
