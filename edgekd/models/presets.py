"""Named architecture presets: TOML files in the top-level models/ folder, shipped as edgekd.presets.

A preset is a stack of layers; the classifier head (Dense with one logit per class) is added by the
builder, so one preset fits any channel and class count.
"""

from __future__ import annotations

import importlib.resources
import tomllib
from dataclasses import dataclass, replace
from pathlib import Path

from edgekd.errors import UserError

# Each layer type and the keys it takes (with their types); the builder maps them to tf.keras layers.
LAYER_KEYS = {
    "conv1d": {"filters": int, "kernel_size": int, "activation": str, "padding": str},
    "avgpool": {"pool_size": int},
    "maxpool": {"pool_size": int},
    "lstm": {"units": int},
    "dense": {"units": int, "activation": str},
    "dropout": {"rate": float},
    "spatial_dropout": {"rate": float},
    "batchnorm": {},
    "layernorm": {},
}
REQUIRED_KEYS = {
    "conv1d": ("filters", "kernel_size"),
    "avgpool": ("pool_size",),
    "maxpool": ("pool_size",),
    "lstm": ("units",),
    "dense": ("units",),
    "dropout": ("rate",),
    "spatial_dropout": ("rate",),
}


@dataclass(frozen=True)
class Preset:
    name: str
    description: str
    layers: tuple[dict, ...]
    source: str


def _preset_dirs() -> list[Path]:
    dirs = []
    try:
        dirs.append(Path(str(importlib.resources.files("edgekd.presets"))))
    except ModuleNotFoundError:
        pass
    dirs.append(Path(__file__).resolve().parents[2] / "models")  # a source checkout run without installing
    return [d for d in dirs if d.is_dir()]


def available_presets() -> list[str]:
    return sorted({p.stem for d in _preset_dirs() for p in d.glob("*.toml")})


def load_preset(name_or_path: str) -> Preset:
    """A preset by name (`edge-student`) or a path to your own TOML file in the same format."""
    path = Path(name_or_path)
    if path.suffix != ".toml" or not path.is_file():
        candidates = [d / f"{name_or_path}.toml" for d in _preset_dirs()]
        found = [c for c in candidates if c.is_file()]
        if not found:
            raise UserError(
                f"unknown architecture '{name_or_path}'; use one of {', '.join(available_presets())} "
                f"or a path to a preset .toml file"
            )
        path = found[0]
    try:
        doc = tomllib.loads(path.read_text(encoding="utf-8"))
    except (tomllib.TOMLDecodeError, UnicodeDecodeError, OSError) as e:
        raise UserError(f"{path}: not a readable TOML preset ({e}); fix the syntax") from None
    layers = doc.get("layers")
    if not isinstance(layers, list) or not layers:
        raise UserError(f'{path}: a preset needs [[layers]] tables, e.g. type = "conv1d"; see models/edge-student.toml')
    for i, layer in enumerate(layers, 1):
        _check_layer(path, i, layer)
    if layers[0]["type"] == "dropout":
        raise UserError(
            f"{path}: layer 1 drops single input samples (dropout); drop whole input channels with "
            f"spatial_dropout, or put the dropout after a layer"
        )
    return Preset(str(doc.get("name", path.stem)), str(doc.get("description", "")), tuple(layers), str(path))


def split_input_dropout(preset: Preset) -> tuple[float, Preset]:
    """(rate, the preset without it) for a preset that starts by dropping whole input channels (spatial_dropout);
    (0.0, preset) otherwise. That first layer changes the window itself, so a student trains with it as an
    augmentation of its windows, which the teachers then score too (distill/augment.py, distill/consistent.py)."""
    first = preset.layers[0]
    if first["type"] != "spatial_dropout" or len(preset.layers) == 1:
        return 0.0, preset
    return float(first["rate"]), replace(preset, layers=preset.layers[1:])


def _check_layer(path: Path, i: int, layer) -> None:
    kind = layer.get("type") if isinstance(layer, dict) else None
    if kind not in LAYER_KEYS:
        raise UserError(f"{path}: layer {i} has type {kind!r}; use one of {', '.join(LAYER_KEYS)}")
    allowed = LAYER_KEYS[kind]
    for key, value in layer.items():
        if key == "type":
            continue
        if key not in allowed:
            raise UserError(
                f"{path}: layer {i} ({kind}) has unknown key '{key}'; it takes {', '.join(allowed) or 'no keys'}"
            )
        expected = allowed[key]
        ok = (
            isinstance(value, (int, float)) and not isinstance(value, bool)
            if expected is float
            else isinstance(value, expected) and not isinstance(value, bool)
        )
        if not ok:
            raise UserError(f"{path}: layer {i} ({kind}) key '{key}' must be {expected.__name__}, got {value!r}")
    for key in REQUIRED_KEYS.get(kind, ()):
        if key not in layer:
            raise UserError(f"{path}: layer {i} ({kind}) needs '{key}'")
