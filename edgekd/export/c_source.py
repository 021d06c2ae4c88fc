"""`--target mcu`'s firmware files: NAME.cc holds the .tflite as a C array, NAME.h declares it with the ops a
MicroMutableOpResolver needs and the tensor arena it needs (docs/mcu.md).

The names follow `xxd -i NAME.tflite` (NAME_tflite, NAME_tflite_len), which firmware written for TensorFlow Lite
Micro's examples already expects. The header includes no TFLM header: the op list is a template over the resolver,
so the files compile (and are tested) without TFLM, and firmware instantiates it with its own resolver.
"""

from __future__ import annotations

import re
from pathlib import Path

import edgekd
from edgekd.errors import UserError
from edgekd.io import write_bytes_atomic

_BYTES_PER_LINE = 12
# MicroMutableOpResolver's method for each builtin op is "Add" + the op's name in CamelCase (CONV_2D: AddConv2D);
# these are the ones whose method is spelled otherwise (tensorflow/lite/micro/micro_mutable_op_resolver.h).
_RESOLVER_SPELLING = {
    "BATCH_MATMUL": "AddBatchMatMul",
    "PADV2": "AddPadV2",
    "UNIDIRECTIONAL_SEQUENCE_LSTM": "AddUnidirectionalSequenceLSTM",
    "SVDF": "AddSvdf",
}


def resolver_method(op: str) -> str:
    """The MicroMutableOpResolver method that registers builtin `op`: "CONV_2D" -> "AddConv2D"."""
    if op in _RESOLVER_SPELLING:
        return _RESOLVER_SPELLING[op]
    return "Add" + "".join(part if re.fullmatch(r"\d+D|L\d", part) else part.capitalize() for part in op.split("_"))


def write_c_source(
    tflite: Path,
    files: tuple[Path, Path],
    ops: list[str],
    arena_bytes: int | None,
    arena_note: str,
    model: bytes | None = None,
) -> tuple[Path, Path]:
    """Write `files`, (NAME.cc, NAME.h), for `tflite` (its bytes `model`, or read from it), each atomically;
    `arena_bytes` None: not measured, `arena_note` says why (or how it was measured). The caller has checked that
    both may be written (edgekd.io.check_output)."""
    source, header = files
    model = tflite.read_bytes() if model is None else model
    if custom := [op for op in ops if not re.fullmatch(r"[A-Z][A-Z0-9_]*", op)]:
        raise UserError(
            f"{tflite}: uses ops that are not TensorFlow Lite builtins ({', '.join(custom)}), which no "
            f"MicroMutableOpResolver can add; export the student without them for a microcontroller"
        )
    symbol = c_identifier(tflite.name)
    write_bytes_atomic(header, _header(tflite, source.name, symbol, ops, arena_bytes, arena_note).encode())
    write_bytes_atomic(source, _source(tflite, header, symbol, model).encode())
    return source, header


def c_identifier(file_name: str) -> str:
    """xxd -i's name for a file: every character that cannot be in a C identifier becomes "_"."""
    name = re.sub(r"[^0-9A-Za-z_]", "_", file_name)
    return f"_{name}" if name[0].isdigit() else name


def _header(tflite: Path, source: str, symbol: str, ops: list[str], arena_bytes: int | None, arena_note: str) -> str:
    guard = f"EDGEKD_{symbol.upper()}_H_"
    arena = (
        f"constexpr unsigned int {symbol}_arena_size = {arena_bytes};\n"
        f"// Declare it as: alignas(16) static uint8_t tensor_arena[{symbol}_arena_size];"
        if arena_bytes is not None
        else f"// {symbol}_arena_size: not measured ({arena_note}); measure it before sizing the arena."
    )
    adds = "\n".join(f"  ok = resolver.{resolver_method(op)}() == 0 && ok;  // {op}" for op in ops)
    by = f"`edgekd export --target mcu` (edgekd {edgekd.__version__})"
    return f"""// {tflite.name} for TensorFlow Lite Micro, written by {by}.
// Do not edit: export again instead. The model itself is in {source}.
#ifndef {guard}
#define {guard}

extern const unsigned char {symbol}[];  // the .tflite, 16-byte aligned: tflite::GetModel({symbol})
extern const unsigned int {symbol}_len;

// The smallest tensor arena TFLM's interpreter allocated and ran this model in, in bytes:
// {arena_note}, on the host with TFLM's reference kernels. Optimised kernels (CMSIS-NN) may
// ask for scratch buffers on top: check that AllocateTensors() succeeds on the device.
{arena}

// The builtin ops the model uses, each registered once:
//   tflite::MicroMutableOpResolver<{symbol}_op_count> resolver;
//   if (!{symbol}_add_ops(resolver)) {{ /* an op could not be added */ }}
constexpr int {symbol}_op_count = {len(ops)};

template <typename Resolver>
bool {symbol}_add_ops(Resolver& resolver) {{
  bool ok = true;  // each Add returns a TfLiteStatus, 0 (kTfLiteOk) when the op was added
{adds}
  return ok;
}}

#endif  // {guard}
"""


def _source(tflite: Path, header: Path, symbol: str, model: bytes) -> str:
    rows = (
        "  " + ", ".join(f"0x{b:02x}" for b in model[i : i + _BYTES_PER_LINE]) + ","
        for i in range(0, len(model), _BYTES_PER_LINE)
    )
    body = "\n".join(rows)
    return f"""// {tflite.name} ({len(model)} bytes) as a C array, written by edgekd {edgekd.__version__}; do not edit.
#include "{header.name}"

// 16-byte aligned: TFLM reads the flatbuffer's tables and int8 weights in place.
alignas(16) const unsigned char {symbol}[] = {{
{body}
}};
const unsigned int {symbol}_len = {len(model)};
"""
