"""Training-time augmentation of the input windows: `edgekd distill --augment-gain G --augment-noise N [--augment-teachers]`.

Each training batch, every window gets its own random gain per channel, exp(N(0, G^2)) (electrode contact and
amplifier gain differ between people and sessions), and additive Gaussian noise of standard deviation N, both in
the z-scored units the model sees. Held-out subjects differ from the training subjects in such ways, and the
students overfit their few training subjects (on isl50, benchmarks/RESULTS.md METHODS: augmentation's row).

The layer sits in front of the student only in the training model (as the hint projection does in
distill/student.py): at inference it is the identity, and the saved and exported student never contains it.
The soft targets stay those of the clean windows. Scratch and KD students both get it, so the scratch row stays
the fair baseline. Teachers train without it unless `--augment-teachers` (distill/teachers.py's TeacherJob.fit_on);
their soft targets are still computed on the clean windows.
"""
from __future__ import annotations

from dataclasses import dataclass

from edgekd._tf import keras, tf


@dataclass(frozen=True)
class Augmentation:
    gain_sd: float = 0.0  # sd of the log gain per window and channel
    noise_sd: float = 0.0  # sd of the additive noise, z-scored units

    @property
    def active(self) -> bool:
        return self.gain_sd > 0 or self.noise_sd > 0


class WindowAugmentation(keras.layers.Layer):
    """(batch, time, channels) -> the same, randomly scaled per window and channel and noised; training only."""

    def __init__(self, gain_sd: float, noise_sd: float, **kwargs):
        super().__init__(**kwargs)
        self.gain_sd, self.noise_sd = float(gain_sd), float(noise_sd)

    def call(self, x, training=None):
        if not training:
            return x
        if self.gain_sd > 0:
            shape = tf.stack([tf.shape(x)[0], 1, tf.shape(x)[2]])
            x = x * tf.exp(tf.random.normal(shape, stddev=self.gain_sd))
        if self.noise_sd > 0:
            x = x + tf.random.normal(tf.shape(x), stddev=self.noise_sd)
        return x

    def get_config(self):
        return {**super().get_config(), "gain_sd": self.gain_sd, "noise_sd": self.noise_sd}


def augmented(trainer: keras.Model, augmentation: Augmentation | None) -> keras.Model:
    """`trainer` behind the augmentation layer (sharing its weights), or `trainer` itself when there is none."""
    if augmentation is None or not augmentation.active:
        return trainer
    window = keras.Input(shape=trainer.input_shape[1:], name="window")
    noisy = WindowAugmentation(augmentation.gain_sd, augmentation.noise_sd, name="augmentation")(window)
    return keras.Model(window, trainer(noisy), name=f"{trainer.name}_augmented")
