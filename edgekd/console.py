"""What a person reads: native libraries kept quiet, and one switch to hear them.

TensorFlow, the TFLite converter and the LiteRT runtime write from C++ straight to file descriptor 2 (oneDNN and
CUDA notices at import, "fully_quantize: 0, inference_type: 6 ..." at conversion, "Created TensorFlow Lite XNNPACK
delegate" at load), before and around Python's logging, where no log level reaches. `quiet_native_output()` points
descriptor 2 at /dev/null for the length of such a call; Python's own warnings and errors raised there still reach
the user once it ends. `edgekd --verbose` (EDGEKD_VERBOSE=1) lets everything through. No TensorFlow here.
"""

from __future__ import annotations

import contextlib
import os
import sys

VERBOSE_ENV = "EDGEKD_VERBOSE"


def verbose() -> bool:
    return os.environ.get(VERBOSE_ENV) == "1"


@contextlib.contextmanager
def quiet_native_output():
    """Silence what native code writes to stderr inside the block (not under --verbose, nor where stderr has no
    descriptor, as under some test runners)."""
    try:
        target = sys.__stderr__.fileno() if sys.__stderr__ is not None else 2
    except (AttributeError, ValueError, OSError):
        target = None
    if verbose() or target is None:
        yield
        return
    sys.stderr.flush()
    saved = os.dup(target)
    devnull = os.open(os.devnull, os.O_WRONLY)
    try:
        os.dup2(devnull, target)
        yield
    finally:
        os.dup2(saved, target)
        os.close(saved)
        os.close(devnull)
