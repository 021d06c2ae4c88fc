"""A .tflite under TensorFlow Lite Micro's own interpreter: the ops it resolves, the smallest tensor arena it runs
in, and its outputs beside LiteRT's.

tflite-micro (`pip install 'edgekd[mcu]'`) is the microcontroller runtime built for the host: the same kernels
(the portable reference ones) and the same arena planner as firmware, with a Python interpreter. Device side: numpy
and tflite-micro, no TensorFlow. Its interpreter is wrapped to look like LiteRT's, so edgekd.runtime.interpreter's
TFLiteModel quantizes inputs and dequantizes outputs in one place for both runtimes, and a comparison of the two is
a comparison of the interpreters alone.
"""

from __future__ import annotations

import contextlib
import importlib.metadata
import os
import re
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from edgekd.console import verbose
from edgekd.errors import UserError
from edgekd.runtime.child import run_child
from edgekd.runtime.interpreter import TFLiteModel
from edgekd.runtime.metadata import ModelFormatError, is_tflite, read_metadata

INSTALL = "pip install 'edgekd[mcu]'"
ARENA_ALIGNMENT = 16  # bytes; the arena firmware declares is alignas(16), and TFLM aligns its tensors to 16
_LARGEST_ARENA = 64 * 1024 * 1024  # no model edgekd exports comes near it; beyond, the model is not for an MCU
_MISSING_OP = re.compile(r"Didn't find op for builtin opcode '([^']+)'")
# Children per search, at most: each crash raises the size known to be too small, so a search is done within its
# probes (about 40: doubling to 64 MiB, then bisection to 16 bytes) even if every probe crashed.
_CHILDREN = 48
_CHILD_TIMEOUT_S = 120


def tflm_runtime():
    """tflite_micro.runtime, or None where the [mcu] extra is not installed."""
    try:
        from tflite_micro import runtime
    except ImportError:
        return None
    return runtime


def tflm_version() -> str:
    return f"tflite-micro {importlib.metadata.version('tflite-micro')}"


def require_tflm():
    runtime = tflm_runtime()
    if runtime is None:
        raise UserError(f"--runtime tflm needs TensorFlow Lite Micro's Python interpreter; install it: {INSTALL}")
    return runtime


class _LiteRTShaped:
    """TFLM's interpreter behind the few calls TFLiteModel makes of LiteRT's (one input, one output)."""

    def __init__(self, interpreter):
        self._it = interpreter

    def get_input_details(self):
        return [_details(self._it.get_input_details(0))]

    def get_output_details(self):
        return [_details(self._it.get_output_details(0))]

    def reset_all_variables(self):
        self._it.reset()  # the fused LSTM's state, as LiteRT's reset_all_variables

    def set_tensor(self, index, value):
        self._it.set_input(value, index)

    def invoke(self):
        self._it.invoke()

    def get_tensor(self, index):
        return self._it.get_output(index)


def _details(d: dict) -> dict:
    """TFLM's tensor details as LiteRT spells them: an index and a (scale, zero point) pair."""
    q = d.get("quantization_parameters") or {}
    scales, zero_points = q.get("scales", []), q.get("zero_points", [])
    scale = float(scales[0]) if len(scales) else 0.0
    zero_point = int(zero_points[0]) if len(zero_points) else 0
    return {"index": 0, "shape": d["shape"], "dtype": d["dtype"], "quantization": (scale, zero_point)}


def load_tflm(path: str | Path, arena_size: int | None = None) -> tuple[TFLiteModel, int]:
    """(the model under TFLM, its arena in bytes): `arena_size`, or the smallest that runs it."""
    path = Path(path)
    try:
        model_bytes = path.read_bytes()
    except OSError as e:
        raise UserError(
            f"{path}: cannot read it ({e.strerror or e}); pass a .tflite file written by `edgekd export`"
        ) from None
    if not is_tflite(model_bytes):
        raise UserError(f"{path}: not a TFLite model (no 'TFL3' identifier); pass a .tflite file")
    try:
        metadata = read_metadata(model_bytes)
    except ModelFormatError as e:
        raise UserError(f"{path}: corrupt TFLite file ({e}); re-export it with `edgekd export`") from None
    arena = arena_size or smallest_arena(path)
    start = time.perf_counter()
    try:
        interpreter = _interpreter(model_bytes, arena)
    except _MissingOp as e:
        raise _missing_op_error(path, e.op) from None
    except _ArenaTooSmall:
        raise UserError(f"{path}: TensorFlow Lite Micro cannot allocate it in {arena:,} bytes; give it more") from None
    init_ms = (time.perf_counter() - start) * 1e3
    model = TFLiteModel(path, model_bytes, metadata, tflm_version(), _LiteRTShaped(interpreter), init_ms)
    model.raw_interpreter = interpreter  # TFLM's own, for what LiteRT's shape hides (its output's scale)
    return model, arena


def smallest_arena(path: Path) -> int:
    """The smallest tensor arena, a multiple of ARENA_ALIGNMENT, in which TFLM allocates the model and runs a window
    of zeros; every op must resolve (a UserError naming the op otherwise).

    Searched in child processes: TFLM's LSTM kernel can crash the process (SIGSEGV) in an arena too small for it
    instead of failing. A size a child died on counts as too small, and a new child goes on from what is known."""
    too_small, works = 0, None
    for _ in range(_CHILDREN):
        lines, returncode, stderr = _search_in_child(path, too_small, works)
        trying = None
        for kind, value in (line.split(" ", 1) for line in lines):
            if kind == "missing":
                raise _missing_op_error(path, value)
            if kind == "none":
                raise UserError(
                    f"{path}: TensorFlow Lite Micro cannot run it even in a {_LARGEST_ARENA // 2**20} MiB arena "
                    f"({value}); export a smaller student for a microcontroller"
                )
            if kind == "arena":
                return int(value)
            size = int(value)
            if kind == "try":
                trying = size
            elif kind == "ok":
                works, trying = size if works is None else min(works, size), None
            elif kind == "fail":
                too_small, trying = max(too_small, size), None
        if trying is None:  # the child ended without an answer and not inside a probe: not TFLM's crash
            reason = (stderr.strip().splitlines() or [f"exit status {returncode}"])[-1]
            raise UserError(
                f"{path}: measuring its tensor arena failed ({reason}); check `{sys.executable} -m pip "
                f"show tflite-micro`, or reinstall it: {INSTALL}"
            )
        too_small = max(too_small, trying)
    raise UserError(f"{path}: TensorFlow Lite Micro crashed in {_CHILDREN} arena sizes; {INSTALL} again")


def _search_in_child(path: Path, too_small: int, works: int | None) -> tuple[list[str], int, str]:
    """(the lines the child printed, its exit status, its stderr); it prints "try N" before each probe."""
    child = run_child(
        "edgekd.runtime.tflm:_search",
        [str(path), str(too_small), str(works or 0)],
        _CHILD_TIMEOUT_S,
        f"{path}: measuring its tensor arena took over {_CHILD_TIMEOUT_S} s; check that the machine is not out "
        f"of memory and try again",
    )
    return child.stdout.splitlines(), child.returncode, child.stderr


def _search() -> None:
    """The child of smallest_arena: argv = [path, a size too small (or 0), a size that works (or 0)]."""
    path, too_small, works = Path(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3]) or None
    model_bytes = path.read_bytes()

    def runs(size: int) -> bool:
        print(f"try {size}", flush=True)
        try:
            ok = _runs(model_bytes, size)
        except _MissingOp as e:
            print(f"missing {e.op}", flush=True)
            sys.exit(0)
        print(f"{'ok' if ok else 'fail'} {size}", flush=True)
        return ok

    if works is None:
        works = max(4096, 2 * too_small)
        while not runs(works):
            if works >= _LARGEST_ARENA:
                print(f"none {works} bytes", flush=True)
                return
            too_small, works = works, works * 2
    low, high = too_small // ARENA_ALIGNMENT, works // ARENA_ALIGNMENT  # low fails (or is 0), high works
    while high - low > 1:
        middle = (low + high) // 2
        low, high = (low, middle) if runs(middle * ARENA_ALIGNMENT) else (middle, high)
    print(f"arena {high * ARENA_ALIGNMENT}", flush=True)


def _runs(model_bytes: bytes, arena_size: int) -> bool:
    try:
        interpreter = _interpreter(model_bytes, arena_size)
    except _ArenaTooSmall:
        return False
    detail = interpreter.get_input_details(0)
    interpreter.set_input(np.zeros(detail["shape"], detail["dtype"]), 0)
    with _native_stderr():
        try:
            interpreter.invoke()
        except RuntimeError:  # allocation passed, and a kernel's scratch buffer did not fit at invoke
            return False
    return True


class _ArenaTooSmall(Exception):
    pass


class _MissingOp(Exception):
    def __init__(self, op: str):
        super().__init__(op)
        self.op = op


def _missing_op_error(path: Path, op: str) -> UserError:
    return UserError(
        f"{path}: TensorFlow Lite Micro has no kernel for the op {op}; export a student built from ops it has "
        f"(the default student, edge-conv, is), or run this file with LiteRT instead"
    )


def _interpreter(model_bytes: bytes, arena_size: int):
    """TFLM's interpreter with every op resolved: _MissingOp naming the op TFLM lacks, _ArenaTooSmall otherwise."""
    runtime = require_tflm()
    with _native_stderr() as said:
        try:
            return runtime.Interpreter.from_bytes(model_bytes, arena_size=arena_size)
        except RuntimeError:
            pass
    missing = _MISSING_OP.search(said())
    if missing:
        raise _MissingOp(missing.group(1))
    raise _ArenaTooSmall


@contextlib.contextmanager
def _native_stderr():
    """What native code writes to stderr inside the block, kept off the terminal and readable after it: TFLM says
    which op it lacks only there. `said()` returns it. Under --verbose it reaches the terminal as well."""
    sys.stderr.flush()
    target = 2
    saved = os.dup(target)
    with tempfile.TemporaryFile() as capture:
        os.dup2(capture.fileno(), target)
        text = []
        try:
            yield lambda: "".join(text)
        finally:
            os.dup2(saved, target)
            os.close(saved)
            capture.seek(0)
            text.append(capture.read().decode(errors="replace"))
            if verbose():
                sys.stderr.write(text[0])


@dataclass
class TFLMCheck:
    """What export and bench report of a model under TFLM."""

    arena_bytes: int
    windows: int  # test windows both interpreters ran
    identical: int  # windows whose outputs are bit-identical
    agreement: float  # share of windows where both pick the same class
    largest_difference: float  # of an output: in quantization steps for an integer output, else as a float
    runtime: str
    integer: bool = True  # the output is quantized

    def describe(self) -> str:
        """ "bit-identical to LiteRT's on 129 test windows", or how far from it."""
        if self.identical == self.windows:
            return f"outputs bit-identical to LiteRT's on {self.windows} test windows"
        return (
            f"outputs bit-identical to LiteRT's on {self.identical} of {self.windows} test windows, at most "
            f"{self.largest_difference:.3g}{' quantization step(s)' if self.integer else ''} apart; the same class "
            f"on {self.agreement:.1%}"
        )


def verify_against_litert(
    path: str | Path, windows: np.ndarray, litert_logits: np.ndarray, log=print
) -> TFLMCheck | None:
    """Run `path` under TFLM in its smallest arena on `windows`, beside LiteRT's logits on the same windows. None,
    said in one line, where tflite-micro is not installed: the C files are still worth having (docs/mcu.md)."""
    if tflm_runtime() is None:
        log(f"tflm: the TensorFlow Lite Micro check was skipped (tflite-micro is not installed; {INSTALL})")
        return None
    log(f"tflm: running the file under TensorFlow Lite Micro's interpreter on {len(windows)} test windows")
    model, arena = load_tflm(path)
    logits = model.predict_logits(windows)
    difference = np.abs(logits - litert_logits).max(initial=0.0)
    scale = _details(model.raw_interpreter.get_output_details(0))["quantization"][0]
    return TFLMCheck(
        arena_bytes=arena,
        windows=len(windows),
        identical=int(np.sum(np.all(logits == litert_logits, axis=1))),
        agreement=float(np.mean(np.argmax(logits, 1) == np.argmax(litert_logits, 1))) if len(windows) else 1.0,
        largest_difference=round(difference / scale) if scale else float(difference),
        runtime=model.runtime,
        integer=bool(scale),
    )
