"""The compression frontier: every export variant of one distilled student, benched side by side.

    .venv/bin/python benchmarks/frontier.py                  # myo5 rep 2 and isl50 s5 (about 40 minutes)
    .venv/bin/python benchmarks/frontier.py --only myo5      # the real-data case alone
    .venv/bin/python benchmarks/frontier.py --run "myo5 test rep 2=PATH/TO/RUN"   # reuse a finished run

For each case: distil (spine.py's settings, or reuse --run), export float32/float16/dynamic/int8, int8 with
QAT, pruning at 50% (with and without QAT, and clustered to 16 and 8 shared values), 75% and 90%, and low rank,
bench them all on the held-out data, and repeat the QAT export over --qat-seeds fine-tuning seeds (default 3;
`--rows qat-seeds` does only that), and check the compression targets. Writes the FRONTIER section of
benchmarks/RESULTS.md, the raw numbers to benchmarks/out/frontier/<case>.json and a plot per case to
benchmarks/figures/.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
from results_md import publish
from spine import OUT, _slug, cases, run_for  # noqa: F401  (sys.path set up by spine)

from edgekd.compress.apply import CompressionOptions
from edgekd.errors import UserError
from edgekd.export.export import export_run
from edgekd.io import write_json_atomic
from edgekd.runtime import frontier
from edgekd.runtime.bench import bench_model

HERE = Path(__file__).resolve().parent
FIGURES = HERE / "figures"
CASE_NAMES = ("myo5 test rep 2", "isl50 synthetic, test subject s5")
# (variant, compression): every row of the frontier.
EXPORTS = [
    ("float32", {}),
    ("float16", {}),
    ("dynamic", {}),
    ("int8", {}),
    ("int8", {"qat": True}),
    ("int8", {"prune": 0.5}),
    ("int8", {"prune": 0.5, "qat": True}),
    ("int8", {"prune": 0.75}),
    ("int8", {"prune": 0.9}),
    ("int8", {"prune": 0.5, "cluster": 16}),
    ("int8", {"prune": 0.5, "cluster": 8}),
    ("float32", {"prune": 0.5}),
    ("float32", {"low_rank": 1.0}),  # int8 would repeat the same rank search: only worth it if this one passes
]


def file_label(variant: str, compression: dict) -> str:
    def tag(key: str, value) -> str:
        if key == "prune":
            return f"prune{round(100 * value)}"
        return f"cluster{value}" if key == "cluster" else key.replace("_", "")

    return "+".join([variant] + [tag(k, v) for k, v in compression.items()])


def export_all(
    run: Path, folder: Path, dataset: str, rows: list[str] | None, saved_failures: list[dict]
) -> tuple[list, list[dict]]:
    """Export the chosen rows (all by default), then bench every model in `folder` together: one bench run."""
    failures = [f for f in saved_failures if rows is not None and f["label"] not in rows]
    for variant, compression in EXPORTS:
        label = file_label(variant, compression)
        if rows is not None and label not in rows:
            continue
        print(f"\n== {label}", flush=True)
        try:
            export_run(
                run,
                variant,
                folder / f"{label}.tflite",
                compression=CompressionOptions(**compression),
                log=lambda m: print(m, flush=True),
                force=True,
            )
        except UserError as e:  # e.g. no rank within the low-rank budget: that is a measurement too
            print(f"not exported: {e.message}", flush=True)
            (folder / f"{label}.tflite").unlink(missing_ok=True)
            failures.append({"label": label, "why": e.message})
            continue
    results = []
    for variant, compression in EXPORTS:
        path = folder / f"{file_label(variant, compression)}.tflite"
        if path.exists():
            print(f"benching {path.name}", flush=True)
            result = bench_model(path, data=dataset, runs=500, warmup=50)
            results.append(result)
    return frontier.compare(results), failures


def qat_repeats(run: Path, folder: Path, seeds: int) -> list[dict]:
    """`export --qat --int8` with fine-tuning seeds 0..seeds-1: the int8 model each keeps (QAT or post-training,
    whichever validates better) and its test accuracy, to set QAT-vs-PTQ differences against seed noise."""
    repeats = []
    for seed in range(seeds):
        print(f"\n== int8+qat, fine-tuning seed {seed}", flush=True)
        result = export_run(
            run,
            "int8",
            folder / f"int8+qat-seed{seed}.tflite",
            compression=CompressionOptions(qat=True, seed=seed),
            log=lambda m: print(m, flush=True),
            force=True,
        )
        qat = result.compression.get("qat") or {}
        repeats.append(
            {
                "seed": seed,
                "kept": "qat" if qat else "post-training",
                "test_accuracy": result.tflite_accuracy,
                "qat_val_accuracy": qat.get("val_accuracy"),
                "post_training_val_accuracy": qat.get("post_training_val_accuracy"),
            }
        )
        result.path.unlink()
    return repeats


def case_record(case, run: Path, results, failures) -> dict:
    rows = [
        {
            "label": r.label,
            "file": Path(r.model).stem,
            "accuracy": r.accuracy,
            "agreement_with_float": r.agreement_with_float,
            "bytes": r.bytes,
            "gzip_bytes": r.gzip_bytes,
            "p50_ms": r.latency_ms["p50"],
            "p99_ms": r.latency_ms["p99"],
            "peak_rss_kb": r.peak_rss_kb,
            "pareto": r.pareto,
            "compression": r.compression,
        }
        for r in results
    ]
    report = json.loads((run / "report.json").read_text())
    return {
        "case": case.name,
        "run": str(run),
        "rows": rows,
        "failures": failures,
        "runtime": results[0].runtime,
        "keras_student_accuracy": report["test_accuracy"]["student_kd"],
        "measured_at": time.strftime("%Y-%m-%d %H:%M"),
    }


def int8_weight_bytes(path: Path) -> bytes:
    """The int8 constant tensors of a .tflite (the weights), to see what gzip makes of them alone."""
    from tensorflow.lite.tools import flatbuffer_utils

    model = flatbuffer_utils.read_model_from_bytearray(bytearray(path.read_bytes()))
    int8 = 9  # schema TensorType.INT8
    return b"".join(
        bytes(model.buffers[t.buffer].data)
        for t in model.subgraphs[0].tensors
        if t.type == int8 and model.buffers[t.buffer].data is not None
    )


def gzip_size(data: bytes) -> int:
    import gzip

    return len(gzip.compress(data, compresslevel=9, mtime=0))


def targets(record: dict) -> list[str]:
    by = {r.get("file", r["label"]): r for r in record["rows"]}  # by the row asked for, whatever was kept
    out = []
    f32, i8 = by.get("float32"), by.get("int8")
    if f32 and i8:
        d = 100 * (i8["accuracy"] - f32["accuracy"])
        out.append(f"int8 within 1 point of the float student: {d:+.1f} points ({'met' if d >= -1 else 'NOT met'})")
    # Every pruned post-training int8 row of EXPORTS, clustered or not, by sparsity (QAT rows answer the QAT target).
    rows = sorted(
        ((v, c) for v, c in EXPORTS if v == "int8" and "prune" in c and not c.get("qat")), key=lambda r: r[1]["prune"]
    )
    for pruned in [file_label(v, c) for v, c in rows]:
        p = by.get(pruned)
        if p and i8:
            ratio, d = p["gzip_bytes"] / i8["gzip_bytes"], 100 * (p["accuracy"] - i8["accuracy"])
            verdict = "met" if ratio <= 0.6 and d >= -1 else "NOT met"
            tag = "" if "prune50" in pruned else " (the target is set for 50%)"
            out.append(
                f"{pruned}: gzip {ratio:.0%} of unpruned int8, accuracy {d:+.1f} points; target ≤ 60% and ≥ −1 "
                f"point: {verdict}{tag}"
            )
            models = OUT / "frontier" / _slug(record["case"]) / "models"
            if (
                pruned == "int8+prune50"
                and (models / "int8.tflite").exists()
                and (models / f"{pruned}.tflite").exists()
            ):
                dense, sparse = (int8_weight_bytes(models / f"{name}.tflite") for name in ("int8", pruned))
                rest = i8["gzip_bytes"] - gzip_size(dense)
                out.append(
                    f"  why: the int8 weights alone ({len(dense):,} bytes) gzip to {gzip_size(dense):,} bytes dense "
                    f"and {gzip_size(sparse):,} at 50% zeros ({gzip_size(sparse) / gzip_size(dense):.0%}); the rest "
                    f"of the file, about {rest:,} gzip bytes, does not shrink"
                )
    q = by.get("int8+qat")
    if q and i8:
        d = 100 * (q["accuracy"] - i8["accuracy"])
        out.append(f"QAT int8 ≥ PTQ int8: {d:+.1f} points ({'met' if d >= 0 else 'NOT met'})")
        repeats = record.get("qat_seeds")
        if repeats:
            diffs = [100 * (r["test_accuracy"] - i8["accuracy"]) for r in repeats]
            each = ", ".join(f"seed {r['seed']} {d:+.1f} ({r['kept']} kept)" for r, d in zip(repeats, diffs))
            out.append(
                f"  over {len(repeats)} fine-tuning seeds (`--qat-seeds`), the exported --qat int8 against PTQ: "
                f"{each}; mean {np.mean(diffs):+.1f} ({'met' if np.mean(diffs) >= 0 else 'NOT met'} on the mean)"
            )
    return out


def markdown(records: list[dict]) -> str:
    lines = [
        "## Compression frontier (`.venv/bin/python benchmarks/frontier.py`)",
        "",
        "One distilled student per case, every export of it benched on the held-out windows (`edgekd bench`",
        "with `--data`): accuracy, agreement with the float32 export, bytes, gzip -9 bytes, p50/p99 of one-window",
        "latency (1 thread), peak RSS the model adds to the runtime. `*` = Pareto-optimal on accuracy, gzip bytes",
        "and p50. Compressed variants are fine-tuned 10 epochs with the run's KD loss (seed 0, one run each:",
        "differences of a point or two are within fine-tuning noise).",
        "",
    ]
    for rec in records:
        run = Path(rec["run"])
        run = run.relative_to(HERE.parent) if run.is_relative_to(HERE.parent) else run
        reuse = (
            ""
            if run == (OUT / "frontier" / _slug(rec["case"]) / "run").relative_to(HERE.parent)
            else f' --run "{rec["case"]}={run}"'
        )
        lines += [
            f"### {rec['case']}",
            "",
            f"Command: `.venv/bin/python benchmarks/frontier.py --only {rec['case'].split()[0]}{reuse}`"
            + (" (a reused run is the spine benchmark's run of the same case). " if reuse else ". ")
            + f"Run `{run}`, "
            f"Keras student {100 * rec['keras_student_accuracy']:.1f}%; {rec['runtime']}; measured "
            f"{rec['measured_at']}. Plot: `benchmarks/figures/frontier-{_slug(rec['case'])}.png`.",
            "",
            "| model | accuracy % | agreement % | bytes | gzip | p50 ms | p99 ms | peak KB | pareto |",
            "|---|---|---|---|---|---|---|---|---|",
        ]
        for r in rec["rows"]:
            agreement = "-" if r["agreement_with_float"] is None else f"{100 * r['agreement_with_float']:.1f}"
            peak = "-" if r["peak_rss_kb"] is None else f"{r['peak_rss_kb']:,}"
            qat_declined = "qat" in r.get("file", "") and "qat" not in r["label"]
            name = f"{r['file']} (post-training kept: {r['label']})" if qat_declined else r["label"]
            lines.append(
                f"| {name} | {100 * r['accuracy']:.1f} | {agreement} | {r['bytes']:,} | {r['gzip_bytes']:,} | "
                f"{r['p50_ms']:.3f} | {r['p99_ms']:.3f} | {peak} | {'*' if r['pareto'] else ''} |"
            )
        for f in rec["failures"]:
            lines.append(f"\n{f['label']}: not exported: {f['why']}")
        lines += ["", "Targets (issue 4):", ""]
        lines += [f"  - {t.strip()}" if t.startswith("  ") else f"- {t}" for t in targets(rec)] + [""]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--only", help="cases whose name starts with this")
    parser.add_argument("--run", action="append", default=[], help="CASE=RUN_DIR: reuse a finished run for a case")
    parser.add_argument(
        "--rows",
        help="re-export only these comma-separated rows (e.g. int8+qat,int8+prune50); "
        "every model of the case is benched again; qat-seeds (alone: nothing re-benched) "
        "repeats the QAT export over --qat-seeds fine-tuning seeds",
    )
    parser.add_argument(
        "--qat-seeds", type=int, default=3, help="repeat `export --qat --int8` with this many fine-tuning seeds"
    )
    parser.add_argument("--report-only", action="store_true", help="rebuild the section from saved numbers")
    args = parser.parse_args()
    given = dict(item.split("=", 1) for item in args.run)
    saved = OUT / "frontier"
    if not args.report_only:
        for case in cases(args.only):
            if case.name not in CASE_NAMES:
                continue
            run = run_for(case, given, OUT / "frontier")
            record_path = saved / f"{_slug(case.name)}.json"
            old = json.loads(record_path.read_text()) if record_path.exists() else {}
            rows = args.rows.split(",") if args.rows else None
            models = saved / _slug(case.name) / "models"
            if rows != ["qat-seeds"]:  # "qat-seeds" alone repeats QAT and keeps the benched rows as they are
                results, failures = export_all(run, models, case.dataset, rows, old.get("failures", []))
                FIGURES.mkdir(exist_ok=True)
                frontier.plot_frontier(results, FIGURES / f"frontier-{_slug(case.name)}.png")
                old = {**old, **case_record(case, run, results, failures)}
            if args.qat_seeds and (rows is None or "qat-seeds" in rows):
                old["qat_seeds"] = qat_repeats(run, models, args.qat_seeds)
            write_json_atomic(record_path, old)
    records = [
        json.loads((saved / f"{_slug(n)}.json").read_text())
        for n in CASE_NAMES
        if (saved / f"{_slug(n)}.json").exists()
    ]
    publish("FRONTIER", markdown(records))


if __name__ == "__main__":
    main()
