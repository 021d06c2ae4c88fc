"""Keras student -> .tflite bytes, batch 1, fused LSTM, builtin ops only.

The batch is fixed at 1 through a concrete function passed together with the model: an unset batch
fails to convert, and without the model argument the LSTM becomes WHILE loops and full-int8
conversion segfaults (../shared/docs/STACK.md).
"""
from __future__ import annotations

import numpy as np

from edgekd._tf import tf

VARIANTS = ("float32", "float16", "dynamic", "int8")
# Full-int8 conversion with the default (MLIR) quantizer can collapse an LSTM to one class; the older
# quantizer often holds (STACK.md). Export tries them in this order and keeps the first that agrees.
INT8_QUANTIZERS = ("mlir", "legacy")


def convert(model, variant: str, representative: np.ndarray | None = None, quantizer: str = "mlir",
            per_channel: bool = True) -> bytes:
    """`per_channel=False`: one quantization scale per weight tensor instead of one per output channel (for
    clustered kernels, whose K shared values stay K int8 values only under a single scale)."""
    if variant not in VARIANTS:
        raise ValueError(f"unknown variant {variant!r}")
    _, window_len, channels = model.input_shape
    call = tf.function(lambda x: model(x, training=False))
    concrete = call.get_concrete_function(tf.TensorSpec([1, window_len, channels], tf.float32))
    converter = tf.lite.TFLiteConverter.from_concrete_functions([concrete], model)
    converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS]  # no Flex ops: LiteRT cannot run them
    if variant != "float32":
        converter.optimizations = [tf.lite.Optimize.DEFAULT]
    # The converter's only switch for this is private; measured with TF 2.21 (benchmarks/frontier.py, cluster rows).
    converter._experimental_disable_per_channel = not per_channel
    if variant == "float16":
        converter.target_spec.supported_types = [tf.float16]
    if variant == "int8":
        if representative is None or len(representative) == 0:
            raise ValueError("int8 conversion needs representative windows")
        samples = np.asarray(representative, dtype=np.float32)
        converter.representative_dataset = lambda: ([w[np.newaxis]] for w in samples)
        converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
        converter.inference_input_type = tf.int8
        converter.inference_output_type = tf.int8
        converter.experimental_new_quantizer = quantizer == "mlir"
    return converter.convert()


def builtin_op_names(tflite_bytes: bytes) -> list[str]:
    """Names of the operators a .tflite uses, e.g. to prove the LSTM is fused (no WHILE loop)."""
    from tensorflow.lite.python import schema_py_generated as schema
    from tensorflow.lite.tools import flatbuffer_utils

    names = {v: k for k, v in vars(schema.BuiltinOperator).items() if not k.startswith("_")}
    model = flatbuffer_utils.read_model_from_bytearray(bytearray(tflite_bytes))
    ops = []
    for code in model.operatorCodes:
        builtin = max(code.builtinCode, code.deprecatedBuiltinCode)
        ops.append(code.customCode.decode() if code.customCode else names.get(builtin, str(builtin)))
    return sorted(set(ops))
