"""Helper of scripts/pi-check.sh: the same code runs on the host (x86_64) and inside the emulated arm64
Debian, so the two can be compared output for output. numpy + the edgekd device profile only; never
imports TensorFlow (the ARM side has none).

    probs   run models on their held-out test windows (or on windows saved by the other side), save logits;
            optionally also the offline probabilities of the windows the simulator sends (--stream-ref)
    compare host vs ARM logits: max abs differences, quantization steps, argmax agreement
    stream  check `edgekd stream --jsonl` output against the ARM offline probabilities of the same recordings
    report  the Markdown summary (benchmarks/out/pi-check.md)
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
from pathlib import Path

import numpy as np


def _versions() -> dict:
    import importlib.metadata as md

    out = {"python": platform.python_version(), "machine": platform.machine()}
    for dist in ("numpy", "scipy", "ai-edge-litert", "edgekd"):
        try:
            out[dist] = md.version(dist)
        except md.PackageNotFoundError:
            out[dist] = None
    return out


# ------------------------------------------------------------------------------------------------- probs
def cmd_probs(args) -> None:
    from edgekd.data.dataset import load_dataset
    from edgekd.runtime.bench import held_out_windows
    from edgekd.runtime.interpreter import TFLiteModel

    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    dataset = load_dataset(args.data)
    info = {"versions": _versions(), "windows_from": args.windows_from, "models": {}}
    for path in args.models:
        model = TFLiteModel.load(path)
        stem = Path(path).stem
        if args.windows_from:  # the other side's windows: isolates the runtime from preprocessing (scipy, numpy)
            x = np.load(Path(args.windows_from) / f"{stem}.windows.npy")
            y = np.load(Path(args.windows_from) / f"{stem}.labels.npy")
        else:
            x, y = held_out_windows(model, dataset)
            np.save(out / f"{stem}.windows.npy", x)
            np.save(out / f"{stem}.labels.npy", y)
        logits = model.predict_logits(x)
        np.save(out / f"{stem}.logits.npy", logits)
        scale, zero_point = model._output_quant  # (0.0, 0) for a float output
        info["models"][stem] = {
            "runtime": model.runtime,
            "windows": int(len(x)),
            "input_dtype": str(model.input_dtype),
            "output_dtype": str(model.output_dtype),
            "output_scale": float(scale),
            "output_zero_point": int(zero_point),
            "accuracy": float(np.mean(np.argmax(logits, 1) == y)),
        }
        if args.stream_ref:  # what a live session must output, window for window, for the simulator's replay
            from edgekd.data.windows import Preprocessor
            from firmware_bridge.simulator import Simulator

            chosen = [int(i) for i in args.stream_ref.split(",")]
            sim = Simulator(dataset, speed=args.speed, recordings=chosen)
            pre = Preprocessor.from_dict(model.metadata["preprocessing"])
            for i in dict.fromkeys(chosen):
                np.save(out / f"{stem}.stream-ref.{i}.npy", model.predict_proba(pre.windows(sim.sent_values(i))))
            # Where each recording lies in device time, to find its live windows by their end_time_s.
            rates = {st.name: st.rate_hz for st in dataset.streams}
            spans: dict[int, list[float]] = {}
            for row in sim.schedule():
                begin, end = (
                    row["first_sample_us"] / 1e6,
                    row["first_sample_us"] / 1e6 + row["n_samples"] / rates[row["stream"]],
                )
                span = spans.setdefault(row["recording"], [begin, end])
                span[0], span[1] = min(span[0], begin), max(span[1], end)
            (out / "stream-schedule.json").write_text(json.dumps({"recordings": chosen, "spans_s": spans}))
    (out / "info.json").write_text(json.dumps(info, indent=1))


# ----------------------------------------------------------------------------------------------- compare
def _pair(host: Path, arm: Path, stem: str, scale: float) -> dict:
    from edgekd.runtime.interpreter import softmax

    a = np.load(host / f"{stem}.logits.npy")
    b = np.load(arm / f"{stem}.logits.npy")
    d = np.abs(a.astype(np.float64) - b.astype(np.float64))
    out = {
        "windows": int(len(a)),
        "bit_identical_windows": int(np.sum(np.all(a.view(np.uint32) == b.view(np.uint32), axis=1))),
        "logits_max_abs_diff": float(d.max()),
        "probs_max_abs_diff": float(np.abs(softmax(a.astype(np.float64)) - softmax(b.astype(np.float64))).max()),
        "argmax_agreement": float(np.mean(np.argmax(a, 1) == np.argmax(b, 1))),
    }
    if scale:  # int8 output: how many output quantization steps apart (dequantized logits are multiples of it)
        out["output_scale"] = scale
        out["max_diff_in_output_steps"] = float(np.round(d.max() / scale, 3))
    return out


def cmd_compare(args) -> None:
    host, arm, arm_same = Path(args.host), Path(args.arm), Path(args.arm_same)
    info = json.loads((host / "info.json").read_text())
    arm_info = json.loads((arm / "info.json").read_text())
    result = {"host": info["versions"], "arm": arm_info["versions"], "models": {}}
    for stem, m in info["models"].items():
        xa, xb = np.load(host / f"{stem}.windows.npy"), np.load(arm / f"{stem}.windows.npy")
        scale = m["output_scale"]
        result["models"][stem] = {
            "output_dtype": m["output_dtype"],
            "accuracy_host": m["accuracy"],
            "accuracy_arm": arm_info["models"][stem]["accuracy"],
            # preprocessing (resampling, z-scoring) on each side with its own numpy and scipy
            "windows_equal_shape": xa.shape == xb.shape,
            "windows_max_abs_diff": float(np.abs(xa - xb).max()) if xa.shape == xb.shape else None,
            "windows_bit_identical": bool(
                xa.shape == xb.shape and np.array_equal(xa.view(np.uint32), xb.view(np.uint32))
            ),
            "end_to_end": _pair(host, arm, stem, scale),  # each side's own windows and runtime
            "same_input": _pair(host, arm_same, stem, scale),  # the host's windows through the ARM runtime
        }
    Path(args.out).write_text(json.dumps(result, indent=1))
    _fail_on_disagreement(result)


def _fail_on_disagreement(result: dict) -> None:
    """The check's pass/fail: float32 near-equal, int8 within one output step, decisions the same."""
    problems = []
    for stem, m in result["models"].items():
        for kind in ("end_to_end", "same_input"):
            r = m[kind]
            if "max_diff_in_output_steps" in r:
                if r["max_diff_in_output_steps"] > 1.0:
                    problems.append(
                        f"{stem} {kind}: logits differ by {r['max_diff_in_output_steps']} output steps (> 1)"
                    )
            elif r["logits_max_abs_diff"] > 1e-4:
                problems.append(f"{stem} {kind}: float logits differ by {r['logits_max_abs_diff']:.3g} (> 1e-4)")
            if r["argmax_agreement"] < 0.99:
                problems.append(f"{stem} {kind}: argmax agreement {r['argmax_agreement']:.3f} (< 0.99)")
    if problems:
        sys.exit("pi-check: host and ARM disagree: " + "; ".join(problems))


# ------------------------------------------------------------------------------------------------ stream
def cmd_stream(args) -> None:
    ref = Path(args.ref)
    decisions = [json.loads(line) for line in Path(args.jsonl).read_text().splitlines() if line.startswith("{")]
    spans = {int(k): v for k, v in json.loads((ref / "stream-schedule.json").read_text())["spans_s"].items()}
    checked = [int(i) for i in args.check.split(",")]
    result = {
        "decisions": len(decisions),
        "segments": len({d["segment"] for d in decisions}),
        "windows_per_recording": {},
        "recordings": {},
        "ok": True,
    }
    # A live window belongs to the recording whose device-time span holds its end; the padding recordings
    # before and after may be cut (bytes flushed when the reader opened, or lost when the pty closed), the
    # checked ones in between must each be one whole segment equal to offline inference on ARM.
    for rec, (begin, end) in spans.items():
        mine = [d for d in decisions if begin < d["end_time_s"] <= end + 1e-6]
        result["windows_per_recording"][rec] = len(mine)
        if rec not in checked:
            continue
        offline = np.load(ref / f"{args.stem}.stream-ref.{rec}.npy")
        ks = [d["window"] for d in mine]
        r = {
            "segments": sorted({d["segment"] for d in mine}),
            "live_windows": len(mine),
            "offline_windows": int(len(offline)),
            "missing_at_end": int(len(offline) - len(mine)),
            "max_abs_diff": None,
            "argmax_agreement": None,
        }
        # Live window k of a segment is offline window k of the recording: no window missing, none different.
        if mine and ks == list(range(len(mine))) and len(mine) <= len(offline):
            live = np.array([d["probs"] for d in mine])
            r["max_abs_diff"] = float(np.abs(live - offline[: len(live)]).max())
            r["argmax_agreement"] = float(np.mean(live.argmax(1) == offline[: len(live)].argmax(1)))
        r["ok"] = bool(
            len(r["segments"]) == 1
            and r["max_abs_diff"] is not None
            and r["max_abs_diff"] <= 1e-6
            and r["missing_at_end"] == 0
        )
        result["ok"] &= r["ok"]
        result["recordings"][rec] = r
    latencies = [d["latency_ms"] for d in decisions]
    if latencies:
        result["latency_ms_p50_qemu"] = float(np.percentile(latencies, 50))
    Path(args.out).write_text(json.dumps(result, indent=1))
    if not result["ok"]:
        sys.exit(f"pi-check: live stream on ARM differs from offline inference: {json.dumps(result)}")


# ------------------------------------------------------------------------------------------------ report
def _fmt(x, digits=3) -> str:
    if x is None:
        return "-"
    if isinstance(x, float):
        return (
            f"{x:.{digits}g}"
            if (x != 0 and (abs(x) < 1e-3 or abs(x) >= 1e4))
            else f"{x:.{digits}f}".rstrip("0").rstrip(".") or "0"
        )
    return str(x)


def cmd_report(args) -> None:
    d = Path(args.dir)
    timings = [line.split("\t") for line in (d / "timings.tsv").read_text().splitlines() if line.strip()]
    meta = dict(line.split("=", 1) for line in (d / "meta.txt").read_text().splitlines() if "=" in line)
    cmp = json.loads((d / "compare.json").read_text())
    stream = json.loads((d / "stream-check.json").read_text())
    lines = [
        "# pi-check: the device profile on 64-bit ARM Debian (qemu-user emulation)",
        "",
        f"Written by `scripts/pi-check.sh` on {meta.get('date', '?')}, repo {meta.get('commit', '?')}.",
        "",
        "**Latencies measured under qemu-user emulation are NOT Raspberry Pi numbers** (an x86_64 host "
        "translating arm64 code, typically several times slower and with other kernels' relative costs). "
        "What this check establishes is that the device profile installs and runs on arm64 Debian bookworm "
        "(Raspberry Pi OS 64-bit's base) and that its outputs agree with the host's.",
        "",
        f"- rootfs: Debian {meta.get('debian_version', '?')} arm64 (`debootstrap --variant=minbase`), "
        f"{meta.get('arm_python', '?')}, {meta.get('qemu', '?')}",
        f"- install: `python3 -m venv` + `pip install {meta.get('wheel', 'edgekd')}` (the README's `pip install "
        f"edgekd`, "
        "wheel built from this checkout; dependencies from PyPI for aarch64)",
        f"- TensorFlow importable on ARM: {meta.get('tensorflow_on_arm', '?')}",
        "",
        "## Timings",
        "",
        "| phase | seconds | note |",
        "|---|---:|---|",
        *[f"| {t[0]} | {t[1]} | {t[2] if len(t) > 2 else ''} |" for t in timings],
        "",
        "## Installed on ARM (`pip freeze`)",
        "",
        "```",
        (d / "pip-freeze-arm64.txt").read_text().strip(),
        "```",
        "",
        "## `edgekd bench` inside the arm64 chroot (qemu: not device latencies)",
        "",
        "```",
        (d / "bench-arm64.txt").read_text().rstrip(),
        "```",
        "",
        "For reference, the same command on the host (x86_64, native):",
        "",
        "```",
        (d / "bench-host.txt").read_text().rstrip(),
        "```",
        "",
        "## Host (x86_64) vs ARM (arm64) outputs on the held-out test windows",
        "",
        "end-to-end: each side windows the recordings itself (its own numpy/scipy) and runs its own LiteRT; "
        "same input: the host's windows through the ARM runtime (the kernels alone). Logits are dequantized for int8.",
        "",
        "| model | windows | input windows max abs diff | comparison | bit-identical windows | logits max abs diff "
        "| in output steps | probs max abs diff | argmax agreement | accuracy host / ARM |",
        "|---|---:|---:|---|---:|---:|---:|---:|---:|---|",
    ]
    for stem, m in cmp["models"].items():
        for kind in ("end_to_end", "same_input"):
            r = m[kind]
            lines.append(
                f"| {stem} | {r['windows']} | {_fmt(m['windows_max_abs_diff'])}"
                f"{' (identical)' if m['windows_bit_identical'] else ''} | {kind.replace('_', ' ')} | "
                f"{r['bit_identical_windows']}/{r['windows']} | {_fmt(r['logits_max_abs_diff'])} | "
                f"{_fmt(r.get('max_diff_in_output_steps'))} | {_fmt(r['probs_max_abs_diff'])} | "
                f"{r['argmax_agreement']:.3f} | {m['accuracy_host']:.3f} / {m['accuracy_arm']:.3f} |"
            )
    lines += [
        "",
        f"Host: {cmp['host']}  ",
        f"ARM: {cmp['arm']}",
        "",
        "## `edgekd stream` on ARM, simulator on the host, over a pseudo-terminal",
        "",
        f"`{meta.get('simulate_cmd', '')}` on the host; in the chroot `{meta.get('stream_cmd', '')}`.",
        "",
        f"- decisions: {stream['decisions']} in {stream['segments']} segments; result: "
        f"{'OK' if stream['ok'] else 'FAILED'}",
    ]
    lines.append(f"- windows per replayed recording (device time): {stream['windows_per_recording']}")
    for rec, r in stream["recordings"].items():
        lines.append(
            f"- recording {rec}: segment {r['segments']}, {r['live_windows']} live windows vs "
            f"{r['offline_windows']} offline (ARM runtime), max abs diff of probabilities "
            f"{_fmt(r['max_abs_diff'])}, argmax agreement {_fmt(r['argmax_agreement'])}"
        )
    sim_summary = [line for line in (d / "simulate.err").read_text().splitlines() if line.startswith("frames_sent")]
    if sim_summary:
        lines.append(f"- simulator: `{sim_summary[0]}`")
    if "latency_ms_p50_qemu" in stream:
        lines.append(f"- decision latency p50 under qemu: {stream['latency_ms_p50_qemu']:.1f} ms (not a device number)")
    lines += [f"- stream stderr: `{line}`" for line in (d / "stream.err").read_text().splitlines() if line.strip()]
    lines += [
        "",
        "The simulator is paused (SIGSTOP) until the reader has the pty open, since pyserial flushes a port",
        "when it opens it; it replays in a loop and is paused again once a window past recording 11 is decided,",
        "so the reader drains the pty and leaves by --idle-exit (a simulator that ends closes the pty, and the",
        "kernel discards what the reader has not read yet). Padding recordings 14 and 13 surround the checked",
        "ones. Frames due while the simulator was paused go out back to back: the latencies measure emulation",
        "and backlog.",
        "",
    ]
    text = "\n".join(lines)
    Path(args.out).write_text(text)
    print(text)


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="cmd", required=True)
    s = sub.add_parser("probs")
    s.add_argument("models", nargs="+")
    s.add_argument("--data", required=True)
    s.add_argument("--out", required=True)
    s.add_argument("--windows-from")
    s.add_argument("--stream-ref", help="recording indices the simulator replays, e.g. 14,10,11")
    s.add_argument("--speed", type=float, default=2.0)
    s.set_defaults(func=cmd_probs)
    s = sub.add_parser("compare")
    s.add_argument("--host", required=True)
    s.add_argument("--arm", required=True)
    s.add_argument("--arm-same", required=True)
    s.add_argument("--out", required=True)
    s.set_defaults(func=cmd_compare)
    s = sub.add_parser("stream")
    s.add_argument("--jsonl", required=True)
    s.add_argument("--ref", required=True)
    s.add_argument("--stem", required=True)
    s.add_argument("--check", required=True)
    s.add_argument("--out", required=True)
    s.set_defaults(func=cmd_stream)
    s = sub.add_parser("report")
    s.add_argument("--dir", required=True)
    s.add_argument("--out", required=True)
    s.set_defaults(func=cmd_report)
    args = p.parse_args(argv)
    args.func(args)


if __name__ == "__main__":
    main()
