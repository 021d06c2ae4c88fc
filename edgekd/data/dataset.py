"""A dataset is a folder: `dataset.toml` (classes, streams) and `recordings.csv` (one row per recording).

    dataset.toml      name, ordered classes, one [streams.<name>] table per stream (rate_hz, channels)
    recordings.csv    path,subject,label[,repetition][,session]; path is relative to the folder and names a
                      .npz with one float array per stream (samples x channels), or, for a
                      single-stream dataset, a .csv whose header is the channel names.

`load_dataset` checks the two index files and fails on the first problem with a `UserError` that names
the file, the row and the fix. `Dataset.problems()` goes further and opens every recording, collecting all
problems instead of stopping at the first (that is what `edgekd data inspect` shows).
"""

from __future__ import annotations

import csv
import hashlib
import io
import math
import os
import tomllib
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from edgekd.errors import UserError

INDEX_COLUMNS = ("path", "subject", "label")
# Recordings are read from inside the dataset folder only; `edgekd --allow-outside-data` (which sets this variable)
# lets recordings.csv name files elsewhere (absolute paths, '..', symlinks out of the folder).
ALLOW_OUTSIDE_ENV = "EDGEKD_ALLOW_OUTSIDE_DATA"
# The columns that group recordings: splits hold groups out, `--where KEY=V1,V2` selects by them. Only subject is
# required; a session is one wearing of the sensors (taken off and put on again between sessions).
GROUP_KEYS = ("subject", "repetition", "session")


@dataclass(frozen=True)
class StreamSpec:
    name: str
    rate_hz: float
    channels: tuple[str, ...]

    def to_dict(self) -> dict:
        return {"name": self.name, "rate_hz": self.rate_hz, "channels": list(self.channels)}

    @classmethod
    def from_dict(cls, d: dict) -> StreamSpec:
        return cls(d["name"], float(d["rate_hz"]), tuple(d["channels"]))


@dataclass(frozen=True)
class Recording:
    path: str
    subject: str
    label: str
    repetition: str | None
    row: int  # line number in recordings.csv, for error messages
    session: str | None = None

    def group(self, key: str) -> str | None:
        """The recording's value of a GROUP_KEYS column (None where the column is absent or empty)."""
        return getattr(self, key)


@dataclass
class Dataset:
    root: Path
    name: str
    classes: tuple[str, ...]
    streams: tuple[StreamSpec, ...]
    recordings: list[Recording]
    synthetic: bool = False
    description: str = ""
    _cache: dict = field(default_factory=dict, repr=False)

    @property
    def index_path(self) -> Path:
        return self.root / "recordings.csv"

    @property
    def channels(self) -> tuple[str, ...]:
        return tuple(c for s in self.streams for c in s.channels)

    @property
    def subjects(self) -> list[str]:
        return natural_sorted({r.subject for r in self.recordings})

    @property
    def repetitions(self) -> list[str]:
        return self.values("repetition")

    @property
    def sessions(self) -> list[str]:
        return self.values("session")

    def values(self, key: str) -> list[str]:
        """The distinct values of a GROUP_KEYS column, in natural order."""
        return natural_sorted({v for r in self.recordings if (v := r.group(key)) is not None})

    def label_index(self, label: str) -> int:
        return self.classes.index(label)

    def load_signals(self, rec: Recording) -> dict[str, np.ndarray]:
        """One recording's streams as float32 arrays (samples x channels), checked against dataset.toml."""
        signals = _read_recording(self.root / rec.path, self.streams)
        for stream in self.streams:
            x = signals[stream.name]
            if not np.isfinite(x).all():
                bad = int(np.argwhere(~np.isfinite(x))[0][0])
                raise UserError(
                    f"{self.root / rec.path}: stream '{stream.name}' has NaN or inf samples (first at "
                    f"sample {bad}); clean or interpolate them, or drop row {rec.row} of {self.index_path}"
                )
        return signals

    def duration_s(self, signals: dict[str, np.ndarray]) -> float:
        return min(len(signals[s.name]) / s.rate_hz for s in self.streams)

    def problems(self) -> list[str]:
        """Open every recording and collect every problem, one line each."""
        found = []
        for rec in self.recordings:
            try:
                self.load_signals(rec)
            except UserError as e:
                found.append(e.message)
        return found + self.duplicates()

    def duplicates(self) -> list[str]:
        """One line per recording listed twice, by path or with the same bytes as another: its windows would be in
        training and test at once."""
        found, by_path, by_content = [], {}, {}
        for rec in self.recordings:
            file = (self.root / rec.path).resolve()
            if file in by_path:
                found.append(
                    f"{self.index_path}: rows {by_path[file].row} and {rec.row} list the same recording {rec.path}; "
                    f"delete one of the rows"
                )
                continue
            by_path[file] = rec
            digest = _content_digest(file)
            if digest is not None and digest in by_content:
                first = by_content[digest]
                found.append(
                    f"{self.index_path}: rows {first.row} ({first.path}) and {rec.row} ({rec.path}) hold identical "
                    f"recordings; delete the copy"
                )
            elif digest is not None:
                by_content[digest] = rec
        return found

    def check_no_duplicates(self) -> None:
        """A UserError naming the first recording listed twice (training and testing on it would inflate accuracy)."""
        found = self.duplicates()
        if found:
            raise UserError(
                found[0]
                + (f" ({len(found) - 1} more: `edgekd data inspect {self.root}` lists them)" if len(found) > 1 else "")
            )


def load_dataset(path: str | Path) -> Dataset:
    root = Path(path)
    if not root.is_dir():
        raise UserError(f"{root}: no such dataset folder; give a folder holding dataset.toml and recordings.csv")
    name, classes, streams, meta = _read_toml(root / "dataset.toml")
    recordings = _read_index(root / "recordings.csv", classes)
    return Dataset(root, name, classes, streams, recordings, **meta)


def natural_sorted(values) -> list[str]:
    """Sort ids numerically when they look like numbers ('2' before '10'), else as text."""
    return sorted(values, key=lambda v: (0, int(v), "") if str(v).isdigit() else (1, 0, str(v)))


def _read_toml(path: Path):
    if not path.is_file():
        raise UserError(f"{path}: missing; a dataset folder needs dataset.toml with name, classes and [streams.*]")
    try:
        doc = tomllib.loads(path.read_text(encoding="utf-8"))
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as e:
        raise UserError(f"{path}: not valid TOML ({e}); fix the syntax") from None
    classes = doc.get("classes")
    if not isinstance(classes, list) or len(classes) < 2 or not all(isinstance(c, str) and c for c in classes):
        raise UserError(
            f'{path}: \'classes\' must be a list of at least two class names, e.g. classes = ["rest", "fist"]'
        )
    if len(set(classes)) != len(classes):
        raise UserError(f"{path}: 'classes' lists a name twice; make each class name unique")
    tables = doc.get("streams")
    if not isinstance(tables, dict) or not tables:
        raise UserError(f"{path}: no [streams.<name>] table; add one per stream with rate_hz and channels")
    streams = tuple(_stream_spec(path, name, t) for name, t in tables.items())
    all_channels = [c for s in streams for c in s.channels]
    if len(set(all_channels)) != len(all_channels):
        raise UserError(f"{path}: a channel name appears in two streams; make channel names unique")
    meta = {"synthetic": bool(doc.get("synthetic", False)), "description": str(doc.get("description", ""))}
    return str(doc.get("name", path.parent.name)), tuple(classes), streams, meta


def _stream_spec(path: Path, name: str, table) -> StreamSpec:
    where = f"{path}: [streams.{name}]"
    if not isinstance(table, dict):
        raise UserError(f"{where} must be a table with rate_hz and channels")
    rate = table.get("rate_hz")
    if isinstance(rate, bool) or not isinstance(rate, (int, float)) or not math.isfinite(rate) or rate <= 0:
        raise UserError(f"{where}: rate_hz must be a positive number of samples per second, e.g. rate_hz = 200")
    channels = table.get("channels")
    if isinstance(channels, int) and not isinstance(channels, bool) and channels > 0:
        channels = [f"{name}{i}" for i in range(channels)]
    if not isinstance(channels, list) or not channels or not all(isinstance(c, str) and c for c in channels):
        raise UserError(f"{where}: channels must be a list of channel names or a channel count, e.g. channels = 8")
    return StreamSpec(name, float(rate), tuple(channels))


def _read_index(path: Path, classes: tuple[str, ...]) -> list[Recording]:
    if not path.is_file():
        raise UserError(
            f"{path}: missing; list the recordings in it with columns path,subject,label[,repetition][,session]"
        )
    try:
        text = path.read_bytes().decode("utf-8-sig")  # a spreadsheet's byte-order mark is not part of the header
    except UnicodeDecodeError as e:
        raise UserError(f"{path}: is not UTF-8 text (byte {e.start}); save it as UTF-8 CSV") from None
    with io.StringIO(text, newline="") as f:
        reader = csv.DictReader(f)
        header = reader.fieldnames or []
        missing = [c for c in INDEX_COLUMNS if c not in header]
        if missing:
            raise UserError(
                f"{path}: header lacks column(s) {', '.join(missing)}; the header must be "
                f"path,subject,label[,repetition][,session]"
            )
        recordings = []
        for row in reader:
            line = reader.line_num
            values = {k: (row.get(k) or "").strip() for k in (*INDEX_COLUMNS, "repetition", "session")}
            for column in INDEX_COLUMNS:
                if not values[column]:
                    raise UserError(f"{path}: row {line} has an empty '{column}'; fill it in or delete the row")
            if values["label"] not in classes:
                raise UserError(
                    f"{path}: row {line} has label '{values['label']}', which is not among the classes in "
                    f"dataset.toml ({', '.join(classes)}); fix the label or add the class"
                )
            _check_inside(path.parent, values["path"], line)
            recordings.append(
                Recording(
                    values["path"],
                    values["subject"],
                    values["label"],
                    values["repetition"] or None,
                    line,
                    values["session"] or None,
                )
            )
    if not recordings:
        raise UserError(f"{path}: lists no recordings; add one row per recording")
    return recordings


def _check_inside(root: Path, relative: str, row: int) -> None:
    """A UserError unless the recording path stays inside the dataset folder (or the user allowed otherwise)."""
    if os.environ.get(ALLOW_OUTSIDE_ENV) == "1":
        return
    inside = root.resolve()
    target = (root / relative).resolve()
    if Path(relative).is_absolute() or ".." in Path(relative).parts or not target.is_relative_to(inside):
        raise UserError(
            f"{root / 'recordings.csv'}: row {row} names {relative}, which is outside the dataset folder "
            f"(an absolute path, '..' or a symlink out of it); move the file into the folder, or run "
            f"`edgekd --allow-outside-data ...` if you trust this dataset"
        )


def _content_digest(file: Path) -> str | None:
    if not file.is_file():
        return None  # a missing file is its own problem, reported when it is read
    digest = hashlib.blake2b(digest_size=16)
    with file.open("rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _read_recording(file: Path, streams: tuple[StreamSpec, ...]) -> dict[str, np.ndarray]:
    if not file.exists():
        raise UserError(
            f"{file}: recording not found; fix its path in recordings.csv (paths are relative to the dataset folder)"
        )
    suffix = file.suffix.lower()
    if file.is_dir():
        signals = _read_folder(file, streams)
    elif suffix == ".npz":
        signals = _read_npz(file, streams)
    elif suffix == ".csv":
        signals = _read_csv(file, streams)
    else:
        raise UserError(f"{file}: unsupported recording type '{suffix}'; use .npz (one array per stream) or .csv")
    for stream in streams:
        x = signals[stream.name]
        if x.ndim != 2 or x.shape[1] != len(stream.channels):
            raise UserError(
                f"{file}: stream '{stream.name}' has shape {x.shape}, expected (samples, {len(stream.channels)}) "
                f"as dataset.toml declares; fix the file or the channel list"
            )
        if len(x) < 2:
            raise UserError(f"{file}: stream '{stream.name}' has {len(x)} samples; drop this recording")
    return signals


def _read_npz(file: Path, streams) -> dict[str, np.ndarray]:
    import zipfile

    try:
        loaded = np.load(file, allow_pickle=False)
        if not isinstance(loaded, np.lib.npyio.NpzFile):
            raise UserError(
                f"{file}: is a single .npy array, not an .npz archive; save one array per stream with "
                f"numpy.savez(path, {streams[0].name}=...)"
            )
        with loaded as npz:
            keys = set(npz.files)
            missing = [s.name for s in streams if s.name not in keys]
            if missing:
                raise UserError(
                    f"{file}: has no array for stream(s) {', '.join(missing)} (it holds "
                    f"{', '.join(sorted(keys)) or 'nothing'}); "
                    f"save one array per stream named as in dataset.toml"
                )
            arrays = {s.name: npz[s.name] for s in streams}
    except UserError:
        raise
    except (ValueError, OSError, EOFError, zipfile.BadZipFile) as e:
        raise UserError(
            f"{file}: not a readable .npz of numeric arrays ({_first_line(e)}); it may be truncated: re-save it "
            f"with numpy.savez"
        ) from None
    for name, x in arrays.items():
        if x.dtype.kind not in "fiu":  # complex, text, booleans or objects: converting would silently change the data
            raise UserError(
                f"{file}: array '{name}' holds {x.dtype} values; save real numbers (float or int), one array per stream"
            )
    return {name: x.astype(np.float32) for name, x in arrays.items()}


def _first_line(e: Exception) -> str:
    text = str(e).strip()
    return text.splitlines()[0] if text else type(e).__name__


def _read_csv(file: Path, streams) -> dict[str, np.ndarray]:
    if len(streams) != 1:
        raise UserError(
            f"{file}: a .csv recording holds one stream, but dataset.toml declares {len(streams)}; use .npz"
        )
    return {streams[0].name: _read_stream_csv(file, streams[0])}


def _read_folder(folder: Path, streams) -> dict[str, np.ndarray]:
    """A folder with one <stream>.csv per stream: what `edgekd stream --record` writes as samples arrive.
    A last line cut short by an abrupt stop (no newline yet) is left out."""
    signals = {}
    for stream in streams:
        file = folder / f"{stream.name}.csv"
        if not file.is_file():
            raise UserError(f"{file}: missing; a folder recording holds one <stream>.csv per stream of dataset.toml")
        signals[stream.name] = _read_stream_csv(file, stream, complete_lines_only=True)
    return signals


def _read_stream_csv(file: Path, stream: StreamSpec, complete_lines_only: bool = False) -> np.ndarray:
    try:
        text = file.read_bytes().decode("utf-8-sig")
    except UnicodeDecodeError as e:
        raise UserError(
            f"{file}: is not UTF-8 text (byte {e.start}); save it as UTF-8 CSV with the channel names on the first line"
        ) from None
    if complete_lines_only and not text.endswith("\n"):
        text = text[: text.rfind("\n") + 1]
    header_line, _, body = text.partition("\n")
    header = [h.strip() for h in header_line.strip().split(",")]
    if tuple(header) != stream.channels:
        raise UserError(
            f"{file}: header {','.join(header)} does not match the channels of stream '{stream.name}' "
            f"({','.join(stream.channels)}); the first line must name the channels"
        )
    try:
        x = np.loadtxt(io.StringIO(body), delimiter=",", dtype=np.float32, ndmin=2)
    except ValueError as e:
        raise UserError(f"{file}: a row is not numeric ({e}); fix or remove it") from None
    return x.reshape(-1, len(stream.channels)) if x.size == 0 else x
