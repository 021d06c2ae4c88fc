"""Fit one model with early stopping on validation accuracy (ties broken by validation loss), timing each epoch."""

from __future__ import annotations

import math
import time
from dataclasses import dataclass

import numpy as np

from edgekd._tf import keras
from edgekd.distill.losses import kd_loss, packed_accuracy


@dataclass
class FitResult:
    epochs_run: int
    best_epoch: int
    best_val_accuracy: float
    epoch_seconds: list[float]


class _EpochTimer(keras.callbacks.Callback):
    def on_train_begin(self, logs=None):
        self.seconds = []

    def on_epoch_begin(self, epoch, logs=None):
        self._start = time.perf_counter()

    def on_epoch_end(self, epoch, logs=None):
        self.seconds.append(time.perf_counter() - self._start)


class KeepBest(keras.callbacks.Callback):
    """Stop after `patience` epochs without a better validation epoch, and restore the best one at the end.

    Better means higher validation accuracy, and at equal accuracy lower validation loss. On small validation
    sets accuracy saturates (every myo5 student reaches 100% within a few epochs); Keras' EarlyStopping then
    keeps the first such epoch, which can be an undertrained model. Epochs before
    `start_from_epoch` are not candidates."""

    def __init__(self, patience: int, start_from_epoch: int = 0):
        super().__init__()
        self.patience, self.start_from_epoch = patience, start_from_epoch

    def on_train_begin(self, logs=None):
        self.best, self.best_epoch, self.best_weights, self.wait = None, None, None, 0

    def on_epoch_end(self, epoch, logs=None):
        if epoch < self.start_from_epoch:
            return
        key = (float(logs["val_accuracy"]), -float(logs["val_loss"]))
        if self.best is None or key > self.best:
            self.best, self.best_epoch, self.best_weights, self.wait = key, epoch, self.model.get_weights(), 0
        else:
            self.wait += 1
            if self.wait >= self.patience:
                self.model.stop_training = True

    def on_train_end(self, logs=None):
        if self.best_weights is not None:
            self.model.set_weights(self.best_weights)


def fit(
    model,
    x_train,
    y_train_packed,
    x_val,
    y_val_packed,
    *,
    n_classes: int,
    temperature: float,
    alpha: float,
    epochs: int,
    batch_size: int,
    patience: int,
    learning_rate: float,
    seed: int,
    verbose: int,
    kd_term: str = "kl",
    callbacks=(),
    early_stopping: bool = True,
    objective=None,
    schedule: str = "constant",
    label: str = "model",
) -> FitResult:
    """`early_stopping=False` runs every epoch and keeps the last weights (snapshot teachers need each cycle).
    `objective` (distill/student.py): the heads and hints a training model's output carries; None, plain logits.
    `schedule`: "constant" learning rate, or "cosine" decay from `learning_rate` to 0 over all `epochs`.
    `verbose`: a live progress line named `label` and a summary line (distill/progress.py); 0, silence."""
    from edgekd.distill.progress import EpochProgress

    heads, hint_dims, hint_weight = (
        (objective.heads, objective.hint_dims, objective.hint_weight) if objective else (1, (), 1.0)
    )
    model.compile(
        optimizer=keras.optimizers.Adam(
            learning_rate_schedule(schedule, learning_rate, epochs, math.ceil(len(x_train) / batch_size))
        ),
        loss=kd_loss(n_classes, temperature, alpha, kd_term, heads=heads, hint_dims=hint_dims, hint_weight=hint_weight),
        metrics=[packed_accuracy(n_classes, heads)],
    )
    timer = _EpochTimer()
    # Validation accuracy sits near chance for the first epochs on many-class data; stopping there kept a
    # KD student from its first epoch on isl50. Early stopping may act only after a few epochs.
    stopper = KeepBest(patience, start_from_epoch=min(10, epochs // 3)) if early_stopping else None
    progress = EpochProgress(label, epochs) if verbose else None
    keras.utils.set_random_seed(seed)
    history = model.fit(
        x_train,
        y_train_packed,
        validation_data=(x_val, y_val_packed),
        epochs=epochs,
        batch_size=batch_size,
        shuffle=True,
        callbacks=[timer, *([stopper] if stopper else []), *([progress] if progress else []), *callbacks],
        verbose=0,
    )
    val_acc = history.history["val_accuracy"]
    best = stopper.best_epoch if stopper else len(val_acc) - 1  # the epoch whose weights the model keeps
    result = FitResult(len(val_acc), best + 1, float(val_acc[best]), timer.seconds)
    if progress:
        progress.summary(result.epochs_run, result.best_epoch, result.best_val_accuracy)
    return result


def learning_rate_schedule(schedule: str, learning_rate: float, epochs: int, steps_per_epoch: int):
    """Adam's learning rate: constant, or cosine decay to 0 at the last step of the last epoch (Loshchilov and
    Hutter 2017). A decayed rate lets the final epochs settle into a minimum instead of hopping around it."""
    if schedule == "constant":
        return learning_rate
    if schedule == "cosine":
        return keras.optimizers.schedules.CosineDecay(learning_rate, decay_steps=max(1, epochs * steps_per_epoch))
    raise ValueError(f"unknown learning-rate schedule {schedule!r}; constant or cosine")


def predict_logits(model, x: np.ndarray, batch_size: int = 256) -> np.ndarray:
    # Direct calls rather than model.predict: predict retraces for every new model and warns about it.
    batches = [model(x[i : i + batch_size], training=False).numpy() for i in range(0, len(x), batch_size)]
    return np.concatenate(batches).astype(np.float32) if batches else np.empty((0, model.output_shape[-1]), np.float32)


def accuracy(logits: np.ndarray, labels: np.ndarray) -> float:
    return float(np.mean(np.argmax(logits, axis=-1) == labels))
