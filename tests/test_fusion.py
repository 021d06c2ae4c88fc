"""Teacher fusion modes, the loss-mean and MSE KD terms against NumPy, teacher diversity, and one tiny run."""

from __future__ import annotations

import json

import numpy as np
import pytest
from click.testing import CliRunner

from edgekd.distill.fusion import (
    FUSIONS,
    confidence_weights,
    fuse_confidence,
    fuse_loss_mean,
    fuse_mean,
    fuse_vote,
    fuse_weighted,
    fused_accuracy,
    softmax,
    teacher_accuracies,
    teacher_diversity,
)
from edgekd.errors import UserError

T = 2.0
# Three windows, three classes, two teachers: A is sure of class 0 on window 0, B is sure of class 2 on window 1.
TEACHER_A = np.array([[6.0, 0.0, 0.0], [0.5, 0.0, 0.2], [1.0, 2.0, 0.0]])
TEACHER_B = np.array([[0.2, 0.0, 0.4], [0.0, 0.0, 8.0], [0.0, 3.0, 1.0]])
TEACHERS = [TEACHER_A, TEACHER_B]


@pytest.mark.parametrize("mode", sorted(FUSIONS))
def test_every_mode_gives_distributions_of_the_right_shape(mode):
    targets = FUSIONS[mode](TEACHERS, T, "probabilities", val_accuracy=np.array([0.6, 0.4]))
    expected_shape = (3, 2, 3) if mode in ("loss-mean", "multi-head") else (3, 3)
    assert targets.shape == expected_shape and targets.dtype == np.float32
    np.testing.assert_allclose(targets.sum(axis=-1), 1.0, atol=1e-6)


def test_mean_is_the_plain_average_of_softened_teachers():
    np.testing.assert_allclose(fuse_mean(TEACHERS, T), (softmax(TEACHER_A, T) + softmax(TEACHER_B, T)) / 2, atol=1e-6)
    np.testing.assert_allclose(fuse_mean(TEACHERS, T, "logits"), (TEACHER_A + TEACHER_B) / 2, atol=1e-6)


def test_weighted_uses_validation_accuracy():
    labels = np.array([0, 0, 1, 1])  # A right on 3 of 4 windows, B on 1 of 4
    val_a = np.array([[1.0, 0.0], [1.0, 0.0], [0.0, 1.0], [1.0, 0.0]])
    val_b = np.array([[0.0, 1.0], [0.0, 1.0], [0.0, 1.0], [1.0, 0.0]])
    val_accuracy = teacher_accuracies([val_a, val_b], labels)
    np.testing.assert_allclose(val_accuracy, [0.75, 0.25])
    expected = 0.75 * softmax(TEACHER_A, T) + 0.25 * softmax(TEACHER_B, T)
    np.testing.assert_allclose(fuse_weighted(TEACHERS, T, val_accuracy=val_accuracy), expected, atol=1e-6)
    np.testing.assert_allclose(
        fuse_weighted(TEACHERS, T, "logits", val_accuracy=val_accuracy), 0.75 * TEACHER_A + 0.25 * TEACHER_B, atol=1e-5
    )
    # Unnormalised accuracies are normalised; a perfect teacher beside a useless one is followed alone.
    np.testing.assert_allclose(
        fuse_weighted(TEACHERS, T, val_accuracy=np.array([1.0, 0.0])), softmax(TEACHER_A, T), atol=1e-6
    )


def test_confidence_weights_each_window_by_each_teachers_top_probability():
    top_a, top_b = softmax(TEACHER_A, T).max(axis=1), softmax(TEACHER_B, T).max(axis=1)
    weights = confidence_weights(TEACHERS, T)
    np.testing.assert_allclose(weights, np.stack([top_a, top_b], axis=1) / (top_a + top_b)[:, None], atol=1e-6)
    assert weights[0, 0] > 0.5 > weights[1, 0]  # A leads where it is sure (window 0), B where B is (window 1)
    expected = weights[:, :1] * softmax(TEACHER_A, T) + weights[:, 1:] * softmax(TEACHER_B, T)
    np.testing.assert_allclose(fuse_confidence(TEACHERS, T), expected, atol=1e-6)
    np.testing.assert_allclose(
        fuse_confidence(TEACHERS, T, "logits"), weights[:, :1] * TEACHER_A + weights[:, 1:] * TEACHER_B, atol=1e-5
    )


def test_vote_is_one_hot_majority_with_ties_broken_by_the_mean_distribution():
    third = np.array([[0.0, 5.0, 0.0], [0.0, 0.0, 1.0], [0.0, 4.0, 0.0]])
    # Three teachers: votes per window are (0, 2, 1), (0, 2, 2), (1, 1, 1).
    np.testing.assert_array_equal(fuse_vote([TEACHER_A, TEACHER_B, third], T), np.eye(3)[[0, 2, 1]])
    # Two teachers split on window 0 (class 0 vs 2): the mean distribution favours A's confident class 0.
    # Window 1 splits 0 vs 2 and B's 8.0 makes the mean favour 2; window 2 agrees on 1.
    mean = fuse_mean(TEACHERS, T)
    assert np.argmax(mean[0]) == 0 and np.argmax(mean[1]) == 2
    np.testing.assert_array_equal(fuse_vote(TEACHERS, T), np.eye(3)[[0, 2, 1]])
    with pytest.raises(ValueError, match="no logits"):
        fuse_vote(TEACHERS, T, "logits")


def test_loss_mean_keeps_one_block_per_teacher_and_its_accuracy_uses_their_mean():
    blocks = fuse_loss_mean(TEACHERS, T)
    np.testing.assert_allclose(blocks[:, 0], softmax(TEACHER_A, T), atol=1e-6)
    np.testing.assert_allclose(blocks[:, 1], softmax(TEACHER_B, T), atol=1e-6)
    np.testing.assert_allclose(fuse_loss_mean(TEACHERS, T, "logits")[:, 1], TEACHER_B, atol=1e-6)
    labels = np.array([0, 2, 0])
    assert fused_accuracy(blocks, labels) == fused_accuracy(fuse_mean(TEACHERS, T), labels) == pytest.approx(2 / 3)


def test_diversity_against_a_hand_count():
    one_hot = np.eye(3)
    a, b, c = one_hot[[0, 1, 2, 0]], one_hot[[0, 1, 1, 1]], one_hot[[0, 0, 2, 0]]
    d = teacher_diversity([a, b, c], [1.0, 0.5, 0.75], ensemble_accuracy=1.0)
    assert d["pairwise_disagreement"] == [[0.0, 0.5, 0.25], [0.5, 0.0, 0.75], [0.25, 0.75, 0.0]]
    assert d["mean_disagreement"] == pytest.approx(0.5)
    assert d["ensemble_gain"] == pytest.approx(0.25)
    assert teacher_diversity([a], [1.0], 1.0)["mean_disagreement"] == 0.0


# ------------------------------------------------------------------------------------- losses (TensorFlow)
def _numpy_ce(labels, student):
    log_q = np.log(softmax(student))
    return -log_q[np.arange(len(labels)), labels]


def test_loss_mean_kl_value_and_gradient_against_numpy():
    from edgekd._tf import tf
    from edgekd.distill.losses import kd_loss, pack_targets

    rng = np.random.default_rng(0)
    labels, student = np.array([0, 2, 1, 2]), rng.normal(size=(4, 3)).astype(np.float32) * 3
    teachers = [rng.normal(size=(4, 3)) * 3 for _ in range(3)]
    alpha = 0.3
    blocks = fuse_loss_mean(teachers, T)
    log_q = np.log(softmax(student, T))
    per_teacher_kl = [np.sum(p * (np.log(p) - log_q), axis=1) for p in np.transpose(blocks, (1, 0, 2))]
    expected = alpha * _numpy_ce(labels, student) + (1 - alpha) * T**2 * np.mean(per_teacher_kl, axis=0)
    loss = kd_loss(3, T, alpha)
    np.testing.assert_allclose(loss(pack_targets(labels, blocks), student).numpy(), expected, rtol=1e-4)
    # Its gradient with respect to the student equals the mean mode's; the value is higher by the teachers' spread.
    mean_packed = pack_targets(labels, fuse_mean(teachers, T))
    assert np.all(loss(pack_targets(labels, blocks), student).numpy() > loss(mean_packed, student).numpy())
    np.testing.assert_allclose(
        *[_gradient(tf, loss, packed, student) for packed in (pack_targets(labels, blocks), mean_packed)], atol=1e-5
    )


def _gradient(tf, loss, packed, student):
    logits = tf.Variable(student)
    with tf.GradientTape() as tape:
        value = tf.reduce_sum(loss(packed, logits))
    return tape.gradient(value, logits).numpy()


@pytest.mark.parametrize("mode", ["mean", "loss-mean"])
def test_mse_value_against_numpy(mode):
    from edgekd.distill.losses import kd_loss, pack_targets

    rng = np.random.default_rng(1)
    labels, student = np.array([1, 0, 2]), rng.normal(size=(3, 3)).astype(np.float32) * 2
    teachers = [rng.normal(size=(3, 3)) * 2 for _ in range(2)]
    alpha = 0.4
    mse_per_teacher = [np.mean((z - student) ** 2, axis=1) for z in teachers]
    kd = (
        np.mean(mse_per_teacher, axis=0)
        if mode == "loss-mean"
        else np.mean((np.mean(teachers, axis=0) - student) ** 2, axis=1)
    )
    expected = alpha * _numpy_ce(labels, student) + (1 - alpha) * kd
    packed = pack_targets(labels, FUSIONS[mode](teachers, T, "logits"))
    np.testing.assert_allclose(kd_loss(3, T, alpha, "mse")(packed, student).numpy(), expected, rtol=1e-4)


@pytest.mark.parametrize("kd_term", ["kl", "mse"])
def test_no_loss_applies_softmax_twice(kd_term):
    """A student whose logits equal the teacher's has a zero KD term; its probabilities in their place do not."""
    from edgekd.distill.losses import kd_loss, pack_targets

    logits = np.array([[2.0, -1.0, 0.5], [-3.0, 1.0, 4.0]], np.float32)
    kind = "probabilities" if kd_term == "kl" else "logits"
    packed = pack_targets(np.array([0, 2]), fuse_loss_mean([logits, logits], T, kind))
    loss = kd_loss(3, T, 0.0, kd_term)
    np.testing.assert_allclose(loss(packed, logits).numpy(), 0.0, atol=1e-5)
    probabilities = softmax(logits).astype(np.float32)
    wrong = loss(packed, probabilities).numpy()
    if kd_term == "mse":
        np.testing.assert_allclose(wrong, np.mean((logits - probabilities) ** 2, axis=1), rtol=1e-5)
    else:
        log_q = np.log(softmax(probabilities, T))
        p = softmax(logits, T)
        np.testing.assert_allclose(wrong, T**2 * np.sum(p * (np.log(p) - log_q), axis=1), rtol=1e-4)
    assert np.all(wrong > 0.1)


# --------------------------------------------------------------------------------------------- config and CLI
def test_cli_choices_are_the_fusion_modes():
    from edgekd.cli.distill import distill
    from edgekd.distill.options import LOSSES

    choices = {p.name: p.type.choices for p in distill.params if p.name in ("fusion", "loss")}
    assert list(choices["fusion"]) == list(FUSIONS) and list(choices["loss"]) == list(LOSSES)


def test_vote_with_mse_is_a_user_error(myo5, tmp_path):
    from edgekd.cli import main
    from edgekd.distill.run import DistillConfig

    with pytest.raises(UserError, match="vote"):
        DistillConfig(dataset="x", out="y", fusion="vote", loss="mse").check()
    result = CliRunner().invoke(
        main, ["distill", str(myo5), "--out", str(tmp_path / "r"), "--fusion", "vote", "--loss", "mse"]
    )
    assert result.exit_code == 2 and "--loss mse" in result.output and not (tmp_path / "r").exists()
    result = CliRunner().invoke(main, ["distill", str(myo5), "--out", str(tmp_path / "r"), "--fusion", "median"])
    assert result.exit_code == 2 and "median" in result.output


def test_tiny_distill_with_confidence_fusion_and_mse(myo5, tmp_path):
    from edgekd.cli import main

    out = tmp_path / "run"
    result = CliRunner().invoke(
        main,
        [
            "distill",
            str(myo5),
            "--out",
            str(out),
            *"--test-on 2 --val-on 1 --teachers 2 --epochs 2 --patience 2 --window 0.5 --hop 0.25 --quiet".split(),
            *"--fusion confidence --loss mse".split(),
        ],
    )
    assert result.exit_code == 0, result.output + repr(result.exception)
    report, run = json.loads((out / "report.json").read_text()), json.loads((out / "run.json").read_text())
    assert report["config"]["fusion"] == run["config"]["fusion"] == "confidence"
    assert report["config"]["loss"] == run["config"]["loss"] == "mse"
    acc = report["test_accuracy"]
    assert 0.0 <= acc["ensemble_confidence"] <= 1.0 and 0.0 <= acc["ensemble"] <= 1.0
    diversity = report["diversity"]
    pairwise = np.array(diversity["pairwise_disagreement"])
    assert pairwise.shape == (2, 2) and np.all(np.diag(pairwise) == 0) and np.allclose(pairwise, pairwise.T)
    assert diversity["mean_disagreement"] == pytest.approx(pairwise[0, 1])
    assert diversity["ensemble_gain"] == pytest.approx(acc["ensemble"] - np.mean(acc["teachers"]))
