"""A new wearer's own logits layer, fitted on the device from a few seconds of their gestures: numpy, scipy, LiteRT.

An exported student ends in one fully connected layer, the logits, on the mean of its last convolution over time
(the embedding). personalize runs the calibration windows through the .tflite model with TFLite's intermediate
tensors kept, reads each window's embedding (the logits layer's input), and fits new logits weights by softmax
regression pulled toward the shipped ones (an L2 penalty on the difference: with few windows the shipped head is
a better prior than nothing; its strength was chosen on myo22's validation people, benchmarks/personalize.py).
The new weights are written over the old in place, same tensors and sizes (an int8 model gets int8 weights with
new scales, and an output scale that covers the new logits), so the result is one .tflite with the same graph that
bench, stream and personalize take like any other. Its metadata records the calibration and carries a new
checksum; export leaves room for that record in the file.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from edgekd.errors import UserError
from edgekd.runtime.interpreter import TFLiteModel
from edgekd.runtime.metadata import (
    INTEGRITY_KEY,
    UNSIGNED_DIGEST,
    FlatBufferReader,
    ModelFormatError,
    file_digest,
    metadata_span,
)

STRENGTH = 1e-2  # the pull toward the shipped weights (benchmarks/personalize.py chose it on validation people)
RENORMALIZE = False  # refit the per-channel normalisation to the person too (benchmarks/personalize.py decides)
RECORD_ROOM = 1024  # bytes export leaves in the metadata for the calibration record (about 500 for 7 classes)
MIN_WINDOWS_PER_CLASS = 10  # about 1.5 s of a gesture at myo22's 0.5 s windows and 0.1 s hop
# int8: the output scale covers this many times the new logits' range on the calibration windows; a wider range costs
# resolution (tests/test_personalize.py checks the written file decides as the fitted float head does)
OUTPUT_MARGIN = 1.25
_FIX = "re-export it with `edgekd export` (this version leaves room for personalization)"

# TFLite schema field ids (vtable slots) the in-place writer reads.
_MODEL_SUBGRAPHS, _MODEL_BUFFERS = 2, 4
_SUBGRAPH_TENSORS = 0
_TENSOR_BUFFER, _TENSOR_QUANTIZATION = 2, 4
_QUANT_SCALE, _QUANT_ZERO_POINT = 2, 3
_BUFFER_DATA = 0


@dataclass(frozen=True)
class Head:
    """The logits layer of a model: tensor indices of its input (the embedding), weights, bias and output."""

    embedding: int
    kernel: int
    bias: int
    output: int
    quantized: bool  # int8 weights with scales (full int8 export); else float32


@dataclass(frozen=True)
class Calibration:
    windows: np.ndarray  # [N, T, C] float32, normalised as the model expects
    labels: np.ndarray  # [N] indices into the model's classes
    source: str  # what the windows came from, for the record


@dataclass(frozen=True)
class Personalized:
    model_bytes: bytes
    record: dict  # what went into the metadata's "personalized" entry
    calibration_accuracy: tuple[float, float]  # (shipped head, personal head) on the calibration windows


def inspecting_interpreter(model: TFLiteModel):
    """A second interpreter of the model that keeps every intermediate tensor and runs TFLite's own kernels: the
    XNNPACK delegate would fuse the graph into one node and reuse the embedding's memory."""
    from ai_edge_litert.interpreter import OpResolverType

    interpreter = type(model._interpreter)(
        model_content=model.model_bytes,
        num_threads=1,
        experimental_preserve_all_tensors=True,
        experimental_op_resolver_type=OpResolverType.BUILTIN_WITHOUT_DEFAULT_DELEGATES,
    )
    interpreter.allocate_tensors()
    return interpreter


def find_head(model: TFLiteModel, interpreter) -> Head:
    """The fully connected op that produces the model's output; a UserError when the model does not end in one."""
    output = int(interpreter.get_output_details()[0]["index"])
    producers = [op for op in interpreter._get_ops_details() if output in [int(i) for i in op["outputs"]]]
    if len(producers) != 1 or producers[0]["op_name"] != "FULLY_CONNECTED" or len(producers[0]["inputs"]) != 3:
        kind = producers[0]["op_name"] if producers else "no op"
        raise UserError(
            f"{model.path}: its output comes from {kind}, not a logits layer personalize can refit (a student "
            f"exported with --classical-branch or a selector has none); personalize a plain `edgekd export`"
        )
    embedding, kernel, bias = (int(i) for i in producers[0]["inputs"])
    kernel_dtype = np.dtype(interpreter._get_tensor_details(kernel, 0)["dtype"])
    embedding_dtype = np.dtype(interpreter._get_tensor_details(embedding, 0)["dtype"])
    computed = any(kernel in [int(i) for i in op["outputs"]] for op in interpreter._get_ops_details())  # float16
    if computed or bias < 0 or (kernel_dtype, embedding_dtype) not in ((np.float32, np.float32), (np.int8, np.int8)):
        raise UserError(
            f"{model.path}: its logits weights are {kernel_dtype} ({model.metadata.get('variant', '?')} export); "
            f"personalize takes float32 and int8 exports"
        )
    return Head(embedding, kernel, bias, output, quantized=kernel_dtype == np.int8)


def shipped_weights(interpreter, head: Head) -> tuple[np.ndarray, np.ndarray]:
    """(W [K, D], b [K]) of the logits layer as floats."""
    weights = []
    for index in (head.kernel, head.bias):
        value = interpreter.get_tensor(index).astype(np.float64)
        scales = interpreter._get_tensor_details(index, 0)["quantization_parameters"]["scales"]
        if head.quantized:
            value = value * (scales.reshape(-1, *([1] * (value.ndim - 1))) if len(scales) > 1 else scales[0])
        weights.append(value)
    return weights[0], weights[1]


def embeddings(model: TFLiteModel, interpreter, head: Head, windows: np.ndarray) -> np.ndarray:
    """[N, D] float64: the logits layer's input for each window (`interpreter`: inspecting_interpreter's)."""
    details = interpreter._get_tensor_details(head.embedding, 0)
    scale, zero_point = details["quantization"]
    out = np.empty((len(windows), int(np.prod(details["shape"][1:]))), np.float64)
    for i, window in enumerate(windows):
        interpreter.reset_all_variables()  # a fused LSTM keeps its state between invokes (runtime/interpreter.py)
        interpreter.set_tensor(model._input_index, model.quantize_input(window))
        interpreter.invoke()
        value = interpreter.get_tensor(head.embedding).reshape(-1).astype(np.float64)
        out[i] = (value - zero_point) * scale if scale else value
    return out


def fit_head(
    features: np.ndarray,
    labels: np.ndarray,
    prior_w: np.ndarray,
    prior_b: np.ndarray,
    strength: float = STRENGTH,
    fit_classes=None,
) -> tuple[np.ndarray, np.ndarray]:
    """Softmax regression on `features` [N, D], each class weighted equally, plus strength * the squared distance of
    (W, b) from the prior. Only the rows of `fit_classes` (default: the classes in `labels`) move; the others keep the
    prior, so a class missing from the calibration is still recognised as before."""
    from scipy.optimize import minimize

    n_classes = len(prior_b)
    fit = np.array(sorted(set(labels.tolist()) if fit_classes is None else fit_classes))
    counts = np.bincount(labels, minlength=n_classes)
    sample_weight = 1.0 / (counts[labels] * len(np.unique(labels)))  # sums to 1, each class a share
    onehot = np.eye(n_classes)[labels]
    prior = np.hstack([prior_w, prior_b[:, None]])  # [K, D + 1]
    x = np.hstack([features, np.ones((len(features), 1))])

    def loss_and_gradient(flat):
        params = prior.copy()
        params[fit] = flat.reshape(len(fit), -1)
        logits = x @ params.T
        logits -= logits.max(axis=1, keepdims=True)
        proba = np.exp(logits)
        proba /= proba.sum(axis=1, keepdims=True)
        loss = -np.sum(sample_weight * np.log(np.sum(proba * onehot, axis=1) + 1e-12))
        grad = ((proba - onehot) * sample_weight[:, None]).T @ x
        difference = params - prior
        loss += strength * np.sum(difference[fit] ** 2)
        return loss, (grad[fit] + 2 * strength * difference[fit]).ravel()

    result = minimize(loss_and_gradient, prior[fit].ravel(), jac=True, method="L-BFGS-B", options={"maxiter": 500})
    params = prior.copy()
    params[fit] = result.x.reshape(len(fit), -1)
    return params[:, :-1], params[:, -1]


def load_calibration(model: TFLiteModel, data: str | Path, where: dict[str, list[str]] | None = None) -> Calibration:
    """The windows of `data`'s recordings (those `where` selects), cut and normalised as the model was trained, labelled
    in the model's class order; a UserError when the streams or classes do not fit the model."""
    from edgekd.data.dataset import load_dataset
    from edgekd.data.prepare import check_labels_known, check_streams_fit, recording_windows
    from edgekd.data.splits import select_recordings
    from edgekd.data.windows import Preprocessor

    meta = _require_metadata(model)
    dataset = load_dataset(data)
    preprocessor = Preprocessor.from_dict(meta["preprocessing"])
    check_streams_fit(dataset, preprocessor, f"the model {model.path}")
    indices = select_recordings(dataset, where) if where else list(range(len(dataset.recordings)))
    check_labels_known(dataset, indices, meta["classes"], f"the model {model.path}")
    windows = recording_windows(dataset, indices, preprocessor, classes=meta["classes"])
    chosen = " and ".join(f"{k}={','.join(v)}" for k, v in (where or {}).items())
    return Calibration(windows.x, np.asarray(windows.y, np.int64), f"{data}" + (f" ({chosen})" if chosen else ""))


def personalize(
    model: TFLiteModel,
    calibration: Calibration,
    keep_missing: bool = False,
    strength: float = STRENGTH,
    renormalize: bool = RENORMALIZE,
) -> Personalized:
    """The model's bytes with a logits layer fitted to `calibration` (load_calibration's windows of the model), and
    with `renormalize` the person's own per-channel offset and scale in place of the training people's."""
    classes = list(model.metadata["classes"])
    interpreter = inspecting_interpreter(model)
    head = find_head(model, interpreter)
    check_calibration(model, calibration, classes, keep_missing)
    prior_w, prior_b = shipped_weights(interpreter, head)
    features = embeddings(model, interpreter, head, calibration.windows)
    shipped = float(np.mean(np.argmax(features @ prior_w.T + prior_b, 1) == calibration.labels))
    preprocessing = model.metadata["preprocessing"]
    if renormalize:
        offset, scale = personal_normalisation(calibration.windows)
        features = embeddings(model, interpreter, head, ((calibration.windows - offset) / scale).astype(np.float32))
        preprocessing = renormalised(preprocessing, offset, scale)
    weights, bias = fit_head(features, calibration.labels, prior_w, prior_b, strength)
    personal = float(np.mean(np.argmax(features @ weights.T + bias, 1) == calibration.labels))
    counts = np.bincount(calibration.labels, minlength=len(classes))
    record = {
        "at": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "calibration": calibration.source[-200:],
        "windows": {c: int(n) for c, n in zip(classes, counts) if n},
        "kept_shipped": [c for c, n in zip(classes, counts) if not n],
        "method": f"softmax regression toward the shipped logits layer, strength {strength:g}"
        + (", on the person's own normalisation" if renormalize else ""),
        "calibration_accuracy": {"shipped": round(shipped, 4), "personal": round(personal, 4)},
    }
    data = write_head(model, interpreter, head, weights, bias, features)
    # What export measured (test accuracy, agreement with the Keras student) describes the shipped head, not this one.
    kept = {k: v for k, v in model.metadata.items() if k not in ("test_accuracy", "keras_test_accuracy", "agreement")}
    data = rewrite_metadata(model.path, data, {**kept, "preprocessing": preprocessing, "personalized": record})
    return Personalized(data, record, (shipped, personal))


def personal_normalisation(windows: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(offset, scale) per channel of windows already normalised with the shipped statistics: how far the person's
    signals sit from the training people's (an armband placed a little differently, other skin and muscle)."""
    flat = windows.reshape(-1, windows.shape[-1]).astype(np.float64)
    return flat.mean(axis=0), np.maximum(flat.std(axis=0), 1e-3)


def renormalised(preprocessing: dict, offset: np.ndarray, scale: np.ndarray) -> dict:
    """The metadata's preprocessing with (x - mean) / std composed with (z - offset) / scale: one z-score again."""
    mean, std = np.asarray(preprocessing["mean"], np.float64), np.asarray(preprocessing["std"], np.float64)
    return {
        **preprocessing,
        "mean": [float(np.float32(v)) for v in mean + offset * std],
        "std": [float(np.float32(v)) for v in std * scale],
    }


def check_personalizable(model: TFLiteModel) -> None:
    """A UserError now, before minutes of calibrating, when personalize could not refit `model`: no edgekd metadata, no
    plain logits layer, or no room for the record."""
    meta = _require_metadata(model)
    find_head(model, inspecting_interpreter(model))
    try:
        _, room = metadata_span(model.model_bytes)
    except ModelFormatError:
        room = 0
    if room < len(json.dumps(meta, ensure_ascii=False).encode("utf-8")) + 64:  # files exported before the room: none
        raise UserError(f"{model.path}: has no room for the calibration record; {_FIX}")


def _require_metadata(model: TFLiteModel) -> dict:
    meta = model.metadata
    if not meta or "preprocessing" not in meta or "classes" not in meta:
        raise UserError(f"{model.path}: carries no edgekd metadata, so its windows and classes are unknown; {_FIX}")
    return meta


def check_calibration(model: TFLiteModel, calibration: Calibration, classes: list[str], keep_missing: bool) -> None:
    counts = np.bincount(calibration.labels, minlength=len(classes))
    missing = [c for c, n in zip(classes, counts) if n == 0]
    if missing and not keep_missing:
        raise UserError(
            f"{calibration.source}: has no recordings of {', '.join(missing)} (the model knows "
            f"{', '.join(classes)}); record them, or pass --keep-missing to keep the shipped model's "
            f"behaviour for those classes"
        )
    few = [f"{c} ({n})" for c, n in zip(classes, counts) if 0 < n < MIN_WINDOWS_PER_CLASS]
    if few:
        raise UserError(
            f"{calibration.source}: too few windows of {', '.join(few)}; personalize needs at least "
            f"{MIN_WINDOWS_PER_CLASS} windows of each class (a few seconds of each gesture)"
        )


# ---- writing the file in place ------------------------------------------------------------------------------------


def write_head(
    model: TFLiteModel, interpreter, head: Head, weights: np.ndarray, bias: np.ndarray, features: np.ndarray
) -> bytes:
    """The model's bytes with (weights, bias) in place of the logits layer's; for int8, new per-row weight scales,
    bias scales to match, and an output scale and zero point covering OUTPUT_MARGIN times the new logits' range on the
    calibration windows."""
    data = bytearray(model.model_bytes)
    spans = _TensorSpans(data, model.path)
    if not head.quantized:
        spans.write_data(head.kernel, weights.astype("<f4").tobytes())
        spans.write_data(head.bias, bias.astype("<f4").tobytes())
        return bytes(data)
    input_scale = interpreter._get_tensor_details(head.embedding, 0)["quantization"][0]
    per_row = spans.count(head.kernel, _QUANT_SCALE) == len(bias)
    peak = np.abs(weights).max(axis=1) if per_row else np.full(len(bias), np.abs(weights).max())
    kernel_scale = np.maximum(peak, 1e-12) / 127.0
    spans.write_data(
        head.kernel, np.clip(np.round(weights / kernel_scale[:, None]), -127, 127).astype(np.int8).tobytes()
    )
    bias_scale = input_scale * kernel_scale
    spans.write_data(head.bias, np.round(bias / bias_scale).astype("<i4").tobytes())
    spans.write_vector(
        head.kernel, _QUANT_SCALE, (kernel_scale if per_row else kernel_scale[:1]).astype("<f4").tobytes()
    )
    spans.write_vector(head.bias, _QUANT_SCALE, (bias_scale if per_row else bias_scale[:1]).astype("<f4").tobytes())
    logits = features @ weights.T + bias
    low, high = min(0.0, OUTPUT_MARGIN * float(logits.min())), max(0.0, OUTPUT_MARGIN * float(logits.max()))
    output_scale = max(high - low, 1e-6) / 255.0
    spans.write_vector(head.output, _QUANT_SCALE, np.array([output_scale], "<f4").tobytes())
    spans.write_vector(
        head.output, _QUANT_ZERO_POINT, np.array([int(round(-128 - low / output_scale))], "<i8").tobytes()
    )
    return bytes(data)


class _TensorSpans:
    """Same-size writes into a tensor's data and quantization vectors, found with the bounds-checked reader."""

    def __init__(self, data: bytearray, path: Path):
        self.data, self.path = data, path
        self.reader = FlatBufferReader(bytes(data))
        model = self.reader.root()
        self.tensors = self.reader.vector_of_tables(
            self.reader.vector_of_tables(model, _MODEL_SUBGRAPHS)[0], _SUBGRAPH_TENSORS
        )
        self.buffers = self.reader.vector_of_tables(model, _MODEL_BUFFERS)

    def _span(self, index: int, field_id: int, elem_size: int) -> tuple[int, int]:
        if field_id == _BUFFER_DATA:
            buffer = self.reader.scalar(self.tensors[index], _TENSOR_BUFFER, "<I", 0)
            users = sum(self.reader.scalar(t, _TENSOR_BUFFER, "<I", 0) == buffer for t in self.tensors)
            if not buffer or users != 1:
                raise UserError(f"{self.path}: its logits weights are not a tensor of their own; {_FIX}")
            return self.reader.vector(self.buffers[buffer], _BUFFER_DATA, 1)
        quantization = self.reader.subtable(self.tensors[index], _TENSOR_QUANTIZATION)
        if quantization is None:
            raise UserError(f"{self.path}: its logits layer carries no quantization parameters; {_FIX}")
        return self.reader.vector(quantization, field_id, elem_size)

    def count(self, index: int, field_id: int) -> int:
        return self._span(index, field_id, 4)[1]

    def write_data(self, index: int, payload: bytes) -> None:
        self._write(self._span(index, _BUFFER_DATA, 1), payload, 1)

    def write_vector(self, index: int, field_id: int, payload: bytes) -> None:
        size = 8 if field_id == _QUANT_ZERO_POINT else 4
        self._write(self._span(index, field_id, size), payload, size)

    def _write(self, span: tuple[int, int], payload: bytes, elem_size: int) -> None:
        start, length = span
        if length * elem_size != len(payload):
            raise UserError(f"{self.path}: its logits layer is laid out unlike an edgekd export's; {_FIX}")
        self.data[start : start + len(payload)] = payload


def rewrite_metadata(path: Path, data: bytes, metadata: dict) -> bytes:
    """`data` with `metadata` written over edgekd's metadata buffer in place (padded with spaces, which JSON ignores)
    and signed again (runtime/metadata.file_digest)."""
    try:
        start, length = metadata_span(data)
    except (ModelFormatError, TypeError):
        raise UserError(f"{path}: carries no edgekd metadata to record the calibration in; {_FIX}") from None
    payload = json.dumps(
        {**metadata, INTEGRITY_KEY: {"sha256": UNSIGNED_DIGEST}}, ensure_ascii=False, allow_nan=False
    ).encode("utf-8")
    if len(payload) > length:
        raise UserError(f"{path}: has no room for the calibration record ({len(payload) - length} bytes short); {_FIX}")
    out = bytearray(data)
    out[start : start + length] = payload + b" " * (length - len(payload))
    digest = file_digest(bytes(out), UNSIGNED_DIGEST)
    if digest is None:
        raise UserError(
            f"{path}: cannot be signed again (its weights happen to hold the checksum's placeholder); {_FIX}"
        )
    return bytes(out).replace(UNSIGNED_DIGEST.encode("ascii"), digest.encode("ascii"))
