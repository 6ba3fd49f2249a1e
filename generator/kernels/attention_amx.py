"""Prefill attention on AMX tiles: Q.K^T and P.V as bf16 tile products (`tdpbf16ps`) read from the KV cache.

WHY: for a long prompt attention grows as T * n_pos * hd and was a third of a 1,500-token prefill as float32
sgemm, ~30% of that spent widening the F16 cache to float32 for every prompt chunk in scalar loops. A tile
product does 16 x 16 x 32 multiply-adds per instruction (~15x the float32 FMA peak per core on Sapphire /
Emerald Rapids).

Exactness: bf16 keeps 8 significant bits, too few for scores (an error of 0.01 in a score is 1% in its
weight). So each operand is split into two bf16 parts, x = hi + lo (hi = x rounded to bf16, lo = the rest
rounded to bf16: |x - hi - lo| <= 2^-18 |x|, and an F16 value, 11 significant bits, is exactly hi + lo), and
each product is summed as hi.hi + lo.hi + hi.lo (the dropped lo.lo <= 2^-18 |x y|): three tile products per
product, ~2^-17 relative error per term, float32 accumulation; the float32 reference tests pass as with sgemm.
Outside the float32-exact mode (`exact=False`: the engine's integer "int11" mode, whose weight products already
round their inputs to bf16, so q carries errors of ~2^-9 before attention sees it) two shortcuts of that size:
  - scores: q rounded to bf16, the F16 keys kept exact: q.hi x [k.lo | k.hi], two products (|error| <=
    2^-9 sum_i |q_i k_i| scale);
  - the weighted sum of values (a convex combination: no exp after it to magnify an error): one product, hi.hi,
    each output off by <= ~2^-8 max |v|, the size of the bf16 rounding the output projection then applies to it.
Half the tile products; prefill attention took 0.64-0.68x the time (Emerald Rapids), and the int11 mode's reference
logits moved by less than their spread between kernel paths. The float mode keeps all three products: with a
one-product sum its 1e-3 reference test fails (2.6e-2).

Per KV head (threads take whole heads): its keys and values up to the last prompt position are converted once
(`_define_split`: LLVM vector IR, F16/int8/4-bit/float32 times the quantized blocks' scales, 32 values per step) into the
tdpbf16ps B-tile layout (1 KB: 16 pairs of inputs x 16 columns x 2): keys as [hi | lo | hi], values as
[hi | lo]. The group's query rows (token t, head j -> row t * group + j, scaled) become A tiles [lo | hi | hi],
so one register-block call over the three parts sums lo.hi + hi.lo + hi.hi (not exact: the call starts at the
second part of both, [hi | hi] x [lo | hi]). Then per 32 query rows:
  S = Q K^T over the keys the causal mask lets them see (q1_0_amx's register block: 32 x 32 per call),
  softmax per row in float32 (max-subtracted, exp_f32), P split into bf16 A tiles [lo | hi], zero past the row's
  last position,
  O = P V / sum(P), 32 dimensions per register block, three calls (hi.hi, lo.hi, hi.lo), or hi.hi alone when not
  `exact`.
The rows of one 32-row block see the whole key range in L2 (S: 32 x n_pos float32), so the softmax is the
plain one, not a running (flash) one; key and value tiles (6 + 4 bytes per cached value, 1.9 MB per head at
1,500 positions) are read from L2 once per 32 query rows: the tile loads, not the tile products, bound it
(2x less CPU than sgemm for a 1,500-token prompt on Emerald Rapids, ~4x short of the tiles' peak).
"""

from __future__ import annotations

import numba
import numpy as np
from llvmlite import ir
from numba import get_thread_id, njit, prange, types
from numba.core import cgutils
from numba.extending import intrinsic

from . import dispatch
from .cache_ir import TILE, _ELEM, _Emit, _ir_elem
from .softmax import softmax_weights
from .formats import KernelFormatError
from .pool import atomic_add
from .q1_0_amx import KSTEP, TILE_CFG, _block, _tiles_off, _tiles_on

ROWS = 2 * TILE          # query rows / key positions / value dimensions per register block
TILE_ELEMS = TILE * KSTEP  # bf16 values per tile (1 KB)
_i16, _i32, _i64 = ir.IntType(16), ir.IntType(32), ir.IntType(64)


_v32f, _v32i, _v32h = (ir.VectorType(t, 2 * TILE) for t in (ir.FloatType(), _i32, _i16))


def _splat32(v: int) -> ir.Constant:
    return ir.Constant(_v32i, [v] * 2 * TILE)


def _store_parts(b: ir.IRBuilder, x, hi, lo, hi2) -> None:
    """Store 32 floats x as bf16 hi at hi and hi2 and lo at lo (i16 pointers): hi = x rounded to nearest even, lo
    = x - hi rounded the same way, so x = hi + lo + e, |e| <= 2^-18 |x| (no NaN here)."""
    def to_bf16(bits):
        odd = b.and_(b.lshr(bits, _splat32(16)), _splat32(1))
        return b.and_(b.add(b.add(bits, _splat32(0x7FFF)), odd), _splat32(0xFFFF0000 - (1 << 32)))

    h = to_bf16(b.bitcast(x, _v32i))
    rest = to_bf16(b.bitcast(b.fsub(x, b.bitcast(h, _v32f)), _v32i))
    for dst, part in ((hi, h), (lo, rest), (hi2, h)):
        b.store(b.trunc(b.lshr(part, _splat32(16)), _v32h), b.bitcast(dst, _v32h.as_pointer()), align=2)


def _new_fn(module: ir.Module, name: str, args: list) -> tuple[ir.Function, ir.IRBuilder]:
    fn = ir.Function(module, ir.FunctionType(ir.VoidType(), args), name)
    fn.linkage = "internal"
    return fn, ir.IRBuilder(fn.append_basic_block("entry"))


def _define_split(module: ir.Module, kind: str, vector_scale: bool) -> ir.Function:
    """void f(elem* src, i64 src_off, i64 second, i64 pair_stride, float* sc, i64 sc_second, i64 sc_pair_stride,
    i16* hi, i16* lo, i16* hi2, i64 n_pairs, i64 n_rows): for pair k < n_pairs, rows a = src + src_off + k pair_stride
    and b = a + second (offsets in elements: a 4-bit cache's are not byte addresses; 16
    elements each; row 2k + 1 and on are zeros from n_rows on: values past the filled positions may be stale),
    times their scales (vector_scale: 16 floats at sc + k sc_pair_stride and + sc_second; else one float each), are
    interleaved (a0 b0 a1 b1 ...: a tdpbf16ps B-tile row of 16 columns x 2 inputs) and stored split
    (_store_parts) at hi + 32 k, lo + 32 k and hi2 + 32 k."""
    name = f"ragbit_attn_amx_split_{kind}_{int(vector_scale)}"
    if name in module.globals:
        return module.globals[name]
    f32p, p16 = ir.FloatType().as_pointer(), _i16.as_pointer()
    fn, builder = _new_fn(module, name, [_ir_elem(kind).as_pointer(), _i64, _i64, _i64, f32p, _i64, _i64, p16, p16,
                                                 p16, _i64, _i64])
    src, src_off, second, pair_stride, sc, sc_second, sc_pair_stride, hi, lo, hi2, n_pairs, n_rows = fn.args
    e = _Emit(module, builder, kind)
    b = e.b
    interleave = ir.Constant(_v32i, [(i // 2) + (i % 2) * TILE for i in range(2 * TILE)])
    with cgutils.for_range(b, n_pairs) as loop:
        k = loop.index
        at, s_at = b.add(src_off, b.mul(k, pair_stride)), b.mul(k, sc_pair_stride)
        rows = []
        for j, (off, s_off) in enumerate(((at, s_at), (b.add(at, second), b.add(s_at, sc_second)))):
            scale = e.load_f32vec(sc, s_off) if vector_scale else e.splat(b.load(b.gep(sc, [s_off])))
            valid = b.icmp_signed("<", b.add(b.add(k, k), ir.Constant(_i64, j)), n_rows)
            rows.append(b.select(valid, b.fmul(e.load_vec(src, off), scale), e.zero))
        out = b.mul(k, ir.Constant(_i64, 2 * TILE))
        _store_parts(b, b.shuffle_vector(rows[0], rows[1], interleave), b.gep(hi, [out]), b.gep(lo, [out]),
                     b.gep(hi2, [out]))
    b.ret_void()
    return fn


def _define_split_row(module: ir.Module) -> ir.Function:
    """void f(float* row, float mul, i64 n_valid, i16* lo, i16* hi, i16* hi2, i64 n_steps): row[32 s .. 32 s + 31]
    * mul (zero from n_valid on) stored split (_store_parts) at lo, hi and hi2 + 512 s, s < n_steps: one row of
    an A tile per step (queries over dimensions, weights over positions)."""
    name = "ragbit_attn_amx_split_row"
    if name in module.globals:
        return module.globals[name]
    f32, p16 = ir.FloatType(), _i16.as_pointer()
    fn, b = _new_fn(module, name, [f32.as_pointer(), f32, _i64, p16, p16, p16, _i64])
    row, mul, n_valid, lo, hi, hi2, n_steps = fn.args
    iota = ir.Constant(_v32i, list(range(2 * TILE)))
    m = b.insert_element(ir.Constant(_v32f, None), mul, ir.Constant(_i32, 0))
    m = b.shuffle_vector(m, m, ir.Constant(_v32i, [0] * 2 * TILE))
    n32 = b.trunc(n_valid, _i32)
    with cgutils.for_range(b, n_steps) as loop:
        s = loop.index
        p0 = b.mul(s, ir.Constant(_i64, 2 * TILE))
        x = b.load(b.bitcast(b.gep(row, [p0]), _v32f.as_pointer()), align=4)
        base = b.insert_element(ir.Constant(_v32i, None), b.trunc(p0, _i32), ir.Constant(_i32, 0))
        pos = b.add(b.shuffle_vector(base, base, ir.Constant(_v32i, [0] * 2 * TILE)), iota)
        nv = b.insert_element(ir.Constant(_v32i, None), n32, ir.Constant(_i32, 0))
        keep = b.icmp_signed("<", pos, b.shuffle_vector(nv, nv, ir.Constant(_v32i, [0] * 2 * TILE)))
        x = b.select(keep, b.fmul(x, m), ir.Constant(_v32f, [0.0] * 2 * TILE))
        out = b.mul(s, ir.Constant(_i64, TILE_ELEMS))
        _store_parts(b, x, b.gep(hi, [out]), b.gep(lo, [out]), b.gep(hi2, [out]))
    b.ret_void()
    return fn


@intrinsic
def _split_row(typingctx, row, row_off, mul, n_valid, dst, lo_off, hi_off, hi2_off, n_steps):
    """_define_split_row on arrays: row (float32, offset in elements), dst (uint16, offsets in elements)."""
    sig = types.void(row, types.intp, types.float32, types.intp, dst, types.intp, types.intp, types.intp, types.intp)

    def codegen(context, builder, sig, args):
        fn = _define_split_row(builder.module)
        r = context.make_array(sig.args[0])(context, builder, args[0]).data
        d = builder.bitcast(context.make_array(sig.args[4])(context, builder, args[4]).data, _i16.as_pointer())
        builder.call(fn, [builder.gep(r, [args[1]]), args[2], args[3], builder.gep(d, [args[5]]),
                          builder.gep(d, [args[6]]), builder.gep(d, [args[7]]), args[8]])
        return context.get_dummy_value()

    return sig, codegen


@intrinsic
def _split(typingctx, vector_scale, src, src_off, second, pair_stride, sc, sc_off, sc_second, sc_pair_stride,
           dst, hi_off, lo_off, hi2_off, n_pairs, n_rows):
    """_define_split on array operands: offsets in elements (src: cache elements, sc: floats, dst: uint16);
    vector_scale a compile-time literal, 1 (16 scales per row) or 0 (one)."""
    if not (isinstance(vector_scale, types.IntegerLiteral) and vector_scale.literal_value in (0, 1)) \
            or src.dtype not in _ELEM:
        return None
    sig = types.void(vector_scale, src, types.intp, types.intp, types.intp, sc, types.intp, types.intp, types.intp,
                     dst, types.intp, types.intp, types.intp, types.intp, types.intp)

    def codegen(context, builder, sig, args):
        kind = _ELEM[sig.args[1].dtype]
        fn = _define_split(builder.module, kind, bool(sig.args[0].literal_value))

        def at(i, off, ty):
            data = context.make_array(sig.args[i])(context, builder, args[i]).data
            return builder.gep(builder.bitcast(data, ty.as_pointer()), [off])

        f32 = ir.FloatType()
        cache = context.make_array(sig.args[1])(context, builder, args[1]).data
        builder.call(fn, [cache, args[2], args[3], args[4], at(5, args[6], f32), args[7],
                          args[8], at(9, args[10], _i16), at(9, args[11], _i16), at(9, args[12], _i16), args[13], args[14]])
        return context.get_dummy_value()

    return sig, codegen


@njit(cache=True)
def scratch_sizes(T, group, n_pos, hd):
    """(uint16, float32) scratch elements one thread needs for one KV head (see _head)."""
    S, NK = hd // KSTEP, -(-n_pos // ROWS) * ROWS
    n_qb, NV = -(-(T * group) // ROWS), NK // KSTEP
    n16 = (NK // TILE * 3 * S + hd // TILE * 2 * NV + n_qb * 2 * 3 * S + 2 * 2 * NV) * TILE_ELEMS
    return n16, ROWS * (NK + TILE) + ROWS * (hd + TILE) + ROWS


@njit(inline="always")
def _head(q, tiles, values, k_scale, v_scale, pos0, kvh, group, scale, out, cfg, w16, w32, exact):
    """One KV head: out rows of its `group` query heads for the T prompt tokens (see the module docstring).
    w16, w32: this thread's scratch (scratch_sizes)."""
    T = q.shape[0]
    hd = tiles.shape[2]
    n_ctx = k_scale.shape[2]
    nb = k_scale.shape[1]
    bs = hd // nb
    S = hd // KSTEP                       # steps of 32 inputs over a head
    M = T * group
    n_qb = -(-M // ROWS)
    n_pos = pos0 + T
    NK = -(-n_pos // ROWS) * ROWS         # key positions converted (whole 32-position blocks)
    NV = NK // KSTEP                      # steps of 32 positions
    # keys: B tiles per 16 positions, [hi | lo | hi] (S steps each); values: per 16 dimensions, [hi | lo] (NV
    # steps each); queries: A tiles per 16 rows, [lo | hi | hi]; weights: A tiles per 16 rows, [lo | hi]
    k_at = 0
    v_at = k_at + NK // TILE * 3 * S * TILE_ELEMS
    q_at = v_at + hd // TILE * 2 * NV * TILE_ELEMS
    p_at = q_at + n_qb * 2 * 3 * S * TILE_ELEMS
    ks, vs = k_scale[kvh], v_scale[kvh]
    for j in range(NK // TILE):
        for blk in range(nb):
            # pair k of the tile: dimensions 2k, 2k+1 of 16 positions (rows of the cache tile)
            at = k_at + j * 3 * S * TILE_ELEMS + blk * bs * TILE
            _split(1, tiles[kvh, j], blk * bs * TILE, TILE, 2 * TILE, ks, blk * n_ctx + j * TILE, 0, 0,
                   w16, at, at + S * TILE_ELEMS, at + 2 * S * TILE_ELEMS, bs // 2, bs)
    for dt in range(hd // TILE):
        # pair k: positions 2k, 2k+1 of dimensions 16 dt.. (value rows hd apart); scale of their block
        at = v_at + dt * 2 * NV * TILE_ELEMS
        _split(0, values[kvh], dt * TILE, hd, 2 * hd, vs, (dt * TILE) // bs, nb, 2 * nb,
               w16, at, at + NV * TILE_ELEMS, at, NK // 2, n_pos)
    for r in range(n_qb * ROWS):       # rows past M: zeros
        at = q_at + (r // TILE) * 3 * S * TILE_ELEMS + (r % TILE) * KSTEP
        _split_row(q, min(r, M - 1) // group * q.shape[1] + (kvh * group + r % group) * hd, scale,
                   hd if r < M else 0, w16, at, at + S * TILE_ELEMS, at + 2 * S * TILE_ELEMS, S)
    sc = w32[:ROWS * (NK + TILE)].reshape(ROWS, NK + TILE)   # scores of 32 query rows (rows padded: no 4 KB
    oc = w32[ROWS * (NK + TILE):ROWS * (NK + TILE + hd + TILE)].reshape(ROWS, hd + TILE)   # aliasing)
    dens = w32[ROWS * (NK + TILE + hd + TILE):]
    s_stride, o_stride = 4 * (NK + TILE), 4 * (hd + TILE)
    q_tile2, k_tile2, p_tile2, v_tile2 = 3 * S * 1024, 3 * S * 1024, 2 * NV * 1024, 2 * NV * 1024
    _tiles_on(cfg)
    for qb in range(n_qb):
        r0 = qb * ROWS
        last = min(r0 + ROWS, M) - 1
        nk = -(-(pos0 + last // group + 1) // ROWS) * ROWS       # keys the block's last row sees, whole blocks
        x0 = 2 * q_at + qb * 2 * q_tile2
        for k0 in range(0, nk, ROWS):
            w0 = 2 * k_at + (k0 // TILE) * k_tile2
            pf = w0 + 2 * k_tile2 if k0 + ROWS < nk else w0
            if exact:       # [lo | hi | hi] x [hi | lo | hi]: lo.hi + hi.lo + hi.hi
                _block(w16, w0, k_tile2, w16, x0, q_tile2, sc, 4 * k0, s_stride, 3 * S, 1, pf)
            else:           # [hi | hi] x [lo | hi]: q rounded to bf16, the F16 keys exact
                _block(w16, w0 + S * 1024, k_tile2, w16, x0 + S * 1024, q_tile2, sc, 4 * k0, s_stride, 2 * S, 1,
                       pf + S * 1024)
        for i in range(ROWS):
            r = r0 + i
            n = pos0 + r // group + 1 if r < M else 1
            dens[i] = softmax_weights(sc[i], n)
            at = p_at + (i // TILE) * 2 * NV * TILE_ELEMS + (i % TILE) * KSTEP
            _split_row(sc, i * sc.shape[1], np.float32(1.0), n, w16, at, at + NV * TILE_ELEMS, at + NV * TILE_ELEMS,
                       nk // KSTEP)
        steps = nk // KSTEP
        x_lo, x_hi = 2 * p_at, 2 * p_at + NV * 1024
        for d0 in range(0, hd, ROWS):
            w0 = 2 * v_at + (d0 // TILE) * v_tile2
            _block(w16, w0, v_tile2, w16, x_hi, p_tile2, oc, 4 * d0, o_stride, steps, 1, w0)               # hi.hi
            if exact:
                _block(w16, w0, v_tile2, w16, x_lo, p_tile2, oc, 4 * d0, o_stride, steps, 0, w0)           # lo.hi
                _block(w16, w0 + NV * 1024, v_tile2, w16, x_hi, p_tile2, oc, 4 * d0, o_stride, steps, 0, w0)  # hi.lo
        for i in range(min(ROWS, M - r0)):
            r = r0 + i
            inv = np.float32(1.0) / dens[i]
            o = out[r // group, (kvh * group + r % group) * hd:(kvh * group + r % group + 1) * hd]
            for d in range(hd):
                o[d] = oc[i, d] * inv
    _tiles_off()


@njit(parallel=True, cache=True)
def attention_amx(q, tiles, values, k_scale, v_scale, pos0, n_heads, scale, out, cfg, w16, w32, n_threads, exact):
    """Causal prefill attention of T queries at positions pos0.. over the cache (layers.attention's arguments):
    each thread claims KV heads one at a time (an atomic counter, as q1_0_amx's panels: a thread that lost its
    core does not hold back half the heads), on its own row of the scratch w16, w32."""
    n_kv = tiles.shape[0]
    claim = np.zeros(1, np.int64)
    for _ in prange(n_threads):
        tid = get_thread_id()
        while True:
            kvh = atomic_add(claim, 0, 1)
            if kvh >= n_kv:
                break
            _head(q, tiles, values, k_scale, v_scale, pos0, kvh, n_heads // n_kv, scale, out, cfg, w16[tid],
                  w32[tid], exact)


_SCRATCH: list = [np.empty((0, 0), np.uint16), np.empty((0, 0), np.float32)]   # grown, never shrunk: a fresh
# 1-2 MB buffer per call cost more in page faults than the conversion it holds (Emerald Rapids, 1,500 positions)


def run(q, tiles, values, k_scale, v_scale, pos0, n_heads, scale, out, exact: bool = True) -> None:
    """`attention_amx` on layers.attention's arguments. The caller chose the amx path (dispatch.choose), which
    asked Linux for the tile state; asking again here is a cached no-op that makes a direct call safe too."""
    why = dispatch.missing("amx")
    if why:
        raise KernelFormatError(f"AMX prefill attention: {why}")
    n16, n32 = scratch_sizes(q.shape[0], n_heads // tiles.shape[0], pos0 + q.shape[0], tiles.shape[2])
    n_threads = numba.config.NUMBA_NUM_THREADS
    w16, w32 = _SCRATCH
    if w16.shape[0] < n_threads or w16.shape[1] < n16 or w32.shape[1] < n32:
        _SCRATCH[:] = [np.empty((n_threads, max(n, old.shape[1])), old.dtype) for n, old in ((n16, w16), (n32, w32))]
        w16, w32 = _SCRATCH
    attention_amx(q, tiles, values, k_scale, v_scale, pos0, n_heads, np.float32(scale), out, TILE_CFG, w16, w32,
                  min(numba.get_num_threads(), tiles.shape[0]), exact)


def fits(hd: int) -> bool:
    """Whether the tile kernels take head size hd (whole 32-value steps)."""
    return hd % ROWS == 0
