"""What `edgekd export` can write: one row per output format, in the spirit of Ultralytics' `export_formats()`.

Each fact about a format is written once, here: the command's flags and their help, `--target`'s choices and help,
the default `--min-agreement`, the check of a variant name and the dispatch to a converter and a verifier all read
this table. A new format is a new row. No TensorFlow here: the command line reads the table before TensorFlow loads,
so converters and verifiers are named as "module:function" and imported only when a row is exported.

The targets' reasons are measurements: benchmarks/kernels.py (benchmarks/RESULTS.md, "Kernels") for the CPUs, and
docs/mcu.md for the microcontroller; export prints them.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass, field
from pathlib import Path


@dataclass(frozen=True)
class ExportFormat:
    name: str  # the variant recorded in the file's metadata; a variant's flag is --NAME
    suffix: str  # of the file written, beside --out
    help: str
    # Argmax agreement its file must reach on the run's test windows by default: a variant with the Keras student
    # (float variants differ only by rounding; int8 measured 90-100% on healthy models and ~20% when collapsed),
    # a file made from the .tflite with that .tflite under LiteRT.
    min_agreement: float
    targets: dict[str, str] = field(default_factory=dict)  # --target that chooses this row -> why (export prints it)
    # True: a .tflite variant of the student, chosen by its own flag or a target. False: files made from the
    # exported .tflite (whichever variant it is), chosen by a target only.
    variant: bool = True
    # Keras model -> .tflite bytes; or, for files made from a .tflite, .tflite -> files.
    converter: str = "edgekd.export.convert:convert"
    verifier: str = "edgekd.export.export:keras_agreement"  # the check its output passes before it is kept
    also: tuple[str, ...] = ()  # suffixes of the other files it writes (a C source's header)

    def files(self, out: Path) -> tuple[Path, ...]:
        """The files this row writes for `--out out`."""
        return tuple(out.with_suffix(suffix) for suffix in (self.suffix, *self.also))

    def function(self, role: str):
        """The converter or verifier itself, imported now (`role` "converter" or "verifier")."""
        module, name = getattr(self, role).split(":")
        return getattr(importlib.import_module(module), name)


FORMATS = (
    ExportFormat(
        "float32",
        ".tflite",
        "Float32 weights and activations.",
        0.99,
        targets={
            "x86": "on x86 float32 runs a window fastest: for the convolutional default float16 took 1.6-2.1x and "
            "full int8 2-4x as long, for an LSTM student the float variants were equal and "
            "int8 about 7x (XNNPACK runs no LSTM, and the integer LSTM's kernels have no x86 vector code); a "
            "PC has room for the larger file; use 1 thread (2 were slower)"
        },
    ),
    ExportFormat(
        "float16",
        ".tflite",
        "Float16 weights, float32 compute.",
        0.98,
        targets={
            "pi": "the float kernels are vectorised on ARM as on x86 and float16 halves the file with float "
            "accuracy; ARM builds do vectorise int8's LSTM (NEON), so int8 may be as fast on a Pi, but that is "
            "not measured yet: bench both on the device (edgekd bench A.tflite B.tflite)"
        },
    ),
    ExportFormat("dynamic", ".tflite", "Int8 weights, float activations.", 0.95),
    ExportFormat(
        "int8",
        ".tflite",
        "Full integer: int8 weights, activations, input and output.",
        0.90,
        targets={
            "mcu": "microcontroller runtimes (TFLite Micro) want full-integer models, and int8 is the smallest "
            "file and tensor arena"
        },
    ),
    ExportFormat(
        "tflm",
        ".cc",
        "The .tflite as a C array (NAME.cc) and a header (NAME.h) with the ops a MicroMutableOpResolver needs and "
        "the smallest tensor arena TensorFlow Lite Micro ran it in.",
        0.99,  # the same file under another interpreter: outputs may differ by a rounding step (docs/mcu.md)
        targets={
            "mcu": "firmware links the model as a C array and sizes its tensor arena at compile time; TensorFlow "
            "Lite Micro's own interpreter runs the file first (pip install 'edgekd[mcu]')"
        },
        variant=False,
        also=(".h",),
        converter="edgekd.export.c_source:write_c_source",
        verifier="edgekd.runtime.tflm:verify_against_litert",
    ),
)

VARIANTS = tuple(f for f in FORMATS if f.variant)
TARGETS = tuple(dict.fromkeys(t for f in FORMATS for t in f.targets))  # x86, pi, mcu: in the order of the rows


def find(name: str, variant: bool) -> ExportFormat:
    """The row called `name`, a .tflite variant (`variant`) or files made from one; a ValueError otherwise (a bug,
    not the user's input: click checks that)."""
    rows = [row for row in FORMATS if row.variant == variant]
    for row in rows:
        if row.name == name:
            return row
    kind = "variant" if variant else "format made from a .tflite"
    raise ValueError(f"unknown export {kind} {name!r}; known: {', '.join(row.name for row in rows)}")


def chosen_by(target: str) -> tuple[ExportFormat, ...]:
    """The rows `--target target` writes: one variant, then the files made from it."""
    return tuple(f for f in FORMATS if target in f.targets)


def target_variant(target: str) -> ExportFormat:
    return next(f for f in chosen_by(target) if f.variant)


def variant_choice_hint() -> str:
    """ "--float32, --float16, --dynamic or --int8 (or --target x86|pi|mcu)", for the error without a variant."""
    flags = [f"--{f.name}" for f in VARIANTS]
    return f"{', '.join(flags[:-1])} or {flags[-1]} (or --target {'|'.join(TARGETS)})"


def min_agreement_help() -> str:
    defaults = ", ".join(f"{f.min_agreement:.2f} {f.name}" for f in VARIANTS)
    return f"Least argmax agreement with the Keras student on test windows. [default: {defaults}]"


def target_help() -> str:
    """ "x86: float32; pi: float16; mcu: int8 plus NAME.cc and NAME.h", from the rows."""

    def writes(target: str) -> str:
        rows = chosen_by(target)
        files = [p.name for row in rows if not row.variant for p in row.files(Path("NAME.tflite"))]
        return f"{target}: {target_variant(target).name}" + (f" plus {' and '.join(files)}" if files else "")

    return (
        "Pick the format measured best for this device (when no variant flag is given), and say why: "
        + "; ".join(writes(t) for t in TARGETS)
        + "."
    )
