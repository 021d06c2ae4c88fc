"""--classical-teacher lda: the LDA on time-domain features as one more teacher of the KD targets."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pytest
from scipy.special import softmax

from edgekd.models.classical import (
    evaluate,
    fit_baselines,
    lda_teacher_logits,
    time_domain_features,
    with_classical_teacher,
)
from tests.test_bad_input import assert_user_error, distill


def _parts(n_classes=3, per_class=12, seed=0):
    """Windows whose classes differ in amplitude, so LDA on features separates them but not perfectly."""
    rng = np.random.default_rng(seed)
    parts = {}
    for part in ("train", "val"):
        y = np.repeat(np.arange(n_classes), per_class)
        x = rng.normal(size=(len(y), 30, 2)) * (1.0 + 0.3 * y[:, None, None]) + rng.normal(
            scale=0.5, size=(len(y), 1, 2)
        )
        parts[part] = SimpleNamespace(x=x.astype(np.float32), y=y)
    return parts


def test_the_lda_teacher_is_the_lda_baseline_and_its_logits_give_its_probabilities():
    parts = _parts()
    logits = lda_teacher_logits(parts["train"].x, parts["train"].y, {"val": parts["val"].x}, n_classes=3)["val"]
    baseline = fit_baselines(time_domain_features(parts["train"].x), parts["train"].y, seed=0)["lda"]
    np.testing.assert_allclose(
        softmax(logits.astype(np.float64), axis=1),
        baseline.predict_proba(time_domain_features(parts["val"].x)),
        atol=1e-5,
    )
    assert (
        np.mean(logits.argmax(1) == parts["val"].y)
        == evaluate({"lda": baseline}, time_domain_features(parts["val"].x), parts["val"].y)["lda"]
    )
    assert logits.dtype == np.float32 and np.isfinite(logits).all()


def test_with_classical_teacher_appends_the_lda_last_and_is_deterministic():
    parts = _parts()
    nets = {p: [np.zeros((len(parts[p].y), 3), np.float32)] * 2 for p in ("train", "val")}
    assert with_classical_teacher("none", nets, parts, 3) is nets
    first, again = (with_classical_teacher("lda", nets, parts, 3) for _ in range(2))
    assert [len(first[p]) for p in ("train", "val")] == [3, 3]
    assert first["val"][:2] == nets["val"]
    np.testing.assert_array_equal(first["val"][2], again["val"][2])  # refitted, not saved: it must come out the same
    with pytest.raises(ValueError, match="unknown classical teacher"):
        with_classical_teacher("forest", nets, parts, 3)


def test_distill_with_the_lda_teacher_reports_both_ensembles_and_replays_its_targets(myo5, tmp_path, tiny_conv):
    import json

    from edgekd.cli.distill import distill_table
    from edgekd.compare import Run, method_label, model_rows
    from edgekd.distill.fusion import distillation_targets
    from edgekd.distill.replay import load_run_data
    from tests.test_teachers import run_distill

    report = run_distill(
        myo5,
        tmp_path,
        "--teacher",
        tiny_conv,
        "--student",
        tiny_conv,
        "--teachers",
        "2",
        "--epochs",
        "2",
        "--classical-teacher",
        "lda",
    )
    assert report["config"]["classical_teacher"] == "lda"
    assert len(report["test_accuracy"]["teachers"]) == 2  # the networks; the LDA row is the baseline's
    assert 0.0 <= report["test_accuracy"]["ensemble_with_lda"] <= 1.0
    assert method_label(report).endswith("+ LDA teacher")
    rows = {r["model"]: r for r in model_rows(Run("lda", tmp_path, report))}
    assert rows["ensemble_with_lda"]["label"] == "ensemble + LDA teacher"
    assert "ensemble + LDA teacher" in distill_table(report)
    # Compression fine-tuning and the method sweep rebuild the targets from the replayed run: the LDA teacher too.
    run = json.loads((tmp_path / "run.json").read_text())
    replayed = load_run_data(tmp_path, run, myo5, parts=("val",))
    assert list(replayed.parts) == ["val"] and len(replayed.teacher_logits["val"]) == 2
    assert len(replayed.target_logits["val"]) == 3
    fused = distillation_targets(replayed.target_logits, replayed.parts["val"].y, "mean", "kl", 4.0)["val"]
    assert np.isclose(fused.sum(axis=1), 1.0).all()


@pytest.mark.parametrize("options, named", [(["--loss", "mse"], "--loss mse"), (["--loss", "hint"], "--loss hint")])
def test_the_lda_teacher_refuses_what_it_cannot_take_part_in(myo5, tmp_path, options, named):
    assert_user_error(distill(myo5, tmp_path, "--classical-teacher", "lda", *options), "--classical-teacher lda", named)


def test_unknown_classical_teacher_is_refused(myo5, tmp_path):
    assert_user_error(distill(myo5, tmp_path, "--classical-teacher", "forest"), "--classical-teacher")
