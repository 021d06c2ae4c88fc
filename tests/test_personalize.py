"""edgekd personalize (issue 20): a new logits layer fitted on a person's recordings, written into the .tflite in place,
with the device profile alone."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys

import numpy as np
import pytest

from tests.test_bad_input import assert_user_error, run_cli


def personalize_cli(model, calibration, out, *extra):
    return run_cli("personalize", model, calibration, "--out", out, *extra)


@pytest.mark.parametrize("variant", ["int8", "float32"])
def test_personalize_writes_a_signed_model_of_the_same_size_whose_head_is_the_fitted_one(
    exported, myo5, tmp_path, variant
):
    from edgekd.runtime import personalize as personal
    from edgekd.runtime.interpreter import TFLiteModel
    from edgekd.runtime.metadata import signed

    shipped_path = exported[variant]
    before = shipped_path.read_bytes()
    out = tmp_path / "personal.tflite"
    result = personalize_cli(shipped_path, myo5, out, "--where", "repetition=0,1")
    assert result.exit_code == 0, result.output + repr(result.exception)
    assert "accuracy on the calibration windows" in result.output and f"wrote {out}" in result.output
    assert shipped_path.read_bytes() == before  # the input is never modified
    data = out.read_bytes()
    assert len(data) == len(before)
    personal_model = TFLiteModel.load(out)
    record = personal_model.metadata["personalized"]
    assert signed(data, personal_model.metadata) and record["calibration"].endswith("(repetition=0,1)")
    assert set(record["windows"]) == set(personal_model.metadata["classes"]) and record["kept_shipped"] == []
    assert "agreement" not in personal_model.metadata  # export's figures describe the shipped head

    # The file computes what fit_head fitted: its logits are the new head on its own embeddings.
    shipped = TFLiteModel.load(shipped_path)
    calibration = personal.load_calibration(shipped, myo5, {"repetition": ["0", "1"]})
    interpreter = personal.inspecting_interpreter(shipped)
    head = personal.find_head(shipped, interpreter)
    features = personal.embeddings(shipped, interpreter, head, calibration.windows)
    prior_w, prior_b = personal.shipped_weights(interpreter, head)
    weights, bias = personal.fit_head(features, calibration.labels, prior_w, prior_b)
    expected = np.argmax(features @ weights.T + bias, 1)
    written = np.argmax(personal_model.predict_logits(calibration.windows), 1)
    # as faithful as the shipped file is to its own head (the tiny test model's logits are close: int8 rounding flips
    # some)
    faithful = np.mean(
        np.argmax(shipped.predict_logits(calibration.windows), 1) == np.argmax(features @ prior_w.T + prior_b, 1)
    )
    assert np.mean(written == expected) >= min(0.999, faithful - 0.02)
    assert np.mean(expected == calibration.labels) >= np.mean(
        np.argmax(features @ prior_w.T + prior_b, 1) == calibration.labels
    )
    bench = run_cli("bench", out, "--data", myo5, "--where", "repetition=2", "--runs", "5")
    assert bench.exit_code == 0, bench.output
    again = personalize_cli(
        out, myo5, tmp_path / "again.tflite", "--where", "repetition=2"
    )  # a personal model is a model
    assert again.exit_code == 0, again.output


def test_fit_head_moves_only_the_classes_it_saw_and_leans_on_the_prior():
    from edgekd.runtime.personalize import fit_head

    rng = np.random.default_rng(0)
    features = np.vstack([rng.normal(loc, 0.3, size=(30, 4)) for loc in ([2, 0, 0, 0], [0, 2, 0, 0])])
    labels = np.repeat([0, 1], 30)
    prior_w, prior_b = rng.normal(size=(3, 4)), np.zeros(3)
    weights, bias = fit_head(features, labels, prior_w, prior_b, strength=1e-3)
    assert np.mean(np.argmax(features @ weights.T + bias, 1) == labels) == 1.0
    assert np.array_equal(weights[2], prior_w[2]) and bias[2] == prior_b[2]  # unseen class keeps the shipped row
    stiff, _ = fit_head(features, labels, prior_w, prior_b, strength=1e6)
    assert np.abs(stiff - prior_w).max() < 1e-3


def test_personalize_imports_no_tensorflow(exported, myo5, tmp_path):
    code = (
        "import sys; from edgekd.cli import main; "
        f"sys.argv = ['edgekd', 'personalize', {str(exported['int8'])!r}, {str(myo5)!r}, '--out', "
        f"{str(tmp_path / 'p.tflite')!r}]\n"
        "try:\n    main()\nexcept SystemExit as e:\n    assert not e.code, e.code\n"
        "assert 'tensorflow' not in sys.modules, 'tensorflow imported'"
    )
    subprocess.run([sys.executable, "-c", code], check=True, capture_output=True)
    assert (tmp_path / "p.tflite").exists()


# ---- bad input: one line, exit 2 ------------------------------------------------------------------------------------


@pytest.fixture
def one_class_short(myo5, tmp_path):
    """myo5 without its 'rest' recordings."""
    from tests.conftest import rewrite_index

    copy = tmp_path / "myo5-no-rest"
    shutil.copytree(myo5, copy)
    rewrite_index(copy, lambda rows: [r for r in rows if r["label"] != "rest"])
    return copy


def test_a_missing_class_is_refused_unless_kept(exported, one_class_short, tmp_path):
    from edgekd.runtime.interpreter import TFLiteModel

    out = tmp_path / "p.tflite"
    assert_user_error(
        personalize_cli(exported["int8"], one_class_short, out), "has no recordings of rest", "--keep-missing"
    )
    assert not out.exists()
    result = personalize_cli(exported["int8"], one_class_short, out, "--keep-missing")
    assert result.exit_code == 0, result.output
    assert "rest" in result.output and "kept the shipped model's" in result.output
    assert TFLiteModel.load(out).metadata["personalized"]["kept_shipped"] == ["rest"]


def test_too_few_windows_of_a_class_are_refused(exported, myo5, monkeypatch, tmp_path):
    import edgekd.runtime.personalize as personal

    monkeypatch.setattr(personal, "MIN_WINDOWS_PER_CLASS", 10_000)
    assert_user_error(
        personalize_cli(exported["int8"], myo5, tmp_path / "p.tflite"), "too few windows of", "at least 10000"
    )


def test_personalize_never_writes_over_its_input_or_an_existing_file(exported, myo5, tmp_path):
    model = tmp_path / "m.tflite"
    shutil.copy(exported["int8"], model)
    before = model.read_bytes()
    assert_user_error(personalize_cli(model, myo5, model), "m.tflite: exists", "--force")
    assert_user_error(personalize_cli(model, myo5, model, "--force"), "is MODEL itself", "never modifies its input")
    assert model.read_bytes() == before


def test_a_model_without_room_for_the_record_is_refused(exported, myo5, tmp_path):
    from edgekd.export.metadata_writer import embed_signed_metadata
    from edgekd.runtime.metadata import read_metadata

    data = exported["int8"].read_bytes()
    old = tmp_path / "old.tflite"
    old.write_bytes(embed_signed_metadata(data, {k: v for k, v in read_metadata(data).items() if k != "integrity"}))
    assert_user_error(
        personalize_cli(old, myo5, tmp_path / "p.tflite"),
        "old.tflite",
        "no room for the calibration record",
        "edgekd export",
    )


def test_calibration_that_does_not_fit_the_model_is_refused(exported, myo5, tmp_path):
    for name, edit in (("renamed", ("emg7", "emg9")), ("faster", ("rate_hz = 200", "rate_hz = 1000"))):
        copy = tmp_path / name
        shutil.copytree(myo5, copy)
        (copy / "dataset.toml").write_text((copy / "dataset.toml").read_text().replace(*edit))
        assert_user_error(
            personalize_cli(exported["int8"], copy, tmp_path / "p.tflite"),
            "streams emg (8 ch, " + ("200" if name == "renamed" else "1000") + " Hz) do not match",
            "same streams, channels and sample rates",
        )
    assert_user_error(
        personalize_cli(exported["int8"], myo5, tmp_path / "p.tflite", "--where", "subject=nobody"), "no subject nobody"
    )


def test_a_model_that_does_not_end_in_a_logits_layer_is_refused(exported, myo5, tmp_path):
    from edgekd.runtime import personalize as personal
    from edgekd.runtime.interpreter import TFLiteModel

    model = TFLiteModel.load(exported["int8"])
    interpreter = personal.inspecting_interpreter(model)
    head = personal.find_head(model, interpreter)
    assert json.dumps(head.__dict__)  # a plain export ends in one

    class NoHead:
        def get_output_details(self):
            return [{"index": 0}]

        def _get_ops_details(self):
            return [{"op_name": "SOFTMAX", "outputs": [0], "inputs": [1]}]

    from edgekd.errors import UserError

    with pytest.raises(UserError, match="comes from SOFTMAX, not a logits layer"):
        personal.find_head(model, NoHead())


def test_renormalizing_gives_the_person_their_own_z_score(exported, myo5, tmp_path):
    from edgekd.data.dataset import load_dataset
    from edgekd.data.prepare import recording_windows
    from edgekd.data.windows import Preprocessor
    from edgekd.runtime import personalize as personal
    from edgekd.runtime.interpreter import TFLiteModel
    from edgekd.runtime.metadata import signed

    shipped = TFLiteModel.load(exported["int8"])
    calibration = personal.load_calibration(shipped, myo5, {"repetition": ["0", "1"]})
    made = personal.personalize(shipped, calibration, renormalize=True)
    out = tmp_path / "renormalized.tflite"
    out.write_bytes(made.model_bytes)
    model = TFLiteModel.load(out)
    assert signed(made.model_bytes, model.metadata) and "own normalisation" in model.metadata["personalized"]["method"]
    dataset = load_dataset(myo5)
    indices = [i for i, r in enumerate(dataset.recordings) if r.group("repetition") in ("0", "1")]
    windows = recording_windows(dataset, indices, Preprocessor.from_dict(model.metadata["preprocessing"])).x
    flat = windows.reshape(-1, windows.shape[-1])
    assert np.allclose(flat.mean(0), 0, atol=1e-3) and np.allclose(flat.std(0), 1, atol=1e-3)
    assert model.metadata["preprocessing"]["mean"] != shipped.metadata["preprocessing"]["mean"]
