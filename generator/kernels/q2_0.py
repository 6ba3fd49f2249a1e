"""Q2_0 (Ternary-Bonsai: 2-bit codes + one fp16 scale per 64 weights): the parts that differ from Q1_0.

WHY so little code: a Q2_0 block is an fp16 scale and 16 payload bytes, exactly like a Q1_0 block; only the
meaning of a payload nibble changes (Q1_0: 4 sign bits of 4 inputs; Q2_0: two 2-bit codes of 2 inputs, value
(q - 1) * d). Every Q1_0 kernel works on nibbles or bytes through tables of partial sums built from the
activations, so the Q1_0 kernels run Q2_0 unchanged once they are given Q2_0 tables:
  float decode  q1_0.matvec_lut8 with `build_lut8` below (byte m of position j: sum_i (code_i(m) - 1) x[4j+i])
  int11 decode  q1_0_simd.MATVEC with `build_tables` below (nibble m of group g: (m&3 - 1) x_a + (m>>2 - 1) x_b)
  float prefill q1_0.matmul_lut4_* with wbits=2 (the nibble tables built for 2-input groups)
  int8 prefill  q1_0_vnni.matmul_vnni_q2 (codes expanded to bytes 0..3 instead of bits to 0/1)
Per weight byte the work is the same as Q1_0's, and a Q2_0 matrix has twice the bytes of a Q1_0 one of the
same shape, so a Q2_0 matvec reads (and takes) about twice as long: the same speed per byte.

Element j of a block is bits 2*(j%4), 2*(j%4)+1 of payload byte j//4: the low nibble of byte k holds inputs
4k, 4k+1 and the high nibble inputs 4k+2, 4k+3.
"""

from __future__ import annotations

import numpy as np
from numba import njit, prange

from .half import to_f32

QK = 64               # weights per block
Q_MAX, Q_BIAS = 1023, 1024  # the int11 table range (q1_0_simd)


@njit(cache=True, fastmath=True)
def build_lut8(x, lut):
    """lut (n_in//4 * 256,): lut[j*256 + m] = sum_i ((m >> 2i) & 3 - 1) * x[4j+i], the dot product of payload
    byte value m at byte position j with x. One 16-entry table per nibble, then 256 sums of two."""
    lo = np.empty(16, np.float32)
    hi = np.empty(16, np.float32)
    for j in range(x.size // 4):
        for m in range(16):
            a, c = np.float32((m & 3) - 1), np.float32((m >> 2) - 1)
            lo[m] = a * x[4 * j] + c * x[4 * j + 1]
            hi[m] = a * x[4 * j + 2] + c * x[4 * j + 3]
        base = j * 256
        for m in range(256):
            lut[base + m] = lo[m & 15] + hi[m >> 4]


@njit(cache=True)
def build_tables(x, tab, s):
    """int11 tables for q1_0_simd's block kernel: tab (n_blocks, 16, 4, 16) uint8, s (n_blocks,) float32.

    tab[b, k, 0|1, m] = low byte of q + 1024, q = round(v / s_b), v = (m & 3 - 1) x[c] + (m >> 2 - 1) x[c + 1] for
    c = b*64 + 4k + (0|2) (low | high nibble of payload byte k); tab[b, k, 2|3, m] = its high byte.
    s_b = (largest 2 (|x[c]| + |x[c+1]|) of the block) / 1023 bounds |q| by 1023, as for Q1_0."""
    n_blocks = x.size // QK
    for b in range(n_blocks):
        amax = 0.0
        for g in range(QK // 2):
            c = b * QK + 2 * g
            amax = max(amax, 2.0 * (abs(np.float64(x[c])) + abs(np.float64(x[c + 1]))))
        scale = amax / Q_MAX if amax > 0 else 1.0
        s[b] = scale
        inv = 1.0 / scale
        for g in range(QK // 2):
            k, half = g // 2, g % 2
            c = b * QK + 2 * g
            for m in range(16):
                v = ((m & 3) - 1) * np.float64(x[c]) + ((m >> 2) - 1) * np.float64(x[c + 1])
                e = min(max(np.int64(np.round(v * inv)), -Q_MAX), Q_MAX) + Q_BIAS
                tab[b, k, half, m] = e & 255
                tab[b, k, 2 + half, m] = e >> 8


@njit(parallel=True, cache=True)
def dequant_rows(bits, scales, r0, r1, out):
    """out (r1 - r0, n_in) float32 = rows r0..r1 of W; bits (n_tiles, n_blocks, tile_rows, 16) as q1_0.repack
    lays them out (ggml_type=GGML_Q2_0)."""
    n_blocks, tile_rows = scales.shape[1], scales.shape[2]
    for i in prange(r1 - r0):
        it, rr = divmod(r0 + i, tile_rows)
        for b in range(n_blocks):
            d = to_f32(scales[it, b, rr])
            for k in range(16):
                byte = bits[it, b, rr, k]
                for j in range(4):
                    out[i, b * QK + 4 * k + j] = d * np.float32(((byte >> (2 * j)) & 3) - 1)
