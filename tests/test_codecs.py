"""The wire formats behind one interface (firmware_bridge/codecs.py) and the --wire option that picks one."""

from __future__ import annotations

import click
import numpy as np
import pytest
from click.testing import CliRunner

from edgekd.data.dataset import StreamSpec
from edgekd.errors import UserError
from firmware_bridge.codecs import CODECS, Samples, codec, wire_option
from firmware_bridge.protocol import US

EMG = StreamSpec("emg", 200.0, ("c0", "c1", "c2"))
CHUNK = 7  # samples per write


def recording(fractional: bool) -> dict[str, np.ndarray]:
    values = np.random.default_rng(3).integers(-3000, 3000, (100, 3)).astype(np.float32)
    return {"emg": values * 0.173 if fractional else values}


def send(name: str, signals: dict[str, np.ndarray], junk_every: int = 0) -> tuple[bytes, dict]:
    """The bytes a device on wire `name` sends for `signals`, CHUNK samples a write (junk between some writes),
    and what a decoder must give back."""
    encoder = CODECS[name].encoder((EMG,), "test")
    encoder.observe(signals)
    device = encoder.device_values(signals)["emg"]
    rng, writes = np.random.default_rng(0), []
    for k, begin in enumerate(range(0, len(device), CHUNK)):
        if junk_every and k % junk_every == 1:
            writes.append(encoder.junk(rng, 40))
        timestamp_us = int(round(begin * US / EMG.rate_hz))
        writes.append(encoder.encode(0, k, timestamp_us, device[begin : begin + CHUNK]))
    return b"".join(writes), encoder.sent_values({"emg": device})


@pytest.mark.parametrize("name", sorted(CODECS))
@pytest.mark.parametrize("fractional", [False, True])
def test_every_codec_round_trips_the_same_samples_through_the_same_interface(name, fractional):
    signals = recording(fractional)
    data, sent = send(name, signals)
    decoder = CODECS[name].decoder((EMG,), "test")
    rng, got, at = np.random.default_rng(1), [], 0
    while at < len(data):  # any split of the bytes
        step = int(rng.integers(1, 50))
        got += decoder.feed(data[at : at + step])
        at += step

    assert got and all(isinstance(s, Samples) and s.stream_id == 0 for s in got)
    values = np.concatenate([s.values for s in got])
    assert values.dtype == np.float32
    np.testing.assert_array_equal(values, sent["emg"])
    assert np.abs(values - signals["emg"]).max() <= (0.173 * 3000 / 32767 if fractional else 0)
    # Each piece is placed by the device time of its first sample, whichever wire carried it.
    firsts = np.cumsum([0] + [len(s.values) for s in got[:-1]])
    assert [s.timestamp_us for s in got] == [int(round(i * US / EMG.rate_hz)) for i in firsts]
    counters = decoder.counters()
    assert counters and all(isinstance(v, int) for v in counters.values())


@pytest.mark.parametrize("name", sorted(CODECS))
def test_every_codec_skips_its_junk_and_counts_it(name):
    clean, sent = send(name, recording(True))
    noisy, _ = send(name, recording(True), junk_every=3)
    decoders = {data: CODECS[name].decoder((EMG,), "test") for data in (clean, noisy)}
    values = {data: np.concatenate([s.values for s in decoder.feed(data)]) for data, decoder in decoders.items()}
    np.testing.assert_array_equal(values[noisy], sent["emg"])
    assert decoders[noisy].counters() != decoders[clean].counters()  # the junk shows in the counters


def test_frames_carry_seq_numbers_and_text_does_not():
    data, _ = send("frame", recording(False))
    assert [s.seq for s in CODECS["frame"].decoder((EMG,), "test").feed(data)] == list(range(15))
    data, _ = send("text", recording(False))
    assert {s.seq for s in CODECS["text"].decoder((EMG,), "test").feed(data)} == {None}


def test_text_carries_one_stream_and_its_rate_comes_from_the_device():
    imu = StreamSpec("imu", 50.0, ("x",))
    for make in (CODECS["text"].encoder, CODECS["text"].decoder):
        with pytest.raises(UserError, match=r"data/two: has 2 streams \(emg, imu\).*--wire frame"):
            make((EMG, imu), "data/two")
    assert CODECS["text"].device_streams((EMG,), 1000)[0].rate_hz == 1000.0
    assert CODECS["text"].device_streams((EMG,), None) == (EMG,)
    assert CODECS["frame"].device_streams((EMG, imu)) == (EMG, imu)
    with pytest.raises(UserError, match="--rate applies to --wire text"):
        CODECS["frame"].check_rate(200)


def test_an_unknown_wire_names_the_known_ones():
    with pytest.raises(UserError, match="--wire morse: .*frame, text"):
        codec("morse")


# --------------------------------------------------------------------------- the --wire option


@click.command()
@wire_option
def show_wire(wire):
    click.echo(wire)


@pytest.mark.parametrize(
    "args, wire",
    [([], "frame"), (["--wire", "text"], "text"), (["--wire", "frame"], "frame"), (["--text"], "text")],
)
def test_wire_option_and_the_old_text_flag(args, wire):
    result = CliRunner().invoke(show_wire, args)
    assert result.exit_code == 0 and result.output == f"{wire}\n"


def test_wire_option_refuses_text_with_another_wire_and_hides_the_old_flag():
    result = CliRunner().invoke(show_wire, ["--text", "--wire", "frame"])
    assert result.exit_code == 2 and "give --wire frame or --text, not both" in result.output
    result = CliRunner().invoke(show_wire, ["--help"])
    assert "--wire [frame|text]" in result.output and "--text" not in result.output
    assert CliRunner().invoke(show_wire, ["--wire", "morse"]).exit_code == 2


def test_stream_refuses_a_rate_for_binary_frames_before_loading_the_model(tmp_path):
    from edgekd.cli import main

    result = CliRunner().invoke(
        main, ["stream", "--port", "loop://", "--model", str(tmp_path / "m.tflite"), "--rate", "200"]
    )
    assert (
        result.exit_code == 2 and "--rate applies to --wire text; binary frames carry their own timing" in result.output
    )
