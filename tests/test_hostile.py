"""Hostile input and faults (issue 21): run folders from strangers, files that must not be overwritten, paths that
lead outside their folder, and damaged files that must give a one-line error, never a traceback or lost data."""
from __future__ import annotations

import shutil

import numpy as np
import pytest

from tests.test_bad_input import assert_user_error, run_cli


@pytest.fixture
def run_copy(tiny_run, tmp_path):
    """A writable copy of the tiny distill run."""
    copy = tmp_path / "run"
    shutil.copytree(tiny_run, copy)
    return copy


def _lambda_student(path, marker):
    """A student whose Lambda layer writes `marker` when Keras builds it, as loading does."""
    from edgekd._tf import keras

    window = keras.Input(shape=(100, 8))
    touched = keras.layers.Lambda(lambda x, p=str(marker): (__import__("pathlib").Path(p).write_text("ran"), x)[1])(window)
    model = keras.Model(window, keras.layers.Dense(5, name="logits")(keras.layers.GlobalAveragePooling1D()(touched)))
    marker.unlink(missing_ok=True)  # building it here ran the lambda once
    model.save(path, include_optimizer=False)


@pytest.mark.parametrize("command", ["export", "compare"])
def test_a_run_folder_with_a_lambda_layer_is_refused_before_it_runs(run_copy, tmp_path, command):
    marker = tmp_path / "code-ran"
    for student in ("student_kd", "student_scratch"):  # compare opens the best of them for its confusion matrix
        _lambda_student(run_copy / f"{student}.h5", marker)
    args = ["export", run_copy, "--int8", "--out", tmp_path / "m.tflite"] if command == "export" else ["compare", run_copy, "--out", tmp_path / "plots"]
    assert_user_error(run_cli(*args), ".h5: refused", "Lambda")
    assert not marker.exists()


def test_load_model_refuses_unknown_classes_and_truncated_files(run_copy, tmp_path):
    from edgekd.errors import UserError
    from edgekd.models.saved import load_model

    marker = tmp_path / "code-ran"
    _lambda_student(tmp_path / "evil.h5", marker)
    with pytest.raises(UserError, match="refused: it names Lambda"):
        load_model(tmp_path / "evil.h5")
    assert not marker.exists()
    data = (run_copy / "teacher_0.h5").read_bytes()
    (tmp_path / "cut.h5").write_bytes(data[: len(data) // 2])
    with pytest.raises(UserError, match="cut.h5: not a readable Keras .h5 file"):
        load_model(tmp_path / "cut.h5")
    assert load_model(run_copy / "teacher_0.h5").output_shape[-1] == 5  # the run's own files load


def test_every_shipped_preset_saves_only_safe_classes(tmp_path):
    from edgekd.models.build import build_model
    from edgekd.models.presets import available_presets, load_preset
    from edgekd.models.saved import SAFE_CLASSES, architecture_classes, save_model

    for name in available_presets():
        save_model(build_model(load_preset(name), 60, 4, 3), tmp_path / f"{name}.h5")
        assert architecture_classes(tmp_path / f"{name}.h5") <= SAFE_CLASSES, name
