"""The int8 q.k of decode attention for the q8 and q4 caches, and the query rounding it needs.

The int8 q.k (dispatch path avx512vnni, q8 and q4 caches): the query is rounded to int8 per block of key
dimensions, as llama.cpp rounds it for its quantized caches (Q8_0), and each key tile is rearranged in registers
so that one `vpdpbusd` multiplies 4 dimensions of 16 positions: lane p of a vector holds position p's 4 bytes.
WHY: with a 4-bit cache the float q.k spent 2 permutes and 2 multiply-adds per head on every 16 positions x 2
dimensions; vpdpbusd does 4 dimensions in one. vpdpbusd takes unsigned bytes times signed ones, so the keys go in
offset by half their range (q4: k + 8, q8: k + 128, by flipping the top bit) and the scores take away
offset * sum(query bytes) per block (`quantize_query` stores it beside the query's scale).

Query layout per head (`query_floats` float32 slots): hd bytes of int8 values, grouped 4 per key group in the
order the key lanes hold their dimensions (q4: 4g, 4g+2, 4g+1, 4g+3; q8: 4g .. 4g+3), then nb scales, then nb
offset sums (float32).
"""

from __future__ import annotations

import numpy as np
from llvmlite import ir
from numba import njit, types
from numba.core import cgutils
from numba.extending import intrinsic

from .cache_ir import QK_AHEAD, TILE, _ELEM, _Emit, _ir_kernel, _token_shape
from .q1_0_simd import prefetch_l2

_INT_KEY = ("q4", "i8")     # the cache kinds whose q.k runs in int8 (offsets and orders: quantize_query)


def _key_lanes(e: "_Emit", chunk) -> list:
    """A 64-byte load of key tile bytes -> the <16 x i32> lane vectors of the 4-dimension groups it holds (q4: two
    groups, runs 2g and 2g + 1 each; q8: one group), bytes offset to unsigned."""
    b = e.b
    i16 = ir.IntType(16)
    if e.kind == "i8":        # dims 4g..4g+3 of 16 positions: lane p <- bytes p, 16 + p, 32 + p, 48 + p
        lanes = b.shuffle_vector(chunk, chunk, ir.Constant(ir.VectorType(ir.IntType(32), 64),
                                                           [16 * j + p for p in range(TILE) for j in range(4)]))
        return [b.xor(b.bitcast(lanes, e.vi), ir.Constant(e.vi, [-0x7F7F7F80] * TILE))]   # 0x80808080
    out = []
    for half in range(2):     # run r0 = 32 half .. +16, r1 = the next 16 bytes: lane p <- r0[p], r1[p], r0[p], r1[p]
        idx = [32 * half + 16 * j + p for p in range(TILE) for j in (0, 1, 0, 1)]
        both = b.shuffle_vector(chunk, chunk, ir.Constant(ir.VectorType(ir.IntType(32), 64), idx))
        words = b.lshr(b.bitcast(both, ir.VectorType(i16, 32)), ir.Constant(ir.VectorType(i16, 32), [0, 4] * TILE))
        nibbles = b.and_(b.bitcast(words, e.vi), ir.Constant(e.vi, [0x0F0F0F0F] * TILE))
        out.append(b.xor(nibbles, ir.Constant(e.vi, [0x08080808] * TILE)))   # two's complement nibble -> k + 8
    return out


@_ir_kernel("ragbit_attn_qk_int")
def _define_qk_int(e: "_Emit", args, group: int, step: int) -> None:
    """void f(elem* k, float* q, float* ks, float* out, i64 n_steps, i64 hd, i64 bs, i64 ks_stride, i64 out_stride)

    `_define_qk`'s scores for q8 / q4 keys with the query in int8 (`quantize_query`'s layout, query_floats(hd, nb)
    floats per head): per block of bs dimensions an int32 sum of vpdpbusd over groups of 4 dimensions, then
    out += (sum - offset_sum) * query scale * key scale."""
    from .q1_0_vnni import _vpdpbusd

    k, q, ks, out, n_steps, hd, bs, ks_stride, out_stride = args
    b = e.b
    i8, i32 = ir.IntType(8), ir.IntType(32)
    dpbusd = _vpdpbusd(e.module, TILE)
    src_ty = dpbusd.function_type.args[1]
    facc = e.accumulators(group * step)
    iacc = [cgutils.alloca_once(b, e.vi) for _ in range(group * step)]
    n_blocks = b.udiv(hd, bs)
    q_bytes = b.bitcast(q, i8.as_pointer())
    head_bytes = b.add(hd, b.mul(n_blocks, e.const(8)))          # per head: hd int8, nb scales, nb offset sums
    tile_elems = b.mul(hd, e.const(TILE))
    groups_per_load = 2 if e.kind == "q4" else 1
    izero = ir.Constant(e.vi, [0] * TILE)

    def q_word(h, g):         # the 4 query bytes of group g of head h, in all 16 lanes
        p = b.gep(q_bytes, [b.add(b.mul(e.const(h), head_bytes), b.mul(g, e.const(4)))])
        v = b.insert_element(ir.Constant(e.vi, None), b.load(b.bitcast(p, i32.as_pointer()), align=1),
                             ir.Constant(i32, 0))
        return b.bitcast(b.shuffle_vector(v, v, izero), src_ty)

    def q_float(h, slot):     # float slot (0: scale, 1: offset sum) of block `block` of head h
        p = b.gep(q_bytes, [b.add(b.mul(e.const(h), head_bytes), b.add(hd, b.mul(b.add(b.mul(e.const(slot),
                                                                                          n_blocks), block), e.const(4))))])
        return e.splat(b.load(b.bitcast(p, e.f32.as_pointer()), align=4))

    with cgutils.for_range(b, n_steps) as s_loop:
        t0 = b.mul(s_loop.index, e.const(step))
        for a in facc:
            b.store(e.zero, a)
        with cgutils.for_range(b, n_blocks) as b_loop:
            block = b_loop.index
            for a in iacc:
                b.store(izero, a)
            g_first = b.mul(block, b.udiv(bs, e.const(4)))
            with cgutils.for_range(b, b.udiv(bs, e.const(4 * groups_per_load))) as l_loop:
                g0 = b.add(g_first, b.mul(l_loop.index, e.const(groups_per_load)))
                for t in range(step):
                    at = b.add(b.mul(b.add(t0, e.const(t)), tile_elems), b.mul(g0, e.const(4 * TILE)))
                    prefetch_l2(b, e.bytes(k), e.byte_offset(b.add(at, b.mul(tile_elems, e.const(QK_AHEAD * step)))))
                    chunk = b.load(b.bitcast(b.gep(e.bytes(k), [e.byte_offset(at)]),
                                             ir.VectorType(i8, 64).as_pointer()), align=1)
                    for j, lanes in enumerate(_key_lanes(e, chunk)):
                        keys = b.bitcast(lanes, src_ty)
                        for h in range(group):
                            a = iacc[h * step + t]
                            b.store(b.call(dpbusd, [b.load(a), keys, q_word(h, b.add(g0, e.const(j)))]), a)
            for h in range(group):
                q_scale, q_offset = q_float(h, 0), q_float(h, 1)
                for t in range(step):
                    kv = e.load_f32vec(ks, b.add(b.mul(block, ks_stride), b.mul(b.add(t0, e.const(t)), e.const(TILE))))
                    dot = b.fsub(b.sitofp(b.load(iacc[h * step + t]), e.vf), q_offset)
                    a = facc[h * step + t]
                    b.store(b.call(e.fma, [dot, b.fmul(kv, q_scale), b.load(a)]), a)
        for h in range(group):
            for t in range(step):
                idx = b.add(b.mul(e.const(h), out_stride), b.mul(b.add(t0, e.const(t)), e.const(TILE)))
                e.store_f32vec(b.load(facc[h * step + t]), out, idx)


def _int_query(token, elem) -> bool:
    """Whether a shape token and a cache element type (numba types) take the int8 q.k."""
    return not token.dtype.signed and _ELEM.get(elem) in _INT_KEY


@intrinsic
def int_query(typingctx, token, cache):
    """True (a constant) where the q.k for this shape token and cache array runs on int8 queries."""
    if _token_shape(token) is None or not isinstance(cache, types.Array):
        return None

    def codegen(context, builder, sig, args):
        return context.get_constant(types.boolean, _int_query(sig.args[0], sig.args[1].dtype))

    return types.boolean(token, cache), codegen


@intrinsic
def is_q4(typingctx, cache):
    """True (a constant) for the packed 4-bit cache (uint8 elements)."""
    if not isinstance(cache, types.Array):
        return None

    def codegen(context, builder, sig, args):
        return context.get_constant(types.boolean, sig.args[0].dtype == types.uint8)

    return types.boolean(cache), codegen


@njit(inline="always")
def query_floats(hd, nb):
    """float32 slots of one head's int8 query (`quantize_query`): hd bytes, nb scales, nb offset sums."""
    return hd // 4 + 2 * nb


@njit(inline="always")
def quantize_query(q, scale, n_heads, hd, nb, kind_q4, dst):
    """The first n_heads heads of q (n_heads * hd floats) times scale, in int8 per block of hd / nb dimensions
    (scale max|x| / 127, values rounded half to even), into dst in the int8 q.k's layout (`_INT_KEY`): per head
    query_floats(hd, nb) float32 slots. kind_q4: 4-bit keys (dimension order 4g, 4g+2, 4g+1, 4g+3; offset 8),
    else int8 keys (offset 128)."""
    per = query_floats(hd, nb)
    bs = hd // nb
    raw = dst.view(np.int8)
    offset = np.float32(8.0) if kind_q4 else np.float32(128.0)
    for h in range(n_heads):
        base = h * per
        for blk in range(nb):
            top = np.float32(0.0)
            for i in range(bs):
                top = max(top, abs(q[h * hd + blk * bs + i] * scale))
            inv = np.float32(127.0) / top if top > 0 else np.float32(0.0)
            total = 0
            for i in range(bs):
                d = blk * bs + i
                v = int(np.rint(q[h * hd + d] * scale * inv))
                j = d % 4
                if kind_q4 and (j == 1 or j == 2):
                    j = 3 - j
                raw[4 * base + 4 * (d // 4) + j] = v
                total += v
            dst[base + hd // 4 + blk] = top / np.float32(127.0)
            dst[base + hd // 4 + nb + blk] = offset * total
