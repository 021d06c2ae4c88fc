"""Student objectives with more outputs than logits: `--fusion multi-head` and `--loss hint`.

Loss values against NumPy, the heads folding exactly into one, and tiny runs through the CLI to export."""

from __future__ import annotations

import json

import numpy as np
import pytest
from click.testing import CliRunner

from edgekd.cli import main
from edgekd.distill.fusion import fuse_mean, fuse_multi_head, softmax
from edgekd.distill.run import DistillConfig
from edgekd.errors import UserError

T = 2.0
RNG = np.random.default_rng(7)
LABELS = np.array([0, 2, 1, 2])
TEACHERS = [RNG.normal(size=(4, 3)) * 3 for _ in range(2)]


def _ce(labels, logits):
    return -np.log(softmax(logits))[np.arange(len(labels)), labels]


def _kl(p, logits):
    return T**2 * np.sum(p * (np.log(p) - np.log(softmax(logits, T))), axis=1)


def _cosine(a, b):
    return np.sum(a * b, axis=1) / np.linalg.norm(a, axis=1) / np.linalg.norm(b, axis=1)


def test_multi_head_loss_distils_each_head_from_its_teacher_and_classifies_with_their_mean():
    from edgekd.distill.losses import kd_loss, pack_targets, packed_accuracy

    heads = [RNG.normal(size=(4, 3)).astype(np.float32) for _ in range(2)]
    alpha = 0.3
    blocks = fuse_multi_head(TEACHERS, T)
    expected = alpha * _ce(LABELS, np.mean(heads, axis=0)) + (1 - alpha) * np.mean(
        [_kl(blocks[:, i], heads[i]) for i in range(2)], axis=0
    )
    y_pred = np.concatenate(heads, axis=1)
    packed = pack_targets(LABELS, blocks)
    np.testing.assert_allclose(kd_loss(3, T, alpha, heads=2)(packed, y_pred).numpy(), expected, rtol=1e-4)
    decided = np.argmax(np.mean(heads, axis=0), axis=1)
    np.testing.assert_array_equal(packed_accuracy(3, heads=2)(packed, y_pred).numpy(), decided == LABELS)


def test_hint_loss_adds_one_minus_cosine_per_teacher_to_the_response_term():
    from edgekd.distill.losses import kd_loss, pack_targets

    student = RNG.normal(size=(4, 3)).astype(np.float32)
    dims = (5, 2)
    teacher_features = RNG.normal(size=(4, sum(dims))).astype(np.float32)
    projections = RNG.normal(size=(4, sum(dims))).astype(np.float32)
    alpha, weight = 0.4, 0.5
    fused = fuse_mean(TEACHERS, T)
    hint = np.mean(
        [
            1 - _cosine(projections[:, :5], teacher_features[:, :5]),
            1 - _cosine(projections[:, 5:], teacher_features[:, 5:]),
        ],
        axis=0,
    )
    expected = alpha * _ce(LABELS, student) + (1 - alpha) * (_kl(fused, student) + weight * hint)
    loss = kd_loss(3, T, alpha, hint_dims=dims, hint_weight=weight)
    y_pred = np.concatenate([student, projections], axis=1)
    np.testing.assert_allclose(loss(pack_targets(LABELS, fused, teacher_features), y_pred).numpy(), expected, rtol=1e-4)


def test_hint_loss_is_zero_for_a_student_equal_to_the_teacher_and_not_for_its_probabilities():
    """Logits in, no second softmax: a student matching the teacher's logits and (up to scale) its features costs
    nothing."""
    from edgekd.distill.losses import kd_loss, pack_targets

    teacher, features = TEACHERS[0].astype(np.float32), RNG.normal(size=(4, 6)).astype(np.float32)
    packed = pack_targets(LABELS, fuse_mean([teacher], T), features)
    loss = kd_loss(3, T, 0.0, hint_dims=(6,))
    np.testing.assert_allclose(loss(packed, np.concatenate([teacher, 3 * features], axis=1)).numpy(), 0.0, atol=1e-5)
    assert np.all(
        loss(packed, np.concatenate([softmax(teacher).astype(np.float32), 3 * features], axis=1)).numpy() > 0.1
    )


def test_multi_head_student_folds_into_one_head_exactly():
    from edgekd.distill.student import Objective, finish, training_model
    from edgekd.models.build import build_model
    from edgekd.models.presets import Preset

    preset = Preset("t", "", ({"type": "conv1d", "filters": 4, "kernel_size": 3}, {"type": "dense", "units": 6}), "")
    student = build_model(preset, 16, 2, 3, seed=0)
    objective = Objective(heads=3)
    trainer = training_model(student, objective)
    for i in range(3):  # distinct heads, as training would leave them
        layer = trainer.get_layer(f"head_{i}")
        layer.set_weights([w + RNG.normal(size=w.shape).astype(np.float32) for w in layer.get_weights()])
    x = RNG.normal(size=(5, 16, 2)).astype(np.float32)
    heads = trainer(x).numpy().reshape(5, 3, 3)
    finish(student, trainer, objective)
    assert student.output_shape == (None, 3)
    np.testing.assert_allclose(student(x).numpy(), heads.mean(axis=1), atol=1e-5)


def test_hint_with_multi_head_and_a_negative_hint_weight_are_user_errors(myo5, tmp_path):
    with pytest.raises(UserError, match="one of them"):
        DistillConfig(dataset="x", out="y", loss="hint", fusion="multi-head").check()
    with pytest.raises(UserError, match="--hint-weight"):
        DistillConfig(dataset="x", out="y", loss="hint", hint_weight=-1).check()
    result = CliRunner().invoke(
        main, ["distill", str(myo5), "--out", str(tmp_path / "r"), "--loss", "hint", "--fusion", "multi-head"]
    )
    assert result.exit_code == 2 and "--fusion multi-head" in result.output and not (tmp_path / "r").exists()


@pytest.mark.parametrize("method", [["--fusion", "multi-head"], ["--loss", "hint", "--hint-weight", "2"]])
def test_tiny_run_trains_exports_and_fine_tunes(myo5, tmp_path, tiny_conv, method):
    out = tmp_path / "run"
    result = CliRunner().invoke(
        main,
        [
            "distill",
            str(myo5),
            "--out",
            str(out),
            *"--test-on 2 --val-on 1 --teachers 2 --epochs 2 --patience 2 --window 0.5 --hop 0.5".split(),
            "--teacher",
            tiny_conv,
            "--student",
            tiny_conv,
            "--quiet",
            *method,
        ],
    )
    assert result.exit_code == 0, result.output + repr(result.exception)
    report = json.loads((out / "report.json").read_text())
    assert 0.0 <= report["test_accuracy"]["student_kd"] <= 1.0
    from edgekd._tf import keras

    student = keras.models.load_model(out / "student_kd.h5", compile=False)
    assert [layer.name for layer in student.layers if "head" in layer.name or "hint" in layer.name] == []
    assert student.output_shape[-1] == len(report["classes"])
    if "hint" in method:
        assert report["config"]["loss"] == "hint" and report["config"]["hint_weight"] == 2.0
    # The exported student is a plain model, and compression fine-tuning of such a run runs.
    result = CliRunner().invoke(
        main,
        [
            "export",
            str(out),
            *"--float32 --prune 0.5 --finetune-epochs 1".split(),
            "--out",
            str(tmp_path / "s.tflite"),
        ],
    )
    assert result.exit_code == 0, result.output + repr(result.exception)


# ------------------------------------------------------------------------------ several students and a selector
def test_selector_needs_two_distinct_students(myo5, tmp_path, tiny_conv):
    for students, fragment in ((["edge-student"], "at least two"), (["edge-student", "edge-student"], "twice")):
        with pytest.raises(UserError, match=fragment):
            DistillConfig(dataset="x", out="y", students=students, selector=True).check()
    result = CliRunner().invoke(
        main, ["distill", str(myo5), "--out", str(tmp_path / "r"), "--students", tiny_conv, "--selector"]
    )
    assert result.exit_code == 2 and "--selector" in result.output and not (tmp_path / "r").exists()
    result = CliRunner().invoke(
        main, ["distill", str(myo5), "--out", str(tmp_path / "r"), "--students", f"{tiny_conv},nosuch"]
    )
    assert result.exit_code == 2 and "unknown architecture 'nosuch'" in result.output


def test_system_routes_each_window_to_the_selected_student():
    from edgekd.distill.selector import route, system_logits, system_model
    from edgekd.models.build import build_model
    from edgekd.models.presets import Preset, load_preset

    conv = Preset("t", "", ({"type": "conv1d", "filters": 4, "kernel_size": 3},), "")
    students = [build_model(conv, 16, 2, 3, seed=s, name=f"s{s}") for s in range(3)]
    selector = build_model(load_preset("selector"), 16, 2, 3, seed=9, name="selector")
    x = RNG.normal(size=(40, 16, 2)).astype(np.float32)
    choice = route(selector(x).numpy())
    expected = system_logits([s(x).numpy() for s in students], choice)
    np.testing.assert_allclose(system_model(students, selector)(x).numpy(), expected, atol=1e-6)
    assert np.all(expected == np.stack([s(x).numpy() for s in students], 1)[np.arange(40), choice])


def test_tiny_selector_run_reports_students_system_and_oracle_and_exports_one_file(myo5, tmp_path, tiny_conv):
    other = tmp_path / "tiny-conv-2.toml"
    other.write_text(
        open(tiny_conv)
        .read()
        .replace('name = "tiny-conv"', 'name = "tiny-conv-2"')
        .replace("filters = 4", "filters = 6")
    )
    out = tmp_path / "run"
    result = CliRunner().invoke(
        main,
        [
            "distill",
            str(myo5),
            "--out",
            str(out),
            *"--test-on 2 --val-on 1 --teachers 1 --epochs 3 --patience 3 --window 0.5 --hop 0.5".split(),
            "--teacher",
            tiny_conv,
            "--students",
            f"{tiny_conv},{other}",
            "--selector",
            "--quiet",
        ],
    )
    assert result.exit_code == 0, result.output + repr(result.exception)
    assert "selector system" in result.output and "oracle" in result.output
    report = json.loads((out / "report.json").read_text())
    test = report["multi_student"]["test"]
    assert list(test["students"]) == ["tiny-conv", "tiny-conv-2"]
    assert test["students"]["tiny-conv"] == report["test_accuracy"]["student_kd"]
    assert test["oracle"] >= max(test["students"].values()) and test["oracle"] >= test["system"]
    assert sum(test["routing"].values()) == pytest.approx(1.0)
    assert (out / "student_kd_1.h5").is_file() and (out / "selector.h5").is_file()
    # One file: the selector and both students; bench runs it as any model.
    model = tmp_path / "system.tflite"
    result = CliRunner().invoke(main, ["export", str(out), "--float32", "--out", str(model)])
    assert result.exit_code == 0, result.output + repr(result.exception)
    from edgekd.runtime.interpreter import TFLiteModel

    exported = TFLiteModel.load(model)
    assert exported.metadata["architecture"] == "selector system (tiny-conv + tiny-conv-2)"
    assert exported.metadata["params"] == test["params"]["system"]
    result = CliRunner().invoke(
        main, ["export", str(out), "--float32", "--prune", "0.5", "--out", str(tmp_path / "p.tflite")]
    )
    assert result.exit_code == 2 and "selector system" in result.output
    result = CliRunner().invoke(main, ["bench", str(model), "--runs", "5", "--warmup", "1"])
    assert result.exit_code == 0, result.output + repr(result.exception)
    result = CliRunner().invoke(main, ["compare", str(out)])
    assert result.exit_code == 0 and "selector system" in result.output and "student (KD) tiny-conv-2" in result.output
