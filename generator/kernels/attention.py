"""Decode attention over the KV cache with explicit vectors: q.k and softmax-weighted sums of values, 16 cached
positions per vector, the accumulators held in registers.

WHY: after a 1,500-token prompt a decode step reads the whole filled cache (Bonsai-1.7B, F16: 172 MB, beside
242 MB of weights), so attention must stream it at memory speed. The plain numba loops (layers.py) re-load and
re-store a row of partial sums for every key dimension, convert each F16 key once per query head and call a
scalar exp per score: on a Zen4 (2 threads) they took 3x the time of these kernels at 1,500 positions.

Key layout (see layers.store_kv): keys are stored in tiles of TILE positions, (n_kv, n_ctx / TILE, hd, TILE):
one tile is hd rows of TILE consecutive positions, contiguous. The q.k kernel reads a tile front to back (a
plain sequential stream, prefetched in software too since the streamers stop at each tile's 4 KB page; the old
position-minor layout gave hd streams 4 KB apart that alias in L1), and dimension d of TILE positions is one
vector: q.k is a vertical multiply-add over positions with q_d broadcast, no horizontal sums. Values stay
(n_kv, n_ctx, hd): the weighted sum streams contiguous value rows, 16 dimensions per vector.

The kernels are LLVM vector IR (numba has no vector types): F16 bits are widened with `fpext` (vcvtph2ps),
int8 with `sitofp`, 4-bit runs (half.Q4_PACKING) from one 16-byte load per two vectors (nibbles through a
16-entry `vpermps` table on avx512bw, shifts and `sitofp` on avx2), multiply-adds are `llvm.fmuladd`. Scales of
the quantized blocks (layers.store_kv_blocks) are applied per block of key dimensions and per value block; the float caches pass all-ones scales (multiplying by 1 and
adding to 0 are exact). The paths, chosen by the dispatcher (operation "attention_decode"):
  avx512bw  4 tiles (64 positions) per step, 16-float vectors (one zmm each)
  avx2      2 tiles (32 positions) per step (each 16-float vector is two ymm: 16 registers in all)
  avx512vnni is avx512bw with the q.k of the q8 and q4 caches in int8 (`_define_qk_int`: the query rounded to
            int8 per 32 dimensions, as llama.cpp does for its quantized caches; `vpdpbusd`)
On other CPUs layers.py's numba loops run (the same tiled layout). Which threads run these kernels (this one,
numba's, or the decode pool's) is decode_attention.py's choice.
"""

from __future__ import annotations

import numpy as np
from llvmlite import ir
from numba import njit, prange, types
from numba.core import cgutils
from numba.extending import intrinsic

from .q1_0_simd import prefetch_l2
from .softmax import softmax_weights

TILE = 16        # positions per key tile = float32 lanes per vector
CTX_ROUND = 64   # the cache's n_ctx is rounded up to this: the widest q.k step (4 tiles) never runs past it
STEP_TILES = {"avx512vnni": 4, "avx512bw": 4, "avx2": 2}   # dispatch path -> key tiles per q.k step
VALUE_VECTORS = STEP_TILES  # dispatch path -> 16-dim vectors of a value row per pass (= tiles per step: one
# shape token carries both, see shape_token)


# Software prefetch into L2 (prefetcht1), one per 64-byte line: keys one q.k step ahead, values PV_AHEAD positions
# ahead. WHY: each key tile is its own 4 KB and the hardware's streamers restart at every 4 KB page, so a cache
# coming from DRAM streamed well below the memory rate; with these, decode attention after 1,500 positions took
# 0.75-0.81x the time (F16 and q8, Bonsai-1.7B and 8B shapes, Emerald Rapids, bench_attention.py). With the cache
# in L3 (a few hundred positions) they cost 0-7%.
QK_AHEAD = 1      # q.k steps
PV_AHEAD = 32     # positions


def padded_ctx(n_ctx: int) -> int:
    """n_ctx rounded up to CTX_ROUND: the position count the cache and score rows are allocated with."""
    return -(-n_ctx // CTX_ROUND) * CTX_ROUND


_ELEM = {types.uint16: "f16", types.float32: "f32", types.int8: "i8", types.uint8: "q4"}
_VEC_BYTES = {"f16": 32, "f32": 64, "i8": 16, "q4": 8}   # bytes of 16 cache elements (q4: half.Q4_PACKING)
Q4_TABLE = [float(i) for i in range(8)] + [float(i) for i in range(-8, 0)]   # a nibble's two's-complement value


def _ir_elem(kind: str) -> ir.Type:
    return {"f16": ir.IntType(16), "f32": ir.FloatType(), "i8": ir.IntType(8), "q4": ir.IntType(8)}[kind]


def element_pointer(b: ir.IRBuilder, kind: str, ptr, index) -> ir.Value:
    """Pointer to cache element `index` of ptr (an elem* of `kind`); for the packed 4-bit cache, to the 16 bytes
    of the 32-element run that holds it (half.Q4_PACKING: the kernels keep element indices in values)."""
    if kind != "q4":
        return b.gep(ptr, [index])
    return b.gep(ptr, [b.shl(b.lshr(index, ir.Constant(index.type, 5)), ir.Constant(index.type, 4))])


class _Emit:
    """Small helpers over an IRBuilder for 16-float vectors."""

    def __init__(self, module: ir.Module, builder: ir.IRBuilder, kind: str, avx512: bool = False):
        self.module, self.b, self.kind = module, builder, kind
        self.vec_bytes = _VEC_BYTES[kind]
        self.vi = ir.VectorType(ir.IntType(32), TILE)
        self.permute = None
        self.q4_table = ir.Constant(ir.VectorType(ir.FloatType(), TILE), [ir.Constant(ir.FloatType(), x) for x in Q4_TABLE])
        if avx512 and kind == "q4":     # vpermps: lane i <- table[idx_i & 15] (the index's other bits ignored)
            name = "llvm.x86.avx512.permvar.sf.512"
            vf = ir.VectorType(ir.FloatType(), TILE)
            self.permute = module.globals.get(name) or ir.Function(module, ir.FunctionType(vf, [vf, self.vi]), name)
        self.f32, self.i64 = ir.FloatType(), ir.IntType(64)
        self.vf = ir.VectorType(self.f32, TILE)
        name = "llvm.fmuladd.v16f32"
        self.fma = module.globals.get(name) or ir.Function(module, ir.FunctionType(self.vf, [self.vf] * 3), name)
        self.zero = ir.Constant(self.vf, [ir.Constant(self.f32, 0.0)] * TILE)

    def bytes(self, ptr) -> ir.Value:
        return self.b.bitcast(ptr, ir.IntType(8).as_pointer())

    def const(self, v: int) -> ir.Constant:
        return ir.Constant(self.i64, v)

    def byte_offset(self, index) -> ir.Value:
        """Bytes from a cache row's start to its element `index` (a multiple of 16)."""
        b = self.b
        return b.lshr(index, self.const(1)) if self.kind == "q4" else b.mul(index, self.const(self.vec_bytes // TILE))

    def _q4_lanes(self, ptr, index) -> ir.Value:
        """The 16 bytes of the 4-bit run holding element `index`, zero-extended to 16 int32 lanes."""
        b = self.b
        v8 = ir.VectorType(ir.IntType(8), TILE)
        return b.zext(b.load(b.bitcast(element_pointer(b, "q4", ptr, index), v8.as_pointer()), align=1), self.vi)

    def _q4_values(self, lanes, high: bool, table=None) -> ir.Value:
        """The low (or high) nibble of each int32 lane, two's complement, as float32 (through `table`, 16 floats,
        where the CPU permutes: Q4_TABLE, or Q4_TABLE times a scale)."""
        b = self.b
        if self.permute is not None:
            idx = b.lshr(lanes, ir.Constant(self.vi, [4] * TILE)) if high else lanes
            return b.call(self.permute, [self.q4_table if table is None else table, idx])
        up = b.shl(lanes, ir.Constant(self.vi, [24 if high else 28] * TILE))
        return b.sitofp(b.ashr(up, ir.Constant(self.vi, [28] * TILE)), self.vf)

    def load_pair(self, ptr, index, scale=None) -> list:
        """Cache elements index..index+31 as two float32 vectors (index a multiple of 32; for q4 one 16-byte load);
        scale (a splat vector, only where the CPU permutes: `permute`) multiplies the 4-bit table first: one
        multiply for both vectors."""
        b = self.b
        if self.kind != "q4":
            return [self.load_vec(ptr, index), self.load_vec(ptr, b.add(index, self.const(TILE)))]
        lanes = self._q4_lanes(ptr, index)
        table = None if scale is None else b.fmul(self.q4_table, scale)
        return [self._q4_values(lanes, False, table), self._q4_values(lanes, True, table)]

    def load_vec(self, ptr, index) -> ir.Value:
        """16 cache elements at ptr[index:index+16] as a float32 vector (index a multiple of 16)."""
        b = self.b
        if self.kind == "q4":   # the run's low or high nibbles, by bit 4 of the index
            lanes = self._q4_lanes(ptr, index)
            shift = b.trunc(b.lshr(b.and_(index, self.const(TILE)), self.const(2)), ir.IntType(32))
            splat = b.insert_element(ir.Constant(self.vi, None), b.sub(ir.Constant(ir.IntType(32), 28), shift),
                                     ir.Constant(ir.IntType(32), 0))
            up = b.shl(lanes, b.shuffle_vector(splat, splat, ir.Constant(self.vi, [0] * TILE)))
            return b.sitofp(b.ashr(up, ir.Constant(self.vi, [28] * TILE)), self.vf)
        raw_t = ir.VectorType(_ir_elem(self.kind), TILE)
        raw = b.load(b.bitcast(b.gep(ptr, [index]), raw_t.as_pointer()), align=1)
        if self.kind == "f16":
            return b.fpext(b.bitcast(raw, ir.VectorType(ir.HalfType(), TILE)), self.vf)
        if self.kind == "i8":
            return b.sitofp(raw, self.vf)
        return raw

    def load_f32vec(self, ptr, index) -> ir.Value:
        b = self.b
        return b.load(b.bitcast(b.gep(ptr, [index]), self.vf.as_pointer()), align=4)

    def store_f32vec(self, value, ptr, index) -> None:
        b = self.b
        b.store(value, b.bitcast(b.gep(ptr, [index]), self.vf.as_pointer()), align=4)

    def splat(self, scalar) -> ir.Value:
        b = self.b
        v = b.insert_element(ir.Constant(self.vf, None), scalar, ir.Constant(ir.IntType(32), 0))
        return b.shuffle_vector(v, v, ir.Constant(ir.VectorType(ir.IntType(32), TILE), [0] * TILE))

    def accumulators(self, n: int) -> list:
        return [cgutils.alloca_once(self.b, self.vf) for _ in range(n)]


def _ir_kernel(prefix: str):
    """Decorator: body(e, args, group, shape) emits a kernel void f(elem*, float*, float*, float*, i64 x 5);
    the result define(module, kind, group, shape) returns that function of the module, built once per name."""
    def wrap(body):
        def define(module: ir.Module, kind: str, group: int, shape: int) -> ir.Function:
            name = f"{prefix}_{kind}_{group}x{shape}"
            if name in module.globals:
                return module.globals[name]
            f32p = ir.FloatType().as_pointer()
            fn = ir.Function(module, ir.FunctionType(ir.VoidType(), [_ir_elem(kind).as_pointer()] + [f32p] * 3
                                                     + [ir.IntType(64)] * 5), name)
            fn.linkage = "internal"
            e = _Emit(module, ir.IRBuilder(fn.append_basic_block("entry")), kind, avx512=shape == STEP_TILES["avx512bw"])
            body(e, fn.args, group, shape)
            e.b.ret_void()
            return fn

        define.__doc__ = body.__doc__
        return define

    return wrap


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


# The int8 q.k (dispatch path avx512vnni, q8 and q4 caches): the query is rounded to int8 per block of key
# dimensions, as llama.cpp rounds it for its quantized caches (Q8_0), and each key tile is rearranged in registers
# so that one `vpdpbusd` multiplies 4 dimensions of 16 positions: lane p of a vector holds position p's 4 bytes.
# WHY: with a 4-bit cache the float q.k spent 2 permutes and 2 multiply-adds per head on every 16 positions x 2
# dimensions; vpdpbusd does 4 dimensions in one. vpdpbusd takes unsigned bytes times signed ones, so the keys go in
# offset by half their range (q4: k + 8, q8: k + 128, by flipping the top bit) and the scores take away
# offset * sum(query bytes) per block (`quantize_query` stores it beside the query's scale).
#
# Query layout per head (`query_floats` float32 slots): hd bytes of int8 values, grouped 4 per key group in the
# order the key lanes hold their dimensions (q4: 4g, 4g+2, 4g+1, 4g+3; q8: 4g .. 4g+3), then nb scales, then nb
# offset sums (float32).
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


def shape_token(step: int, group: int, int_query: bool = False) -> np.ndarray:
    """A zero-size array whose numba TYPE carries a kernel shape: ndim = query heads per call (4, 2 or 1),
    itemsize = key tiles per q.k step = 16-dim vectors per value pass (4 or 2), an unsigned dtype = the int8 q.k
    for q8 / q4 keys (`_define_qk_int`). The decode entry points take it so that numba compiles (and caches) one
    shape per model, and dispatches on it at C speed: integer literals (numba.literally) were resolved in Python
    on every call (140 ms per call)."""
    return np.empty((0,) * group, np.dtype(f"{'u' if int_query else 'i'}{step}"))


def _token_shape(token):
    """(group, step) of a shape token's type, or None."""
    if isinstance(token, types.Array) and isinstance(token.dtype, types.Integer):
        return token.ndim, token.dtype.bitwidth // 8
    return None


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
