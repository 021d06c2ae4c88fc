"""Response-based KD on logits: alpha * CE(labels, student) + (1 - alpha) * KD term, with the KD term either

    kl:   T^2 * KL(teacher_T || student_T)        targets are temperature-softened teacher distributions
    mse:  mean over classes of (teacher logits - student logits)^2    targets are teacher logits (no T)

Everything here takes logits. The seed project applied softmax to outputs that were already softmax,
which flattens the soft targets until KD is label smoothing; tests check these losses against hand
computations from logits.

Keras losses see one `y_true` tensor, so targets travel packed: [one-hot labels | block_1 | ... | block_k],
each block C wide. The fused fusion modes send one block; `--fusion loss-mean` sends one per teacher, and
the KD term is the mean over the blocks (the same formula with k = 1 for the others).
With alpha = 1 the loss is plain cross-entropy: the scratch student trains through the same code path.
"""
from __future__ import annotations

import numpy as np

from edgekd._tf import keras, tf
from edgekd.distill.fusion import fuse_mean, softmax  # noqa: F401  (softmax: re-exported, callers import it from here)

KD_TERMS = ("kl", "mse")


def ensemble_soft_targets(teacher_logits: list[np.ndarray], temperature: float) -> np.ndarray:
    """Mean of the teachers' temperature-softened distributions, computed once before the student trains."""
    return fuse_mean(teacher_logits, temperature)


def pack_targets(labels: np.ndarray, targets: np.ndarray) -> np.ndarray:
    """[one-hot | targets]; n x k x C targets (one block per teacher) are laid side by side as n x kC."""
    n_classes = targets.shape[-1]
    flat = targets.reshape(len(targets), -1).astype(np.float32)
    return np.concatenate([np.eye(n_classes, dtype=np.float32)[labels], flat], axis=1)


def _kl_per_teacher(targets, logits, t: float):
    """batch x k: T^2 * KL(p_i || softmax(logits / T)) for each packed block p_i (probabilities)."""
    log_student = tf.nn.log_softmax(logits / t, axis=-1)[:, None, :]
    log_teacher = tf.math.log(tf.clip_by_value(targets, 1e-12, 1.0))
    return (t * t) * tf.reduce_sum(targets * (log_teacher - log_student), axis=-1)


def _mse_per_teacher(targets, logits, t: float):
    """batch x k: mean over classes of (z_i - logits)^2 for each packed block z_i (teacher logits)."""
    return tf.reduce_mean(tf.square(targets - logits[:, None, :]), axis=-1)


def kd_loss(n_classes: int, temperature: float, alpha: float, kd_term: str = "kl"):
    if kd_term not in KD_TERMS:
        raise ValueError(f"kd_term must be one of {KD_TERMS}, not {kd_term!r}")
    per_teacher = _kl_per_teacher if kd_term == "kl" else _mse_per_teacher
    t = float(temperature)

    def loss(y_packed, logits):
        y_packed = tf.convert_to_tensor(y_packed, tf.float32)
        hard = y_packed[:, :n_classes]
        blocks = tf.reshape(y_packed[:, n_classes:], [tf.shape(y_packed)[0], -1, n_classes])  # batch x k x C
        ce = keras.losses.categorical_crossentropy(hard, logits, from_logits=True)
        return alpha * ce + (1.0 - alpha) * tf.reduce_mean(per_teacher(blocks, logits, t), axis=1)

    loss.__name__ = "kd_loss"
    return loss


def packed_accuracy(n_classes: int):
    def accuracy(y_packed, logits):
        return tf.cast(tf.equal(tf.argmax(y_packed[:, :n_classes], -1), tf.argmax(logits, -1)), tf.float32)

    return accuracy
