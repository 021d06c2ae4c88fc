"""distill -> export -> bench through the CLI, on tiny real data."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
from click.testing import CliRunner

from edgekd.cli import main
from edgekd.runtime.interpreter import TFLiteModel
from edgekd.runtime.metadata import read_metadata


def test_distill_writes_a_complete_report(tiny_run):
    report = json.loads((tiny_run / "report.json").read_text())
    assert report["classes"] == ["close", "open", "rest", "flexion", "extension"]
    assert report["split"] == {"method": "repetition", "train": ["0", "3"], "val": ["1"], "test": ["2"]}
    assert all(report["windows"][p] > 0 for p in ("train", "val", "test"))
    assert report["params"]["teacher"] > report["params"]["student"] > 0
    acc = report["test_accuracy"]
    assert len(acc["teachers"]) == 2
    for value in (*acc["teachers"], acc["ensemble"], acc["student_scratch"], acc["student_kd"]):
        assert 0.0 <= value <= 1.0
    assert {"prepare", "teachers", "soft_targets", "student_scratch", "student_kd", "total"} <= set(report["timings_s"])
    for name in ("run.json", "teacher_0.h5", "teacher_1.h5", "student_kd.h5", "student_scratch.h5", "windows.npz"):
        assert (tiny_run / name).is_file()


def test_distill_refuses_to_overwrite_a_finished_run(tiny_run, myo5):
    result = CliRunner().invoke(main, ["distill", str(myo5), "--out", str(tiny_run), "--quiet"])
    assert result.exit_code == 2 and "already holds a finished run" in result.output


def test_export_float32_agrees_with_keras_and_carries_metadata(exported, tiny_run):
    meta = read_metadata(exported["float32"].read_bytes())
    assert meta["variant"] == "float32" and meta["agreement"] >= 0.99
    run = json.loads((tiny_run / "run.json").read_text())
    assert meta["classes"] == run["classes"] and meta["preprocessing"] == run["preprocessing"]
    assert meta["split"]["test"] == ["2"]


def test_export_int8_is_full_integer(exported):
    model = TFLiteModel.load(exported["int8"])
    assert str(model.input_dtype) == "int8" and str(model.output_dtype) == "int8"
    assert model.metadata["variant"] == "int8" and model.metadata["quantizer"] in ("mlir", "legacy")


def test_export_keeps_the_lstm_fused_with_builtin_ops_only(exported):
    from edgekd.export.convert import builtin_op_names

    for path in exported.values():
        ops = builtin_op_names(path.read_bytes())
        assert "UNIDIRECTIONAL_SEQUENCE_LSTM" in ops and "WHILE" not in ops
        assert not any(op.startswith("Flex") for op in ops)


def test_export_refuses_a_collapsed_int8_model_after_trying_both_quantizers(tiny_run, tmp_path, monkeypatch):
    """A converter that yields a one-class model (what the MLIR quantizer did on myo5) must never be written."""
    import numpy as np

    import edgekd.export.convert as convert_module
    from edgekd.export.convert import convert as real_convert

    tried = []

    def collapsed_convert(model, variant, representative=None, quantizer="mlir", **options):
        tried.append(quantizer)
        from edgekd._tf import keras

        one_class = keras.models.clone_model(model)
        weights = model.get_weights()
        weights[-1] = weights[-1] + np.eye(len(weights[-1]), dtype=np.float32)[0] * 1000.0  # logit bias: always class 0
        one_class.set_weights(weights)
        return real_convert(one_class, variant, representative, quantizer, **options)

    monkeypatch.setattr(convert_module, "convert", collapsed_convert)
    out = tmp_path / "never.tflite"
    result = CliRunner().invoke(main, ["export", str(tiny_run), "--int8", "--out", str(out), "--min-agreement", "0.99"])
    assert result.exit_code == 2 and "not written" in result.output, result.output
    assert tried == ["mlir", "legacy"] and "mlir" in result.output and "legacy" in result.output
    assert not out.exists() and not list(tmp_path.glob(".*tmp"))


def test_export_rejects_an_agreement_outside_zero_to_one(tiny_run, tmp_path):
    result = CliRunner().invoke(
        main, ["export", str(tiny_run), "--int8", "--out", str(tmp_path / "m.tflite"), "--min-agreement", "1.5"]
    )
    assert result.exit_code == 2 and "--min-agreement" in result.output


def test_bench_and_stream_run_without_importing_tensorflow(exported, myo5, tmp_path):
    out = tmp_path / "bench.json"
    code = (
        "import sys\n"
        "from edgekd.cli import main\n"
        f"try: main(['bench', {str(exported['float32'])!r}, {str(exported['int8'])!r}, '--data', {str(myo5)!r},"
        f" '--runs', '20', '--json', {str(out)!r}])\n"
        "except SystemExit as e: assert e.code in (0, None), e.code\n"
        "import firmware_bridge.live, firmware_bridge.simulator, firmware_bridge.protocol  # edgekd stream / simulate\n"
        "bad = [m for m in ('tensorflow', 'tf_keras', 'tensorflow_model_optimization') if m in sys.modules]\n"
        "assert not bad, bad\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "p50_ms" in proc.stdout
    rows = json.loads(out.read_text())
    assert [r["model"] for r in rows] == [str(exported["float32"]), str(exported["int8"])]
    for r in rows:
        assert {"model", "bytes", "gzip_bytes", "init_ms", "latency_ms", "accuracy", "runtime"} <= set(r)
        assert set(r["latency_ms"]) == {"p50", "p90", "p99"} and r["latency_ms"]["p50"] <= r["latency_ms"]["p99"]
        assert 0 <= r["accuracy"] <= 1 and r["gzip_bytes"] < r["bytes"]
    # bench on the recorded test split reproduces the accuracy export measured
    assert abs(rows[0]["accuracy"] - read_metadata(exported["float32"].read_bytes())["test_accuracy"]) < 1e-9


def test_bench_without_data_reports_null_accuracy(exported, tmp_path):
    out = tmp_path / "b.json"
    result = CliRunner().invoke(main, ["bench", str(exported["int8"]), "--runs", "5", "--json", str(out)])
    assert result.exit_code == 0, result.output
    assert json.loads(out.read_text())[0]["accuracy"] is None


def test_data_inspect_json(two_stream_dataset):
    result = CliRunner().invoke(main, ["data", "inspect", str(two_stream_dataset), "--json"])
    assert result.exit_code == 0, result.output
    summary = json.loads(result.output)
    assert summary["synthetic"] is True and summary["problems"] == []
    assert summary["streams"]["emg"]["channels"] == 6 and summary["streams"]["imu"]["channels"] == 36
    assert len(summary["subjects"]) == 3 and summary["recordings"] == 27


def test_distill_two_rate_dataset_by_subject_from_a_config_file(two_stream_dataset, tmp_path):
    config = tmp_path / "run.toml"
    config.write_text(
        'teachers = 1\nepochs = 1\nrate = 100\nwindow = 0.4\nhop = 0.2\ntest-on = ["s3"]\nstudent = "isl-student"\n'
    )
    out = tmp_path / "run"
    result = CliRunner().invoke(
        main,
        ["distill", str(two_stream_dataset), "--config", str(config), "--out", str(out), "--epochs", "2", "--quiet"],
    )
    assert result.exit_code == 0, result.output + repr(result.exception)
    report = json.loads((out / "report.json").read_text())
    assert report["split"]["method"] == "subject" and report["split"]["test"] == ["s3"]
    assert report["windows"]["channels"] == 42 and report["windows"]["length"] == 40
    assert report["epochs"]["student_kd"] <= 2 and report["architectures"]["student"] == "isl-student"
    assert "student (KD)" in result.output


@pytest.mark.parametrize("variant", ["float16", "dynamic"])
def test_other_variants_export_agree_and_say_what_they_are(tiny_run, tmp_path, variant):
    out = tmp_path / f"student-{variant}.tflite"
    result = CliRunner().invoke(main, ["export", str(tiny_run), f"--{variant}", "--out", str(out)])
    assert result.exit_code == 0, result.output + repr(result.exception)
    model = TFLiteModel.load(out)
    assert model.metadata["variant"] == variant and model.metadata["agreement"] >= 0.95
    assert str(model.input_dtype) == "float32"


def test_default_architectures_distil_and_export_int8_without_lstm_or_dropout(myo5, tmp_path):
    """The defaults (conv-teacher, edge-conv): channel dropout trains, and is gone from the full-integer file."""
    from edgekd.export.convert import builtin_op_names

    out = tmp_path / "run"
    args = [
        "distill",
        str(myo5),
        "--out",
        str(out),
        *"--test-on 2 --val-on 1 --teachers 1 --epochs 2 --patience 2 --window 0.5 --hop 0.25 --quiet".split(),
    ]
    result = CliRunner().invoke(main, args)
    assert result.exit_code == 0, result.output + repr(result.exception)
    report = json.loads((out / "report.json").read_text())
    assert (report["architectures"]["teacher"], report["architectures"]["student"]) == ("conv-teacher", "edge-conv")
    path = tmp_path / "student-int8.tflite"
    result = CliRunner().invoke(main, ["export", str(out), "--int8", "--out", str(path), "--min-agreement", "0.5"])
    assert result.exit_code == 0, result.output + repr(result.exception)
    ops = set(builtin_op_names(path.read_bytes()))
    assert "CONV_2D" in ops and "MEAN" in ops
    assert not ops & {"UNIDIRECTIONAL_SEQUENCE_LSTM", "WHILE", "RANDOM_UNIFORM", "MULTINOMIAL"}
    model = TFLiteModel.load(path)
    assert str(model.input_dtype) == "int8" and str(model.output_dtype) == "int8"
