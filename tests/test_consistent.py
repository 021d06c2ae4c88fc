"""--consistent and --mixup: targets computed on (or mixed with) the very windows the student trains on."""
from __future__ import annotations

import numpy as np
import pytest

from tests.test_bad_input import assert_user_error, distill


def _windows(n=32, length=20, channels=3):
    return np.random.default_rng(0).normal(size=(n, length, channels)).astype(np.float32)


def _trainer(tiny_conv, teachers, *, alpha=0.3, mixup=0.0, seed=0):
    from edgekd._tf import keras
    from edgekd.distill.consistent import ConsistentTrainer
    from edgekd.distill.losses import kd_loss, packed_accuracy
    from edgekd.models.build import build_model
    from edgekd.models.presets import load_preset

    student = build_model(load_preset(tiny_conv), 20, 3, 2, seed=seed)
    model = ConsistentTrainer(student, 2, teachers, None, mixup)
    model.compile(optimizer=keras.optimizers.SGD(0.0), loss=kd_loss(2, 2.0, alpha), metrics=[packed_accuracy(2)])
    return student, model


def test_the_step_distils_from_the_teachers_outputs_on_its_own_windows(tiny_conv):
    from edgekd.distill.consistent import online_teachers
    from edgekd.distill.losses import kd_loss, pack_targets
    from edgekd.distill.replay import RunTeacher
    from edgekd.models.build import build_model
    from edgekd.models.presets import load_preset

    x, y = _windows(), np.arange(32) % 2
    teachers = [RunTeacher(build_model(load_preset(tiny_conv), 20, 3, 2, seed=s), None) for s in (1, 2)]
    # Stale targets in the packed tensor: the step must replace them with the teachers' outputs on x.
    stale = pack_targets(y, np.full((32, 2), 0.5, np.float32))
    online = online_teachers(teachers, "mean", "kl", 2.0, np.array([0.5, 0.5]))
    student, model = _trainer(tiny_conv, online)
    logits = [t.model(x, training=False).numpy() / 2.0 for t in teachers]
    soft = np.mean([np.exp(z) / np.exp(z).sum(axis=1, keepdims=True) for z in logits], axis=0)
    expected = float(np.mean(kd_loss(2, 2.0, 0.3)(pack_targets(y, soft), student(x, training=True)).numpy()))
    stale_loss = float(np.mean(kd_loss(2, 2.0, 0.3)(stale, student(x, training=True)).numpy()))
    got = model.train_step((x, stale))["loss"].numpy()  # learning rate 0: the loss of the weights before the step
    assert got == pytest.approx(expected, rel=1e-4) and abs(got - stale_loss) > 1e-3


def test_weighted_teachers_count_by_validation_accuracy(tiny_conv):
    from edgekd.distill.consistent import online_teachers
    from edgekd.distill.replay import RunTeacher

    teachers = [RunTeacher(object(), None), RunTeacher(object(), [0, 2])]
    assert online_teachers(teachers, "weighted", "mse", 4.0, np.array([0.9, 0.3])).weights == pytest.approx((0.75, 0.25))
    mean = online_teachers(teachers, "mean", "mse", 4.0, np.array([0.9, 0.3]))
    assert mean.weights == (0.5, 0.5) and mean.kind == "logits" and mean.channels == (None, [0, 2])


def test_mixup_mixes_windows_and_their_targets_by_the_same_share(tiny_conv):
    _, model = _trainer(tiny_conv, None, mixup=0.4)
    values = np.arange(32, dtype=np.float32)
    x = np.broadcast_to(values[:, None, None], (32, 20, 3)).copy()
    packed = np.stack([values, 100.0 - values], axis=1)
    mixed_x, mixed = (t.numpy() for t in model._mix(x, packed))
    np.testing.assert_allclose(mixed_x[:, 0, 0], mixed[:, 0], rtol=1e-5)  # both columns mix with the share of x
    np.testing.assert_allclose(mixed[:, 0] + mixed[:, 1], 100.0, rtol=1e-5)
    assert not np.allclose(mixed_x, x)  # Beta(0.4, 0.4): shares near 0 and 1, but not all of them


def test_consistent_run_records_its_settings_and_saves_a_plain_student(myo5, tmp_path, tiny_conv):
    from edgekd._tf import keras
    from edgekd.compare import method_label
    from tests.test_teachers import run_distill

    report = run_distill(myo5, tmp_path, "--teacher", tiny_conv, "--student", tiny_conv, "--teachers", "2", "--epochs", "2",
                         "--consistent", "--mixup", "0.4", "--augment-gain", "0.2")
    assert report["config"]["consistent"] and report["config"]["mixup"] == 0.4
    assert method_label(report).endswith("augment gain=0.2 noise=0, mixup=0.4, consistent")
    saved = keras.models.load_model(tmp_path / "student_kd.h5", compile=False)
    scratch = keras.models.load_model(tmp_path / "student_scratch.h5", compile=False)
    assert [type(layer) for layer in saved.layers] == [type(layer) for layer in scratch.layers]
    assert [w.shape for w in saved.get_weights()] == [w.shape for w in scratch.get_weights()]
    assert not any("consistent" in layer.name or "augment" in layer.name for layer in saved.layers)


@pytest.mark.parametrize("options, named", [(["--fusion", "vote"], "--fusion vote"), (["--loss", "hint"], "--loss hint")])
def test_consistent_refuses_targets_the_step_cannot_compute(myo5, tmp_path, options, named):
    assert_user_error(distill(myo5, tmp_path, "--consistent", *options), named, "--fusion mean or weighted")


def test_bad_mixup_is_refused(myo5, tmp_path):
    assert_user_error(distill(myo5, tmp_path, "--mixup", "-1"), "--mixup", "[0, 10]")


def test_unknown_lr_schedule_is_refused(myo5, tmp_path):
    assert_user_error(distill(myo5, tmp_path, "--lr-schedule", "linear"), "--lr-schedule", "constant", "cosine")
