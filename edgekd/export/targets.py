"""`edgekd export --target`: the variant the measurements favour on each kind of CPU, and why.

Measured by benchmarks/kernels.py (benchmarks/RESULTS.md, "Kernels"); the reasons are printed by export.
"""

from __future__ import annotations

TARGETS = {
    "x86": (
        "float32",
        "on x86 float32 runs a window fastest: for the convolutional default float16 took 1.6-2.1x and "
        "full int8 2-4x as long (RESULTS.md, frontier), for an LSTM student the float variants were equal and "
        "int8 about 7x (XNNPACK runs no LSTM, and the integer LSTM's kernels have no x86 vector code); a "
        "PC has room for the larger file; use 1 thread (2 were slower)",
    ),
    "pi": (
        "float16",
        "the float kernels are vectorised on ARM as on x86 and float16 halves the file with float "
        "accuracy; ARM builds do vectorise int8's LSTM (NEON), so int8 may be as fast on a Pi, but that is "
        "not measured yet: bench both on the device (README, Raspberry Pi)",
    ),
    "mcu": (
        "int8",
        "microcontroller runtimes (TFLite Micro) want full-integer models, and int8 is the smallest "
        "file and tensor arena",
    ),
}
