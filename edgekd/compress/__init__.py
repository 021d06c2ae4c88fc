"""Compression of trained students: low-rank factorisation, pruning, quantization-aware training."""
