"""The student with the classical baseline inside: `edgekd export --classical-branch lda`.

On a held-out subject the LDA on time-domain features (models/classical.py) and the distilled student are right on
different windows, so together they beat both (RESULTS.md METHODS, "+ LDA branch"). The hybrid runs both in one
graph and adds their logits, a product of the two experts' probabilities (Hinton, Neural Computation 14(8), 2002):

    lda_log_p = lda(features(x)) / T - max over classes            (the LDA's log-odds against its top class)
    logits    = student(x) + max(lda_log_p, -LDA_LOG_ODDS_FLOOR)

- features(x): the time-domain features of models/classical.py (MAV, RMS, WL, ZC, SSC, VAR per channel), computed by
  TimeDomainFeatures with TFLite builtin ops, then standardised with the training windows' mean and scale, so the
  .tflite needs nothing but the window: bench, stream and firmware_bridge run it like any student.
- lda: the LDA baseline (classical.lda()), fitted on the training windows' features; its decision values are the
  logits whose softmax is its posterior, so here it is one Dense layer with the LDA's coefficients.
- T: the LDA separates its training windows almost perfectly, so at T = 1 its posteriors are near one-hot and it
  would outvote the student everywhere. T is chosen on the validation windows (never on test) from TEMPERATURES:
  the highest validation accuracy of the hybrid, ties broken by the lower validation log-loss, as distill keeps
  epochs: the hybrid's accuracy is what is deployed, so it, not the LDA's own calibration, picks T.
- The branch is kept only if the hybrid's validation accuracy is above the student's alone. Where validation
  cannot tell them apart (myo5's repetition splits, where every model scores 100% on validation) the log-loss
  would favour the sharpest LDA, and on myo5's shifted-armband repetition that LDA scores 20%: without evidence
  for the branch, the student is exported alone.
- The floor bounds the LDA's veto on a class it rules out, and with it the output range that int8 must cover.

Training side (TensorFlow, scikit-learn): the device runs the converted graph, never this module.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np
from scipy.special import log_softmax

from edgekd._tf import keras, tf
from edgekd.models.classical import FEATURES, ZC_SSC_THRESHOLD, lda

LDA_LOG_ODDS_FLOOR = 20.0  # e^20: the LDA's say against a class never exceeds that factor
TEMPERATURES = (1.0, 1.5, 2.0, 3.0, 4.0, 6.0, 8.0, 12.0, 20.0, 30.0, 50.0, 100.0)
FEATURE_BATCH = 512
# What `edgekd export --int8` leaves in float32 (export/convert.py): the features, the LDA and its log-odds. Sample-
# to-sample differences of smooth channels fall below the int8 input's step, and counts flip at its rounding.
FLOAT_LAYERS = ("lda_branch", "lda_temperature", "lda_log_odds")


@keras.utils.register_keras_serializable(package="edgekd")
class TimeDomainFeatures(keras.layers.Layer):
    """(batch, length, channels) windows -> (batch, 6 * channels) standardised time-domain features.

    The same features as classical.time_domain_features (same formulas, columns feature-major in FEATURES order),
    in TensorFlow ops that convert to TFLite builtins; `mean` and `scale` standardise each column
    (lda_branch sets them from the scaler fitted with the LDA)."""

    def __init__(self, threshold: float = ZC_SSC_THRESHOLD, **kwargs):
        super().__init__(**kwargs)
        self.threshold = float(threshold)

    def build(self, input_shape):
        width = len(FEATURES) * int(input_shape[-1])
        self.mean = self.add_weight(name="mean", shape=(width,), initializer="zeros", trainable=False)
        self.scale = self.add_weight(name="scale", shape=(width,), initializer="ones", trainable=False)
        super().build(input_shape)

    def call(self, x):
        step = x[:, 1:] - x[:, :-1]
        large_enough = tf.abs(step) >= self.threshold
        crossing = tf.logical_and(x[:, :-1] * x[:, 1:] < 0, large_enough)
        rise_before, rise_after = step[:, :-1], step[:, 1:]
        turning = tf.logical_and(
            rise_before * -rise_after > 0, tf.logical_or(large_enough[:, :-1], large_enough[:, 1:])
        )

        def count(flags):
            return tf.reduce_sum(tf.cast(flags, x.dtype), axis=1)

        columns = {
            "mav": tf.reduce_mean(tf.abs(x), axis=1),
            "rms": tf.sqrt(tf.reduce_mean(tf.square(x), axis=1)),
            "wl": tf.reduce_sum(tf.abs(step), axis=1),
            "zc": count(crossing),
            "ssc": count(turning),
            "var": tf.reduce_mean(tf.square(x - tf.reduce_mean(x, axis=1, keepdims=True)), axis=1),
        }
        return (tf.concat([columns[name] for name in FEATURES], axis=1) - self.mean) / self.scale

    def get_config(self):
        return {**super().get_config(), "threshold": self.threshold}


@dataclass
class Branch:
    """A fitted LDA branch: window -> LDA decision values (logits at T = 1), and its calibration."""

    model: keras.Model
    temperature: float = 1.0
    kept: bool = True  # False: it did not raise the validation accuracy, and the student goes alone
    val_accuracy: float | None = None  # the hybrid's, at `temperature`
    student_val_accuracy: float | None = None
    float_layers: tuple[str, ...] = FLOAT_LAYERS  # the hybrid's layers that int8 export keeps in float32

    def describe(self) -> dict:
        return {
            "kind": "lda",
            "kept": self.kept,
            "features": list(FEATURES),
            "temperature": self.temperature,
            "log_odds_floor": LDA_LOG_ODDS_FLOOR,
            "val_accuracy": self.val_accuracy,
            "student_val_accuracy": self.student_val_accuracy,
            "float_layers": list(self.float_layers),
        }


def features_of(layer: TimeDomainFeatures, windows: np.ndarray) -> np.ndarray:
    return (
        np.concatenate([layer(windows[i : i + FEATURE_BATCH]).numpy() for i in range(0, len(windows), FEATURE_BATCH)])
        if len(windows)
        else np.zeros((0, layer.mean.shape[0]), np.float32)
    )


def lda_branch(train_x: np.ndarray, train_y: np.ndarray, n_classes: int) -> Branch:
    """The LDA baseline fitted on the training windows, as a Keras model of the window (decision values); T 1 until
    calibrated."""
    inputs = keras.Input(shape=train_x.shape[1:], name="window")
    features = TimeDomainFeatures(name="time_domain_features")
    decision = keras.layers.Dense(n_classes, name="lda")(features(inputs))
    model = keras.Model(inputs, decision, name="lda_branch")
    fitted = lda().fit(features_of(features, train_x), train_y)  # the layer's raw features: mean 0, scale 1 so far
    if list(fitted.classes_) != list(range(n_classes)):
        raise ValueError(f"the LDA branch saw classes {list(fitted.classes_)}, not 0..{n_classes - 1}")
    scaler, discriminant = fitted[0], fitted[-1]
    features.set_weights([scaler.mean_.astype(np.float32), scaler.scale_.astype(np.float32)])
    model.get_layer("lda").set_weights(
        [discriminant.coef_.T.astype(np.float32), discriminant.intercept_.astype(np.float32)]
    )
    return Branch(model)


def combined_logits(student_logits: np.ndarray, decision: np.ndarray, temperature: float) -> np.ndarray:
    """The hybrid's logits from its two parts' outputs, in numpy: what with_classical_branch's graph computes."""
    lda_log_p = decision / temperature
    lda_log_p = lda_log_p - lda_log_p.max(axis=1, keepdims=True)
    return student_logits + np.maximum(lda_log_p, -LDA_LOG_ODDS_FLOOR)


def choose_temperature(
    student_val_logits: np.ndarray, val_decision: np.ndarray, val_y: np.ndarray
) -> tuple[float, float, float]:
    """(T, the hybrid's validation accuracy at T, the student's alone): T as the module doc says. numpy only, so
    `edgekd distill` can report the hybrid from the baseline's own LDA (sklearn decision values) without building it."""
    student, decision = student_val_logits.astype(np.float64), val_decision.astype(np.float64)

    def score(temperature: float) -> tuple[float, float]:
        logits = combined_logits(student, decision, temperature)
        log_p = log_softmax(logits, axis=1)[np.arange(len(val_y)), val_y]
        return float(np.mean(np.argmax(logits, axis=1) == val_y)), float(np.mean(log_p))  # higher is better, both

    temperature = max(TEMPERATURES, key=score)
    return temperature, score(temperature)[0], float(np.mean(np.argmax(student, axis=1) == val_y))


def calibrate(branch: Branch, student_val_logits: np.ndarray, val_x: np.ndarray, val_y: np.ndarray) -> Branch:
    """The branch with T chosen on the validation windows, and whether it is kept (see the module doc)."""
    decision = branch.model.predict(val_x, verbose=0)
    temperature, val_accuracy, alone = choose_temperature(student_val_logits, decision, val_y)
    return replace(
        branch,
        temperature=temperature,
        kept=val_accuracy > alone,
        val_accuracy=val_accuracy,
        student_val_accuracy=alone,
    )


def with_classical_branch(student: keras.Model, branch: Branch) -> keras.Model:
    """One model of the window: the student's logits plus the calibrated LDA's floored log-odds."""
    inputs = keras.Input(shape=student.input_shape[1:], batch_size=student.input_shape[0], name="window")
    scaled = keras.layers.Rescaling(1.0 / branch.temperature, name="lda_temperature")(branch.model(inputs))
    log_odds = keras.layers.Lambda(
        lambda z: tf.maximum(z - tf.reduce_max(z, axis=1, keepdims=True), -LDA_LOG_ODDS_FLOOR), name="lda_log_odds"
    )(scaled)
    logits = keras.layers.Add(name="logits")([student(inputs), log_odds])
    return keras.Model(inputs, logits, name=f"{student.name}_with_lda")


def hybrid(student: keras.Model, train_x, train_y, val_x, val_y, n_classes: int) -> tuple[keras.Model, Branch]:
    """(the student with a fitted, calibrated LDA branch, the branch); (the student itself, the branch) when the
    branch is not kept."""
    branch = lda_branch(train_x, train_y, n_classes)
    branch = calibrate(branch, student.predict(val_x, verbose=0), val_x, val_y)
    return (with_classical_branch(student, branch) if branch.kept else student), branch
