"""Build a tf.keras classifier (logits out) from a preset."""

from __future__ import annotations

from edgekd._tf import keras
from edgekd.models.presets import Preset

_SEQUENCE_LAYERS = {"conv1d", "avgpool", "maxpool", "lstm"}


def build_model(
    preset: Preset,
    window_len: int,
    channels: int,
    n_classes: int,
    seed: int = 0,
    batch_size: int | None = None,
    name: str | None = None,
) -> keras.Model:
    """`batch_size=1` gives the batch-fixed model the TFLite converter needs to fuse the LSTM."""
    keras.utils.set_random_seed(seed)
    inputs = keras.Input(shape=(window_len, channels), batch_size=batch_size, name="window")
    x = inputs
    kinds = [layer["type"] for layer in preset.layers]
    for i, layer in enumerate(preset.layers):
        x = _layer(layer, more_sequence_follows=bool(_SEQUENCE_LAYERS & set(kinds[i + 1 :])))(x)
    if len(x.shape) == 3:  # a stack ending in convolutions: pool over time before the head
        x = keras.layers.GlobalAveragePooling1D()(x)
    logits = keras.layers.Dense(n_classes, name="logits")(x)
    return keras.Model(inputs, logits, name=name or preset.name.replace("-", "_"))


def _layer(spec: dict, more_sequence_follows: bool):
    kind = spec["type"]
    if kind == "conv1d":
        return keras.layers.Conv1D(
            spec["filters"],
            spec["kernel_size"],
            activation=spec.get("activation", "relu"),
            padding=spec.get("padding", "same"),
        )
    if kind == "avgpool":
        return keras.layers.AveragePooling1D(spec["pool_size"])
    if kind == "maxpool":
        return keras.layers.MaxPooling1D(spec["pool_size"])
    if kind == "lstm":
        return keras.layers.LSTM(spec["units"], return_sequences=more_sequence_follows)
    if kind == "dense":
        return keras.layers.Dense(spec["units"], activation=spec.get("activation", "relu"))
    if kind == "dropout":
        return keras.layers.Dropout(spec["rate"])
    if kind == "spatial_dropout":
        # Drops whole channels while training; as the first layer, whole sensor channels, so the model cannot
        # lean on one electrode's or one axis' quirks of the training subjects. Inactive at inference and gone
        # from the exported graph.
        return keras.layers.SpatialDropout1D(spec["rate"])
    if kind == "batchnorm":
        return keras.layers.BatchNormalization()
    if kind == "layernorm":
        return keras.layers.LayerNormalization()
    raise AssertionError(kind)  # presets.py validated the type


def count_params(model: keras.Model) -> int:
    return int(sum(w.shape.num_elements() for w in model.trainable_weights))


def penultimate(model: keras.Model) -> keras.Model:
    """input -> the features the logits layer reads."""
    return keras.Model(model.inputs, model.get_layer("logits").input, name=f"{model.name}_features")
