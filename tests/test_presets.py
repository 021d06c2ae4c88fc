"""The shipped architecture presets build, and the channel-dropout layer is checked like every other."""

from __future__ import annotations

import numpy as np
import pytest

from edgekd.errors import UserError
from edgekd.models.presets import available_presets, load_preset


@pytest.mark.parametrize("name", [n for n in available_presets() if n != "selector"])
def test_every_shipped_classifier_preset_builds_with_logits_out(name):
    from edgekd.models.build import build_model

    model = build_model(load_preset(name), 60, 5, 4, seed=0)
    assert model.output_shape == (None, 4) and model.layers[-1].name == "logits"


def test_spatial_dropout_drops_whole_input_channels_in_training_only():
    from edgekd.models.build import build_model

    model = build_model(load_preset("conv-teacher"), 60, 8, 3, seed=0)
    dropout = model.layers[1]
    assert type(dropout).__name__ == "SpatialDropout1D" and dropout.rate == pytest.approx(0.3)
    x = np.ones((4, 60, 8), np.float32)
    dropped = dropout(x, training=True).numpy()
    per_channel = dropped.max(axis=1) == dropped.min(axis=1)  # each channel is all zeros or all scaled ones
    assert per_channel.all() and (dropped == 0).any()
    np.testing.assert_array_equal(dropout(x, training=False).numpy(), x)


def test_spatial_dropout_needs_a_rate(tmp_path):
    path = tmp_path / "p.toml"
    path.write_text(
        '[[layers]]\ntype = "spatial_dropout"\n\n[[layers]]\ntype = "conv1d"\nfilters = 4\nkernel_size = 3\n'
    )
    with pytest.raises(UserError, match="spatial_dropout.*needs 'rate'"):
        load_preset(str(path))
