"""Device side: metadata in the .tflite file, the runtime lookup, and inference without TensorFlow."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest

from edgekd.errors import UserError
from edgekd.runtime import interpreter as rt
from edgekd.runtime.interpreter import TFLiteModel, load_interpreter_class
from edgekd.runtime.metadata import ModelFormatError, find_metadata_buffer, read_metadata

REPO = Path(__file__).resolve().parents[1]
T, C, K = 20, 3, 5


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    """A tiny Conv1D -> LSTM -> Dense model, its fp32 and full-int8 .tflite files and test windows."""
    os.environ["TF_USE_LEGACY_KERAS"] = "1"
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    import tensorflow as tf
    import tf_keras as keras

    keras.utils.set_random_seed(0)
    model = keras.Sequential(
        [
            keras.layers.Input(shape=(T, C)),
            keras.layers.Conv1D(4, 3, activation="relu"),
            keras.layers.LSTM(8),
            keras.layers.Dense(K),
        ]
    )
    rng = np.random.default_rng(0)
    # batch 1 through a concrete function, with the model passed too, so the LSTM fuses (STACK.md)
    cf = tf.function(lambda x: model(x, training=False)).get_concrete_function(tf.TensorSpec([1, T, C], tf.float32))

    converter = tf.lite.TFLiteConverter.from_concrete_functions([cf], model)
    fp32 = converter.convert()

    def representative():
        for _ in range(50):
            yield [rng.normal(size=(1, T, C)).astype(np.float32)]

    converter = tf.lite.TFLiteConverter.from_concrete_functions([cf], model)
    converter.optimizations = [tf.lite.Optimize.DEFAULT]
    converter.representative_dataset = representative
    converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
    converter.inference_input_type = tf.int8
    converter.inference_output_type = tf.int8
    int8 = converter.convert()

    windows = rng.normal(size=(40, T, C)).astype(np.float32)
    directory = tmp_path_factory.mktemp("models")
    (directory / "fp32.tflite").write_bytes(fp32)
    (directory / "int8.tflite").write_bytes(int8)
    return {
        "dir": directory,
        "fp32": fp32,
        "int8": int8,
        "windows": windows,
        "keras_logits": model.predict(windows, verbose=0),
    }


def _metadata_names(tflite_bytes: bytes) -> list[str]:
    from tensorflow.lite.tools import flatbuffer_utils

    model = flatbuffer_utils.read_model_from_bytearray(bytearray(tflite_bytes))
    return [m.name.decode() for m in model.metadata]


# ---- metadata ----------------------------------------------------------------------------------


def test_model_without_metadata_reads_none(models):
    assert read_metadata(models["fp32"]) is None
    assert read_metadata(models["int8"]) is None
    assert find_metadata_buffer(models["fp32"], "min_runtime_version")  # the converter's own entry


def test_metadata_round_trip_and_replace(models):
    from edgekd.export.metadata_writer import embed_metadata

    meta = {"classes": ["Grüße", "日本", "✋"], "window": [T, C], "scale": 0.5, "nested": {"a": None}}
    once = embed_metadata(models["fp32"], meta)
    assert read_metadata(once) == meta

    again = embed_metadata(once, {"version": 2})
    assert read_metadata(again) == {"version": 2}
    names = _metadata_names(again)
    assert names.count("edgekd") == 1
    assert "min_runtime_version" in names  # the converter's entries are kept
    assert len(again) <= len(once) + 64  # the old payload was replaced, not kept alongside

    with pytest.raises(TypeError):
        embed_metadata(models["fp32"], ["not", "a", "dict"])
    with pytest.raises(ValueError):
        embed_metadata(b"not a model at all", {})


def test_embedded_model_runs_identically(models, tmp_path):
    from edgekd.export.metadata_writer import embed_metadata

    for kind in ("fp32", "int8"):
        path = tmp_path / f"{kind}_meta.tflite"
        path.write_bytes(embed_metadata(models[kind], {"kind": kind}))
        with_meta = TFLiteModel.load(path)
        plain = TFLiteModel.load(models["dir"] / f"{kind}.tflite")
        assert with_meta.metadata == {"kind": kind} and plain.metadata is None
        np.testing.assert_array_equal(
            with_meta.predict_logits(models["windows"]), plain.predict_logits(models["windows"])
        )


def test_read_metadata_on_every_truncation_raises_format_error(models):
    from edgekd.export.metadata_writer import embed_metadata

    data = embed_metadata(models["fp32"], {"x": 1})
    for n in range(len(data)):
        try:
            read_metadata(data[:n])
        except ModelFormatError:
            pass  # never IndexError or struct.error
    rng = np.random.default_rng(1)
    for _ in range(200):  # random bytes behind a valid identifier
        junk = bytearray(rng.integers(0, 256, size=int(rng.integers(8, 300)), dtype=np.uint8).tobytes())
        junk[4:8] = b"TFL3"
        try:
            read_metadata(bytes(junk))
        except ModelFormatError:
            pass


# ---- inference ---------------------------------------------------------------------------------


def test_runtime_lookup_prefers_ai_edge_litert():
    cls, name = load_interpreter_class()
    assert name.startswith("ai-edge-litert ")
    assert cls.__module__.startswith("ai_edge_litert")


def test_no_runtime_is_a_user_error(monkeypatch):
    monkeypatch.setattr(rt, "_RUNTIMES", (("edgekd_no_such_runtime", "Interpreter", "nothing"),))
    with pytest.raises(UserError, match="pip install ai-edge-litert"):
        load_interpreter_class()


def test_fp32_matches_keras(models):
    path = models["dir"] / "fp32.tflite"
    model = TFLiteModel.load(path)
    assert model.path == path and model.bytes == path.stat().st_size
    assert model.input_shape == (1, T, C) and model.window_shape == (T, C) and model.num_classes == K
    assert model.input_dtype == np.float32 and model.output_dtype == np.float32
    assert model.runtime.startswith("ai-edge-litert") and model.init_ms > 0

    logits = model.predict_logits(models["windows"])
    assert logits.shape == (len(models["windows"]), K) and logits.dtype == np.float32
    np.testing.assert_allclose(logits, models["keras_logits"], atol=1e-4)

    proba = model.predict_proba(models["windows"])
    np.testing.assert_allclose(proba.sum(axis=1), 1.0, rtol=1e-5)
    np.testing.assert_array_equal(proba.argmax(axis=1), logits.argmax(axis=1))
    model.invoke_once(models["windows"][0])


def test_state_is_reset_between_windows(models):
    model = TFLiteModel.load(models["dir"] / "fp32.tflite")
    w = models["windows"][:1]
    first = model.predict_logits(w)
    model.predict_logits(models["windows"][1:5])
    np.testing.assert_array_equal(model.predict_logits(np.concatenate([w, w])), np.concatenate([first, first]))


def test_int8_quantizes_and_agrees_with_keras(models):
    model = TFLiteModel.load(models["dir"] / "int8.tflite")
    assert model.input_dtype == np.int8 and model.output_dtype == np.int8
    logits = model.predict_logits(models["windows"])
    assert logits.dtype == np.float32
    agree = (logits.argmax(axis=1) == models["keras_logits"].argmax(axis=1)).mean()
    assert agree >= 0.8, agree
    np.testing.assert_allclose(logits, models["keras_logits"], atol=0.2)  # dequantized, same scale


@pytest.mark.parametrize("shape", [(4, T, C + 1), (4, T - 1, C), (T, C), (4, 1, T, C)])
def test_wrong_window_shape_is_a_user_error(models, shape):
    model = TFLiteModel.load(models["dir"] / "fp32.tflite")
    with pytest.raises(UserError, match=f"model expects windows of {T} x {C}"):
        model.predict_logits(np.zeros(shape, np.float32))


@pytest.mark.parametrize("case", ["truncated", "random", "random_tfl3", "empty", "missing", "directory"])
def test_bad_model_file_is_a_user_error(models, tmp_path, case):
    path = tmp_path / "bad.tflite"
    rng = np.random.default_rng(0)
    if case == "truncated":
        path.write_bytes(models["fp32"][: len(models["fp32"]) // 2])
    elif case == "random":
        path.write_bytes(rng.integers(0, 256, size=4096, dtype=np.uint8).tobytes())
    elif case == "random_tfl3":
        junk = bytearray(rng.integers(0, 256, size=4096, dtype=np.uint8).tobytes())
        junk[4:8] = b"TFL3"
        path.write_bytes(bytes(junk))
    elif case == "empty":
        path.write_bytes(b"")
    elif case == "directory":
        path.mkdir()
    with pytest.raises(UserError) as info:
        TFLiteModel.load(path)
    assert str(path) in str(info.value)
    assert info.value.exit_code == 2


def test_every_truncation_of_a_model_is_a_user_error(models, tmp_path):
    path = tmp_path / "cut.tflite"
    data = models["int8"]
    for n in range(0, len(data), 97):
        path.write_bytes(data[:n])
        with pytest.raises(UserError):
            TFLiteModel.load(path)


def test_device_side_imports_no_tensorflow(models, tmp_path):
    np.save(tmp_path / "windows.npy", models["windows"][:3])
    code = textwrap.dedent(
        """
        import sys
        import numpy as np
        from edgekd.runtime.interpreter import TFLiteModel
        from edgekd.runtime.metadata import read_metadata
        model = TFLiteModel.load(sys.argv[1])
        assert read_metadata(open(sys.argv[1], "rb").read()) is None
        assert model.predict_proba(np.load(sys.argv[2])).shape == (3, N_CLASSES)
        leaked = [m for m in sys.modules if m.split(".")[0] in
                  ("tensorflow", "tf_keras", "keras", "tensorflow_model_optimization")]
        assert not leaked, leaked
        print("ok", model.runtime)
    """
    ).replace("N_CLASSES", str(K))
    env = dict(os.environ, PYTHONPATH=str(REPO) + os.pathsep + os.environ.get("PYTHONPATH", ""))
    result = subprocess.run(
        [sys.executable, "-c", code, str(models["dir"] / "int8.tflite"), str(tmp_path / "windows.npy")],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("ok ai-edge-litert")
