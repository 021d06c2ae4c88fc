"""Atomic writes: a failure midway leaves the old file intact and no temporary file behind."""

from __future__ import annotations

import json

import pytest

from edgekd.io import write_json_atomic


class Unserialisable:
    pass


def test_failed_write_keeps_the_previous_file(tmp_path):
    path = tmp_path / "report.json"
    write_json_atomic(path, {"ok": 1})
    with pytest.raises(TypeError):
        write_json_atomic(path, {"ok": Unserialisable()})
    assert json.loads(path.read_text()) == {"ok": 1}
    assert [p.name for p in tmp_path.iterdir()] == ["report.json"]
