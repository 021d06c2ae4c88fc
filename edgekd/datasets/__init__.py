"""Datasets bundled with edgekd: myo5, real Myo armband sEMG recordings (MIT licence, see myo5/LICENSE)."""

from __future__ import annotations

import importlib.resources
from pathlib import Path


def bundled_dataset(name: str) -> Path:
    return Path(str(importlib.resources.files(__name__) / name))
