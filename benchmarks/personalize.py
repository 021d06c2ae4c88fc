"""A new wearer: `edgekd personalize` on myo22's held-out people, against LDA and whole-student fine-tuning.

    .venv/bin/python benchmarks/personalize.py      # after benchmarks/people.py, whose fold runs it reuses; writes
                                                    # the PERSONALIZE section and benchmarks/records/personalize.json

Each fold run of benchmarks/people.py (5 folds of people, each seed it has records for) trained on none of its
validation and test people. Its KD student is exported int8 by this version's export. For each of those people,
calibration is their cycle 0 (1 cycle: 5 s of each of 7 gestures, 35 s) or cycles 0-1 (2 cycles), and the test is
their other cycles. The pull toward the shipped head (personalize's STRENGTH) and whether to refit the input
normalisation to the person too (RENORMALIZE) are chosen from a grid on the validation people only: the best mean over
1 and 2 cycles, one choice for every fold. The test people then give:
- the int8 student without calibration;
- the personalized int8 student: `personalize` itself on the exported file (runtime/personalize.py), then the
  written file run by the runtime, as bench and stream run it;
- LDA on time-domain features of the same calibration windows alone (what a practitioner would fit per person);
- the whole Keras student fine-tuned on them in TensorFlow (a reference, not shipped: Adam 1e-3, 30 epochs).
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))

from results_md import publish  # noqa: E402

from edgekd.io import write_json_atomic  # noqa: E402
from edgekd.runtime import personalize as personal  # noqa: E402
from edgekd.runtime.interpreter import TFLiteModel  # noqa: E402

MYO22 = HERE.parents[1] / "shared" / "data" / "myo22"
PEOPLE_OUT, PEOPLE_RECORDS = HERE / "out" / "people", HERE / "records" / "people"
OUT, RECORD = HERE / "out" / "personalize", HERE / "records" / "personalize.json"
CYCLES = ("0", "1", "2", "3")
CALIBRATIONS = {1: ("0",), 2: ("0", "1")}  # cycles of calibration -> which
GRID = [(renormalize, strength) for renormalize in (False, True) for strength in (1e-4, 1e-3, 1e-2, 1e-1, 1.0)]
ROWS = (
    ("shipped", "int8 student, no calibration"),
    ("personal", "personalized int8 student"),
    ("lda", "LDA on the calibration windows alone"),
    ("finetune", "whole student fine-tuned in TensorFlow (reference)"),
)
FINETUNE_EPOCHS, FINETUNE_LR = 30, 1e-3


def person_cycles(model: TFLiteModel, person: str) -> dict[str, personal.Calibration]:
    return {c: personal.load_calibration(model, MYO22, {"subject": [person], "repetition": [c]}) for c in CYCLES}


def joined(cycles: dict[str, personal.Calibration], chosen) -> tuple[np.ndarray, np.ndarray]:
    return (np.concatenate([cycles[c].windows for c in chosen]), np.concatenate([cycles[c].labels for c in chosen]))


def grid_key(renormalize: bool, strength: float) -> str:
    return ("renormalized, " if renormalize else "") + f"{strength:g}"


def validation_grid(model: TFLiteModel, people: list[str]) -> dict:
    """person -> cycles -> grid_key -> accuracy of fit_head on the embeddings (what personalize fits)."""
    interpreter = personal.inspecting_interpreter(model)
    head = personal.find_head(model, interpreter)
    prior_w, prior_b = personal.shipped_weights(interpreter, head)
    out = {}
    for person in people:
        cycles = person_cycles(model, person)
        out[person] = {}
        for n, calibration in CALIBRATIONS.items():
            rest = [c for c in CYCLES if c not in calibration]
            x, y = joined(cycles, calibration)
            tx, ty = joined(cycles, rest)
            out[person][str(n)] = {}
            for renormalize in (False, True):
                offset, scale = personal.personal_normalisation(x) if renormalize else (0.0, 1.0)
                fx, ftx = (
                    personal.embeddings(model, interpreter, head, ((w - offset) / scale).astype(np.float32))
                    for w in (x, tx)
                )
                for strength in sorted({s for r, s in GRID if r == renormalize}):
                    w, b = personal.fit_head(fx, y, prior_w, prior_b, strength)
                    out[person][str(n)][grid_key(renormalize, strength)] = float(
                        np.mean(np.argmax(ftx @ w.T + b, 1) == ty)
                    )
    return out


def accuracy(model: TFLiteModel, x: np.ndarray, y: np.ndarray) -> float:
    return float(np.mean(np.argmax(model.predict_logits(x), 1) == y))


def test_person(model: TFLiteModel, run: Path, person: str, renormalize: bool, strength: float) -> dict:
    from edgekd.models import classical

    cycles = person_cycles(model, person)
    result = {}
    for n, calibration in CALIBRATIONS.items():
        rest = [c for c in CYCLES if c not in calibration]
        x, y = joined(cycles, calibration)
        tx, ty = joined(cycles, rest)
        started = time.perf_counter()
        made = personal.personalize(
            model,
            personal.Calibration(x, y, f"{person} cycles {','.join(calibration)}"),
            strength=strength,
            renormalize=renormalize,
        )
        seconds = time.perf_counter() - started
        with tempfile.TemporaryDirectory() as tmp:
            path = Path(tmp) / "personal.tflite"
            path.write_bytes(made.model_bytes)
            personal_model = TFLiteModel.load(path)
            row = {"shipped": accuracy(model, tx, ty), "personal": accuracy(personal_model, tx, ty)}
        lda = classical.lda().fit(classical.time_domain_features(x), y)
        row["lda"] = float(np.mean(lda.predict(classical.time_domain_features(tx)) == ty))
        row["finetune"] = finetuned_accuracy(run, x, y, tx, ty)
        row["personalize_s"] = seconds
        row["calibration_windows"] = int(len(y))
        result[str(n)] = row
    return result


def finetuned_accuracy(run: Path, x, y, tx, ty) -> float:
    from edgekd._tf import keras
    from edgekd.models.saved import load_model

    keras.utils.set_random_seed(0)
    student = load_model(run / "student_kd.h5")
    student.compile(
        optimizer=keras.optimizers.Adam(FINETUNE_LR), loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True)
    )
    student.fit(x, y, epochs=FINETUNE_EPOCHS, batch_size=32, shuffle=True, verbose=0)
    return float(np.mean(np.argmax(student.predict(tx, batch_size=256, verbose=0), 1) == ty))


def fold_runs(seeds: list[int] | None) -> list[dict]:
    runs = []
    for record_path in sorted(PEOPLE_RECORDS.glob("seed-*.json")):
        record = json.loads(record_path.read_text())
        if seeds is not None and record["seed"] not in seeds:
            continue
        for number, fold in enumerate(record["folds"], 1):
            runs.append(
                {
                    "seed": record["seed"],
                    "fold": number,
                    "run": PEOPLE_OUT / f"seed-{record['seed']}" / f"fold-{number}",
                    "val_on": fold["val_on"],
                    "test_on": fold["test_on"],
                }
            )
    return runs


def measure(seeds: list[int] | None) -> dict:
    from edgekd.export.export import export_run

    folds = fold_runs(seeds)
    if not folds:
        sys.exit(f"no fold runs: run benchmarks/people.py first (records in {PEOPLE_RECORDS})")
    OUT.mkdir(parents=True, exist_ok=True)
    models = {}
    for f in folds:
        key = f"seed-{f['seed']}-fold-{f['fold']}"
        models[key] = export_run(
            f["run"], "int8", OUT / f"{key}.tflite", log=lambda m: None, force=True, progress=False
        )
        f["key"], f["bytes"] = key, models[key].bytes
    grid = {}
    for f in folds:
        grid[f["key"]] = validation_grid(TFLiteModel.load(models[f["key"]].path), f["val_on"])
        print(f"{f['key']}: validation grid on {', '.join(f['val_on'])}", flush=True)
    renormalize, strength = choose(grid)
    print(f"{grid_key(renormalize, strength)}, chosen on the validation people", flush=True)
    people = []
    for f in folds:
        model = TFLiteModel.load(models[f["key"]].path)
        for person in f["test_on"]:
            people.append(
                {
                    "seed": f["seed"],
                    "fold": f["fold"],
                    "subject": person,
                    "cycles": test_person(model, f["run"], person, renormalize, strength),
                }
            )
            row = people[-1]["cycles"]
            print(
                f"{f['key']} {person}: "
                + "; ".join(f"{n} cycle(s) " + ", ".join(f"{k} {100 * row[n][k]:.1f}" for k, _ in ROWS) for n in row),
                flush=True,
            )
    return {
        "strength": strength,
        "renormalize": renormalize,
        "validation_grid": grid,
        "people": people,
        "files": [{"key": f["key"], "bytes": f["bytes"]} for f in folds],
        "record_room": personal.RECORD_ROOM,
        "cpu": platform.processor() or platform.machine(),
        "measured_at": time.strftime("%Y-%m-%d %H:%M"),
    }


def grid_means(grid: dict) -> dict[tuple[bool, float], float]:
    return {
        choice: float(
            np.mean(
                [
                    acc[grid_key(*choice)]
                    for fold in grid.values()
                    for person in fold.values()
                    for acc in person.values()
                ]
            )
        )
        for choice in GRID
    }


def choose(grid: dict) -> tuple[bool, float]:
    """The best mean validation accuracy; at a tie the simpler choice (no renormalisation), then the larger pull."""
    means = grid_means(grid)
    return max(GRID, key=lambda choice: (round(means[choice], 4), not choice[0], choice[1]))


def markdown(r: dict) -> str:
    people = r["people"]
    by_subject = sorted({p["subject"] for p in people})

    def mean_of(n: str, k: str) -> dict[str, float]:
        return {s: float(np.mean([p["cycles"][n][k] for p in people if p["subject"] == s])) for s in by_subject}

    means = grid_means(r["validation_grid"])
    seeds = sorted({p["seed"] for p in people})
    lines = [
        "## A new wearer: personalize on myo22's held-out people (`.venv/bin/python benchmarks/personalize.py`)",
        "",
        f"Fold runs of benchmarks/people.py (seeds {', '.join(map(str, seeds))}; 5 folds of people), each KD student "
        f"exported int8. Calibration: a person's cycle 0 (1 cycle, 35 s) or cycles 0-1 (2 cycles); test: their other "
        f"cycles. {len(by_subject)} test people, averaged over the seeds per person; measured {r['measured_at']} on "
        f"{r['cpu']}.",
        "",
        "Strength of the pull toward the shipped head, without and with the input normalisation refitted to the "
        "person, on the validation people (mean over 1 and 2 cycles): "
        + ", ".join(f"{grid_key(*c)}: {100 * v:.1f}" for c, v in means.items())
        + f"; chosen {grid_key(r['renormalize'], r['strength'])}.",
        "",
        "| model | 1 cycle: mean ± sd over people | worst person | 2 cycles: mean ± sd | worst person |",
        "|---|---|---|---|---|",
    ]
    table = {(n, k): mean_of(n, k) for n in ("1", "2") for k, _ in ROWS}
    for k, title in ROWS:
        cells = []
        for n in ("1", "2"):
            values = table[(n, k)]
            worst = min(values, key=values.get)
            cells += [
                f"{100 * np.mean(list(values.values())):.1f} ± {100 * np.std(list(values.values()), ddof=1):.1f}",
                f"{100 * values[worst]:.1f} ({worst})",
            ]
        lines.append(f"| {title} | " + " | ".join(cells) + " |")
    seconds = [p["cycles"]["1"]["personalize_s"] for p in people]
    size = int(np.median([f["bytes"] for f in r["files"]]))
    lines += [
        "",
        f"`personalize` on 1 cycle ({int(np.median([p['cycles']['1']['calibration_windows'] for p in people]))} "
        f"windows, "
        f"the calibration windows already cut): median {np.median(seconds):.2f} s, slowest {max(seconds):.2f} s. "
        f"The personal file is the exported file's size ({size:,} bytes, median); export leaves "
        f"{r['record_room']:,} bytes of it for the calibration record ({100 * r['record_room'] / size:.1f}%).",
        "",
    ]
    lines += targets(table, seconds, r)
    return "\n".join(lines + [""])


def targets(table: dict, seconds: list[float], r: dict) -> list[str]:
    met = lambda ok: "met" if ok else "**NOT met**"  # noqa: E731
    mean = lambda n, k: float(np.mean(list(table[(n, k)].values())))  # noqa: E731
    worst = min(min(table[(n, "personal")].values()) for n in ("1", "2"))
    size = int(np.median([f["bytes"] for f in r["files"]]))
    return [
        "Targets (issue 20):",
        "",
        f"- personalized int8 ≥ 95% with 1 cycle: {100 * mean('1', 'personal'):.1f}%: "
        f"{met(mean('1', 'personal') >= 0.95)}",
        f"- ≥ 98% with 2 cycles: {100 * mean('2', 'personal'):.1f}%: {met(mean('2', 'personal') >= 0.98)}",
        "- ≥ LDA on the same windows + 3 points with 1 cycle: "
        f"{100 * (mean('1', 'personal') - mean('1', 'lda')):+.1f} points: "
        f"{met(mean('1', 'personal') >= mean('1', 'lda') + 0.03)}",
        f"- worst person ≥ 85%: {100 * worst:.1f}%: {met(worst >= 0.85)}",
        f"- personalize ≤ 2 s for 35 s of calibration: {np.median(seconds):.2f} s: {met(np.median(seconds) <= 2)}",
        f"- file grows ≤ 10%: 0 bytes on personalizing; the room export leaves is {100 * r['record_room'] / size:.1f}% "
        f"of the file: {met(r['record_room'] / size <= 0.10)}",
    ]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", help="comma-separated seeds of benchmarks/people.py's records (default: all)")
    parser.add_argument("--report-only", action="store_true", help="rebuild the PERSONALIZE section from the record")
    args = parser.parse_args()
    if not args.report_only:
        write_json_atomic(RECORD, measure([int(s) for s in args.seeds.split(",")] if args.seeds else None))
    publish("PERSONALIZE", markdown(json.loads(RECORD.read_text())))


if __name__ == "__main__":
    main()
