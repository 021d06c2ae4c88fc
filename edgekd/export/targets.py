"""`edgekd export --target`: the variant the measurements favour on each kind of CPU, and why.

Measured by benchmarks/kernels.py (benchmarks/RESULTS.md, "Kernels"); the reasons are printed by export.
"""
from __future__ import annotations

TARGETS = {
    "x86": ("float16", "on x86 full int8 takes several times as long per window as float: about 7x for an LSTM student "
                       "(XNNPACK runs no LSTM, and the integer LSTM's kernels have no x86 vector code), 2-4x for the "
                       "convolutional default; float32, float16 and dynamic ran equally fast, and float16 is the smallest "
                       "of them, with float accuracy; use 1 thread (2 were slower)"),
    "pi": ("float16", "the float kernels are vectorised on ARM as on x86 and float16 halves the file with float "
                      "accuracy; ARM builds do vectorise int8's LSTM (NEON), so int8 may be as fast on a Pi, but that is "
                      "not measured yet: bench both on the device (README, Raspberry Pi)"),
    "mcu": ("int8", "microcontroller runtimes (TFLite Micro) want full-integer models, and int8 is the smallest "
                    "file and tensor arena"),
}
