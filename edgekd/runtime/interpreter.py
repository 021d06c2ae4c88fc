"""Run a .tflite classifier on sensor windows with a TFLite runtime and numpy only (no TensorFlow).

The fused LSTM op keeps its hidden and cell state from one invoke() to the next, so every window
starts with reset_all_variables(); without it the same window gives different outputs
(../shared/docs/STACK.md).
"""

from __future__ import annotations

import importlib
import importlib.metadata
import signal
import time
from pathlib import Path

import numpy as np

from edgekd.console import quiet_native_output
from edgekd.errors import UserError
from edgekd.runtime.child import run_code
from edgekd.runtime.metadata import ModelFormatError, altered, is_tflite, read_metadata, signed

# (module to import, attribute path of the Interpreter class, pip distribution), in order of
# preference; TensorFlow (seconds to import, and deprecated for this) only as the last resort.
_RUNTIMES = (
    ("ai_edge_litert.interpreter", "Interpreter", "ai-edge-litert"),
    ("tflite_runtime.interpreter", "Interpreter", "tflite-runtime"),
    ("tensorflow", "lite.Interpreter", "tensorflow"),
)

_FIX = "re-export it with `edgekd export`"


def load_interpreter_class() -> tuple[type, str]:
    """(Interpreter class, runtime name such as "ai-edge-litert 2.3.0") of the first runtime found."""
    failures = []
    for module_name, attr_path, dist in _RUNTIMES:
        try:
            module = cls = importlib.import_module(module_name)
            for attr in attr_path.split("."):
                cls = getattr(cls, attr)
        except Exception as e:  # ImportError, or a broken install (tflite-runtime under numpy 2)
            failures.append(f"{dist}: {_first_line(e)}")
            continue
        try:
            version = importlib.metadata.version(dist)
        except importlib.metadata.PackageNotFoundError:  # e.g. tensorflow-cpu, a source build
            version = getattr(module, "__version__", "unknown version")
        return cls, f"{dist} {version}"
    raise UserError(
        "no TFLite runtime could be imported (" + "; ".join(failures) + "); "
        "install one with `pip install ai-edge-litert`"
    )


def _first_line(e: Exception) -> str:
    text = str(e).strip()
    return text.splitlines()[0] if text else type(e).__name__


def softmax(logits: np.ndarray, temperature: float = 1.0) -> np.ndarray:
    """The one numpy softmax: device-side here, and imported by training code (KD targets at temperature T)."""
    z = logits / temperature
    z = z - z.max(axis=-1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=-1, keepdims=True)


# Loads and runs a model once on zeros in a child process: a damaged graph can crash the runtime itself (a
# segmentation fault in allocate_tensors), which no except clause catches.
_CHILD_CHECK = """
import importlib, sys
import numpy as np
module, name, path = sys.argv[1:]
interpreter = getattr(importlib.import_module(module), name)(model_path=path, num_threads=1)
interpreter.allocate_tensors()
for detail in interpreter.get_input_details():
    interpreter.set_tensor(detail["index"], np.zeros(detail["shape"], detail["dtype"]))
interpreter.invoke()
"""


def _check_in_child(path: Path, interpreter_class: type, runtime: str, timeout_s: float = 60.0) -> None:
    """Refuse a model without export's checksum that crashes or hangs the runtime, trying it in a child process first.
    A Python-level failure is left to the caller, which reports it in the runtime's own words."""
    args = [interpreter_class.__module__, interpreter_class.__qualname__, str(path)]
    on_timeout = f"{path}: {runtime} did not finish loading and running it in {timeout_s:.0f} s; {_FIX}"
    returncode = run_code(_CHILD_CHECK, args, timeout_s, on_timeout).returncode
    if returncode < 0:
        name = signal.Signals(-returncode).name if -returncode in signal.valid_signals() else f"signal {-returncode}"
        raise UserError(
            f"{path}: {runtime} crashes on it ({name}); the file is damaged or not a model edgekd can run; {_FIX}"
        )


class TFLiteModel:
    """A loaded .tflite classifier: windows [N, T, C] in, logits or probabilities [N, K] out."""

    def __init__(
        self, path: Path, model_bytes: bytes, metadata: dict | None, runtime: str, interpreter, init_ms: float
    ):
        self.path = path
        self.model_bytes = model_bytes  # the file as loaded: bench sizes and compresses it without reading it again
        self.bytes = len(model_bytes)
        self.metadata = metadata
        self.runtime = runtime
        self.init_ms = init_ms
        self._interpreter = interpreter
        inp = interpreter.get_input_details()[0]
        out = interpreter.get_output_details()[0]
        self._input_index, self._output_index = inp["index"], out["index"]
        self.input_shape = tuple(int(d) for d in inp["shape"])  # (1, T, C)
        self.output_shape = tuple(int(d) for d in out["shape"])  # (1, K)
        self.input_dtype = np.dtype(inp["dtype"])
        self.output_dtype = np.dtype(out["dtype"])
        self._input_quant = inp["quantization"]  # (scale, zero_point); scale 0.0: not quantized
        self._output_quant = out["quantization"]

    @classmethod
    def load(cls, path, num_threads: int = 1) -> TFLiteModel:
        path = Path(path)
        try:
            model_bytes = path.read_bytes()
        except FileNotFoundError:
            raise UserError(
                f"{path}: no such file; pass the path of a .tflite file written by `edgekd export`"
            ) from None
        except OSError as e:
            raise UserError(f"{path}: cannot read it ({e.strerror or e}); pass the path of a .tflite file") from None
        if not is_tflite(model_bytes):
            raise UserError(f"{path}: not a TFLite model (no 'TFL3' identifier); pass a .tflite file or {_FIX}")
        try:
            metadata = read_metadata(model_bytes)
            changed = altered(model_bytes, metadata)  # reads every buffer: a corrupt one fails here too
        except ModelFormatError as e:
            raise UserError(f"{path}: corrupt TFLite file ({e}); {_FIX}") from None
        if changed:
            raise UserError(
                f"{path}: was altered after export: its graph, weights or metadata (normalisation, classes, "
                f"test split) no longer match the checksum export wrote; {_FIX}"
            )
        interpreter_class, runtime = load_interpreter_class()
        if not signed(model_bytes, metadata):
            _check_in_child(path, interpreter_class, runtime)
        start = time.perf_counter()
        try:  # the runtime verifies the flatbuffer: ValueError or RuntimeError for a bad model
            with quiet_native_output():  # "Created TensorFlow Lite XNNPACK delegate for CPU."
                interpreter = interpreter_class(model_content=model_bytes, num_threads=num_threads)
                interpreter.allocate_tensors()
            init_ms = (time.perf_counter() - start) * 1e3
            return cls(path, model_bytes, metadata, runtime, interpreter, init_ms)
        except (ValueError, RuntimeError) as e:  # incl. UnicodeDecodeError of a corrupt tensor name
            raise UserError(f"{path}: {runtime} cannot load it ({_first_line(e)}); {_FIX}") from None

    @property
    def window_shape(self) -> tuple[int, ...]:
        """The shape of one window, (T, C): the input shape without its batch dimension of 1."""
        return self.input_shape[1:]

    @property
    def num_classes(self) -> int:
        return self.output_shape[-1]

    def _check(self, windows) -> np.ndarray:
        windows = np.asarray(windows, dtype=np.float32)
        if windows.ndim != len(self.input_shape) or windows.shape[1:] != self.window_shape:
            expected = " x ".join(str(d) for d in self.window_shape)
            raise UserError(
                f"{self.path}: model expects windows of {expected}, got an array of "
                f"shape {windows.shape}; window the data as the model was trained"
            )
        return windows

    def quantize_input(self, window: np.ndarray) -> np.ndarray:
        """One window (T, C) float32 -> the input tensor's shape and type (int8 models: quantized)."""
        x = np.asarray(window, np.float32).reshape(self.input_shape)
        if self.input_dtype.kind in "iu":
            scale, zero_point = self._input_quant
            info = np.iinfo(self.input_dtype)
            q = np.round(x / scale + zero_point) if scale else np.round(x)
            return np.clip(q, info.min, info.max).astype(self.input_dtype)
        return x.astype(self.input_dtype, copy=False)

    def _run(self, window: np.ndarray) -> np.ndarray:
        """One window (T, C) float32 -> logits (K,) float32: reset, quantize, invoke, dequantize."""
        x = self.quantize_input(window)
        interpreter = self._interpreter
        try:
            interpreter.reset_all_variables()  # the fused LSTM keeps state between invokes
            interpreter.set_tensor(self._input_index, x)
            interpreter.invoke()
            y = interpreter.get_tensor(self._output_index).reshape(-1)
        except (
            ValueError,
            RuntimeError,
        ) as e:  # a damaged file can load and still fail here ("Input tensor 7 lacks data")
            raise UserError(
                f"{self.path}: {self.runtime} loads it but cannot run it ({_first_line(e)}); {_FIX}"
            ) from None
        scale, zero_point = self._output_quant
        if self.output_dtype.kind in "iu" and scale:
            return ((y.astype(np.float32) - zero_point) * scale).astype(np.float32)
        return y.astype(np.float32)

    def predict_logits(self, windows) -> np.ndarray:
        """windows [N, T, C] float32 -> logits [N, K] float32, one invoke per window."""
        windows = self._check(windows)
        out = np.empty((len(windows), self.num_classes), dtype=np.float32)
        for i, window in enumerate(windows):
            out[i] = self._run(window)
        return out

    def predict_proba(self, windows) -> np.ndarray:
        """windows [N, T, C] -> class probabilities [N, K] (softmax of the logits)."""
        return softmax(self.predict_logits(windows))

    def invoke_once(self, window) -> None:
        """Run one window (T, C) through the same path as predict_logits; for latency timing."""
        self._run(self._check(np.asarray(window)[np.newaxis])[0])
