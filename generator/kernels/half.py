"""IEEE half precision (F16) inside numba kernels: the storage type of the F16 KV cache.

numba (0.68) has no float16 on the CPU and numpy's float16 -> float32 cast runs at ~0.5 GB/s, too slow for a
cache that decode reads whole for every token. So F16 values live in plain uint16 arrays and two LLVM-level
intrinsics convert them (`fpext half -> float`, `fptrunc float -> half`, round to nearest even). On an x86
CPU with F16C LLVM vectorises both into `vcvtph2ps` / `vcvtps2ph` (8 values per instruction); elsewhere it
emits a correct scalar conversion.

`to_f32(x)` and `store(x, like)` are overloaded on the element type, so one kernel source serves a float32
cache (exact mode) and a uint16/F16 cache alike. `to_f32` also reads int8 (the 8-bit KV cache, whose per-row
scales the attention kernel applies itself); `cache_value(row, j)` reads element j of a cache row of any type,
and `tile_value(tile, i, j)` element (i, j) of a key tile, the 4-bit cache's packed nibbles included (uint8:
Q4_PACKING).
"""

from __future__ import annotations

import numpy as np
from llvmlite import ir
from numba import njit, prange, types
from numba.extending import intrinsic, overload

@intrinsic
def half_to_float(typingctx, h):
    """uint16 bit pattern of an IEEE half -> float32 (exact: every half is a float32)."""
    if h != types.uint16:
        return None

    def codegen(context, builder, sig, args):
        return builder.fpext(builder.bitcast(args[0], ir.HalfType()), ir.FloatType())

    return types.float32(types.uint16), codegen


@intrinsic
def float_to_half(typingctx, f):
    """float32 -> uint16 bit pattern of the nearest IEEE half (ties to even; overflow -> inf)."""
    if f != types.float32:
        return None

    def codegen(context, builder, sig, args):
        return builder.bitcast(builder.fptrunc(args[0], ir.HalfType()), ir.IntType(16))

    return types.uint16(types.float32), codegen


def to_f32(x):
    """A cache element as float32 (F16 bits are widened, float32 passes through). Use inside njit code."""
    raise NotImplementedError("only callable from numba-compiled code")


@overload(to_f32, inline="always")
def _to_f32(x):
    if x == types.uint16:
        return lambda x: half_to_float(x)
    if x == types.float32:
        return lambda x: x
    if x == types.int8:
        return lambda x: np.float32(x)
    return None


Q4_PACKING = """The 4-bit KV cache (uint8 arrays, kv_cache.store_kv_blocks) packs each run of 32 consecutive
elements into 16 bytes: element j < 16 in the low nibble of byte j, element 16 + j in its high nibble, each a
two's-complement 4-bit integer (-8..7). Element order: a value row's dimensions; a key tile's (hd, TILE) values
dimension by dimension, so dimensions 2i and 2i + 1 of a tile's 16 positions share 16 bytes. WHY: one 16-byte
load widened to 16 int32 lanes gives both 16-value vectors, the low nibbles as they are and the high ones after
one shift, and with AVX-512 a 16-entry table permute (vpermps) reads each lane's low 4 bits as a float directly
(kernels/attention.py)."""


@njit(inline="always")
def q4_byte(e):
    """(byte, bit shift) of element e of a 4-bit row (Q4_PACKING)."""
    return (e >> 5) * 16 + (e & 15), (e & 16) >> 2


@njit(inline="always")
def _q4_value(byte, shift):
    """The two's-complement nibble of `byte` at `shift`, as float32."""
    return np.float32((((np.int32(byte) >> shift) & 15) ^ 8) - 8)


def cache_value(row, j):
    """Element j of a KV cache row as float32, before its block scale (uint8 rows: Q4_PACKING). njit code only."""
    raise NotImplementedError("only callable from numba-compiled code")


@overload(cache_value, inline="always")
def _cache_value(row, j):
    if row.dtype == types.uint8:
        def q4(row, j):
            at, shift = q4_byte(j)
            return _q4_value(row[at], shift)
        return q4
    return lambda row, j: to_f32(row[j])


def tile_value(tile, i, j):
    """Element (i, j) of a key tile (hd, TILE) as float32, before its block scale (uint8 tiles (hd, TILE / 2):
    Q4_PACKING over the tile's elements in order). njit code only."""
    raise NotImplementedError("only callable from numba-compiled code")


@overload(tile_value, inline="always")
def _tile_value(tile, i, j):
    if tile.dtype == types.uint8:
        def q4(tile, i, j):
            at, shift = q4_byte(i * 16 + j)
            return _q4_value(tile[at >> 3, at & 7], shift)
        return q4
    return lambda tile, i, j: to_f32(tile[i, j])


def store(x, like):
    """float32 x in the element type of the array `like` (uint16 = F16 bits). Use inside njit code."""
    raise NotImplementedError("only callable from numba-compiled code")


@overload(store, inline="always")
def _store(x, like):
    if like.dtype == types.uint16:
        return lambda x, like: float_to_half(np.float32(x))
    if like.dtype == types.float32:
        return lambda x, like: np.float32(x)
    return None


@njit(cache=True, nogil=True)
def widen(src, dst):
    """dst = src[:, :c] as float32. src: (r, >= c) uint16 F16 bits, C-contiguous; dst: (r, c) float32.

    Takes the whole C-contiguous array plus the column count rather than a column slice: numba vectorises
    only loops over arrays it knows to be contiguous (a sliced view converted ~10x slower)."""
    r, c = dst.shape
    for i in range(r):
        s, d = src[i], dst[i]
        for j in range(c):
            d[j] = half_to_float(s[j])


@njit(cache=True, parallel=True)
def from_float32(src, dst):
    """dst (n,) uint16 F16 bits <- src (n,) float32, rounded to nearest even."""
    for i in prange(src.size):
        dst[i] = float_to_half(src[i])


@njit(cache=True, parallel=True)
def to_float32(src, dst):
    """dst (n,) float32 <- src (n,) uint16 F16 bits."""
    for i in prange(src.size):
        dst[i] = half_to_float(src[i])
