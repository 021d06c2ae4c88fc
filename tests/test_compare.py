"""`edgekd compare`: one table of every model of every run, --json rows, --out plots, and bad input."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from edgekd import compare as comparing
from edgekd.cli import main
from edgekd.errors import UserError

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def run_cli(*args):
    return CliRunner().invoke(main, ["compare", *map(str, args)])


def assert_user_error(result, *fragments):
    assert result.exit_code == 2, result.output + repr(result.exception)
    assert isinstance(result.exception, SystemExit), repr(result.exception)  # a message, not a traceback
    assert result.output.strip().splitlines()[-1].startswith("Error: "), result.output
    for fragment in fragments:
        assert fragment in result.output, result.output


def copy_run(tiny_run, tmp_path, name, edit_report=None):
    """A second run under another name, its report optionally edited (to tell the runs apart)."""
    dst = tmp_path / name
    shutil.copytree(tiny_run, dst)
    if edit_report:
        report = json.loads((dst / "report.json").read_text())
        edit_report(report)
        (dst / "report.json").write_text(json.dumps(report))
    return dst


def table_lines(output: str, run: str) -> dict[str, str]:
    """model label -> its table line, for the rows of one run."""
    lines = [line for line in output.splitlines() if line.startswith(run + "  ")]
    return {label: line for line in lines for label in comparing.MODEL_LABELS.values() if f"  {label}  " in line} | {
        f"teacher {i}": line for line in lines for i in range(1, 10) if f"  teacher {i}  " in line
    }


def test_table_has_every_model_of_every_run(tiny_run, tmp_path):
    def make_kd_perfect(report):
        report["test_accuracy"]["student_kd"] = 1.0

    second = copy_run(tiny_run, tmp_path, "second", make_kd_perfect)
    result = run_cli(tiny_run, second)
    assert result.exit_code == 0, result.output + repr(result.exception)
    report = json.loads((tiny_run / "report.json").read_text())
    accuracy, params = report["test_accuracy"], report["params"]
    n_teachers = len(accuracy["teachers"])

    rows = table_lines(result.output, "tiny")
    for i, a in enumerate(accuracy["teachers"]):
        assert f"{a:.3f}" in rows[f"teacher {i + 1}"] and f"{params['teacher']:,}" in rows[f"teacher {i + 1}"]
    assert (
        f"{accuracy['ensemble']:.3f}" in rows["ensemble"] and f"{params['teacher'] * n_teachers:,}" in rows["ensemble"]
    )
    assert f"{accuracy['student_scratch']:.3f}" in rows["student (scratch)"]
    assert f"{accuracy['student_kd']:.3f}" in rows["student (KD)"] and f"{params['student']:,}" in rows["student (KD)"]
    for key, label in comparing.CLASSICAL.items():
        assert f"{accuracy[key]:.3f}" in rows[label] and "  -  " in rows[label]  # no params for classical models
    assert f"mean of {n_teachers}, kl T=4 alpha=0.3" in rows["ensemble"]
    assert "1.000" in table_lines(result.output, "second")["student (KD)"]
    assert "tiny: myo5, split by repetition (test on 2), windows train/val/test" in result.output
    assert "different datasets" not in result.output  # both on myo5: no note
    # Ultralytics-style: the summaries first, the one table at the end
    assert result.output.index("second: myo5") < result.output.index("run  ")


def test_json_rows(tiny_run, tmp_path):
    out = tmp_path / "rows.json"
    result = run_cli(tiny_run, "--json", out)
    assert result.exit_code == 0, result.output + repr(result.exception)
    rows = json.loads(out.read_text())
    report = json.loads((tiny_run / "report.json").read_text())
    by_model = {r["model"]: r for r in rows}
    n_teachers = len(report["test_accuracy"]["teachers"])
    fused = comparing.fused_ensemble_keys(report["test_accuracy"])  # newer reports: what the KD targets decide
    assert list(by_model) == [
        *(f"teacher_{i}" for i in range(n_teachers)),
        "ensemble",
        *fused,
        "student_scratch",
        "student_kd",
        "student_kd_lda_branch",
        "lda",
        "random_forest",
    ]
    assert {r["run"] for r in rows} == {"tiny"} and {r["dataset"] for r in rows} == {"myo5"}
    branch = by_model["student_kd_lda_branch"]  # what `edgekd export --classical-branch lda` would write
    assert branch["test_accuracy"] == report["test_accuracy"]["student_kd_lda_branch"]
    assert branch["params"] == (
        report["params"]["student_with_lda_branch"] if report["lda_branch"]["kept"] else report["params"]["student"]
    )
    assert by_model["student_kd"]["test_accuracy"] == report["test_accuracy"]["student_kd"]
    assert by_model["student_kd"]["params"] == report["params"]["student"]
    assert by_model["student_kd"]["train_time_s"] == report["timings_s"]["student_kd"]
    assert by_model["ensemble"]["params"] == report["params"]["teacher"] * n_teachers
    assert by_model["lda"]["params"] is None and by_model["lda"]["test_accuracy"] == report["test_accuracy"]["lda"]


def test_out_writes_two_pngs(tiny_run, tmp_path):
    result = run_cli(tiny_run, "--out", tmp_path / "plots")
    assert result.exit_code == 0, result.output + repr(result.exception)
    pngs = sorted(p.name for p in (tmp_path / "plots").iterdir())
    assert pngs == ["accuracy_vs_params.png", "confusion_tiny.png"]  # no temporary files left behind
    for name in pngs:
        assert (tmp_path / "plots" / name).read_bytes().startswith(PNG_MAGIC)


def test_missing_student_skips_the_confusion_matrix_with_a_note(tiny_run, tmp_path):
    def make_kd_best(report):
        report["test_accuracy"]["student_kd"] = 1.0

    broken = copy_run(tiny_run, tmp_path, "broken", make_kd_best)
    (broken / "student_kd.h5").unlink()
    result = run_cli(tiny_run, broken, "--out", tmp_path / "plots")
    assert result.exit_code == 0, result.output + repr(result.exception)
    notes = [line for line in result.output.splitlines() if line.startswith("note: no confusion matrix")]
    assert len(notes) == 1 and "student_kd.h5" in notes[0] and "broken" in notes[0]
    assert sorted(p.name for p in (tmp_path / "plots").iterdir()) == ["accuracy_vs_params.png"]


def test_runs_on_different_datasets_are_allowed_with_a_note(tiny_run, tmp_path):
    other = copy_run(tiny_run, tmp_path, "other", lambda report: report.update(dataset="isl50"))
    result = run_cli(tiny_run, other)
    assert result.exit_code == 0, result.output + repr(result.exception)
    assert "note: the runs are on different datasets (isl50, myo5)" in result.output


def test_same_folder_names_are_told_apart(tiny_run, tmp_path):
    twin = copy_run(tiny_run, tmp_path / "elsewhere", "tiny")
    result = run_cli(tiny_run, twin)
    assert result.exit_code == 0, result.output + repr(result.exception)
    assert str(twin) + "  " in result.output


def test_not_a_run(tmp_path):
    folder = tmp_path / "not-a-run"
    folder.mkdir()
    assert_user_error(run_cli(folder), "not-a-run", "not a finished `edgekd distill` run")


def test_no_runs():
    assert_user_error(run_cli(), "give at least one run folder")


def test_a_run_given_twice(tiny_run):
    assert_user_error(run_cli(tiny_run, tiny_run), "given twice")


def test_without_matplotlib(without_matplotlib, tiny_run, tmp_path):
    assert_user_error(run_cli(tiny_run, "--out", tmp_path / "plots"), "pip install 'edgekd[plot]'")
    assert not (tmp_path / "plots").exists()


def test_older_report_without_config_fusion_or_baselines():
    report = {
        "dataset": "myo5",
        "test_accuracy": {"teachers": [0.5, 0.7], "ensemble": 0.8, "student_scratch": 0.6, "student_kd": 0.75},
        "params": {"teacher": 100, "student": 10},
        "timings_s": {"teachers": 4.0, "student_kd": 1.0},
    }
    assert comparing.method_label(report) == "mean of 2, kl"
    rows = comparing.model_rows(comparing.Run("old", Path("old"), report))
    assert [r["model"] for r in rows] == ["teacher_0", "teacher_1", "ensemble", "student_scratch", "student_kd"]
    assert rows[0]["train_time_s"] == 2.0 and rows[3]["train_time_s"] is None
    assert comparing.best_student(rows)["model"] == "student_kd"
    report["config"] = {"fusion": "weighted", "loss": "mse", "teachers": 2, "temperature": 2.0, "alpha": 0.5}
    assert comparing.method_label(report) == "weighted of 2, mse T=2 alpha=0.5"
    report["config"]["augmentation"] = {"gain_sd": 0.3, "noise_sd": 0.2, "teachers": True}
    assert (
        comparing.method_label(report) == "weighted of 2, mse T=2 alpha=0.5, augment gain=0.3 noise=0.2 (teachers too)"
    )
    # newer reports add what the fused targets decide: a row of its own, sized as the ensemble
    report["test_accuracy"]["ensemble_weighted"] = 0.85
    fused = [
        r for r in comparing.model_rows(comparing.Run("new", Path("new"), report)) if r["model"] == "ensemble_weighted"
    ]
    assert fused[0]["label"] == "ensemble (weighted fusion)" and fused[0]["params"] == 200
    assert comparing.fused_ensemble_keys({"ensemble": 0.8, "ensemble_mean": 0.8}) == []  # a repeat of the ensemble


def test_best_student_prefers_kd_on_a_tie():
    rows = [
        {"run": "a", "model": "student_scratch", "test_accuracy": 0.9},
        {"run": "a", "model": "student_kd", "test_accuracy": 0.9},
        {"run": "b", "model": "teacher_0", "test_accuracy": 1.0},
    ]
    assert comparing.best_student(rows)["model"] == "student_kd"


def test_confusion_matrix_normalised_by_row():
    matrix = comparing.confusion_matrix(np.array([0, 0, 1, 1]), np.array([0, 1, 1, 1]), 3)
    assert matrix.tolist() == [[1, 1, 0], [0, 2, 0], [0, 0, 0]]
    assert comparing.normalise_rows(matrix).tolist() == [[0.5, 0.5, 0.0], [0.0, 1.0, 0.0], [0.0, 0.0, 0.0]]


def test_out_that_is_a_file(tiny_run, tmp_path):
    file = tmp_path / "plots"
    file.write_text("")
    result = run_cli(tiny_run, "--out", file)
    assert result.exit_code == 2, result.output
    with pytest.raises(UserError, match="is a file"):
        comparing.write_plots(comparing.load_runs([tiny_run]), [], file)
