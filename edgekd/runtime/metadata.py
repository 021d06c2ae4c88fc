"""Read edgekd's metadata from a .tflite file without TensorFlow.

A .tflite file is a FlatBuffer of the TFLite schema. Its root `Model` table has a `metadata` vector of
`Metadata {name, buffer}` entries, each pointing at an entry of the `buffers` vector. edgekd stores its
metadata as UTF-8 JSON in the buffer of the entry named "edgekd" (written by
edgekd.export.metadata_writer.embed_metadata), so one file carries the model and what it needs.

This is a small bounds-checked reader of just Model.metadata and Model.buffers. It needs neither
TensorFlow nor the `flatbuffers` package, and a truncated or corrupt file raises ModelFormatError,
never IndexError or struct.error.
"""

from __future__ import annotations

import json
import struct

METADATA_NAME = "edgekd"
FILE_IDENTIFIER = b"TFL3"

# Field ids (vtable slots) in the TFLite schema.
_MODEL_BUFFERS, _MODEL_METADATA = 4, 6
_BUFFER_DATA, _BUFFER_OFFSET, _BUFFER_SIZE = 0, 1, 2
_METADATA_NAME, _METADATA_BUFFER = 0, 1


class ModelFormatError(ValueError):
    """The bytes are not a valid TFLite flatbuffer (wrong file, truncated or corrupt)."""


def is_tflite(data: bytes) -> bool:
    """True when the bytes carry the TFLite file identifier "TFL3" at bytes 4..8."""
    return len(data) >= 8 and bytes(data[4:8]) == FILE_IDENTIFIER


def read_metadata(tflite_bytes: bytes) -> dict | None:
    """The dict stored under "edgekd" in a .tflite file, or None when the file has none.

    Raises ModelFormatError (a ValueError) when the bytes are not a TFLite flatbuffer, are truncated
    or corrupt, or when the "edgekd" entry is not a JSON object.
    """
    raw = find_metadata_buffer(tflite_bytes, METADATA_NAME)
    if raw is None:
        return None
    try:
        value = json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        raise ModelFormatError(f"the {METADATA_NAME!r} metadata is not UTF-8 JSON ({e})") from None
    if not isinstance(value, dict):
        raise ModelFormatError(f"the {METADATA_NAME!r} metadata is not a JSON object")
    return value


INTEGRITY_KEY = "integrity"  # {"sha256": file_digest(...)}, written last by export and personalize
UNSIGNED_DIGEST = "0" * 64  # stands in for the digest while it is computed


def file_digest(tflite_bytes: bytes, recorded: str) -> str | None:
    """SHA-256 of the whole file with the recorded digest's 64 characters read as UNSIGNED_DIGEST: what export vouches
    for, so an edited graph, weight, normalisation or test split no longer matches; None when `recorded` is not in the
    file exactly once. A file re-signed by someone who edits it on purpose would match: it is a check against
    accidents and casual edits, not a signature."""
    import hashlib

    mark = recorded.encode("ascii", errors="replace")
    if len(mark) != len(UNSIGNED_DIGEST) or tflite_bytes.count(mark) != 1:
        return None
    return hashlib.sha256(bytes(tflite_bytes).replace(mark, UNSIGNED_DIGEST.encode("ascii"))).hexdigest()


def signed(tflite_bytes: bytes, metadata: dict | None) -> bool:
    """True when the metadata carries a checksum and the file matches it."""
    recorded = (metadata or {}).get(INTEGRITY_KEY)
    digest = recorded.get("sha256") if isinstance(recorded, dict) else None
    return isinstance(digest, str) and digest != UNSIGNED_DIGEST and file_digest(tflite_bytes, digest) == digest


def altered(tflite_bytes: bytes, metadata: dict | None) -> bool:
    """True when the metadata carries a checksum that the file no longer matches (files exported before checksums
    carry none and are taken as they are)."""
    return INTEGRITY_KEY in (metadata or {}) and not signed(tflite_bytes, metadata)


def metadata_span(tflite_bytes: bytes) -> tuple[int, int]:
    """(offset, length) in the file of the bytes of edgekd's metadata buffer, for a same-size rewrite in place
    (runtime/personalize.py); a ModelFormatError when the file has none."""
    r = FlatBufferReader(tflite_bytes)
    model = r.root()
    for entry in r.vector_of_tables(model, _MODEL_METADATA):
        if r.string(entry, _METADATA_NAME) == METADATA_NAME:
            buffers = r.vector_of_tables(model, _MODEL_BUFFERS)
            index = r.scalar(entry, _METADATA_BUFFER, "<I", 0)
            if index < len(buffers):
                start, length = r._vector(buffers[index], _BUFFER_DATA, 1)
                if length:
                    return start, length
    raise ModelFormatError(f"no {METADATA_NAME!r} metadata buffer")


def find_metadata_buffer(tflite_bytes: bytes, name: str) -> bytes | None:
    """The raw bytes of the buffer of the first Model.metadata entry called `name`, or None."""
    r = FlatBufferReader(tflite_bytes)
    model = r.root()
    for entry in r.vector_of_tables(model, _MODEL_METADATA):
        if r.string(entry, _METADATA_NAME) == name:
            index = r.scalar(entry, _METADATA_BUFFER, "<I", 0)
            buffers = r.vector_of_tables(model, _MODEL_BUFFERS)
            if index >= len(buffers):
                raise ModelFormatError(
                    f"metadata {name!r} points at buffer {index}, but the model has {len(buffers)} buffers"
                )
            return r.buffer_data(buffers[index])
    return None


class FlatBufferReader:
    """Bounds-checked access to the few FlatBuffer constructs edgekd reads: the metadata, and the tensors that
    runtime/personalize.py rewrites in place."""

    def __init__(self, data: bytes):
        if not isinstance(data, (bytes, bytearray, memoryview)):
            raise TypeError(f"expected bytes, got {type(data).__name__}")
        self.data = bytes(data)
        if len(self.data) < 8:
            raise ModelFormatError(f"{len(self.data)} bytes is too short for a TFLite file")
        if self.data[4:8] != FILE_IDENTIFIER:
            raise ModelFormatError("not a TFLite flatbuffer (no 'TFL3' file identifier at bytes 4..8)")

    def _unpack(self, fmt: str, pos: int) -> int:
        size = struct.calcsize(fmt)
        if pos < 0 or pos + size > len(self.data):
            raise ModelFormatError(
                f"truncated or corrupt: a read of {size} bytes at offset {pos} "
                f"is outside the {len(self.data)}-byte file"
            )
        return struct.unpack_from(fmt, self.data, pos)[0]

    def _table(self, pos: int) -> int:
        """Check that a table starts at pos (its vtable is in bounds) and return pos."""
        vtable = pos - self._unpack("<i", pos)
        vt_size = self._unpack("<H", vtable)
        if vt_size < 4 or vt_size % 2 or vtable + vt_size > len(self.data):
            raise ModelFormatError(f"corrupt: bad vtable at offset {vtable}")
        return pos

    def root(self) -> int:
        return self._table(self._unpack("<I", 0))

    def _field(self, table: int, field_id: int) -> int:
        """Absolute position of a field's value, or 0 when the field is absent."""
        vtable = table - self._unpack("<i", table)
        slot = 4 + 2 * field_id
        if slot + 2 > self._unpack("<H", vtable):
            return 0
        offset = self._unpack("<H", vtable + slot)
        return table + offset if offset else 0

    def scalar(self, table: int, field_id: int, fmt: str, default: int) -> int:
        pos = self._field(table, field_id)
        return self._unpack(fmt, pos) if pos else default

    def _indirect(self, pos: int) -> int:
        return pos + self._unpack("<I", pos)

    def _vector(self, table: int, field_id: int, elem_size: int) -> tuple[int, int]:
        """(start of the elements, length) of a vector field; (0, 0) when absent."""
        pos = self._field(table, field_id)
        if not pos:
            return 0, 0
        vec = self._indirect(pos)
        length = self._unpack("<I", vec)
        start = vec + 4
        if start + length * elem_size > len(self.data):
            raise ModelFormatError(
                f"truncated or corrupt: a vector of {length} elements at offset "
                f"{vec} runs past the end of the {len(self.data)}-byte file"
            )
        return start, length

    def vector(self, table: int, field_id: int, elem_size: int) -> tuple[int, int]:
        """(offset of the first element, length) of a vector field; (0, 0) when absent."""
        return self._vector(table, field_id, elem_size)

    def subtable(self, table: int, field_id: int) -> int | None:
        """The table a field points at, or None when the field is absent."""
        pos = self._field(table, field_id)
        return self._table(self._indirect(pos)) if pos else None

    def vector_of_tables(self, table: int, field_id: int) -> list[int]:
        start, length = self._vector(table, field_id, 4)
        return [self._table(self._indirect(start + 4 * i)) for i in range(length)]

    def string(self, table: int, field_id: int) -> str | None:
        start, length = self._vector(table, field_id, 1)
        if not start:
            return None
        return self.data[start : start + length].decode("utf-8", errors="replace")

    def buffer_data(self, buffer: int) -> bytes:
        start, length = self._vector(buffer, _BUFFER_DATA, 1)
        if length:
            return self.data[start : start + length]
        # Models over 2 GB keep buffer contents after the flatbuffer: (offset, size) from file start.
        offset = self.scalar(buffer, _BUFFER_OFFSET, "<Q", 0)
        size = self.scalar(buffer, _BUFFER_SIZE, "<Q", 0)
        if offset > 1:
            if offset + size > len(self.data):
                raise ModelFormatError(
                    f"truncated: buffer data at offset {offset} ({size} bytes) runs "
                    f"past the end of the {len(self.data)}-byte file"
                )
            return self.data[offset : offset + size]
        return b""


# Compression techniques in the order a label names them; keys not listed here follow in their own order.
_COMPRESSION_ORDER = ("prune", "low_rank", "cluster", "qat")


def model_label(metadata: dict | None) -> str:
    """A short name of how a model was made: "int8", "int8+prune50", "float32+lowrank50", "int8+prune50+qat",
    "int8+prune50+cluster16", "int8+lda" (with the LDA branch).

    Reads the "variant" and the optional "compression" dict of edgekd's metadata. Metadata written by
    another edgekd version may hold techniques or shapes this one does not know: they become their key
    name (or are left out when switched off), never an error.
    """
    metadata = metadata if isinstance(metadata, dict) else {}
    parts = [str(metadata.get("variant") or "unknown")]
    compression = metadata.get("compression")
    if isinstance(compression, dict):
        known = [key for key in _COMPRESSION_ORDER if key in compression]
        others = [key for key in compression if key not in _COMPRESSION_ORDER]
        parts += [tag for key in known + others if (tag := _compression_tag(key, compression[key]))]
    branch = metadata.get("classical_branch")  # `edgekd export --classical-branch lda`
    if isinstance(branch, dict) and branch.get("kind") and branch.get("kept", True):  # left out: the student alone
        parts.append(str(branch["kind"]))
    return "+".join(parts)


def _compression_tag(key: str, value) -> str | None:
    if value is None or value is False:
        return None  # recorded but switched off
    if key == "prune":
        return "prune" + _percent(value, "sparsity", "measured")
    if key == "low_rank":
        return "lowrank" + _percent(value, "fraction")
    if key == "cluster":
        clusters = value.get("clusters") if isinstance(value, dict) else value
        return "cluster" + (str(clusters) if isinstance(clusters, int) and not isinstance(clusters, bool) else "")
    return str(key).replace("_", "")


def _percent(value, *keys: str) -> str:
    """ "50" for 0.5, found directly or under the first of `keys` present; "" when there is no number."""
    if isinstance(value, dict):
        value = next((value[k] for k in keys if isinstance(value.get(k), (int, float))), None)
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return ""
    return f"{round(value * 100, 1):g}"
