"""Embed edgekd's metadata in a .tflite file, so one file carries the model and what it needs.

The metadata is stored as UTF-8 JSON in a buffer referenced by a Model.metadata entry named "edgekd"
(the TFLite schema's own mechanism: the converter stores "min_runtime_version" and
"CONVERSION_METADATA" the same way). The device side reads it back without TensorFlow with
edgekd.runtime.metadata.read_metadata.

The model is rewritten with TensorFlow's own flatbuffer tooling (tensorflow.lite.tools.flatbuffer_utils
and the schema's generated object API), imported only when embed_metadata is called.
"""

from __future__ import annotations

import json

import numpy as np

from edgekd.runtime.metadata import (
    INTEGRITY_KEY,
    METADATA_NAME,
    UNSIGNED_DIGEST,
    file_digest,
    is_tflite,
    read_metadata,
    signed,
)


def embed_metadata(tflite_bytes: bytes, metadata: dict, reserve: int = 0) -> bytes:
    """A copy of the .tflite model with `metadata` stored under "edgekd", replacing any earlier one.

    `metadata` must be a JSON-serialisable dict. The weights, graph, signatures and the converter's own
    metadata entries are kept; the returned model runs exactly like the input. `reserve`: spaces after the JSON
    (which JSON ignores), room for personalize to rewrite the metadata in place without TensorFlow.
    """
    if not isinstance(metadata, dict):
        raise TypeError(f"metadata must be a dict, got {type(metadata).__name__}")
    if not is_tflite(tflite_bytes):
        raise ValueError("not a TFLite flatbuffer (no 'TFL3' file identifier at bytes 4..8)")
    payload = json.dumps(metadata, ensure_ascii=False, allow_nan=False).encode("utf-8") + b" " * reserve

    from tensorflow.lite.python import schema_py_generated as schema
    from tensorflow.lite.tools import flatbuffer_utils

    import edgekd._tf  # noqa: F401  (TensorFlow with legacy Keras switched on first)

    model = flatbuffer_utils.read_model_from_bytearray(bytearray(tflite_bytes))
    model.metadata = list(model.metadata or [])
    model.buffers = list(model.buffers or [])
    data = np.frombuffer(payload, dtype=np.uint8).copy()

    ours = [m for m in model.metadata if _name(m.name) == METADATA_NAME]
    used_by_tensors = {t.buffer for sg in (model.subgraphs or []) for t in (sg.tensors or [])}
    if ours and 0 < ours[0].buffer < len(model.buffers) and ours[0].buffer not in used_by_tensors:
        model.buffers[ours[0].buffer].data = data  # reuse the old entry's buffer
        model.metadata = [m for m in model.metadata if m is ours[0] or _name(m.name) != METADATA_NAME]
    else:
        model.metadata = [m for m in model.metadata if _name(m.name) != METADATA_NAME]
        buffer = schema.BufferT()
        buffer.data = data
        model.buffers.append(buffer)
        entry = schema.MetadataT()
        entry.name = METADATA_NAME
        entry.buffer = len(model.buffers) - 1
        model.metadata.append(entry)

    # Byte vectors come out 4-byte aligned, as in the converter's own output.
    out = flatbuffer_utils.convert_object_to_bytearray(model)

    if read_metadata(out) != json.loads(payload):  # cheap self-check with the device-side reader
        raise RuntimeError("embedding the edgekd metadata failed: it does not read back")
    return out


def embed_signed_metadata(tflite_bytes: bytes, metadata: dict, reserve: int = 0) -> bytes:
    """embed_metadata, with the checksum of the whole file (runtime/metadata.file_digest) added: bench and stream then
    refuse a file whose graph, weights or metadata were changed afterwards, before the runtime reads it."""
    placeholder = embed_metadata(tflite_bytes, {**metadata, INTEGRITY_KEY: {"sha256": UNSIGNED_DIGEST}}, reserve)
    digest = file_digest(placeholder, UNSIGNED_DIGEST)
    if digest is None:
        raise RuntimeError("cannot sign the model: the digest's placeholder is not in it exactly once")
    out = placeholder.replace(UNSIGNED_DIGEST.encode("ascii"), digest.encode("ascii"))
    if not signed(out, read_metadata(out)):
        raise RuntimeError("the checksum does not hold after embedding it")
    return out


def _name(name) -> str | None:
    return name.decode("utf-8", errors="replace") if isinstance(name, bytes) else name
