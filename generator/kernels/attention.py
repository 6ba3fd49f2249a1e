"""Decode attention over the KV cache with explicit vectors: q.k and softmax-weighted sums of values, 16 cached
positions per vector, the accumulators held in registers.

WHY: after a 1,500-token prompt a decode step reads the whole filled cache (Bonsai-1.7B, F16: 172 MB, beside
242 MB of weights), so attention must stream it at memory speed. The plain numba loops (layers.py) re-load and
re-store a row of partial sums for every key dimension, convert each F16 key once per query head and call a
scalar exp per score: on a Zen4 (2 threads) they took 3x the time of these kernels at 1,500 positions.

Key layout (see kv_cache.store_kv): keys are stored in tiles of TILE positions, (n_kv, n_ctx / TILE, hd, TILE):
one tile is hd rows of TILE consecutive positions, contiguous. The q.k kernel reads a tile front to back (a
plain sequential stream, prefetched in software too since the streamers stop at each tile's 4 KB page; the old
position-minor layout gave hd streams 4 KB apart that alias in L1), and dimension d of TILE positions is one
vector: q.k is a vertical multiply-add over positions with q_d broadcast, no horizontal sums. Values stay
(n_kv, n_ctx, hd): the weighted sum streams contiguous value rows, 16 dimensions per vector.

The kernels are LLVM vector IR (numba has no vector types): F16 bits are widened with `fpext` (vcvtph2ps),
int8 with `sitofp`, 4-bit runs (half.Q4_PACKING) from one 16-byte load per two vectors (nibbles through a
16-entry `vpermps` table on avx512bw, shifts and `sitofp` on avx2), multiply-adds are `llvm.fmuladd`. Scales of
the quantized blocks (kv_cache.store_kv_blocks) are applied per block of key dimensions and per value block; the float caches pass all-ones scales (multiplying by 1 and
adding to 0 are exact). The paths, chosen by the dispatcher (operation "attention_decode"):
  avx512bw  4 tiles (64 positions) per step, 16-float vectors (one zmm each)
  avx2      2 tiles (32 positions) per step (each 16-float vector is two ymm: 16 registers in all)
  avx512vnni is avx512bw with the q.k of the q8 and q4 caches in int8 (attention_int8.py: the query rounded to
            int8 per 32 dimensions, as llama.cpp does for its quantized caches; `vpdpbusd`)
On other CPUs layers.py's numba loops run (the same tiled layout). Which threads run these kernels (this one,
numba's, or the decode pool's) is decode_attention.py's choice. How a cache element becomes a float32 vector
(`_Emit`) and how a kernel's shape travels in numba types (`shape_token`) are in cache_ir.py.
"""

from __future__ import annotations

import numpy as np
from llvmlite import ir
from numba import njit, prange, types
from numba.core import cgutils
from numba.extending import intrinsic

from .attention_int8 import _define_qk_int, _int_query, int_query, is_q4, quantize_query, query_floats
from .cache_ir import PV_AHEAD, QK_AHEAD, STEP_TILES, TILE, _ELEM, _Emit, _ir_elem, _ir_kernel, _token_shape
from .q1_0_simd import prefetch_l2
from .softmax import softmax_weights

CTX_ROUND = 64   # the cache's n_ctx is rounded up to this: the widest q.k step (4 tiles) never runs past it
VALUE_VECTORS = STEP_TILES  # dispatch path -> 16-dim vectors of a value row per pass (= tiles per step: one
# shape token carries both, see shape_token)




def padded_ctx(n_ctx: int) -> int:
    """n_ctx rounded up to CTX_ROUND: the position count the cache and score rows are allocated with."""
    return -(-n_ctx // CTX_ROUND) * CTX_ROUND


@_ir_kernel("ragbit_attn_qk")
def _define_qk(e: "_Emit", args, group: int, step: int) -> None:
    """void f(elem* k, float* q, float* ks, float* out, i64 n_steps, i64 hd, i64 bs, i64 ks_stride, i64 out_stride)

    For `step` tiles at a time (n_steps times): out[h, p] = sum_b ks[b, p] * sum_{d in block b} q[h, d] k[p, d]
    for the `group` query heads h (q rows of hd floats, already scaled), positions p of those tiles; k = this KV
    head's tiles, ks = its key scales (nb rows of ks_stride floats), out rows out_stride floats apart."""
    k, q, ks, out, n_steps, hd, bs, ks_stride, out_stride = args
    b = e.b
    acc = e.accumulators(group * step)
    tile_elems = b.mul(hd, e.const(TILE))
    n_blocks = b.udiv(hd, bs)

    def dims(t0, d_first, d_count, into) -> None:
        """into[h, t] += q[h, d] * k[tile t0 + t, d] for d in d_first .. d_first + d_count (a multiple of
        the dimensions per 64-byte line of a tile: one prefetch per line, QK_AHEAD steps ahead)."""
        per_line = 64 // e.vec_bytes
        with cgutils.for_range(b, b.udiv(d_count, e.const(per_line))) as d_loop:
            d_line = b.add(d_first, b.mul(d_loop.index, e.const(per_line)))
            for t in range(step):
                prefetch_l2(b, e.bytes(k), e.byte_offset(b.add(
                    b.mul(b.add(t0, e.const(t + QK_AHEAD * step)), tile_elems), b.mul(d_line, e.const(TILE)))))
            def tile_row(t, i):
                return b.add(b.mul(b.add(t0, e.const(t)), tile_elems), b.mul(b.add(d_line, e.const(i)), e.const(TILE)))

            pair = e.kind == "q4"
            for i0 in range(0, per_line, 2 if pair else 1):
                if pair:     # dimensions i0, i0 + 1 of a tile are one 32-element run: one load
                    pairs = [e.load_pair(k, tile_row(t, i0)) for t in range(step)]
                    by_dim = [[p[0] for p in pairs], [p[1] for p in pairs]]
                else:
                    by_dim = [[e.load_vec(k, tile_row(t, i0)) for t in range(step)]]
                for i, keys in enumerate(by_dim):
                    d = b.add(d_line, e.const(i0 + i))
                    for h in range(group):
                        qv = e.splat(b.load(b.gep(q, [b.add(b.mul(e.const(h), hd), d)])))
                        for t in range(step):
                            a = into[h * step + t]
                            b.store(b.call(e.fma, [qv, keys[t], b.load(a)]), a)

    def scale_vec(block, t0, t):
        return e.load_f32vec(ks, b.add(b.mul(block, ks_stride), b.mul(b.add(t0, e.const(t)), e.const(TILE))))

    part = e.accumulators(group * step)
    with cgutils.for_range(b, n_steps) as s_loop:
        t0 = b.mul(s_loop.index, e.const(step))
        for a in acc:
            b.store(e.zero, a)
        with cgutils.for_range(b, n_blocks) as b_loop:       # a partial sum per block of dimensions, times its scale
            for a in part:
                b.store(e.zero, a)
            dims(t0, b.mul(b_loop.index, bs), bs, part)
            for t in range(step):
                sv = scale_vec(b_loop.index, t0, t)
                for h in range(group):
                    a = acc[h * step + t]
                    b.store(b.call(e.fma, [b.load(part[h * step + t]), sv, b.load(a)]), a)
        for h in range(group):
            for t in range(step):
                idx = b.add(b.mul(e.const(h), out_stride), b.mul(b.add(t0, e.const(t)), e.const(TILE)))
                e.store_f32vec(b.load(acc[h * step + t]), out, idx)


@_ir_kernel("ragbit_attn_pv")
def _define_pv(e: "_Emit", args, group: int, nvec: int) -> None:
    """void f(elem* v, float* w, float* vs, float* out, i64 n_pos, i64 hd, i64 bs, i64 nb, i64 w_stride)

    out[h, :] = sum_p w[h, p] * vs[p, block] * v[p, :] for the `group` heads (w rows w_stride apart, out rows hd
    apart), 16 * nvec dimensions per pass over the positions (hd / (16 nvec) passes). bs is a multiple of 32.

    Per position a value vector is widened once, times its block's scale where there are several (nb > 1: int8)
    and not at all where there is one (nb = 1: the float caches' scales are ones), then multiply-added into each
    head's accumulator with that head's weight broadcast from memory. WHY this order: scaling each head's weight
    instead (a scalar multiply and a register broadcast per head and vector) kept the vector ports busy with
    broadcasts; it took twice the time per position with the cache in L2 (Emerald Rapids)."""
    v, w, vs, out, n_pos, hd, bs, nb, w_stride = args
    b = e.b
    acc = e.accumulators(group * nvec)
    width = e.const(TILE * nvec)

    def positions(scaled: bool, d0) -> None:
        with cgutils.for_range(b, n_pos) as p_loop:
            p = p_loop.index
            row = b.mul(p, hd)
            def scale(j):                 # the scale of vector j's 32-dimension block, splat
                return e.splat(b.load(b.gep(vs, [b.add(b.mul(p, nb), b.udiv(b.add(d0, e.const(TILE * j)), bs))])))

            at = [b.add(row, b.add(d0, e.const(TILE * j))) for j in range(0, nvec, 2)]
            if scaled and e.permute is not None:   # 4-bit on AVX-512: the table times the scale, then 2 lookups
                vals = [x for j, i in zip(range(0, nvec, 2), at) for x in e.load_pair(v, i, scale(j))]
            else:
                vals = [x for i in at for x in e.load_pair(v, i)]
                if scaled:                # one scale per 32 dimensions: vectors 2i and 2i + 1 share it
                    for j in range(0, nvec, 2):
                        sv = scale(j)
                        vals[j], vals[j + 1] = b.fmul(vals[j], sv), b.fmul(vals[j + 1], sv)
            ahead = e.byte_offset(b.add(b.mul(b.add(p, e.const(PV_AHEAD)), hd), d0))
            for line in range(0, nvec * e.vec_bytes, 64):
                prefetch_l2(b, e.bytes(v), b.add(ahead, e.const(line)))
            for h in range(group):
                wh = e.splat(b.load(b.gep(w, [b.add(b.mul(e.const(h), w_stride), p)])))
                for j in range(nvec):
                    a = acc[h * nvec + j]
                    b.store(b.call(e.fma, [wh, vals[j], b.load(a)]), a)

    with cgutils.for_range(b, b.udiv(hd, width)) as pass_loop:
        d0 = b.mul(pass_loop.index, width)
        for a in acc:
            b.store(e.zero, a)
        with b.if_else(b.icmp_unsigned(">", nb, e.const(1))) as (several, one):
            with several:
                positions(True, d0)
            with one:
                positions(False, d0)
        for h in range(group):
            for j in range(nvec):
                e.store_f32vec(b.load(acc[h * nvec + j]), out, b.add(b.mul(e.const(h), hd), b.add(d0, e.const(TILE * j))))


def _pointers(context, builder, sig, args, which):
    f32p = ir.FloatType().as_pointer()
    ptrs = []
    for i in which:
        data = context.make_array(sig.args[i])(context, builder, args[i]).data
        ptrs.append(data if i == which[0] else builder.bitcast(data, f32p))
    return ptrs


def _kernel_calls(define, doc, int_define=None):
    """Two intrinsics calling the kernel `define` builds for (cache element type, group, shape), token a
    `shape_token`: f(token, cache, floats, scales, out, five sizes) on array views, and
    f_at(token, elem, cache, floats, scales, out, five sizes) on int64 addresses, the cache's element type carried
    by `elem` (any array of it): for the decode pool's item kernels, which get their arrays as addresses."""
    def emit(builder, token, elem, pointers, sizes):
        group, shape = _token_shape(token)
        chosen = int_define if int_define is not None and _int_query(token, elem) else define
        builder.call(chosen(builder.module, _ELEM[elem], group, shape), pointers + sizes)

    def on_arrays(typingctx, token, cache, floats, scales, out, n0, n1, n2, n3, n4):
        if _token_shape(token) is None or cache.dtype not in _ELEM:
            return None
        sig = types.void(token, cache, floats, scales, out, *([types.intp] * 5))

        def codegen(context, builder, sig, args):
            emit(builder, sig.args[0], sig.args[1].dtype, _pointers(context, builder, sig, args, (1, 2, 3, 4)),
                 list(args[5:]))
            return context.get_dummy_value()

        return sig, codegen

    def at(typingctx, token, elem, cache, floats, scales, out, n0, n1, n2, n3, n4):
        if _token_shape(token) is None or not isinstance(elem, types.Array) or elem.dtype not in _ELEM:
            return None
        sig = types.void(token, elem, *([types.int64] * 4), *([types.intp] * 5))

        def codegen(context, builder, sig, args):
            f32p = ir.FloatType().as_pointer()
            kind = _ELEM[sig.args[1].dtype]
            pointers = [builder.inttoptr(args[2], _ir_elem(kind).as_pointer())] + \
                [builder.inttoptr(a, f32p) for a in args[3:6]]
            emit(builder, sig.args[0], sig.args[1].dtype, pointers, list(args[6:]))
            return context.get_dummy_value()

        return sig, codegen

    on_arrays.__doc__ = at.__doc__ = doc
    return intrinsic(on_arrays), intrinsic(at)


_qk, _qk_at = _kernel_calls(_define_qk, "q.k of a shape token (group, step) on (keys, q, ks, out, n_steps, hd, bs, "
                             "ks_stride, out_stride); q in int8 (quantize_query) where the token says so", _define_qk_int)
_pv, _pv_at = _kernel_calls(_define_pv, "weighted values of a shape token (group, nvec) on (values, w, vs, out, n_pos, hd, bs, nb, w_stride)")


# ---------------------------------------------------------------------------------------------------------------
# decode attention: one KV head's query group per thread
# ---------------------------------------------------------------------------------------------------------------


def group_chunk(group: int) -> int:
    """Query heads per kernel call: 4, 2 or 1 (the kernels are compiled for the one size a model needs)."""
    return 4 if group % 4 == 0 else (2 if group % 2 == 0 else 1)


@njit(inline="always")
def _attend(q, keys, values, k_scale, v_scale, pos0, n_heads, scale, scores, out, token):
    """token: a `shape_token`, so only the q.k and value kernels of one shape are generated: all shapes in one
    function took 4.7 s to compile, its parallel variant 14 s (Zen4 under load, numba 0.68), paid on a fresh
    cache at the first decode step."""
    T = q.shape[0]
    n_kv, hd = keys.shape[0], keys.shape[2]
    group = n_heads // n_kv
    nb = k_scale.shape[1]
    bs = hd // nb
    g = token.ndim
    step = token.itemsize
    per = query_floats(hd, nb) if int_query(token, keys) else hd     # float32 slots of one head's query
    for kvh in prange(n_kv):
        qs = np.empty(group * per, np.float32)
        for t in range(T):
            n_pos = pos0 + t + 1
            n_steps = -(-n_pos // (TILE * step))
            if int_query(token, keys):
                quantize_query(q[t, kvh * group * hd:], scale, group, hd, nb, is_q4(keys), qs)
            else:
                for i in range(group * hd):
                    qs[i] = q[t, kvh * group * hd + i] * scale
            for j0 in range(0, group, g):
                h0 = kvh * group + j0
                _qk(token, keys[kvh], qs[j0 * per:], k_scale[kvh], scores[h0:], n_steps, hd, bs, scores.shape[1],
                    scores.shape[1])
            dens = np.empty(group, np.float32)
            for j in range(group):
                dens[j] = softmax_weights(scores[kvh * group + j], n_pos)
            o = out[t, kvh * group * hd:(kvh + 1) * group * hd]
            for j0 in range(0, group, g):
                h0 = kvh * group + j0
                _pv(token, values[kvh], scores[h0:], v_scale[kvh], o[j0 * hd:], n_pos, hd, bs, nb, scores.shape[1])
            for j in range(group):
                inv = np.float32(1.0) / dens[j]
                for i in range(hd):
                    o[j * hd + i] *= inv


@njit(cache=True, parallel=True)
def attention_parallel(q, keys, values, k_scale, v_scale, pos0, n_heads, scale, scores, out, token):
    _attend(q, keys, values, k_scale, v_scale, pos0, n_heads, scale, scores, out, token)


@njit(cache=True)
def attention_serial(q, keys, values, k_scale, v_scale, pos0, n_heads, scale, scores, out, token):
    _attend(q, keys, values, k_scale, v_scale, pos0, n_heads, scale, scores, out, token)


def fits(hd: int, path: str) -> bool:
    """Whether the kernels of `path` take this head size (vector kernels: whole value passes of 16 * nvec
    dimensions; the portable loops take any)."""
    return path not in VALUE_VECTORS or hd % (TILE * VALUE_VECTORS[path]) == 0
