"""Pruning, quantization-aware training and low-rank export on the tiny run: what was asked is what is measured."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys

import numpy as np
import pytest

from edgekd.runtime.interpreter import TFLiteModel
from tests.test_bad_input import assert_user_error, run_cli

FAST = ["--finetune-epochs", "2", "--min-agreement", "0.5"]


@pytest.fixture(scope="module")
def run_and_data(tiny_run):
    from edgekd.compress.finetune import load_distillation_data
    from edgekd.distill.run import load_run

    run, _ = load_run(tiny_run)
    return run, load_distillation_data(tiny_run, run, log=lambda m: None)


def _student(tiny_run):
    from edgekd._tf import keras

    return keras.models.load_model(tiny_run / "student_kd.h5", compile=False)


def test_distillation_data_rebuilds_the_runs_training_windows(tiny_run, run_and_data):
    run, data = run_and_data
    report = json.loads((tiny_run / "report.json").read_text())
    assert len(data.train_x) == report["windows"]["train"] and len(data.val_x) == report["windows"]["val"]
    hard, soft = data.train_targets[:, : data.n_classes], data.train_targets[:, data.n_classes :]
    assert np.allclose(hard.sum(1), 1) and np.allclose(soft.sum(1), 1, atol=1e-5)
    assert data.temperature == run["config"]["temperature"] and data.alpha == run["config"]["alpha"]


def test_prune_reaches_the_asked_sparsity_and_leaves_the_source_untouched(tiny_run, run_and_data):
    from edgekd.compress.prune import kernel_sparsity, prune

    student = _student(tiny_run)
    before = [w.copy() for w in student.get_weights()]
    result = prune(student, run_and_data[1], 0.6, epochs=2)
    assert abs(result.sparsity - 0.6) <= 0.02
    assert all(abs(s - 0.6) <= 0.02 for s in result.per_layer.values()), result.per_layer
    assert {k.split("/")[1] for k in result.per_layer} == {"kernel", "recurrent_kernel"}  # the LSTMs' too
    assert all(np.array_equal(a, b) for a, b in zip(before, student.get_weights()))
    assert max(kernel_sparsity(student).values()) < 0.05


def test_qat_after_pruning_keeps_the_zeros_and_covers_the_head(tiny_run, run_and_data):
    from edgekd.compress.apply import CompressionOptions, compress
    from edgekd.compress.prune import kernel_sparsity

    run, _ = run_and_data
    compressed = compress(
        _student(tiny_run),
        tiny_run,
        run,
        CompressionOptions(prune=0.5, qat=True, finetune_epochs=2),
        log=lambda m: None,
    )
    model, done = compressed.model, compressed.done
    assert min(kernel_sparsity(model).values()) >= 0.49
    assert min(kernel_sparsity(compressed.before_qat).values()) >= 0.49
    assert done["qat"]["covered"] == ["logits"]
    assert any(name.startswith("lstm") for name in done["qat"]["calibrated"])


def test_cluster_keeps_k_values_and_the_zeros_and_leaves_the_source_untouched(tiny_run, run_and_data):
    from edgekd.compress.cluster import cluster, distinct_values
    from edgekd.compress.prune import kernel_sparsity, kernel_variables

    sparse = _student(tiny_run)
    for variable in kernel_variables(sparse).values():  # half the weights zero, as pruning leaves them (cheaper)
        w = variable.numpy()
        variable.assign(np.where(np.abs(w) >= np.median(np.abs(w)), w, 0.0))
    before = [w.copy() for w in sparse.get_weights()]
    result = cluster(sparse, run_and_data[1], 4, epochs=1, preserve_sparsity=True)
    assert result.distinct == distinct_values(result.model)
    assert {k.split("/")[1] for k in result.distinct} == {"kernel", "recurrent_kernel"}  # the LSTMs' too
    assert all(2 <= n <= 4 for n in result.distinct.values()), result.distinct  # zero is one of the four
    assert all(s >= 0.49 for s in kernel_sparsity(result.model).values())
    assert all(np.array_equal(a, b) for a, b in zip(before, sparse.get_weights()))
    assert min(distinct_values(sparse).values()) > 4


def test_export_clustered_int8_uses_one_scale_per_kernel_and_shrinks_gzip(tiny_run, exported, tmp_path):
    from tensorflow.lite.tools import flatbuffer_utils

    out = tmp_path / "clustered-int8.tflite"
    result = run_cli(
        "export",
        tiny_run,
        "--int8",
        "--prune",
        "0.5",
        "--cluster",
        "4",
        "--out",
        out,
        "--finetune-epochs",
        "1",
        "--min-agreement",
        "0.5",
    )
    assert result.exit_code == 0, result.output + repr(result.exception)
    assert "clustering: at most 4 distinct values per kernel, the pruned zeros among them" in result.output
    assert "one scale per weight tensor" in result.output and "int8+prune50+cluster4" in result.output
    meta = TFLiteModel.load(out).metadata
    assert (
        meta["compression"]["cluster"]["clusters"] == 4
        and max(meta["compression"]["cluster"]["distinct"].values()) <= 4
    )
    graph = flatbuffer_utils.read_model_from_bytearray(bytearray(out.read_bytes()))
    int8 = 9  # schema TensorType.INT8
    int8_weights = [
        t
        for t in graph.subgraphs[0].tensors
        if t.type == int8 and graph.buffers[t.buffer].data is not None and len(graph.buffers[t.buffer].data)
    ]
    assert int8_weights and all(len(t.quantization.scale) == 1 for t in int8_weights)
    assert all(len(np.unique(graph.buffers[t.buffer].data)) <= 4 for t in int8_weights)
    import gzip

    assert len(gzip.compress(out.read_bytes(), 9)) < 0.8 * len(gzip.compress(exported["int8"].read_bytes(), 9))
    _runs_without_tensorflow(out)


def test_export_pruned_int8_reports_sparsity_and_gzip_and_loads_without_tensorflow(tiny_run, exported, tmp_path):
    out = tmp_path / "pruned-int8.tflite"
    result = run_cli("export", tiny_run, "--int8", "--prune", "0.5", "--out", out, *FAST)
    assert result.exit_code == 0, result.output + repr(result.exception)
    assert "pruning: asked 50%" in result.output and "gzip" in result.output and "int8+prune50" in result.output
    assert "pruning to 50%: 2 epochs in" in result.output  # the fine-tuning's progress summary, no Keras step bars
    assert "/step" not in result.output
    model = TFLiteModel.load(out)
    assert model.metadata["variant"] == "int8" and abs(model.metadata["compression"]["prune"]["measured"] - 0.5) <= 0.02
    assert str(model.input_dtype) == "int8"
    import gzip

    assert len(gzip.compress(out.read_bytes(), 9)) < len(gzip.compress(exported["int8"].read_bytes(), 9))
    _runs_without_tensorflow(out)


def _runs_without_tensorflow(model_path):
    code = (
        "import sys; from edgekd.runtime.interpreter import TFLiteModel; import numpy as np; "
        f"m = TFLiteModel.load({str(model_path)!r}); m.predict_logits(np.zeros((1, *m.window_shape), np.float32)); "
        "assert 'tensorflow' not in sys.modules, 'tensorflow imported'"
    )
    subprocess.run([sys.executable, "-c", code], check=True, capture_output=True)


def test_export_qat_int8_says_what_it_could_not_cover(tiny_run, tmp_path):
    out = tmp_path / "qat-int8.tflite"
    result = run_cli("export", tiny_run, "--int8", "--qat", "--out", out, *FAST)
    assert result.exit_code == 0, result.output + repr(result.exception)
    assert "not quantization-aware: lstm" in result.output and "(LSTM fused)" in result.output
    model = TFLiteModel.load(out)
    qat = model.metadata["compression"]["qat"]
    if "kept QAT int8" in result.output:
        assert qat["covered"] == ["logits"] and qat["val_accuracy"] >= qat["post_training_val_accuracy"]
    else:  # QAT's fine-tuning validated worse than plain post-training int8 of the same student: that one is kept
        assert "kept post-training int8" in result.output and qat is False and "--qat" in model.metadata["notes"][0]
    assert str(model.input_dtype) == "int8" and str(model.output_dtype) == "int8"
    _runs_without_tensorflow(out)


def test_export_low_rank_shrinks_the_student(tiny_run, tmp_path):
    out = tmp_path / "lowrank.tflite"
    result = run_cli("export", tiny_run, "--float32", "--low-rank", "100", "--out", out, *FAST)
    assert result.exit_code == 0, result.output + repr(result.exception)
    meta = TFLiteModel.load(out).metadata
    low_rank = meta["compression"]["low_rank"]
    assert low_rank["fraction"] == 0.125 and meta["params"] == low_rank["params_after"] < low_rank["params_before"]


def test_target_picks_a_variant_and_says_why(tiny_run, tmp_path):
    result = run_cli("export", tiny_run, "--target", "mcu", "--out", tmp_path / "m.tflite", "--min-agreement", "0.5")
    assert result.exit_code == 0, result.output + repr(result.exception)
    assert "--target mcu: int8, because" in result.output
    assert TFLiteModel.load(tmp_path / "m.tflite").metadata["variant"] == "int8"


@pytest.mark.parametrize(
    "args, fragment",
    [
        (["--int8", "--prune", "1.2"], "--prune 1.2"),
        (["--int8", "--prune", "-0.1"], "--prune -0.1"),
        (["--float32", "--qat"], "--qat trains for full-integer inference and needs --int8"),
        (["--int8", "--finetune-epochs", "0", "--prune", "0.5"], "--finetune-epochs"),
        (
            ["--int8", "--cluster", "1"],
            "--cluster 1: the number of distinct values each kernel keeps must lie in [2, 256]",
        ),
        (["--int8", "--cluster", "300"], "--cluster 300"),
        (["--int8", "--qat", "--cluster", "16"], "--cluster and --qat cannot be combined"),
    ],
)
def test_bad_compression_options(tiny_run, tmp_path, args, fragment):
    assert_user_error(run_cli("export", tiny_run, *args, "--out", tmp_path / "m.tflite"), fragment)
    assert not (tmp_path / "m.tflite").exists()


def test_export_of_a_run_without_student_or_dataset(tiny_run, tmp_path):
    no_student = tmp_path / "no-student"
    shutil.copytree(tiny_run, no_student)
    (no_student / "student_kd.h5").unlink()
    assert_user_error(run_cli("export", no_student, "--int8", "--out", tmp_path / "m.tflite"), "no student_kd.h5")

    moved = tmp_path / "moved"
    shutil.copytree(tiny_run, moved)
    run = json.loads((moved / "run.json").read_text())
    run["dataset"]["path"] = str(tmp_path / "gone")
    (moved / "run.json").write_text(json.dumps(run))
    assert_user_error(
        run_cli("export", moved, "--int8", "--prune", "0.5", "--out", tmp_path / "m.tflite"), "gone", "--data"
    )
