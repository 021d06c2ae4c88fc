"""The compression steps export applies before conversion, in order: low-rank -> pruning -> clustering -> QAT.

Each step fine-tunes with the run's distillation loss. Pruned zeros survive the later steps: clustering keeps
them as a cluster of their own, and QAT fine-tuning re-applies the pruning masks after every step (tfmot's own
prune-preserving QAT needs layers it supports).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from edgekd.errors import UserError

MAX_CLUSTERS = 256  # int8 has 256 levels: more clusters cannot be told apart after quantization
MAX_SPARSITY = 0.95  # higher leaves a handful of weights per kernel; RESULTS.md shows accuracy gone well before


@dataclass
class CompressionOptions:
    prune: float | None = None  # target sparsity of the kernels, in [0, MAX_SPARSITY]
    qat: bool = False
    cluster: int | None = None  # distinct values each kernel keeps
    low_rank: float | None = None  # accuracy points the factorisation may cost on validation, after fine-tuning
    finetune_epochs: int = 10
    data: str | Path | None = None  # the run's dataset, if it moved
    seed: int | None = None  # of the fine-tuning; None: the run's own seed

    @property
    def any(self) -> bool:
        return self.prune is not None or self.qat or self.low_rank is not None or self.cluster is not None

    def check(self, variant: str) -> None:
        """Before TensorFlow is imported: a bad option fails at once."""
        if self.prune is not None and not 0.0 <= self.prune <= MAX_SPARSITY:
            raise UserError(
                f"--prune {self.prune:g}: sparsity is the fraction of kernel weights set to zero and must "
                f"lie in [0, {MAX_SPARSITY}], e.g. --prune 0.5"
            )
        if self.qat and variant != "int8":
            raise UserError("--qat trains for full-integer inference and needs --int8 (e.g. export RUN --qat --int8)")
        if self.cluster is not None and not 2 <= self.cluster <= MAX_CLUSTERS:
            raise UserError(
                f"--cluster {self.cluster}: the number of distinct values each kernel keeps must lie in "
                f"[2, {MAX_CLUSTERS}] (int8 has {MAX_CLUSTERS} levels), e.g. --cluster 16"
            )
        if self.cluster is not None and self.qat:
            raise UserError(
                "--cluster and --qat cannot be combined: quantization-aware fine-tuning moves the weights off "
                "their shared values; export --cluster K --int8 (post-training int8 keeps them)"
            )
        if self.low_rank is not None and not 0.0 <= self.low_rank <= 100.0:
            raise UserError(
                f"--low-rank {self.low_rank:g}: give the accuracy points the factorisation may cost, "
                f"in [0, 100], e.g. --low-rank 1"
            )
        if self.finetune_epochs < 1:
            raise UserError("--finetune-epochs must be at least 1")


@dataclass
class Compressed:
    model: object  # the Keras model to convert
    done: dict  # what was done to it (recorded in the exported file's metadata)
    before_qat: object  # the model QAT started from: export converts it too and keeps the better on validation
    data: object  # the DistillationData it was fine-tuned with (validation windows for that choice)


def compress(
    student, run_dir: Path, run: dict, options: CompressionOptions, log=print, progress: bool = True
) -> Compressed:
    """`progress`: a live line per fine-tuning (distill/progress.py) besides the `log` lines."""
    from edgekd.compress.finetune import load_distillation_data

    data = load_distillation_data(run_dir, run, options.data, log=log)
    seed = run["config"].get("seed", 0) if options.seed is None else options.seed
    model, done, masks, before_qat = student, {}, None, None
    if options.low_rank is not None:
        model, done["low_rank"] = _low_rank(model, data, options, seed, log, progress)
    if options.prune is not None:
        from edgekd.compress.prune import kernel_masks, prune

        log(f"pruning to {options.prune:.0%} sparsity over {options.finetune_epochs} KD fine-tuning epochs")
        result = prune(model, data, options.prune, options.finetune_epochs, seed=seed, verbose=int(progress))
        model, masks = result.model, kernel_masks(result.model)
        done["prune"] = {
            "sparsity": options.prune,
            "measured": round(result.sparsity, 4),
            "per_layer": {k: round(v, 4) for k, v in result.per_layer.items()},
            "val_accuracy": result.val_accuracy,
        }
    if options.cluster is not None:
        from edgekd.compress.cluster import cluster

        log(
            f"clustering each kernel to {options.cluster} shared values over {options.finetune_epochs} KD fine-tuning "
            f"epochs" + (", keeping the pruned zeros" if masks else "")
        )
        result = cluster(
            model,
            data,
            options.cluster,
            options.finetune_epochs,
            preserve_sparsity=masks is not None,
            seed=seed,
            verbose=int(progress),
        )
        model = result.model
        done["cluster"] = {
            "clusters": options.cluster,
            "distinct": result.distinct,
            "val_accuracy": result.val_accuracy,
        }
    if options.qat:
        from edgekd.compress.prune import KeepZeros
        from edgekd.compress.qat import quantization_aware

        before_qat = model
        log(
            f"quantization-aware fine-tuning, {options.finetune_epochs} KD epochs"
            + (", keeping the pruned zeros" if masks else "")
        )
        result = quantization_aware(
            model,
            data,
            options.finetune_epochs,
            callbacks=[KeepZeros(masks)] if masks else (),
            seed=seed,
            verbose=int(progress),
        )
        for name, why in result.not_covered.items():
            log(f"  not quantization-aware: {name} ({why})")
        model = result.model
        done["qat"] = {"covered": result.covered, "calibrated": sorted(result.not_covered)}
    return Compressed(model, done, before_qat, data)


def _low_rank(student, data, options: CompressionOptions, seed: int, log, progress: bool) -> tuple[object, dict]:
    from edgekd.compress.finetune import finetune
    from edgekd.compress.low_rank import choose_fraction
    from edgekd.models.build import count_params

    log(
        f"low rank: the smallest rank within {options.low_rank:g} points of validation accuracy after "
        f"{options.finetune_epochs} KD fine-tuning epochs"
    )
    fraction, model, tried = choose_fraction(
        student,
        data.val_x,
        data.val_y,
        options.low_rank / 100.0,
        tune=lambda m: finetune(m, data, options.finetune_epochs, seed=seed, verbose=int(progress), label="low rank"),
    )
    for t in tried:
        log(
            f"  rank fraction {t['fraction']:g}: {t['params']:,} params, validation accuracy {t['val_accuracy']:.1%} "
            f"(unfactorised {t['baseline_accuracy']:.1%})"
        )
    if fraction is None:
        measured = ", ".join(f"{t['fraction']:g}: {t['val_accuracy']:.1%}" for t in tried)
        raise UserError(
            f"--low-rank {options.low_rank:g}: every rank tried costs more than {options.low_rank:g} points of "
            f"validation accuracy after fine-tuning ({measured}); allow a larger budget or export without --low-rank"
        )
    chosen = tried[-1]
    return model, {
        "fraction": fraction,
        "budget_points": options.low_rank,
        "params_before": count_params(student),
        "params_after": chosen["params"],
        "val_accuracy": chosen["val_accuracy"],
        "tried": tried,
    }
