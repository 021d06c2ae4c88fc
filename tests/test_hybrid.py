"""--classical-branch lda: the student and the LDA baseline in one graph (models/hybrid.py)."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.special import log_softmax, softmax

from edgekd.models.classical import lda, time_domain_features
from edgekd.models.hybrid import (
    LDA_LOG_ODDS_FLOOR,
    TEMPERATURES,
    TimeDomainFeatures,
    calibrate,
    combined_logits,
    features_of,
    lda_branch,
    with_classical_branch,
)
from tests.test_classical_teacher import _parts


def test_the_in_graph_features_are_the_baselines_features():
    windows = np.random.default_rng(3).normal(size=(40, 25, 3)).astype(np.float32)
    windows[0, :, 1] = 0.0  # a silent channel: no crossings, no turning points
    layer = TimeDomainFeatures()
    ours, reference = features_of(layer, windows), time_domain_features(windows)
    np.testing.assert_allclose(ours, reference, rtol=1e-4, atol=1e-4)
    thresholded = features_of(TimeDomainFeatures(threshold=0.5), windows)
    np.testing.assert_allclose(thresholded, time_domain_features(windows, threshold=0.5), rtol=1e-4, atol=1e-4)
    assert not np.allclose(thresholded, ours)  # the threshold reaches ZC and SSC


def test_the_branch_is_the_fitted_lda_and_its_temperature_is_chosen_on_validation():
    parts = _parts(n_classes=3, per_class=20)
    branch = lda_branch(parts["train"].x, parts["train"].y, n_classes=3)
    reference = lda().fit(time_domain_features(parts["train"].x), parts["train"].y)
    decision = branch.model.predict(parts["val"].x, verbose=0)
    np.testing.assert_allclose(
        softmax(decision.astype(np.float64), 1),
        reference.predict_proba(time_domain_features(parts["val"].x)),
        atol=1e-3,
    )

    val_y = parts["val"].y
    student = np.random.default_rng(0).normal(size=(len(val_y), 3)) * 3  # a guessing student
    chosen = calibrate(branch, student, parts["val"].x, val_y).temperature
    accuracy = {t: np.mean(combined_logits(student, decision, t).argmax(1) == val_y) for t in TEMPERATURES}
    assert chosen in TEMPERATURES and accuracy[chosen] == max(accuracy.values())
    # beside a student that knows nothing the hybrid is the LDA at any T; the log-loss then picks the LDA's calibration
    blank = np.zeros((len(val_y), 3))
    t = calibrate(branch, blank, parts["val"].x, val_y).temperature
    nll = {
        t: -np.mean(log_softmax(combined_logits(blank, decision, t), 1)[np.arange(len(val_y)), val_y])
        for t in TEMPERATURES
    }
    assert nll[t] == min(nll.values())


def test_the_branch_is_left_out_when_it_does_not_raise_the_validation_accuracy(monkeypatch):
    from dataclasses import replace

    from edgekd._tf import keras
    from edgekd.models import hybrid as hybrid_module

    parts = _parts(n_classes=3, per_class=20)
    branch = lda_branch(parts["train"].x, parts["train"].y, n_classes=3)
    val_y = parts["val"].y
    perfect = calibrate(branch, np.eye(3)[val_y] * 5.0, parts["val"].x, val_y)  # nothing left to gain on validation
    assert not perfect.kept and perfect.student_val_accuracy == 1.0 and perfect.describe()["kept"] is False
    blank = calibrate(branch, np.zeros((len(val_y), 3)), parts["val"].x, val_y)  # the LDA is all there is
    assert blank.kept and blank.val_accuracy > blank.student_val_accuracy

    # hybrid() then hands back the student itself
    monkeypatch.setattr(hybrid_module, "calibrate", lambda b, *args: replace(b, kept=False))
    student = keras.Sequential([keras.Input((30, 2)), keras.layers.Flatten(), keras.layers.Dense(3, name="logits")])
    model, left_out = hybrid_module.hybrid(student, parts["train"].x, parts["train"].y, parts["val"].x, val_y, 3)
    assert model is student and not left_out.kept


def test_combined_logits_add_the_students_and_the_ldas_floored_log_odds():
    student = np.array([[2.0, 0.0, 0.0], [0.0, 1.0, 0.0]])
    decision = np.array([[10.0, 16.0, -500.0], [0.0, 0.0, 0.0]])
    out = combined_logits(student, decision, temperature=2.0)
    np.testing.assert_allclose(out, [[2.0 - 3.0, 0.0, -LDA_LOG_ODDS_FLOOR], [0.0, 1.0, 0.0]])
    # a product of experts: its softmax is the normalised product of the two posteriors (where the floor is not hit)
    np.testing.assert_allclose(softmax(out[1:], 1), softmax(student[1:], 1))


def test_the_hybrid_model_computes_the_combined_logits():
    from edgekd._tf import keras

    parts = _parts(n_classes=3, per_class=20)
    keras.utils.set_random_seed(0)
    student = keras.Sequential([keras.Input((30, 2)), keras.layers.Flatten(), keras.layers.Dense(3, name="logits")])
    branch = calibrate(
        lda_branch(parts["train"].x, parts["train"].y, 3),
        student.predict(parts["val"].x, verbose=0),
        parts["val"].x,
        parts["val"].y,
    )
    x = parts["val"].x
    expected = combined_logits(student.predict(x, verbose=0), branch.model.predict(x, verbose=0), branch.temperature)
    np.testing.assert_allclose(with_classical_branch(student, branch).predict(x, verbose=0), expected, atol=1e-4)


@pytest.mark.parametrize("variant", ["float32", "int8"])
def test_the_hybrid_converts_to_builtin_ops_and_agrees(variant, tmp_path):
    """int8: the student's ops are int8, the LDA branch's float32 (FLOAT_LAYERS), input and output float32."""
    from edgekd._tf import keras
    from edgekd.export.convert import convert
    from edgekd.runtime.interpreter import TFLiteModel, load_interpreter_class

    parts = _parts(n_classes=3, per_class=30)
    keras.utils.set_random_seed(0)
    student = keras.Sequential(
        [
            keras.Input((30, 2)),
            keras.layers.Conv1D(4, 3),
            keras.layers.GlobalAveragePooling1D(),
            keras.layers.Dense(3, name="logits"),
        ],
        name="tiny_student",
    )
    branch = calibrate(
        lda_branch(parts["train"].x, parts["train"].y, 3),
        student.predict(parts["val"].x, verbose=0),
        parts["val"].x,
        parts["val"].y,
    )
    model = with_classical_branch(student, branch)
    path = tmp_path / f"hybrid-{variant}.tflite"
    path.write_bytes(convert(model, variant, representative=parts["train"].x, float_layers=branch.float_layers))
    loaded = TFLiteModel.load(path)
    logits = loaded.predict_logits(parts["val"].x)
    agreement = np.mean(logits.argmax(1) == model.predict(parts["val"].x, verbose=0).argmax(1))
    assert agreement >= (0.99 if variant == "float32" else 0.9)
    tensors = load_interpreter_class()[0](model_path=str(path)).get_tensor_details()
    int8 = [t["name"] for t in tensors if t["dtype"] == np.int8]
    assert loaded.input_dtype == np.float32
    if variant == "int8":
        assert any("tiny_student" in name for name in int8)  # the student is quantized
        assert not any("lda_branch" in name and "tiny_student" not in name for name in int8)  # the branch is not
    else:
        assert not int8


def test_export_with_the_lda_branch_writes_one_model_that_bench_runs_without_tensorflow(tiny_run, myo5, tmp_path):
    import json
    import subprocess
    import sys

    from click.testing import CliRunner

    from edgekd.cli import main
    from edgekd.runtime.metadata import model_label, read_metadata

    path = tmp_path / "hybrid-int8.tflite"
    result = CliRunner().invoke(
        main,
        ["export", str(tiny_run), "--int8", "--classical-branch", "lda", "--out", str(path), "--min-agreement", "0.5"],
    )
    assert result.exit_code == 0, result.output + repr(result.exception)
    assert "LDA temperature" in result.output and "with the LDA branch" in result.output
    metadata = read_metadata(path.read_bytes())
    assert metadata["architecture"].endswith("+ LDA branch") and model_label(metadata) == "int8+lda"
    branch = metadata["classical_branch"]
    assert branch["kind"] == "lda" and branch["temperature"] in TEMPERATURES
    # distill's report foretold it from the baseline's own LDA (numpy features): the same choice, the same accuracy
    report = json.loads((tiny_run / "report.json").read_text())
    assert (report["lda_branch"]["kept"], report["lda_branch"]["temperature"]) == (
        branch["kept"],
        branch["temperature"],
    )
    assert abs(report["test_accuracy"]["student_kd_lda_branch"] - metadata["keras_test_accuracy"]) <= 0.02
    out = tmp_path / "bench.json"
    code = (
        f"from edgekd.cli import main\n"
        f"try: main(['bench', {str(path)!r}, '--data', {str(myo5)!r}, '--runs', '5', '--json', {str(out)!r}])\n"
        f"except SystemExit as e: assert e.code in (0, None), e.code\n"
        f"import sys; assert 'tensorflow' not in sys.modules\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert abs(json.loads(out.read_text())[0]["accuracy"] - metadata["test_accuracy"]) < 1e-9


def test_export_refuses_the_lda_branch_with_qat_and_an_unknown_branch(tiny_run, tmp_path):
    from click.testing import CliRunner

    from edgekd.cli import main
    from tests.test_bad_input import assert_user_error

    out = str(tmp_path / "m.tflite")
    result = CliRunner().invoke(
        main, ["export", str(tiny_run), "--int8", "--qat", "--classical-branch", "lda", "--out", out]
    )
    assert_user_error(result, "--qat", "--classical-branch lda")
    result = CliRunner().invoke(main, ["export", str(tiny_run), "--int8", "--classical-branch", "forest", "--out", out])
    assert_user_error(result, "--classical-branch")
    result = CliRunner().invoke(
        main, ["export", str(tiny_run), "--target", "mcu", "--classical-branch", "lda", "--out", out]
    )
    assert_user_error(result, "--target mcu", "full-integer")


def test_distill_suggests_the_lda_branch_only_where_it_won_on_validation():
    from edgekd.cli.distill import next_export

    plain = "edgekd export runs/a --int8 --out student.tflite"
    assert next_export({}, "runs/a") == plain  # reports from before the branch
    left_out = {"lda_branch": {"kept": False, "val_accuracy": 1.0, "student_val_accuracy": 1.0}}
    assert next_export(left_out, "runs/a") == plain
    kept = {"lda_branch": {"kept": True, "val_accuracy": 0.565, "student_val_accuracy": 0.494}}
    suggestion = next_export(kept, "runs/a")
    assert suggestion.startswith("edgekd export runs/a --int8 --out hybrid.tflite --classical-branch lda")
    assert "49.4% to 56.5%" in suggestion and plain in suggestion
