"""How several teachers become one distillation target: one function per `--fusion` mode, in FUSIONS.

Every mode takes the teachers' logits (a list of n x C arrays, one per teacher) and returns the targets
the KD term compares the student with, computed once before the student trains:

    kind="probabilities"  temperature-softened distributions, for the KL term (`--loss kl`)
    kind="logits"         raw logits, for the logit-matching MSE term (`--loss mse`)

The result is n x C, except for `loss-mean` and `multi-head`, which keep one block per teacher (n x k x C) so
that the loss can average the per-teacher terms itself, or give each block to its own student head. NumPy only:
`DistillConfig.check` imports this module before TensorFlow loads.
"""

from __future__ import annotations

import numpy as np

from edgekd.runtime.interpreter import softmax

KINDS = ("probabilities", "logits")


def teacher_accuracies(teacher_logits: list[np.ndarray], labels: np.ndarray) -> np.ndarray:
    """Each teacher's accuracy on the given windows (the validation windows, for `weighted`)."""
    return np.array([np.mean(np.argmax(z, axis=-1) == labels) for z in teacher_logits], dtype=np.float64)


def accuracy_weights(val_accuracy: np.ndarray) -> np.ndarray:
    """Teacher weights proportional to validation accuracy, summing to 1; uniform if every teacher scored 0."""
    acc = np.asarray(val_accuracy, dtype=np.float64)
    return acc / acc.sum() if acc.sum() > 0 else np.full(len(acc), 1.0 / len(acc))


def confidence_weights(teacher_logits: list[np.ndarray], temperature: float) -> np.ndarray:
    """n x k: per window, each teacher's top softened probability, normalised over the teachers."""
    confidence = np.stack([softmax(z, temperature).max(axis=-1) for z in teacher_logits], axis=1)
    return confidence / confidence.sum(axis=1, keepdims=True)


def _per_teacher(teacher_logits: list[np.ndarray], temperature: float, kind: str) -> np.ndarray:
    """k x n x C: what each teacher contributes, softened probabilities or raw logits."""
    if kind not in KINDS:
        raise ValueError(f"kind must be one of {KINDS}, not {kind!r}")
    return np.stack([softmax(z, temperature) if kind == "probabilities" else z for z in teacher_logits])


def _weighted_average(teacher_logits, temperature, kind, window_weights: np.ndarray) -> np.ndarray:
    """Sum over teachers of window_weights[n, k] * contribution[k, n, :]."""
    return np.einsum("nk,knc->nc", window_weights, _per_teacher(teacher_logits, temperature, kind)).astype(np.float32)


def fuse_mean(teacher_logits, temperature, kind="probabilities", val_accuracy=None) -> np.ndarray:
    """Every teacher counts the same: the mean distribution (KL) or the mean logits (MSE)."""
    n, k = len(teacher_logits[0]), len(teacher_logits)
    return _weighted_average(teacher_logits, temperature, kind, np.full((n, k), 1.0 / k))


def fuse_weighted(teacher_logits, temperature, kind="probabilities", val_accuracy=None) -> np.ndarray:
    """Teachers weighted by their validation accuracy: a teacher that generalises worse counts less."""
    if val_accuracy is None:
        raise ValueError("the weighted fusion needs each teacher's validation accuracy")
    weights = accuracy_weights(val_accuracy)
    return _weighted_average(teacher_logits, temperature, kind, np.tile(weights, (len(teacher_logits[0]), 1)))


def fuse_confidence(teacher_logits, temperature, kind="probabilities", val_accuracy=None) -> np.ndarray:
    """Per window, teachers weighted by how sure each is there (its top softened probability)."""
    return _weighted_average(teacher_logits, temperature, kind, confidence_weights(teacher_logits, temperature))


def fuse_vote(teacher_logits, temperature, kind="probabilities", val_accuracy=None) -> np.ndarray:
    """One-hot of the teachers' majority argmax; among tied classes, the one the mean distribution favours.

    Only for KL: a vote has no logits for MSE to match (DistillConfig.check rejects --loss mse with it)."""
    if kind != "probabilities":
        raise ValueError("the vote fusion gives one-hot targets: it has no logits for --loss mse to match")
    n_classes = teacher_logits[0].shape[1]
    votes = sum(np.eye(n_classes)[np.argmax(z, axis=-1)] for z in teacher_logits)  # n x C vote counts
    mean = fuse_mean(teacher_logits, temperature)
    # Masking non-winning classes to -1 keeps the argmax among the tied winners, ordered by the mean.
    winners = np.argmax(np.where(votes == votes.max(axis=1, keepdims=True), mean, -1.0), axis=1)
    return np.eye(n_classes, dtype=np.float32)[winners]


def fuse_loss_mean(teacher_logits, temperature, kind="probabilities", val_accuracy=None) -> np.ndarray:
    """n x k x C: every teacher's own target, so the loss is the mean of the per-teacher KD terms.

    The per-teacher blocks differ from `mean` in the loss value, not in where training goes:
    mean_i KL(p_i || q) = mean_i sum p_i log p_i - (mean_i p_i) . log q, and
    mean_i |z_i - s|^2 = |mean_i z_i - s|^2 + (the teachers' spread), so for both --loss kl and --loss mse
    the gradient with respect to the student equals that of `mean`; the value is higher by a term that
    does not depend on the student (the teachers' mean entropy, or their logit variance)."""
    return np.transpose(_per_teacher(teacher_logits, temperature, kind), (1, 0, 2)).astype(np.float32)


def fuse_multi_head(teacher_logits, temperature, kind="probabilities", val_accuracy=None) -> np.ndarray:
    """n x k x C, as loss-mean: block i is the target of the student's head i (distill/student.py), which folds
    the heads into one after training. Compression fine-tuning of the folded student averages the blocks' terms."""
    return fuse_loss_mean(teacher_logits, temperature, kind)


# The modes whose target is a fixed weighted average of the teachers' outputs: the ones the training step
# (distill/consistent.py) can compute on windows changed in that step, which no one saw before.
AVERAGING = ("mean", "weighted")

FUSIONS = {
    "mean": fuse_mean,
    "weighted": fuse_weighted,
    "confidence": fuse_confidence,
    "vote": fuse_vote,
    "loss-mean": fuse_loss_mean,
    "multi-head": fuse_multi_head,
}


def distillation_targets(
    teacher_logits: dict[str, list[np.ndarray]], val_labels: np.ndarray, fusion: str, loss: str, temperature: float
) -> dict[str, np.ndarray]:
    """The student's KD targets for each part ("train", "val", ...): distill and compression fine-tuning share them.

    KL compares distributions, MSE compares logits: the fusion rule is the same, applied to what the loss sees.
    `--loss hint`'s response term is KL."""
    kind = "logits" if loss == "mse" else "probabilities"
    val_accuracy = teacher_accuracies(teacher_logits["val"], val_labels)
    return {
        part: FUSIONS[fusion](logits, temperature, kind, val_accuracy=val_accuracy)
        for part, logits in teacher_logits.items()
    }


def fused_accuracy(targets: np.ndarray, labels: np.ndarray) -> float:
    """Accuracy of the fused targets' argmax; loss-mean's blocks count through their mean, what the KD term pulls to."""
    decided = targets.mean(axis=1) if targets.ndim == 3 else targets
    return float(np.mean(np.argmax(decided, axis=-1) == labels))


def teacher_diversity(
    teacher_test_logits: list[np.ndarray], teacher_accuracy: list[float], ensemble_accuracy: float
) -> dict:
    """How often teachers disagree on the test windows, and what the ensemble gains over a typical teacher.

    An ensemble of teachers that always agree is one teacher at k times the cost: the disagreement says
    whether bootstrap resampling and separate seeds bought any diversity."""
    decisions = [np.argmax(z, axis=-1) for z in teacher_test_logits]
    k = len(decisions)
    pairwise = [[float(np.mean(decisions[i] != decisions[j])) for j in range(k)] for i in range(k)]
    pairs = [pairwise[i][j] for i in range(k) for j in range(i + 1, k)]
    return {
        "pairwise_disagreement": pairwise,
        "mean_disagreement": float(np.mean(pairs)) if pairs else 0.0,  # one teacher: nothing to disagree with
        "ensemble_gain": float(ensemble_accuracy - np.mean(teacher_accuracy)),
    }
