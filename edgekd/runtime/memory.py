"""Peak memory of a model: the one bench measurement that needs a process of its own.

Device side: numpy and a TFLite runtime, no TensorFlow. Both `edgekd bench` (edgekd.runtime.bench) and the frontier's
reports read it; it imports neither.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np

from edgekd.errors import UserError
from edgekd.runtime.child import run_child

_MEMORY_WINDOWS = 4  # invokes are what allocate the arena's scratch; more windows add nothing
_MEMORY_TIMEOUT_S = 60


def measure_peak_rss_kb(path: str | Path, threads: int = 1) -> int | None:
    """KiB of peak RSS that loading the model and running a few windows adds on top of the imported runtime.

    Measured in a fresh Python process, because the peak RSS of this one already holds the dataset, other
    models and the timing loop. It includes what the interpreter allocates on first use (its arena, the
    XNNPACK delegate), which is a real cost on a device. None where the OS reports no peak RSS (Windows).
    """
    child = run_child(
        "edgekd.runtime.memory:_report_peak_rss",
        [str(path), str(threads)],
        _MEMORY_TIMEOUT_S,
        f"{path}: measuring its peak memory took over {_MEMORY_TIMEOUT_S} s; "
        f"check that the machine is not out of memory and bench it again",
    )
    if child.returncode != 0:
        reason = (child.stderr.strip().splitlines() or [f"exit status {child.returncode}"])[-1]
        raise UserError(
            f"{path}: measuring its peak memory in a fresh process failed ({reason}); "
            f"check that `{sys.executable} -c 'import edgekd.runtime.interpreter'` works"
        )
    return json.loads(child.stdout.strip().splitlines()[-1])["peak_rss_kb"]


def _report_peak_rss() -> None:
    """The child of measure_peak_rss_kb: argv = [path, threads]; prints {"peak_rss_kb": ...} as JSON."""
    from edgekd.runtime.interpreter import TFLiteModel, load_interpreter_class

    path, threads = sys.argv[1], int(sys.argv[2])
    load_interpreter_class()  # importing the runtime is not the model's cost
    before = peak_rss_kb()
    model = TFLiteModel.load(path, num_threads=threads)
    window = np.zeros(model.window_shape, np.float32)  # not numpy.random: importing it costs megabytes
    for _ in range(_MEMORY_WINDOWS):
        model.invoke_once(window)
    after = peak_rss_kb()
    print(json.dumps({"peak_rss_kb": None if before is None or after is None else after - before}))


def peak_rss_kb() -> int | None:
    """This process's peak resident set size in KiB; None where the OS does not say (Windows).

    Linux: VmHWM of /proc/self/status, not getrusage's ru_maxrss, because Linux carries the parent's peak
    into a child's ru_maxrss across fork and exec: the child of a bench process holding a dataset would
    start at the parent's peak and show no increase at all.
    """
    try:
        with open("/proc/self/status") as status:
            for line in status:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1])  # "VmHWM:   50532 kB"
    except (OSError, ValueError, IndexError):
        pass
    try:
        import resource
    except ImportError:
        return None
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak // 1024 if sys.platform == "darwin" else peak  # bytes on macOS, KiB on the other Unixes
