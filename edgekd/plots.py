"""The one place plots meet matplotlib: an optional extra (`pip install 'edgekd[plot]'`), device side included.

matplotlib is imported only when a plot is asked for, on an Agg canvas (no display, no pyplot state), and a
PNG is rendered to memory and then written atomically, so a killed command never leaves half a file.
"""

from __future__ import annotations

import io
from pathlib import Path

from edgekd.errors import UserError
from edgekd.io import write_bytes_atomic

PLOT_INSTALL = "pip install 'edgekd[plot]'"


def require_matplotlib(option: str, without: str):
    """(Figure, FigureCanvasAgg), or a UserError naming `option`, what to install, and `without` (the way out)."""
    try:
        import matplotlib  # noqa: F401  (first, so a missing package fails here and not halfway)
        from matplotlib.backends.backend_agg import FigureCanvasAgg
        from matplotlib.figure import Figure
    except ImportError:
        raise UserError(f"{option} needs matplotlib, which is not installed: {PLOT_INSTALL}, or {without}") from None
    return Figure, FigureCanvasAgg


def write_png(figure, path: str | Path, option: str) -> Path:
    png = io.BytesIO()
    figure.savefig(png, format="png", dpi=120)
    try:
        return write_bytes_atomic(Path(path), png.getvalue())
    except OSError as e:
        raise UserError(
            f"{path}: cannot write the plot ({e.strerror or e}); pass a writable path to {option}"
        ) from None
