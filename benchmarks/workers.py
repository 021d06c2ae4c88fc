"""Folds on Ray: `edgekd distill --cv loso` on a subset of myo22's people, one after another and with --workers.

    .venv/bin/python benchmarks/workers.py      # about 35 minutes on 2 cores; writes the WORKERS section

PEOPLE people of myo22 (a dataset folder whose recordings.csv lists theirs; the recordings stay where they are),
leave-one-subject-out, EPOCHS epochs (the ratio of wall times is what is measured, not accuracy). Three ways, each a
separate `edgekd distill` process into a fresh folder, timed from start to end: serial (no Ray, TensorFlow's default
threads), --workers 1 and --workers 2 (a local Ray with 1 or 2 CPUs, one TensorFlow thread per fold); REPEATS rounds
of the three in turn, medians reported.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))

from results_md import publish  # noqa: E402

from edgekd.data.dataset import ALLOW_OUTSIDE_ENV  # noqa: E402
from edgekd.io import write_json_atomic  # noqa: E402

MYO22 = HERE.parents[1] / "shared" / "data" / "myo22"
PEOPLE = ("female0", "female1", "female2", "male0", "male1", "male2")
EPOCHS = 20
REPEATS = 3
WAYS = (("serial", []), ("workers 1", ["--workers", "1"]), ("workers 2", ["--workers", "2"]))
RECORD = HERE / "records" / "workers.json"
EDGEKD = Path(sys.executable).parent / "edgekd"


def subset(folder: Path) -> Path:
    folder.mkdir(parents=True)
    shutil.copy(MYO22 / "dataset.toml", folder / "dataset.toml")
    with open(MYO22 / "recordings.csv", newline="") as f:
        rows = [r for r in csv.DictReader(f) if r["subject"] in PEOPLE]
    with open(folder / "recordings.csv", "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows({**r, "path": str(MYO22 / r["path"])} for r in rows)
    return folder


def timed_run(dataset: Path, out: Path, extra: list[str]) -> float:
    command = [
        str(EDGEKD),
        "distill",
        str(dataset),
        "--out",
        str(out),
        "--cv",
        "loso",
        "--epochs",
        str(EPOCHS),
        "--quiet",
        *extra,
    ]
    print(" ".join(command[1:]), flush=True)
    started = time.perf_counter()
    subprocess.run(command, check=True, capture_output=True, env={**os.environ, ALLOW_OUTSIDE_ENV: "1"})
    return time.perf_counter() - started


def measure() -> dict:
    with tempfile.TemporaryDirectory() as tmp:
        dataset = subset(Path(tmp) / "myo22-subset")
        runs = {label: [] for label, _ in WAYS}
        for repeat in range(REPEATS):
            for label, extra in WAYS:
                runs[label].append(round(timed_run(dataset, Path(tmp) / f"{label}-{repeat}", extra), 1))
    seconds = {label: float(statistics.median(values)) for label, values in runs.items()}
    record = {
        "people": list(PEOPLE),
        "epochs": EPOCHS,
        "runs": runs,
        "seconds": seconds,
        "cpu": platform.processor() or platform.machine(),
        "cores": os.cpu_count(),
        "measured_at": time.strftime("%Y-%m-%d %H:%M"),
    }
    write_json_atomic(RECORD, record)
    return record


def markdown(record: dict) -> str:
    s = record["seconds"]
    return "\n".join(
        [
            "## Folds on Ray (`.venv/bin/python benchmarks/workers.py`)",
            "",
            f"`edgekd distill SUBSET --cv loso --epochs {EPOCHS}` on {len(PEOPLE)} people of myo22 "
            f"({', '.join(PEOPLE)}), {len(PEOPLE)} folds; wall time of the whole command, median of {REPEATS} rounds, "
            f"measured {record['measured_at']} "
            f"on {record['cores']} cores ({record['cpu']}).",
            "",
            "| run | seconds (median) | each round | against serial | against --workers 1 |",
            "|---|---|---|---|---|",
            *(
                f"| {k} | {v:.0f} | {', '.join(f'{x:.0f}' for x in record['runs'][k])} | {v / s['serial']:.2f} | "
                f"{v / s['workers 1']:.2f} |"
                for k, v in s.items()
            ),
            "",
            f"Target (issue 22): --workers 2 against 1, ≤ 0.6: {s['workers 2'] / s['workers 1']:.2f}, "
            + ("met" if s["workers 2"] / s["workers 1"] <= 0.6 else "**NOT met**")
            + ".",
            "",
        ]
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--report-only", action="store_true", help="rebuild the WORKERS section from the record")
    args = parser.parse_args()
    record = json.loads(RECORD.read_text()) if args.report_only else measure()
    publish("WORKERS", markdown(record))


if __name__ == "__main__":
    main()
