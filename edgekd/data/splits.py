"""Train / validation / test splits of recordings: by subject, repetition or session, or stratified random; and
`--where KEY=V1,V2` selections of recordings by the same columns.

Splits are made over recordings, never over windows, so windows of one recording never land in two
parts (overlapping windows of one recording in train and test would inflate accuracy).
"""

from __future__ import annotations

from dataclasses import dataclass
from operator import attrgetter

import numpy as np

from edgekd.data.dataset import GROUP_KEYS, Dataset, natural_sorted
from edgekd.errors import UserError

METHODS = (*GROUP_KEYS, "random")
PARTS = ("train", "val", "test")
# Share of the groups held out for validation by default (at least one): with many people, one validation person
# is one draw of a quantity that varies by 15 points between people, and early stopping and every choice made on
# validation follow that one person.
VAL_SHARE = 0.15


@dataclass(frozen=True)
class Split:
    method: str
    indices: dict[str, list[int]]  # part -> recording indices into dataset.recordings
    groups: dict[str, list[str]]  # part -> subjects, repetitions or sessions (empty lists for random)

    def to_dict(self, dataset: Dataset) -> dict:
        out = {"method": self.method}
        for part in PARTS:
            if self.method == "random":
                out[part] = [dataset.recordings[i].path for i in self.indices[part]]
            else:
                out[part] = self.groups[part]
        return out


def default_method(dataset: Dataset) -> str:
    for key in GROUP_KEYS:
        if len(dataset.values(key)) >= 3:
            return key
    return "random"


def split_recordings(
    dataset: Dataset,
    method: str | None = None,
    test_on: list[str] | None = None,
    val_on: list[str] | None = None,
    seed: int = 0,
) -> Split:
    """Split the dataset's recordings. `test_on` / `val_on` name held-out subjects, repetitions or sessions; by
    default the last one (in natural order) is the test group and the ones before it validation (VAL_SHARE of the
    groups, at least one)."""
    method = method or default_method(dataset)
    if method not in METHODS:
        raise UserError(f"unknown split '{method}'; use one of {', '.join(METHODS)}")
    if method == "random":
        if test_on or val_on:
            raise UserError(
                "--test-on/--val-on name subjects, repetitions or sessions; they do not apply to --split random"
            )
        return _random_split(dataset, seed)
    return _group_split(dataset, method, test_on, val_on)


def _group_of(dataset: Dataset, method: str):
    if any(r.group(method) is None for r in dataset.recordings):
        others = " or ".join(m for m in METHODS if m != method)
        raise UserError(
            f"{dataset.index_path}: --split {method} needs a '{method}' value on every row; "
            f"add the column or use --split {others}"
        )
    return lambda r: r.group(method)


def _group_split(dataset: Dataset, method: str, test_on, val_on) -> Split:
    group_of = _group_of(dataset, method)
    groups = natural_sorted({group_of(r) for r in dataset.recordings})
    noun = f"{method}s"
    for asked in (test_on or []) + (val_on or []):
        if asked not in groups:
            raise UserError(
                f"{dataset.index_path}: no {method} '{asked}' (there are: {', '.join(groups)}); fix --test-on/--val-on"
            )
    test = list(test_on) if test_on else groups[-1:]
    val = list(val_on) if val_on else [g for g in groups if g not in test][-default_val_count(len(groups)) :]
    if set(test) & set(val):
        raise UserError(f"the same {method} is in --test-on and --val-on; hold out different ones")
    train = [g for g in groups if g not in test and g not in val]
    if not train:
        raise UserError(
            f"{dataset.index_path}: --split {method} needs at least 3 {noun} (train, validation, test); "
            f"it has {len(groups)}: use --split random or another split"
        )
    part_of = {g: "test" for g in test} | {g: "val" for g in val} | {g: "train" for g in train}
    indices = {part: [] for part in PARTS}
    for i, rec in enumerate(dataset.recordings):
        indices[part_of[group_of(rec)]].append(i)
    return Split(method, indices, {"train": train, "val": val, "test": test})


def default_val_count(n_groups: int) -> int:
    return max(1, round(VAL_SHARE * n_groups))


def _random_split(dataset: Dataset, seed: int, val_fraction=0.2, test_fraction=0.2) -> Split:
    """Stratified by class: each class contributes recordings to every part."""
    rng = np.random.default_rng(seed)
    indices = {part: [] for part in PARTS}
    for label in dataset.classes:
        members = [i for i, r in enumerate(dataset.recordings) if r.label == label]
        if len(members) < 3:
            raise UserError(
                f"{dataset.index_path}: class '{label}' has {len(members)} recording(s); --split random needs "
                f"at least 3 per class (train, validation, test); add recordings or drop the class"
            )
        members = list(rng.permutation(members))
        n_test = max(1, round(test_fraction * len(members)))
        n_val = max(1, round(val_fraction * len(members)))
        indices["test"] += members[:n_test]
        indices["val"] += members[n_test : n_test + n_val]
        indices["train"] += members[n_test + n_val :]
    return Split("random", {p: sorted(int(i) for i in v) for p, v in indices.items()}, {p: [] for p in PARTS})


def split_indices_from_dict(dataset: Dataset, split: dict, part: str) -> list[int]:
    """Recording indices of one part of a split recorded by `Split.to_dict` (e.g. inside an exported model)."""
    members = set(split.get(part) or [])
    method = split.get("method")
    if method == "random":
        key = attrgetter("path")
    elif method in GROUP_KEYS:
        key = _group_of(dataset, method)
    else:
        raise UserError(f"unknown split method {method!r} recorded in the model; re-export it with `edgekd export`")
    return [i for i, r in enumerate(dataset.recordings) if key(r) in members]


def parse_where(clauses) -> dict[str, list[str]]:
    """`--where KEY=V1,V2` clauses (repeatable) -> {key: [values]}; KEY is one of GROUP_KEYS."""
    where: dict[str, list[str]] = {}
    for clause in clauses or ():
        key, sep, values = str(clause).partition("=")
        key = key.strip()
        chosen = [v.strip() for v in values.split(",") if v.strip()]
        if not sep or key not in GROUP_KEYS or not chosen:
            raise UserError(
                f"--where {clause}: write KEY=V1,V2 with KEY one of {', '.join(GROUP_KEYS)}, e.g. --where "
                f"subject=female3,male7"
            )
        if key in where:
            raise UserError(f"--where names {key} twice; list its values once, comma-separated (--where {key}=V1,V2)")
        where[key] = chosen
    return where


def select_recordings(dataset: Dataset, where: dict[str, list[str]]) -> list[int]:
    """Indices of the recordings whose every `where` key has one of its values (AND across keys, OR within one).
    A UserError names the key and the values that exist when a key or value is missing or nothing is left."""
    for key, values in where.items():
        existing = dataset.values(key)
        if not existing:
            raise UserError(
                f"{dataset.index_path}: has no '{key}' column, so --where {key}=... selects nothing; "
                f"select by {' or '.join(k for k in GROUP_KEYS if dataset.values(k))}"
            )
        unknown = [v for v in values if v not in existing]
        if unknown:
            raise UserError(
                f"{dataset.index_path}: no {key} {', '.join(unknown)} (there are: {', '.join(existing)}); fix --where "
                f"{key}=..."
            )
    chosen = [i for i, r in enumerate(dataset.recordings) if all(r.group(k) in vs for k, vs in where.items())]
    if not chosen:
        described = " and ".join(f"{k}={','.join(vs)}" for k, vs in where.items())
        raise UserError(
            f"{dataset.index_path}: no recording has {described}; each key's values exist, but not together"
        )
    return chosen
