"""Shared fixtures: small datasets made on the fly, and one tiny distill run reused by export/bench tests."""

from __future__ import annotations

import csv
import shutil
from pathlib import Path

import numpy as np
import pytest

from edgekd.datasets import bundled_dataset

# The LSTM student: the fused-LSTM conversion, LSTM pruning and QAT are the paths with traps (STACK.md), so the
# shared run keeps them under test; the default convolutional student has its own run in test_pipeline.py.
TINY_RUN_ARGS = [
    *"--student edge-student --teachers 2 --epochs 3 --patience 3 --window 0.5 --hop 0.25 --quiet".split(),
]


@pytest.fixture(scope="session")
def myo5() -> Path:
    return bundled_dataset("myo5")


@pytest.fixture(scope="session")
def two_stream_dataset(tmp_path_factory) -> Path:
    """Synthetic sEMG (1,111 Hz) + IMU (148 Hz): 3 classes, 3 subjects, 3 repetitions."""
    from edgekd.data.synth import write_synthetic_dataset

    return write_synthetic_dataset(
        tmp_path_factory.mktemp("synth") / "tiny", "isl50", classes=3, subjects=3, repetitions=3, duration_s=1.2, seed=1
    )


@pytest.fixture
def dataset_copy(tmp_path, myo5):
    """A writable copy of myo5, for tests that break it on purpose."""
    dst = tmp_path / "myo5"
    shutil.copytree(myo5, dst)
    return dst


def rewrite_index(root: Path, edit) -> None:
    """Apply `edit(rows)` to recordings.csv (a list of dicts) and write it back."""
    path = root / "recordings.csv"
    with path.open(newline="") as f:
        reader = csv.DictReader(f)
        header, rows = reader.fieldnames, list(reader)
    rows = edit(rows)
    with path.open("w", newline="") as f:
        writer = csv.DictWriter(f, header)
        writer.writeheader()
        writer.writerows(rows)


TINY_CONV = """name = "tiny-conv"
description = "Conv1D(4) -> avgpool -> Dense(8), for tests: an LSTM's graph alone costs seconds per model"

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


@pytest.fixture(scope="session")
def tiny_conv(tmp_path_factory) -> str:
    """Path to a convolution-only preset for teachers and students of plumbing tests."""
    path = tmp_path_factory.mktemp("presets") / "tiny-conv.toml"
    path.write_text(TINY_CONV)
    return str(path)


@pytest.fixture(scope="session")
def tiny_run(tmp_path_factory, myo5) -> Path:
    """A real but tiny distill run on myo5 through the CLI (few epochs: tests the plumbing, not accuracy)."""
    from click.testing import CliRunner

    from edgekd.cli import main

    out = tmp_path_factory.mktemp("runs") / "tiny"
    result = CliRunner().invoke(
        main, ["distill", str(myo5), "--out", str(out), "--test-on", "2", "--val-on", "1", *TINY_RUN_ARGS]
    )
    assert result.exit_code == 0, result.output + repr(result.exception)
    return out


@pytest.fixture(scope="session")
def exported(tiny_run, tmp_path_factory) -> dict[str, Path]:
    """float32 and int8 exports of the tiny run."""
    from click.testing import CliRunner

    from edgekd.cli import main

    folder = tmp_path_factory.mktemp("models")
    paths = {}
    for variant in ("float32", "int8"):
        path = folder / f"student-{variant}.tflite"
        result = CliRunner().invoke(
            main,
            [
                "export",
                str(tiny_run),
                f"--{variant}",
                "--out",
                str(path),
                "--min-agreement",
                "0.5" if variant == "int8" else "0.99",
            ],
        )
        assert result.exit_code == 0, result.output + repr(result.exception)
        paths[variant] = path
    return paths


def random_windows(n, t, c, seed=0):
    return np.random.default_rng(seed).standard_normal((n, t, c)).astype(np.float32)


@pytest.fixture
def without_matplotlib(monkeypatch):
    """Imports of matplotlib fail, as on an install without the [plot] extra."""
    import builtins

    real_import = builtins.__import__

    def no_matplotlib(name, *args, **kwargs):
        if name.split(".")[0] == "matplotlib":
            raise ImportError(f"No module named {name!r}")
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_matplotlib)
