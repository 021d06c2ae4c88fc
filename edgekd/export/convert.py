"""Keras student -> .tflite bytes, batch 1, fused LSTM, builtin ops only.

The batch is fixed at 1 through a concrete function passed together with the model: an unset batch
fails to convert, and without the model argument the LSTM becomes WHILE loops and full-int8
conversion segfaults (../shared/docs/STACK.md).
"""

from __future__ import annotations

import numpy as np

from edgekd._tf import tf
from edgekd.console import quiet_native_output
from edgekd.export.formats import VARIANTS

# Full-int8 conversion with the default (MLIR) quantizer can collapse an LSTM to one class; the older
# quantizer often holds (STACK.md). Export tries them in this order and keeps the first that agrees.
INT8_QUANTIZERS = ("mlir", "legacy")


def convert(
    model,
    variant: str,
    representative: np.ndarray | None = None,
    quantizer: str = "mlir",
    per_channel: bool = True,
    float_layers: tuple[str, ...] = (),
) -> bytes:
    """`model` as .tflite bytes of `variant`, the converter's own chatter kept off the terminal (edgekd/console.py)."""
    with quiet_native_output():
        return _convert(model, variant, representative, quantizer, per_channel, float_layers)


def _convert(
    model,
    variant: str,
    representative: np.ndarray | None,
    quantizer: str,
    per_channel: bool,
    float_layers: tuple[str, ...],
) -> bytes:
    """`per_channel=False`: one quantization scale per weight tensor instead of one per output channel (for
    clustered kernels, whose K shared values stay K int8 values only under a single scale).
    `float_layers`: names of layers of `model` that int8 leaves in float32 (the LDA branch of models/hybrid.py);
    the rest is quantized as usual, and the model's input and output stay float32 (see _int8_except)."""
    if variant not in [f.name for f in VARIANTS]:
        raise ValueError(f"unknown variant {variant!r}")
    if float_layers and variant == "int8":
        return _int8_except(model, representative, float_layers)
    converter = tf.lite.TFLiteConverter.from_concrete_functions([_concrete(model)], model)
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


def _concrete(model):
    _, window_len, channels = model.input_shape
    call = tf.function(lambda x: model(x, training=False))
    return call.get_concrete_function(tf.TensorSpec([1, window_len, channels], tf.float32))


def _int8_except(model, representative: np.ndarray | None, float_layers: tuple[str, ...]) -> bytes:
    """int8 for everything but the ops of `float_layers`, by the converter's selective quantization (the
    quantization debugger's denylist of op outputs; MLIR quantizer). The ops are found by their tensor names, which
    start with "<model>/<layer>/" in the float conversion. Input and output stay float32: a graph that starts in
    float cannot take int8 windows without first losing what the float part needs (the LDA branch's waveform length,
    zero-crossing and slope-sign counts at the input's int8 resolution: fully int8, the isl50 hybrid agreed with its
    Keras model on 43% of test windows)."""
    if representative is None or len(representative) == 0:
        raise ValueError("int8 conversion needs representative windows")
    concrete = _concrete(model)
    float_converter = tf.lite.TFLiteConverter.from_concrete_functions([concrete], model)
    float_converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS]
    from edgekd.runtime.interpreter import load_interpreter_class

    interpreter_class, _ = load_interpreter_class()
    names = [t["name"] for t in interpreter_class(model_content=float_converter.convert()).get_tensor_details()]
    prefixes = tuple(f"{model.name}/{layer}/" for layer in float_layers)
    denylisted = [n for n in names if any(part.startswith(prefixes) for part in n.split(";"))]
    if not denylisted:
        raise ValueError(f"no ops of layers {', '.join(float_layers)} found in {model.name}")
    samples = np.asarray(representative, dtype=np.float32)
    converter = tf.lite.TFLiteConverter.from_concrete_functions([concrete], model)
    converter.optimizations = [tf.lite.Optimize.DEFAULT]
    converter.representative_dataset = lambda: ([w[np.newaxis]] for w in samples)
    converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8, tf.lite.OpsSet.TFLITE_BUILTINS]
    debugger = tf.lite.experimental.QuantizationDebugger(
        converter=converter,
        debug_dataset=lambda: ([w[np.newaxis]] for w in samples[:8]),
        debug_options=tf.lite.experimental.QuantizationDebugOptions(denylisted_nodes=denylisted),
    )
    return debugger.get_nondebug_quantized_model()


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
