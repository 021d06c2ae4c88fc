"""Quantization-aware fine-tuning for full-int8 export, as far as the converter keeps the model whole.

What is covered, and why no more (one-off trials on the myo5 repetition-2 student, Keras and post-training
int8 both 100%; benchmarks/frontier.py measures only what is built, the Dense-only QAT):
- Dense layers (the head): tfmot's default 8-bit scheme, fake-quantised weights and outputs. Converts to
  full int8 with the LSTM still fused (tests/test_compress.py).
- Conv1D: not covered. `quantize_model` rejects it; tfmot's per-channel weight quantizer fails on 3-D kernels;
  a per-channel wrapper that reshapes the kernel does not convert ("tfl.reshape op requires output type ...
  cast compatible"); per-tensor weight fake-quant converted less accurately, and fake-quantised Conv1D
  outputs made the converted model collapse to one class. Post-training calibration does better for it.
- LSTM: not covered. A custom QuantizeConfig trains, but the LSTM then converts to WHILE loops instead of the
  fused op (../shared/docs/STACK.md), which full-int8 conversion cannot handle.
The uncovered layers get their int8 ranges from calibration windows during conversion, as in post-training
quantization; export says so in its output.
"""

from __future__ import annotations

from dataclasses import dataclass

from edgekd._tf import keras
from edgekd.compress.finetune import DistillationData, clone_with_weights, finetune

COVERED = (keras.layers.Dense,)
NOT_COVERED = {
    "Conv1D": "calibrated after training: fake-quantised Conv1D converted to a collapsed or worse int8 model",
    "LSTM": "calibrated after training: a quantization-aware LSTM converts unfused (WHILE loops)",
}


@dataclass
class QatResult:
    model: keras.Model  # with fake-quant wrappers; convert() turns it into a full-int8 model
    covered: list[str]
    not_covered: dict[str, str]  # layer name -> why
    val_accuracy: float


def quantization_aware(
    student: keras.Model, data: DistillationData, epochs: int, callbacks=(), seed: int = 0, verbose: int = 0
) -> QatResult:
    import tensorflow_model_optimization as tfmot

    api = tfmot.quantization.keras
    covered, not_covered = [], {}

    def annotate(layer):
        if isinstance(layer, COVERED):
            covered.append(layer.name)
            return api.quantize_annotate_layer(layer)
        why = NOT_COVERED.get(type(layer).__name__)
        if why:
            not_covered[layer.name] = why
        return layer

    source = clone_with_weights(student)
    annotated = keras.models.clone_model(source, clone_function=annotate)
    annotated.set_weights(source.get_weights())
    model = api.quantize_apply(annotated)
    val_accuracy = finetune(
        model, data, epochs, callbacks=callbacks, seed=seed, verbose=verbose, label="quantization-aware fine-tuning"
    )
    return QatResult(model, covered, not_covered, val_accuracy)
