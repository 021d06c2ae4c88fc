"""Multi-student distillation with a selector (`edgekd distill --students A,B[,C] --selector`).

Several student architectures distil from the same targets; then a small network (models/selector.toml) learns,
per window, which students get it right: one sigmoid output per student, trained with binary cross-entropy on
the students' correctness on the training windows, early-stopped on the validation windows. The system routes
each window to the student with the highest predicted chance of being right. The oracle (each window to a
student that is right on it, when one is) bounds what any selector could reach.

The exported system is one model (`system_model`): the selector and every student side by side, and a gather
of the chosen student's logits. A TFLite graph has no conditional execution here, so a window costs the
selector plus every student: the selector buys accuracy, not time, and `edgekd bench` measures that cost.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from edgekd._tf import keras, tf


@dataclass
class SelectorResult:
    model: keras.Model
    epochs_run: int
    best_val_loss: float


def correctness(student_logits: list[np.ndarray], labels: np.ndarray) -> np.ndarray:
    """n x k float: 1 where student j's argmax is the label."""
    return np.stack([np.argmax(z, axis=-1) == labels for z in student_logits], axis=1).astype(np.float32)


def train_selector(
    preset,
    train_x,
    train_correct,
    val_x,
    val_correct,
    *,
    epochs: int,
    patience: int,
    batch_size: int,
    learning_rate: float,
    seed: int,
    verbose: int,
) -> SelectorResult:
    from edgekd.models.build import build_model

    _, window_len, channels = train_x.shape
    selector = build_model(preset, window_len, channels, train_correct.shape[1], seed=seed, name="selector")
    selector.compile(
        optimizer=keras.optimizers.Adam(learning_rate), loss=keras.losses.BinaryCrossentropy(from_logits=True)
    )
    stopper = keras.callbacks.EarlyStopping(monitor="val_loss", patience=patience, restore_best_weights=True)
    keras.utils.set_random_seed(seed)
    history = selector.fit(
        train_x,
        train_correct,
        validation_data=(val_x, val_correct),
        epochs=epochs,
        batch_size=batch_size,
        shuffle=True,
        callbacks=[stopper],
        verbose=0,
    )
    val_loss = history.history["val_loss"]
    if verbose:
        print(f"selector: {len(val_loss)} epochs, best validation loss {min(val_loss):.4f}", flush=True)
    return SelectorResult(selector, len(val_loss), float(min(val_loss)))


def route(selector_logits: np.ndarray) -> np.ndarray:
    """The student each window goes to: the highest predicted chance of being right (ties: the first listed)."""
    return np.argmax(selector_logits, axis=-1)


def system_logits(student_logits: list[np.ndarray], choice: np.ndarray) -> np.ndarray:
    return np.stack(student_logits, axis=1)[np.arange(len(choice)), choice]


def oracle_accuracy(student_logits: list[np.ndarray], labels: np.ndarray) -> float:
    return float(np.mean(correctness(student_logits, labels).max(axis=1)))


def system_report(
    student_logits: list[np.ndarray],
    selector_logits: np.ndarray,
    labels: np.ndarray,
    names: list[str],
    params: list[int],
    selector_params: int,
) -> dict:
    """Accuracy of each student, the selector system and the oracle; where the selector sends windows; cost."""
    choice = route(selector_logits)
    shares = np.bincount(choice, minlength=len(names)) / max(len(choice), 1)
    return {
        "students": {name: float(np.mean(np.argmax(z, -1) == labels)) for name, z in zip(names, student_logits)},
        "system": float(np.mean(np.argmax(system_logits(student_logits, choice), -1) == labels)),
        "oracle": oracle_accuracy(student_logits, labels),
        "routing": {name: float(s) for name, s in zip(names, shares)},
        "params": {
            "selector": selector_params,
            "students": dict(zip(names, params)),
            "system": selector_params + int(sum(params)),
        },
    }


class _Route(keras.layers.Layer):
    """[selector logits (batch x k), stacked student logits (batch x k x C)] -> the chosen student's logits."""

    def call(self, inputs):
        scores, stacked = inputs
        return tf.gather(stacked, tf.argmax(scores, axis=-1, output_type=tf.int32), axis=1, batch_dims=1)


def system_model(students: list[keras.Model], selector: keras.Model) -> keras.Model:
    """One model, window -> the logits of the student the selector picks (built at export; not saved as .h5)."""
    window = keras.Input(shape=students[0].input_shape[1:], name="window")
    stacked = keras.layers.Concatenate(axis=1)([keras.layers.Reshape((1, -1))(s(window)) for s in students])
    return keras.Model(window, _Route(name="route")([selector(window), stacked]), name="selector_system")
