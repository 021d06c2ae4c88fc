"""`edgekd bench --plot`: agreement with the float model, the Pareto front, peak memory, model labels, the plot."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap

import numpy as np
import pytest
from click.testing import CliRunner

from edgekd.cli import main
from edgekd.cli.bench import bench_table
from edgekd.errors import UserError
from edgekd.runtime import frontier, memory
from edgekd.runtime.bench import BenchResult
from edgekd.runtime.frontier import (
    agreements_with_float,
    compare,
    front_steps,
    pareto_flags,
    plot_frontier,
)
from edgekd.runtime.memory import measure_peak_rss_kb
from edgekd.runtime.metadata import model_label

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def result(
    name, gzip_bytes, p50, accuracy=None, variant="int8", run="runs/a", predictions=None, **extra
) -> BenchResult:
    """A hand-made bench result: only what the frontier looks at is given."""
    return BenchResult(
        model=f"models/{name}.tflite",
        variant=variant,
        bytes=2 * gzip_bytes,
        gzip_bytes=gzip_bytes,
        init_ms=1.0,
        first_invoke_ms=1.0,
        latency_ms={"p50": p50, "p90": p50, "p99": p50},
        accuracy=accuracy,
        windows=None if predictions is None else len(predictions),
        runtime="test-runtime",
        threads=1,
        label=extra.pop("label", variant),
        run=run,
        predictions=None if predictions is None else np.asarray(predictions),
        **extra,
    )


# ---- model label ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "metadata, label",
    [
        ({"variant": "int8"}, "int8"),
        ({"variant": "int8", "compression": {"prune": {"sparsity": 0.5, "measured": 0.497}}}, "int8+prune50"),
        ({"variant": "int8", "compression": {"qat": True}}, "int8+qat"),
        ({"variant": "float32", "compression": {"low_rank": {"fraction": 0.5}}}, "float32+lowrank50"),
        ({"variant": "int8", "compression": {"qat": True, "prune": {"sparsity": 0.5}}}, "int8+prune50+qat"),
        ({"variant": "int8", "compression": {"prune": {"measured": 0.125}, "qat": False}}, "int8+prune12.5"),
        (
            {"variant": "int8", "compression": {"cluster": {"clusters": 8}, "prune": {"sparsity": 0.5}}},
            "int8+prune50+cluster8",
        ),
        ({"variant": "float32", "compression": {"cluster": {"clusters": "many"}}}, "float32+cluster"),
        (
            {"variant": "dynamic", "compression": {"cluster_weights": {"clusters": 16}, "prune": "odd"}},
            "dynamic+prune+clusterweights",
        ),
        ({"variant": "float16", "compression": ["not", "a", "dict"]}, "float16"),
        (
            {
                "variant": "int8",
                "compression": {"prune": {"sparsity": 0.5}},
                "classical_branch": {"kind": "lda", "kept": True},
            },
            "int8+prune50+lda",
        ),
        ({"variant": "int8", "classical_branch": {"kind": "lda", "kept": False}}, "int8"),
        ({}, "unknown"),
        (None, "unknown"),
    ],
)
def test_model_label(metadata, label):
    assert model_label(metadata) == label


# ---- Pareto front ---------------------------------------------------------------------------------


def test_pareto_on_accuracy_size_and_latency():
    results = [
        result("small", 100, 1.0, 0.90),
        result("fast", 300, 0.2, 0.90),
        result("accurate", 300, 1.0, 0.99),
        result("dominated", 300, 1.0, 0.90),  # "accurate" is as small and fast, and more accurate
        result("worse_everywhere", 400, 2.0, 0.80),
    ]
    assert pareto_flags(results) == [True, True, True, False, False]


def test_pareto_ties():
    twins = [result("a", 100, 1.0, 0.9), result("b", 100, 1.0, 0.9)]
    assert pareto_flags(twins) == [True, True]  # neither is strictly better on anything
    slower_twin = [result("a", 100, 1.0, 0.9), result("b", 100, 1.1, 0.9)]
    assert pareto_flags(slower_twin) == [True, False]  # tied on two, worse on one
    assert pareto_flags([result("alone", 100, 1.0)]) == [True]
    assert pareto_flags([]) == []


def test_pareto_without_accuracy_uses_size_and_latency_only():
    results = [result("small", 100, 1.0), result("fast", 200, 0.5), result("neither", 200, 1.0)]
    assert pareto_flags(results) == [True, True, False]
    # accuracy counts only when every model has one
    mixed = [result("small", 100, 1.0, None), result("big_accurate", 200, 1.0, 0.99)]
    assert pareto_flags(mixed) == [True, False]


# ---- agreement with the float model ---------------------------------------------------------------


def test_agreement_with_the_float_model_of_the_same_run():
    results = [
        result("fp32", 400, 1.0, 0.9, variant="float32", predictions=[0, 1, 2, 3]),
        result("int8", 100, 0.5, 0.8, predictions=[0, 1, 2, 0], export_agreement=0.5),
        result("other_run_int8", 100, 0.5, 0.8, run="runs/b", predictions=[0, 0, 0, 0], export_agreement=0.75),
        result("no_metadata", 100, 0.5, 0.8, run=None, predictions=[0, 1, 2, 3]),
    ]
    assert agreements_with_float(results) == [(1.0, "bench"), (0.75, "bench"), (0.75, "export"), (None, None)]


def test_agreement_prefers_the_least_compressed_float_model():
    results = [
        result(
            "fp32_pruned",
            300,
            1.0,
            variant="float32",
            predictions=[0, 0, 0, 0],
            compression={"prune": {"sparsity": 0.5}},
        ),
        result("fp32", 400, 1.0, variant="float32", predictions=[0, 1, 2, 3], compression={"qat": False}),
        result("int8", 100, 0.5, predictions=[0, 1, 2, 0]),
    ]
    assert [a for a, _ in agreements_with_float(results)] == [0.25, 1.0, 0.75]


def test_agreement_needs_data():
    results = [result("fp32", 400, 1.0, variant="float32"), result("int8", 100, 0.5, export_agreement=0.97)]
    assert agreements_with_float(results) == [(None, None), (None, None)]


def test_table_marks_pareto_models_and_export_agreement():
    results = compare(
        [
            result("fp32", 400, 1.0, 0.95, variant="float32", predictions=[0, 1], peak_rss_kb=3000),
            result(
                "pruned", 100, 0.5, 0.9, label="int8+prune50", run="runs/b", predictions=[0, 1], export_agreement=0.96
            ),
            result("bad", 500, 2.0, 0.5, predictions=[1, 1]),
        ]
    )
    assert [r.pareto for r in results] == [True, True, False]
    lines = bench_table(results).splitlines()
    assert "peak_kb" in lines[1] and "agreement" in lines[1] and "pareto" in lines[1]
    fp32, pruned, bad = lines[3:6]
    assert "3,000" in fp32 and "1.000" in fp32 and fp32.endswith("*")
    assert "int8+prune50" in pruned and "0.960 e" in pruned and pruned.endswith("*")
    assert "0.500" in bad and not bad.endswith("*")
    assert any(line.startswith("e: ") for line in lines[6:])


# ---- plot -----------------------------------------------------------------------------------------


def test_front_steps():
    points = [(300, 0.95), (100, 0.90), (200, 0.85), (300, 0.99), (400, 0.99)]
    assert front_steps(points, higher_is_better=True) == ([100, 300], [0.90, 0.99])
    assert front_steps([(1, 5.0), (2, 3.0), (3, 4.0)], higher_is_better=False) == ([1, 2], [5.0, 3.0])
    assert front_steps([], higher_is_better=True) == ([], [])


@pytest.mark.parametrize("with_accuracy", [True, False])
def test_plot_is_a_png_written_into_a_new_folder(tmp_path, with_accuracy):
    results = [
        result("a", 100, 1.0, 0.9 if with_accuracy else None),
        result("b", 200, 0.5, 0.95 if with_accuracy else None),
        result("c", 300, 2.0, 0.5 if with_accuracy else None, label="int8"),
    ]  # a shared label: file names instead
    path = tmp_path / "new" / "folder" / "frontier.png"
    assert plot_frontier(results, path) == path
    assert path.read_bytes().startswith(PNG_MAGIC)
    assert [p.name for p in path.parent.iterdir()] == ["frontier.png"]  # no temp file left


def test_plot_replaces_the_old_file_only_when_complete(tmp_path, monkeypatch):
    import edgekd.io

    path = tmp_path / "frontier.png"
    path.write_bytes(b"old plot")

    def refuse(src, dst):
        raise PermissionError(13, "Permission denied")

    monkeypatch.setattr(edgekd.io.os, "replace", refuse)
    with pytest.raises(UserError, match="cannot write the plot"):
        plot_frontier([result("a", 100, 1.0, 0.9)], path)
    assert path.read_bytes() == b"old plot"
    assert [p.name for p in tmp_path.iterdir()] == ["frontier.png"]


def test_missing_matplotlib_is_a_one_line_user_error(without_matplotlib, tmp_path):
    with pytest.raises(UserError, match=r"pip install 'edgekd\[plot\]'") as info:
        frontier.require_matplotlib()
    assert info.value.exit_code == 2
    # the CLI says so before benching anything (the model need not even exist)
    out = CliRunner().invoke(main, ["bench", str(tmp_path / "m.tflite"), "--plot", str(tmp_path / "f.png")])
    assert out.exit_code == 2 and isinstance(out.exception, SystemExit)
    assert out.output.strip().splitlines() == [f"Error: {info.value.message}"]


# ---- peak memory and the whole command --------------------------------------------------------------


def test_peak_memory_is_positive(exported):
    assert memory.peak_rss_kb() > 0
    kb = measure_peak_rss_kb(exported["int8"])
    assert isinstance(kb, int) and kb > 0


def test_bench_plot_imports_no_tensorflow(exported, myo5, tmp_path):
    png, report = tmp_path / "plots" / "frontier.png", tmp_path / "bench.json"
    code = textwrap.dedent(f"""
        import sys
        from edgekd.cli import main
        assert "matplotlib" not in sys.modules  # only --plot imports it
        try:
            main(["bench", {str(exported["float32"])!r}, {str(exported["int8"])!r}, "--data", {str(myo5)!r},
                  "--runs", "5", "--warmup", "0", "--plot", {str(png)!r}, "--json", {str(report)!r}])
        except SystemExit as e:
            assert e.code in (0, None), e.code
        assert "matplotlib" in sys.modules
        leaked = [m for m in ("tensorflow", "tf_keras", "keras", "tensorflow_model_optimization") if m in sys.modules]
        assert not leaked, leaked
    """)
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "pareto" in proc.stdout and f"wrote {png}" in proc.stdout
    assert png.read_bytes().startswith(PNG_MAGIC)
    fp32, int8 = json.loads(report.read_text())
    assert fp32["label"] == "float32" and int8["label"] == "int8"
    assert fp32["agreement_with_float"] == 1.0 and fp32["agreement_source"] == "bench"
    assert 0 <= int8["agreement_with_float"] <= 1 and int8["agreement_source"] == "bench"
    assert fp32["peak_rss_kb"] > 0 and int8["peak_rss_kb"] > 0
    assert isinstance(fp32["pareto"], bool) and int8["pareto"] is True  # the smallest is never dominated
