"""--augment-gain / --augment-noise: random gain per window and channel and additive noise, in training only."""

from __future__ import annotations

import numpy as np
import pytest

from tests.test_bad_input import assert_user_error, distill


def _windows(n=64, length=20, channels=3):
    return np.random.default_rng(0).normal(size=(n, length, channels)).astype(np.float32) + 2.0


def test_identity_at_inference():
    from edgekd.distill.augment import WindowAugmentation

    x = _windows()
    layer = WindowAugmentation(0.3, 0.2)
    np.testing.assert_array_equal(layer(x, training=False).numpy(), x)
    np.testing.assert_array_equal(layer(x).numpy(), x)


def test_gain_is_one_factor_per_window_and_channel():
    from edgekd.distill.augment import WindowAugmentation

    x = _windows()
    ratio = WindowAugmentation(0.3, 0.0)(x, training=True).numpy() / x
    per_window_channel = ratio[:, :1, :]
    np.testing.assert_allclose(ratio, np.broadcast_to(per_window_channel, ratio.shape), rtol=1e-5)
    log_gain = np.log(per_window_channel).ravel()
    assert 0.2 < log_gain.std() < 0.4 and abs(log_gain.mean()) < 0.1  # exp(N(0, 0.3^2)), 192 draws


def test_noise_has_the_asked_spread():
    from edgekd.distill.augment import WindowAugmentation

    x = _windows()
    noise = WindowAugmentation(0.0, 0.2)(x, training=True).numpy() - x
    assert abs(noise.std() - 0.2) < 0.02 and abs(noise.mean()) < 0.02


def test_channel_drop_zeroes_whole_channels_and_rescales_the_others():
    from edgekd.distill.augment import WindowAugmentation

    x = _windows(n=400)
    ratio = WindowAugmentation(0.0, 0.0, 0.25)(x, training=True).numpy() / x
    per_window_channel = ratio[:, 0, :]
    np.testing.assert_allclose(ratio, np.broadcast_to(per_window_channel[:, None, :], ratio.shape), rtol=1e-5)
    dropped = per_window_channel == 0
    assert 0.2 < dropped.mean() < 0.3  # 1,200 channels, rate 0.25
    np.testing.assert_allclose(per_window_channel[~dropped], 1 / 0.75, rtol=1e-5)


def test_split_input_dropout_moves_a_leading_spatial_dropout_out_of_the_preset(tmp_path):
    from edgekd.models.presets import load_preset, split_input_dropout

    rate, without = split_input_dropout(load_preset("conv-teacher"))
    assert rate == pytest.approx(0.3) and without.layers == load_preset("conv-teacher").layers[1:]
    assert split_input_dropout(load_preset("edge-student")) == (0.0, load_preset("edge-student"))


def test_a_preset_dropping_single_input_samples_is_refused(tmp_path):
    from edgekd.errors import UserError
    from edgekd.models.presets import load_preset

    path = tmp_path / "p.toml"
    path.write_text(
        '[[layers]]\ntype = "dropout"\nrate = 0.2\n\n[[layers]]\ntype = "conv1d"\nfilters = 4\nkernel_size = 3\n'
    )
    with pytest.raises(UserError, match="spatial_dropout"):
        load_preset(str(path))


def test_training_model_shares_the_students_weights_and_the_student_stays_clean(tiny_conv):
    from edgekd.distill.augment import Augmentation, augmented
    from edgekd.distill.losses import pack_targets
    from edgekd.distill.student import Objective, train_student
    from edgekd.models.build import build_model
    from edgekd.models.presets import load_preset

    student = build_model(load_preset(tiny_conv), 20, 3, 2)
    assert augmented(student, None) is student and augmented(student, Augmentation()) is student
    trainer = augmented(student, Augmentation(0.3, 0.2))
    assert {id(w) for w in trainer.trainable_weights} == {id(w) for w in student.trainable_weights}

    x = _windows()
    y = (x[:, :, 0].mean(axis=1) > 2.0).astype(np.int64)
    packed = pack_targets(y, np.eye(2, dtype=np.float32)[y])
    fit_args = dict(n_classes=2, temperature=4.0, epochs=2, batch_size=16, patience=2, learning_rate=1e-2, verbose=0)
    trained, fitted = train_student(
        load_preset(tiny_conv),
        20,
        3,
        2,
        x,
        packed,
        x,
        packed,
        objective=Objective(),
        alpha=1.0,
        seed=0,
        name="s",
        fit_args=fit_args,
        augmentation=Augmentation(0.3, 0.2),
    )
    assert fitted.epochs_run == 2
    assert not any("augment" in layer.name for layer in trained.layers)  # what export converts has no augmentation


@pytest.mark.parametrize("option, value", [("--augment-gain", "-0.1"), ("--augment-noise", "7")])
def test_bad_augmentation_is_refused(myo5, tmp_path, option, value):
    assert_user_error(distill(myo5, tmp_path, option, value), option, "[0, 5]")


def _teacher_weights(run) -> list[np.ndarray]:
    from edgekd._tf import keras

    return keras.models.load_model(run / "teacher_0.h5", compile=False).get_weights()


def test_augment_teachers_trains_the_teachers_on_augmented_windows(myo5, tmp_path, tiny_conv):
    from tests.test_teachers import run_distill

    common = [
        "--teacher",
        tiny_conv,
        "--student",
        tiny_conv,
        "--teachers",
        "1",
        "--epochs",
        "2",
        "--augment-gain",
        "0.3",
        "--augment-noise",
        "0.2",
    ]
    students_only = run_distill(myo5, tmp_path / "students", *common)
    both = run_distill(myo5, tmp_path / "both", *common, "--augment-teachers")
    plain = run_distill(myo5, tmp_path / "plain", *common[:-4])
    assert students_only["config"]["augmentation"] == {"gain_sd": 0.3, "noise_sd": 0.2, "teachers": False}
    assert both["config"]["augmentation"]["teachers"] and plain["config"]["augmentation"] is None
    for clean, noisy in zip(_teacher_weights(tmp_path / "plain"), _teacher_weights(tmp_path / "students")):
        np.testing.assert_array_equal(clean, noisy)  # students-only augmentation leaves the teachers alone
    assert any(
        not np.array_equal(a, b)
        for a, b in zip(_teacher_weights(tmp_path / "plain"), _teacher_weights(tmp_path / "both"))
    )
    assert plain["test_accuracy"]["teachers"] == students_only["test_accuracy"]["teachers"]


def test_augment_teachers_needs_an_augmentation(myo5, tmp_path):
    assert_user_error(distill(myo5, tmp_path, "--augment-teachers"), "--augment-teachers", "--augment-gain")
