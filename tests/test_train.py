"""KeepBest: early stopping on validation accuracy, ties broken by validation loss, best weights restored."""
from __future__ import annotations

import numpy as np


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
