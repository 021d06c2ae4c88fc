"""Response-based KD on logits: alpha * CE(labels, student) + (1 - alpha) * T^2 * KL(teacher_T || student_T).

Everything here takes logits. The seed project applied softmax to outputs that were already softmax,
which flattens the soft targets until KD is label smoothing; a test checks this loss against a hand
computation from logits.

Keras losses see one `y_true` tensor, so targets travel packed: [one-hot labels | teacher soft targets].
With alpha = 1 the loss is plain cross-entropy: the scratch student trains through the same code path.
"""
from __future__ import annotations

import numpy as np

from edgekd._tf import keras, tf


def softmax(logits: np.ndarray, temperature: float = 1.0) -> np.ndarray:
    z = logits / temperature
    z = z - z.max(axis=-1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=-1, keepdims=True)


def ensemble_soft_targets(teacher_logits: list[np.ndarray], temperature: float) -> np.ndarray:
    """Mean of the teachers' temperature-softened distributions, computed once before the student trains."""
    return np.mean([softmax(z, temperature) for z in teacher_logits], axis=0).astype(np.float32)


def pack_targets(labels: np.ndarray, soft_targets: np.ndarray) -> np.ndarray:
    n_classes = soft_targets.shape[1]
    return np.concatenate([np.eye(n_classes, dtype=np.float32)[labels], soft_targets], axis=1)


def kd_loss(n_classes: int, temperature: float, alpha: float):
    t = float(temperature)

    def loss(y_packed, logits):
        hard, soft = y_packed[:, :n_classes], y_packed[:, n_classes:]
        ce = keras.losses.categorical_crossentropy(hard, logits, from_logits=True)
        log_student = tf.nn.log_softmax(logits / t, axis=-1)
        log_teacher = tf.math.log(tf.clip_by_value(soft, 1e-12, 1.0))
        kl = tf.reduce_sum(soft * (log_teacher - log_student), axis=-1)
        return alpha * ce + (1.0 - alpha) * (t * t) * kl

    loss.__name__ = "kd_loss"
    return loss


def packed_accuracy(n_classes: int):
    def accuracy(y_packed, logits):
        return tf.cast(tf.equal(tf.argmax(y_packed[:, :n_classes], -1), tf.argmax(logits, -1)), tf.float32)

    return accuracy
