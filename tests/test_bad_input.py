"""Every user error ends with exit status 2 and one line naming the file and the fix, never a traceback."""

from __future__ import annotations

import numpy as np
import pytest
from click.testing import CliRunner

from edgekd.cli import main
from tests.conftest import rewrite_index


def run_cli(*args):
    result = CliRunner().invoke(main, [str(a) for a in args])
    return result


def assert_user_error(result, *fragments):
    assert result.exit_code == 2, result.output + repr(result.exception)
    assert isinstance(result.exception, SystemExit), repr(result.exception)  # not a traceback
    message = result.output.strip().splitlines()[-1]
    assert message.startswith("Error: ") or message.startswith("Usage") or "Error:" in message
    for fragment in fragments:
        assert fragment in result.output, result.output


def distill(dataset, tmp_path, *extra):
    return run_cli("distill", dataset, "--out", tmp_path / "run", "--epochs", "1", "--quiet", *extra)


def test_missing_dataset_folder(tmp_path):
    assert_user_error(run_cli("data", "inspect", tmp_path / "nope"), "no such dataset folder")


def test_malformed_toml(dataset_copy):
    (dataset_copy / "dataset.toml").write_text("name = [unclosed\n")
    assert_user_error(run_cli("data", "inspect", dataset_copy), "dataset.toml", "not valid TOML")


def test_stream_without_rate(dataset_copy):
    toml = (dataset_copy / "dataset.toml").read_text().replace("rate_hz = 200", "rate_hz = -1")
    (dataset_copy / "dataset.toml").write_text(toml)
    assert_user_error(run_cli("data", "inspect", dataset_copy), "[streams.emg]", "rate_hz")


def test_unknown_class_label(dataset_copy):
    rewrite_index(dataset_copy, lambda rows: [{**r, "label": "wave"} if i == 3 else r for i, r in enumerate(rows)])
    assert_user_error(run_cli("data", "inspect", dataset_copy), "recordings.csv", "row 5", "'wave'")


def test_missing_recording_file_is_listed_by_inspect(dataset_copy):
    (dataset_copy / "recordings" / "R_1_C_2_EMG.csv").unlink()
    result = run_cli("data", "inspect", dataset_copy)
    assert_user_error(result, "R_1_C_2_EMG.csv", "recording not found", "1 problem(s)")


def test_nan_samples(dataset_copy, tmp_path):
    path = dataset_copy / "recordings" / "R_0_C_0_EMG.csv"
    lines = path.read_text().splitlines()
    lines[10] = "nan," + lines[10].split(",", 1)[1]
    path.write_text("\n".join(lines) + "\n")
    assert_user_error(distill(dataset_copy, tmp_path), "R_0_C_0_EMG.csv", "NaN or inf", "sample 9")


def test_wrong_channel_header(dataset_copy):
    path = dataset_copy / "recordings" / "R_0_C_1_EMG.csv"
    path.write_text(path.read_text().replace("emg7", "emgX", 1))
    assert_user_error(run_cli("data", "inspect", dataset_copy), "R_0_C_1_EMG.csv", "does not match the channels")


def test_npz_without_the_declared_stream(two_stream_dataset, tmp_path):
    import shutil

    copy = tmp_path / "ds"
    shutil.copytree(two_stream_dataset, copy)
    first = sorted((copy / "recordings").rglob("*.npz"))[0]
    with np.load(first) as npz:
        np.savez(first, emg=npz["emg"])  # the imu stream is gone
    assert_user_error(run_cli("data", "inspect", copy), first.name, "no array for stream(s) imu")


def test_recording_shorter_than_a_window(dataset_copy, tmp_path):
    assert_user_error(distill(dataset_copy, tmp_path, "--window", "5"), "shorter than one 5.0 s window", "--window")


def test_class_with_no_training_windows(dataset_copy, tmp_path):
    # every 'rest' recording moved to repetition 3 (the test group): nothing to train on
    rewrite_index(dataset_copy, lambda rows: [{**r, "repetition": "3"} if r["label"] == "rest" else r for r in rows])
    assert_user_error(distill(dataset_copy, tmp_path), "class 'rest' has no training windows")


def test_unknown_preset(myo5, tmp_path):
    assert_user_error(
        distill(myo5, tmp_path, "--student", "resnet9000"), "unknown architecture 'resnet9000'", "edge-student"
    )


def test_bad_config_key(myo5, tmp_path):
    config = tmp_path / "c.toml"
    config.write_text("epoch = 3\n")
    assert_user_error(
        run_cli("distill", myo5, "--config", config, "--out", tmp_path / "r"), "c.toml", "unknown key 'epoch'"
    )


@pytest.mark.parametrize("content", [b"", b"not a model at all", b"\x18\x00\x00\x00TFL3" + b"\x00" * 40])
def test_corrupt_tflite(tmp_path, content):
    bad = tmp_path / "bad.tflite"
    bad.write_bytes(content)
    assert_user_error(run_cli("bench", bad, "--runs", "1"), "bad.tflite")


def test_export_without_variant_or_run(tmp_path):
    assert_user_error(run_cli("export", tmp_path, "--out", tmp_path / "m.tflite"), "--int8")
    assert_user_error(
        run_cli("export", tmp_path, "--int8", "--out", tmp_path / "m.tflite"), "not a finished `edgekd distill` run"
    )


def test_model_whose_channels_do_not_match_the_data(exported, two_stream_dataset):
    assert_user_error(
        run_cli("bench", exported["int8"], "--data", two_stream_dataset, "--runs", "1"),
        "do not match those of the model",
        "emg (8 ch, 200 Hz)",
    )
