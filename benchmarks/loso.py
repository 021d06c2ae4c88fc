"""Leave-one-subject-out on isl50: every subject held out once, the int8 student against the ensemble and LDA.

    .venv/bin/python benchmarks/loso.py                       # both variants, about an hour on 2 cores
    .venv/bin/python benchmarks/loso.py --variant augmented   # one of them (finished folds are reused)

One held-out subject is one number: in the spine's isl50 run, LDA on time-domain features scores 62.7% on its test
subject s5, above the teacher ensemble, and 48.0% on its validation subject s4, below every network. This runs
`edgekd distill --cv loso` with spine.py's isl50 settings (benchmarks/out/loso/, folds reused when finished), as
they are and with augmented teachers and students (VARIANTS), exports every fold's KD student with
`edgekd export --int8`, and with `--int8 --classical-branch lda`, and measures both on that fold's held-out subject
with `edgekd bench`'s accuracy, then writes
the LOSO section of benchmarks/RESULTS.md: per variant one row per held-out subject, the mean ± sample sd over
subjects, and issue 3's targets judged on the means. Each variant's numbers are saved in
benchmarks/records/loso/<variant>.json (in git), so `--report-only` rebuilds the section anywhere.
"""

from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path

from results_md import kept_subsection, publish
from spine import OUT, cases  # spine puts the checkout on sys.path

from edgekd.distill.cv import cross_validate, summarise
from edgekd.distill.run import DistillConfig
from edgekd.export.export import export_run
from edgekd.io import write_json_atomic
from edgekd.runtime.bench import bench_model

CASE = "isl50 synthetic, test subject s5"  # spine's isl50 case; --cv replaces its split
RECORDS = Path(__file__).resolve().parent / "records" / "loso"
# name -> (subsection heading, distill options on top of the case's)
VARIANTS = {
    "spine": ("spine settings", {}),
    "augmented": (
        "augmented teachers and students",
        {"augment_gain": 0.3, "augment_noise": 0.2, "augment_teachers": True},
    ),
}
# (report key, column title); int8 is measured here, the others come from each fold's report.json
COLUMNS = (
    ("teachers", "teachers (mean)"),
    ("ensemble", "ensemble"),
    ("student_scratch", "scratch"),
    ("student_kd", "KD student"),
    ("int8", "KD student int8"),
    ("int8_lda_branch", "KD student + LDA branch int8"),
    ("lda", "LDA"),
    ("random_forest", "random forest"),
)
TITLES = dict(COLUMNS)


def _flag(option: str, value) -> str:
    name = "--" + option.replace("_", "-")
    return name if value is True else f"{name} {value:g}"


def measure(variant: str) -> dict:
    case = next(c for c in cases("isl50") if c.name == CASE)
    options = {**case.options, **VARIANTS[variant][1]}
    folder = OUT / "loso" / ("isl50-synthetic" if variant == "spine" else f"isl50-synthetic-{variant}")
    repo = Path(__file__).resolve().parents[1]
    command = [
        "edgekd",
        "distill",
        os.path.relpath(case.dataset, repo),
        "--out",
        os.path.relpath(folder / "run", repo),
        "--cv",
        "loso",
        *[_flag(k, v) for k, v in options.items()],
    ]
    started = time.perf_counter()
    report = cross_validate(DistillConfig(dataset=case.dataset, out=str(folder / "run"), verbose=0, **options))
    for fold in report["folds"]:
        fold["run"] = os.path.relpath(fold["run"], repo)
        exported = export_run(
            repo / fold["run"],
            "int8",
            folder / f"student-int8-{fold['subject']}.tflite",
            log=lambda m: None,
            force=True,
        )
        measured = bench_model(exported.path, data=case.dataset, runs=20, warmup=5, measure_memory=False)
        fold["test_accuracy"]["int8"] = measured.accuracy
        fold["int8_bytes"] = exported.bytes
        # `edgekd export --int8 --classical-branch lda`: kept only where it raises the fold's validation accuracy
        hybrid = export_run(
            repo / fold["run"],
            "int8",
            folder / f"student-int8-lda-{fold['subject']}.tflite",
            log=lambda m: None,
            classical_branch="lda",
            force=True,
        )
        fold["test_accuracy"]["int8_lda_branch"] = bench_model(
            hybrid.path, data=case.dataset, runs=20, warmup=5, measure_memory=False
        ).accuracy
        fold["lda_branch"] = {**hybrid.classical_branch, "bytes": hybrid.bytes}
        print(
            f"{fold['subject']}: {json.dumps({k: round(v, 4) for k, v in fold['test_accuracy'].items()})}", flush=True
        )
    result = {
        "variant": variant,
        "command": " ".join(command),
        "folds": report["folds"],
        "config": report["config"],
        "seconds": round(time.perf_counter() - started),
        "measured_at": time.strftime("%Y-%m-%d %H:%M"),
    }
    write_json_atomic(RECORDS / f"{variant}.json", result)
    return result


def markdown(results: dict[str, dict]) -> str:
    """`results`: variant -> its record; a variant without one keeps its subsection as RESULTS.md has it."""
    lines = [
        "## Leave-one-subject-out on isl50 (`.venv/bin/python benchmarks/loso.py`)",
        "",
        "Each fold tests on one subject and validates on the next; spine.py's isl50 settings, edge-conv student.",
        "",
    ]
    for variant, (heading, _) in VARIANTS.items():
        if variant in results:
            lines += variant_markdown(heading, results[variant])
        elif kept := kept_subsection("LOSO", heading):
            lines += [kept, ""]
    if {"spine", "augmented"} <= results.keys():
        lines += paired_markdown(results["spine"], results["augmented"])
    return "\n".join(lines)


def paired_markdown(plain: dict, augmented: dict) -> list[str]:
    """Augmented minus spine settings, subject by subject: each fold's two runs share the split and the seeds."""
    by_subject = {f["subject"]: f for f in plain["folds"]}
    pairs = [(by_subject[f["subject"]], f) for f in augmented["folds"] if f["subject"] in by_subject]
    # the baselines see no augmentation; a column only some records have is left out
    keys = [
        k
        for k, _ in COLUMNS
        if k not in ("lda", "random_forest") and all(k in f["test_accuracy"] for pair in pairs for f in pair)
    ]
    lines = [
        f"### {VARIANTS['augmented'][0]} against spine settings",
        "",
        "Points gained by augmentation (augmented minus spine settings) on each held-out subject.",
        "",
        "| test subject | " + " | ".join(TITLES[k] for k in keys) + " |",
        "|---|" + "---|" * len(keys),
    ]
    for a, b in pairs:
        lines.append(
            f"| {a['subject']} | "
            + " | ".join(f"{100 * (b['test_accuracy'][k] - a['test_accuracy'][k]):+.1f}" for k in keys)
            + " |"
        )
    gains = {k: [b["test_accuracy"][k] - a["test_accuracy"][k] for a, b in pairs] for k in keys}
    lines.append("| mean | " + " | ".join(f"{100 * sum(g) / len(g):+.1f}" for g in gains.values()) + " |")
    lines += [
        "",
        "Higher with augmentation on: "
        + "; ".join(f"{TITLES[k]} {sum(d > 0 for d in g)} of {len(g)} subjects" for k, g in gains.items())
        + ".",
        "",
    ]
    return lines


def variant_markdown(heading: str, result: dict) -> list[str]:
    folds = result["folds"]
    lines = [
        f"### {heading}",
        "",
        f"Command: `{result['command']}` "
        f"(`.venv/bin/python benchmarks/loso.py --variant {result.get('variant', 'spine')}`), "
        "then `edgekd export RUN/fold-SUBJECT --int8`"
        + (
            " and `--int8 --classical-branch lda`, their"
            if any("int8_lda_branch" in f["test_accuracy"] for f in folds)
            else ", its"
        )
        + " accuracy under `edgekd bench --data`. "
        f"One student seed per fold; measured {result['measured_at']}.",
        "",
        "| test subject | validated on | " + " | ".join(title for _, title in COLUMNS) + " |",
        "|---|---|" + "---|" * len(COLUMNS),
    ]
    cell = lambda f, k: f"{100 * f['test_accuracy'][k]:.1f}" if k in f["test_accuracy"] else "-"  # noqa: E731
    for f in folds:
        lines.append(f"| {f['subject']} | {f['val_on']} | " + " | ".join(cell(f, k) for k, _ in COLUMNS) + " |")
    summary = summarise(folds)  # what `edgekd distill --cv` reports, int8 included
    lines.append(
        "| mean ± sd | | "
        + " | ".join(
            f"{100 * summary[k]['mean']:.1f} ± {100 * summary[k]['std']:.1f}" if k in summary else "-"
            for k, _ in COLUMNS
        )
        + " |"
    )
    int8, ensemble = summary["int8"]["mean"], summary["ensemble"]["mean"]
    classical_name = max(("lda", "random_forest"), key=lambda k: summary[k]["mean"])
    classical = summary[classical_name]["mean"]
    above = sum(f["test_accuracy"]["int8"] >= f["test_accuracy"][classical_name] for f in folds)
    ensemble_above = sum(f["test_accuracy"]["ensemble"] >= f["test_accuracy"][classical_name] for f in folds)
    met = lambda ok: "met" if ok else "NOT met"  # noqa: E731
    lines += [
        "",
        "Targets (issue 3), on the mean over held-out subjects:",
        "",
        f"- int8 KD student within 1 point of the teacher ensemble ({100 * ensemble:.1f}%): "
        f"{100 * (int8 - ensemble):+.1f} points, {met(int8 >= ensemble - 0.01)}",
        f"- not below the best classical baseline ({TITLES[classical_name]}, {100 * classical:.1f}%): "
        f"{100 * (int8 - classical):+.1f} points, {met(int8 >= classical)}; the int8 student is at or above it on "
        f"{above} of {len(folds)} subjects",
        f"- for comparison, the teacher ensemble against {TITLES[classical_name]}: {100 * (ensemble - classical):+.1f} "
        f"points, at or above it on {ensemble_above} of {len(folds)} subjects",
    ]
    if "int8_lda_branch" in summary:
        hybrid = summary["int8_lda_branch"]["mean"]
        kept = [f["subject"] for f in folds if (f.get("lda_branch") or {}).get("kept")]
        hybrid_above = sum(f["test_accuracy"]["int8_lda_branch"] >= f["test_accuracy"][classical_name] for f in folds)
        lines += [
            f"- int8 KD student + LDA branch (`--classical-branch lda`; the branch kept, by validation, on "
            f"{len(kept)} of {len(folds)} folds{': ' + ', '.join(kept) if kept else ''}): "
            f"{100 * (hybrid - ensemble):+.1f} points against the ensemble, {met(hybrid >= ensemble - 0.01)}; "
            f"{100 * (hybrid - classical):+.1f} against {TITLES[classical_name]}, {met(hybrid >= classical)}, "
            f"at or above it on {hybrid_above} of {len(folds)} subjects"
        ]
    return lines + [""]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--variant", choices=list(VARIANTS), help="measure this variant only (default: all)")
    parser.add_argument("--report-only", action="store_true", help="rebuild the section from the saved records")
    args = parser.parse_args()
    if not args.report_only:
        for variant in [args.variant] if args.variant else VARIANTS:
            measure(variant)
    results = {v: json.loads((RECORDS / f"{v}.json").read_text()) for v in VARIANTS if (RECORDS / f"{v}.json").exists()}
    publish("LOSO", markdown(results))


if __name__ == "__main__":
    main()
