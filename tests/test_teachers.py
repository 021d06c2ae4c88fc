"""`edgekd distill --teachers-from ...` and `--repeats`: tiny runs (plumbing, not accuracy) and bad input."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner

from edgekd.cli import main
from edgekd.data.dataset import StreamSpec
from edgekd.distill.teachers import channel_groups, cyclic_cosine
from edgekd.errors import UserError

# A convolution-only net for teachers and students, and few windows: these runs check the plumbing, not
# accuracy, and an LSTM's graph alone costs seconds per model.
TINY_NET = """name = "tiny-conv"
description = "Conv1D(4) -> Dense(8), for tests"

[[layers]]
type = "conv1d"
filters = 4
kernel_size = 3

[[layers]]
type = "avgpool"
pool_size = 4

[[layers]]
type = "dense"
units = 8
"""
MYO5_ARGS = ["--test-on", "2", "--val-on", "1", "--window", "0.5", "--hop", "0.5", "--patience", "2", "--quiet"]


@pytest.fixture(scope="module")
def tiny_net(tmp_path_factory) -> list[str]:
    path = tmp_path_factory.mktemp("presets") / "tiny-conv.toml"
    path.write_text(TINY_NET)
    return ["--teacher", str(path), "--student", str(path)]


def run_distill(dataset: Path, out: Path, *extra) -> dict:
    result = CliRunner().invoke(main, ["distill", str(dataset), "--out", str(out), *MYO5_ARGS, *map(str, extra)])
    assert result.exit_code == 0, result.output + repr(result.exception)
    return json.loads((out / "report.json").read_text())


def teacher_files(out: Path) -> list[str]:
    return sorted(p.name for p in out.glob("teacher_*.h5"))


def assert_user_error(result, *fragments):
    assert result.exit_code == 2, result.output + repr(result.exception)
    assert isinstance(result.exception, SystemExit), repr(result.exception)
    for fragment in fragments:
        assert fragment in result.output, result.output


def test_seeds_with_repeats(myo5, tmp_path, tiny_net):
    out = tmp_path / "run"
    report = run_distill(
        myo5, out, *tiny_net, "--teachers-from", "seeds", "--teachers", "2", "--epochs", "1", "--repeats", "2"
    )
    assert teacher_files(out) == ["teacher_0.h5", "teacher_1.h5"]
    assert report["config"]["teachers_from"] == "seeds" and report["config"]["teachers"] == 2
    assert json.loads((out / "run.json").read_text())["teachers"]["from"] == "seeds"
    repeats = report["repeats"]
    assert repeats["seeds"] == [0, 1]
    for kind in ("student_kd", "student_scratch"):
        accs = repeats[kind]["test_accuracy"]
        assert len(accs) == 2 and all(0 <= a <= 1 for a in accs)
        assert repeats[kind]["mean"] == pytest.approx(sum(accs) / 2)
        assert repeats[kind]["std"] == pytest.approx(abs(accs[0] - accs[1]) / 2**0.5)
        assert report["test_accuracy"][kind] == accs[0]  # the saved (first-seed) student's


def test_subsets(myo5, tmp_path, tiny_net):
    out = tmp_path / "run"
    report = run_distill(
        myo5, out, *tiny_net, "--teachers-from", "subsets", "--subset-min", "0.5", "--teachers", "2", "--epochs", "1"
    )
    assert teacher_files(out) == ["teacher_0.h5", "teacher_1.h5"]
    fractions = report["config"]["teacher_details"]["subset_fractions"]
    assert len(fractions) == 2 and all(0.5 <= f <= 1.0 for f in fractions)
    assert json.loads((out / "run.json").read_text())["config"]["subset_min"] == 0.5


def test_snapshots_one_run_cyclic_lr(myo5, tmp_path, tiny_net):
    out = tmp_path / "run"
    report = run_distill(myo5, out, *tiny_net, "--teachers-from", "snapshots", "--teachers", "2", "--epochs", "4")
    assert teacher_files(out) == ["teacher_0.h5", "teacher_1.h5"]
    details = report["config"]["teacher_details"]
    assert details["epochs_per_cycle"] == 2 and details["snapshot_epochs"] == [2, 4]
    assert report["epochs"]["teachers"] == [2, 4] and len(report["test_accuracy"]["teachers"]) == 2


def test_cyclic_cosine_restarts():
    lr = cyclic_cosine(1.0, 4)
    assert [round(lr(e), 3) for e in range(6)] == [1.0, 0.854, 0.5, 0.146, 1.0, 0.854]


def test_modalities_one_expert_per_sensor_kind(two_stream_dataset, tmp_path, tiny_net):
    from edgekd._tf import keras
    from edgekd.compress.finetune import load_distillation_data

    out = tmp_path / "run"
    result = CliRunner().invoke(
        main,
        [
            "distill",
            str(two_stream_dataset),
            "--out",
            str(out),
            *"--teachers-from modalities --teachers 2 --epochs 1".split(),
            *"--rate 100 --window 0.4 --hop 0.4 --test-on s3".split(),
            *tiny_net,
        ],
    )
    assert result.exit_code == 0, result.output + repr(result.exception)
    assert "--teachers 2 is ignored" in result.output
    report = json.loads((out / "report.json").read_text())
    assert teacher_files(out) == ["teacher_0.h5", "teacher_1.h5", "teacher_2.h5"] and report["config"]["teachers"] == 3
    run = json.loads((out / "run.json").read_text())
    # sEMG, accelerometer and gyroscope experts: the IMU stream (acc<i>_x.., gyr<i>_x..) splits by prefix.
    assert run["teachers"]["groups"] == ["emg", "imu/acc", "imu/gyr"]
    imu = list(range(6, 42))
    acc = [c for c in imu if (c - 6) % 6 < 3]
    assert run["teachers"]["channels"] == [list(range(6)), acc, sorted(set(imu) - set(acc))]
    for i, width in enumerate((6, 18, 18)):  # each expert's model reads only its group's channels
        teacher = keras.models.load_model(out / f"teacher_{i}.h5", compile=False)
        assert teacher.input_shape[-1] == width
    # Compression fine-tuning reloads the teachers and slices the windows the same way.
    data = load_distillation_data(out, run, log=lambda message: None)
    assert data.train_targets.shape == (len(data.train_x), 2 * 3)


def test_channel_groups_by_prefix():
    stream = StreamSpec("imu", 100.0, ("acc_x", "acc_y", "gyro_x", "gyro_y", "emg0"))
    assert channel_groups((stream,)) == [("acc", [0, 1]), ("gyro", [2, 3]), ("emg", [4])]
    two = (StreamSpec("emg", 200.0, ("emg0", "emg1")), StreamSpec("imu", 50.0, ("acc_x", "gyro_x")))
    assert channel_groups(two) == [("emg", [0, 1]), ("imu/acc", [2]), ("imu/gyro", [3])]
    assert channel_groups((StreamSpec("emg", 200.0, ("emg0",)), StreamSpec("imu", 50.0, ("acc_x",)))) == [
        ("emg", [0]),
        ("imu", [1]),
    ]
    with pytest.raises(UserError, match="one stream 'emg'"):
        channel_groups((StreamSpec("emg", 200.0, ("emg0", "emg1")),))


def test_bad_teacher_options(myo5, tmp_path):
    def invoke(*extra):
        args = ["distill", str(myo5), "--out", str(tmp_path / "run"), "--epochs", "1", "--quiet", *extra]
        return CliRunner().invoke(main, args)

    assert_user_error(invoke("--teachers-from", "dropout"), "--teachers-from")
    assert_user_error(invoke("--teachers-from", "subsets", "--subset-min", "0"), "--subset-min", "(0, 1]")
    assert_user_error(invoke("--subset-min", "1.5"), "--subset-min")
    assert_user_error(invoke("--teachers-from", "modalities"), "modalities", "one stream 'emg'")
    assert_user_error(invoke("--repeats", "0"), "--repeats")
    assert not (tmp_path / "run" / "teacher_0.h5").exists()
