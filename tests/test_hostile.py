"""Hostile input and faults (issue 21): run folders from strangers, files that must not be overwritten, paths that
lead outside their folder, and damaged files that must give a one-line error, never a traceback or lost data."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest

from tests.test_bad_input import assert_user_error, run_cli


@pytest.fixture
def run_copy(tiny_run, tmp_path):
    """A writable copy of the tiny distill run."""
    copy = tmp_path / "run"
    shutil.copytree(tiny_run, copy)
    return copy


def _lambda_student(path, marker):
    """A student whose Lambda layer writes `marker` when Keras builds it, as loading does."""
    from edgekd._tf import keras

    window = keras.Input(shape=(100, 8))
    touched = keras.layers.Lambda(lambda x, p=str(marker): (__import__("pathlib").Path(p).write_text("ran"), x)[1])(
        window
    )
    model = keras.Model(window, keras.layers.Dense(5, name="logits")(keras.layers.GlobalAveragePooling1D()(touched)))
    marker.unlink(missing_ok=True)  # building it here ran the lambda once
    model.save(path, include_optimizer=False)


@pytest.mark.parametrize("command", ["export", "compare"])
def test_a_run_folder_with_a_lambda_layer_is_refused_before_it_runs(run_copy, tmp_path, command):
    marker = tmp_path / "code-ran"
    for student in ("student_kd", "student_scratch"):  # compare opens the best of them for its confusion matrix
        _lambda_student(run_copy / f"{student}.h5", marker)
    args = (
        ["export", run_copy, "--int8", "--out", tmp_path / "m.tflite"]
        if command == "export"
        else ["compare", run_copy, "--out", tmp_path / "plots"]
    )
    assert_user_error(run_cli(*args), ".h5: refused", "Lambda")
    assert not marker.exists()


def test_load_model_refuses_unknown_classes_and_truncated_files(run_copy, tmp_path):
    from edgekd.errors import UserError
    from edgekd.models.saved import load_model

    marker = tmp_path / "code-ran"
    _lambda_student(tmp_path / "evil.h5", marker)
    with pytest.raises(UserError, match="refused: it names Lambda"):
        load_model(tmp_path / "evil.h5")
    assert not marker.exists()
    data = (run_copy / "teacher_0.h5").read_bytes()
    (tmp_path / "cut.h5").write_bytes(data[: len(data) // 2])
    with pytest.raises(UserError, match="cut.h5: not a readable Keras .h5 file"):
        load_model(tmp_path / "cut.h5")
    assert load_model(run_copy / "teacher_0.h5").output_shape[-1] == 5  # the run's own files load


def test_every_shipped_preset_saves_only_safe_classes(tmp_path):
    from edgekd.models.build import build_model
    from edgekd.models.presets import available_presets, load_preset
    from edgekd.models.saved import SAFE_CLASSES, architecture_classes, save_model

    for name in available_presets():
        save_model(build_model(load_preset(name), 60, 4, 3), tmp_path / f"{name}.h5")
        assert architecture_classes(tmp_path / f"{name}.h5") <= SAFE_CLASSES, name


def test_export_never_writes_over_a_file_of_the_run(run_copy, tmp_path):
    before = (run_copy / "report.json").read_bytes()
    assert_user_error(
        run_cli("export", run_copy, "--int8", "--out", run_copy / "report.json", "--force"),
        "report.json: is a file of a distill run",
    )
    assert (run_copy / "report.json").read_bytes() == before


def test_export_replaces_an_existing_file_only_with_force_and_keeps_its_mode(run_copy, tmp_path):
    import os

    out = tmp_path / "student.tflite"
    out.write_bytes(b"mine")
    os.chmod(out, 0o640)
    assert_user_error(run_cli("export", run_copy, "--float32", "--out", out), "student.tflite: exists; add --force")
    assert out.read_bytes() == b"mine"
    result = run_cli("export", run_copy, "--float32", "--out", out, "--force")
    assert result.exit_code == 0, result.output
    assert out.read_bytes()[4:8] == b"TFL3" and (out.stat().st_mode & 0o777) == 0o640
    fresh = tmp_path / "fresh.tflite"
    assert run_cli("export", run_copy, "--float32", "--out", fresh).exit_code == 0
    umask = os.umask(0)
    os.umask(umask)
    assert fresh.stat().st_mode & 0o777 == 0o666 & ~umask  # not mkstemp's private 0600


@pytest.mark.parametrize("command", ["export", "bench"])
def test_an_output_whose_folder_is_a_file_or_unwritable_is_refused_at_once(run_copy, exported, tmp_path, command):
    import os

    blocker = tmp_path / "a-file"
    blocker.write_text("x")
    locked = tmp_path / "locked"
    locked.mkdir()
    os.chmod(locked, 0o500)
    for out, message in (
        (blocker / "m.out", "a-file is a file, not a folder"),
        (locked / "m.out", "permission denied"),
    ):
        if os.geteuid() == 0 and "permission" in message:
            continue  # root writes anywhere
        args = (
            ["export", run_copy, "--int8", "--out", out]
            if command == "export"
            else ["bench", exported["int8"], "--runs", "1", "--json", out]
        )
        assert_user_error(run_cli(*args), message)


def test_bench_json_refuses_to_replace_a_file_without_force(exported, tmp_path):
    out = tmp_path / "bench.json"
    out.write_text("precious")
    assert_user_error(
        run_cli("bench", exported["int8"], "--runs", "1", "--json", out), "bench.json: exists; add --force"
    )
    assert out.read_text() == "precious"
    assert run_cli("bench", exported["int8"], "--runs", "1", "--json", out, "--force").exit_code == 0
    assert out.read_text().startswith("[")


# ---- nothing written or read outside its folder ----------------------------------------------------------------


def test_the_recorder_never_writes_through_a_symlink(tmp_path):
    from edgekd.data.dataset import StreamSpec
    from edgekd.data.windows import Preprocessor, WindowSpec
    from edgekd.errors import UserError
    from firmware_bridge.live import Recorder

    pre = Preprocessor((StreamSpec("emg", 100.0, ("a",)),), WindowSpec(100.0, 0.5, 0.1))
    victim = tmp_path / "victim.txt"
    victim.write_text("precious")
    folder = tmp_path / "rec"
    folder.mkdir()
    (folder / "emg.csv").symlink_to(victim)
    with pytest.raises(UserError, match="emg.csv: is a symlink"):
        Recorder(folder, pre)
    (tmp_path / "linked").symlink_to(tmp_path / "elsewhere", target_is_directory=True)
    with pytest.raises(UserError, match="linked: is a symlink"):
        Recorder(tmp_path / "linked", pre)
    assert victim.read_text() == "precious"


def test_a_port_that_fails_to_open_leaves_the_record_folder_reusable(exported, tmp_path):
    folder = tmp_path / "rec"
    assert_user_error(
        run_cli("stream", "--port", tmp_path / "no-such-port", "--model", exported["int8"], "--record", folder),
        "no such port",
    )
    assert not folder.exists() or not any(folder.iterdir())


def test_a_subject_name_never_becomes_a_path_outside_out(tmp_path):
    from edgekd.distill.cv import fold_configs
    from edgekd.distill.run import DistillConfig

    out = tmp_path / "cv"
    configs = fold_configs(DistillConfig(dataset="d", out=str(out)), ["a/../../outside/x", "s2", ".."])
    assert [c.out for c in configs] == [str(out / "fold-1"), str(out / "fold-s2"), str(out / "fold-3")]
    assert all(Path(c.out).resolve().parent == out.resolve() for c in configs)


@pytest.mark.parametrize("path", ["../outside.csv", "/etc/hostname", "link.csv"])
def test_recordings_outside_the_dataset_folder_are_refused_unless_allowed(dataset_copy, tmp_path, path, monkeypatch):
    from edgekd.data.dataset import ALLOW_OUTSIDE_ENV
    from tests.conftest import rewrite_index

    monkeypatch.delenv(ALLOW_OUTSIDE_ENV, raising=False)  # and unset again after the test: --allow-outside-data sets it

    outside = tmp_path / "outside.csv"
    outside.write_text((dataset_copy / "recordings" / "R_0_C_0_EMG.csv").read_text())
    (dataset_copy / "link.csv").symlink_to(outside)
    rewrite_index(dataset_copy, lambda rows: [{**rows[0], "path": path}, *rows[1:]])
    assert_user_error(
        run_cli("data", "inspect", dataset_copy),
        f"row 2 names {path}, which is outside the dataset folder",
        "--allow-outside-data",
    )
    if path != "/etc/hostname":
        result = run_cli("--allow-outside-data", "data", "inspect", dataset_copy)
        assert result.exit_code == 0, result.output


def test_a_recording_listed_twice_is_reported_and_refused(dataset_copy, tmp_path):
    from tests.conftest import rewrite_index
    from tests.test_bad_input import distill

    shutil.copy(dataset_copy / "recordings" / "R_3_C_0_EMG.csv", dataset_copy / "recordings" / "copy.csv")
    rewrite_index(
        dataset_copy,
        lambda rows: [
            *rows,
            {**rows[0], "subject": "s9"},
            {**rows[-5], "path": "recordings/copy.csv", "repetition": "0"},
        ],
    )
    result = run_cli("data", "inspect", dataset_copy)
    assert_user_error(result, "list the same recording recordings/R_0_C_0_EMG.csv", "hold identical recordings")
    assert_user_error(distill(dataset_copy, tmp_path), "list the same recording", "1 more")


# ---- damaged files: one line, exit 2 ---------------------------------------------------------------------------


def _with_one_buffer_emptied(data: bytes, pick) -> bytes:
    """The model with the data of one constant tensor removed (`pick` chooses it from the (tensor name, data size)
    pairs) and without edgekd's metadata, so no checksum stops it before the runtime."""
    from tensorflow.lite.tools import flatbuffer_utils

    import edgekd._tf  # noqa: F401

    model = flatbuffer_utils.read_model_from_bytearray(bytearray(data))
    constants = {
        t.name.decode(): model.buffers[t.buffer]
        for t in model.subgraphs[0].tensors
        if t.buffer and model.buffers[t.buffer].data is not None and len(model.buffers[t.buffer].data)
    }
    constants[pick({name: len(buffer.data) for name, buffer in constants.items()})].data = None
    model.metadata = [m for m in model.metadata if m.name != b"edgekd"]
    return bytes(flatbuffer_utils.convert_object_to_bytearray(model))


def test_a_model_that_loads_but_fails_to_run_is_a_user_error(exported, tmp_path):
    """A missing weight of the last layer: the runtime loads the file, then says 'Input tensor 18 lacks data'."""
    bad = tmp_path / "emptied.tflite"
    bad.write_bytes(
        _with_one_buffer_emptied(
            exported["int8"].read_bytes(), lambda sizes: next(n for n in sizes if n.endswith("logits/MatMul"))
        )
    )
    assert_user_error(
        run_cli("bench", bad, "--runs", "1"), "emptied.tflite", "loads it but cannot run it", "lacks data"
    )


def test_a_model_that_crashes_the_runtime_is_a_user_error(exported, tmp_path):
    """Without its largest constant, the int8 model crashes ai-edge-litert in allocate_tensors (a segmentation fault,
    found by CI on a mutated file); edgekd tries an unsigned file in a child process first and says so in one line."""
    bad = tmp_path / "emptied.tflite"
    bad.write_bytes(_with_one_buffer_emptied(exported["int8"].read_bytes(), lambda sizes: max(sizes, key=sizes.get)))
    assert_user_error(run_cli("bench", bad, "--runs", "1"), "emptied.tflite", "crashes on it (SIGSEGV)")
    assert_user_error(run_cli("stream", "--port", "loop://", "--model", bad, "--max-windows", "1"), "crashes on it")


def test_a_model_that_hangs_or_kills_the_runtime_is_a_user_error(exported, tmp_path, monkeypatch):
    import edgekd.runtime.interpreter as interpreter

    unsigned = tmp_path / "unsigned.tflite"
    unsigned.write_bytes(_without_metadata(exported["int8"].read_bytes()))
    assert run_cli("bench", unsigned, "--runs", "1").exit_code == 0
    monkeypatch.setattr(interpreter, "_CHILD_CHECK", "import os, signal; os.kill(os.getpid(), signal.SIGABRT)")
    assert_user_error(run_cli("bench", unsigned, "--runs", "1"), "unsigned.tflite", "crashes on it (SIGABRT)")
    monkeypatch.setattr(interpreter, "_CHILD_CHECK", "import time; time.sleep(30)")
    monkeypatch.setattr(interpreter._check_in_child, "__defaults__", (0.5,))
    assert_user_error(run_cli("bench", unsigned, "--runs", "1"), "unsigned.tflite", "did not finish loading")


def test_every_byte_of_an_exported_model_is_under_its_checksum(exported, monkeypatch):
    """A changed byte anywhere (graph, weights, metadata) is refused before the runtime reads the file, or, where the
    change hides edgekd's metadata, the file goes through the child-process check like any unsigned model."""
    import edgekd.runtime.interpreter as interpreter
    from edgekd.errors import UserError

    class ChildChecked(Exception):
        pass

    def child_check(*args, **kwargs):
        raise ChildChecked

    monkeypatch.setattr(interpreter, "_check_in_child", child_check)
    rng = np.random.default_rng(0)
    refused = child_checked = 0
    for variant, path in exported.items():
        data = path.read_bytes()
        bad = path.parent / f"mutated-{variant}.tflite"
        for position in rng.choice(np.arange(8, len(data)), size=400, replace=False):
            mutated = bytearray(data)
            mutated[position] ^= int(rng.integers(1, 256))
            bad.write_bytes(bytes(mutated))
            try:
                interpreter.TFLiteModel.load(bad)
                raise AssertionError(f"{variant}: byte {position} changed, and the model loaded unchecked")
            except UserError:
                refused += 1
            except ChildChecked:
                child_checked += 1
        bad.unlink()
    assert refused >= 0.95 * (refused + child_checked), (refused, child_checked)


def _without_metadata(data: bytes) -> bytes:
    from tensorflow.lite.tools import flatbuffer_utils

    import edgekd._tf  # noqa: F401

    model = flatbuffer_utils.read_model_from_bytearray(bytearray(data))
    model.metadata = [m for m in model.metadata if m.name != b"edgekd"]
    return bytes(flatbuffer_utils.convert_object_to_bytearray(model))


@pytest.mark.parametrize(
    "case, message",
    [
        ("truncated npz", "not a readable .npz"),
        ("npy renamed npz", "is a single .npy array"),
        ("complex npz", "holds complex128 values"),
        ("text npz", "holds <U3 values"),
    ],
)
def test_damaged_npz_recordings_are_problems_not_tracebacks(tmp_path, case, message):
    root = tmp_path / "ds"
    (root / "r").mkdir(parents=True)
    (root / "dataset.toml").write_text('classes = ["x", "y"]\n[streams.emg]\nrate_hz = 200\nchannels = 2\n')
    (root / "recordings.csv").write_text("path,subject,label\nr/a.npz,s1,x\nr/b.npz,s1,y\n")
    np.savez(root / "r" / "b.npz", emg=np.ones((400, 2), np.float32))
    good = root / "r" / "good.npz"
    np.savez(good, emg=np.zeros((400, 2), np.float32))
    target = root / "r" / "a.npz"
    if case == "truncated npz":
        target.write_bytes(good.read_bytes()[:300])
    elif case == "npy renamed npz":
        np.save(tmp_path / "x.npy", np.zeros((400, 2), np.float32))
        target.write_bytes((tmp_path / "x.npy").read_bytes())
    elif case == "complex npz":
        np.savez(target, emg=np.zeros((400, 2)) + 1j)
    else:
        np.savez(target, emg=np.full((400, 2), "1.5"))
    assert_user_error(run_cli("data", "inspect", root), "a.npz", message)


def test_text_files_that_are_not_utf8_are_user_errors_and_a_bom_is_accepted(dataset_copy):
    index = dataset_copy / "recordings.csv"
    original = index.read_bytes()
    index.write_bytes(b"\xef\xbb\xbf" + original)  # a spreadsheet's byte-order mark
    assert run_cli("data", "inspect", dataset_copy).exit_code == 0
    index.write_bytes(original.replace(b"s0", b"s\xff0", 1))
    assert_user_error(run_cli("data", "inspect", dataset_copy), "recordings.csv: is not UTF-8 text")
    index.write_bytes(original)
    recording = dataset_copy / "recordings" / "R_0_C_0_EMG.csv"
    recording.write_bytes(recording.read_bytes()[:60] + b"\xff\xfe" + recording.read_bytes()[60:])
    assert_user_error(run_cli("data", "inspect", dataset_copy), "R_0_C_0_EMG.csv: is not UTF-8 text")


def test_a_stream_rate_that_leaves_no_samples_in_a_window_is_a_user_error(two_stream_dataset, tmp_path):
    copy = tmp_path / "ds"
    shutil.copytree(two_stream_dataset, copy)
    toml = (copy / "dataset.toml").read_text()
    (copy / "dataset.toml").write_text(toml.replace("rate_hz = 1111.111111111111", "rate_hz = 1e-3", 1))
    assert_user_error(
        run_cli("distill", copy, "--out", tmp_path / "run", "--epochs", "1", "--quiet"),
        "dataset.toml",
        "stream 'emg' at 0.001 Hz has 0 sample(s)",
    )


@pytest.mark.parametrize(
    "damage, message",
    [
        (("report.json", "{}"), "report.json: lacks"),
        (("report.json", "[]"), "report.json: lacks"),
        (("run.json", "{}"), "run.json: lacks"),
        (("windows.npz", None), "windows.npz: missing"),
        (("student_kd.h5", "half"), "student_kd.h5: not a readable Keras .h5 file"),
    ],
)
def test_a_damaged_run_is_refused_before_anything_is_converted(run_copy, tmp_path, damage, message):
    name, content = damage
    path = run_copy / name
    if content is None:
        path.unlink()
    elif content == "half":
        path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    else:
        path.write_text(content)
    assert_user_error(run_cli("export", run_copy, "--int8", "--out", tmp_path / "m.tflite"), message)
    assert not (tmp_path / "m.tflite").exists()
    if name == "report.json":
        assert_user_error(run_cli("compare", run_copy), message)


# ---- metadata trust --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("edit", ["normalisation", "test split", "weights"])
def test_a_model_altered_after_export_is_refused_by_bench_and_stream(exported, myo5, tmp_path, edit):
    from edgekd.export.metadata_writer import embed_metadata
    from edgekd.runtime.metadata import read_metadata

    data = exported["float32"].read_bytes()
    meta = read_metadata(data)
    assert meta["integrity"]["sha256"]
    if edit == "normalisation":
        meta["preprocessing"]["std"] = [v * 2 for v in meta["preprocessing"]["std"]]
        altered = embed_metadata(data, meta)
    elif edit == "test split":
        meta["split"]["test"] = ["0"]  # training data scored as "test"
        altered = embed_metadata(data, meta)
    else:
        from edgekd.runtime.metadata import _MODEL_BUFFERS, FlatBufferReader

        reader = FlatBufferReader(data)
        largest = max((reader.buffer_data(b) for b in reader.vector_of_tables(reader.root(), _MODEL_BUFFERS)), key=len)
        position = data.index(largest) + len(largest) // 2  # a byte in the middle of the largest weight tensor
        altered = data[:position] + bytes([data[position] ^ 0x40]) + data[position + 1 :]
    bad = tmp_path / "altered.tflite"
    bad.write_bytes(altered)
    assert_user_error(run_cli("bench", bad, "--data", myo5, "--runs", "1"), "altered.tflite: was altered after export")
    assert_user_error(
        run_cli("stream", "--port", "loop://", "--model", bad, "--max-windows", "1"), "was altered after export"
    )


def test_exported_files_carry_a_checksum_that_holds(exported):
    import hashlib

    from edgekd.runtime.metadata import UNSIGNED_DIGEST, altered, read_metadata, signed

    for path in exported.values():
        data = path.read_bytes()
        meta = read_metadata(data)
        digest = meta["integrity"]["sha256"]
        assert signed(data, meta) and not altered(data, meta)
        assert digest == hashlib.sha256(data.replace(digest.encode(), UNSIGNED_DIGEST.encode())).hexdigest()
