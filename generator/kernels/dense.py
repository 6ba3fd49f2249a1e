"""Kernels for the non-1-bit types: F16 / BF16 (16-bit codes + exact decode table) and Q8_0.

F32 needs no kernel (numpy's BLAS on a zero-copy view). These types are rare in Bonsai files (norms
are F32 vectors, matrices are Q1_0), so the kernels are simple and correct rather than tuned.
"""

from __future__ import annotations

import numpy as np
from numba import njit, prange

Q8_BLOCK = 32


@njit(parallel=True, cache=True, fastmath=True)
def table16_matvec(codes, table, x, out):
    """out = decode(codes) @ x, with decode(c) = table[c] (fp16 or bf16 -> float32)."""
    n_out, n_in = codes.shape
    for r in prange(n_out):
        acc = np.float32(0.0)
        for k in range(n_in):
            acc += table[codes[r, k]] * x[k]
        out[r] = acc


@njit(parallel=True, cache=True)
def table16_dequant_rows(codes, table, r0, r1, out):
    n_in = codes.shape[1]
    for i in prange(r1 - r0):
        for k in range(n_in):
            out[i, k] = table[codes[r0 + i, k]]


@njit(parallel=True, cache=True, fastmath=True)
def q8_matvec(qs, scales, x, out):
    """out = W @ x for Q8_0, qs int8 (n_out, n_in), scales float32 (n_out, n_in // 32)."""
    n_out, n_blocks = scales.shape
    for r in prange(n_out):
        acc = np.float32(0.0)
        for b in range(n_blocks):
            s = np.float32(0.0)
            for j in range(Q8_BLOCK):
                s += np.float32(qs[r, b * Q8_BLOCK + j]) * x[b * Q8_BLOCK + j]
            acc += scales[r, b] * s
        out[r] = acc


@njit(parallel=True, cache=True)
def q8_dequant_rows(qs, scales, r0, r1, out):
    n_blocks = scales.shape[1]
    for i in prange(r1 - r0):
        for b in range(n_blocks):
            d = scales[r0 + i, b]
            for j in range(Q8_BLOCK):
                out[i, b * Q8_BLOCK + j] = d * np.float32(qs[r0 + i, b * Q8_BLOCK + j])
