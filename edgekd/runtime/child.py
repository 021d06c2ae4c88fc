"""Run one of edgekd's functions in a fresh Python process.

For what this process cannot do itself: measure a model's own peak memory (this one already holds datasets and
other models), or probe something that may crash the process it runs in (TFLM's kernels in too small an arena,
a damaged model in LiteRT).
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from edgekd.errors import UserError

PACKAGE_ROOT = Path(__file__).resolve().parents[2]  # the folder holding edgekd/, so the child imports this copy


def run_child(function: str, args: list[str], timeout_s: float, on_timeout: str) -> subprocess.CompletedProcess:
    """Call `function` ("module:name", no arguments; it reads sys.argv[1:] = args) in a child and return its exit
    status and output as text. A child that outlives `timeout_s` is killed, and `on_timeout` is the user's error."""
    module, name = function.split(":")
    return run_code(f"from {module} import {name}; {name}()", args, timeout_s, on_timeout)


def run_code(code: str, args: list[str], timeout_s: float, on_timeout: str) -> subprocess.CompletedProcess:
    """run_child for a few lines of Python instead of a function."""
    path = os.pathsep.join(filter(None, [str(PACKAGE_ROOT), os.environ.get("PYTHONPATH")]))
    try:
        return subprocess.run(
            [sys.executable, "-c", code, *args],
            env=dict(os.environ, PYTHONPATH=path),
            capture_output=True,
            text=True,
            timeout=timeout_s,
        )
    except subprocess.TimeoutExpired:
        raise UserError(on_timeout) from None
