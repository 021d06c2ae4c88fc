"""`edgekd distill`: teachers -> ensemble -> distilled student, and its result tables."""

from __future__ import annotations

import tomllib
from pathlib import Path

import click
import numpy as np

from edgekd.cli.options import parse_batch_size, parse_comma_list
from edgekd.distill.options import OPTIONS, REQUIRED, DistillConfig, Option
from edgekd.errors import UserError
from edgekd.table import format_table


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


def click_option(option: Option):
    """The click option of one distill option, as edgekd/distill/options.py declares it."""
    if option.kind == "flag":
        return click.option(option.flag, is_flag=True, help=option.help)
    if option.kind == "names":
        return click.option(option.flag, callback=parse_comma_list, help=option.help)
    if option.kind == "batch":  # None in DistillConfig: chosen from the training windows
        return click.option(
            option.flag,
            default="auto",
            show_default=True,
            callback=parse_batch_size,
            metavar="N|auto",
            help=option.help,
        )
    if option.kind == "path":
        return click.option(
            option.flag, required=option.default is REQUIRED, type=click.Path(path_type=Path), help=option.help
        )
    if option.choices:
        kind = click.Choice(list(option.choices))
    elif option.at_least is not None:
        kind = click.IntRange(option.at_least)
    elif option.above is not None:
        kind = click.FloatRange(option.above, min_open=True)
    else:
        kind = {"int": int, "float": float, "str": str}[option.kind]
    # An option without a default says in its help what unset means.
    shown = {} if option.default is None else {"default": option.default, "show_default": True}
    return click.option(option.flag, type=kind, help=option.help, **shown)


def distill_options(command):
    """Every option of edgekd/distill/options.py, in its order (click lists the last decorator applied first)."""
    for option in reversed(OPTIONS):
        command = click_option(option)(command)
    return command


@click.command()
@click.argument("dataset", type=click.Path(path_type=Path))
@click.option(
    "--config",
    type=click.Path(dir_okay=False),
    callback=_load_config,
    is_eager=True,
    expose_value=False,
    help="TOML file with any of these options as keys (command-line options win).",
)
@distill_options
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
    from edgekd.distill.run import distill as run_distill

    cfg = DistillConfig(
        dataset=str(dataset),
        verbose=0 if quiet else 1,
        **{o.name: (str(options[o.name]) if o.kind == "path" else options[o.name]) for o in OPTIONS},
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
    """The export command to suggest: with the LDA branch only where it won on validation (the default file has
    none)."""
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
            f"\nteachers disagree on {report['diversity']['mean_disagreement']:.0%} of test windows; "
            f"the ensemble gains {100 * report['diversity']['ensemble_gain']:+.1f} points over the mean teacher"
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

    def spread(r: dict) -> str:
        return f"{r['mean']:.3f} ± {r['std']:.3f}"

    return (
        f"\nover {len(repeats['seeds'])} student seeds: KD {spread(repeats['student_kd'])}, "
        f"scratch {spread(repeats['student_scratch'])} (mean ± sd)"
    )
