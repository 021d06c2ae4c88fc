"""The KD loss against a hand computation, on logits, with no second softmax."""

from __future__ import annotations

import math

import numpy as np
import pytest

from edgekd.distill.losses import ensemble_soft_targets, kd_loss, pack_targets, softmax


def _hand_kd(labels, student_logits, teacher_probs_t, temperature, alpha):
    """alpha * CE + (1 - alpha) * T^2 * KL(teacher_T || student_T), written out with math.* per element."""
    losses = []
    for y, z, p in zip(labels, student_logits, teacher_probs_t):
        log_norm = math.log(sum(math.exp(v) for v in z))
        ce = -(z[y] - log_norm)
        zt = [v / temperature for v in z]
        log_norm_t = math.log(sum(math.exp(v) for v in zt))
        kl = sum(pk * (math.log(pk) - (zk - log_norm_t)) for pk, zk in zip(p, zt))
        losses.append(alpha * ce + (1 - alpha) * temperature**2 * kl)
    return np.array(losses)


@pytest.mark.parametrize("temperature,alpha", [(4.0, 0.3), (1.0, 0.5), (2.5, 0.0), (4.0, 1.0)])
def test_kd_loss_matches_hand_computation(temperature, alpha):
    rng = np.random.default_rng(0)
    labels = np.array([0, 2, 1, 2])
    student = rng.normal(size=(4, 3)).astype(np.float32) * 3
    teachers = [rng.normal(size=(4, 3)).astype(np.float32) * 3 for _ in range(3)]
    soft = ensemble_soft_targets(teachers, temperature)
    got = kd_loss(3, temperature, alpha)(pack_targets(labels, soft), student).numpy()
    np.testing.assert_allclose(got, _hand_kd(labels, student.tolist(), soft.tolist(), temperature, alpha), rtol=1e-4)


def test_loss_is_zero_kl_when_student_matches_the_teacher():
    logits = np.array([[2.0, -1.0, 0.5]], np.float32)
    soft = softmax(logits, 4.0)
    assert abs(float(kd_loss(3, 4.0, 0.0)(pack_targets(np.array([0]), soft), logits).numpy()[0])) < 1e-5


def test_no_double_softmax_student_logits_are_not_probabilities():
    """Feeding probabilities where logits belong (the seed's bug) must change the loss: the loss softmaxes once."""
    rng = np.random.default_rng(1)
    logits = rng.normal(size=(5, 4)).astype(np.float32) * 4
    soft = softmax(rng.normal(size=(5, 4)) * 4, 4.0).astype(np.float32)
    packed = pack_targets(np.arange(5) % 4, soft)
    loss = kd_loss(4, 4.0, 0.3)
    on_logits, on_probs = loss(packed, logits).numpy(), loss(packed, softmax(logits).astype(np.float32)).numpy()
    assert not np.allclose(on_logits, on_probs, rtol=1e-2)
    # Softmax of probabilities at T=4 is nearly uniform: the seed's soft targets carried almost no information.
    assert softmax(softmax(logits), 4.0).std(axis=1).max() < 0.03 < 0.1 < softmax(logits, 4.0).std(axis=1).max()


def test_ensemble_soft_targets_are_the_mean_of_softened_teachers():
    a, b = np.array([[4.0, 0.0]]), np.array([[0.0, 4.0]])
    np.testing.assert_allclose(ensemble_soft_targets([a, b], 2.0), [[0.5, 0.5]], atol=1e-6)
    np.testing.assert_allclose(ensemble_soft_targets([a], 1.0).sum(), 1.0, atol=1e-6)
