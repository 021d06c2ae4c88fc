"""Sessions, several held-out groups, and `--where` selections of recordings (no TensorFlow)."""

from __future__ import annotations

import csv

import pytest

from edgekd.data.dataset import load_dataset
from edgekd.data.splits import parse_where, select_recordings, split_recordings
from edgekd.errors import UserError


def _with_columns(root, **columns):
    """Rewrite recordings.csv with extra columns, each a function of (row number, row) -> value."""
    path = root / "recordings.csv"
    with path.open(newline="") as f:
        rows = list(csv.DictReader(f))
    header = [*rows[0].keys(), *[c for c in columns if c not in rows[0]]]
    for i, row in enumerate(rows):
        row.update({name: value(i, row) for name, value in columns.items()})
    with path.open("w", newline="") as f:
        writer = csv.DictWriter(f, header)
        writer.writeheader()
        writer.writerows(rows)


def test_split_by_session_holds_out_every_recording_of_that_session(dataset_copy):
    _with_columns(dataset_copy, session=lambda i, row: f"day{int(row['repetition']) % 3}")
    ds = load_dataset(dataset_copy)
    assert ds.sessions == ["day0", "day1", "day2"]
    split = split_recordings(ds, "session", ["day2"], ["day1"])
    assert split.groups == {"train": ["day0"], "val": ["day1"], "test": ["day2"]}
    assert {ds.recordings[i].session for i in split.indices["test"]} == {"day2"}
    assert split.to_dict(ds)["test"] == ["day2"]


def test_split_by_session_without_the_column_says_how_to_fix_it(myo5):
    with pytest.raises(UserError, match="--split session needs a 'session' value on every row"):
        split_recordings(load_dataset(myo5), "session")


def test_several_subjects_are_held_out_and_validation_defaults_to_a_share_of_them(dataset_copy):
    _with_columns(dataset_copy, subject=lambda i, row: f"p{i % 20:02d}")
    ds = load_dataset(dataset_copy)
    split = split_recordings(ds, "subject", ["p03", "p07"])
    assert split.groups["test"] == ["p03", "p07"]
    assert split.groups["val"] == ["p17", "p18", "p19"]  # 15% of 20 people, the last ones not tested
    assert {ds.recordings[i].subject for i in split.indices["test"]} == {"p03", "p07"}


def test_where_selects_by_and_across_keys_and_or_within_one(dataset_copy):
    _with_columns(dataset_copy, subject=lambda i, row: f"p{i % 4}")
    ds = load_dataset(dataset_copy)
    where = parse_where(["subject=p1,p2", "repetition=3"])
    chosen = select_recordings(ds, where)
    assert chosen and all(
        ds.recordings[i].subject in ("p1", "p2") and ds.recordings[i].repetition == "3" for i in chosen
    )
    expected = [i for i, r in enumerate(ds.recordings) if r.subject in ("p1", "p2") and r.repetition == "3"]
    assert chosen == expected


@pytest.mark.parametrize(
    "clauses, message",
    [
        (["colour=red"], "KEY one of subject, repetition, session"),
        (["subject"], "write KEY=V1,V2"),
        (["subject=a", "subject=b"], "names subject twice"),
    ],
)
def test_malformed_where_is_refused(clauses, message):
    with pytest.raises(UserError, match=message):
        parse_where(clauses)


def test_where_names_the_values_that_exist(myo5):
    ds = load_dataset(myo5)
    with pytest.raises(UserError, match=r"no repetition 7 \(there are: 0, 1, 2, 3\)"):
        select_recordings(ds, parse_where(["repetition=7"]))
    with pytest.raises(UserError, match="has no 'session' column.*select by subject or repetition"):
        select_recordings(ds, parse_where(["session=1"]))


def test_where_that_leaves_nothing_says_so(dataset_copy):
    _with_columns(dataset_copy, subject=lambda i, row: "early" if row["repetition"] in ("0", "1") else "late")
    ds = load_dataset(dataset_copy)
    with pytest.raises(UserError, match="no recording has subject=early and repetition=3"):
        select_recordings(ds, parse_where(["subject=early", "repetition=3"]))


# bench --where: a model measured on recordings other than its recorded test split.


def _bench_json(exported, data, tmp_path, *where):
    import json

    from click.testing import CliRunner

    from edgekd.cli import main

    out = tmp_path / "bench.json"
    result = CliRunner().invoke(
        main,
        [
            "bench",
            str(exported["float32"]),
            "--data",
            str(data),
            "--runs",
            "2",
            "--warmup",
            "0",
            "--json",
            str(out),
            "--force",
            *[a for w in where for a in ("--where", w)],
        ],
    )
    return result, (json.loads(out.read_text())[0] if result.exit_code == 0 else None)


def test_bench_where_measures_the_chosen_recordings(exported, myo5, tmp_path):
    from edgekd.runtime.bench import held_out_windows
    from edgekd.runtime.interpreter import TFLiteModel

    result, row = _bench_json(exported, myo5, tmp_path, "repetition=3")
    assert result.exit_code == 0, result.output
    assert "accuracy: on the recordings of" in result.output and "repetition=3" in result.output
    model = TFLiteModel.load(exported["float32"])
    x, y = held_out_windows(model, load_dataset(myo5), {"repetition": ["3"]})
    assert row["windows"] == len(y) and row["accuracy"] == pytest.approx(
        float((model.predict_logits(x).argmax(1) == y).mean())
    )
    _, recorded = _bench_json(exported, myo5, tmp_path)  # without --where: the recorded test split (repetition 2)
    assert recorded["windows"] != row["windows"] or recorded["accuracy"] != row["accuracy"]


def test_bench_where_maps_labels_by_name_in_a_dataset_with_another_class_order(exported, dataset_copy, myo5, tmp_path):
    toml = (dataset_copy / "dataset.toml").read_text()
    classes = load_dataset(myo5).classes
    (dataset_copy / "dataset.toml").write_text(
        toml.replace(repr(list(classes)).replace("'", '"'), repr(list(reversed(classes))).replace("'", '"'))
    )
    assert load_dataset(dataset_copy).classes == tuple(reversed(classes))
    _, original = _bench_json(exported, myo5, tmp_path, "repetition=2")
    _, reordered = _bench_json(exported, dataset_copy, tmp_path, "repetition=2")
    assert reordered["accuracy"] == pytest.approx(original["accuracy"])


@pytest.mark.parametrize(
    "where, message",
    [
        ("session=1", "has no 'session' column"),
        ("subject=nobody", "no subject nobody (there are: s0)"),
    ],
)
def test_bench_where_errors_name_the_key_and_the_values(exported, myo5, tmp_path, where, message):
    from tests.test_bad_input import assert_user_error

    result, _ = _bench_json(exported, myo5, tmp_path, where)
    assert_user_error(result, message)


def test_bench_where_refuses_recordings_of_classes_the_model_lacks(exported, dataset_copy, tmp_path):
    from tests.test_bad_input import assert_user_error

    toml = (dataset_copy / "dataset.toml").read_text()
    (dataset_copy / "dataset.toml").write_text(toml.replace('"close"', '"grip"'))
    _with_columns(dataset_copy, label=lambda i, row: "grip" if row["label"] == "close" else row["label"])
    result, _ = _bench_json(exported, dataset_copy, tmp_path, "repetition=2")
    assert_user_error(result, "labelled grip", "does not know")


def test_bench_where_needs_data(exported):
    from click.testing import CliRunner

    from edgekd.cli import main
    from tests.test_bad_input import assert_user_error

    assert_user_error(CliRunner().invoke(main, ["bench", str(exported["int8"]), "--where", "subject=s0"]), "add --data")


def test_held_out_table_lists_each_person_and_their_mean_and_sd():
    from edgekd.cli.distill import held_out_table

    report = {
        "held_out": {
            "by": "subject",
            "groups": ["ann", "bob"],
            "test_accuracy": {
                "teachers": [{"ann": 0.8, "bob": 0.6}, {"ann": 1.0, "bob": 0.6}],
                "ensemble": {"ann": 0.9, "bob": 0.7},
                "student_scratch": {"ann": 0.5, "bob": 0.7},
                "student_kd": {"ann": 0.95, "bob": 0.75},
                "lda": {"ann": 0.6, "bob": 0.6},
                "random_forest": {"ann": 0.7, "bob": 0.5},
            },
        }
    }
    text = held_out_table(report)
    lines = text.splitlines()
    assert "test accuracy per held-out subject" in lines[0]
    ann = next(line for line in lines if line.startswith("ann"))
    assert "0.9" in ann and "0.95" in ann  # the teachers' mean (0.9) and the KD student
    assert "0.850 ± 0.141" in text  # KD over the two people: mean 0.85, sd 0.1414
    assert (
        held_out_table({"held_out": {**report["held_out"], "groups": ["ann"]}}) is None
    )  # one person: the main table says it
