"""Q1_0 kernels (1 bit per weight + one fp16 scale per 128): numba, straight from packed sign bits.

Repacked layout (made once by `repack`; it replaces the GGUF bytes in memory at the same size, plus zero
rows padding the last tile):
  bits   uint8   (n_tiles, n_blocks, tile_rows, 16)  sign bytes, GGUF bit order (bit j%8 of byte j//8
                                                     of the block, 1 = +d)
  scales uint16  (n_tiles, n_blocks, tile_rows)      per-block scale d, IEEE half bits as in the file; kernels
                                                     widen them with F16C (half.to_f32). Kept half: float32
                                                     scales cost +11% of the weights (+129 MB on Bonsai-8B)
Row r is row r % tile_rows of tile r // tile_rows (tile_rows = tile_rows_for(n_out, threads) <= 512).
Kernels walk a tile block by block, so this order makes their reads of the weights one sequential
stream (row-major order made them tile_rows strided streams: tiling gave +35-40% decode speed on
matrices that come from DRAM).

The one fast idea: lookup tables of signed partial sums (T-MAC style). A weight byte holds 8 signs, so
its dot product with 8 activations is one of 256 values; precompute them once per input vector and
every weight byte costs a single table lookup and add instead of 8 multiply-adds.
  decode  (matvec): 8-bit tables, one float per (byte position, byte value): n_in * 128 bytes.
  prefill (matmul): 4-bit tables holding T (16 or 64) tokens side by side, so one lookup feeds a SIMD
                    add over T tokens; built per 128-wide column block (32 KB per 16 tokens), per thread.
All sums are float32 on float32 activations (no activation quantization).
Scratch memory: decode tables n_in * 128 B per Python thread (256 KB at n_in 2048, 1.5 MB at 12288,
kept and reused while the input is unchanged); prefill per numba thread: 128 KB of tables, the token
tile transposed (n_in * 256 B) and a (rows, 64) float32 accumulator.
"""

from __future__ import annotations

import numpy as np
from numba import njit, prange

from .formats import GGML_Q1_0, split_blocks
from .half import to_f32

QK = 128  # weights per block
BYTES_PER_BLOCK = QK // 8
MAX_TILE_ROWS = 512  # rows per tile: one block's decode tables (16 KB) are reused across a tile in L1;
# 512 rows measured 15-25% faster than 256 (fewer table re-reads), 1024 no better


def tile_rows_for(n_out: int, n_threads: int) -> int:
    """Rows per tile: MAX_TILE_ROWS, or fewer (a multiple of 64) so that every thread gets a tile."""
    per_thread = -(-n_out // max(1, n_threads))
    return min(MAX_TILE_ROWS, max(64, -(-per_thread // 64) * 64))


def repack(raw: np.ndarray, n_in: int, n_out: int, tile_rows: int,
           byte_major: bool = False, ggml_type: int = GGML_Q1_0) -> tuple[np.ndarray, np.ndarray]:
    """GGUF Q1_0 bytes -> (bits (n_tiles, n_blocks, tile_rows, 16) uint8, scales (n_tiles, n_blocks, tile_rows)
    uint16 F16 bits). byte_major=True lays bits out as (n_tiles, n_blocks, 16, tile_rows) instead (the pshufb
    kernel's order), written directly: a transposed copy afterwards would hold two copies of the largest
    matrix (the 311 MB-parameter embedding of Bonsai-1.7B) at once during load. ggml_type=GGML_Q2_0 repacks Q2_0
    the same way: its blocks are also an fp16 scale + 16 payload bytes (64 weights of 2 bits, not 128 of 1)."""
    scales, payload = split_blocks(ggml_type, raw, n_in, n_out, f16_bits=True)  # (n_out, nb), (n_out, nb, 16)
    n_blocks = scales.shape[1]
    n_tiles = -(-n_out // tile_rows)
    shape = (n_tiles, n_blocks, BYTES_PER_BLOCK, tile_rows) if byte_major else (n_tiles, n_blocks, tile_rows,
                                                                                  BYTES_PER_BLOCK)
    bits = np.zeros(shape, dtype=np.uint8)
    tiled_scales = np.zeros((n_tiles, n_blocks, tile_rows), dtype=np.uint16)
    for it in range(n_tiles):  # tile by tile: never a second full-size temporary
        r0, r1 = it * tile_rows, min(n_out, (it + 1) * tile_rows)
        if byte_major:
            bits[it, :, :, : r1 - r0] = payload[r0:r1].transpose(1, 2, 0)
        else:
            bits[it, :, : r1 - r0] = payload[r0:r1].transpose(1, 0, 2)
        tiled_scales[it, :, : r1 - r0] = scales[r0:r1].T
    return bits, tiled_scales


# ----------------------------------------------------------------------------------------------------
# decode path: out (n_out,) = W (n_out, n_in) @ x (n_in,)

@njit(cache=True, fastmath=True)
def build_lut8(x, lut):
    """lut (n_in//8 * 256,): lut[j*256 + m] = sum_i (bit i of m ? +x[8j+i] : -x[8j+i]).

    Built by doubling: entries with bit i set = entries without it + 2 x[8j+i]. Serial on purpose: it
    is ~1/30 of a matvec, and a second parallel region per matvec costs more than it saves."""
    for j in range(x.size // 8):
        base = j * 256
        tot = np.float32(0.0)
        for i in range(8):
            tot -= x[8 * j + i]
        lut[base] = tot
        for i in range(8):
            step = 1 << i
            twice = 2 * x[8 * j + i]
            for m in range(step):
                lut[base + step + m] = lut[base + m] + twice


@njit(parallel=True, cache=True, fastmath=False)  # fastmath would fold the 4 sums into one serial chain (-18%)
def matvec_lut8(words, scales, lut, out):
    """out (n_out,) = W @ x given x's 8-bit tables; words = bits viewed as uint64 (n_tiles, n_blocks,
    tile_rows, 2).

    Tiles in parallel; within a tile, block by block, so the block's 16 KB of tables stay in L1 across
    the tile's rows. A block's 16 sign bytes are two 64-bit loads; each byte is shifted out and looked
    up (one table load + add per 8 weights), into 4 independent sums to hide load latency."""
    n_out = out.size
    n_tiles, n_blocks, tile_rows = scales.shape
    for it in prange(n_tiles):
        r0 = it * tile_rows
        n_r = min(n_out - r0, tile_rows)
        acc = out[r0:r0 + n_r]
        acc[:] = 0
        for b in range(n_blocks):
            t = lut[b * 4096:(b + 1) * 4096]  # this block's 16 tables of 256
            wb = words[it, b]
            sb = scales[it, b]
            for rr in range(n_r):
                w0 = wb[rr, 0]
                w1 = wb[rr, 1]
                s0 = t[np.intp(w0 & 255)] + t[256 + np.intp((w0 >> 8) & 255)]
                s1 = t[512 + np.intp((w0 >> 16) & 255)] + t[768 + np.intp((w0 >> 24) & 255)]
                s2 = t[1024 + np.intp((w0 >> 32) & 255)] + t[1280 + np.intp((w0 >> 40) & 255)]
                s3 = t[1536 + np.intp((w0 >> 48) & 255)] + t[1792 + np.intp(w0 >> 56)]
                s0 += t[2048 + np.intp(w1 & 255)] + t[2304 + np.intp((w1 >> 8) & 255)]
                s1 += t[2560 + np.intp((w1 >> 16) & 255)] + t[2816 + np.intp((w1 >> 24) & 255)]
                s2 += t[3072 + np.intp((w1 >> 32) & 255)] + t[3328 + np.intp((w1 >> 40) & 255)]
                s3 += t[3584 + np.intp((w1 >> 48) & 255)] + t[3840 + np.intp(w1 >> 56)]
                acc[rr] += to_f32(sb[rr]) * ((s0 + s1) + (s2 + s3))


# ----------------------------------------------------------------------------------------------------
# prefill path: out (n_tok, n_out) = x (n_tok, n_in) @ W.T

@njit(inline="always", fastmath=True)
def _build_block_lut4(xt, b, n_t, lut, bits):
    """lut (32 * 16 * n_t,): lut[(g*16 + m)*n_t + t] = signed sum of nibble m with xt[b*128 + 4g : +4, t]
    (bits=1, Q1_0); for bits=2 (Q2_0, 64-input blocks) the sum (m & 3 - 1) x[b*64 + 2g] + (m >> 2 - 1) x[.. + 1].

    xt is the token tile transposed (n_in, n_t), so each entry row is a SIMD sum over tokens."""
    if bits == 2:
        for g in range(32):
            c0 = b * 64 + g * 2
            for m in range(16):
                p0, p1 = np.float32((m & 3) - 1), np.float32((m >> 2) - 1)
                base = (g * 16 + m) * n_t
                for t in range(n_t):
                    lut[base + t] = p0 * xt[c0, t] + p1 * xt[c0 + 1, t]
        return
    for g in range(32):
        c0 = b * QK + g * 4
        for m in range(16):
            p0 = np.float32(1.0) if m & 1 else np.float32(-1.0)
            p1 = np.float32(1.0) if m & 2 else np.float32(-1.0)
            p2 = np.float32(1.0) if m & 4 else np.float32(-1.0)
            p3 = np.float32(1.0) if m & 8 else np.float32(-1.0)
            base = (g * 16 + m) * n_t
            for t in range(n_t):
                lut[base + t] = (p0 * xt[c0, t] + p1 * xt[c0 + 1, t]) + (p2 * xt[c0 + 2, t] + p3 * xt[c0 + 3, t])


@njit(inline="always", fastmath=True)
def _matmul_tiles(bits, scales, x, out, it0, it1, n_t, wbits):
    """Row tiles it0..it1 of out (n_tok, n_out) = x @ W.T, n_t tokens per table tile, wbits bits per weight
    (1: Q1_0, 2: Q2_0; both are 16 payload bytes = 32 nibbles per block). Inlined into callers that pass n_t
    as a constant: with a run-time n_t LLVM does not vectorize the token loop (4-8x slower)."""
    n_blocks, tile_rows = scales.shape[1], scales.shape[2]
    n_tok, n_in = x.shape
    n_out = out.shape[1]
    r0 = it0 * tile_rows
    r1 = min(n_out, it1 * tile_rows)
    lut = np.empty(32 * 16 * n_t, np.float32)  # (32 nibble groups, 16 values, n_t tokens)
    acc = np.empty((max(r1 - r0, 0), n_t), np.float32)  # (rows, tokens) of this token tile
    xt = np.empty((n_in, n_t), np.float32)  # token tile transposed; zero past the last token
    for t0 in range(0, n_tok, n_t):
        for c in range(n_in):
            for t in range(n_t):
                xt[c, t] = x[t0 + t, c] if t0 + t < n_tok else np.float32(0.0)
        acc[:, :] = 0
        for b in range(n_blocks):
            _build_block_lut4(xt, b, n_t, lut, wbits)
            for it in range(it0, it1):
                for rr in range(min(tile_rows, n_out - it * tile_rows)):
                    a = it * tile_rows + rr - r0  # row of acc
                    d = to_f32(scales[it, b, rr])
                    q = bits[it, b, rr]
                    for k0 in range(0, BYTES_PER_BLOCK, 4):
                        g = 2 * k0 * 16  # first table entry of this 4-byte (8-nibble) group
                        i0 = (g + np.intp(q[k0] & 15)) * n_t
                        i1 = (g + 16 + np.intp(q[k0] >> 4)) * n_t
                        i2 = (g + 32 + np.intp(q[k0 + 1] & 15)) * n_t
                        i3 = (g + 48 + np.intp(q[k0 + 1] >> 4)) * n_t
                        i4 = (g + 64 + np.intp(q[k0 + 2] & 15)) * n_t
                        i5 = (g + 80 + np.intp(q[k0 + 2] >> 4)) * n_t
                        i6 = (g + 96 + np.intp(q[k0 + 3] & 15)) * n_t
                        i7 = (g + 112 + np.intp(q[k0 + 3] >> 4)) * n_t
                        for t in range(n_t):
                            acc[a, t] += d * (
                                ((lut[i0 + t] + lut[i1 + t]) + (lut[i2 + t] + lut[i3 + t]))
                                + ((lut[i4 + t] + lut[i5 + t]) + (lut[i6 + t] + lut[i7 + t]))
                            )
        for t in range(min(n_t, n_tok - t0)):
            for r in range(r0, r1):
                out[t0 + t, r] = acc[r - r0, t]


@njit(parallel=True, cache=True, fastmath=True)
def matmul_lut4_t64(bits, scales, x, out, n_threads, wbits):
    """out (n_tok, n_out) = x @ W.T in tiles of 64 tokens, wbits bits per weight (1: Q1_0, 2: Q2_0: only the
    tables differ, built once per block and token tile, so a run-time branch costs nothing). Each of n_threads
    (= numba.get_num_threads(), passed in: reading it inside would block on-disk caching) owns a run of row
    tiles and its own tables: per block it builds the block's nibble tables (128 KB), then each row's 16
    bytes are 32 lookups, each a 64-token SIMD add."""
    n_tiles = bits.shape[0]
    per = (n_tiles + n_threads - 1) // n_threads
    for th in prange(n_threads):
        _matmul_tiles(bits, scales, x, out, min(n_tiles, th * per), min(n_tiles, (th + 1) * per), 64, wbits)


@njit(parallel=True, cache=True, fastmath=True)
def matmul_lut4_t16(bits, scales, x, out, n_threads, wbits):
    """As matmul_lut4_t64 with 16-token tiles: less padding waste for short batches."""
    n_tiles = bits.shape[0]
    per = (n_tiles + n_threads - 1) // n_threads
    for th in prange(n_threads):
        _matmul_tiles(bits, scales, x, out, min(n_tiles, th * per), min(n_tiles, (th + 1) * per), 16, wbits)


# ----------------------------------------------------------------------------------------------------
# dequantized rows: embedding lookup

@njit(parallel=True, cache=True)
def dequant_rows(bits, scales, r0, r1, out):
    """out (r1 - r0, n_in) float32 = rows r0..r1 of W."""
    n_blocks, tile_rows = scales.shape[1], scales.shape[2]
    for i in prange(r1 - r0):
        it, rr = divmod(r0 + i, tile_rows)
        for b in range(n_blocks):
            d = to_f32(scales[it, b, rr])
            for k in range(BYTES_PER_BLOCK):
                byte = bits[it, b, rr, k]
                base = b * QK + k * 8
                for j in range(8):
                    out[i, base + j] = d if (byte >> j) & 1 else -d
