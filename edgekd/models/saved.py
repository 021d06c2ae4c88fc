"""The models of a run folder on disk: saved atomically, and opened only when they hold nothing but edgekd's layers.

A Keras .h5 file stores its architecture as JSON, and a `Lambda` layer in it carries marshalled Python bytecode that
Keras runs while loading: a run folder someone sends you could run anything on your machine when `edgekd export`,
`compare` or a benchmark opened it. Every class named in the file's architecture must be one that `models/build.py`
makes (SAFE_CLASSES); anything else is refused before Keras reads the file, with an error that names the class.

Training side: TensorFlow is imported by the callers; this module reads the JSON with h5py alone.
"""

from __future__ import annotations

import json
import warnings
from pathlib import Path

from edgekd.errors import UserError

# What build_model saves: the functional model, its layers, and the initializers their configs name.
SAFE_CLASSES = frozenset(
    {
        "Functional",
        "InputLayer",
        "Conv1D",
        "AveragePooling1D",
        "MaxPooling1D",
        "GlobalAveragePooling1D",
        "LSTM",
        "Dense",
        "Dropout",
        "SpatialDropout1D",
        "BatchNormalization",
        "LayerNormalization",
        "GlorotUniform",
        "Orthogonal",
        "Zeros",
        "Ones",
    }
)


def save_model(model, path: Path) -> None:
    """`model` to `path` (.h5, without optimizer state), written beside it first and moved into place."""
    path = Path(path)
    tmp = path.with_name(f".{path.stem}.tmp.h5")
    with warnings.catch_warnings():  # HDF5 is "legacy" to tf_keras, but it saves without the optimizer state
        warnings.filterwarnings("ignore", message=".*HDF5 file.*legacy", category=UserWarning)
        model.save(tmp, include_optimizer=False)
    tmp.replace(path)


def architecture_classes(path: Path) -> set[str]:
    """Every class_name in the .h5 file's architecture, read without Keras; a UserError for an unreadable file."""
    import h5py

    try:
        with h5py.File(path, "r") as f:
            config = f.attrs.get("model_config")
    except OSError as e:
        raise UserError(
            f"{path}: not a readable Keras .h5 file ({_first_line(e)}); it may be truncated: run "
            f"`edgekd distill` again to rewrite it"
        ) from None
    if config is None:
        raise UserError(
            f"{path}: holds no model architecture (weights only?); run `edgekd distill` again to rewrite it"
        )
    try:
        tree = json.loads(config.decode() if isinstance(config, bytes) else config)
    except (ValueError, UnicodeDecodeError) as e:
        raise UserError(
            f"{path}: its architecture is not valid JSON ({e}); run `edgekd distill` again to rewrite it"
        ) from None
    found: set[str] = set()
    stack = [tree]
    while stack:
        node = stack.pop()
        if isinstance(node, dict):
            if isinstance(node.get("class_name"), str):
                found.add(node["class_name"])
            stack.extend(node.values())
        elif isinstance(node, list):
            stack.extend(node)
    return found


def load_model(path: Path):
    """The Keras model in a run folder's .h5 file, after checking that it names only SAFE_CLASSES."""
    path = Path(path)
    if not path.is_file():
        raise UserError(f"{path}: missing; run `edgekd distill` to completion to write it")
    unsafe = sorted(architecture_classes(path) - SAFE_CLASSES)
    if unsafe:
        raise UserError(
            f"{path}: refused: it names {', '.join(unsafe)}, which edgekd never saves (a Lambda layer runs "
            f"code when it is loaded); only open run folders you made, or run `edgekd distill` yourself"
        )
    from edgekd._tf import keras

    try:
        return keras.models.load_model(path, compile=False)
    except (OSError, ValueError, KeyError) as e:
        raise UserError(
            f"{path}: cannot be loaded ({_first_line(e)}); run `edgekd distill` again to rewrite it"
        ) from None


def _first_line(e: Exception) -> str:
    text = str(e).strip()
    return text.splitlines()[0] if text else type(e).__name__
