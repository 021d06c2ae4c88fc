"""Synthetic sEMG + IMU datasets shaped like the ISL wearable corpus, for tests and scale benchmarks.

The output is an ordinary dataset folder (dataset.toml, recordings.csv, one .npz per recording),
marked `synthetic = true` so nobody mistakes it for real recordings.

The model behind a recording, from fixed to most variable:

* The band: 6 sensors evenly spaced around the forearm, each with one sEMG electrode over the
  muscle beneath it and a 6-axis IMU (accelerometer + gyroscope) in its own rotated frame.
* A sign (class) is a set of smooth curves over normalized gesture time u in [0, 1]: an activation
  envelope per forearm muscle, the forearm's linear acceleration and rotation, a little extra motion
  seen by each sensor alone, and the forearm posture (the direction of gravity). Signs come in
  families that share most of their shape, the way real signs share hand shapes and movements; this
  keeps classification learnable but not trivial.
* A subject wears the band rotated a little (each electrode picks up its neighbours' muscles
  differently), has own electrode gains, movement size, timing habits, posture and noise, and an own
  way of performing each sign. A model has to generalise across people, not memorise them.
* Each repetition is stretched, shifted and scaled a little, and lasts a different time.

Every random draw comes from a generator seeded by (seed, what, which): a class looks the same
however many classes are generated, and the output does not depend on generation order.
"""

from __future__ import annotations

import csv
import io
import json
import os
import zipfile
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import numpy as np
from scipy import signal

from edgekd.io import write_bytes_atomic

PRESETS: dict[str, dict] = {
    # Shaped like the ISL corpus: 50 signs, 5 signers, 20 repetitions of about 2 s each.
    "isl50": {"classes": 50, "subjects": 5, "repetitions": 20, "duration_s": 2.0},
    # Small enough for unit tests and smoke runs.
    "tiny": {"classes": 6, "subjects": 3, "repetitions": 4, "duration_s": 1.0},
}

N_SENSORS = 6
EMG_RATE_HZ = 1e6 / 900  # one sEMG sample every 900 us
IMU_RATE_HZ = 1e6 / 6750  # one IMU sample every 6.75 ms
EMG_CHANNELS = [f"emg{s}" for s in range(N_SENSORS)]
IMU_CHANNELS = [f"{kind}{s}_{axis}" for s in range(N_SENSORS) for kind in ("acc", "gyr") for axis in "xyz"]

GRAVITY = 9.81  # m/s^2
EMG_BAND_HZ = (20.0, 450.0)  # where surface EMG carries its power
MAINS_HZ = 50.0
SENSOR_SPACING_DEG = 360.0 / N_SENSORS
CROSSTALK_WIDTH_DEG = 35.0  # how far around the forearm an electrode still hears a muscle

# Each repetition lasts duration_s times a factor in [1 - DURATION_SPREAD, 1 + DURATION_SPREAD].
DURATION_SPREAD = 0.15
# Signs sharing a family differ only in this fraction of their shape: lower is harder. At 0.3 a
# cross-subject LDA on per-segment MAV/RMS features scores about 0.7-0.9 on isl50, not 1.0.
N_FAMILIES = 10
DISTINCTIVENESS = 0.3

# Tags keep the random streams of classes, families, subjects, styles and recordings apart.
_CLASS, _FAMILY, _SUBJECT, _STYLE, _RECORDING = range(1, 6)


# --------------------------------------------------------------------------- smooth curves


@dataclass(frozen=True)
class Bumps:
    """One smooth curve per channel: a sum of Gaussian bumps over normalized gesture time.

    Arrays are (channels, bumps). Being analytic, a curve can be evaluated at any warped time and
    differentiated exactly, which is how the gyroscope follows the rotation trajectory.
    """

    centres: np.ndarray
    widths: np.ndarray
    heights: np.ndarray

    def _gauss(self, u: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        z = (u[:, None, None] - self.centres) / self.widths
        return z, np.exp(-0.5 * z * z)

    def value(self, u: np.ndarray) -> np.ndarray:
        """(samples, channels) curve values at gesture times u."""
        _, g = self._gauss(u)
        return (self.heights * g).sum(axis=-1)

    def slope(self, u: np.ndarray) -> np.ndarray:
        """(samples, channels) derivative with respect to u."""
        z, g = self._gauss(u)
        return (self.heights * g * (-z / self.widths)).sum(axis=-1)

    def varied(self, rng: np.random.Generator, height_sd: float, timing_sd: float) -> Bumps:
        """The same curve performed a little differently: each bump rescaled and moved."""
        return Bumps(
            centres=self.centres + rng.normal(0.0, timing_sd, self.centres.shape),
            widths=self.widths,
            heights=self.heights * rng.lognormal(0.0, height_sd, self.heights.shape),
        )

    @staticmethod
    def blend(a: Bumps, b: Bumps, weight_b: float) -> Bumps:
        # A sum of bumps is linear in its heights, so blending two curves is concatenating their bumps.
        return Bumps(
            centres=np.concatenate([a.centres, b.centres], axis=1),
            widths=np.concatenate([a.widths, b.widths], axis=1),
            heights=np.concatenate([a.heights * (1 - weight_b), b.heights * weight_b], axis=1),
        )


def _draw_bumps(rng: np.random.Generator, channels: int, *, signed: bool, scale: float) -> Bumps:
    """1 to 3 bumps per channel, inside the gesture so the recording starts and ends near rest."""
    max_bumps = 3
    centres = rng.uniform(0.15, 0.85, (channels, max_bumps))
    widths = rng.uniform(0.05, 0.18, (channels, max_bumps))
    heights = scale * rng.uniform(0.2, 1.0, (channels, max_bumps))
    if signed:
        heights *= rng.choice([-1.0, 1.0], (channels, max_bumps))
    n_used = rng.integers(1, max_bumps + 1, channels)
    heights[np.arange(max_bumps)[None, :] >= n_used[:, None]] = 0.0
    return Bumps(centres, widths, heights)


def _unit(v: np.ndarray) -> np.ndarray:
    return v / np.linalg.norm(v, axis=-1, keepdims=True)


# --------------------------------------------------------------------------- signs


@dataclass(frozen=True)
class SignTemplate:
    """A sign in the forearm frame (x along the forearm); sensors see it through their mounting."""

    muscle_activation_uv: Bumps  # 6 muscles, one under each nominal sensor position: RMS above rest
    arm_acc: Bumps  # 3 axes: forearm linear acceleration, m/s^2
    arm_rotation_deg: Bumps  # 3 axes: forearm rotation angle; the gyroscopes measure its rate
    local_acc: Bumps  # 6 sensors x 3 axes: what each sensor adds (wrist, skin, muscle bulge)
    local_rotation_deg: Bumps  # 6 sensors x 3 axes
    posture: np.ndarray  # (3,) unit vector: direction of gravity in the forearm frame

    def varied(self, rng: np.random.Generator, height_sd: float, timing_sd: float) -> SignTemplate:
        return SignTemplate(
            muscle_activation_uv=self.muscle_activation_uv.varied(rng, height_sd, timing_sd),
            arm_acc=self.arm_acc.varied(rng, height_sd, timing_sd),
            arm_rotation_deg=self.arm_rotation_deg.varied(rng, height_sd, timing_sd),
            local_acc=self.local_acc.varied(rng, height_sd, timing_sd),
            local_rotation_deg=self.local_rotation_deg.varied(rng, height_sd, timing_sd),
            posture=self.posture,
        )


def _draw_template(rng: np.random.Generator) -> SignTemplate:
    return SignTemplate(
        muscle_activation_uv=_draw_bumps(rng, N_SENSORS, signed=False, scale=150.0),
        arm_acc=_draw_bumps(rng, 3, signed=True, scale=3.0),
        arm_rotation_deg=_draw_bumps(rng, 3, signed=True, scale=40.0),
        local_acc=_draw_bumps(rng, 3 * N_SENSORS, signed=True, scale=1.0),
        local_rotation_deg=_draw_bumps(rng, 3 * N_SENSORS, signed=True, scale=10.0),
        posture=_unit(rng.normal(size=3)),
    )


def _blend_templates(family: SignTemplate, own: SignTemplate, weight_own: float) -> SignTemplate:
    return SignTemplate(
        muscle_activation_uv=Bumps.blend(family.muscle_activation_uv, own.muscle_activation_uv, weight_own),
        arm_acc=Bumps.blend(family.arm_acc, own.arm_acc, weight_own),
        arm_rotation_deg=Bumps.blend(family.arm_rotation_deg, own.arm_rotation_deg, weight_own),
        local_acc=Bumps.blend(family.local_acc, own.local_acc, weight_own),
        local_rotation_deg=Bumps.blend(family.local_rotation_deg, own.local_rotation_deg, weight_own),
        posture=_unit((1 - weight_own) * family.posture + weight_own * own.posture),
    )


@lru_cache(maxsize=1024)
def sign_template(seed: int, class_index: int) -> SignTemplate:
    family = _draw_template(np.random.default_rng([seed, _FAMILY, class_index % N_FAMILIES]))
    own = _draw_template(np.random.default_rng([seed, _CLASS, class_index]))
    return _blend_templates(family, own, DISTINCTIVENESS)


# --------------------------------------------------------------------------- subjects


@dataclass(frozen=True)
class SubjectTraits:
    band_rotation_deg: float  # how far from nominal this person wears the band around the forearm
    emg_gain: np.ndarray  # (6,) electrode contact and skin impedance
    motion_scale: float  # how large this person moves
    posture_offset: np.ndarray  # (3,) own way of holding the forearm
    timing_warp: float  # > 0: slow start, fast finish; < 0 the opposite
    timing_shift: float  # habitual early (< 0) or late start, in gesture time
    emg_noise_uv: float  # baseline noise RMS
    mains_uv: float  # 50 Hz pick-up amplitude
    acc_noise: float  # m/s^2
    gyr_noise_dps: float  # degrees per second


@lru_cache(maxsize=1024)
def subject_traits(seed: int, subject_index: int) -> SubjectTraits:
    rng = np.random.default_rng([seed, _SUBJECT, subject_index])
    return SubjectTraits(
        band_rotation_deg=float(rng.normal(0.0, 15.0)),
        emg_gain=rng.lognormal(0.0, 0.25, N_SENSORS),
        motion_scale=float(rng.lognormal(0.0, 0.2)),
        posture_offset=rng.normal(0.0, 0.2, 3),
        timing_warp=float(np.clip(rng.normal(0.0, 0.2), -0.6, 0.6)),
        timing_shift=float(rng.normal(0.0, 0.03)),
        emg_noise_uv=float(rng.lognormal(np.log(6.0), 0.3)),
        mains_uv=float(rng.lognormal(np.log(2.0), 0.5)),
        acc_noise=float(rng.lognormal(np.log(0.08), 0.3)),
        gyr_noise_dps=float(rng.lognormal(np.log(1.5), 0.3)),
    )


@lru_cache(maxsize=4096)
def subject_sign(seed: int, subject_index: int, class_index: int) -> SignTemplate:
    """How this subject performs this sign: their own consistent version of the template."""
    rng = np.random.default_rng([seed, _STYLE, subject_index, class_index])
    return sign_template(seed, class_index).varied(rng, height_sd=0.3, timing_sd=0.03)


# --------------------------------------------------------------------------- the band


def _sensor_angles_deg(subject: SubjectTraits) -> np.ndarray:
    return SENSOR_SPACING_DEG * np.arange(N_SENSORS) + subject.band_rotation_deg


def _crosstalk(subject: SubjectTraits) -> np.ndarray:
    """(electrodes, muscles) power weights: each electrode hears the muscles nearest to it."""
    muscle_angles = SENSOR_SPACING_DEG * np.arange(N_SENSORS)
    gap = _sensor_angles_deg(subject)[:, None] - muscle_angles[None, :]
    gap = (gap + 180.0) % 360.0 - 180.0  # around the forearm, the short way
    weights = np.exp(-0.5 * (gap / CROSSTALK_WIDTH_DEG) ** 2)
    return weights / weights.sum(axis=1, keepdims=True)


def _to_sensor_frames(forearm_vectors: np.ndarray, subject: SubjectTraits) -> np.ndarray:
    """(samples, 6, 3) vectors in the forearm frame -> each sensor's frame, rotated about the forearm axis."""
    angles = np.deg2rad(_sensor_angles_deg(subject))
    cos, sin = np.cos(angles), np.sin(angles)
    x, y, z = forearm_vectors[..., 0], forearm_vectors[..., 1], forearm_vectors[..., 2]
    return np.stack([x, cos * y + sin * z, -sin * y + cos * z], axis=-1)


# --------------------------------------------------------------------------- recordings


@dataclass(frozen=True)
class Performance:
    """How one repetition departs from the subject's usual sign: own duration, tempo and strength."""

    duration_s: float
    speed: float  # > 1: the sign is performed faster, so the template is squeezed in time
    shift: float  # in gesture time
    strength: float  # overall effort
    posture_jitter: np.ndarray  # (3,)


def _draw_performance(rng: np.random.Generator, duration_s: float) -> Performance:
    return Performance(
        duration_s=duration_s * rng.uniform(1 - DURATION_SPREAD, 1 + DURATION_SPREAD),
        speed=rng.uniform(0.9, 1.1),
        shift=rng.normal(0.0, 0.04),
        strength=rng.lognormal(0.0, 0.15),
        posture_jitter=rng.normal(0.0, 0.08, 3),
    )


def _gesture_time(t_s: np.ndarray, subject: SubjectTraits, take: Performance) -> tuple[np.ndarray, np.ndarray]:
    """Map recording time to template time u; also return du/dt (1/s) for rates such as the gyro."""
    tau = t_s / take.duration_s
    warped = tau + subject.timing_warp * tau * (1 - tau)  # monotone for |warp| < 1
    dwarped_dtau = 1 + subject.timing_warp * (1 - 2 * tau)
    u = 0.5 + (warped - 0.5 - subject.timing_shift - take.shift) * take.speed
    du_dt = take.speed * dwarped_dtau / take.duration_s
    return u, du_dt


@lru_cache(maxsize=1)
def _emg_bandpass() -> np.ndarray:
    return signal.butter(4, EMG_BAND_HZ, btype="bandpass", fs=EMG_RATE_HZ, output="sos")


def _emg_carrier(rng: np.random.Generator, n_samples: int) -> np.ndarray:
    """Unit-RMS band-limited noise: the interference pattern of many motor-unit action potentials."""
    carrier = signal.sosfiltfilt(_emg_bandpass(), rng.standard_normal((n_samples, N_SENSORS)), axis=0)
    return carrier / carrier.std(axis=0, keepdims=True)


def _synthesize_emg(rng, sign: SignTemplate, subject: SubjectTraits, take: Performance) -> np.ndarray:
    n = round(take.duration_s * EMG_RATE_HZ)
    t = np.arange(n) / EMG_RATE_HZ
    u, _ = _gesture_time(t, subject, take)
    muscle_power = np.maximum(sign.muscle_activation_uv.value(u), 0.0) ** 2
    envelope = np.sqrt(muscle_power @ _crosstalk(subject).T) * subject.emg_gain * take.strength
    mains = subject.mains_uv * np.sin(2 * np.pi * MAINS_HZ * t + rng.uniform(0, 2 * np.pi))[:, None]
    baseline = subject.emg_noise_uv * rng.standard_normal((n, N_SENSORS))
    return envelope * _emg_carrier(rng, n) + baseline + mains


def _per_sensor(forearm: np.ndarray, own: np.ndarray) -> np.ndarray:
    """(samples, 3) forearm motion + (samples, 6 * 3) each sensor's own -> (samples, 6, 3)."""
    return forearm[:, None, :] + own.reshape(len(own), N_SENSORS, 3)


def _synthesize_imu(rng, sign: SignTemplate, subject: SubjectTraits, take: Performance) -> np.ndarray:
    n = round(take.duration_s * IMU_RATE_HZ)
    t = np.arange(n) / IMU_RATE_HZ
    u, du_dt = _gesture_time(t, subject, take)
    motion_scale = subject.motion_scale * take.strength
    # Faster performances mean larger linear accelerations and angular rates.
    acc = _per_sensor(sign.arm_acc.value(u), sign.local_acc.value(u)) * motion_scale * take.speed**2
    angle_slope = _per_sensor(sign.arm_rotation_deg.slope(u), sign.local_rotation_deg.slope(u))
    gyr = angle_slope * (motion_scale * du_dt)[:, None, None]

    gravity = GRAVITY * _unit(sign.posture + subject.posture_offset + take.posture_jitter)
    acc = _to_sensor_frames(acc + gravity, subject) + subject.acc_noise * rng.standard_normal(acc.shape)
    gyr = _to_sensor_frames(gyr, subject) + subject.gyr_noise_dps * rng.standard_normal(gyr.shape)
    # Channel order per sensor: acc x, y, z then gyr x, y, z (see IMU_CHANNELS).
    return np.concatenate([acc, gyr], axis=2).reshape(n, 6 * N_SENSORS)


def synthesize_recording(
    seed: int, class_index: int, subject_index: int, repetition: int, duration_s: float
) -> dict[str, np.ndarray]:
    """One recording as {stream name: float32 array (samples, channels)}; both streams span the same time."""
    rng = np.random.default_rng([seed, _RECORDING, subject_index, class_index, repetition])
    subject = subject_traits(seed, subject_index)
    sign = subject_sign(seed, subject_index, class_index).varied(rng, height_sd=0.15, timing_sd=0.015)
    take = _draw_performance(rng, duration_s)
    return {
        "emg": _synthesize_emg(rng, sign, subject, take).astype(np.float32),
        "imu": _synthesize_imu(rng, sign, subject, take).astype(np.float32),
    }


# --------------------------------------------------------------------------- writing the folder


def _toml_list(items: list[str]) -> str:
    return "[" + ", ".join(json.dumps(item) for item in items) + "]"


def _dataset_toml(preset: str, classes: list[str], settings: dict) -> str:
    settings_line = ", ".join(f"{key}={value!r}" for key, value in settings.items())
    description = (
        f"SYNTHETIC data shaped like the ISL wearable corpus ({N_SENSORS} sensors, sEMG + IMU), "
        "generated by edgekd.data.synth: not real recordings"
    )
    return "\n".join(
        [
            f"# Generated by edgekd.data.synth (preset={preset!r}, {settings_line}).",
            f"name = {json.dumps(f'{preset}-synthetic')}",
            "synthetic = true",
            f"description = {json.dumps(description)}",
            f"classes = {_toml_list(classes)}",
            "",
            "[streams.emg]",
            f"rate_hz = {EMG_RATE_HZ!r}",
            f"channels = {_toml_list(EMG_CHANNELS)}",
            "",
            "[streams.imu]",
            f"rate_hz = {IMU_RATE_HZ!r}",
            f"channels = {_toml_list(IMU_CHANNELS)}",
            "",
        ]
    )


def _npz_bytes(arrays: dict[str, np.ndarray]) -> bytes:
    """The bytes np.savez writes, minus its clock: np.savez stamps each member with the current time,
    so equal data would give different files; a fixed stamp makes the same seed give the same bytes."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", compression=zipfile.ZIP_STORED) as archive:
        for name, array in arrays.items():
            member = zipfile.ZipInfo(f"{name}.npy", date_time=(1980, 1, 1, 0, 0, 0))
            with archive.open(member, "w", force_zip64=True) as out:
                np.lib.format.write_array(out, np.asarray(array), allow_pickle=False)
    return buffer.getvalue()


def _csv_text(rows: list[tuple[str, str, str, int]]) -> str:
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(["path", "subject", "label", "repetition"])
    writer.writerows(rows)
    return buffer.getvalue()


def _resolve_settings(preset: str, **overrides) -> dict:
    if preset not in PRESETS:
        raise ValueError(f"unknown synthetic preset {preset!r}; choose one of {sorted(PRESETS)}")
    settings = dict(PRESETS[preset])
    settings.update({key: value for key, value in overrides.items() if value is not None})
    for key in ("classes", "subjects", "repetitions"):
        if int(settings[key]) != settings[key] or settings[key] < 1:
            raise ValueError(f"{key} must be a positive whole number, got {settings[key]!r}")
        settings[key] = int(settings[key])
    # Shorter recordings leave the EMG band-pass filter too few samples to run on.
    if not settings["duration_s"] >= 0.1:
        raise ValueError(f"duration_s must be at least 0.1 s, got {settings['duration_s']!r}")
    settings["duration_s"] = float(settings["duration_s"])
    if int(settings["seed"]) != settings["seed"] or settings["seed"] < 0:
        raise ValueError(f"seed must be a non-negative whole number, got {settings['seed']!r}")
    settings["seed"] = int(settings["seed"])
    return settings


def _refuse_non_empty(out_dir: Path) -> None:
    if out_dir.exists() and (not out_dir.is_dir() or any(out_dir.iterdir())):
        raise FileExistsError(
            f"{out_dir} already exists and is not empty; pick a new folder or remove it first "
            "(synthetic data is never written over existing files)"
        )


def write_synthetic_dataset(
    out_dir: str | os.PathLike,
    preset: str = "isl50",
    *,
    classes: int | None = None,
    subjects: int | None = None,
    repetitions: int | None = None,
    duration_s: float | None = None,
    seed: int = 0,
) -> Path:
    """Write a synthetic dataset folder and return its path.

    Keyword arguments override the preset's values. recordings.csv and dataset.toml are written
    last, so a run killed midway leaves a folder that no loader takes for a complete dataset.
    """
    out_dir = Path(out_dir)
    settings = _resolve_settings(
        preset, classes=classes, subjects=subjects, repetitions=repetitions, duration_s=duration_s, seed=seed
    )
    _refuse_non_empty(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)

    class_width = max(2, len(str(settings["classes"] - 1)))
    class_names = [f"sign{c:0{class_width}d}" for c in range(settings["classes"])]
    repetition_width = max(2, len(str(settings["repetitions"] - 1)))

    rows = []
    for subject_index in range(settings["subjects"]):
        subject_id = f"s{subject_index + 1}"
        for class_index, label in enumerate(class_names):
            for repetition in range(settings["repetitions"]):
                relative = f"recordings/{subject_id}/{label}_r{repetition:0{repetition_width}d}.npz"
                arrays = synthesize_recording(
                    settings["seed"], class_index, subject_index, repetition, settings["duration_s"]
                )
                write_bytes_atomic(out_dir / relative, _npz_bytes(arrays))
                rows.append((relative, subject_id, label, repetition))

    write_bytes_atomic(out_dir / "recordings.csv", _csv_text(rows).encode())
    write_bytes_atomic(out_dir / "dataset.toml", _dataset_toml(preset, class_names, settings).encode())
    return out_dir
