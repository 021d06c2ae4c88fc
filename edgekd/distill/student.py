"""How a student trains: the training model around it, and what is kept of that model afterwards.

Most objectives train the student itself. Two need more outputs than the logits while training, so the student
trains inside a wider model that shares its layers:

    --fusion multi-head   k Dense heads on the student's penultimate features, head i distilled from teacher i.
                          Afterwards the heads fold into the student's own logits layer: the mean of k affine maps
                          is the affine map with the mean kernel and the mean bias, so the exported student has one
                          output, equal to the mean of the heads' logits, at the cost of a single head.
    --loss hint           one Dense projection of the student's penultimate features to every teacher's
                          penultimate features (their widths side by side), compared by cosine; the projection
                          only serves training and is dropped.

The penultimate features are the input of the layer named "logits" (models/build.py names it), for teachers and
students alike. The scratch student and the response-KD modes use `Objective()`: the student as it is.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from edgekd._tf import keras


@dataclass(frozen=True)
class Objective:
    heads: int = 1  # student heads, one per teacher for --fusion multi-head
    hint_dims: tuple[int, ...] = ()  # each teacher's feature width for --loss hint; () without hints
    hint_weight: float = 1.0


def training_model(student: keras.Model, objective: Objective) -> keras.Model:
    if objective.heads == 1 and not objective.hint_dims:
        return student
    features = student.get_layer("logits").input
    n_classes = student.output_shape[-1]
    if objective.heads > 1:
        outputs = [keras.layers.Dense(n_classes, name=f"head_{i}")(features) for i in range(objective.heads)]
    else:
        outputs = [student.output]
    if objective.hint_dims:
        outputs.append(keras.layers.Dense(int(sum(objective.hint_dims)), name="hint_projection")(features))
    return keras.Model(
        student.inputs, keras.layers.Concatenate(name="training_outputs")(outputs), name=f"{student.name}_training"
    )


def finish(student: keras.Model, trainer: keras.Model, objective: Objective) -> None:
    """Multi-head: the student's logits layer becomes the mean of the heads (exactly: the heads are affine)."""
    if objective.heads > 1:
        heads = [trainer.get_layer(f"head_{i}").get_weights() for i in range(objective.heads)]
        student.get_layer("logits").set_weights(
            [np.mean([kernel for kernel, _ in heads], axis=0), np.mean([bias for _, bias in heads], axis=0)]
        )


def train_student(
    preset,
    window_len: int,
    channels: int,
    n_classes: int,
    train_x,
    train_packed,
    val_x,
    val_packed,
    *,
    objective: Objective,
    alpha: float,
    seed: int,
    name: str,
    fit_args: dict,
    augmentation=None,
    mixup: float = 0.0,
    online=None,
):
    """(student, FitResult): a student of `preset` trained against packed targets (distill/losses.py's layout).
    `augmentation` (distill/augment.py): random gain and noise on the training windows, None for none; a preset that
    starts with spatial_dropout adds its input-channel dropout to it (the saved student has no dropout layer).
    `mixup`, `online` (distill/consistent.py): windows mixed in the training step, and the teachers that compute the
    KD targets there. A KD student (alpha < 1) whose windows change in the step gets its targets from `online`, never
    from targets computed on windows it does not see; the scratch student (alpha = 1) learns its labels."""
    from dataclasses import replace

    from edgekd.distill.augment import Augmentation, augmented
    from edgekd.distill.consistent import ConsistentTrainer
    from edgekd.distill.train import fit
    from edgekd.models.build import build_model
    from edgekd.models.presets import split_input_dropout

    channel_drop, preset = split_input_dropout(preset)
    augmentation = replace(augmentation or Augmentation(), channel_drop=channel_drop)
    student = build_model(preset, window_len, channels, n_classes, seed=seed, name=name)
    trainer = training_model(student, objective)
    windows_change = augmentation.active or mixup > 0
    if alpha < 1 and windows_change and online is None:
        raise ValueError("a KD student whose windows change in training needs the teachers in the step (online)")
    online = online if alpha < 1 and windows_change else None
    if mixup > 0 or online is not None:
        model = ConsistentTrainer(trainer, n_classes, online, augmentation, mixup)
    else:
        model = augmented(trainer, augmentation)
    fitted = fit(
        model, train_x, train_packed, val_x, val_packed, alpha=alpha, seed=seed, objective=objective, **fit_args
    )
    finish(student, trainer, objective)
    return student, fitted
