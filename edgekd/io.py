"""Atomic file writes: a run killed midway never leaves a half-written file that looks valid; and the checks an
output path passes before a command spends minutes computing what it will hold."""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path

from edgekd.errors import UserError

# What `edgekd distill` writes into a run folder: never replaced by another command's output.
RUN_FILES = ("run.json", "report.json", "windows.npz", "cv_report.json")


def check_output(path: str | os.PathLike, option: str, force: bool = False) -> Path:
    """`path` if a command may write it: its folder is (or can become) a writable folder, it is not a folder itself nor
    a file of a distill run, and an existing file is replaced only with `force`. A UserError naming the fix
    otherwise."""
    path = Path(path)
    if path.is_dir():
        raise UserError(f"{path}: is a folder; give {option} a file name inside it, e.g. {path / 'out'}")
    folder = next((p for p in path.absolute().parents if p.exists()), None)
    if folder is not None and not folder.is_dir():
        raise UserError(f"{path}: {folder} is a file, not a folder; choose another {option}")
    if folder is not None and not os.access(folder, os.W_OK | os.X_OK):
        raise UserError(f"{path}: cannot write in {folder} (permission denied); choose another {option}")
    if path.exists() and (path.name in RUN_FILES or path.suffix == ".h5"):
        raise UserError(
            f"{path}: is a file of a distill run; {option} never replaces it, even with --force: choose another file"
        )
    if path.exists() and not force:
        raise UserError(f"{path}: exists; add --force to replace it, or choose another {option}")
    return path


def write_bytes_atomic(path: str | os.PathLike, data: bytes) -> Path:
    """A file that replaces `path` whole or not at all. A replaced file keeps its permissions; a new one gets the
    usual ones (mkstemp's temporary file is private)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, file_mode(path))
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def file_mode(path: Path) -> int:
    """The permission bits `path` has, or those a new file gets under the current umask."""
    if path.exists():
        return path.stat().st_mode & 0o7777
    umask = os.umask(0)
    os.umask(umask)
    return 0o666 & ~umask


def write_json_atomic(path: str | os.PathLike, obj) -> Path:
    return write_bytes_atomic(path, (json.dumps(obj, indent=2) + "\n").encode())
