"""Seconds per training epoch on myo22, before and after issue 22's batch change, side by side in one run.

    .venv/bin/python benchmarks/train_speed.py          # about 5 minutes on 2 cores; writes the TRAINSPEED section
    .venv/bin/python benchmarks/train_speed.py --report-only   # rebuild it from benchmarks/records/train_speed.json

One fold of `edgekd distill --cv 5` on myo22 (about 18k training windows of 100 x 8): the default teacher and student
each train EPOCHS epochs at the old batch of 32 and at distill's default batch, alternating, through distill's own fit
(distill/train.py). Reported: the median seconds per epoch (the first epoch, which traces the graph, left out), the
ratio, and windows per second. Whether the larger batch costs accuracy is measured on validation people by
benchmarks/defaults.py (students "kd batch 32" and "scratch batch 32" against "kd" and "scratch"); this section quotes
those records beside the timings.
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))

from defaults import RECORDS as DEFAULT_RECORDS  # noqa: E402
from defaults import folds, person_mean  # noqa: E402
from results_md import publish  # noqa: E402

from edgekd.distill.run import DistillConfig  # noqa: E402
from edgekd.distill.stages import auto_batch_size  # noqa: E402
from edgekd.io import write_json_atomic  # noqa: E402

EPOCHS = 6
OLD_BATCH = 32
RECORD = HERE / "records" / "train_speed.json"


def epoch_seconds(preset: str, batch_size: int, fold) -> list[float]:
    from edgekd.distill.losses import pack_targets
    from edgekd.distill.train import fit
    from edgekd.models.build import build_model
    from edgekd.models.presets import load_preset

    train, val = fold.parts["train"], fold.parts["val"]
    one_hot = np.eye(fold.n_classes, dtype=np.float32)
    model = build_model(load_preset(preset), train.x.shape[1], train.x.shape[2], fold.n_classes, seed=0)
    fitted = fit(
        model,
        train.x,
        pack_targets(train.y, one_hot[train.y]),
        val.x,
        pack_targets(val.y, one_hot[val.y]),
        n_classes=fold.n_classes,
        temperature=4.0,
        alpha=1.0,
        epochs=EPOCHS,
        batch_size=batch_size,
        patience=EPOCHS,
        learning_rate=2e-3,
        seed=0,
        verbose=0,
        early_stopping=False,
    )
    return fitted.epoch_seconds[1:]


def measure() -> dict:
    cfg = DistillConfig(dataset="", out="")
    fold = folds()[0]
    batch = auto_batch_size(len(fold.parts["train"].y))  # what distill's default batch comes to on this fold
    rows = []
    for role, preset in (("teacher", cfg.teacher), ("student", cfg.student)):
        times = {OLD_BATCH: [], batch: []}
        for _ in range(2):  # alternate, so that a busy moment of the machine falls on both
            for batch in times:
                times[batch] += epoch_seconds(preset, batch, fold)
        old, new = (float(np.median(times[b])) for b in (OLD_BATCH, batch))
        n = len(fold.parts["train"].y)
        rows.append(
            {
                "role": role,
                "preset": preset,
                "windows": n,
                "old_batch": OLD_BATCH,
                "new_batch": batch,
                "old_s": old,
                "new_s": new,
                "ratio": old / new,
            }
        )
        print(
            f"{role} {preset}: {old:.2f} s per epoch at batch {OLD_BATCH}, {new:.2f} s at {batch} ({old / new:.1f}x)",
            flush=True,
        )
    return {
        "rows": rows,
        "epochs": EPOCHS,
        "cpu": platform.processor() or platform.machine(),
        "measured_at": time.strftime("%Y-%m-%d %H:%M"),
    }


def accuracy_lines() -> list[str]:
    lines = []
    for student in ("kd", "scratch"):
        paths = {
            label: DEFAULT_RECORDS / "drop" / f"{name}.json"
            for label, name in (("default batch", student), (f"batch {OLD_BATCH}", f"{student}-batch-{OLD_BATCH}"))
        }
        if not all(p.exists() for p in paths.values()):
            continue
        records = {label: json.loads(p.read_text())["runs"] for label, p in paths.items()}
        shared = set.intersection(*({(r["fold"], r["seed"]) for r in runs} for runs in records.values()))
        cells = []
        for label, runs in records.items():
            val, val_sd, n = person_mean([r for r in runs if (r["fold"], r["seed"]) in shared], "val")
            cells.append(f"{label} {100 * val:.1f}" + (f" ± {100 * val_sd:.1f}" if n > 1 else ""))
        folds, seeds = len({f for f, _ in shared}), len({s for _, s in shared})
        lines.append(
            f"- {student} student, validation accuracy over people ({folds} folds, {seeds} student seed"
            f"{'s' if seeds > 1 else ''}, benchmarks/defaults.py): " + ", ".join(cells)
        )
    return lines


def markdown(result: dict) -> str:
    lines = [
        "## Training speed (`.venv/bin/python benchmarks/train_speed.py`)",
        "",
        f"One myo22 fold of `--cv 5`, {result['rows'][0]['windows']:,} training windows of 100 x 8; median seconds per "
        f"epoch over {result['epochs'] - 1} epochs after the first, twice each, alternating; {result['cpu']}, "
        f"{result['measured_at']}.",
        "",
        "| model | batch 32 (before) | default batch | speed-up | windows/s now |",
        "|---|---|---|---|---|",
    ]
    for r in result["rows"]:
        lines.append(
            f"| {r['role']} ({r['preset']}) | {r['old_s']:.2f} s | {r['new_s']:.2f} s (batch {r['new_batch']}) | "
            f"{r['ratio']:.1f}x | {r['windows'] / r['new_s']:,.0f} |"
        )
    accuracy = accuracy_lines()
    if accuracy:
        lines += [
            "",
            "Accuracy at the two batches, same learning rate and early-stopping rule (the spread of one student over "
            "seeds is 0.6 points: PEOPLE):",
            "",
            *accuracy,
        ]
    return "\n".join(lines + [""])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--report-only", action="store_true", help="rebuild the TRAINSPEED section from the record")
    args = parser.parse_args()
    if args.report_only:
        result = json.loads(RECORD.read_text())
    else:
        result = measure()
        write_json_atomic(RECORD, result)
    publish("TRAINSPEED", markdown(result))


if __name__ == "__main__":
    main()
