"""Response-based KD on logits: alpha * CE(labels, student) + (1 - alpha) * KD term, with the KD term either

    kl:   T^2 * KL(teacher_T || student_T)        targets are temperature-softened teacher distributions
    mse:  mean over classes of (teacher logits - student logits)^2    targets are teacher logits (no T)

Everything here takes logits. The design edgekd started from applied softmax to outputs that were already softmax,
which flattens the soft targets until KD is label smoothing; tests check these losses against hand
computations from logits.

Keras losses see one `y_true` tensor, so targets travel packed: [one-hot labels | block_1 | ... | block_k],
each block C wide. The fused fusion modes send one block; `--fusion loss-mean` sends one per teacher, and
the KD term is the mean over the blocks (the same formula with k = 1 for the others).
With alpha = 1 the loss is plain cross-entropy: the scratch student trains through the same code path.

Two objectives train the student through a wider training model (distill/student.py) whose output carries
more than the logits:

    --fusion multi-head   the output is k heads' logits side by side (batch x kC); head i is compared with
                          teacher i's block, and the cross-entropy and the accuracy use the mean of the heads
    --loss hint           the output is [logits | projected penultimate features]; the targets end with the
                          teachers' penultimate features, and the hint term is the mean over teachers of
                          1 - cos(projection_i, features_i), added to the response (KL) term with `hint_weight`
"""

from __future__ import annotations

import numpy as np

from edgekd._tf import keras, tf
from edgekd.distill.fusion import fuse_mean, softmax  # noqa: F401  (softmax: re-exported, callers import it from here)

KD_TERMS = ("kl", "mse")


def ensemble_soft_targets(teacher_logits: list[np.ndarray], temperature: float) -> np.ndarray:
    """Mean of the teachers' temperature-softened distributions, computed once before the student trains."""
    return fuse_mean(teacher_logits, temperature)


def pack_targets(labels: np.ndarray, targets: np.ndarray, features: np.ndarray | None = None) -> np.ndarray:
    """[one-hot | targets | features]; n x k x C targets (one block per teacher) are laid side by side as n x kC,
    and `features` (--loss hint: the teachers' penultimate features, n x D) go last."""
    n_classes = targets.shape[-1]
    flat = targets.reshape(len(targets), -1).astype(np.float32)
    parts = [np.eye(n_classes, dtype=np.float32)[labels], flat]
    if features is not None:
        parts.append(features.astype(np.float32))
    return np.concatenate(parts, axis=1)


def _kl_per_teacher(targets, logits, t: float):
    """batch x k: T^2 * KL(p_i || softmax(logits_i / T)) for each packed block p_i (probabilities); logits is
    batch x 1 x C (one student output for every block) or batch x k x C (one head per block)."""
    log_student = tf.nn.log_softmax(logits / t, axis=-1)
    log_teacher = tf.math.log(tf.clip_by_value(targets, 1e-12, 1.0))
    return (t * t) * tf.reduce_sum(targets * (log_teacher - log_student), axis=-1)


def _mse_per_teacher(targets, logits, t: float):
    """batch x k: mean over classes of (z_i - logits_i)^2 for each packed block z_i (teacher logits)."""
    return tf.reduce_mean(tf.square(targets - logits), axis=-1)


def _one_minus_cosine(projections, features, dims: tuple[int, ...]):
    """batch: the mean over teachers of 1 - cos(projection_i, features_i), the blocks `dims` wide."""
    terms = []
    for p, f in zip(tf.split(projections, list(dims), axis=1), tf.split(features, list(dims), axis=1)):
        terms.append(1.0 - tf.reduce_sum(tf.math.l2_normalize(p, axis=1) * tf.math.l2_normalize(f, axis=1), axis=1))
    return tf.reduce_mean(tf.stack(terms, axis=1), axis=1)


def head_logits(y_pred, n_classes: int, heads: int = 1):
    """batch x heads x C: the student's logits, one row per head, from the training model's output."""
    return tf.reshape(y_pred[:, : heads * n_classes], [-1, heads, n_classes])


def kd_loss(
    n_classes: int,
    temperature: float,
    alpha: float,
    kd_term: str = "kl",
    heads: int = 1,
    hint_dims: tuple[int, ...] = (),
    hint_weight: float = 1.0,
):
    """`heads` > 1: the output is that many heads and the targets hold one block per head (--fusion multi-head).
    `hint_dims`: the output and the targets end with projected and teacher features this wide per teacher."""
    if kd_term not in KD_TERMS:
        raise ValueError(f"kd_term must be one of {KD_TERMS}, not {kd_term!r}")
    per_teacher = _kl_per_teacher if kd_term == "kl" else _mse_per_teacher
    t, hint_width = float(temperature), int(sum(hint_dims))

    def loss(y_packed, y_pred):
        y_packed = tf.convert_to_tensor(y_packed, tf.float32)
        hard = y_packed[:, :n_classes]
        width = tf.shape(y_packed)[1] - hint_width
        blocks = tf.reshape(y_packed[:, n_classes:width], [tf.shape(y_packed)[0], -1, n_classes])  # batch x k x C
        heads_out = head_logits(y_pred, n_classes, heads)
        ce = keras.losses.categorical_crossentropy(hard, tf.reduce_mean(heads_out, axis=1), from_logits=True)
        kd = tf.reduce_mean(per_teacher(blocks, heads_out, t), axis=1)
        if hint_width:
            kd += hint_weight * _one_minus_cosine(y_pred[:, heads * n_classes :], y_packed[:, width:], hint_dims)
        return alpha * ce + (1.0 - alpha) * kd

    loss.__name__ = "kd_loss"
    return loss


def packed_accuracy(n_classes: int, heads: int = 1):
    def accuracy(y_packed, y_pred):
        decided = tf.argmax(tf.reduce_mean(head_logits(y_pred, n_classes, heads), axis=1), -1)
        return tf.cast(tf.equal(tf.argmax(y_packed[:, :n_classes], -1), decided), tf.float32)

    return accuracy
