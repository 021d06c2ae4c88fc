"""Fine-tune a compressed student with the distillation loss of the run it came from.

Pruning, quantization-aware training and low-rank factorisation each perturb the student; each is followed
by a few epochs of the same KD loss, against the same teachers' soft targets, as `edgekd distill` used, on the
training and validation windows distill/replay.py rebuilds from the run.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from edgekd.distill.replay import dataset_path_of, load_run_data

# Fine-tuning starts from a trained student: a smaller step than training from scratch keeps it near its optimum.
FINETUNE_LR_FACTOR = 0.25


@dataclass
class DistillationData:
    """Training and validation windows with packed targets ([one-hot | ensemble soft targets]), as in distill."""

    train_x: np.ndarray
    train_targets: np.ndarray
    val_x: np.ndarray
    val_y: np.ndarray
    val_targets: np.ndarray
    n_classes: int
    temperature: float
    alpha: float
    batch_size: int
    learning_rate: float
    kd_term: str = "kl"  # the run's --loss

    @property
    def steps_per_epoch(self) -> int:
        return -(-len(self.train_x) // self.batch_size)


def load_distillation_data(
    run_dir: str | Path, run: dict, data: str | Path | None = None, log=print
) -> DistillationData:
    run_dir = Path(run_dir)
    dataset_path = dataset_path_of(run_dir, run, data, "fine-tuning needs its training windows")
    key = (str(run_dir.resolve()), str(dataset_path.resolve()), (run_dir / "run.json").stat().st_mtime_ns)
    if key not in _loaded:  # one export loads once; a benchmark exporting many variants of a run, once per run
        _loaded.clear()
        _loaded[key] = _load(run_dir, run, dataset_path, log)
    return _loaded[key]


_loaded: dict[tuple, DistillationData] = {}


def _load(run_dir: Path, run: dict, dataset_path: Path, log) -> DistillationData:
    from edgekd.distill.fusion import distillation_targets
    from edgekd.distill.losses import pack_targets

    replayed = load_run_data(run_dir, run, dataset_path, parts=("train", "val"))
    parts, cfg = replayed.parts, run["config"]
    log(
        f"fine-tuning data: {len(parts['train'].y)} training and {len(parts['val'].y)} validation windows, "
        f"soft targets of {len(replayed.target_logits['train'])} teachers at T={cfg['temperature']:g}"
    )
    # The run's own fusion and loss (runs from before --fusion/--loss existed used mean and KL). The exported
    # student has no training-only outputs: a multi-head run's folded student fine-tunes on the mean of the
    # per-teacher terms (its heads' targets), and a hint run's on the KL response term without the hints.
    fusion, loss = cfg.get("fusion", "mean"), cfg.get("loss", "kl")
    kd_term = "mse" if loss == "mse" else "kl"
    fused = distillation_targets(replayed.target_logits, parts["val"].y, fusion, kd_term, cfg["temperature"])
    targets = {part: pack_targets(parts[part].y, fused[part]) for part in parts}
    return DistillationData(
        train_x=parts["train"].x,
        train_targets=targets["train"],
        val_x=parts["val"].x,
        val_y=parts["val"].y,
        val_targets=targets["val"],
        n_classes=replayed.n_classes,
        temperature=cfg["temperature"],
        alpha=cfg["alpha"],
        batch_size=(run.get("training") or {}).get("batch_size") or cfg["batch_size"] or 32,
        learning_rate=cfg["learning_rate"] * FINETUNE_LR_FACTOR,
        kd_term=kd_term,
    )


def finetune(
    model,
    data: DistillationData,
    epochs: int,
    callbacks=(),
    seed: int = 0,
    verbose: int = 0,
    best_from_epoch: int = 0,
    label: str = "fine-tuning",
) -> float:
    """A fixed number of KD epochs, then the weights of the epoch with the best validation accuracy (ties: the lower
    validation loss) from `best_from_epoch` on (pruning passes the epoch its schedule reaches full sparsity: earlier
    weights are less sparse). Returns that validation accuracy. `verbose`: a progress line named `label` and a summary
    line, as distill's (distill/progress.py)."""
    from edgekd._tf import keras
    from edgekd.distill.losses import kd_loss, packed_accuracy
    from edgekd.distill.progress import EpochProgress
    from edgekd.distill.train import KeepBest

    model.compile(
        optimizer=keras.optimizers.Adam(data.learning_rate),
        loss=kd_loss(data.n_classes, data.temperature, data.alpha, data.kd_term),
        metrics=[packed_accuracy(data.n_classes)],
    )
    keep_best = KeepBest(patience=epochs, start_from_epoch=min(best_from_epoch, epochs - 1))
    keras.utils.set_random_seed(seed)
    progress = [EpochProgress(label, epochs)] if verbose else []
    model.fit(
        data.train_x,
        data.train_targets,
        validation_data=(data.val_x, data.val_targets),
        epochs=epochs,
        batch_size=data.batch_size,
        shuffle=True,
        callbacks=[*callbacks, keep_best, *progress],
        verbose=0,
    )
    for line in progress:
        line.summary(epochs, keep_best.best_epoch + 1, keep_best.best[0])
    return keep_best.best[0]


def clone_with_weights(model):
    """A copy that shares no layers or variables with `model` (tfmot wrappers otherwise modify the original)."""
    from edgekd._tf import keras

    copy = keras.models.clone_model(model)
    copy.set_weights(model.get_weights())
    return copy
