"""Magnitude pruning of a student's Conv1D, LSTM and Dense kernels, fine-tuned with the distillation loss.

tfmot traps this module steps around (../shared/docs/STACK.md):
- `prune_low_magnitude` wraps the very layers it is given, so the source model would be pruned too: it gets a
  clone.
- The schedule's default `frequency=100` can exceed the run's steps and leave 0% sparsity: the schedule is sized
  to the fine-tuning's real step count and ends on a pruning step, with epochs left to recover after it.
- The wrappers are stripped before export; stripped, the LSTM still converts to the fused TFLite op.
A pruned .tflite is as large as a dense one (zeros are stored); the saving shows in gzip (or any compressed
storage or transfer), which is what the export output reports.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from edgekd._tf import keras
from edgekd.compress.finetune import DistillationData, clone_with_weights, finetune

# Share of the fine-tuning steps over which sparsity ramps up; the rest lets accuracy recover at full sparsity.
RAMP_SHARE = 0.7
_PRUNABLE = (keras.layers.Conv1D, keras.layers.LSTM, keras.layers.Dense)


@dataclass
class PruneResult:
    model: keras.Model  # stripped: plain layers with zeros in their kernels
    target: float
    sparsity: float  # measured over every pruned kernel
    per_layer: dict[str, float]  # "layer/kernel" -> measured sparsity
    val_accuracy: float


def prune(
    student: keras.Model, data: DistillationData, sparsity: float, epochs: int, seed: int = 0, verbose: int = 0
) -> PruneResult:
    import tensorflow_model_optimization as tfmot

    sparsity_api = tfmot.sparsity.keras
    steps = data.steps_per_epoch * epochs
    frequency = max(1, data.steps_per_epoch // 4)
    end_step = max(frequency, frequency * int(RAMP_SHARE * steps // frequency))
    schedule = sparsity_api.PolynomialDecay(
        initial_sparsity=0.0, final_sparsity=sparsity, begin_step=0, end_step=end_step, frequency=frequency
    )

    def wrap(layer):
        if isinstance(layer, _PRUNABLE):
            return sparsity_api.prune_low_magnitude(layer, pruning_schedule=schedule)
        return layer

    # The wrappers take the clone's layers, weights included; the caller's model is never touched.
    wrapped = keras.models.clone_model(clone_with_weights(student), clone_function=wrap)
    full_sparsity_epoch = -(-end_step // data.steps_per_epoch) - 1  # the first epoch that ends at full sparsity
    val_accuracy = finetune(
        wrapped,
        data,
        epochs,
        callbacks=[sparsity_api.UpdatePruningStep()],
        seed=seed,
        verbose=verbose,
        best_from_epoch=full_sparsity_epoch,
        label=f"pruning to {sparsity:.0%}",
    )
    stripped = sparsity_api.strip_pruning(wrapped)
    per_layer = kernel_sparsity(stripped)
    zeros = sum(int(np.sum(k == 0)) for k in _kernels(stripped).values())
    total = sum(k.size for k in _kernels(stripped).values())
    return PruneResult(stripped, sparsity, zeros / total if total else 0.0, per_layer, val_accuracy)


def kernel_sparsity(model: keras.Model) -> dict[str, float]:
    """Fraction of exact zeros in each prunable kernel (biases are not pruned and not counted)."""
    return {name: float(np.mean(k == 0)) for name, k in _kernels(model).items()}


def kernel_masks(model: keras.Model) -> dict[str, np.ndarray]:
    """Where each kernel is non-zero: later fine-tuning (QAT) multiplies by this to keep the pruned zeros."""
    return {name: (k != 0).astype(np.float32) for name, k in _kernels(model).items()}


def kernel_variables(model: keras.Model) -> dict[str, object]:
    """The kernel variables by "layer/kernel" name, looking through tfmot wrappers (QuantizeWrapper.layer).

    Found among the (outer) layer's weights rather than as attributes: a QuantizeWrapper replaces the inner
    layer's `kernel` with its fake-quantised tensor, which also hides it from the inner layer's weight list."""
    found = {}
    for layer in model.layers:
        inner = getattr(layer, "layer", layer)
        if not isinstance(inner, _PRUNABLE):
            continue
        for variable in layer.trainable_weights:
            attr = variable.name.split("/")[-1].split(":")[0]
            if attr in ("kernel", "recurrent_kernel"):
                found[f"{inner.name}/{attr}"] = variable
    return found


def _kernels(model: keras.Model) -> dict[str, np.ndarray]:
    return {name: v.numpy() for name, v in kernel_variables(model).items()}


class KeepZeros(keras.callbacks.Callback):
    """Re-applies pruning masks after every training step, so that fine-tuning keeps the pruned weights at zero."""

    def __init__(self, masks: dict[str, np.ndarray]):
        super().__init__()
        self.masks = masks

    def on_train_begin(self, logs=None):
        variables = kernel_variables(self.model)
        self._pairs = [(variables[name], mask) for name, mask in self.masks.items()]

    def on_train_batch_end(self, batch, logs=None):
        for variable, mask in self._pairs:
            variable.assign(variable * mask)
