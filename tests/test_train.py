"""KeepBest: early stopping on validation accuracy, ties broken by validation loss, best weights restored."""

from __future__ import annotations

import re

import numpy as np
import pytest


def _run(callback, history):
    from edgekd._tf import keras

    model = keras.Sequential([keras.Input((2,)), keras.layers.Dense(1)])
    callback.set_model(model)
    callback.on_train_begin()
    for epoch, (accuracy, loss) in enumerate(history):
        model.set_weights([np.full((2, 1), epoch, np.float32), np.zeros(1, np.float32)])  # weights say which epoch
        callback.on_epoch_end(epoch, {"val_accuracy": accuracy, "val_loss": loss})
        if model.stop_training:
            break
    callback.on_train_end()
    return model, epoch


def test_saturated_accuracy_keeps_the_epoch_with_the_lowest_validation_loss():
    from edgekd.distill.train import KeepBest

    keep = KeepBest(patience=10)
    model, _ = _run(keep, [(0.5, 1.0), (1.0, 0.6), (1.0, 0.2), (1.0, 0.4)])
    assert keep.best_epoch == 2 and model.get_weights()[0][0, 0] == 2


def test_higher_accuracy_wins_over_lower_loss_and_patience_stops():
    from edgekd.distill.train import KeepBest

    keep = KeepBest(patience=2)
    model, last = _run(keep, [(0.9, 0.9), (0.8, 0.1), (0.8, 0.1), (0.99, 5.0)])
    assert keep.best_epoch == 0 and last == 2 and model.get_weights()[0][0, 0] == 0


def test_epochs_before_start_are_not_candidates():
    from edgekd.distill.train import KeepBest

    keep = KeepBest(patience=5, start_from_epoch=2)
    model, _ = _run(keep, [(1.0, 0.0), (1.0, 0.0), (0.5, 1.0), (0.6, 1.0)])
    assert keep.best_epoch == 3 and model.get_weights()[0][0, 0] == 3


def _fit_tiny(schedule: str, epochs: int):
    from edgekd._tf import keras
    from edgekd.distill.losses import pack_targets
    from edgekd.distill.train import fit

    rng = np.random.default_rng(0)
    x, y = rng.normal(size=(40, 6)).astype(np.float32), np.arange(40) % 2
    model = keras.Sequential([keras.Input((6,)), keras.layers.Dense(2, name="logits")])
    packed = pack_targets(y, np.eye(2, dtype=np.float32)[y])
    fit(
        model,
        x,
        packed,
        x,
        packed,
        n_classes=2,
        temperature=1.0,
        alpha=1.0,
        epochs=epochs,
        batch_size=10,
        patience=epochs,
        learning_rate=0.01,
        seed=0,
        verbose=0,
        schedule=schedule,
    )
    return model.optimizer


def test_cosine_schedule_decays_the_rate_to_zero_at_the_last_step():
    from edgekd.distill.train import learning_rate_schedule

    optimizer = _fit_tiny("cosine", epochs=3)
    assert int(optimizer.iterations.numpy()) == 3 * 4  # 40 windows in batches of 10
    last_step = (
        0.5 * 0.01 * (1 + np.cos(np.pi * 11 / 12))
    )  # the rate of step 11 of 0..11: 0.00017, near the end of the decay
    assert np.isclose(float(optimizer.learning_rate.numpy()), last_step, rtol=1e-4)
    rate = learning_rate_schedule("cosine", 0.01, epochs=3, steps_per_epoch=4)
    assert np.isclose(float(rate(0)), 0.01) and np.isclose(float(rate(6)), 0.005, atol=1e-6)  # half way: half the rate


def test_constant_schedule_keeps_the_rate():
    optimizer = _fit_tiny("constant", epochs=2)
    assert np.isclose(float(optimizer.learning_rate.numpy()), 0.01)


def test_auto_batch_keeps_64_steps_per_epoch_between_32_and_256():
    from edgekd.distill.stages import auto_batch_size

    assert auto_batch_size(258) == 32  # myo5: a few hundred windows keep the batch they validated with
    assert auto_batch_size(6_700) == 104  # isl50 at the spine's settings
    assert auto_batch_size(18_000) == 256  # a myo22 fold
    assert auto_batch_size(10**6) == 256


@pytest.mark.parametrize("value, message", [("0", "--batch-size"), ("big", "--batch-size")])
def test_a_bad_batch_size_is_a_usage_error(myo5, tmp_path, value, message):
    from click.testing import CliRunner

    from edgekd.cli import main

    result = CliRunner().invoke(main, ["distill", str(myo5), "--out", str(tmp_path / "r"), "--batch-size", value])
    assert result.exit_code == 2 and message in result.output


def test_a_run_records_its_batch_and_the_device_that_trained(tiny_run):
    import json

    run = json.loads((tiny_run / "run.json").read_text())
    report = json.loads((tiny_run / "report.json").read_text())
    assert run["training"]["batch_size"] == report["config"]["batch_size"] >= 1
    assert run["training"]["device"] == report["config"]["device"]
    assert re.fullmatch(r"CPU \(\d+ threads\)|GPU( \(.+\))?", report["config"]["device"])
