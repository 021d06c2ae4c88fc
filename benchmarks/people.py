"""Distillation for real people: `edgekd distill --cv 5` on myo22, every model per held-out person, int8 KD included.

    .venv/bin/python benchmarks/people.py                          # seeds 0, 1, 2 in turn
    .venv/bin/python benchmarks/people.py --seeds 1 --threads 1    # one seed; run two such side by side on 2 cores
    .venv/bin/python benchmarks/people.py --report-only            # rebuild RESULTS.md's PEOPLE section
    .venv/bin/python benchmarks/people.py --workers 2              # each seed's folds two at a time on a local Ray

myo22 (22 people, real Myo armband sEMG, 7 gestures) in 5 folds of people: each fold tests on 4-5 people it never
trained on and validates on 3 others, so every person is tested once. Each seed is a whole `edgekd distill --cv 5
--seed S` with every other option at its default (teachers, students and their seeds all follow S); each fold's KD
student is then exported with `edgekd export --int8` and measured person by person with
`edgekd bench --data myo22 --where subject=P`. One record per seed (benchmarks/records/people/seed-<S>.json, in git)
holds every person's accuracy for each teacher, the ensemble, the scratch and KD students, the int8 KD student, LDA
and the random forest, and each fold's int8 file size and latency; the PEOPLE section reports the mean over people,
its spread over people and over seeds, a per-person table, and issue 19's targets judged on them.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))

from results_md import publish  # noqa: E402

from edgekd.distill.cv import cross_validate  # noqa: E402
from edgekd.distill.run import DistillConfig  # noqa: E402
from edgekd.export.export import export_run  # noqa: E402
from edgekd.io import write_json_atomic  # noqa: E402
from edgekd.runtime.bench import bench_model  # noqa: E402

MYO22 = HERE.parents[1] / "shared" / "data" / "myo22"
FOLDS = 5
OUT = HERE / "out" / "people"
RECORDS = HERE / "records" / "people"
# (record key, column title): the models of the per-person table, in the order the issue lists them
MODELS = (
    ("teacher 1", "teacher 1"),
    ("teacher 2", "teacher 2"),
    ("teacher 3", "teacher 3"),
    ("ensemble", "ensemble"),
    ("student_scratch", "scratch"),
    ("student_kd", "KD"),
    ("int8", "KD int8"),
    ("lda", "LDA"),
    ("random_forest", "random forest"),
)
TITLES = dict(MODELS)
SIZE_LIMIT_BYTES, LATENCY_LIMIT_MS = 32 * 1024, 0.2


def measure(seed: int, workers: int | None = None) -> dict:
    out = OUT / f"seed-{seed}"
    repo = HERE.parent
    command = (
        f"edgekd distill {os.path.relpath(MYO22, repo)} --cv {FOLDS} --seed {seed} --out {os.path.relpath(out, repo)}"
    )
    print(command, flush=True)
    started = time.perf_counter()
    cv = cross_validate(
        DistillConfig(dataset=str(MYO22), out=str(out), seed=seed, verbose=0), str(FOLDS), workers=workers
    )
    people, files = [], []
    for number, fold in enumerate(cv["folds"], 1):
        model = export_run(
            Path(fold["run"]), "int8", out / f"student-int8-fold-{number}.tflite", log=lambda m: None, force=True
        )
        timing = bench_model(model.path, runs=500, warmup=50, measure_memory=False)
        files.append(
            {"fold": number, "bytes": model.bytes, "p50_ms": timing.latency_ms["p50"], "agreement": model.agreement}
        )
        report = json.loads((Path(fold["run"]) / "report.json").read_text())
        for person in fold["test_on"]:
            int8 = bench_model(
                model.path, data=MYO22, runs=1, warmup=0, measure_memory=False, where={"subject": [person]}
            )
            accuracy = {
                model_key: _person_accuracy(report, model_key, person) for model_key, _ in MODELS if model_key != "int8"
            }
            people.append({"subject": person, "fold": number, "test_accuracy": {**accuracy, "int8": int8.accuracy}})
            print(
                f"seed {seed} fold {number} {person}: "
                + ", ".join(f"{TITLES[k]} {100 * v:.1f}" for k, v in people[-1]["test_accuracy"].items()),
                flush=True,
            )
        files[-1]["val_accuracy"] = {
            k: (float(np.mean(v)) if isinstance(v, list) else v) for k, v in report["val_accuracy"].items()
        }
    record = {
        "seed": seed,
        "command": command,
        "people": people,
        "int8_files": files,
        "folds": [{"test_on": f["test_on"], "val_on": f["val_on"]} for f in cv["folds"]],
        "config": cv["config"],
        "seconds": round(time.perf_counter() - started),
        "cpu": platform.processor() or platform.machine(),
        "measured_at": time.strftime("%Y-%m-%d %H:%M"),
    }
    write_json_atomic(RECORDS / f"seed-{seed}.json", record)
    return record


def _person_accuracy(report: dict, model: str, person: str) -> float:
    by_person = report["held_out"]["test_accuracy"]
    if model.startswith("teacher "):
        return by_person["teachers"][int(model.split()[1]) - 1][person]
    return by_person[model][person]


# ---- report -------------------------------------------------------------------------------------------


def per_person(records: list[dict]) -> dict[str, dict[str, float]]:
    """subject -> model -> accuracy averaged over the seeds."""
    subjects = sorted(
        {p["subject"] for r in records for p in r["people"]},
        key=lambda s: (s.rstrip("0123456789"), int(s[len(s.rstrip("0123456789")) :] or 0)),
    )
    return {
        s: {
            m: float(np.mean([p["test_accuracy"][m] for r in records for p in r["people"] if p["subject"] == s]))
            for m, _ in MODELS
        }
        for s in subjects
    }


def seed_means(records: list[dict], model: str) -> list[float]:
    """Each seed's mean over people."""
    return [float(np.mean([p["test_accuracy"][model] for p in r["people"]])) for r in records]


def markdown(records: list[dict]) -> str:
    table = per_person(records)
    means = {m: seed_means(records, m) for m, _ in MODELS}
    people_sd = {m: float(np.std([row[m] for row in table.values()], ddof=1)) for m, _ in MODELS}
    sd = lambda xs: float(np.std(xs, ddof=1)) if len(xs) > 1 else 0.0  # noqa: E731
    commands = "; ".join(f"`{r['command']}`" for r in records)
    durations = ", ".join(f"seed {r['seed']}: {r['seconds'] / 60:.0f} min" for r in records)
    lines = [
        "## Distillation for real people: myo22 in 5 folds of held-out people "
        "(`.venv/bin/python benchmarks/people.py`)",
        "",
        f"Commands: {commands}, then each fold's `edgekd export RUN/fold-I --int8`, "
        f"measured person by person with `edgekd bench --data myo22 --where subject=P`. Every option at its default. "
        f"{len(table)} people, each tested once per seed in a fold that never trained on them; "
        f"measured {', '.join(sorted({r['measured_at'] for r in records}))} on {records[0]['cpu']} "
        f"({durations}).",
        "",
        "| model | mean over people | sd over people | sd over seeds | worst person |",
        "|---|---|---|---|---|",
    ]
    for m, title in MODELS:
        worst = min(table, key=lambda s: table[s][m])
        lines.append(
            f"| {title} | {100 * np.mean(means[m]):.1f} | {100 * people_sd[m]:.1f} | {100 * sd(means[m]):.1f} | "
            f"{100 * table[worst][m]:.1f} ({worst}) |"
        )
    files = [f for r in records for f in r["int8_files"]]
    lines += [
        "",
        f"int8 KD student: {np.median([f['bytes'] for f in files]):,.0f} bytes "
        f"(largest {max(f['bytes'] for f in files):,}), "
        f"p50 {np.median([f['p50_ms'] for f in files]):.3f} ms per window (median over {len(files)} files, "
        f"one thread; slowest file {max(f['p50_ms'] for f in files):.3f} ms); agreement with the Keras student "
        f"{100 * min(f['agreement'] for f in files):.1f}% or more.",
        "",
    ]
    lines += targets(means, files)
    lines += [
        "",
        "Per person (mean over the seeds):",
        "",
        "| person | fold | " + " | ".join(t for _, t in MODELS) + " |",
        "|---|---|" + "---|" * len(MODELS),
    ]
    fold_of = {p["subject"]: p["fold"] for p in records[0]["people"]}
    for s, row in table.items():
        lines.append(f"| {s} | {fold_of.get(s, '')} | " + " | ".join(f"{100 * row[m]:.1f}" for m, _ in MODELS) + " |")
    return "\n".join(lines + [""])


def targets(means: dict[str, list[float]], files: list[dict]) -> list[str]:
    """Issue 19's targets, on the mean over people; the seed spread is the sd over seeds of KD int8 minus scratch."""
    met = lambda ok: "met" if ok else "**NOT met**"  # noqa: E731
    kd, scratch, ensemble = (np.array(means[m]) for m in ("int8", "student_scratch", "ensemble"))
    gain = kd - scratch
    spread = float(np.std(gain, ddof=1)) if len(gain) > 1 else float("nan")
    classical = max(("lda", "random_forest"), key=lambda m: np.mean(means[m]))
    size, p50 = max(f["bytes"] for f in files), float(np.median([f["p50_ms"] for f in files]))
    best_teacher = max(np.mean(means[f"teacher {i}"]) for i in (1, 2, 3))
    return [
        "Targets (issue 19), on the mean over people:",
        "",
        f"- int8 KD ≥ scratch + 1 point beyond the seed spread: {100 * gain.mean():+.1f} points, seed spread "
        f"(sd of the difference over {len(gain)} seeds) {100 * spread:.1f}: {met(gain.mean() >= 0.01 + spread)}",
        f"- int8 KD ≥ ensemble − 1 point: {100 * (kd.mean() - ensemble.mean()):+.1f} points: "
        f"{met(kd.mean() >= ensemble.mean() - 0.01)}",
        f"- int8 KD ≥ the best classical baseline ({TITLES[classical]}, {100 * np.mean(means[classical]):.1f}%): "
        f"{100 * (kd.mean() - np.mean(means[classical])):+.1f} points: {met(kd.mean() >= np.mean(means[classical]))}",
        f"- ensemble above every teacher and the best classical baseline: "
        f"{met(ensemble.mean() > best_teacher and ensemble.mean() > np.mean(means[classical]))}",
        f"- int8 file ≤ 32 KB: {size:,} bytes: {met(size <= SIZE_LIMIT_BYTES)}; "
        f"p50 ≤ 0.2 ms: {p50:.3f} ms: {met(p50 <= LATENCY_LIMIT_MS)}",
    ]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", default="0,1,2", help="comma-separated seeds, each a whole cross-validation")
    parser.add_argument("--threads", type=int, help="TensorFlow threads (1 for two processes side by side on 2 cores)")
    parser.add_argument("--report-only", action="store_true", help="rebuild the PEOPLE section from the saved records")
    parser.add_argument(
        "--workers",
        type=int,
        help="train each seed's folds this many at a time on a local Ray (edgekd distill --cv 5 --workers N)",
    )
    args = parser.parse_args()
    if not args.report_only:
        if args.threads:
            from edgekd._tf import tf

            tf.config.threading.set_intra_op_parallelism_threads(args.threads)
            tf.config.threading.set_inter_op_parallelism_threads(args.threads)
        for seed in (int(s) for s in args.seeds.split(",")):
            measure(seed, args.workers)
    records = [json.loads(p.read_text()) for p in sorted(RECORDS.glob("seed-*.json"))]
    if not records:
        sys.exit(f"no records in {RECORDS}; run without --report-only first")
    publish("PEOPLE", markdown(records))


if __name__ == "__main__":
    main()
