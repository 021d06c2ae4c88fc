"""What `edgekd data inspect` reports: the dataset's shape, and every problem in it."""

from __future__ import annotations

from collections import Counter

import numpy as np

from edgekd.data.dataset import load_dataset
from edgekd.errors import UserError


def summarize(path) -> dict:
    dataset = load_dataset(path)
    problems, durations = [], []
    for rec in dataset.recordings:
        try:
            durations.append(dataset.duration_s(dataset.load_signals(rec)))
        except UserError as e:
            problems.append(f"row {rec.row}: {e.message}")
    per_class = Counter(r.label for r in dataset.recordings)
    problems += [
        f"{dataset.index_path}: class '{c}' has no recordings; record it or remove it from dataset.toml"
        for c in dataset.classes
        if per_class[c] == 0
    ]
    problems += dataset.duplicates()
    return {
        "name": dataset.name,
        "path": str(dataset.root),
        "synthetic": dataset.synthetic,
        "classes": list(dataset.classes),
        "streams": {s.name: {"rate_hz": s.rate_hz, "channels": len(s.channels)} for s in dataset.streams},
        "recordings": len(dataset.recordings),
        "recordings_per_class": {c: per_class[c] for c in dataset.classes},
        "subjects": dataset.subjects,
        "repetitions": dataset.repetitions,
        "duration_s": {
            "min": float(np.min(durations)),
            "median": float(np.median(durations)),
            "max": float(np.max(durations)),
            "total": float(np.sum(durations)),
        }
        if durations
        else None,
        "problems": problems,
    }
