"""`edgekd export --target mcu`: the C source and header beside the .tflite, the check under TensorFlow Lite Micro's
own interpreter (ops, outputs beside LiteRT's, the smallest tensor arena), and `edgekd bench --runtime tflm`."""

from __future__ import annotations

import builtins
import re
import shutil
import subprocess
import sys

import pytest
from click.testing import CliRunner

from edgekd.cli import main
from edgekd.export import formats
from edgekd.export.c_source import c_identifier, resolver_method
from edgekd.runtime import tflm

needs_tflm = pytest.mark.skipif(tflm.tflm_runtime() is None, reason=f"tflite-micro not installed ({tflm.INSTALL})")


def run_cli(*args):
    return CliRunner().invoke(main, [str(a) for a in args])


@pytest.fixture(scope="module")
def mcu_export(tiny_run, tmp_path_factory):
    """The tiny run (an LSTM student: TFLM's LSTM kernel is the one that crashes in a short arena) for --target mcu."""
    path = tmp_path_factory.mktemp("mcu") / "model.tflite"
    result = run_cli("export", tiny_run, "--target", "mcu", "--out", path, "--min-agreement", "0.5")
    assert result.exit_code == 0, result.output + repr(result.exception)
    return path, result.output


@pytest.fixture
def without_tflm(monkeypatch):
    """Imports of tflite_micro fail, as on an install without the [mcu] extra."""
    real_import = builtins.__import__

    def no_tflm(name, *args, **kwargs):
        if name.split(".")[0] == "tflite_micro":
            raise ImportError(f"No module named {name!r}")
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_tflm)


def c_array(source: str) -> bytes:
    body = source.split("[] = {", 1)[1].split("};", 1)[0]
    return bytes(int(h, 16) for h in re.findall(r"0x([0-9a-f]{2})", body))


def header_value(header: str, name: str) -> int:
    return int(re.search(rf"{name} = (\d+);", header).group(1))


def test_the_formats_table_drives_the_command_line():
    help_text = " ".join(run_cli("export", "--help").output.split())  # unwrapped
    for row in formats.VARIANTS:
        assert f"--{row.name}" in help_text and f"{row.min_agreement:.2f} {row.name}" in help_text
    assert f"[{'|'.join(formats.TARGETS)}]" in help_text
    assert [f.name for f in formats.chosen_by("mcu")] == ["int8", "tflm"]
    assert formats.find("tflm", variant=False).function("converter").__name__ == "write_c_source"


@pytest.mark.parametrize(
    "op, method",
    [
        ("CONV_2D", "AddConv2D"),
        ("DEPTHWISE_CONV_2D", "AddDepthwiseConv2D"),
        ("AVERAGE_POOL_2D", "AddAveragePool2D"),
        ("FULLY_CONNECTED", "AddFullyConnected"),
        ("UNIDIRECTIONAL_SEQUENCE_LSTM", "AddUnidirectionalSequenceLSTM"),
        ("BATCH_TO_SPACE_ND", "AddBatchToSpaceNd"),
        ("L2_POOL_2D", "AddL2Pool2D"),
        ("STRIDED_SLICE", "AddStridedSlice"),
    ],
)
def test_resolver_methods_are_spelled_as_in_micro_mutable_op_resolver(op, method):
    assert resolver_method(op) == method


def test_c_identifiers_follow_xxd():
    assert c_identifier("model.tflite") == "model_tflite"
    assert c_identifier("2-fast.tflite") == "_2_fast_tflite"


@needs_tflm
def test_mcu_writes_the_array_and_the_ops_of_the_tflite(mcu_export):
    from edgekd.export.convert import builtin_op_names

    path, output = mcu_export
    model = path.read_bytes()
    source, header = path.with_suffix(".cc").read_text(), path.with_suffix(".h").read_text()
    assert "--target mcu: also model.cc and model.h" in output
    assert c_array(source) == model and header_value(source, "model_tflite_len") == len(model)
    assert "alignas(16) const unsigned char model_tflite[]" in source
    added = re.findall(r"resolver\.(Add\w+)\(\)", header)
    assert added == [resolver_method(op) for op in builtin_op_names(model)]
    assert header_value(header, "model_tflite_op_count") == len(added)


@needs_tflm
def test_mcu_measures_the_smallest_arena_and_prints_it(mcu_export):
    path, output = mcu_export
    arena = header_value(path.with_suffix(".h").read_text(), "model_tflite_arena_size")
    assert f"tensor arena {arena:,} bytes" in output
    assert arena > 0 and arena % tflm.ARENA_ALIGNMENT == 0
    tflm.load_tflm(path, arena_size=arena)  # it loads in what the header declares...
    # ...and not in one step less: a child bisects between two steps below and the measured size (a short arena
    # can crash TFLM's LSTM kernel, which counts as too small).
    lines, _, _ = tflm._search_in_child(path, arena - 2 * tflm.ARENA_ALIGNMENT, arena)
    assert lines[-1] == f"arena {arena}"


@needs_tflm
def test_int8_outputs_under_tflm_are_litert_outputs_within_one_step(mcu_export, tiny_run):
    """Bit-identity is measured, not assumed (docs/mcu.md): LiteRT's XNNPACK requantizes int8 in float and TFLM's
    reference kernels in fixed point, so an output may differ by one quantization step; export prints the count."""
    from edgekd.distill.run import load_run_windows
    from edgekd.runtime.interpreter import TFLiteModel

    path, output = mcu_export
    windows = load_run_windows(tiny_run)["test_x"]
    litert = TFLiteModel.load(path).predict_logits(windows)
    check = tflm.verify_against_litert(path, windows, litert)
    assert check.integer and check.largest_difference <= 1 and check.agreement >= 0.99
    assert check.describe() in output


@needs_tflm
def test_an_op_tflm_lacks_is_named(tmp_path):
    from edgekd._tf import tf

    inputs = tf.keras.Input((4,), batch_size=1)
    model = tf.keras.Model(inputs, tf.keras.layers.Dense(2)(tf.keras.layers.Lambda(tf.math.sign)(inputs)))
    path = tmp_path / "sign.tflite"
    path.write_bytes(tf.lite.TFLiteConverter.from_keras_model(model).convert())
    result = run_cli("bench", path, "--runtime", "tflm", "--runs", "1", "--warmup", "0")
    assert result.exit_code == 2, result.output
    assert "has no kernel for the op SIGN" in result.output and "Traceback" not in result.output


def test_a_failed_tflm_check_leaves_no_file(tiny_run, tmp_path, monkeypatch):
    """An op TFLM lacks, found while export checks the file: one line naming it, and nothing written."""

    def missing_sign(path, *args):
        raise tflm._missing_op_error(path, "SIGN")

    monkeypatch.setattr(tflm, "verify_against_litert", missing_sign)
    result = run_cli(
        "export", tiny_run, "--target", "mcu", "--out", tmp_path / "model.tflite", "--min-agreement", "0.5"
    )
    assert result.exit_code == 2 and "has no kernel for the op SIGN" in result.output, result.output
    assert str(tmp_path / "model.tflite") in result.output and ".tmp" not in result.output  # the file asked for
    assert not list(tmp_path.iterdir())


def test_ops_that_are_not_builtins_are_refused_for_firmware(tmp_path):
    """A custom op has no MicroMutableOpResolver method; the header would not compile, so none is written."""
    from edgekd.errors import UserError
    from edgekd.export.c_source import write_c_source

    model = tmp_path / "model.tflite"
    model.write_bytes(b"\0" * 64)
    files = (tmp_path / "model.cc", tmp_path / "model.h")
    with pytest.raises(UserError, match="not TensorFlow Lite builtins \\(MyCustomOp\\)"):
        write_c_source(model, files, ["CONV_2D", "MyCustomOp"], 1024, "test")
    assert not any(f.exists() for f in files)


def test_without_tflite_micro_the_c_files_are_written_and_the_check_is_skipped(tiny_run, tmp_path, without_tflm):
    path = tmp_path / "model.tflite"
    result = run_cli("export", tiny_run, "--target", "mcu", "--out", path, "--min-agreement", "0.5")
    assert result.exit_code == 0, result.output + repr(result.exception)
    assert "TensorFlow Lite Micro check was skipped" in result.output and tflm.INSTALL in result.output
    header = path.with_suffix(".h").read_text()
    assert "model_tflite_arena_size: not measured" in header and c_array(path.with_suffix(".cc").read_text())


def test_an_existing_c_file_is_kept_without_force(tiny_run, tmp_path):
    path = tmp_path / "model.tflite"
    path.with_suffix(".h").write_text("// mine\n")
    result = run_cli("export", tiny_run, "--target", "mcu", "--out", path)
    assert result.exit_code == 2 and "model.h: exists; add --force" in result.output
    assert path.with_suffix(".h").read_text() == "// mine\n" and not path.exists()


def test_out_cannot_be_the_c_source(tiny_run, tmp_path):
    result = run_cli("export", tiny_run, "--target", "mcu", "--out", tmp_path / "model.cc")
    assert result.exit_code == 2 and "give --out a .tflite name" in result.output
    assert not list(tmp_path.iterdir())


def test_bench_tflm_without_tflite_micro_says_how_to_get_it(exported, without_tflm):
    result = run_cli("bench", exported["int8"], "--runtime", "tflm")
    assert result.exit_code == 2 and tflm.INSTALL in result.output


@needs_tflm
def test_bench_tflm_reports_the_arena_beside_bytes_and_latency(exported):
    result = run_cli("bench", exported["int8"], "--runtime", "tflm", "--runs", "5", "--warmup", "1")
    assert result.exit_code == 0, result.output + repr(result.exception)
    title, header, _, row = result.output.splitlines()[:4]
    assert title.startswith("runtime: tflite-micro") and header.split()[:4] == ["model", "variant", "bytes", "arena"]
    _, arena = tflm.load_tflm(exported["int8"])
    assert row.split()[3] == f"{arena:,}"


@needs_tflm
def test_bench_tflm_imports_no_tensorflow(exported):
    """The device side: tflite-micro is not TensorFlow, and nothing on the way to it may pull TensorFlow in."""
    code = (
        "import sys\n"
        "from edgekd.cli import main\n"
        f"try: main(['bench', {str(exported['int8'])!r}, '--runtime', 'tflm', '--runs', '2', '--warmup', '0'])\n"
        "except SystemExit as e: assert not e.code, e.code\n"
        "assert not [m for m in sys.modules if m.split('.')[0] == 'tensorflow'], 'tensorflow imported'\n"
    )
    run = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert run.returncode == 0, run.stdout + run.stderr


@needs_tflm
def test_generated_c_compiles_and_holds_the_model(mcu_export, tmp_path):
    """The .cc and .h with the host's C++ compiler: the array is the file, the op function adds exactly its ops."""
    cxx = shutil.which("c++") or shutil.which("g++") or shutil.which("clang++")
    if cxx is None:
        pytest.skip("no C++ compiler")
    path, _ = mcu_export
    header = path.with_suffix(".h").read_text()
    methods = re.findall(r"resolver\.(Add\w+)\(\)", header)
    fake = "\n".join(f'  int {m}() {{ std::puts("{m}"); return 0; }}' for m in methods)
    main_cc = tmp_path / "main.cc"
    main_cc.write_text(
        f"""#include <cstdio>
#include "model.h"
struct Resolver {{
{fake}
}};
int main() {{
  Resolver resolver;
  if (!model_tflite_add_ops(resolver)) return 1;
  std::printf("%u %u\\n", model_tflite_len, model_tflite_arena_size);
  std::FILE *out = std::fopen("{tmp_path / "copy.tflite"}", "wb");
  std::fwrite(model_tflite, 1, model_tflite_len, out);
  std::fclose(out);
  return reinterpret_cast<unsigned long>(model_tflite) % 16;  // aligned as declared
}}
"""
    )
    binary = tmp_path / "check"
    subprocess.run(
        [cxx, "-std=c++11", "-Wall", "-Werror", "-I", path.parent, main_cc, path.with_suffix(".cc"), "-o", binary],
        check=True,
    )
    run = subprocess.run([binary], capture_output=True, text=True)
    assert run.returncode == 0, run.stdout + run.stderr
    *added, sizes = run.stdout.splitlines()
    assert added == methods
    assert sizes == f"{path.stat().st_size} {header_value(header, 'model_tflite_arena_size')}"
    assert (tmp_path / "copy.tflite").read_bytes() == path.read_bytes()
