"""Hostile input, measured: the wire decoder, recording files and model files under random and mutated bytes.

    .venv/bin/python benchmarks/fuzz.py            # about 3 minutes on 2 cores; writes RESULTS.md's FUZZ section

Four generators, seeded, each counting what happened to every case (nothing may end in an exception other than
edgekd's one-line UserError, and nothing may hang):
- wire: random byte runs (some dense in sync bytes) and valid frame streams with flipped bits, inserted, deleted and
  duplicated bytes, fed to firmware_bridge's FrameDecoder in random splits; then 50 MB of garbage with frames
  between, for throughput and the decoder's peak buffer;
- recordings: a valid .npz and a valid .csv recording with random byte mutations and truncations, read by the
  dataset loader;
- models: an exported int8 student with one to four random bytes changed, loaded and run by the device-side runtime
  (each batch in a child process, since a crash inside the TFLite runtime would end this one); once as exported (its
  checksum refuses nearly every change) and once without edgekd's metadata, as a file from elsewhere (which the
  runtime module first tries in a child process of its own);
- metadata: an exported model whose edgekd metadata gets one random edit, checked against its export checksum.
"""

from __future__ import annotations

import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))

from results_md import publish  # noqa: E402

from edgekd.errors import UserError  # noqa: E402
from edgekd.io import write_json_atomic  # noqa: E402
from firmware_bridge.protocol import SYNC, FrameDecoder, encode_frame  # noqa: E402

RECORD = HERE / "records" / "fuzz.json"


def frames(rng, n: int) -> list[bytes]:
    out = []
    for i in range(n):
        channels = int(rng.integers(1, 9))
        out.append(
            encode_frame(
                int(rng.integers(0, 3)),
                i,
                i * 10_000,
                rng.integers(-3000, 3000, (int(rng.integers(1, 12)), channels)),
                1.0,
            )
        )
    return out


def mutate(rng, data: bytes, edits: int) -> bytes:
    b = bytearray(data)
    for _ in range(edits):
        op, at = int(rng.integers(0, 4)), int(rng.integers(0, len(b) + 1))
        if op == 0 and b:
            b[min(at, len(b) - 1)] ^= 1 << int(rng.integers(0, 8))
        elif op == 1:
            b[at:at] = bytes(rng.integers(0, 256, int(rng.integers(1, 24)), dtype=np.uint8))
        elif op == 2:
            del b[at : at + int(rng.integers(1, 32))]
        else:
            b[at:at] = b[max(0, at - 48) : at]
    return bytes(b)


def wire(cases: int = 20_000) -> dict:
    rng = np.random.default_rng(21)
    tried = exceptions = 0
    sent = recovered = 0
    for it in range(cases):
        if it % 2 == 0:
            data = bytes(rng.integers(0, 256, int(rng.integers(0, 600)), dtype=np.uint8))
            if it % 4 == 0:
                data = data.replace(b"\x00", SYNC)
            clean = []
        else:
            clean = frames(rng, int(rng.integers(1, 10)))
            data = mutate(rng, b"".join(clean), int(rng.integers(0, 5)))
        tried += 1
        try:
            decoder, got, at = FrameDecoder(), [], 0
            while at < len(data):
                step = int(rng.integers(1, 200))
                got += decoder.feed(data[at : at + step])
                at += step
            got += decoder.flush()
        except Exception:  # noqa: BLE001 - counting, not hiding: the record must show 0
            exceptions += 1
            continue
        intact = [f for f in clean if f in data]
        decoded = {g.to_bytes() for g in got}
        sent += len(intact)
        recovered += sum(1 for f in intact if f in decoded)
    garbage = bytes(np.random.default_rng(22).integers(0, 256, 50 << 20, dtype=np.uint8)).replace(b"\x00", b"\xa5")
    valid = frames(rng, 2000)
    stream = bytearray()
    for i, f in enumerate(valid):
        stream += garbage[i * 25_000 : (i + 1) * 25_000] + f
    decoder = FrameDecoder()
    started = time.perf_counter()
    out = []
    for at in range(0, len(stream), 65536):
        out += decoder.feed(bytes(stream[at : at + 65536]))
    seconds = time.perf_counter() - started
    return {
        "cases": tried,
        "exceptions": exceptions,
        "intact_frames": sent,
        "recovered": recovered,
        "garbage_mb": round(len(stream) / 1e6, 1),
        "frames_in_garbage": len(valid),
        "frames_recovered_from_garbage": sum(1 for f in out if f.to_bytes() in set(valid)),
        "mb_per_s": round(len(stream) / 1e6 / seconds, 1),
        "peak_buffer_bytes": decoder._peak,
    }


def recordings(cases: int = 3000) -> dict:
    from edgekd.data.dataset import load_dataset

    rng = np.random.default_rng(23)
    counts = {"cases": 0, "loaded": 0, "user_errors": 0, "exceptions": 0}
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        (root / "dataset.toml").write_text(
            'classes = ["x", "y"]\n[streams.emg]\nrate_hz = 200\nchannels = ["a", "b"]\n'
        )
        (root / "recordings.csv").write_text("path,subject,label\nr.npz,s1,x\nr.csv,s1,y\n")
        np.savez(root / "valid.npz", emg=rng.normal(size=(400, 2)).astype(np.float32))
        valid = {
            "npz": (root / "valid.npz").read_bytes(),
            "csv": ("a,b\n" + "\n".join(f"{x:.3f},{y:.3f}" for x, y in rng.normal(size=(400, 2)))).encode(),
        }
        dataset = load_dataset(root)
        for i in range(cases):
            kind = ("npz", "csv")[i % 2]
            data = valid[kind]
            data = (
                data[: int(rng.integers(0, len(data)))]
                if rng.random() < 0.2
                else mutate(rng, data, int(rng.integers(1, 6)))
            )
            (root / f"r.{kind}").write_bytes(data)
            counts["cases"] += 1
            try:
                dataset.load_signals(dataset.recordings[i % 2])
                counts["loaded"] += 1
            except UserError:
                counts["user_errors"] += 1
            except Exception:  # noqa: BLE001
                counts["exceptions"] += 1
    return counts


MODEL_BATCH = """
import json, sys, numpy as np
from edgekd.errors import UserError
from edgekd.runtime.interpreter import TFLiteModel
data = open(sys.argv[1], "rb").read()
rng = np.random.default_rng(int(sys.argv[2]))
counts = {"cases": 0, "ran": 0, "user_errors": 0, "exceptions": 0}
for _ in range(int(sys.argv[3])):
    b = bytearray(data)
    for _ in range(int(rng.integers(1, 5))):
        b[int(rng.integers(8, len(b)))] = int(rng.integers(0, 256))
    open(sys.argv[4], "wb").write(bytes(b))
    counts["cases"] += 1
    print(json.dumps(counts), flush=True)
    try:
        model = TFLiteModel.load(sys.argv[4])
        model.predict_logits(np.zeros((2, *model.window_shape), np.float32))
        counts["ran"] += 1
    except UserError:
        counts["user_errors"] += 1
    except Exception:
        counts["exceptions"] += 1
print(json.dumps(counts), flush=True)
"""


def models(model: Path, batches: int = 20, per_batch: int = 100) -> dict:
    total = {"cases": 0, "ran": 0, "user_errors": 0, "exceptions": 0, "runtime_crashes": 0}
    with tempfile.TemporaryDirectory() as tmp:
        for batch in range(batches):
            proc = subprocess.run(
                [
                    sys.executable,
                    "-c",
                    MODEL_BATCH,
                    str(model),
                    str(100 + batch),
                    str(per_batch),
                    str(Path(tmp) / "m.tflite"),
                ],
                capture_output=True,
                text=True,
                cwd=HERE.parent,
            )
            lines = [json.loads(line) for line in proc.stdout.splitlines() if line.startswith("{")]
            last = lines[-1] if lines else {"cases": 0}
            if proc.returncode != 0:  # the runtime crashed on the case it was on: count it, go on with a new batch
                total["runtime_crashes"] += 1
                last = {**last, "cases": last["cases"]}
            for key in ("cases", "ran", "user_errors", "exceptions"):
                total[key] += last.get(key, 0)
    return total


def metadata(model: Path, cases: int = 500) -> dict:
    from edgekd.export.metadata_writer import embed_metadata
    from edgekd.runtime.metadata import altered, read_metadata

    rng = np.random.default_rng(24)
    data = model.read_bytes()
    meta = read_metadata(data)
    caught = 0
    for _ in range(cases):
        edited = json.loads(json.dumps(meta))
        key = str(rng.choice([k for k in edited if k != "integrity"]))
        edited[key] = {"edited": int(rng.integers(0, 1 << 30))}
        caught += altered(embed_metadata(data, edited), edited)
    return {"cases": cases, "caught": caught}


def exported_model(folder: Path) -> Path:
    from edgekd.datasets import bundled_dataset
    from edgekd.distill.run import DistillConfig, distill
    from edgekd.export.export import export_run

    run = folder / "run"
    distill(
        DistillConfig(
            dataset=str(bundled_dataset("myo5")),
            out=str(run),
            epochs=2,
            teachers=1,
            test_on=["2"],
            val_on=["1"],
            verbose=0,
        )
    )
    return export_run(run, "int8", folder / "student-int8.tflite", min_agreement=0.0, log=lambda m: None).path


def without_metadata(model: Path, out: Path) -> Path:
    from tensorflow.lite.tools import flatbuffer_utils

    from edgekd._tf import tf  # noqa: F401  (the flatbuffer tools come with TensorFlow)

    flat = flatbuffer_utils.read_model_from_bytearray(bytearray(model.read_bytes()))
    flat.metadata = [m for m in flat.metadata if m.name != b"edgekd"]
    out.write_bytes(bytes(flatbuffer_utils.convert_object_to_bytearray(flat)))
    return out


def markdown(r: dict) -> str:
    w, rec, m, u, meta = r["wire"], r["recordings"], r["models"], r["unsigned_models"], r["metadata"]
    return "\n".join(
        [
            "## Hostile input (`.venv/bin/python benchmarks/fuzz.py`)",
            "",
            f"Measured {r['measured_at']}; seeded generators, so the same command gives the same cases.",
            "",
            "| target | cases | outcome |",
            "|---|---|---|",
            f"| wire decoder: random and mutated byte streams in random splits | {w['cases']:,} | {w['exceptions']} "
            f"exceptions; {w['recovered']:,} of {w['intact_frames']:,} frames left intact by the mutations recovered |",
            f"| wire decoder: {w['garbage_mb']} MB of garbage with {w['frames_in_garbage']:,} frames between | 1 | "
            f"{w['frames_recovered_from_garbage']:,} frames recovered, {w['mb_per_s']} MB/s, peak buffer "
            f"{w['peak_buffer_bytes']:,} bytes |",
            f"| recording files (.npz, .csv) mutated or truncated | {rec['cases']:,} | {rec['loaded']:,} still valid "
            f"and loaded, {rec['user_errors']:,} one-line errors, {rec['exceptions']} other exceptions |",
            f"| int8 model with 1-4 random bytes changed, loaded and run | {m['cases']:,} | {m['ran']:,} ran, "
            f"{m['user_errors']:,} one-line errors, {m['exceptions']} other exceptions, {m['runtime_crashes']} "
            "crashes inside the TFLite runtime |",
            f"| the same without edgekd's metadata (no checksum), 1-4 bytes changed | {u['cases']:,} | {u['ran']:,} "
            f"ran, {u['user_errors']:,} one-line errors, {u['exceptions']} other exceptions, {u['runtime_crashes']} "
            f"crashes inside the TFLite runtime |",
            f"| model metadata edited after export | {meta['cases']:,} | {meta['caught']:,} refused as altered |",
            "",
        ]
    )


def main() -> None:
    with tempfile.TemporaryDirectory() as tmp:
        model = exported_model(Path(tmp))
        unsigned = without_metadata(model, Path(tmp) / "unsigned.tflite")
        print("model exported; fuzzing", flush=True)
        result = {
            "wire": wire(),
            "recordings": recordings(),
            "models": models(model),
            "unsigned_models": models(unsigned, batches=5),
            "metadata": metadata(model),
            "measured_at": time.strftime("%Y-%m-%d %H:%M"),
        }
    write_json_atomic(RECORD, result)
    publish("FUZZ", markdown(result))


if __name__ == "__main__":
    main()
