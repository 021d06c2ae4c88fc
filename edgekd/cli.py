"""The `edgekd` command line: one command per intention.

    edgekd data inspect DATASET     what a dataset holds, and every problem in it
    edgekd data synth OUT           a synthetic dataset shaped like the ISL wearable corpus
    edgekd distill DATASET          teachers -> ensemble -> distilled student, in a run folder
    edgekd export RUN --int8        the student as one self-describing .tflite file
    edgekd bench MODEL.tflite       size, latency and accuracy, without TensorFlow
    edgekd compare RUN RUN          every model of every run in one table, and plots
    edgekd demo                     all of it on the bundled real sEMG recordings

Training commands import TensorFlow when they run; bench never does (a Raspberry Pi has none).
"""

from __future__ import annotations

import json
import signal
import sys
import time
import tomllib
from dataclasses import fields
from datetime import datetime
from pathlib import Path

import click
import numpy as np

from edgekd.data.splits import METHODS as SPLIT_METHODS
from edgekd.errors import UserError
from edgekd.table import format_table


def _batch_size(ctx, param, value):
    if value is None or value == "auto" or isinstance(value, int):
        return None if value in (None, "auto") else value
    if not str(value).isdigit() or int(value) < 1:
        raise click.BadParameter("give a number of windows (1 or more) or auto")
    return int(value)


def _comma_list(ctx, param, value):
    if value is None or isinstance(value, list):
        return value or []
    return [v.strip() for v in str(value).split(",") if v.strip()]


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="edgekd")
@click.option(
    "--allow-outside-data",
    is_flag=True,
    help="Let recordings.csv name files outside its dataset folder (absolute paths, '..', symlinks); only for datasets you trust.",
)
@click.option(
    "--verbose",
    is_flag=True,
    help="Let TensorFlow, the converter and the runtime print what they print (kept quiet by default).",
)
def main(allow_outside_data, verbose):
    """Distil small sEMG/IMU sign-recognition models, export them to TFLite, and run them on the edge."""
    import os

    from edgekd.console import VERBOSE_ENV
    from edgekd.data.dataset import ALLOW_OUTSIDE_ENV

    for flag, variable in ((allow_outside_data, ALLOW_OUTSIDE_ENV), (verbose, VERBOSE_ENV)):
        if flag:
            os.environ[variable] = "1"


# ---------------------------------------------------------------------------------------------- data
@main.group()
def data():
    """Inspect and generate datasets."""


@data.command()
@click.argument("dataset", type=click.Path(path_type=Path))
@click.option("--json", "as_json", is_flag=True, help="Print the summary as JSON.")
def inspect(dataset, as_json):
    """Summarise DATASET (classes, subjects, repetitions, durations, rates) and check every recording.

    Exits with status 2 if any problem is found; each problem names its file and row."""
    from edgekd.data.inspect import summarize

    summary = summarize(dataset)
    if as_json:
        click.echo(json.dumps(summary, indent=2))
    else:
        _print_summary(summary)
    if summary["problems"]:
        raise UserError(
            f"{dataset}: {len(summary['problems'])} problem(s) found, listed above; fix them and inspect again"
        )


def _print_summary(s: dict) -> None:
    click.echo(
        f"{s['name']}{'  (SYNTHETIC)' if s['synthetic'] else ''}: {s['recordings']} recordings, "
        f"{len(s['classes'])} classes, {len(s['subjects'])} subject(s), {len(s['repetitions'])} repetition(s)"
    )
    click.echo(
        format_table(
            ["stream", "rate_hz", "channels"], [[k, v["rate_hz"], v["channels"]] for k, v in s["streams"].items()]
        )
    )
    click.echo()
    click.echo(format_table(["class", "recordings"], [[c, n] for c, n in s["recordings_per_class"].items()]))
    d = s["duration_s"]
    if d:
        click.echo(f"\ndurations: min {d['min']:.2f} s, median {d['median']:.2f} s, max {d['max']:.2f} s")
    click.echo(f"subjects: {', '.join(s['subjects'])}")
    if s["repetitions"]:
        click.echo(f"repetitions: {', '.join(s['repetitions'])}")
    for p in s["problems"]:
        click.echo(f"problem: {p}", err=True)
    if not s["problems"]:
        click.echo("no problems found")


@data.command()
@click.argument("out", type=click.Path(path_type=Path))
@click.option("--preset", default="isl50", show_default=True, help="Shape of the dataset to imitate.")
@click.option("--classes", type=click.IntRange(2), help="Override the preset's class count.")
@click.option("--subjects", type=click.IntRange(1), help="Override the preset's subject count.")
@click.option("--repetitions", type=click.IntRange(1), help="Override the preset's repetitions per class and subject.")
@click.option("--duration", type=click.FloatRange(0.1), help="Mean recording length in seconds.")
@click.option("--seed", default=0, show_default=True)
def synth(out, preset, classes, subjects, repetitions, duration, seed):
    """Write a SYNTHETIC dataset to OUT, shaped like the seed's ISL corpus (for tests and scale checks)."""
    from edgekd.data.synth import PRESETS, write_synthetic_dataset

    if preset not in PRESETS:
        raise UserError(f"unknown synthetic preset '{preset}'; use one of {', '.join(PRESETS)}")
    try:
        path = write_synthetic_dataset(
            out, preset, classes=classes, subjects=subjects, repetitions=repetitions, duration_s=duration, seed=seed
        )
    except FileExistsError as e:
        raise UserError(f"{out}: {e}; choose an empty or new folder") from None
    click.echo(f"wrote synthetic dataset {path}; check it with `edgekd data inspect {path}`")


# ------------------------------------------------------------------------------------------- distill
def _load_config(ctx, param, value):
    """--config FILE.toml supplies defaults; options on the command line win."""
    if value is None:
        return None
    path = Path(value)
    try:
        doc = tomllib.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise UserError(f"{path}: no such config file") from None
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as e:
        raise UserError(f"{path}: not valid TOML ({e}); fix the syntax") from None
    known = {p.name for p in ctx.command.params if p.name not in ("config", "dataset")}
    defaults = {}
    for key, v in doc.items():
        name = key.replace("-", "_")
        if name not in known:
            raise UserError(
                f"{path}: unknown key '{key}'; keys are the options of `edgekd distill`: {', '.join(sorted(known))}"
            )
        defaults[name] = ",".join(map(str, v)) if isinstance(v, list) else v
    ctx.default_map = {**(ctx.default_map or {}), **defaults}
    return path


@main.command()
@click.argument("dataset", type=click.Path(path_type=Path))
@click.option(
    "--config",
    type=click.Path(dir_okay=False),
    callback=_load_config,
    is_eager=True,
    expose_value=False,
    help="TOML file with any of these options as keys (command-line options win).",
)
@click.option("--out", required=True, type=click.Path(path_type=Path), help="Run folder to create.")
@click.option("--teachers", default=3, show_default=True, type=click.IntRange(1), help="Teachers in the ensemble.")
@click.option(
    "--teacher", default="conv-teacher", show_default=True, help="Teacher architecture: preset name or .toml path."
)
@click.option(
    "--student", default="edge-conv", show_default=True, help="Student architecture: preset name or .toml path."
)
@click.option(
    "--epochs",
    default=60,
    show_default=True,
    type=click.IntRange(1),
    help="Most epochs per model (early stopping on validation).",
)
@click.option(
    "--patience",
    default=12,
    show_default=True,
    type=click.IntRange(1),
    help="Epochs without validation gain before stopping.",
)
@click.option(
    "--batch-size",
    default="auto",
    show_default=True,
    callback=_batch_size,
    metavar="N|auto",
    help="Windows per training step; auto: at least 64 steps per epoch, 32 to 256 windows.",
)
@click.option("--learning-rate", default=2e-3, show_default=True, type=click.FloatRange(0, min_open=True))
@click.option(
    "--lr-schedule",
    default="constant",
    show_default=True,
    type=click.Choice(["constant", "cosine"]),
    help="Learning rate of every model trained: constant, or cosine decay to 0 over --epochs.",
)
@click.option("--window", default=0.5, show_default=True, type=float, help="Window length in seconds.")
@click.option("--hop", default=0.1, show_default=True, type=float, help="Hop between windows in seconds.")
@click.option(
    "--rate",
    type=float,
    help="Model sample rate in Hz, every stream resampled to it. [default: the highest stream rate]",
)
@click.option(
    "--split",
    type=click.Choice(SPLIT_METHODS),
    help="Hold out subjects, repetitions, sessions, or a stratified random part. [default: the first of subject, "
    "repetition, session with 3+ values, else random]",
)
@click.option(
    "--test-on",
    callback=_comma_list,
    help="Subjects, repetitions or sessions to test on, comma-separated. [default: the last]",
)
@click.option(
    "--val-on",
    callback=_comma_list,
    help="Subjects, repetitions or sessions to validate on, comma-separated. "
    "[default: the ones before the test group, 15% of all, at least one]",
)
@click.option("--temperature", default=4.0, show_default=True, type=float, help="KD temperature T.")
@click.option(
    "--alpha", default=0.3, show_default=True, type=float, help="Weight of cross-entropy; 1 - alpha weighs the KD term."
)
@click.option(
    "--fusion",
    default="mean",
    show_default=True,
    type=click.Choice(["mean", "weighted", "confidence", "vote", "loss-mean", "multi-head"]),
    help="How teachers become one target: mean, weighted by val accuracy, per-window confidence, majority vote, "
    "mean of per-teacher losses, or one student head per teacher (folded into one head for export).",
)
@click.option(
    "--loss",
    default="kl",
    show_default=True,
    type=click.Choice(["kl", "mse", "hint"]),
    help="KD term: KL on T-softened distributions, MSE between student and teacher logits, or KL plus "
    "feature hints (student penultimate features projected to each teacher's, 1 - cosine).",
)
@click.option(
    "--hint-weight",
    default=1.0,
    show_default=True,
    type=float,
    help="--loss hint: weight of the feature term beside KL.",
)
@click.option("--seed", default=0, show_default=True, type=int)
@click.option(
    "--teachers-from",
    default="bootstrap",
    show_default=True,
    type=click.Choice(["bootstrap", "seeds", "subsets", "snapshots", "modalities"]),
    help="Teacher diversity: bootstrap resamples, seeds only, random subsets, snapshots of one cyclic-LR run, or one expert per stream (modalities; ignores --teachers).",
)
@click.option(
    "--subset-min",
    default=0.6,
    show_default=True,
    type=float,
    help="--teachers-from subsets: each teacher's fraction of the training windows is drawn from [this, 1].",
)
@click.option(
    "--repeats",
    default=1,
    show_default=True,
    type=click.IntRange(1),
    help="Train the students with this many seeds (seed, seed+1, ...) and report mean and std; the first seed's are saved.",
)
@click.option(
    "--students",
    callback=_comma_list,
    help="Several student architectures, comma-separated (replaces --student): each distils from the same targets; the first is the run's student.",
)
@click.option(
    "--selector",
    is_flag=True,
    help="With --students: train a selector that routes each window to the student it expects to be right; export then writes the whole system.",
)
@click.option(
    "--augment-gain",
    default=0.0,
    show_default=True,
    type=float,
    help="Students (teachers too with --augment-teachers): random gain per training window and channel, exp(N(0, G^2)); 0 is off. "
    "The teachers then score the augmented windows in each training step.",
)
@click.option(
    "--augment-noise",
    default=0.0,
    show_default=True,
    type=float,
    help="Students (teachers too with --augment-teachers): sd of Gaussian noise added to the z-scored training windows; 0 is off.",
)
@click.option(
    "--augment-teachers",
    is_flag=True,
    help="Train the teachers on the augmented windows too (needs --augment-gain or --augment-noise).",
)
@click.option(
    "--mixup",
    default=0.0,
    show_default=True,
    type=float,
    help="Mix each training window with another of its batch, share ~ Beta(A, A), labels and targets alike; 0 is off.",
)
@click.option(
    "--classical-teacher",
    default="none",
    show_default=True,
    type=click.Choice(["none", "lda"]),
    help="Add the LDA on time-domain features (the classical baseline) to the teachers the KD targets are fused from; --loss kl, students on clean windows.",
)
@click.option(
    "--cv",
    metavar="loso|K",
    help="Cross-validate over people: leave-one-subject-out (a run per subject in OUT/fold-<subject>/) "
    "or K folds of people (OUT/fold-<i>/); per-person table and OUT/cv_report.json (finished folds are reused).",
)
@click.option(
    "--workers",
    type=int,
    help="With --cv: train this many folds at once as Ray tasks on this machine, one CPU "
    "each (needs `pip install 'edgekd[scale]'`).",
)
@click.option(
    "--ray-address",
    envvar="RAY_ADDRESS",
    help="With --cv: run the folds on this Ray cluster instead "
    "(or set RAY_ADDRESS); --out must be on storage every node sees.",
)
@click.option("--quiet", is_flag=True, help="No progress bars.")
def distill(dataset, quiet, workers, ray_address, **options):
    """Train teachers on DATASET, distil their ensemble into a student, and write the run folder.

    Reports each teacher, the ensemble, the student trained from scratch, and the distilled student
    on held-out data; the loss is alpha*CE + (1-alpha)*KD on logits (KD: T^2*KL by default, see --loss)."""
    from edgekd.distill.run import DistillConfig
    from edgekd.distill.run import distill as run_distill

    known = {f.name for f in fields(DistillConfig)}
    cfg = DistillConfig(
        dataset=str(dataset),
        verbose=0 if quiet else 1,
        **{k: (str(v) if k == "out" else v) for k, v in options.items() if k in known},
    )
    typed_address = (
        click.get_current_context().get_parameter_source("ray_address") == click.core.ParameterSource.COMMANDLINE
    )
    if (workers is not None or typed_address) and not options.get("cv"):
        raise UserError("--workers and --ray-address run the folds of a cross-validation; add --cv loso or --cv K")
    if options.get("cv"):
        from edgekd.distill.cv import cross_validate, cv_table

        cv_report = cross_validate(cfg, options["cv"], workers=workers, ray_address=ray_address)
        click.echo("\n" + cv_table(cv_report))
        click.echo(f"\nfolds and cv_report.json written to {cfg.out}")
        return
    report = run_distill(cfg)
    click.echo("\n" + distill_table(report))
    if per_group := held_out_table(report):
        click.echo("\n" + per_group)
    click.echo(f"\nrun written to {cfg.out}; next: {next_export(report, cfg.out)}")


def next_export(report: dict, out: str) -> str:
    """The export command to suggest: with the LDA branch only where it won on validation (the default file has none)."""
    command = f"edgekd export {out} --int8 --out student.tflite"
    branch = report.get("lda_branch")
    if not (branch and branch["kept"]):
        return command
    return (
        f"edgekd export {out} --int8 --out hybrid.tflite --classical-branch lda (the LDA branch raised validation "
        f"accuracy from {100 * branch['student_val_accuracy']:.1f}% to {100 * branch['val_accuracy']:.1f}%; "
        f"without it: {command})"
    )


def distill_table(report: dict) -> str:
    acc, params = report["test_accuracy"], report["params"]
    each_teacher = params.get("teachers") or [params["teacher"]] * len(acc["teachers"])  # modality experts differ
    rows = [
        [f"teacher {i + 1}", report["architectures"]["teacher"], each_teacher[i], a]
        for i, a in enumerate(acc["teachers"])
    ]
    rows += [
        ["ensemble", f"mean of {len(acc['teachers'])}", sum(each_teacher), acc["ensemble"]],
        ["student (scratch)", report["architectures"]["student"], params["student"], acc["student_scratch"]],
        ["student (KD)", report["architectures"]["student"], params["student"], acc["student_kd"]],
    ]
    branch = report.get("lda_branch")
    if branch and "student_kd_lda_branch" in acc:  # what `edgekd export --classical-branch lda` would write
        rows.append(
            [
                "student (KD) + LDA branch",
                f"export --classical-branch lda, T={branch['temperature']:g}",
                params.get("student_with_lda_branch"),
                acc["student_kd_lda_branch"],
            ]
            if branch["kept"]
            else [
                "student (KD), LDA branch left out",
                "no gain on validation",
                params["student"],
                acc["student_kd_lda_branch"],
            ]
        )
    fusion = report["config"].get("fusion", "mean")
    if fusion != "mean" and f"ensemble_{fusion}" in acc:  # what the student was taught, when it is not the plain mean
        rows.insert(
            len(acc["teachers"]) + 1, [f"ensemble ({fusion} fusion)", "KD targets", None, acc[f"ensemble_{fusion}"]]
        )
    classical = report["config"].get("classical_teacher", "none")
    if classical != "none":  # --classical-teacher: the teachers the targets came from, the classical one included
        rows.insert(
            len(acc["teachers"]) + 1,
            [
                f"ensemble + {classical.upper()} teacher",
                f"mean of {len(acc['teachers']) + 1}",
                None,
                acc[f"ensemble_with_{classical}"],
            ],
        )
    multi = report.get("multi_student")
    if multi:  # --students: the other students, and with --selector the system and the oracle
        test = multi["test"]
        names = list(test["students"])
        n_params = (test.get("params") or {}).get("students", {})
        rows += [
            [f"student (KD) {j + 1}", name, n_params.get(name), test["students"][name]]
            for j, name in enumerate(names)
            if j > 0
        ]
        if "system" in test:
            rows.append(
                ["selector system", f"selector + {len(names)} students", test["params"]["system"], test["system"]]
            )
        rows.append(["oracle (best student per window)", "upper bound", None, test["oracle"]])
    # The classical baseline the students must beat; reports written before it existed have none.
    # Its params show as "-" (None): a forest's node count is not comparable with network weights.
    if "baselines" in report:
        features = f"{report['baselines']['feature_count']} features"
        rows += [
            ["LDA (time-domain features)", features, None, acc["lda"]],
            ["random forest (time-domain features)", features, None, acc["random_forest"]],
        ]
    split = report["split"]
    held_out = "random recordings" if split["method"] == "random" else f"{split['method']} {', '.join(split['test'])}"
    t = report["timings_s"]
    return (
        format_table(
            ["model", "architecture", "params", "test_acc"],
            rows,
            title=f"{report['dataset']}: test on {held_out} ({report['windows']['test']} windows)",
        )
        + f"\ntime: teachers {t['teachers']:.0f} s, scratch student {t['student_scratch']:.0f} s, "
        f"KD student {t['student_kd']:.0f} s, "
        + (f"other students {t['students']:.0f} s, " if "students" in t else "")
        + (f"selector {t['selector']:.0f} s, " if "selector" in t else "")
        + (f"baselines {t['baselines']:.0f} s, " if "baselines" in t else "")
        + f"total {t['total']:.0f} s"
        + (
            f"\nteachers disagree on {report['diversity']['mean_disagreement']:.0%} of test windows; the ensemble gains "
            f"{100 * report['diversity']['ensemble_gain']:+.1f} points over the mean teacher"
            if "diversity" in report
            else ""
        )
        + _repeats_line(report.get("repeats"))
        + (
            "\nthe selector sends "
            + ", ".join(f"{share:.0%} to {name}" for name, share in multi["test"]["routing"].items())
            + " of test windows"
            if multi and "routing" in multi["test"]
            else ""
        )
    )


HELD_OUT_COLUMNS = (
    ("ensemble", "ensemble"),
    ("student_scratch", "scratch"),
    ("student_kd", "KD"),
    ("lda", "LDA"),
    ("random_forest", "random forest"),
)


def held_out_table(report: dict) -> str | None:
    """Test accuracy per held-out subject (repetition, session) and their mean ± sd, where several were held out."""
    held_out = report.get("held_out")
    if not held_out or len(held_out["groups"]) < 2:
        return None
    accuracy = held_out["test_accuracy"]
    columns = [(key, title) for key, title in HELD_OUT_COLUMNS if key in accuracy]
    teachers = accuracy.get("teachers") or []
    rows = [
        [
            group,
            *([float(np.mean([t[group] for t in teachers]))] if teachers else []),
            *(accuracy[key][group] for key, _ in columns),
        ]
        for group in held_out["groups"]
    ]
    values = np.array([row[1:] for row in rows], dtype=float)
    rows.append(
        ["mean ± sd", *(f"{m:.3f} ± {sd:.3f}" for m, sd in zip(values.mean(axis=0), values.std(axis=0, ddof=1)))]
    )
    return format_table(
        [held_out["by"], *(["teachers (mean)"] if teachers else []), *(title for _, title in columns)],
        rows,
        title=f"test accuracy per held-out {held_out['by']}",
    )


def _repeats_line(repeats: dict | None) -> str:
    if not repeats or len(repeats.get("seeds", [])) < 2:
        return ""
    spread = lambda r: f"{r['mean']:.3f} ± {r['std']:.3f}"  # noqa: E731
    return (
        f"\nover {len(repeats['seeds'])} student seeds: KD {spread(repeats['student_kd'])}, "
        f"scratch {spread(repeats['student_scratch'])} (mean ± sd)"
    )


# -------------------------------------------------------------------------------------------- export
@main.command()
@click.argument("run", type=click.Path(path_type=Path))
@click.option("--float32", "variant", flag_value="float32", help="Float32 weights and activations.")
@click.option("--float16", "variant", flag_value="float16", help="Float16 weights, float32 compute.")
@click.option("--dynamic", "variant", flag_value="dynamic", help="Int8 weights, float activations.")
@click.option("--int8", "variant", flag_value="int8", help="Full integer: int8 weights, activations, input and output.")
@click.option(
    "--out", required=True, type=click.Path(dir_okay=False, path_type=Path), help="The .tflite file to write."
)
@click.option(
    "--min-agreement",
    type=float,
    help="Least argmax agreement with the Keras student on test windows. [default: 0.99 float32, 0.98 float16, 0.95 dynamic, 0.90 int8]",
)
@click.option(
    "--target",
    type=click.Choice(["x86", "pi", "mcu"]),
    help="Pick the variant measured best for this kind of CPU (when no variant flag is given), and say why.",
)
@click.option(
    "--prune",
    type=float,
    metavar="SPARSITY",
    help="Magnitude-prune kernels to this fraction of zeros (0-0.95), fine-tuned with the run's KD loss.",
)
@click.option("--qat", is_flag=True, help="Quantization-aware KD fine-tuning before --int8 conversion.")
@click.option(
    "--cluster",
    type=int,
    metavar="K",
    help="Share K values per kernel (weight clustering; keeps --prune's zeros), fine-tuned with the run's KD loss; int8 then uses one scale per tensor.",
)
@click.option(
    "--low-rank",
    type=float,
    metavar="POINTS",
    help="Factorise Dense and LSTM input kernels by truncated SVD at the smallest rank that costs at most POINTS of validation accuracy, then fine-tune.",
)
@click.option(
    "--finetune-epochs",
    default=10,
    show_default=True,
    type=int,
    help="KD fine-tuning epochs for --prune, --cluster, --qat and --low-rank.",
)
@click.option(
    "--finetune-seed", type=int, help="Seed of the KD fine-tuning (to see its spread). [default: the run's seed]"
)
@click.option(
    "--data",
    type=click.Path(path_type=Path),
    help="The run's dataset, if it moved (fine-tuning and --classical-branch need its training windows).",
)
@click.option("--force", is_flag=True, help="Replace --out if it exists (never a file of a distill run).")
@click.option(
    "--classical-branch",
    default="none",
    show_default=True,
    type=click.Choice(["none", "lda"]),
    help="Put the LDA on time-domain features (the classical baseline) beside the student in one model, probabilities averaged with a weight and LDA temperature chosen on the validation windows; not with --qat.",
)
def export(
    run,
    variant,
    out,
    min_agreement,
    target,
    prune,
    qat,
    cluster,
    low_rank,
    finetune_epochs,
    finetune_seed,
    data,
    force,
    classical_branch,
):
    """Convert RUN's distilled student to a TFLite file with its metadata inside, optionally compressed first.

    The file is written only if its decisions agree with the Keras model on the run's test windows;
    an int8 model that collapses with the default quantizer is retried with the legacy one.
    --prune, --cluster, --qat and --low-rank fine-tune with the distillation loss against the run's teachers."""
    from edgekd.compress.apply import CompressionOptions
    from edgekd.export.targets import TARGETS

    if variant is None and target is not None:
        variant, why = TARGETS[target]
        click.echo(f"--target {target}: {variant}, because {why}")
    elif target is not None and variant != TARGETS[target][0]:
        click.echo(f"--target {target} would pick {TARGETS[target][0]}; exporting {variant} as asked")
    if variant is None:
        raise UserError("choose a variant: --float32, --float16, --dynamic or --int8 (or --target x86|pi|mcu)")
    options = CompressionOptions(
        prune=prune,
        qat=qat,
        cluster=cluster,
        low_rank=low_rank,
        finetune_epochs=finetune_epochs,
        data=data,
        seed=finetune_seed,
    )
    options.check(variant)
    from edgekd.export.export import check_classical_branch, export_run

    check_classical_branch(classical_branch, options)
    if target == "mcu" and classical_branch != "none":
        raise UserError(
            f"--target mcu wants a full-integer model for TensorFlow Lite Micro, and --classical-branch {classical_branch} "
            f"keeps the LDA branch in float32; export the student alone for a microcontroller"
        )
    r = export_run(
        run,
        variant,
        out,
        min_agreement,
        compression=options,
        log=click.echo,
        classical_branch=classical_branch,
        force=force,
    )
    fused = "UNIDIRECTIONAL_SEQUENCE_LSTM" in r.ops and "WHILE" not in r.ops
    click.echo()
    if r.compression and "prune" in r.compression:
        per_layer = r.compression["prune"]["per_layer"]
        click.echo(
            format_table(
                ["kernel", "sparsity"],
                [[k, v] for k, v in per_layer.items()],
                title=f"pruning: asked {prune:.0%}, measured {r.compression['prune']['measured']:.1%} of kernel weights",
            )
        )
        click.echo()
    if r.compression and "cluster" in r.compression:
        distinct = r.compression["cluster"]["distinct"]
        click.echo(
            format_table(
                ["kernel", "distinct values"],
                [[k, v] for k, v in distinct.items()],
                title=f"clustering: at most {cluster} distinct values per kernel"
                + (", the pruned zeros among them" if "prune" in r.compression else ""),
            )
        )
        click.echo()
    click.echo(
        format_table(
            ["model", "variant", "bytes", "gzip", "agreement", "student_acc", "keras_acc", "tflite_acc", "seconds"],
            [
                [
                    str(r.path),
                    r.label + (f" ({r.quantizer})" if r.quantizer else ""),
                    r.bytes,
                    r.gzip_bytes,
                    r.agreement,
                    r.student_accuracy,
                    r.keras_accuracy,
                    r.tflite_accuracy,
                    r.seconds,
                ]
            ],
        )
    )
    with_branch = bool(r.classical_branch and r.classical_branch["kept"])
    if r.compression or with_branch:
        click.echo(
            "student_acc: the run's student alone, uncompressed; keras_acc: "
            + " and ".join(
                (["after compression"] if r.compression else []) + (["with the LDA branch"] if with_branch else [])
            )
            + "; agreement: tflite vs keras_acc's model"
        )
    click.echo(f"ops: {', '.join(r.ops)}{'  (LSTM fused)' if fused else ''}")
    click.echo(f"next: edgekd bench {r.path}")


# --------------------------------------------------------------------------------------------- bench
@main.command()
@click.argument("models", nargs=-1, required=True, type=click.Path(path_type=Path))
@click.option(
    "--data",
    type=click.Path(path_type=Path),
    help="Dataset to measure accuracy on (the test split recorded in each model).",
)
@click.option(
    "--where",
    "where",
    multiple=True,
    metavar="KEY=V1,V2",
    help="With --data: measure on these recordings instead of the recorded test split; KEY is subject, repetition "
    "or session; repeat for more keys (all must hold).",
)
@click.option("--runs", default=200, show_default=True, type=int, help="Timed windows per model.")
@click.option("--warmup", default=20, show_default=True, type=int, help="Untimed windows first.")
@click.option("--threads", default=1, show_default=True, type=int, help="Interpreter threads.")
@click.option(
    "--json", "json_out", type=click.Path(dir_okay=False, path_type=Path), help="Also write the results as JSON."
)
@click.option(
    "--plot",
    type=click.Path(dir_okay=False, path_type=Path),
    help="Also write a PNG: accuracy against gzip bytes and against p50 latency (p50 against gzip bytes without --data), "
    "Pareto-optimal models joined. Needs `pip install 'edgekd[plot]'`.",
)
@click.option("--force", is_flag=True, help="Replace --json and --plot files that exist.")
def bench(models, data, where, runs, warmup, threads, json_out, plot, force):
    """Measure bytes, load time, per-window latency and peak memory of MODELS, and accuracy with --data. No TensorFlow.

    \b
    peak_kb    peak RSS a model adds on top of the runtime (load + a few windows, fresh process)
    agreement  share of test windows with the class the float32 model of its run picks (--data)
    pareto     *: no other model as good on accuracy, gzip bytes and p50 and better on one
    """
    from edgekd.data.splits import parse_where
    from edgekd.io import check_output, write_json_atomic
    from edgekd.runtime import frontier
    from edgekd.runtime.bench import bench_model

    if where and data is None:
        raise UserError("--where selects recordings of the dataset given with --data; add --data DATASET")
    chosen = parse_where(where)
    for option, path in (("--json", json_out), ("--plot", plot)):
        if path:
            check_output(path, option, force)  # now, not after minutes of benching
    if plot:
        frontier.require_matplotlib()  # now, not after minutes of benching
    results = frontier.compare([bench_model(m, data, runs, warmup, threads, where=chosen) for m in models])
    click.echo(bench_table(results))
    if chosen:
        click.echo(
            f"accuracy: on the recordings of {data} with "
            + " and ".join(f"{k}={','.join(v)}" for k, v in chosen.items())
        )
    if json_out:
        write_json_atomic(json_out, [_bench_json(r) for r in results])
        click.echo(f"wrote {json_out}")
    if plot:
        frontier.plot_frontier(results, plot)
        click.echo(f"wrote {plot}")


def bench_table(results) -> str:
    rows = [
        [
            Path(r.model).name,
            r.label or r.variant,
            r.bytes,
            r.gzip_bytes,
            r.peak_rss_kb,
            r.init_ms,
            r.first_invoke_ms,
            r.latency_ms["p50"],
            r.latency_ms["p90"],
            r.latency_ms["p99"],
            r.accuracy,
            _agreement_cell(r),
            "*" if r.pareto else "",
        ]
        for r in results
    ]
    table = format_table(
        [
            "model",
            "variant",
            "bytes",
            "gzip",
            "peak_kb",
            "init_ms",
            "first_ms",
            "p50_ms",
            "p90_ms",
            "p99_ms",
            "accuracy",
            "agreement",
            "pareto",
        ],
        rows,
        title=f"runtime: {results[0].runtime}, {results[0].threads} thread(s)",
    )
    return "\n".join([table, *_bench_notes(results)])


def _agreement_cell(r) -> str | None:
    if r.agreement_with_float is None:
        return None
    return f"{r.agreement_with_float:.3f}" + (" e" if r.agreement_source == "export" else "")


def _bench_notes(results) -> list[str]:
    """One line per column that needs explaining, for the columns the results fill (demo fills fewer)."""
    with_accuracy = all(r.accuracy is not None for r in results)
    notes = []
    if any(r.peak_rss_kb is not None for r in results):
        notes.append("peak_kb: peak RSS the model adds on top of the imported runtime, measured in a fresh process")
    if any(r.agreement_with_float is not None for r in results):
        notes.append(
            "agreement: share of test windows where the model picks the class the float32 model of its run picks"
        )
    if any(r.agreement_source == "export" for r in results):
        notes.append(
            "e: no float32 model of its run benched here; agreement with the Keras float student, measured at export"
        )
    if any(r.pareto is not None for r in results):
        notes.append(
            f"pareto *: no other model is as good on {'accuracy, ' if with_accuracy else ''}gzip bytes and p50 "
            f"and better on one"
        )
    return notes


def _bench_json(r) -> dict:
    d = r.to_dict()
    return {
        "model": d["model"],
        "bytes": d["bytes"],
        "gzip_bytes": d["gzip_bytes"],
        "init_ms": d["init_ms"],
        "latency_ms": d["latency_ms"],
        "accuracy": d["accuracy"],
        "runtime": d["runtime"],
        "variant": d["variant"],
        "first_invoke_ms": d["first_invoke_ms"],
        "windows": d["windows"],
        "threads": d["threads"],
        "label": d["label"],
        "agreement_with_float": d["agreement_with_float"],
        "agreement_source": d["agreement_source"],
        "peak_rss_kb": d["peak_rss_kb"],
        "pareto": d["pareto"],
    }


# --------------------------------------------------------------------------------------- personalize
@main.command()
@click.argument("model", type=click.Path(dir_okay=False, path_type=Path))
@click.argument("calibration", type=click.Path(path_type=Path))
@click.option(
    "--out", required=True, type=click.Path(dir_okay=False, path_type=Path), help="The personal .tflite to write."
)
@click.option(
    "--where",
    "where",
    multiple=True,
    metavar="KEY=V1,V2",
    help="Calibrate on these recordings of CALIBRATION only; KEY is subject, repetition or session; repeat for more "
    "keys (all must hold).",
)
@click.option(
    "--keep-missing",
    is_flag=True,
    help="Let classes the calibration lacks keep the shipped model's behaviour (without it they are refused).",
)
@click.option("--force", is_flag=True, help="Replace --out if it exists.")
def personalize(model, calibration, out, where, keep_missing, force):
    """Fit MODEL's last layer to one person from CALIBRATION, a dataset folder of their recordings (what `edgekd stream
    --record` writes, or part of a bigger dataset with --where). Writes one .tflite, int8 or float32 as MODEL, that
    bench and stream take like any other. No TensorFlow."""
    from edgekd.data.splits import parse_where
    from edgekd.io import check_output, write_bytes_atomic
    from edgekd.runtime import personalize as personal
    from edgekd.runtime.interpreter import TFLiteModel

    started = time.perf_counter()
    chosen = parse_where(where)
    out = check_output(out, "--out", force)
    if model.exists() and out.resolve() == model.resolve():
        raise UserError(f"--out {out}: is MODEL itself; personalize never modifies its input, choose another --out")
    shipped_model = TFLiteModel.load(model)
    calibration_set = personal.load_calibration(shipped_model, calibration, chosen)
    result = personal.personalize(shipped_model, calibration_set, keep_missing=keep_missing)
    write_bytes_atomic(out, result.model_bytes)
    record = result.record
    rows = [[name, count] for name, count in record["windows"].items()]
    rows += [[name, "none: kept the shipped model's"] for name in record["kept_shipped"]]
    click.echo(format_table(["class", "calibration windows"], rows))
    shipped, personal_accuracy = result.calibration_accuracy
    click.echo(
        f"accuracy on the calibration windows: shipped {shipped:.1%}, personal {personal_accuracy:.1%} "
        f"(measure on other recordings with bench --data ... --where ...)"
    )
    click.echo(f"wrote {out} ({len(result.model_bytes):,} bytes) in {time.perf_counter() - started:.1f} s")
    click.echo(f"next: edgekd stream --port PORT --model {out}")


# ------------------------------------------------------------------------------------------- compare
@main.command()
@click.argument("runs", nargs=-1, type=click.Path(path_type=Path))
@click.option(
    "--out",
    type=click.Path(file_okay=False, path_type=Path),
    help="Folder for accuracy_vs_params.png and confusion_<run>.png (the best student). Needs `pip install 'edgekd[plot]'`.",
)
@click.option(
    "--json", "json_out", type=click.Path(dir_okay=False, path_type=Path), help="Also write the table's rows as JSON."
)
@click.option("--force", is_flag=True, help="Replace the --json file if it exists.")
def compare(runs, out, json_out, force):
    """Compare runs: one table of every model's held-out accuracy, size and training time, and with --out the plots.

    RUNS are folders written by `edgekd distill`; everything but the confusion matrix comes from their report.json."""
    from edgekd import compare as comparing
    from edgekd.io import check_output, write_json_atomic

    if json_out:
        check_output(json_out, "--json", force)
    loaded = comparing.load_runs(runs)
    if out:
        comparing.require_matplotlib()  # now, not after the table
    rows = comparing.compare_rows(loaded)
    for line in [*map(comparing.run_summary, loaded), *comparing.comparability_notes(loaded)]:
        click.echo(line)
    click.echo("\n" + comparing.comparison_table(rows))
    click.echo(comparing.TIME_NOTE)
    if json_out:
        write_json_atomic(json_out, rows)
        click.echo(f"wrote {json_out}")
    if out:
        for line in comparing.write_plots(loaded, rows, out):
            click.echo(line)


# ------------------------------------------------------------------------------------------ simulate
@main.command()
@click.argument("dataset", type=click.Path(path_type=Path))
@click.option("--port", help="Serial device or pyserial URL to write to, e.g. /dev/ttyUSB0.")
@click.option("--pty", is_flag=True, help="Create a pseudo-terminal and print its path for `edgekd stream --port`.")
@click.option("--listen", help="Serve one TCP client at HOST:PORT (the reader uses --port socket://HOST:PORT).")
@click.option("--baud", default=921600, show_default=True)
@click.option(
    "--speed",
    default=1.0,
    show_default=True,
    type=float,
    help="1 = real time, 10 = ten times faster, 0 = as fast as possible.",
)
@click.option("--text", is_flag=True, help="One line of comma-separated values per sample instead of binary frames.")
@click.option("--faults", default="", help="Inject faults, e.g. drop=0.01,corrupt=0.02,garbage=0.01,disconnect=5.")
@click.option(
    "--frame-ms", default=10.0, show_default=True, type=float, help="Samples per frame, in milliseconds of each stream."
)
@click.option(
    "--recordings",
    callback=_comma_list,
    help="Recording indices (rows of recordings.csv from 0) in replay order. [default: all]",
)
@click.option("--loop", is_flag=True, help="Start over after the last recording, until interrupted.")
@click.option(
    "--hold",
    type=float,
    metavar="SECONDS",
    help="Play each recording for exactly SECONDS (cut, or repeated from its start) with no pause between: "
    "a wearer changing gesture on cue, as `edgekd stream --calibrate` prompts (use --calibrate SECONDS-2, "
    "and --recordings one per class in the model's class order).",
)
@click.option("--seed", default=0, show_default=True, type=int, help="Seed of the fault injection.")
def simulate(dataset, port, pty, listen, baud, speed, text, faults, frame_ms, recordings, loop, hold, seed):
    """Replay DATASET's recordings as a wearable would send them: binary frames (firmware_bridge/PROTOCOL.md)
    or text lines, at real-time pace or --speed, with optional fault injection. No TensorFlow."""
    from edgekd.data.dataset import load_dataset
    from firmware_bridge.simulator import Simulator, open_link, parse_faults

    try:
        chosen = [int(i) for i in recordings] if recordings else None
    except ValueError:
        raise UserError(f"--recordings {','.join(recordings)}: give comma-separated indices, e.g. 0,3,5") from None
    sim = Simulator(
        load_dataset(dataset),
        speed=speed,
        text=text,
        faults=parse_faults(faults),
        frame_ms=frame_ms,
        recordings=chosen,
        loop=loop,
        seed=seed,
        hold_s=hold,
    )
    with open_link(port, pty, listen, baud) as link:
        click.echo(f"writing to {link.describe()}", err=True)
        if not link.wait_ready(timeout=None):
            return
        try:
            stats = sim.run(link.write, drop_link=link.drop)
        except KeyboardInterrupt:
            return
    click.echo(stats.summary(), err=True)


# -------------------------------------------------------------------------------------------- stream
@main.command()
@click.option("--port", required=True, help="Serial device (/dev/ttyACM0) or pyserial URL (socket://127.0.0.1:7000).")
@click.option(
    "--model",
    "model_path",
    required=True,
    type=click.Path(dir_okay=False, path_type=Path),
    help="A .tflite written by `edgekd export`.",
)
@click.option("--baud", default=921600, show_default=True, help="Baud rate (ignored by USB CDC devices and sockets).")
@click.option(
    "--text",
    is_flag=True,
    help="Text mode: one line of comma/tab/space-separated values per sample (single-stream models).",
)
@click.option(
    "--rate", type=float, help="Text mode: the device's sample rate in Hz. [default: the model's stream rate]"
)
@click.option("--smooth", default=1, show_default=True, type=int, help="Majority vote over the last K windows.")
@click.option(
    "--threshold", default=0.0, show_default=True, type=float, help="Below this mean probability, report no sign."
)
@click.option("--jsonl", is_flag=True, help="One JSON object per decision instead of a live terminal line.")
@click.option(
    "--record",
    type=click.Path(file_okay=False, path_type=Path),
    help="Folder to write the raw received samples to, as they arrive.",
)
@click.option("--max-windows", type=click.IntRange(1), help="Stop after this many decisions.")
@click.option("--idle-exit", type=float, help="Stop after this many seconds without data.")
@click.option(
    "--calibrate",
    type=click.FloatRange(min=0, min_open=True),
    metavar="SECONDS",
    help="First ask for each of the model's classes in turn (a 2 s countdown, then hold it SECONDS), "
    "personalize the model on those windows as `edgekd personalize` does, then recognise with the "
    "personal model. With --record DIR it is kept as DIR/personal.tflite, the calibration as the dataset "
    "DIR/calibration/.",
)
def stream(port, model_path, baud, text, rate, smooth, threshold, jsonl, record, max_windows, idle_exit, calibrate):
    """Recognise signs live from a device on PORT: windows cut and normalised exactly as in training,
    LSTM state reset per window. Ctrl-C stops and prints the counters. No TensorFlow."""
    from edgekd.runtime.interpreter import TFLiteModel
    from firmware_bridge.live import LiveSession, run_session, serial_opener

    if rate is not None and not text:
        raise UserError("--rate applies to --text mode; binary frames carry their own timing")
    model = TFLiteModel.load(model_path)
    guided = _guided_calibration(model, calibrate, record, port) if calibrate else {}
    session = LiveSession(
        model, text=text, text_rate_hz=rate, smooth=smooth, threshold=threshold, record=record, **guided
    )
    interactive = sys.stdout.isatty() and not jsonl

    def emit(d):
        if jsonl:
            click.echo(d.to_json())
            return
        line = f"{d.end_time_s:9.2f} s  {d.label or '(no sign)':<16} p={d.probability:.2f}  {d.latency_ms:6.2f} ms"
        click.echo(("\r" + line) if interactive else line, nl=not interactive)

    click.echo(f"listening on {port} with {model_path.name} ({', '.join(session.classes)})", err=True)
    signal.signal(signal.SIGTERM, _stop_on_sigterm)  # `kill` ends a session like Ctrl-C: counters, closed files
    try:
        run_session(
            session,
            serial_opener(port, baud),
            emit,
            max_windows=max_windows,
            idle_exit_s=idle_exit,
            log=lambda m: click.echo(m, err=True),
        )
    except KeyboardInterrupt:
        pass
    finally:
        if interactive:
            click.echo()
        if session.calibration is not None:
            kept = session.calibration.calibration_set()[1]
            click.echo(
                f"calibration not finished ({len(set(kept.tolist()))} of {len(session.classes)} classes held); "
                "nothing personalized",
                err=True,
            )
        counters = session.counters()
        click.echo("counters: " + ", ".join(f"{k}={v}" for k, v in counters.items()), err=True)


def _guided_calibration(model, seconds: float, record: Path | None, port: str) -> dict:
    """LiveSession's calibration and on_calibrated for `stream --calibrate SECONDS`, checked before the device is
    opened: a model personalize can refit, enough windows per class, and (with --record) a free calibration folder."""
    import tempfile

    from edgekd.data.windows import Preprocessor
    from edgekd.io import write_bytes_atomic
    from edgekd.runtime import personalize as personal
    from edgekd.runtime.interpreter import TFLiteModel
    from firmware_bridge.calibrate import GuidedCalibration, write_calibration_dataset

    personal.check_personalizable(model)
    pre = Preprocessor.from_dict(model.metadata["preprocessing"])
    per_class = int((seconds - pre.spec.window_s) / pre.spec.hop_s + 1e-9) + 1 if seconds >= pre.spec.window_s else 0
    if per_class < personal.MIN_WINDOWS_PER_CLASS:
        least = pre.spec.window_s + (personal.MIN_WINDOWS_PER_CLASS - 1) * pre.spec.hop_s
        raise UserError(
            f"--calibrate {seconds:g}: gives {per_class} windows of each class, personalize needs "
            f"{personal.MIN_WINDOWS_PER_CLASS}; hold each class at least {least:g} s"
        )
    as_dataset = len(pre.streams) == 1 and pre.streams[0].rate_hz == pre.spec.model_rate_hz
    for kept in ("calibration", "personal.tflite"):
        if record and (Path(record) / kept).exists():
            raise UserError(f"{Path(record) / kept}: exists; choose another --record folder")
    classes = list(model.metadata["classes"])
    interactive = sys.stderr.isatty()

    def say(live: str, plain: str | None) -> None:
        if interactive:
            click.echo("\r" + live.ljust(72), nl=False, err=True)
        elif plain:
            click.echo(plain, err=True)

    def on_calibrated(windows, labels):
        if interactive:
            click.echo(err=True)
        made = personal.personalize(model, personal.Calibration(windows, labels, f"live calibration on {port}"))
        shipped, personal_accuracy = made.calibration_accuracy
        click.echo(
            f"personalized on {len(labels)} windows: calibration accuracy {shipped:.1%} -> {personal_accuracy:.1%}; "
            "recognising with the personal model",
            err=True,
        )
        if not record:
            with tempfile.TemporaryDirectory() as tmp:  # the model is read into memory: the file can go
                return TFLiteModel.load(write_bytes_atomic(Path(tmp) / "personal.tflite", made.model_bytes))
        path = write_bytes_atomic(Path(record) / "personal.tflite", made.model_bytes)
        click.echo(f"wrote {path}", err=True)
        if as_dataset:
            write_calibration_dataset(Path(record) / "calibration", windows, labels, pre, classes)
            click.echo(f"calibration kept as the dataset {Path(record) / 'calibration'}", err=True)
        else:
            click.echo(
                f"calibration not kept as a dataset (the model resamples or stacks its streams); the raw "
                f"samples are in {record}",
                err=True,
            )
        return TFLiteModel.load(path)

    return {"calibration": GuidedCalibration(classes, seconds, pre.spec.window_s, say), "on_calibrated": on_calibrated}


def _stop_on_sigterm(signum, frame):
    raise KeyboardInterrupt


# ---------------------------------------------------------------------------------------------- demo
@main.command()
@click.option(
    "--out",
    type=click.Path(file_okay=False, path_type=Path),
    help="Folder for the run and the model. [default: runs/demo-<time>]",
)
@click.option("--epochs", default=60, show_default=True, type=click.IntRange(1))
@click.option("--quiet", is_flag=True, help="No progress bars.")
def demo(out, epochs, quiet):
    """Distil, export int8 and bench on the bundled real Myo sEMG recordings (myo5).

    Tests on repetition 2; repetition 3 looks like a shifted armband and is reported by benchmarks/."""
    from edgekd.datasets import bundled_dataset
    from edgekd.distill.run import DistillConfig
    from edgekd.distill.run import distill as run_distill
    from edgekd.export.export import export_run
    from edgekd.runtime.bench import bench_model

    out = out or Path("runs") / f"demo-{datetime.now():%Y%m%d-%H%M%S}"
    dataset = bundled_dataset("myo5")
    click.echo(f"edgekd demo: real sEMG ({dataset}), run folder {out}")
    cfg = DistillConfig(
        dataset=str(dataset),
        out=str(out / "run"),
        epochs=epochs,
        test_on=["2"],
        val_on=["1"],
        verbose=0 if quiet else 1,
    )
    report = run_distill(cfg)
    model = export_run(out / "run", "int8", out / "student-int8.tflite", log=click.echo)
    result = bench_model(model.path, data=dataset)
    click.echo("\n" + distill_table(report))
    click.echo("\n" + bench_table([result]))
    click.echo(
        f"\nint8 student: {model.bytes:,} bytes, test accuracy {result.accuracy:.3f} "
        f"(ensemble {report['test_accuracy']['ensemble']:.3f}), p50 {result.latency_ms['p50']:.3f} ms per window"
    )


if __name__ == "__main__":
    sys.exit(main())
