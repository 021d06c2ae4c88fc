"""`edgekd distill --cv loso`: one fold per subject, a summary across folds, resumable."""

from __future__ import annotations

import json

import numpy as np
import pytest
from click.testing import CliRunner

from edgekd.cli import main

# Tiny and fast: one teacher, one epoch, a low model rate (as the two-stream pipeline test does), and one small
# convolution for teacher and student (an LSTM costs seconds of graph tracing per model, times 3 models and 3 folds).
TINY_PRESET = 'name = "tiny-conv"\n[[layers]]\ntype = "conv1d"\nfilters = 8\nkernel_size = 3\n'
CV_ARGS = [
    "--cv",
    "loso",
    "--teachers",
    "1",
    "--epochs",
    "1",
    "--patience",
    "1",
    "--rate",
    "100",
    "--window",
    "0.5",
    "--hop",
    "0.25",
    "--quiet",
]


@pytest.fixture(scope="module")
def tiny_preset(tmp_path_factory):
    path = tmp_path_factory.mktemp("presets") / "tiny-conv.toml"
    path.write_text(TINY_PRESET)
    return ["--teacher", str(path), "--student", str(path)]


@pytest.fixture(scope="module")
def cv_run(two_stream_dataset, tmp_path_factory, tiny_preset):
    out = tmp_path_factory.mktemp("cv") / "loso"
    result = CliRunner().invoke(main, ["distill", str(two_stream_dataset), "--out", str(out), *CV_ARGS, *tiny_preset])
    assert result.exit_code == 0, result.output + repr(result.exception)
    return out, result.output


def test_cv_loso_writes_one_fold_per_subject_and_a_summary(cv_run):
    out, output = cv_run
    assert sorted(p.name for p in out.iterdir() if p.is_dir()) == ["fold-s1", "fold-s2", "fold-s3"]
    cv = json.loads((out / "cv_report.json").read_text())
    assert cv["method"] == "loso" and [f["subject"] for f in cv["folds"]] == ["s1", "s2", "s3"]
    assert [f["val_on"] for f in cv["folds"]] == ["s2", "s3", "s1"]
    for fold in cv["folds"]:
        report = json.loads((out / f"fold-{fold['subject']}" / "report.json").read_text())
        assert report["split"]["test"] == [fold["subject"]] and report["split"]["val"] == [fold["val_on"]]
        assert fold["test_accuracy"]["student_kd"] == report["test_accuracy"]["student_kd"]
        assert fold["test_accuracy"]["teachers"] == pytest.approx(np.mean(report["test_accuracy"]["teachers"]))
    for model in ("teachers", "ensemble", "student_scratch", "student_kd", "lda", "random_forest", "ensemble_mean"):
        values = [f["test_accuracy"][model] for f in cv["folds"]]
        s = cv["summary"][model]
        assert s["mean"] == pytest.approx(np.mean(values)) and s["std"] == pytest.approx(np.std(values, ddof=1))
        assert s["min"] == min(values) and s["max"] == max(values)
    assert "mean ± std" in output and "student_kd" in output and "random_forest" in output


def test_cv_rerun_reuses_finished_folds(cv_run, two_stream_dataset, tiny_preset):
    out, _ = cv_run
    mtimes = {p: p.stat().st_mtime_ns for p in out.glob("fold-*/*")}
    result = CliRunner().invoke(main, ["distill", str(two_stream_dataset), "--out", str(out), *CV_ARGS, *tiny_preset])
    assert result.exit_code == 0, result.output + repr(result.exception)
    assert result.output.count("reusing the finished run") == 3
    assert {p: p.stat().st_mtime_ns for p in out.glob("fold-*/*")} == mtimes
    assert json.loads((out / "cv_report.json").read_text())["folds"][0]["subject"] == "s1"


def test_cv_refuses_a_finished_fold_with_other_settings(cv_run, two_stream_dataset, tiny_preset):
    out, _ = cv_run
    args = [a if a != "0.25" else "0.2" for a in CV_ARGS]  # another --hop
    result = CliRunner().invoke(main, ["distill", str(two_stream_dataset), "--out", str(out), *args, *tiny_preset])
    assert result.exit_code == 2 and "other settings (hop)" in result.output


@pytest.mark.parametrize(
    "extra, message",
    [
        (["--test-on", "s1"], "drop --test-on"),
        (["--split", "subject"], "drop --split"),
    ],
)
def test_cv_conflicts_with_an_explicit_split(two_stream_dataset, tmp_path, extra, message):
    result = CliRunner().invoke(
        main, ["distill", str(two_stream_dataset), "--out", str(tmp_path / "cv"), *CV_ARGS, *extra]
    )
    assert result.exit_code == 2 and message in result.output
    assert not (tmp_path / "cv").exists()


def test_cv_needs_three_subjects(myo5, tmp_path):
    result = CliRunner().invoke(main, ["distill", str(myo5), "--out", str(tmp_path / "cv"), *CV_ARGS])
    assert result.exit_code == 2 and "needs at least 3 subjects" in result.output and "has 1 (s0)" in result.output
    assert not (tmp_path / "cv").exists()


@pytest.fixture(scope="module")
def four_people(tmp_path_factory):
    from edgekd.data.synth import write_synthetic_dataset

    return write_synthetic_dataset(
        tmp_path_factory.mktemp("synth4") / "four",
        "isl50",
        classes=3,
        subjects=4,
        repetitions=2,
        duration_s=1.2,
        seed=2,
    )


def test_cv_k_folds_of_people_tests_everyone_once_and_reports_each_person(four_people, tmp_path, tiny_preset):
    out = tmp_path / "k2"
    args = [a if a != "loso" else "2" for a in CV_ARGS]
    result = CliRunner().invoke(main, ["distill", str(four_people), "--out", str(out), *args, *tiny_preset])
    assert result.exit_code == 0, result.output + repr(result.exception)
    cv = json.loads((out / "cv_report.json").read_text())
    assert [f["test_on"] for f in cv["folds"]] == [["s1", "s3"], ["s2", "s4"]]
    assert [f["val_on"] for f in cv["folds"]] == [["s2"], ["s1"]]  # from the next fold, never tested in its own
    assert sorted(p["subject"] for p in cv["people"]) == ["s1", "s2", "s3", "s4"]
    for fold_number, fold in enumerate(cv["folds"], 1):
        report = json.loads((out / f"fold-{fold_number}" / "report.json").read_text())
        assert report["held_out"]["by"] == "subject" and report["held_out"]["groups"] == fold["test_on"]
        per_person = report["held_out"]["test_accuracy"]
        for person in fold["test_on"]:
            entry = next(p for p in cv["people"] if p["subject"] == person)
            assert (
                entry["fold"] == fold_number
                and entry["test_accuracy"]["student_kd"] == per_person["student_kd"][person]
            )
            assert entry["test_accuracy"]["teachers"] == pytest.approx(
                np.mean([t[person] for t in per_person["teachers"]])
            )
        windows = np.load(out / f"fold-{fold_number}" / "windows.npz")["test_y"]
        assert len(windows) == report["windows"]["test"]
    values = [p["test_accuracy"]["lda"] for p in cv["people"]]
    assert cv["summary"]["lda"]["mean"] == pytest.approx(np.mean(values)) and cv["summary"]["lda"][
        "std"
    ] == pytest.approx(np.std(values, ddof=1))
    assert "2 folds of people, 4 people held out in 2 folds" in result.output and "fold" in result.output


@pytest.mark.parametrize("value", ["1", "9", "kfold"])
def test_cv_refuses_a_fold_count_it_cannot_make(two_stream_dataset, tmp_path, value):
    args = [a if a != "loso" else value for a in CV_ARGS]
    result = CliRunner().invoke(main, ["distill", str(two_stream_dataset), "--out", str(tmp_path / "cv"), *args])
    assert (
        result.exit_code == 2
        and f"--cv {value}: use loso, or a number of folds of people from 2 to the 3 subjects" in result.output
    )


def test_cv_folds_on_a_local_ray_match_the_serial_run(cv_run, two_stream_dataset, tiny_preset, tmp_path):
    """--workers 2 starts a 2-CPU local Ray, trains the 3 folds as tasks (one CPU, one TensorFlow thread each), and
    gives the same folds, splits and report as the serial run; a rerun resumes from the Ray-trained folds."""
    pytest.importorskip("ray")
    serial_out, _ = cv_run
    out = tmp_path / "ray"
    args = ["distill", str(two_stream_dataset), "--out", str(out), *CV_ARGS, *tiny_preset, "--workers", "2"]
    result = CliRunner().invoke(main, args)
    assert result.exit_code == 0, result.output + repr(result.exception)
    assert "training 3 folds on Ray, 2 at a time" in result.output and result.output.count(": trained in ") == 3
    serial, parallel = (json.loads((o / "cv_report.json").read_text()) for o in (serial_out, out))
    assert [(f["subject"], f["val_on"]) for f in parallel["folds"]] == [
        (f["subject"], f["val_on"]) for f in serial["folds"]
    ]
    for a, b in zip(serial["folds"], parallel["folds"]):
        assert set(a["test_accuracy"]) == set(b["test_accuracy"])
        # one TensorFlow thread instead of the machine's: the same training up to float rounding
        assert abs(a["test_accuracy"]["student_kd"] - b["test_accuracy"]["student_kd"]) <= 0.15
    rerun = CliRunner().invoke(main, args)
    assert rerun.exit_code == 0 and rerun.output.count("reusing the finished run") == 3 and "on Ray" not in rerun.output


def test_workers_need_cv(two_stream_dataset, tmp_path):
    from tests.test_bad_input import assert_user_error, run_cli

    assert_user_error(run_cli("distill", two_stream_dataset, "--out", tmp_path / "r", "--workers", "2"), "add --cv")
    assert_user_error(
        run_cli("distill", two_stream_dataset, "--out", tmp_path / "r", "--cv", "loso", "--workers", "0"), "--workers 0"
    )
