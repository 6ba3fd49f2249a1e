"""The KV cache: its element types and size, the `KVCache` class, and the numba kernels that write it.

WHY a module of its own (gpt-fast keeps its KV cache as its own class too): the model's forward only appends
keys / values and reads the arrays; how they are laid out (keys in tiles of TILE positions, values as rows),
quantized (int8 / 4-bit per block of 32 values, with the scale search of the 4-bit blocks) and rotated (the
Walsh-Hadamard rotation the quantized caches store) is decided here, next to the writers that depend on it.
The attention kernels that read the cache are in `generator/kernels/` (attention.py, attention_amx.py) and in
`layers.attention`.
"""

from __future__ import annotations

import mmap

import numba
import numpy as np
from numba import njit, prange

from .cache_types import KV_CACHE_KINDS
from .errors import ModelError
from .kernels import hadamard
from .kernels.attention import TILE, padded_ctx
from .kernels.half import store
from .layers import PARALLEL_ROWS

# ---------------------------------------------------------------------------------------------------------------
# Element types and bytes
# ---------------------------------------------------------------------------------------------------------------

# KV cache element types: "f16" (IEEE half, as llama.cpp's default; half the bytes decode reads per token),
# "f32" (exact: what the float32 reference checks use), "q8" (int8 with a float32 scale per 32 values, like
# llama.cpp's q8_0: 56% of F16's bytes) or "q4" (4-bit with a float32 scale per 32 values, like llama.cpp's q4_0
# with a wider scale: 31% of F16's bytes; two values per uint8, half.Q4_PACKING); store_kv_blocks (below) writes
# both. F16 values are stored as uint16 bit patterns.
KV_CACHE_TYPES = dict(zip(KV_CACHE_KINDS, (np.uint16, np.float32, np.int8, np.uint8)))
BLOCK_SCALED = ("q8", "q4")   # the types with a scale per 32 values of a row
VALUES_PER_ELEMENT = {"q4": 2}  # cache values per array element where not 1 (packed)


def kv_scale_blocks(config, kv_cache: str) -> int:
    """Scale blocks per cached key / value row: head_dim / 32 for q8 and q4, 1 (scales all ones) otherwise."""
    return config.head_dim // Q8_BLOCK if kv_cache in BLOCK_SCALED else 1


def kv_cache_bytes(config, n_ctx: int, kv_cache: str = "f32") -> int:
    """Bytes of the K and V caches for n_ctx positions (what load() will allocate: n_ctx rounded up to the
    attention kernels' step, padded_ctx), the block scales included."""
    row = config.head_dim * np.dtype(KV_CACHE_TYPES[kv_cache]).itemsize // VALUES_PER_ELEMENT.get(kv_cache, 1)
    if kv_cache in BLOCK_SCALED:
        row += 4 * kv_scale_blocks(config, kv_cache)
    return 2 * config.n_layer * config.n_head_kv * padded_ctx(n_ctx) * row


def _pages_on_use(shape: tuple[int, ...], dtype) -> np.ndarray:
    """A zeroed array whose memory becomes resident only where it is written, 4 KB at a time.

    WHY: numpy advises the kernel to back large arrays with 2 MB huge pages, so one value written at
    position 0 of every (layer, head) block made the whole KV cache resident at the first token (Bonsai-8B,
    n_ctx 2048: all 151 MB of values). An anonymous map without that advice grows with the positions used:
    the value cache of a short prompt costs what the prompt fills; so does the key cache (tiles of TILE
    positions, each tile's hd rows contiguous)."""
    if not hasattr(mmap, "MAP_ANONYMOUS"):          # Windows: no anonymous private maps in Python's mmap
        return np.zeros(shape, dtype)
    count = int(np.prod(shape))
    buf = mmap.mmap(-1, max(count * np.dtype(dtype).itemsize, 1), flags=mmap.MAP_PRIVATE | mmap.MAP_ANONYMOUS)
    return np.frombuffer(buf, dtype=dtype, count=count).reshape(shape)


# ---------------------------------------------------------------------------------------------------------------
# The cache
# ---------------------------------------------------------------------------------------------------------------


class KVCache:
    """Keys and values of every layer for n_ctx positions, and how many positions are filled (`n_past`).

    Keys in tiles of TILE positions per KV head, (n_layer, n_kv, n_ctx / TILE, hd, TILE): decode's q.k streams
    each tile front to back, a vector per key dimension (kernels/attention.py); values (n_layer, n_kv, n_ctx, hd):
    the weighted sum streams contiguous value rows. n_ctx is rounded up to kernels.attention.CTX_ROUND. float32, uint16
    holding F16 bits, int8, or uint8 holding two 4-bit values (tiles (.., hd, TILE / 2), value rows hd / 2)
    (decode reads the whole filled cache per token: at 1,500 positions of Bonsai-1.7B that is 344 MB in float32,
    more than the weights). k_scale (n_layer, n_kv, nb, n_ctx) and v_scale
    (n_layer, n_kv, n_ctx, nb) float32: the scale of each 32-value block of an int8 / 4-bit key / value row; for the
    other types nb = 1 and all ones (attention multiplies by them either way)."""

    def __init__(self, config, n_ctx: int, kind: str = "f32"):
        dtype, nb = KV_CACHE_TYPES[kind], kv_scale_blocks(config, kind)
        self.kind, self.n_ctx, self.n_past = kind, n_ctx, 0
        self.rotated = kind in BLOCK_SCALED and hadamard.fits(config.head_dim)   # keys and values stored times H
        # (rotate_heads)
        n_alloc, per = padded_ctx(n_ctx), VALUES_PER_ELEMENT.get(kind, 1)
        self.k = _pages_on_use((config.n_layer, config.n_head_kv, n_alloc // TILE, config.head_dim, TILE // per), dtype)
        self.v = _pages_on_use((config.n_layer, config.n_head_kv, n_alloc, config.head_dim // per), dtype)
        self.k_scale = np.ones((config.n_layer, config.n_head_kv, nb, n_alloc), np.float32)
        self.v_scale = np.ones((config.n_layer, config.n_head_kv, n_alloc, nb), np.float32)
        self.nbytes = self.k.nbytes + self.v.nbytes + (
            self.k_scale.nbytes + self.v_scale.nbytes if kind in BLOCK_SCALED else 0)

    def append(self, li: int, k: np.ndarray, v: np.ndarray, pos0: int) -> None:
        """Write T new keys/values (T, kv_dim) of layer li at positions pos0.. (n_past moves in `advance`)."""
        if self.kind in BLOCK_SCALED:
            (store_kv_blocks_rows if k.shape[0] >= PARALLEL_ROWS else store_kv_blocks)(
                k, v, self.k[li], self.v[li], self.k_scale[li], self.v_scale[li], pos0)
        else:
            (store_kv_rows if k.shape[0] >= PARALLEL_ROWS else store_kv)(
                k, v, self.k[li], self.v[li], pos0)

    def advance(self, n: int) -> None:
        """n more positions are filled (called once per step, after every layer appended)."""
        self.n_past += n

    def truncate(self, n: int) -> None:
        """Keep the first n positions (reuse a shared prompt prefix); 0 forgets everything."""
        if not 0 <= n <= self.n_past:
            raise ModelError(f"cannot truncate the cache to {n} positions: it holds {self.n_past}")
        self.n_past = int(n)

    def room_for(self, n: int) -> bool:
        return self.n_past + n <= self.n_ctx


# ---------------------------------------------------------------------------------------------------------------
# Writers: store keys and values (F16 / float32 as they are, q8 / q4 per block of 32 values), rotate heads
# ---------------------------------------------------------------------------------------------------------------


def rotate_heads(x, hd):
    """x (T, n * hd) float32 <- each head times the orthonormal Walsh-Hadamard matrix H_hd (kernels/hadamard.py).

    WHY: the quantized KV caches store keys and values rotated, and attention runs on rotated q, k, v, its
    output rotated back (llama.cpp does the same for its quantized caches since PR #21038). H is orthonormal,
    so q.k and the weighted sums are unchanged in exact arithmetic, while an outlier dimension of the keys (a
    few channels many times larger than the rest) is spread over all hd values of the head: a 32-value block's
    scale no longer follows one large value, and the others keep their precision. A prompt chunk's rows are split
    over the threads."""
    if x.shape[0] >= PARALLEL_ROWS:
        hadamard.rotate_heads_rows(x, hd, numba.get_num_threads())
    else:
        hadamard.rotate_heads(x, hd)


@njit(inline="always")
def _store_kv_head(k, v, k_cache, v_cache, pos0, h):
    hd = k_cache.shape[2]
    for t in range(k.shape[0]):
        p = pos0 + t
        for i in range(hd):
            k_cache[h, p // TILE, i, p % TILE] = store(k[t, h * hd + i], k_cache)
    for t in range(k.shape[0]):
        for i in range(hd):
            v_cache[h, pos0 + t, i] = store(v[t, h * hd + i], v_cache)


@njit(cache=True)
def store_kv(k, v, k_cache, v_cache, pos0):
    """Append T new keys/values of one layer to its cache at positions pos0..pos0+T-1, in the cache's dtype.

    k, v:    (T, n_kv*hd) float32 (k already normed + rotated)
    k_cache: (n_kv, n_ctx / TILE, hd, TILE) float32 or uint16 (F16 bits) - keys in tiles of TILE positions
    v_cache: (n_kv, n_ctx, hd) same dtype
    """
    for h in range(k_cache.shape[0]):
        _store_kv_head(k, v, k_cache, v_cache, pos0, h)


@njit(cache=True, parallel=True)
def store_kv_rows(k, v, k_cache, v_cache, pos0):
    """`store_kv` with the KV heads over the threads (prefill)."""
    for h in prange(k_cache.shape[0]):
        _store_kv_head(k, v, k_cache, v_cache, pos0, h)


Q8_MAX = 127.0   # int8 KV cache: q = round(x / s), s = max |x| / 127 per block of Q8_BLOCK values of a row
Q8_BLOCK = 32    # llama.cpp's q8_0 block: one outlier dimension of a key only coarsens its own 32 values
Q4_MIN = -8.0    # 4-bit KV cache, blocks of Q8_BLOCK values too: q = clamp(round(x / s), -8, 7); llama.cpp's q4_0
# rule takes s = (the block's value of largest magnitude) / -8, and _q4_block_scale searches from there


@njit(cache=True)
def _q8_block_scale(row):
    """Scale of one int8 block: max |x| / 127 (1 for an all-zero block)."""
    amax = np.float32(0.0)
    for x in row:
        amax = max(amax, abs(x))
    return amax / np.float32(Q8_MAX) if amax > 0 else np.float32(1.0)


Q4_SEARCH = 8     # candidate scales per 4-bit block (see _q4_block_scale): m / -(8 + i Q4_STEP), i < Q4_SEARCH
Q4_STEP = 0.125  # 8 candidates of 1/8 fitted these random-weight models as well as 16 (logit error, KL)


@njit(inline="always")
def _q4_level(y):
    """clamp(round(y), -8, 7) as float32, halves rounded up (floor(y + 0.5): vectorises, where rint is a call)."""
    return min(max(np.floor(y + np.float32(0.5)), np.float32(-8.0)), np.float32(7.0))


@njit(inline="always")
def _q4_error(row, s):
    """Squared error of a block stored with scale s (q = _q4_level(x / s))."""
    inv = np.float32(1.0) / s
    err = np.float32(0.0)
    for j in range(row.shape[0]):
        e = row[j] - _q4_level(row[j] * inv) * s
        err += e * e
    return err


@njit(cache=True, fastmath=True)
def _q4_block_scale(row):
    """Scale of one 4-bit block: of the candidates m / -(8 + i Q4_STEP), i < Q4_SEARCH (m its value of largest
    magnitude, stored exactly as -8 at i = 0: llama.cpp's q4_0 rule), the one with the least squared error; 1 for
    an all-zero block. WHY: a finer grid that clips the largest value a little often fits the other 31 better
    (ik_llama.cpp adjusts its Q4_0 cache scales for the same reason); the search costs only the cache writes
    (vectorised: fastmath lets LLVM reorder the error sum)."""
    lo, hi = np.float32(0.0), np.float32(0.0)     # two plain reductions (they vectorise, an argmax does not)
    for j in range(row.shape[0]):
        lo, hi = min(lo, row[j]), max(hi, row[j])
    m = hi if hi >= -lo else lo
    if m == 0:
        return np.float32(1.0)
    best, best_err = m / np.float32(Q4_MIN), np.float32(np.inf)
    for i in range(Q4_SEARCH):
        s = m / (np.float32(Q4_MIN) - np.float32(i * Q4_STEP))
        err = _q4_error(row, s)
        if err < best_err:
            best, best_err = s, err
    return best


@njit(inline="always")
def _q4_pair(a, b):
    """One byte of the 4-bit cache: level a (float32, -8..7) in the low nibble, b in the high one."""
    return np.uint8((np.int32(a) & 15) | ((np.int32(b) & 15) << 4))


@njit(inline="always")
def _store_blocks_head(k, v, k_cache, v_cache, k_scale, v_scale, pos0, h):
    hd = k_cache.shape[2]
    four_bit = k_cache.shape[3] < TILE
    for t in range(k.shape[0]):
        p = pos0 + t
        krow, vrow = k_cache[h, p // TILE], v_cache[h, p]
        for b in range(hd // Q8_BLOCK):
            c = h * hd + b * Q8_BLOCK
            kr, vr = k[t, c:c + Q8_BLOCK], v[t, c:c + Q8_BLOCK]
            if four_bit:     # whole bytes (half.Q4_PACKING): block b is the 32-element run b of a value row,
                # and its dimensions 2i, 2i + 1 at this position are one byte of the key tile's run b * 16 + i
                ks, vs = _q4_block_scale(kr), _q4_block_scale(vr)
                kinv, vinv = np.float32(1.0) / ks, np.float32(1.0) / vs
                for j in range(Q8_BLOCK // 2):
                    vrow[b * 16 + j] = _q4_pair(_q4_level(vr[j] * vinv), _q4_level(vr[16 + j] * vinv))
                    at = (b * 16 + j) * 16 + p % TILE
                    krow[at >> 3, at & 7] = _q4_pair(_q4_level(kr[2 * j] * kinv), _q4_level(kr[2 * j + 1] * kinv))
            else:
                ks, vs = _q8_block_scale(kr), _q8_block_scale(vr)
                for j in range(Q8_BLOCK):
                    krow[b * Q8_BLOCK + j, p % TILE] = np.int8(round(kr[j] / ks))
                    vrow[b * Q8_BLOCK + j] = np.int8(round(vr[j] / vs))
            k_scale[h, b, p], v_scale[h, p, b] = ks, vs


@njit(cache=True)
def store_kv_blocks(k, v, k_cache, v_cache, k_scale, v_scale, pos0):
    """`store_kv` for the block-scaled caches: each block of Q8_BLOCK values of a new (position, KV head) key or
    value row is stored with its own float32 scale s, as int8 q = round(x / s), s = max |x| / 127 (the 8-bit
    cache, int8 arrays), or as 4-bit q = clamp(round(x / s), -8, 7), s from _q4_block_scale (the 4-bit cache:
    uint8 arrays, two values per byte, half.Q4_PACKING; key tiles (n_kv, n_ctx / TILE, hd, TILE / 2), values
    (n_kv, n_ctx, hd / 2)).
    k_scale: (n_kv, hd / Q8_BLOCK, n_ctx) (position-minor, like the keys' tiles), v_scale: (n_kv, n_ctx, hd / Q8_BLOCK).

    WHY per-position blocks: attention sums a key block against q (q.k) and weights a value row as a whole
    (p * v), so each block's scale factors out of its partial sum: one multiply per block, not per value."""
    for h in range(k_cache.shape[0]):
        _store_blocks_head(k, v, k_cache, v_cache, k_scale, v_scale, pos0, h)


@njit(cache=True, parallel=True)
def store_kv_blocks_rows(k, v, k_cache, v_cache, k_scale, v_scale, pos0):
    """`store_kv_blocks` with the KV heads over the threads (prefill)."""
    for h in prange(k_cache.shape[0]):
        _store_blocks_head(k, v, k_cache, v_cache, k_scale, v_scale, pos0, h)


__all__ = ["KVCache", "KV_CACHE_TYPES", "BLOCK_SCALED", "kv_cache_bytes", "kv_scale_blocks", "rotate_heads",
           "store_kv", "store_kv_rows", "store_kv_blocks", "store_kv_blocks_rows", "Q8_BLOCK"]
