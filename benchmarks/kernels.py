"""Which kernels make full-int8 students slow on x86, and which export variant and interpreter setting is fastest.

    .venv/bin/python benchmarks/kernels.py                       # frontier.py's myo5 run, 5 rounds of 2000 invokes
    .venv/bin/python benchmarks/kernels.py --run PATH/TO/RUN --rounds 5 --runs 3000

A training-side benchmark (TensorFlow converts the models here). It takes a run folder (student_kd.h5 and
windows.npz), converts the student to every export variant with edgekd.export.convert, and times one-window
invokes with ai-edge-litert under three op resolvers and 1 or 2 threads:

- default:     OpResolverType.AUTO, the optimized builtin kernels with the XNNPACK delegate applied by default
- no-delegate: OpResolverType.BUILTIN_WITHOUT_DEFAULT_DELEGATES, the same builtin kernels without XNNPACK
- reference:   OpResolverType.BUILTIN_REF, the reference kernels

Then it cuts the student into its parts (the Conv1D/pooling block, each LSTM, the Dense head), reusing the
trained layers so that int8 calibration sees the real activations, and times each part as float32, dynamic and
int8, so that the table shows which layer makes int8 slow.

Two latencies per configuration:
- window: TFLiteModel.invoke_once, the path edgekd bench and stream run (LSTM state reset, quantize the input
  in numpy, set_tensor, invoke, get_tensor, dequantize).
- invoke: interpreter.invoke() alone (reset and set_tensor done before the clock starts): the kernels.

The host has 2 cores shared with other jobs, so the timing is interleaved: each of --rounds rounds builds a fresh
interpreter per configuration and then gives every configuration BLOCK invokes at a time, in a new shuffled
order per block, until each has --runs. The tables quote the median over rounds of each round's p50 (and p90)
and show the spread of the round p50s. Compare ratios within one run, not against other files.

Writes benchmarks/out/kernels.md and the KERNELS section of benchmarks/RESULTS.md (--no-results skips that).
"""

from __future__ import annotations

import argparse
import gzip
import importlib.metadata
import platform
import random
import shlex
import sys
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path.insert(0, str(ROOT))

from ai_edge_litert.interpreter import Interpreter, OpResolverType  # noqa: E402
from results_md import demote_headings, write_section  # noqa: E402

from edgekd._tf import keras  # noqa: E402  (switches on tf_keras before TensorFlow loads)
from edgekd.export.convert import INT8_QUANTIZERS, convert  # noqa: E402
from edgekd.export.export import MIN_AGREEMENT  # noqa: E402
from edgekd.io import write_bytes_atomic  # noqa: E402
from edgekd.models.saved import load_model  # noqa: E402
from edgekd.runtime.interpreter import TFLiteModel  # noqa: E402

LITERT_VERSION = importlib.metadata.version("ai-edge-litert")
# The myo5 repetition-2 student that benchmarks/frontier.py distils (or pass --run with any finished run).
DEFAULT_RUN = HERE / "out" / "frontier" / "myo5-test-rep-2" / "run"
RESOLVERS = {
    "default": OpResolverType.AUTO,
    "no-delegate": OpResolverType.BUILTIN_WITHOUT_DEFAULT_DELEGATES,
    "reference": OpResolverType.BUILTIN_REF,
}
WHOLE_VARIANTS = ("float32", "float16", "dynamic", "int8")
PART_VARIANTS = ("float32", "dynamic", "int8")
PART_RESOLVERS = ("default", "no-delegate", "reference")
BLOCK = 100  # invokes per configuration before the next one takes its turn (window path, then bare invokes)


# ---------------------------------------------------------------------------------------------------------------
# Models: the student in every variant, and its parts


@dataclass
class Converted:
    model: str  # "student" or a part's name
    variant: str
    flat: bytes
    quantizer: str | None = None
    agreement: float | None = None  # argmax agreement with Keras on the run's test windows (whole student only)

    @property
    def gzip_bytes(self) -> int:
        return len(gzip.compress(self.flat, compresslevel=9, mtime=0))


def tflite_logits(flat: bytes, windows: np.ndarray) -> np.ndarray:
    return wrap(flat, "default", 1).predict_logits(windows)


def convert_student(student, representative, test_x, log) -> list[Converted]:
    keras_pred = np.argmax(student(test_x, training=False).numpy(), 1)
    out = []
    for variant in WHOLE_VARIANTS:
        # int8 as edgekd export does it: the MLIR quantizer first, the legacy one if the MLIR model disagrees
        for quantizer in INT8_QUANTIZERS if variant == "int8" else (None,):
            flat = convert(student, variant, representative, quantizer or "mlir")
            agreement = float(np.mean(np.argmax(tflite_logits(flat, test_x), 1) == keras_pred))
            log(
                f"  student {variant}{f' ({quantizer})' if quantizer else ''}: {len(flat):,} bytes, "
                f"agreement {agreement:.1%}"
            )
            if agreement >= MIN_AGREEMENT[variant] or quantizer == INT8_QUANTIZERS[-1]:
                break
        out.append(Converted("student", variant, flat, quantizer, agreement))
    return out


def student_parts(student) -> list[tuple[str, keras.Model, keras.Model]]:
    """(name, part model, model from the student's input to the part's input), each part reusing trained layers.

    convert() reads (window_len, channels) from a 3-D input, so the Dense head takes its 32 features as a
    [1, 32] sequence and flattens them (one RESHAPE more than in the student)."""
    layers = [layer for layer in student.layers if not isinstance(layer, keras.layers.InputLayer)]
    lstms = [i for i, layer in enumerate(layers) if isinstance(layer, keras.layers.LSTM)]
    head = [i for i, layer in enumerate(layers) if isinstance(layer, keras.layers.Dense)][-1]
    blocks = [("conv block", layers[: lstms[0]])]
    blocks += [
        (f"lstm {n + 1} ({layers[i].units} units{', sequence out' if layers[i].return_sequences else ''})", [layers[i]])
        for n, i in enumerate(lstms)
    ]
    blocks += [("dense head", layers[lstms[-1] + 1 : head + 1])]
    parts = []
    for name, block in blocks:
        feed = block[0].get_input_at(0)  # node 0: the layer as called inside the student
        feeder = keras.Model(student.input, feed)
        shape = tuple(feed.shape[1:])
        inp = keras.Input(shape=shape if len(shape) == 2 else (1, *shape), name="part_input")
        x = inp if len(shape) == 2 else keras.layers.Flatten()(inp)
        for layer in block:
            x = layer(x)
        parts.append((name, keras.Model(inp, x, name=name.split(" (")[0].replace(" ", "_")), feeder))
    return parts


def convert_parts(parts, representative, log) -> tuple[list[Converted], dict[str, str]]:
    out, shapes = [], {}
    for name, part, feeder in parts:
        features = feeder(representative, training=False).numpy()
        if features.ndim == 2:
            features = features[:, np.newaxis, :]
        shapes[name] = f"{list(part.input_shape[1:])} -> {list(part.output_shape[1:])}, {part.count_params():,} params"
        for variant in PART_VARIANTS:
            flat = convert(part, variant, features)
            out.append(Converted(name, variant, flat))
        log(f"  {name}: {shapes[name]}")
    return out, shapes


# ---------------------------------------------------------------------------------------------------------------
# Interpreters and what XNNPACK takes


def interpreter(flat: bytes, resolver: str, threads: int) -> Interpreter:
    it = Interpreter(model_content=flat, num_threads=threads, experimental_op_resolver_type=RESOLVERS[resolver])
    it.allocate_tensors()
    return it


def wrap(flat: bytes, resolver: str, threads: int) -> TFLiteModel:
    """edgekd's own runner (reset, quantize, invoke, dequantize) around an interpreter built with this resolver."""
    start = time.perf_counter()
    it = interpreter(flat, resolver, threads)
    return TFLiteModel(
        Path(f"<{resolver}>"), flat, None, f"ai-edge-litert {LITERT_VERSION}", it, (time.perf_counter() - start) * 1e3
    )


def delegated_ops(it: Interpreter) -> tuple[list[str], list[str]]:
    """(op names a delegate took, op names left to builtin kernels).

    After delegation the node list holds the original nodes and one DELEGATE node per partition. A partition
    replaced the original nodes between its inputs and outputs, so walk back from each DELEGATE node's outputs
    to its inputs through the nodes that produced them."""
    nodes = it._get_ops_details()  # the Python API's only view of the graph after delegation
    producer = {t: n["index"] for n in nodes if n["op_name"] != "DELEGATE" for t in n["outputs"]}
    taken = set()
    for d in (n for n in nodes if n["op_name"] == "DELEGATE"):
        stop, stack = set(d["inputs"]), list(d["outputs"])
        while stack:
            t = stack.pop()
            if t in stop or t not in producer or producer[t] in taken:
                continue
            taken.add(producer[t])
            stack.extend(nodes[producer[t]]["inputs"])
    originals = [n for n in nodes if n["op_name"] != "DELEGATE"]
    return (
        [n["op_name"] for n in originals if n["index"] in taken],
        [n["op_name"] for n in originals if n["index"] not in taken],
    )


def summarize_ops(names: list[str]) -> str:
    counts = {}
    for name in names:
        counts[name] = counts.get(name, 0) + 1
    return ", ".join(f"{n}{f' x{c}' if c > 1 else ''}" for n, c in counts.items()) or "none"


# ---------------------------------------------------------------------------------------------------------------
# Timing


@dataclass
class Config:
    model: Converted
    resolver: str
    threads: int
    window_p50: list[float] = field(default_factory=list)  # one entry per round, ms
    window_p90: list[float] = field(default_factory=list)
    invoke_p50: list[float] = field(default_factory=list)
    invoke_p90: list[float] = field(default_factory=list)

    @property
    def key(self) -> tuple:
        return (self.model.model, self.model.variant, self.resolver, self.threads)


class Timer:
    """One configuration's interpreter for one round, timed a block at a time."""

    def __init__(self, cfg: Config, windows: np.ndarray, runs: int, warmup: int):
        self.cfg, self.windows = cfg, windows
        self.runner = wrap(cfg.model.flat, cfg.resolver, cfg.threads)
        self.it = self.runner._interpreter
        self.input_index = self.it.get_input_details()[0]["index"]
        # the inputs the window path feeds, already in the model's input type, for the invoke-only loop
        self.ready = [_as_input(w, self.it.get_input_details()[0]) for w in windows]
        self.window_ms, self.invoke_ms = np.empty(runs), np.empty(runs)
        for i in range(warmup):
            self.runner.invoke_once(windows[i % len(windows)])

    def block(self, start: int, stop: int) -> None:
        """Invokes start..stop-1 through the window path, then the same number of bare invokes."""
        runner, it, windows, ready = self.runner, self.it, self.windows, self.ready
        for i in range(start, stop):
            w = windows[i % len(windows)]
            t0 = time.perf_counter_ns()
            runner.invoke_once(w)
            self.window_ms[i] = (time.perf_counter_ns() - t0) / 1e6
        for i in range(start, stop):
            it.reset_all_variables()
            it.set_tensor(self.input_index, ready[i % len(ready)])
            t0 = time.perf_counter_ns()
            it.invoke()
            self.invoke_ms[i] = (time.perf_counter_ns() - t0) / 1e6

    def finish(self) -> None:
        cfg = self.cfg
        cfg.window_p50.append(float(np.percentile(self.window_ms, 50)))
        cfg.window_p90.append(float(np.percentile(self.window_ms, 90)))
        cfg.invoke_p50.append(float(np.percentile(self.invoke_ms, 50)))
        cfg.invoke_p90.append(float(np.percentile(self.invoke_ms, 90)))


def _as_input(window: np.ndarray, detail: dict) -> np.ndarray:
    x = np.asarray(window, np.float32).reshape(detail["shape"])
    dtype = np.dtype(detail["dtype"])
    if dtype.kind in "iu":
        scale, zero_point = detail["quantization"]
        info = np.iinfo(dtype)
        x = np.clip(np.round(x / scale + zero_point), info.min, info.max)
    return x.astype(dtype)


def run_rounds(configs: list[Config], inputs: dict[str, np.ndarray], rounds: int, runs: int, warmup: int, log) -> None:
    """Each round builds a fresh interpreter per configuration, then takes the configurations' invokes in blocks
    of BLOCK, visiting all configurations in a new shuffled order for every block: a configuration's samples
    are spread over the whole round, so load from other jobs falls on all configurations alike."""
    for r in range(rounds):
        rng = random.Random(r)
        started = time.perf_counter()
        timers = [Timer(cfg, inputs[cfg.model.model], runs, warmup) for cfg in configs]
        for start in range(0, runs, BLOCK):
            rng.shuffle(timers)
            for timer in timers:
                timer.block(start, min(start + BLOCK, runs))
        for timer in timers:
            timer.finish()
        del timers
        log(f"  round {r + 1}/{rounds}: {len(configs)} configurations in {time.perf_counter() - started:.0f} s")


# ---------------------------------------------------------------------------------------------------------------
# Report


def med(values: list[float]) -> float:
    return float(np.median(values))


def ms(value: float) -> str:
    return f"{value:.3f}"


def spread(values: list[float]) -> str:
    return f"{min(values):.3f}-{max(values):.3f}"


def shown(path: Path) -> str:
    """A path relative to the repository when it lies inside it."""
    path = path.resolve()
    return str(path.relative_to(ROOT)) if path.is_relative_to(ROOT) else str(path)


def host_cpu() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def cpu_flags() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("flags"):
                flags = set(line.split(":", 1)[1].split())
                wanted = ("sse4_1", "avx", "avx2", "fma", "avx512f", "avx512_vnni", "avx_vnni")
                return " ".join(f for f in wanted if f in flags)
    except OSError:
        pass
    return "?"


def report(
    args,
    command: str,
    whole: list[Converted],
    parts: list[Converted],
    part_shapes: dict,
    configs: dict,
    coverage: dict,
    started: datetime,
    seconds: float,
) -> str:
    cores = len([ln for ln in Path("/proc/cpuinfo").read_text().splitlines() if ln.startswith("processor")])
    L = [
        "# Kernels: why full-int8 students are slow on x86, and the fastest variant",
        "",
        f"Written by `{command}` on {started:%Y-%m-%d %H:%M} UTC in {seconds / 60:.1f} min. "
        f"Host CPU: {host_cpu()} ({cores} cores, flags: {cpu_flags()}), shared with other jobs. "
        f"ai-edge-litert {LITERT_VERSION}, Python {platform.python_version()}. Run: `{shown(args.run)}`.",
        "",
        f"Every latency is the median over {args.rounds} rounds of that round's p50 (or p90) of {args.runs:,} "
        f"one-window invokes after {args.warmup} warm-up invokes; each round builds a fresh interpreter per "
        f"configuration and interleaves them, {BLOCK} invokes of one configuration at a time in a shuffled order, "
        "so that load from other jobs falls on all alike. *window* is `TFLiteModel.invoke_once` (LSTM state reset, "
        "input "
        "quantization in numpy, set/invoke/get, dequantization: what `edgekd bench` and `stream` pay); *invoke* is "
        "`interpreter.invoke()` alone (the kernels). *p50 range* is the lowest and highest round p50: where two "
        "ranges overlap, the difference is noise.",
        "",
        "## The whole student, by variant, op resolver and threads",
        "",
        "| variant | bytes (gzip) | agreement | resolver | threads | window p50 / p90 ms | invoke p50 / p90 ms "
        "| invoke p50 range | × float32 invoke |",
        "|---|---:|---:|---|---:|---:|---:|---:|---:|",
    ]
    base = {(r, t): med(configs[("student", "float32", r, t)].invoke_p50) for r in RESOLVERS for t in args.threads}
    for c in whole:
        for r in RESOLVERS:
            for t in args.threads:
                cfg = configs[("student", c.variant, r, t)]
                q = f" ({c.quantizer})" if c.quantizer else ""
                L.append(
                    f"| {c.variant}{q} | {len(c.flat):,} ({c.gzip_bytes:,}) | {c.agreement:.1%} | {r} | {t} | "
                    f"{ms(med(cfg.window_p50))} / {ms(med(cfg.window_p90))} | "
                    f"{ms(med(cfg.invoke_p50))} / {ms(med(cfg.invoke_p90))} | {spread(cfg.invoke_p50)} | "
                    f"{med(cfg.invoke_p50) / base[(r, t)]:.1f}× |"
                )
    students = [cfg for k, cfg in configs.items() if k[0] == "student"]
    fastest = min(students, key=lambda cfg: med(cfg.window_p50))

    # Rounds are interleaved, so compare round by round: the median over rounds of (this round's p50 ÷ the
    # fastest configuration's p50 in the same round).
    def paired(cfg: Config) -> float:
        return med([a / b for a, b in zip(cfg.window_p50, fastest.window_p50)])

    ties = sorted((cfg for cfg in students if cfg is not fastest and paired(cfg) <= 1.10), key=paired)
    L += [
        "",
        f"Fastest whole-student configuration (window p50): **{fastest.model.variant}, {fastest.resolver}, "
        f"{fastest.threads} thread(s)**, {ms(med(fastest.window_p50))} ms per window "
        f"({ms(med(fastest.invoke_p50))} ms in invoke). Within 10% of it (median over rounds of the same-round "
        "ratio): "
        + (
            "; ".join(f"{c.model.variant}, {c.resolver}, {c.threads} thread(s) {paired(c):.2f}×" for c in ties)
            or "none"
        )
        + ".",
        "",
        "## What the XNNPACK delegate takes (default resolver, 1 thread)",
        "",
        "| model | variant | ops XNNPACK runs | ops left to builtin kernels |",
        "|---|---|---|---|",
    ]
    for (model, variant), (taken, left) in coverage.items():
        L.append(f"| {model} | {variant} | {summarize_ops(taken)} | {summarize_ops(left)} |")
    L += [
        "",
        "The no-delegate and reference resolvers apply no delegate at all (no DELEGATE nodes).",
        "",
        "## The student's parts: which layer makes int8 slow (invoke p50 ms, 1 thread)",
        "",
        "Each part reuses the student's trained layers; int8 is calibrated on the activations the student feeds "
        "that part from the representative windows.",
        "",
    ]
    names = list(dict.fromkeys(c.model for c in parts)) + ["student"]
    for r in PART_RESOLVERS:
        L += [
            f"Resolver: {r}.",
            "",
            "| part | shape, params | "
            + " | ".join(f"{v} ms (range)" for v in PART_VARIANTS)
            + " | int8 ÷ float32 | int8 − float32 ms |",
            "|---|---|" + "---:|" * (len(PART_VARIANTS) + 2),
        ]
        for name in names:
            cells = {v: configs[(name, v, r, 1)].invoke_p50 for v in PART_VARIANTS}
            shape = part_shapes.get(name, "whole model")
            row = " | ".join(f"{ms(med(cells[v]))} ({spread(cells[v])})" for v in PART_VARIANTS)
            f32, i8 = med(cells["float32"]), med(cells["int8"])
            L.append(f"| {name} | {shape} | {row} | {i8 / f32:.1f}× | {i8 - f32:+.3f} |")
        L.append("")
    L += findings(args, names, configs)
    L += [
        "## Sizes of the parts (bytes)",
        "",
        "| part | " + " | ".join(PART_VARIANTS) + " |",
        "|---|" + "---:|" * len(PART_VARIANTS),
    ]
    for name in names[:-1]:
        L.append(
            f"| {name} | "
            + " | ".join(f"{len(c.flat):,}" for v in PART_VARIANTS for c in parts if c.model == name and c.variant == v)
            + " |"
        )
    return "\n".join(L) + "\n"


def findings(args, names: list[str], configs: dict) -> list[str]:
    """Sentences computed from this run's medians (invoke p50 unless said otherwise)."""

    def inv(model, variant, resolver="default", threads=1):
        return med(configs[(model, variant, resolver, threads)].invoke_p50)

    def win(model, variant, resolver="default", threads=1):
        return med(configs[(model, variant, resolver, threads)].window_p50)

    lstms = [n for n in names if n.startswith("lstm")]
    whole_gap = inv("student", "int8") - inv("student", "float32")
    lstm_gap = sum(inv(n, "int8") - inv(n, "float32") for n in lstms)
    other_gap = sum(inv(n, "int8") - inv(n, "float32") for n in names[:-1] if n not in lstms)
    lstm_ratios = " and ".join(f"{inv(n, 'int8') / inv(n, 'float32'):.1f}×" for n in lstms)
    L = [
        "## What this run measured",
        "",
        "- int8 ÷ float32, whole student, default resolver, 1 thread: "
        f"{inv('student', 'int8') / inv('student', 'float32'):.1f}× "
        f"in invoke ({ms(inv('student', 'int8'))} vs {ms(inv('student', 'float32'))} ms), "
        f"{win('student', 'int8') / win('student', 'float32'):.1f}× per window "
        f"({ms(win('student', 'int8'))} vs {ms(win('student', 'float32'))} ms).",
        f"- The LSTMs alone: int8 − float32 = {lstm_gap:+.3f} ms summed over the {len(lstms)} LSTM parts "
        f"({lstm_ratios}); "
        f"the other parts together {other_gap:+.3f} ms; the whole student {whole_gap:+.3f} ms.",
        "- XNNPACK (default − no-delegate, 1 thread): "
        + "; ".join(f"{v} {inv('student', v) - inv('student', v, 'no-delegate'):+.3f} ms" for v in WHOLE_VARIANTS)
        + ". On the LSTM parts: "
        + "; ".join(f"{n.split(' (')[0]} int8 {inv(n, 'int8') - inv(n, 'int8', 'no-delegate'):+.3f} ms" for n in lstms)
        + ".",
        "- Optimized vs reference kernels for the int8 LSTM (no-delegate ÷ reference): "
        + "; ".join(
            f"{n.split(' (')[0]} {inv(n, 'int8', 'no-delegate') / inv(n, 'int8', 'reference'):.2f}" for n in lstms
        )
        + "; for the float32 LSTM: "
        + "; ".join(
            f"{n.split(' (')[0]} {inv(n, 'float32', 'no-delegate') / inv(n, 'float32', 'reference'):.2f}" for n in lstms
        )
        + ".",
    ]
    L.append(
        "- Python around the invoke in edgekd's window path (window − invoke p50, default resolver, 1 thread): "
        + "; ".join(f"{v} {win('student', v) - inv('student', v):+.3f} ms" for v in WHOLE_VARIANTS)
        + " (int8 adds quantizing the input and dequantizing the logits in numpy)."
    )
    if 2 in args.threads:
        L.append(
            "- 2 threads ÷ 1 thread, default resolver: "
            + "; ".join(f"{v} {inv('student', v, threads=2) / inv('student', v):.2f}" for v in WHOLE_VARIANTS)
            + "."
        )
    L += [
        "",
        "Why, read from the TensorFlow Lite sources rather than measured here (`tensorflow/lite/kernels/internal/"
        "optimized/sse_tensor_utils.h` and `neon_tensor_utils.h`; XNNPACK's operator list in "
        "`tensorflow/lite/delegates/xnnpack/README.md`): XNNPACK has no LSTM operator, float or quantized, so "
        "the fused LSTM always runs on the builtin kernel, whatever the resolver. The float LSTM's matrix-vector "
        "products use vectorized code on x86; the full-integer LSTM (int8 weights, int16 cell state) calls "
        "helpers (int8 x int8 -> int16 matrix-vector products with requantization, int16 sigmoid and tanh, "
        "element-wise int16 products) that the x86 build maps to their portable scalar versions, while the ARM "
        "build maps most of them to NEON code. Optimized and reference resolvers run the same LSTM code, which "
        "is why their LSTM times match.",
        "",
    ]
    return L


# ---------------------------------------------------------------------------------------------------------------


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--run", type=Path, default=DEFAULT_RUN, help="run folder with student_kd.h5 and windows.npz")
    parser.add_argument("--runs", type=int, default=2000, help="timed invokes per configuration and round")
    parser.add_argument("--warmup", type=int, default=200)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--threads", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--out", type=Path, default=HERE / "out" / "kernels.md")
    parser.add_argument("--no-results", action="store_true", help="do not write the KERNELS section of RESULTS.md")
    args = parser.parse_args()
    if 1 not in args.threads:
        parser.error("--threads must include 1 (the per-part tables use it)")
    command = ".venv/bin/python benchmarks/kernels.py" + "".join(f" {shlex.quote(a)}" for a in sys.argv[1:])
    started, clock = datetime.now(UTC), time.perf_counter()

    def log(message: str) -> None:
        print(message, flush=True)

    if not (args.run / "student_kd.h5").is_file():
        sys.exit(
            f"{args.run}: no finished run; run `.venv/bin/python benchmarks/frontier.py --only myo5` first or pass "
            f"--run"
        )
    log(f"loading {args.run}")
    student = load_model(args.run / "student_kd.h5")
    with np.load(args.run / "windows.npz", allow_pickle=False) as w:
        representative, test_x = w["representative"], w["test_x"]

    log("converting the student")
    whole = convert_student(student, representative, test_x, log)
    log("converting its parts")
    part_models = student_parts(student)
    parts, part_shapes = convert_parts(part_models, representative, log)

    # Inputs for timing: the run's test windows, and for each part what the student feeds it on those windows.
    inputs = {"student": test_x.astype(np.float32)}
    for name, _, feeder in part_models:
        features = feeder(test_x, training=False).numpy().astype(np.float32)
        inputs[name] = features if features.ndim == 3 else features[:, np.newaxis, :]

    configs = {}
    for c in whole:
        for r in RESOLVERS:
            for t in args.threads:
                cfg = Config(c, r, t)
                configs[cfg.key] = cfg
    for c in parts + [c for c in whole if c.variant in PART_VARIANTS]:
        for r in PART_RESOLVERS:
            cfg = Config(c, r, 1)
            configs.setdefault(cfg.key, cfg)

    coverage = {}
    for c in whole + parts:
        coverage[(c.model, c.variant)] = delegated_ops(interpreter(c.flat, "default", 1))
        for r in ("no-delegate", "reference"):
            assert "DELEGATE" not in [n["op_name"] for n in interpreter(c.flat, r, 1)._get_ops_details()]

    log(f"timing {len(configs)} configurations, {args.rounds} rounds x {args.runs} invokes (window, then invoke only)")
    run_rounds(list(configs.values()), inputs, args.rounds, args.runs, args.warmup, log)

    markdown = report(args, command, whole, parts, part_shapes, configs, coverage, started, time.perf_counter() - clock)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    write_bytes_atomic(args.out, markdown.encode())
    log(f"wrote {args.out}")
    if not args.no_results:
        write_section("KERNELS", demote_headings(markdown))
        log("wrote the KERNELS section of benchmarks/RESULTS.md")
    print(markdown)


if __name__ == "__main__":
    main()
