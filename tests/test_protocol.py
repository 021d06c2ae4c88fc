"""firmware_bridge wire protocol: binary frames (Python encoder/decoder, C reference encoder, shared vectors)
and the text mode. Light: no TensorFlow, a few seconds in all."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from firmware_bridge.protocol import (  # noqa: E402
    MAX_FRAME_SIZE,
    MAX_VALUES_PER_FRAME,
    SYNC,
    VERSION,
    DecoderStats,
    Frame,
    FrameDecoder,
    choose_scale,
    crc16,
    encode_frame,
    frame_size,
    quantize,
)
from firmware_bridge.text import MAX_LINE_BYTES, TextDecoder, encode_text_line  # noqa: E402

FIRMWARE = ROOT / "firmware_bridge" / "firmware"
VECTORS = json.loads((FIRMWARE / "test_vectors.json").read_text())


# --------------------------------------------------------------------------------------------------- helpers


def random_frame(rng, max_values: int = 300) -> Frame:
    c = int(rng.integers(1, 43))
    n = int(rng.integers(1, max(2, max_values // c + 1)))
    samples = rng.integers(-32768, 32768, size=(n, c)).astype(np.int16)
    scale = float(np.float32(rng.choice([1.0, 0.000123, 2.5, 1 / 32768, float(rng.uniform(1e-6, 10.0))])))
    return Frame(int(rng.integers(0, 256)), int(rng.integers(0, 65536)), int(rng.integers(0, 2**32)), scale, samples)


def sequence_frames(rng, count: int, stream_id: int = 0, start_seq: int = 0, c: int = 6, n: int = 11) -> list[Frame]:
    return [
        Frame(
            stream_id,
            (start_seq + i) & 0xFFFF,
            (1000 + 9900 * i) & 0xFFFFFFFF,
            1.0,
            rng.integers(-2000, 2000, size=(n, c)).astype(np.int16),
        )
        for i in range(count)
    ]


def wire(frames) -> list[bytes]:
    return [f.to_bytes() for f in frames]


def decode(data: bytes, chunks=None, flush: bool = False):
    dec = FrameDecoder()
    out = []
    if chunks is None:
        out += dec.feed(data)
    else:
        pos = 0
        for size in chunks:
            out += dec.feed(data[pos : pos + size])
            pos += size
        out += dec.feed(data[pos:])
    if flush:
        out += dec.flush()
    return out, dec


def random_chunks(rng, total: int, max_chunk: int = 64) -> list[int]:
    sizes, left = [], total
    while left > 0:
        s = int(rng.integers(0, max_chunk + 1))  # 0-byte feeds included
        sizes.append(min(s, left))
        left -= s
    return sizes


def check_accounting(dec: FrameDecoder, fed: int, frames) -> None:
    """Every byte fed is in a valid frame, discarded, or still held back."""
    assert fed == sum(frame_size(*f.samples.shape) for f in frames) + dec.stats.bytes_discarded + dec.buffered
    assert dec.buffered <= FrameDecoder.BUFFER_LIMIT and dec._peak <= FrameDecoder.BUFFER_LIMIT


# --------------------------------------------------------------------------------------------------- frames


def test_round_trip_random_frames():
    rng = np.random.default_rng(0)
    frames = [random_frame(rng) for _ in range(200)]
    data = b"".join(wire(frames))
    out, dec = decode(data)
    assert out == frames
    assert dec.stats.frames == 200 and dec.stats.crc_errors == dec.stats.resyncs == dec.stats.bytes_discarded == 0
    assert dec.buffered == 0
    for f in out[:20]:
        assert f.samples.dtype == np.int16 and f.values().dtype == np.float32
        np.testing.assert_array_equal(f.values(), f.samples.astype(np.float32) * np.float32(f.scale))


def test_frame_layout_matches_spec():
    samples = np.array([[1, -2], [300, -32768]], dtype=np.int16)
    data = encode_frame(1, 7, 0x12345678, samples, 0.5)
    assert data[:2] == SYNC == b"\xa5\x5a" and data[2] == VERSION == 1 and data[3] == 1
    assert data[4:6] == b"\x07\x00" and data[6:10] == b"\x78\x56\x34\x12"
    assert data[10:12] == b"\x02\x00" and data[12] == 2 and data[13] == 0
    assert data[14:18] == np.float32(0.5).tobytes() == b"\x00\x00\x00\x3f"
    assert data[18:26] == bytes.fromhex("0100feff2c010080")
    assert int.from_bytes(data[26:], "little") == crc16(data[2:26])
    assert len(data) == frame_size(2, 2) == 28
    assert crc16(b"123456789") == 0x29B1


def test_encode_rejects_what_the_decoder_would_not_accept():
    ok = np.zeros((2, 3), dtype=np.int16)
    for bad in [
        dict(stream_id=256),
        dict(stream_id=-1),
        dict(seq=-1),
        dict(scale=0.0),
        dict(scale=-1.0),
        dict(scale=float("nan")),
        dict(scale=float("inf")),
        dict(scale=1e39),
        dict(samples=np.zeros((0, 3), np.int16)),
        dict(samples=np.zeros((2, 0), np.int16)),
        dict(samples=np.zeros(5, np.int16)),
        dict(samples=np.zeros((4097, 1), np.int16)),
        dict(samples=np.zeros((1, 256), np.int16)),
        dict(samples=np.array([[40000]])),
        dict(samples=np.array([[0.5]])),
    ]:
        kw = dict(stream_id=0, seq=0, timestamp_us=0, samples=ok, scale=1.0) | bad
        with pytest.raises(ValueError):
            encode_frame(**kw)
    # seq and timestamp wrap like the device counters; any integer dtype within int16 is fine
    assert encode_frame(0, 65536 + 5, 2**32 + 9, np.array([[1, 2]], np.int64), 1.0) == encode_frame(
        0, 5, 9, np.array([[1, 2]], np.int16), 1.0
    )
    assert len(encode_frame(0, 0, 0, np.zeros((4096, 1), np.int16), 1.0)) == MAX_FRAME_SIZE


def test_any_split_gives_the_same_frames_and_stats():
    rng = np.random.default_rng(1)
    parts = []
    for f in [random_frame(rng, 120) for _ in range(30)]:
        parts.append(f.to_bytes())
        if rng.random() < 0.4:  # garbage, sync-looking junk, a corrupt frame
            parts.append(
                rng.choice(
                    [
                        bytes(rng.integers(0, 256, int(rng.integers(1, 40)), dtype=np.uint8)),
                        SYNC + bytes(rng.integers(0, 256, 20, dtype=np.uint8)),
                        b"\xa5",
                        b"\xa5\xa5",
                        random_frame(rng, 50).to_bytes()[:-1] + b"\x00",
                    ]
                )
            )
    data = b"".join(parts)
    ref, ref_dec = decode(data)
    assert len(ref) >= 30
    splits = [[1] * len(data), [2] * (len(data) // 2), [17] * (len(data) // 17 + 1)]
    splits += [random_chunks(rng, len(data), m) for m in (3, 30, 300, 5000)]
    for chunks in splits:
        out, dec = decode(data, chunks)
        assert out == ref
        assert dec.stats == ref_dec.stats and dec.buffered == ref_dec.buffered


def test_resync_after_garbage_before_and_between_frames():
    rng = np.random.default_rng(2)
    frames = sequence_frames(rng, 12)
    parts, garbage_runs, garbage_bytes = [], 0, 0
    for i, b in enumerate(wire(frames)):
        if i % 3 == 0:  # garbage without 0xA5: nothing in it can look like a frame
            g = (
                bytes(x for x in rng.integers(0, 256, int(rng.integers(1, 200)), dtype=np.uint8) if x != 0xA5)
                or b"\x00"
            )
            parts.append(g)
            garbage_runs += 1
            garbage_bytes += len(g)
        parts.append(b)
    out, dec = decode(b"".join(parts), random_chunks(rng, sum(map(len, parts)), 100))
    assert out == frames
    s = dec.stats
    assert (s.frames, s.crc_errors, s.resyncs, s.bytes_discarded) == (12, 0, garbage_runs, garbage_bytes)
    assert (s.sequence_gaps, s.frames_lost) == (0, 0)


def test_resync_through_sync_looking_garbage():
    rng = np.random.default_rng(3)
    frames = sequence_frames(rng, 10)
    parts, junk = [], 0
    for b in wire(frames):
        # a sync + a plausible header claiming a frame that runs into the next real one
        fake = bytearray(b[:18])
        fake[10:12] = (20).to_bytes(2, "little")  # 260 bytes claimed
        g = bytes(fake) + b"\xa5\x5a\xa5"
        parts += [g, b]
        junk += len(g)
    data = b"".join(parts)
    out, dec = decode(data, flush=True)
    assert out == frames
    assert dec.stats.bytes_discarded == junk and dec.stats.crc_errors >= 9 and dec.stats.resyncs == 10
    check_accounting(dec, len(data), out)


def _corrupt(kind: str, frame_bytes: bytes, rng) -> bytes:
    b = bytearray(frame_bytes)
    if kind == "payload_bit":
        b[18 + 5] ^= 0x10
    elif kind == "header_version":
        b[2] = 2
    elif kind == "header_seq_byte":
        b[4] ^= 0xFF
    elif kind == "header_flags":
        b[13] = 1
    elif kind == "sync_byte":
        b[1] = 0x5B
    elif kind == "crc_byte":
        b[-1] ^= 0x01
    elif kind == "truncated":
        b = b[: len(b) // 2]
    elif kind == "huge_length_over_max":
        b[10:12] = b"\xff\xff"
    elif kind == "huge_length_within_max":  # 4096 values: the decoder waits for 8212 bytes, then the CRC fails
        b[10:12] = (MAX_VALUES_PER_FRAME // b[12]).to_bytes(2, "little")
    else:
        raise AssertionError(kind)
    return bytes(b)


@pytest.mark.parametrize(
    "kind",
    [
        "payload_bit",
        "header_version",
        "header_seq_byte",
        "header_flags",
        "sync_byte",
        "crc_byte",
        "truncated",
        "huge_length_over_max",
        "huge_length_within_max",
    ],
)
def test_each_corruption_loses_only_the_damaged_frame(kind):
    rng = np.random.default_rng(4)
    frames = sequence_frames(rng, 80)  # ~12 KB after the damaged frame: more than one max frame
    parts = wire(frames)
    damaged = 3
    parts[damaged] = _corrupt(kind, parts[damaged], rng)
    data = b"".join(parts)
    expected = frames[:damaged] + frames[damaged + 1 :]
    out, dec = decode(data, random_chunks(rng, len(data), 500))
    assert out == expected
    s = dec.stats
    assert s.frames == 79 and s.resyncs == 1 and s.bytes_discarded == len(parts[damaged])
    assert s.crc_errors == (
        1 if kind in ("payload_bit", "header_seq_byte", "crc_byte", "truncated", "huge_length_within_max") else 0
    )
    assert (s.sequence_gaps, s.frames_lost) == (1, 1)
    assert dec.buffered == 0


def test_bogus_sync_inside_payload_loses_nothing():
    rng = np.random.default_rng(5)
    frames = sequence_frames(rng, 6)
    inner = Frame(9, 1, 2, 1.0, np.array([[5, 6]], np.int16)).to_bytes()  # a complete valid frame image
    words = np.frombuffer(SYNC + b"\x01\x00\x00\x00" + inner + b"\xa5\x5a", dtype="<i2")
    frames[2] = Frame(0, 2, 0, 1.0, np.concatenate([words, frames[2].samples.ravel()])[:66].reshape(11, 6))
    out, dec = decode(b"".join(wire(frames)), [7] * 200)
    assert out == frames and dec.stats.resyncs == dec.stats.crc_errors == 0
    # the same frame damaged: its span is rescanned, so the valid inner frame now shows up, and the rest follow
    parts = wire(frames)
    parts[2] = _corrupt("crc_byte", parts[2], rng)
    out, dec = decode(b"".join(parts))
    inner_frame = Frame(9, 1, 2, 1.0, np.array([[5, 6]], np.int16))
    assert out == frames[:2] + [inner_frame] + frames[3:]


def test_truncated_last_frame_and_flush():
    rng = np.random.default_rng(6)
    frames = sequence_frames(rng, 5)
    parts = wire(frames)
    parts[2] = _corrupt("huge_length_within_max", parts[2], rng)  # claims more bytes than the stream has left
    data = b"".join(parts)
    dec = FrameDecoder()
    out = dec.feed(data)
    assert out == frames[:2] and dec.buffered == len(data) - len(parts[0]) - len(parts[1])
    out += dec.flush()
    assert out == frames[:2] + frames[3:] and dec.buffered == 0
    check_accounting(dec, len(data), out)
    # a frame cut off at the very end: held back until flush, then discarded
    dec = FrameDecoder()
    whole = b"".join(wire(frames)) + wire(frames)[0][:10]
    assert dec.feed(whole) == frames and dec.buffered == 10
    assert dec.flush() == [] and dec.buffered == 0 and dec.stats.bytes_discarded == 10


def test_sequence_gaps_and_wraparound():
    def stats_for(seqs_by_stream):
        frames = [Frame(sid, seq, 0, 1.0, np.zeros((1, 1), np.int16)) for sid, seq in seqs_by_stream]
        return decode(b"".join(wire(frames)))[1].stats

    s = stats_for([(0, 65534), (0, 65535), (0, 0), (0, 1)])
    assert (s.sequence_gaps, s.frames_lost) == (0, 0)
    s = stats_for([(0, 10), (0, 11), (0, 15)])
    assert (s.sequence_gaps, s.frames_lost) == (1, 3)
    s = stats_for([(0, 65534), (0, 1)])  # 65535 and 0 are missing
    assert (s.sequence_gaps, s.frames_lost) == (1, 2)
    s = stats_for([(0, 5), (1, 100), (0, 6), (1, 101), (2, 0), (0, 7)])  # per stream
    assert (s.sequence_gaps, s.frames_lost) == (0, 0)
    s = stats_for([(0, 5), (1, 100), (0, 7), (1, 103)])
    assert (s.sequence_gaps, s.frames_lost) == (2, 3)
    s = stats_for([(0, 500), (0, 0), (0, 1), (0, 1)])  # device restart, duplicate: gap events, nothing lost
    assert (s.sequence_gaps, s.frames_lost) == (2, 0)
    assert DecoderStats(frames=3).as_dict()["frames"] == 3


def test_fuzz_random_bytes_and_mutated_streams():
    rng = np.random.default_rng(7)
    base = [random_frame(rng, 60).to_bytes() for _ in range(40)] + [f.to_bytes() for f in sequence_frames(rng, 10)]
    started = time.perf_counter()
    for it in range(2000):
        mode = it % 4
        if mode == 0:  # random bytes, sometimes dense in sync bytes
            data = bytes(rng.integers(0, 256, int(rng.integers(0, 400)), dtype=np.uint8))
            if rng.random() < 0.5:
                data = data.replace(b"\x00", SYNC).replace(b"\x01", b"\xa5")
        else:  # a valid stream with random mutations
            picks = rng.integers(0, len(base), int(rng.integers(1, 8)))
            b = bytearray(b"".join(base[i] for i in picks))
            for _ in range(int(rng.integers(0, 6))):
                op, at = int(rng.integers(0, 5)), int(rng.integers(0, len(b) + 1))
                if op == 0 and len(b):
                    b[min(at, len(b) - 1)] ^= 1 << int(rng.integers(0, 8))
                elif op == 1:
                    b[at:at] = bytes(rng.integers(0, 256, int(rng.integers(1, 20)), dtype=np.uint8))
                elif op == 2:
                    del b[at : at + int(rng.integers(1, 30))]
                elif op == 3:
                    b[at:at] = SYNC + bytes([1, 0, 0, 0, 0, 0, 0, 0]) + bytes(rng.integers(0, 256, 8, dtype=np.uint8))
                else:
                    b[at:at] = b[max(0, at - 40) : at]  # duplicated bytes
            data = bytes(b)
        ref, ref_dec = decode(data)
        check_accounting(ref_dec, len(data), ref)
        out, dec = decode(data, random_chunks(rng, len(data), int(rng.integers(1, 200))))
        assert out == ref and dec.stats == ref_dec.stats
        for f in ref:  # whatever passed the CRC is a well-formed frame
            assert f.samples.dtype == np.int16 and 0 < f.scale < np.inf and f.to_bytes() in data
        tail = dec.flush()
        check_accounting(dec, len(data), out + tail)
        assert dec.buffered == 0
    assert time.perf_counter() - started < 60  # no hang (takes a few seconds)


def test_buffer_stays_bounded_for_huge_feeds():
    rng = np.random.default_rng(8)
    dec = FrameDecoder()
    junk = bytes(rng.integers(0, 256, 1 << 20, dtype=np.uint8)).replace(b"\x00", b"\xa5")
    from_junk = dec.feed(junk)  # (a false frame in 1 MiB of junk is possible in principle, not with this seed)
    assert dec._peak <= FrameDecoder.BUFFER_LIMIT and dec.buffered < MAX_FRAME_SIZE
    frames = sequence_frames(rng, 300)
    data = b"".join(wire(frames))
    assert dec.feed(data) == frames  # a candidate pending at the junk's end is rejected; nothing after it is lost
    check_accounting(dec, len(junk) + len(data), from_junk + frames)


def test_decoder_throughput_well_above_real_time():
    """6 sEMG channels at 1,111 Hz + 36 IMU channels at 148 Hz, ~10 ms frames: one second of device data."""
    rng = np.random.default_rng(9)
    parts, emg_done, imu_done = [], 0, 0
    for tick in range(1, 101):
        emg_n = round(tick * 11.11) - emg_done
        imu_n = round(tick * 1.48) - imu_done
        parts.append(encode_frame(0, tick, tick * 10000, rng.integers(-3000, 3000, (emg_n, 6)), 1.0))
        if imu_n:
            parts.append(encode_frame(1, tick, tick * 10000, rng.integers(-3000, 3000, (imu_n, 36)), 0.001))
        emg_done += emg_n
        imu_done += imu_n
    second = b"".join(parts)
    seconds = 10
    data = second * seconds  # (sequence numbers repeat: gaps are counted, which costs the same)
    chunks = [len(data) // 200] * 200
    best = np.inf
    for _ in range(3):
        t0 = time.perf_counter()
        out, _dec = decode(data, chunks)
        best = min(best, time.perf_counter() - t0)
    assert sum(len(f.samples) for f in out) == seconds * (emg_done + imu_done)
    speed = seconds / best
    print(f"decoder: {speed:.0f}x real time, {seconds * (emg_done + imu_done) / best:,.0f} samples/s")
    assert speed > 20  # typically several hundred x; loose because the machine is shared


# --------------------------------------------------------------------------------------------------- scale


def test_choose_scale_and_quantize_exact_for_integer_data():
    x = np.array([[0, 1, -1], [32767, -32768, 12345]], dtype=np.float64)
    assert choose_scale(x) == 1.0
    q = quantize(x, 1.0)
    assert q.dtype == np.int16 and np.array_equal(q, x.astype(np.int16))
    assert choose_scale(np.zeros((5, 2))) == 1.0 and choose_scale(np.array([], dtype=float)) == 1.0
    assert choose_scale(np.arange(-5, 5)) == 1.0


def test_choose_scale_and_quantize_bounded_error_for_float_data():
    rng = np.random.default_rng(10)
    for peak in [1e-3, 0.7, 1.0, 3.3, 32767.5, 40000.0, 1e6]:
        x = rng.uniform(-peak, peak, size=(200, 6))
        x[0, 0] = peak
        s = choose_scale(x)
        assert s > 0 and float(np.float32(s)) == s
        q = quantize(x, s)
        assert q.dtype == np.int16 and int(np.abs(q).max()) >= 32766
        err = np.abs(q.astype(np.float64) * s - x)
        assert err.max() <= 0.5 * s * (1 + 1e-3) + 1e-6 * peak
        f = Frame(0, 0, 0, s, q)
        assert np.abs(f.values() - x).max() <= 0.51 * s + 1e-6 * peak
    assert choose_scale(np.array([0.5])) == pytest.approx(0.5 / 32767)
    assert choose_scale(np.array([40000])) == pytest.approx(40000 / 32767, rel=1e-7)
    assert choose_scale(np.array([1e-44])) > 0
    with pytest.raises(ValueError):
        choose_scale(np.array([1.0, np.nan]))


def test_quantize_rounding_half_away_from_zero_and_clipping():
    q = quantize(np.array([0.25, -0.25, 0.75, 1.25, -1.25, 0.2, 16383.75, -16384.25, np.inf, -np.inf, np.nan]), 0.5)
    assert q.tolist() == [1, -1, 2, 3, -3, 0, 32767, -32768, 32767, -32768, 0]
    for v in VECTORS["quantize"]:
        assert int(quantize(np.array([v["value"]]), v["scale"])[0]) == v["expected"], v


# --------------------------------------------------------------------------------------------------- vectors / C


def _vector_frames():
    for v in VECTORS["frames"]:
        samples = np.array(v["samples"], dtype=np.int16).reshape(v["n_samples"], v["n_channels"])
        yield v, samples


def test_python_reproduces_the_shared_vectors():
    assert VECTORS["protocol_version"] == VERSION
    assert format(crc16(VECTORS["crc_check"]["input_ascii"].encode()), "04x") == VECTORS["crc_check"]["crc16_hex"]
    names = set()
    for v, samples in _vector_frames():
        names.add(v["name"])
        assert np.float32(v["scale"]).view(np.uint32) == int(v["scale_bits"], 16)
        data = encode_frame(v["stream_id"], v["seq"], v["timestamp_us"], samples, v["scale"])
        assert data.hex() == v["frame_hex"], v["name"]
        (frame,) = FrameDecoder().feed(bytes.fromhex(v["frame_hex"]))
        assert frame == Frame(v["stream_id"], v["seq"], v["timestamp_us"], float(np.float32(v["scale"])), samples)
    assert len(names) >= 6


@pytest.fixture(scope="module")
def c_driver(tmp_path_factory):
    cc = shutil.which("cc") or shutil.which("gcc") or shutil.which("clang")
    if cc is None:
        pytest.skip("no C compiler")
    out = tmp_path_factory.mktemp("cdriver")
    subprocess.run(
        [
            cc,
            "-std=c99",
            "-Wall",
            "-Wextra",
            "-Werror",
            "-pedantic",
            "-c",
            str(FIRMWARE / "edgekd_frame.c"),
            "-o",
            str(out / "edgekd_frame.o"),
        ],
        check=True,
        capture_output=True,
    )
    exe = out / "make_vectors"
    subprocess.run(
        [
            cc,
            "-std=c99",
            "-O2",
            "-Wall",
            "-Wextra",
            "-Werror",
            "-o",
            str(exe),
            str(FIRMWARE / "make_vectors.c"),
            str(FIRMWARE / "edgekd_frame.c"),
        ],
        check=True,
        capture_output=True,
    )

    def run(lines: list[str]) -> list[str]:
        res = subprocess.run([str(exe)], input="\n".join(lines) + "\n", capture_output=True, text=True, timeout=30)
        assert res.returncode == 0, res
        return res.stdout.split()

    return run


def _f32_bits(x) -> str:
    return format(int(np.float32(x).view(np.uint32)), "08x")


def _f_command(cap, sid, seq, ts, samples, scale_bits) -> str:
    n, c = samples.shape
    return " ".join(map(str, ["F", cap, sid, seq, ts, n, c, scale_bits, *samples.ravel().tolist()]))


def test_c_encoder_matches_vectors_and_python(c_driver):
    lines, expected = [], []
    for v, samples in _vector_frames():
        lines.append(
            _f_command(len(v["frame_hex"]) // 2, v["stream_id"], v["seq"], v["timestamp_us"], samples, v["scale_bits"])
        )
        expected.append(v["frame_hex"])
    rng = np.random.default_rng(11)
    for _ in range(20):
        f = random_frame(rng, 400)
        lines.append(_f_command(MAX_FRAME_SIZE, f.stream_id, f.seq, f.timestamp_us, f.samples, _f32_bits(f.scale)))
        expected.append(f.to_bytes().hex())
    big = Frame(3, 1, 2, 1.0, rng.integers(-32768, 32768, (4096, 1)).astype(np.int16))
    lines.append(_f_command(MAX_FRAME_SIZE, 3, 1, 2, big.samples, _f32_bits(1.0)))
    expected.append(big.to_bytes().hex())
    lines.append("C " + VECTORS["crc_check"]["input_ascii"].encode().hex())
    expected.append(VECTORS["crc_check"]["crc16_hex"])
    assert c_driver(lines) == expected


def test_c_encoder_rejects_invalid_input(c_driver):
    one = np.array([[1]], np.int16)
    lines = [
        _f_command(21, 0, 0, 0, one, "3f800000"),  # capacity one byte short
        _f_command(22, 0, 0, 0, one, "7fc00000"),  # NaN scale
        _f_command(22, 0, 0, 0, one, "7f800000"),  # +inf scale
        _f_command(22, 0, 0, 0, one, "00000000"),  # zero scale
        _f_command(22, 0, 0, 0, one, "bf800000"),  # negative scale
        "F 100 0 0 0 0 6 3f800000",  # no samples
        _f_command(22, 0, 0, 0, one, "3f800000"),  # exactly fits
        "S 1 1",
        "S 4096 1",
        "S 4097 1",
        "S 0 3",
        "S 3 0",
        "S 16 255",
        "S 17 255",
        "C -",
    ]
    assert c_driver(lines) == ["ERR"] * 6 + [
        encode_frame(0, 0, 0, one, 1.0).hex(),
        "22",
        str(MAX_FRAME_SIZE),
        "0",
        "0",
        "0",
        str(frame_size(16, 255)),
        "0",
        "ffff",
    ]


def test_c_quantize_matches_python(c_driver):
    rng = np.random.default_rng(12)
    cases = [(v["scale_bits"], v["value_bits"], v["expected"]) for v in VECTORS["quantize"]]
    values = np.concatenate(
        [rng.normal(0, 2, 300), rng.uniform(-1e5, 1e5, 100), np.arange(-8, 8) / 4, [np.inf, -np.inf, np.nan, 0.0, -0.0]]
    ).astype(np.float32)
    for scale in [1.0, 0.5, 0.000123, 3.0, 1 / 32768]:
        for x, q in zip(values, quantize(values, scale)):
            cases.append((_f32_bits(scale), _f32_bits(x), int(q)))
    got = c_driver([f"Q {s} {x}" for s, x, _ in cases])
    assert [int(g) for g in got] == [q for _, _, q in cases]


def test_arduino_sketch_compiles_against_a_stub(tmp_path):
    cxx = shutil.which("c++") or shutil.which("g++") or shutil.which("clang++")
    if cxx is None:
        pytest.skip("no C++ compiler")
    (tmp_path / "Arduino.h").write_text(
        textwrap.dedent("""\
        #include <stdint.h>
        #include <stddef.h>
        struct SerialStub { void begin(unsigned long) {} size_t write(const uint8_t *, size_t n) { return n; }
                            explicit operator bool() const { return true; } };
        extern SerialStub Serial;
        int analogRead(uint8_t pin);
        unsigned long micros(void);
        enum { A0 = 14, A1, A2, A3, A4, A5 };
        """)
    )
    res = subprocess.run(
        [
            cxx,
            "-std=c++11",
            "-Wall",
            "-Wextra",
            "-Werror",
            "-fsyntax-only",
            f"-I{tmp_path}",
            f"-I{FIRMWARE}",
            "-include",
            "Arduino.h",
            "-x",
            "c++",
            str(FIRMWARE / "edgekd_stream" / "edgekd_stream.ino"),
        ],
        capture_output=True,
        text=True,
    )
    assert res.returncode == 0, res.stderr


# --------------------------------------------------------------------------------------------------- text mode


def test_text_decoder_separators_partial_lines_and_bad_lines():
    dec = TextDecoder(3)
    rows = dec.feed(b"1,2,3\n4\t5 6\r\n# comment\n\n  7 ,\t 8,,9  \r\n1.5e3 -2 +0.25\n")
    np.testing.assert_array_equal(rows, [[1, 2, 3], [4, 5, 6], [7, 8, 9], [1500, -2, 0.25]])
    assert rows.dtype == np.float32 and (dec.stats.lines, dec.stats.bad_lines) == (4, 0)
    assert dec.feed(b"10,11").shape == (0, 3)  # partial: waits
    assert dec.feed(b",12").shape == (0, 3)
    np.testing.assert_array_equal(dec.feed(b"\r"), np.zeros((0, 3)))
    np.testing.assert_array_equal(dec.feed(b"\n13,14,15\n"), [[10, 11, 12], [13, 14, 15]])
    rows = dec.feed(b"1,2\n1,2,3,4\na,b,c\n1,2,x\nnan,1,2\n1,inf,2\n1e39,0,0\n5,6,7\n\xff\xfe,1,2\n")
    np.testing.assert_array_equal(rows, [[5, 6, 7]])
    assert (dec.stats.lines, dec.stats.bad_lines) == (7, 8)
    assert dec.stats.as_dict() == {"lines": 7, "bad_lines": 8}


def test_text_decoder_any_split_and_bounded_line():
    rng = np.random.default_rng(13)
    values = rng.normal(0, 100, (50, 4))
    data = b"".join(encode_text_line(r) for r in values) + b"#x\n1,2\n"
    ref = TextDecoder(4).feed(data)
    np.testing.assert_array_equal(ref, values.astype(np.float32))
    for m in (1, 7, 100):
        dec, out, pos = TextDecoder(4), [], 0
        for size in random_chunks(rng, len(data), m):
            out.append(dec.feed(data[pos : pos + size]))
            pos += size
        np.testing.assert_array_equal(np.concatenate(out), ref)
        assert (dec.stats.lines, dec.stats.bad_lines) == (50, 1)
    dec = TextDecoder(2)
    assert len(dec.feed(b"9" * (MAX_LINE_BYTES + 10))) == 0 and dec.buffered == 0 and dec.stats.bad_lines == 1
    assert len(dec.feed(b"9" * 5000)) == 0 and dec.buffered == 0
    np.testing.assert_array_equal(dec.feed(b"99\n3,4\n"), [[3, 4]])  # the rest of the long line is dropped
    assert dec.stats.bad_lines == 1


def test_encode_text_line_round_trips():
    assert encode_text_line([1, -2, 3.0]) == b"1,-2,3\n"
    assert encode_text_line(np.array([0.1, 2.5, -0.0])) == b"0.1,2.5,0\n"
    x = [0.1, 1 / 3, 1e-300, -123456.789, 2.0**60 + 0.5]
    line = encode_text_line(x)
    assert [float(t) for t in line.decode().strip().split(",")] == x
    assert encode_text_line(np.array([7], np.int16)) == b"7\n"
    with pytest.raises(ValueError):
        encode_text_line([1.0, float("nan")])
    with pytest.raises(ValueError):
        encode_text_line([])


# --------------------------------------------------------------------------------------------------- imports


def test_protocol_and_text_import_no_tensorflow():
    code = textwrap.dedent(f"""\
        import sys
        sys.path.insert(0, {str(ROOT)!r})
        before = set(sys.modules)
        import firmware_bridge.protocol, firmware_bridge.text
        new = set(sys.modules) - before
        assert not any(m == "tensorflow" or m.startswith("tensorflow.") for m in sys.modules), "tensorflow"
        third_party = sorted(m for m in new if "site-packages" in str(getattr(sys.modules[m], "__file__", "") or "")
                             and m.split(".")[0] != "numpy")
        assert not third_party, third_party
        print("ok")
        """)
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert res.returncode == 0 and res.stdout.strip() == "ok", res.stderr
