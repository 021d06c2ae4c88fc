"""Training-time augmentation of the input windows (`edgekd distill --augment-gain G --augment-noise N
[--augment-teachers]`), and the input-channel dropout of a student preset.

Each training batch, every window gets its own random gain per channel, exp(N(0, G^2)) (electrode contact and
amplifier gain differ between people and sessions), and additive Gaussian noise of standard deviation N, both in
the z-scored units the model sees; then, if the student's preset starts with `spatial_dropout`, whole channels are
zeroed with that rate and the others scaled by 1 / (1 - rate), as Keras' SpatialDropout1D does.

A KD student learns from targets that must describe the windows it sees. A window whose channels were dropped or
scaled is not the window the teachers scored before training, so whenever the student's windows change in the
training step, the teachers score the changed windows in that step (distill/consistent.py). Precomputed clean-window
targets under a student's input-channel dropout were the defect docs/distillation-for-people.md describes: on myo22
the KD student agreed with its ensemble on 88% of its own training windows, the scratch student on 95%
(benchmarks/RESULTS.md, PEOPLE).

The layer sits in front of the student only in the training model (as the hint projection does in
distill/student.py): at inference it is the identity, and the saved and exported student never contains it.
Scratch and KD students both get it, so the scratch row stays the fair baseline. Teachers train without gain and
noise unless `--augment-teachers` (distill/teachers.py's TeacherJob.fit_on); their presets keep their own dropout.
"""

from __future__ import annotations

from dataclasses import dataclass

from edgekd._tf import keras, tf


@dataclass(frozen=True)
class Augmentation:
    gain_sd: float = 0.0  # sd of the log gain per window and channel
    noise_sd: float = 0.0  # sd of the additive noise, z-scored units
    channel_drop: float = 0.0  # share of whole input channels zeroed per window (a student preset's spatial_dropout)

    @property
    def active(self) -> bool:
        return self.gain_sd > 0 or self.noise_sd > 0 or self.channel_drop > 0


class WindowAugmentation(keras.layers.Layer):
    """(batch, time, channels) -> the same, randomly scaled per window and channel, noised and with whole channels
    dropped; training only."""

    def __init__(self, gain_sd: float, noise_sd: float, channel_drop: float = 0.0, **kwargs):
        super().__init__(**kwargs)
        self.gain_sd, self.noise_sd, self.channel_drop = float(gain_sd), float(noise_sd), float(channel_drop)

    def call(self, x, training=None):
        if not training:
            return x
        per_channel = tf.stack([tf.shape(x)[0], 1, tf.shape(x)[2]])
        if self.gain_sd > 0:
            x = x * tf.exp(tf.random.normal(per_channel, stddev=self.gain_sd))
        if self.noise_sd > 0:
            x = x + tf.random.normal(tf.shape(x), stddev=self.noise_sd)
        if self.channel_drop > 0:
            kept = tf.cast(tf.random.uniform(per_channel) >= self.channel_drop, x.dtype)
            x = x * kept / (1.0 - self.channel_drop)
        return x

    def get_config(self):
        return {
            **super().get_config(),
            "gain_sd": self.gain_sd,
            "noise_sd": self.noise_sd,
            "channel_drop": self.channel_drop,
        }


def augmented(trainer: keras.Model, augmentation: Augmentation | None) -> keras.Model:
    """`trainer` behind the augmentation layer (sharing its weights), or `trainer` itself when there is none."""
    if augmentation is None or not augmentation.active:
        return trainer
    window = keras.Input(shape=trainer.input_shape[1:], name="window")
    noisy = WindowAugmentation(
        augmentation.gain_sd, augmentation.noise_sd, augmentation.channel_drop, name="augmentation"
    )(window)
    return keras.Model(window, trainer(noisy), name=f"{trainer.name}_augmented")
