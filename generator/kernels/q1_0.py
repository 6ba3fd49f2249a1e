"""Q1_0 kernels (1 bit per weight + one fp16 scale per 128): numba, straight from packed sign bits.

Repacked layout (made once by `repack`, replaces the GGUF bytes in memory; 20/18 of their size):
  bits   uint8   (n_out, n_in // 8)    sign bits, GGUF bit order (bit j%8 of byte j//8, 1 = +d)
  scales float32 (n_out, n_in // 128)  per-block scale d
"""

from __future__ import annotations

import numpy as np
from numba import njit, prange

from .formats import GGML_Q1_0, split_blocks

QK = 128  # weights per block
BYTES_PER_BLOCK = QK // 8


def repack(raw: np.ndarray, n_in: int, n_out: int) -> tuple[np.ndarray, np.ndarray]:
    """GGUF Q1_0 bytes -> (bits (n_out, n_in//8) uint8, scales (n_out, n_in//128) float32)."""
    scales, payload = split_blocks(GGML_Q1_0, raw, n_in, n_out)
    bits = np.ascontiguousarray(payload).reshape(n_out, n_in // 8)
    return bits, np.ascontiguousarray(scales)


# ----------------------------------------------------------------------------------------------------
# decode path: out (n_out,) = W (n_out, n_in) @ x (n_in,)

@njit(parallel=True, cache=True, fastmath=True)
def matvec_simple(bits, scales, x, out):
    n_out, n_blocks = scales.shape
    for r in prange(n_out):
        acc = np.float32(0.0)
        for b in range(n_blocks):
            s = np.float32(0.0)
            for k in range(BYTES_PER_BLOCK):
                byte = bits[r, b * BYTES_PER_BLOCK + k]
                base = b * QK + k * 8
                for j in range(8):
                    v = x[base + j]
                    s += v if (byte >> j) & 1 else -v
            acc += scales[r, b] * s
        out[r] = acc


# ----------------------------------------------------------------------------------------------------
# dequantized rows: embedding lookup and tiles for BLAS

@njit(parallel=True, cache=True)
def dequant_rows(bits, scales, r0, r1, out):
    """out (r1 - r0, n_in) float32 = rows r0..r1 of W."""
    n_blocks = scales.shape[1]
    for i in prange(r1 - r0):
        r = r0 + i
        for b in range(n_blocks):
            d = scales[r, b]
            for k in range(BYTES_PER_BLOCK):
                byte = bits[r, b * BYTES_PER_BLOCK + k]
                base = b * QK + k * 8
                for j in range(8):
                    out[i, base + j] = d if (byte >> j) & 1 else -d
