"""The classical sEMG/IMU baseline: time-domain features per channel, then LDA and a random forest.

This is what a practitioner would try before a neural network, so every `edgekd distill` report shows it
beside the students: a distilled student is only worth deploying if it beats this.

Training side only (scikit-learn): edgekd.runtime and firmware_bridge must not import this module.

Features, per channel of each window (Hudgins, Parker & Scott, IEEE TBME 40(1), 1993, for MAV, WL, ZC and
SSC; RMS and VAR as commonly added since, e.g. Phinyomark et al., Expert Syst. Appl. 39(8), 2012), for
x[0..N-1] and a noise threshold eps:

    MAV  mean |x[t]|
    RMS  sqrt(mean x[t]^2)
    WL   sum |x[t+1] - x[t]|                                  (a sum, not a mean: Hudgins' definition)
    ZC   count of t with x[t] * x[t+1] < 0 and |x[t] - x[t+1]| >= eps
    SSC  count of t in 1..N-2 with (x[t] - x[t-1]) * (x[t] - x[t+1]) > 0
         and (|x[t] - x[t-1]| >= eps or |x[t] - x[t+1]| >= eps)
    VAR  variance about the window's own mean (ddof 0)

eps defaults to 0: the windows are z-scored per channel, so there is no amplifier noise floor in
known units to set it from, and 0 is the plain sign-change / turning-point count. Raise it (in the
z-scored units, e.g. 0.01) to stop noise around zero from inflating ZC and SSC.

VAR here is about the window mean, not the EMG-literature "VAR" (mean square with N-1, which assumes a
zero-mean signal and then equals RMS^2 up to N/(N-1)): on IMU channels the window mean is posture, so a
variance about it tells movement apart from a constant offset, which RMS alone does not.
"""

from __future__ import annotations

import numpy as np

FEATURES = ("mav", "rms", "wl", "zc", "ssc", "var")
ZC_SSC_THRESHOLD = 0.0  # eps above, in z-scored units
CHUNK_WINDOWS = 2048  # features are computed this many windows at a time, to bound the temporary arrays


def time_domain_features(windows: np.ndarray, threshold: float = ZC_SSC_THRESHOLD) -> np.ndarray:
    """(n, length, channels) windows -> (n, 6 * channels) float64 features.

    Columns are feature-major: all channels' MAV, then all channels' RMS, and so on in FEATURES order."""
    windows = np.asarray(windows)
    if windows.ndim != 3:
        raise ValueError(f"windows must be (n, length, channels), got shape {windows.shape}")
    chunks = [_features_of(windows[i : i + CHUNK_WINDOWS], threshold) for i in range(0, len(windows), CHUNK_WINDOWS)]
    if not chunks:
        return np.zeros((0, len(FEATURES) * windows.shape[2]))
    return np.concatenate(chunks)


def _features_of(x: np.ndarray, eps: float) -> np.ndarray:
    x = x.astype(np.float64)  # counts and sums of float32 windows would lose digits on long windows
    step = np.diff(x, axis=1)  # x[t+1] - x[t], shape (n, length - 1, channels)
    mav = np.abs(x).mean(axis=1)
    rms = np.sqrt(np.square(x).mean(axis=1))
    wl = np.abs(step).sum(axis=1)
    zc = ((x[:, :-1] * x[:, 1:] < 0) & (np.abs(step) >= eps)).sum(axis=1)
    # At t, x[t] - x[t-1] is step[t-1] and x[t] - x[t+1] is -step[t].
    rise_before, rise_after = step[:, :-1], step[:, 1:]
    turning_point = rise_before * -rise_after > 0
    large_enough = (np.abs(rise_before) >= eps) | (np.abs(rise_after) >= eps)
    ssc = (turning_point & large_enough).sum(axis=1)
    var = x.var(axis=1)
    return np.concatenate([mav, rms, wl, zc, ssc, var], axis=1)


def lda():
    """The LDA baseline, unfitted: a scikit-learn pipeline on time-domain feature rows."""
    from sklearn.discriminant_analysis import LinearDiscriminantAnalysis
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    # Features differ by orders of magnitude (counts vs amplitudes), so LDA sees standardised ones.
    # Shrinkage (Ledoit-Wolf) keeps the covariance invertible when a channel is constant (ZC = 0 always).
    return make_pipeline(StandardScaler(), LinearDiscriminantAnalysis(solver="lsqr", shrinkage="auto"))


def lda_teacher_logits(
    train_x: np.ndarray, train_y: np.ndarray, parts: dict[str, np.ndarray], n_classes: int
) -> dict[str, np.ndarray]:
    """`edgekd distill --classical-teacher lda`: the LDA baseline, fitted on the training windows, as one more teacher.
    Its logits are its log posteriors (softmax of them gives its probabilities back), float32 (n, n_classes) per part.
    Deterministic: the same training windows give the same teacher, so a run's LDA teacher is refitted, not saved."""
    model = lda().fit(time_domain_features(train_x), train_y)
    if list(model.classes_) != list(range(n_classes)):
        raise ValueError(f"the LDA teacher saw classes {list(model.classes_)}, not 0..{n_classes - 1}")
    # log posteriors of classes LDA deems impossible are -inf in principle; a floor keeps softmax and KL finite
    return {
        part: np.maximum(model.predict_log_proba(time_domain_features(x)), -1e4).astype(np.float32)
        for part, x in parts.items()
    }


CLASSICAL_TEACHERS = ("none", "lda")
CLASSICAL_BRANCHES = ("none", "lda")  # `edgekd export --classical-branch`: models/hybrid.py


def with_classical_teacher(
    kind: str, teacher_logits: dict[str, list[np.ndarray]], parts: dict, n_classes: int
) -> dict[str, list[np.ndarray]]:
    """The logits the KD targets are fused from: the network teachers', and with kind "lda" the LDA teacher's last.
    `parts`: part name -> windows (.x, .y), "train" among them (the LDA teacher is fitted there)."""
    if kind == "none":
        return teacher_logits
    if kind != "lda":
        raise ValueError(f"unknown classical teacher {kind!r}; one of {', '.join(CLASSICAL_TEACHERS)}")
    lda_logits = lda_teacher_logits(
        parts["train"].x, parts["train"].y, {p: parts[p].x for p in teacher_logits}, n_classes
    )
    return {part: [*logits, lda_logits[part]] for part, logits in teacher_logits.items()}


def fit_baselines(train_features: np.ndarray, train_labels: np.ndarray, seed: int) -> dict:
    """{"lda": ..., "random_forest": ...}, each a scikit-learn estimator fitted on the feature rows."""
    # scikit-learn is imported here, not at module level: `edgekd distill` reaches this only after training.
    from sklearn.ensemble import RandomForestClassifier

    baselines = {
        "lda": lda(),
        # One job: the machines this runs on are small and often busy with the students' training.
        "random_forest": RandomForestClassifier(n_estimators=200, n_jobs=1, random_state=seed),
    }
    for estimator in baselines.values():
        estimator.fit(train_features, train_labels)
    return baselines


def evaluate(baselines: dict, features: np.ndarray, labels: np.ndarray) -> dict[str, float]:
    """Accuracy of each fitted baseline on the feature rows: {name: fraction correct}."""
    return {name: float(np.mean(estimator.predict(features) == labels)) for name, estimator in baselines.items()}
