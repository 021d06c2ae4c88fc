"""`edgekd export`: a run's student as one self-describing model file."""

from __future__ import annotations

from pathlib import Path

import click

from edgekd.errors import UserError
from edgekd.export import formats
from edgekd.table import format_table


def variant_flags(command):
    """--float32, --float16, ...: one flag per variant row of formats.FORMATS, in the table's order."""
    for row in reversed(formats.VARIANTS):
        command = click.option(f"--{row.name}", "variant", flag_value=row.name, help=row.help)(command)
    return command


@click.command()
@click.argument("run", type=click.Path(path_type=Path))
@variant_flags
@click.option(
    "--out", required=True, type=click.Path(dir_okay=False, path_type=Path), help="The .tflite file to write."
)
@click.option(
    "--min-agreement",
    type=float,
    help=formats.min_agreement_help(),
)
@click.option("--target", type=click.Choice(formats.TARGETS), help=formats.target_help())
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
    help="Share K values per kernel (weight clustering; keeps --prune's zeros), fine-tuned with the run's KD loss; "
    "int8 then uses one scale per tensor.",
)
@click.option(
    "--low-rank",
    type=float,
    metavar="POINTS",
    help="Factorise Dense and LSTM input kernels by truncated SVD at the smallest rank that costs at most POINTS of "
    "validation accuracy, then fine-tune.",
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
    help="Put the LDA on time-domain features (the classical baseline) beside the student in one model, probabilities "
    "averaged with a weight and LDA temperature chosen on the validation windows; not with --qat.",
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

    variant, made_from = _resolve_target(target, variant, out)
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
    if made_from and classical_branch != "none":
        raise UserError(
            f"--target {target} wants a full-integer model for TensorFlow Lite Micro, and --classical-branch "
            f"{classical_branch} keeps the LDA branch in float32; export the student alone for a microcontroller"
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
        made_from=made_from,
    )
    click.echo()
    for table in _compression_tables(r, prune, cluster):
        click.echo(table + "\n")
    click.echo(_result_table(r))
    click.echo(f"next: edgekd bench {r.path}")


def _resolve_target(target: str | None, variant: str | None, out: Path) -> tuple[str, tuple[str, ...]]:
    """(the variant to convert, the formats rows made from it), from --target and the variant flags; says why."""
    made_from = ()
    if target is not None:
        picked = formats.target_variant(target)
        if variant is None:
            variant = picked.name
            click.echo(f"--target {target}: {variant}, because {picked.targets[target]}")
        elif variant != picked.name:
            click.echo(f"--target {target} would pick {picked.name}; exporting {variant} as asked")
        for row in formats.chosen_by(target):
            if not row.variant:
                made_from += (row.name,)
                files = " and ".join(f.name for f in row.files(out))
                click.echo(f"--target {target}: also {files} ({row.name}), because {row.targets[target]}")
    if variant is None:
        raise UserError(f"choose a variant: {formats.variant_choice_hint()}")
    return variant, made_from


def _compression_tables(r, prune: float | None, cluster: int | None) -> list[str]:
    """Per kernel: the sparsity pruning measured, the distinct values clustering left."""
    tables = []
    if r.compression and "prune" in r.compression:
        measured = r.compression["prune"]["measured"]
        tables.append(
            format_table(
                ["kernel", "sparsity"],
                list(map(list, r.compression["prune"]["per_layer"].items())),
                title=f"pruning: asked {prune:.0%}, measured {measured:.1%} of kernel weights",
            )
        )
    if r.compression and "cluster" in r.compression:
        zeros = ", the pruned zeros among them" if "prune" in r.compression else ""
        tables.append(
            format_table(
                ["kernel", "distinct values"],
                list(map(list, r.compression["cluster"]["distinct"].items())),
                title=f"clustering: at most {cluster} distinct values per kernel{zeros}",
            )
        )
    return tables


def _result_table(r) -> str:
    """The exported file's row, what its accuracy columns mean, its ops and the files made from it."""
    columns = ["model", "variant", "bytes", "gzip", "agreement", "student_acc", "keras_acc", "tflite_acc", "seconds"]
    variant = r.label + (f" ({r.quantizer})" if r.quantizer else "")
    row = [str(r.path), variant, r.bytes, r.gzip_bytes, r.agreement]
    lines = [format_table(columns, [row + [r.student_accuracy, r.keras_accuracy, r.tflite_accuracy, r.seconds]])]
    with_branch = bool(r.classical_branch and r.classical_branch["kept"])
    if r.compression or with_branch:
        after = (["after compression"] if r.compression else []) + (["with the LDA branch"] if with_branch else [])
        lines.append(
            f"student_acc: the run's student alone, uncompressed; keras_acc: {' and '.join(after)}; "
            "agreement: tflite vs keras_acc's model"
        )
    fused = "UNIDIRECTIONAL_SEQUENCE_LSTM" in r.ops and "WHILE" not in r.ops
    lines.append(f"ops: {', '.join(r.ops)}{'  (LSTM fused)' if fused else ''}")
    lines += [made_summary(name, made) for name, made in (r.made or {}).items()]
    return "\n".join(lines)


def made_summary(name: str, made: dict) -> str:
    """One line per file made from the .tflite: what was written, and what its verifier measured."""
    files = ", ".join(Path(f).name for f in made["files"])
    check = made["check"]
    if check is None:
        return f"{name}: wrote {files}; tensor arena not measured (tflite-micro not installed)"
    return (
        f"{name}: wrote {files}; tensor arena {check.arena_bytes:,} bytes (the smallest {check.runtime} ran it in); "
        f"{check.describe()}"
    )
