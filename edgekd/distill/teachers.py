"""Where the teachers' diversity comes from: one function per `--teachers-from` mode, in STRATEGIES.

    bootstrap   (default, the original behaviour) each teacher on a bootstrap resample of the training
                windows, from its own initialisation seed (one teacher: all windows)
    seeds       each teacher on all training windows, from its own initialisation seed
    subsets     each teacher on a random subset of the training windows without replacement, its
                fraction drawn uniformly from [--subset-min, 1]
    snapshots   one training run with a cosine-annealed learning rate restarted every epochs // teachers
                epochs; the weights at the end of each cycle are a teacher (one training's cost)
    modalities  one expert per sensor kind (each stream split by channel-name prefix: emg, acc, gyr), trained
                on that group's channels only; --teachers is ignored

Every function returns an Ensemble: the trained teachers, each with the channel indices it reads (None:
all), and `details`, what run.json and the report record about how they were made. A modalities teacher's
model takes only its channels (input width = the group's size); run.json's "teachers" block stores the
indices, and every consumer (distill's own inference, compression fine-tuning) slices windows with them.

TensorFlow is imported inside the functions: DistillConfig.check (which takes its choices from STRATEGIES) and
channel_groups run before it loads.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field

import numpy as np

from edgekd.errors import UserError


@dataclass
class Teacher:
    model: object
    fit: object  # edgekd.distill.train.FitResult
    channels: list[int] | None = None  # input channels it reads; None: all of them


@dataclass
class Ensemble:
    teachers: list[Teacher]
    details: dict = field(default_factory=dict)


@dataclass
class TeacherJob:
    """What every strategy needs: the config, the data, and how to fit."""

    cfg: object  # DistillConfig
    preset: object
    train: object  # Windows with .x, .y
    val: object
    n_classes: int
    window_len: int
    channels: int
    streams: tuple  # StreamSpec, in the order their channels are stacked
    fit_args: dict
    log: object
    augmentation: object = None  # distill/augment.py's Augmentation, or None: teachers train on clean windows

    def hard(self, y: np.ndarray) -> np.ndarray:
        from edgekd.distill.losses import pack_targets

        return pack_targets(y, np.eye(self.n_classes, dtype=np.float32)[y])

    def build(self, i: int, channels: int | None = None):
        from edgekd.models.build import build_model

        return build_model(
            self.preset,
            self.window_len,
            channels or self.channels,
            self.n_classes,
            seed=self.cfg.seed + 1000 * (i + 1),
            name=f"teacher_{i}",
        )

    def fit_on(self, model, rows: np.ndarray | None, seed: int, channels: list[int] | None = None, **extra):
        from edgekd.distill.augment import augmented
        from edgekd.distill.train import fit

        x, y, val_x = self.train.x, self.train.y, self.val.x
        if rows is not None:
            x, y = x[rows], y[rows]
        if channels is not None:
            x, val_x = x[..., channels], val_x[..., channels]
        return fit(
            augmented(model, self.augmentation),
            x,
            self.hard(y),
            val_x,
            self.hard(self.val.y),
            alpha=1.0,
            seed=seed,
            **{**self.fit_args, **extra},
        )


def channel_groups(streams) -> list[tuple[str, list[int]]]:
    """[(group name, channel indices)] for `modalities`: one group per sensor kind. Each stream is split by
    channel-name prefix (the leading letters: acc0_x, gyr0_x -> acc, gyr), so sEMG + IMU data gives an sEMG, an
    accelerometer and a gyroscope expert; a stream whose channels share one prefix stays one group, named after
    the stream. UserError if that gives one group in all."""
    groups, offset = [], 0
    for stream in streams:
        by_prefix: dict[str, list[int]] = {}
        for i, channel in enumerate(stream.channels, offset):
            match = re.match(r"[A-Za-z]+", channel)
            by_prefix.setdefault(match.group().lower() if match else channel, []).append(i)
        offset += len(stream.channels)
        if len(by_prefix) <= 1:
            groups.append((stream.name, next(iter(by_prefix.values()), [])))
        else:
            groups += [
                (prefix if len(streams) == 1 else f"{stream.name}/{prefix}", indices)
                for prefix, indices in by_prefix.items()
            ]
    if len(groups) == 1:
        name = streams[0].name
        raise UserError(
            f"--teachers-from modalities needs more than one stream, or channel names with more than one "
            f"prefix to group them by; this dataset has the one stream '{name}' whose channels all start "
            f"with the same letters. Use another --teachers-from mode"
        )
    empty = [name for name, indices in groups if not indices]
    if empty:
        raise UserError(
            f"--teachers-from modalities: stream(s) {', '.join(empty)} have no channels, so their expert would see "
            "nothing"
        )
    return groups


def from_bootstrap(job: TeacherJob) -> Ensemble:
    rng = np.random.default_rng(job.cfg.seed)
    n, k = len(job.train.y), job.cfg.teachers
    teachers = []
    for i in range(k):
        rows = rng.integers(0, n, n) if k > 1 else np.arange(n)
        model = job.build(i)
        label = f"teacher {i + 1}/{k} ({job.preset.name}, bootstrap resample)"
        teachers.append(Teacher(model, job.fit_on(model, rows, seed=job.cfg.seed + i, label=label)))
    return Ensemble(teachers)


def from_seeds(job: TeacherJob) -> Ensemble:
    k = job.cfg.teachers
    teachers = []
    for i in range(k):
        model = job.build(i)
        label = f"teacher {i + 1}/{k} ({job.preset.name}, all windows, seed {job.cfg.seed + 1000 * (i + 1)})"
        teachers.append(Teacher(model, job.fit_on(model, None, seed=job.cfg.seed + i, label=label)))
    return Ensemble(teachers)


def from_subsets(job: TeacherJob) -> Ensemble:
    rng = np.random.default_rng(job.cfg.seed)
    n, k = len(job.train.y), job.cfg.teachers
    teachers, fractions = [], []
    for i in range(k):
        fraction = float(rng.uniform(job.cfg.subset_min, 1.0))
        rows = np.sort(rng.choice(n, max(1, round(fraction * n)), replace=False))
        fractions.append(round(fraction, 4))
        model = job.build(i)
        label = f"teacher {i + 1}/{k} ({job.preset.name}, {len(rows)} of {n} windows, {fraction:.0%})"
        teachers.append(Teacher(model, job.fit_on(model, rows, seed=job.cfg.seed + i, label=label)))
    return Ensemble(teachers, {"subset_fractions": fractions})


def cyclic_cosine(learning_rate: float, epochs_per_cycle: int):
    """Epoch -> learning rate: cosine annealing from learning_rate towards 0 within each cycle, then a restart."""

    def schedule(epoch: int, lr=None) -> float:
        t = (epoch % epochs_per_cycle) / epochs_per_cycle
        return float(0.5 * learning_rate * (1.0 + math.cos(math.pi * t)))

    return schedule


def from_snapshots(job: TeacherJob) -> Ensemble:
    from edgekd._tf import keras
    from edgekd.distill.train import FitResult

    k = job.cfg.teachers
    per_cycle = max(1, job.cfg.epochs // k)

    class Snapshots(keras.callbacks.Callback):
        def on_train_begin(self, logs=None):
            self.taken = []  # (epoch, weights, val accuracy)

        def on_epoch_end(self, epoch, logs=None):
            if (epoch + 1) % per_cycle == 0:
                self.taken.append(
                    (epoch + 1, self.model.get_weights(), float((logs or {}).get("val_accuracy", float("nan"))))
                )

    model, snapshots = job.build(0), Snapshots()
    # The cycles are this run's schedule, whatever --lr-schedule says.
    run = job.fit_on(
        model,
        None,
        seed=job.cfg.seed,
        epochs=per_cycle * k,
        early_stopping=False,
        schedule="constant",
        label=f"{k} snapshot teachers ({job.preset.name}, {k} cosine cycles of {per_cycle} epochs)",
        callbacks=[keras.callbacks.LearningRateScheduler(cyclic_cosine(job.cfg.learning_rate, per_cycle)), snapshots],
    )
    teachers = []
    for i, (epoch, weights, val_accuracy) in enumerate(snapshots.taken):
        teacher = job.build(i)  # same architecture; the initialisation is overwritten
        teacher.set_weights(weights)
        teachers.append(Teacher(teacher, FitResult(epoch, epoch, val_accuracy, run.epoch_seconds[:epoch])))
    return Ensemble(teachers, {"epochs_per_cycle": per_cycle, "snapshot_epochs": [t.fit.epochs_run for t in teachers]})


def from_modalities(job: TeacherJob) -> Ensemble:
    groups = channel_groups(job.streams)
    if job.cfg.teachers != len(groups):
        job.log(
            f"--teachers-from modalities: one expert per group ({', '.join(g for g, _ in groups)}), "
            f"so {len(groups)} teachers; --teachers {job.cfg.teachers} is ignored"
        )
    teachers = []
    for i, (name, channels) in enumerate(groups):
        model = job.build(i, channels=len(channels))
        label = f"teacher {i + 1}/{len(groups)} ({job.preset.name}, {name}: {len(channels)} channels)"
        teachers.append(
            Teacher(model, job.fit_on(model, None, seed=job.cfg.seed + i, channels=channels, label=label), channels)
        )
    return Ensemble(teachers, {"groups": [name for name, _ in groups]})


STRATEGIES = {
    "bootstrap": from_bootstrap,
    "seeds": from_seeds,
    "subsets": from_subsets,
    "snapshots": from_snapshots,
    "modalities": from_modalities,
}


def teacher_input(x: np.ndarray, channels: list[int] | None) -> np.ndarray:
    """The windows a teacher reads: all channels, or its group's (run.json's teachers.channels[i])."""
    return x if channels is None else x[..., channels]
