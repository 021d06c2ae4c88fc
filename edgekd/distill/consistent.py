"""Targets that describe the windows the student sees: the KD step whenever the student's windows change in training.

Without augmentation the soft targets are computed once, on the clean training windows, before the student trains.
When the training step changes the student's windows (`--augment-gain`, `--augment-noise`, the input-channel dropout
of a student preset, `--mixup A`), targets computed before training describe windows the student never sees, so the
teachers run inside every training step, on exactly the windows the student sees, augmented (distill/augment.py) and
mixed. The student then matches the ensemble's function off the training windows too (between classes, under the
gain and noise changes that separate people), which is where a held-out subject's windows lie: "function matching"
(Beyer et al., CVPR 2022, "Knowledge distillation: a good teacher is patient and consistent").

`--mixup A` mixes each training window with another of its batch, x = l * x_i + (1 - l) * x_j with
l ~ Beta(A, A) per window. The labels of the cross-entropy term mix alike. The scratch student trains through the
same step without teachers, so it gets the same augmentation and mixup and stays the fair baseline. Validation
uses the clean windows and the precomputed targets.

Every fusion of distill/fusion.py runs inside the step (fuse_in_step, checked against the numpy functions), as do
the hint features and the LDA teacher (models/hybrid.py's LDA as a Keras model of the window). Cost: one forward
pass of every teacher per training batch.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from edgekd._tf import keras, tf
from edgekd.distill.augment import Augmentation, WindowAugmentation
from edgekd.distill.fusion import accuracy_weights


@dataclass(frozen=True)
class OnlineTeachers:
    """The frozen teachers and how their outputs become the target, evaluated in the training step."""

    models: tuple  # keras.Model each
    channels: tuple  # per teacher, the input channels it reads (None: all)
    weights: tuple  # per teacher, summing to 1 (mean: uniform; weighted: by validation accuracy)
    temperature: float
    kind: str  # "probabilities" for --loss kl, "logits" for --loss mse (distill/fusion.py's kinds)
    fusion: str = "mean"  # a key of distill/fusion.py's FUSIONS, computed here in TensorFlow
    # Per teacher, True where its model gives decision values whose log-softmax is its logits (the LDA).
    log_posterior: tuple = ()
    features: tuple = ()  # --loss hint: per teacher, the model of its penultimate features


def fuse_in_step(logits: list, fusion: str, temperature: float, kind: str, weights: tuple):
    """distill/fusion.py's fusions in TensorFlow, on a batch: the same targets the numpy functions compute before
    training (tests/test_consistent.py checks every one against them)."""
    soft = [tf.nn.softmax(z / temperature) for z in logits]
    contribution = soft if kind == "probabilities" else logits
    if fusion in ("mean", "weighted"):
        return tf.add_n([w * c for w, c in zip(weights, contribution)])
    if fusion == "confidence":
        confidence = tf.stack([tf.reduce_max(p, axis=-1) for p in soft], axis=1)  # batch x k
        confidence = confidence / tf.reduce_sum(confidence, axis=1, keepdims=True)
        return tf.add_n([confidence[:, i : i + 1] * c for i, c in enumerate(contribution)])
    if fusion == "vote":
        n_classes = logits[0].shape[-1]
        votes = tf.add_n([tf.one_hot(tf.argmax(z, axis=-1), n_classes) for z in logits])
        mean = tf.add_n(soft) / len(soft)
        tied = tf.equal(votes, tf.reduce_max(votes, axis=1, keepdims=True))
        return tf.one_hot(tf.argmax(tf.where(tied, mean, -tf.ones_like(mean)), axis=-1), n_classes)
    if fusion in ("loss-mean", "multi-head"):
        return tf.concat(contribution, axis=1)  # one block per teacher, as pack_targets lays them
    raise ValueError(f"unknown fusion {fusion!r}")


class ConsistentTrainer(keras.Model):
    """Trains `trainer` (the student's training model) on windows augmented and mixed in the training step,
    against targets computed on those windows (`teachers`) or mixed alike (None). Calling it is calling
    `trainer`: validation and inference see the clean windows."""

    def __init__(
        self,
        trainer: keras.Model,
        n_classes: int,
        teachers: OnlineTeachers | None,
        augmentation: Augmentation | None,
        mixup: float,
        **kwargs,
    ):
        super().__init__(name=f"{trainer.name}_consistent", **kwargs)
        self.trainer, self.n_classes, self.mixup = trainer, int(n_classes), float(mixup)
        # Kept in a plain dataclass, not as Keras attributes: the teachers' weights stay out of this model's
        # weights (which early stopping copies every better epoch), and only the student's variables get gradients.
        self.online = teachers
        active = augmentation is not None and augmentation.active
        self.augmentation = (
            WindowAugmentation(augmentation.gain_sd, augmentation.noise_sd, augmentation.channel_drop)
            if active
            else None
        )

    def call(self, x, training=None):
        return self.trainer(x, training=training)

    def _mix(self, x, packed):
        """Each window mixed with a random partner of the batch, share ~ Beta(a, a); its packed targets alike."""
        batch = tf.shape(x)[0]
        # Beta(a, a) from two Gamma(a) draws: TensorFlow has no Beta sampler.
        g1, g2 = tf.random.gamma([batch], self.mixup), tf.random.gamma([batch], self.mixup)
        share = g1 / (g1 + g2)
        partner = tf.random.shuffle(tf.range(batch))
        mixed_x = share[:, None, None] * x + (1.0 - share[:, None, None]) * tf.gather(x, partner)
        mixed_targets = share[:, None] * packed + (1.0 - share[:, None]) * tf.gather(packed, partner)
        return mixed_x, mixed_targets

    def _targets(self, x):
        online = self.online
        logits, features = [], []
        for i, (model, channels) in enumerate(zip(online.models, online.channels)):
            seen = x if channels is None else tf.gather(x, list(channels), axis=-1)
            z = model(seen, training=False)
            if (
                online.log_posterior and online.log_posterior[i]
            ):  # the LDA teacher's logits are its floored log posteriors
                z = tf.maximum(tf.nn.log_softmax(z), -1e4)
            logits.append(z)
            if online.features and online.features[i] is not None:
                features.append(online.features[i](seen, training=False))
        targets = fuse_in_step(logits, online.fusion, online.temperature, online.kind, online.weights)
        return tf.concat([targets, *features], axis=1) if features else targets

    def train_step(self, data):
        x, packed = data
        x = tf.convert_to_tensor(x, tf.float32)
        packed = tf.convert_to_tensor(packed, tf.float32)
        if self.augmentation is not None:
            x = self.augmentation(x, training=True)
        if self.mixup > 0:
            # Without teachers in the step the precomputed targets mix as the windows do (labels, soft targets).
            x, packed = self._mix(x, packed)
        if self.online is not None:
            packed = tf.concat([packed[:, : self.n_classes], tf.stop_gradient(self._targets(x))], axis=1)
        with tf.GradientTape() as tape:
            y_pred = self.trainer(x, training=True)
            loss = self.compiled_loss(packed, y_pred, regularization_losses=self.trainer.losses)
        variables = self.trainer.trainable_variables
        self.optimizer.apply_gradients(zip(tape.gradient(loss, variables), variables))
        self.compiled_metrics.update_state(packed, y_pred)
        return {m.name: m.result() for m in self.metrics}


def online_teachers(
    teachers, fusion: str, loss: str, temperature: float, val_accuracy: np.ndarray, classical=None
) -> OnlineTeachers:
    """`teachers`: objects with .model and .channels (distill/teachers.py's Teacher, distill/replay.py's RunTeacher);
    `fusion`: a key of FUSIONS; `classical`: the LDA teacher as a Keras model of the window (models/hybrid.lda_branch),
    which joins last, as it does in the precomputed targets; `val_accuracy` covers every teacher, the LDA's included."""
    from edgekd.models.build import penultimate

    models = [t.model for t in teachers] + ([classical] if classical is not None else [])
    channels = [t.channels for t in teachers] + ([None] if classical is not None else [])
    k = len(models)
    weights = accuracy_weights(val_accuracy) if fusion == "weighted" else np.full(k, 1.0 / k)
    features = tuple(penultimate(t.model) for t in teachers) if loss == "hint" else ()
    return OnlineTeachers(
        tuple(models),
        tuple(channels),
        tuple(float(w) for w in weights),
        float(temperature),
        "logits" if loss == "mse" else "probabilities",
        fusion,
        tuple([False] * len(teachers) + ([True] if classical is not None else [])),
        features,
    )
