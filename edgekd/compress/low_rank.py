"""Low-rank factorisation of a trained student by truncated SVD, to shrink it without retraining from scratch.

A kernel W (in x out) = U S V^T is replaced by A = U_r sqrt(S_r) (in x r) and B = sqrt(S_r) V_r^T (r x out),
which costs r * (in + out) parameters instead of in * out. sqrt(S_r) goes into both factors so that neither
carries all the scale: their value ranges stay alike for fine-tuning and for per-tensor int8 ranges.

- Dense: becomes Dense(r, no bias) -> Dense(out, the original bias and activation).
- LSTM: only the input kernel is factorised, by a bias-free Dense(r) projection in front of the LSTM (Dense on a
  3D tensor acts on the last axis) and an LSTM whose kernel is B (r x 4u). The recurrent kernel and the bias stay
  as they are: factorising the recurrent kernel needs a custom LSTM cell, and the TFLite converter fuses only the
  stock tf_keras LSTM into UNIDIRECTIONAL_SEQUENCE_LSTM; a custom cell becomes WHILE loops, which full-int8
  conversion cannot handle (../shared/docs/STACK.md).
- A kernel is factorised only when that saves parameters; Conv1D and every other layer is copied with its weights.

The students are linear chains (Input -> Conv1D -> pool -> ... -> LSTM -> Dense "logits"), so the new model is
rebuilt by walking the layers in order. The accuracy lost depends on the data: `choose_fraction` measures it on
validation windows, after fine-tuning when given a way to fine-tune.
"""

from __future__ import annotations

import math

import numpy as np

from edgekd._tf import keras
from edgekd.models.build import count_params

DEFAULT_FRACTIONS = (0.125, 0.25, 0.5, 0.75)


def factorize(model: keras.Model, fraction: float, *, only_if_smaller: bool = True) -> tuple[keras.Model, dict]:
    """A new model with each Dense and LSTM input kernel at rank ceil(fraction * min(in, out)), and a report.

    `model` is left untouched: every layer of the result is new and gets copies of the weights.
    `only_if_smaller=False` factorises even where it adds parameters (at fraction 1.0 the result then computes
    the same function as the original, which is how the tests check the factors).
    """
    if not 0.0 < fraction <= 1.0:
        raise ValueError(f"fraction must be in (0, 1], got {fraction}")
    inputs = _fresh_input(model)
    x, layers_report = inputs, []
    for layer in _chain_layers(model):
        x, entry = _rebuild_layer(layer, x, fraction, only_if_smaller)
        if entry is not None:
            layers_report.append(entry)
    factorized = keras.Model(inputs, x, name=model.name)
    report = {
        "fraction": fraction,
        "layers": layers_report,
        "params_before": count_params(model),
        "params_after": count_params(factorized),
    }
    return factorized, report


def choose_fraction(
    model: keras.Model, x_val: np.ndarray, y_val: np.ndarray, budget: float, fractions=DEFAULT_FRACTIONS, tune=None
) -> tuple[float | None, keras.Model | None, list[dict]]:
    """The smallest fraction whose validation accuracy is within `budget` of the original's, and its model.

    `tune(model)`, if given, fine-tunes each factorised model in place before it is measured (export passes
    the KD fine-tuning: a factorisation that loses 15 points untuned can recover them). `budget` is in
    accuracy units (0.01 = 1 point). Returns (None, None, tried) when no fraction qualifies; `tried` holds
    the measurements of every fraction tried, smallest first, stopping at the first that qualifies.
    """
    if len(x_val) == 0 or len(x_val) != len(y_val):
        raise ValueError(
            f"need as many validation labels as windows, and at least one ({len(x_val)} windows, {len(y_val)} labels)"
        )
    baseline = accuracy(model, x_val, y_val)
    tried = []
    for fraction in sorted(fractions):
        factorized, report = factorize(model, fraction)
        if tune is not None:
            tune(factorized)
        val_accuracy = accuracy(factorized, x_val, y_val)
        tried.append(
            {
                "fraction": fraction,
                "params": report["params_after"],
                "val_accuracy": val_accuracy,
                "baseline_accuracy": baseline,
            }
        )
        if val_accuracy >= baseline - budget:
            return fraction, factorized, tried
    return None, None, tried


def accuracy(model: keras.Model, x: np.ndarray, y: np.ndarray) -> float:
    return float(np.mean(np.argmax(_logits(model, x), axis=1) == np.asarray(y)))


def _logits(model: keras.Model, x: np.ndarray, chunk: int = 1024) -> np.ndarray:
    x = np.asarray(x, dtype=np.float32)
    fixed_batch = model.input_shape[0]
    if fixed_batch is not None:  # a model built with batch size 1 accepts only batches of 1
        return model.predict(x, batch_size=fixed_batch, verbose=0)
    # Eager calls in chunks: predict() traces a new graph for every factorised model, seconds each
    return np.concatenate([model(x[i : i + chunk], training=False).numpy() for i in range(0, len(x), chunk)])


def rank_for(fraction: float, n_in: int, n_out: int) -> int:
    return max(1, math.ceil(fraction * min(n_in, n_out)))


def truncated_factors(kernel: np.ndarray, rank: int) -> tuple[np.ndarray, np.ndarray, float]:
    """A (in x rank) and B (rank x out) with A @ B the best rank-`rank` approximation of `kernel`, and the
    fraction of the squared singular values (energy) kept."""
    u, s, vt = np.linalg.svd(kernel.astype(np.float64), full_matrices=False)
    root = np.sqrt(s[:rank])
    first = (u[:, :rank] * root).astype(kernel.dtype)
    second = (root[:, np.newaxis] * vt[:rank]).astype(kernel.dtype)
    total = float(np.sum(s**2))
    energy = float(np.sum(s[:rank] ** 2) / total) if total > 0 else 1.0
    return first, second, energy


def _fresh_input(model: keras.Model):
    """An Input like the model's, batch size included: the exporter sometimes rebuilds with batch size 1."""
    if len(model.inputs) != 1 or len(model.outputs) != 1:
        raise ValueError(
            f"model {model.name!r} has {len(model.inputs)} inputs and {len(model.outputs)} outputs; "
            f"low-rank factorisation rebuilds only single-input, single-output chains"
        )
    original = model.inputs[0]
    batch_size, *shape = original.shape
    first = model.layers[0]
    name = first.name if isinstance(first, keras.layers.InputLayer) else None
    return keras.Input(shape=tuple(shape), batch_size=batch_size, dtype=original.dtype, name=name)


def _chain_layers(model: keras.Model) -> list:
    """The layers after the input, checked to form a single chain (each fed only by the one before).

    Checked on the model's config rather than on the layers' nodes: a layer shared with another model (a
    rebuilt copy, a pruning wrapper) has several nodes, and only the config says which belong to this model.
    """
    layers = [layer for layer in model.layers if not isinstance(layer, keras.layers.InputLayer)]
    if isinstance(model, keras.Sequential):
        return layers
    config = model.get_config()
    previous = config["input_layers"][0][0]
    for layer_config in config["layers"][1:]:
        nodes = layer_config["inbound_nodes"]
        sources = [inbound[0] for node in nodes for inbound in node]
        if len(nodes) != 1 or sources != [previous]:
            raise ValueError(
                f"model {model.name!r} is not a linear chain of layers (at layer "
                f"{layer_config['name']!r}); low-rank factorisation rebuilds only Sequential-like models"
            )
        previous = layer_config["name"]
    if config["output_layers"][0][0] != previous:
        raise ValueError(f"model {model.name!r}: the last layer is not the model's output")
    return layers


def _rebuild_layer(layer, x, fraction: float, only_if_smaller: bool):
    """Apply a new version of `layer` to `x`; returns the output and a report entry (None if not factorised)."""
    rank = _rank_if_factorised(layer, fraction, only_if_smaller)
    if rank is None:
        replacement = _copy_layer(layer)
        x = replacement(x)
        replacement.set_weights(layer.get_weights())
        return x, None
    return _apply_factorised(layer, x, rank)


def _rank_if_factorised(layer, fraction: float, only_if_smaller: bool) -> int | None:
    if not isinstance(layer, (keras.layers.Dense, keras.layers.LSTM)):
        return None
    n_in, n_out = layer.get_weights()[0].shape
    rank = rank_for(fraction, n_in, n_out)
    saves = rank * (n_in + n_out) < n_in * n_out
    return rank if saves or not only_if_smaller else None


def _apply_factorised(layer, x, rank: int):
    """Dense(rank, no bias) with the first factor, then a copy of `layer` whose kernel is the second factor."""
    kernel, *kept = layer.get_weights()  # Dense: bias; LSTM: recurrent kernel and bias
    first, second, energy = truncated_factors(kernel, rank)
    projection = keras.layers.Dense(rank, use_bias=False, name=f"{layer.name}_low_rank_in")
    x = projection(x)
    projection.set_weights([first])
    # The second factor takes the original's place (same config, name included) so the head stays "logits" and
    # the LSTM keeps its activations and return_sequences; built on the rank-r input, its kernel is r x out.
    replacement = _copy_layer(layer)
    x = replacement(x)
    replacement.set_weights([second, *kept])
    n_in, n_out = kernel.shape
    entry = {
        "name": layer.name,
        "kind": "lstm_input" if isinstance(layer, keras.layers.LSTM) else "dense",
        "shape": [int(n_in), int(n_out)],
        "rank": rank,
        "params_before": int(n_in * n_out),
        "params_after": int(rank * (n_in + n_out)),
        "energy": energy,
    }
    return x, entry


def _copy_layer(layer):
    """A new, unbuilt layer with the same config: building it on the new input sizes its weights."""
    return layer.__class__.from_config(layer.get_config())
