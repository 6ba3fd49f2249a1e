"""Q1_0 decode with 16-entry integer tables and `pshufb` (T-MAC style): an optional, faster matvec.

The float decode kernel (q1_0.py) pays one scalar load + add per 8 weights. Here one 128-bit `pshufb`
looks up 16 rows at once: a 4-bit group of sign bits (4 weights) indexes a 16-entry table of the signed
sums of 4 activations, and each byte lane of the index vector is a different row.

Activation tables ("int11"): per 128-input block b, every 4-input signed sum v is rounded to an integer
q = round(v / s_b), s_b = (largest sum of |x| over the block's 4-input groups) / 1023, so |q| <= 1023.
q + 1024 (1..2047) is split into a low byte table and a high byte table (0..7). Per 16 rows and block:
  high bytes: 32 lookups summed in uint8 (<= 32 * 7 = 224, no overflow)
  low bytes:  two groups' lookups interleaved and summed pairwise into uint16 by `pmaddubsw` (<= 8160)
  block sum:  low + 256 * high - 32 * 1024 (fits int16), then float: out += d_w * s_b * sum
Error: each table entry is off by <= s_b / 2, so |error| <= 16 * sum_b |d_w,b| * s_b per row: about a
quarter of what int8 activations (llama.cpp's Q8_0 with one scale per 128) would give, but NOT float32
exact. That is why this path is opt-in (QuantMatrix decode mode "int11"), and float32 stays the default.

Weight layout: bits (n_tiles, n_blocks, 16, tile_rows) uint8 (q1_0.repack(..., byte_major=True)): the
float layout with the last two axes swapped, so byte k of 16 (64) consecutive rows is one 16 (64)-byte load.
Three widths: SSSE3 (any x86-64 since 2006, 16 rows per pshufb), AVX2 (32) and AVX-512BW (64 rows per vpshufb); the
dispatcher (dispatch.py, operation "q1_decode_int11") picks one, callers fall back to the float kernel where
neither runs.
"""

from __future__ import annotations

import numpy as np
from llvmlite import ir
from numba import cfunc, njit, prange, types
from numba.core import cgutils
from numba.extending import intrinsic

from . import dispatch, pool

QK = 128
GROUPS = QK // 4  # 4-input groups per block
TABLE_BYTES = GROUPS * 2 * 16  # per block: (16 byte positions, [lo g0, lo g1, hi g0, hi g1], 16 entries)
Q_MAX = 1023  # |q| bound of a table entry; q + Q_BIAS is 11 bits
Q_BIAS = 1024
# Software prefetch of the weights and scales PREFETCH_BYTES ahead in each tile's stream, into L2 (prefetcht1).
# WHY: a block of a 512-row tile is 8 KB that the kernel reads in 64-row chunks, 16 lines 512 bytes apart per
# chunk; the hardware prefetchers do not follow that order, so a matrix coming from DRAM streamed at 8.8 GB/s
# per core against 17-20 GB/s from L3 (Zen4, one thread). Prefetching the lines of the same chunk one block on
# lifts it to 18-19 GB/s; into L1 (prefetcht0) it did not help (8.9), too many lines in flight for L1.
PREFETCH_BYTES = 8192


def available() -> bool:
    """True if some width of this path runs here (the dispatcher's choice, RAGBIT_KERNEL included)."""
    return dispatch.choose("q1_decode_int11") != "portable"


# ----------------------------------------------------------------------------------------------------
# activation tables

@njit(cache=True)
def build_tables(x, tab, s):
    """tab (n_blocks, 16, 4, 16) uint8, s (n_blocks,) float32 from x (n_in,).

    tab[b, k, 0|1, m] = low byte of q + 1024 for the group of inputs b*128 + 8k + (0|4) .. +4 and sign
    pattern m (bit i set = +x), tab[b, k, 2|3, m] = its high byte."""
    n_blocks = x.size // QK
    for b in range(n_blocks):
        amax = 0.0
        for g in range(GROUPS):
            a = 0.0
            for i in range(4):
                a += abs(np.float64(x[b * QK + 4 * g + i]))
            amax = max(amax, a)
        scale = amax / Q_MAX if amax > 0 else 1.0
        s[b] = scale
        inv = 1.0 / scale
        for g in range(GROUPS):
            k, half = g // 2, g % 2
            c = b * QK + 4 * g
            for m in range(16):
                v = 0.0
                for i in range(4):
                    xi = np.float64(x[c + i])
                    v += xi if (m >> i) & 1 else -xi
                e = min(max(np.int64(np.round(v * inv)), -Q_MAX), Q_MAX) + Q_BIAS
                tab[b, k, half, m] = e & 255
                tab[b, k, 2 + half, m] = e >> 8


# ----------------------------------------------------------------------------------------------------
# the block kernel, written in LLVM IR (numba has no vector types)

# The block kernel comes in three widths, one LLVM IR generator for all: 16 rows per vector (SSSE3, 128-bit
# pshufb), 32 (AVX2) or 64 rows per vector (AVX-512BW, 512-bit vpshufb: four 128-bit lanes, each looking up
# its own 16 rows in the same table, broadcast to every lane). Only the width differs; the integer sums, and so the
# float results, are identical bit for bit.
_INTRINSICS = {  # width -> (pshufb, pmaddubsw)
    16: ("llvm.x86.ssse3.pshuf.b.128", "llvm.x86.ssse3.pmadd.ub.sw.128"),
    32: ("llvm.x86.avx2.pshuf.b", "llvm.x86.avx2.pmadd.ub.sw"),
    64: ("llvm.x86.avx512.pshuf.b.512", "llvm.x86.avx512.pmaddubs.w.512"),
}


def _define_block_fn(module: ir.Module, width: int) -> ir.Function:
    """void f(i8* w, i8* tab, i16* d, float s, float* acc, i64 n_chunks, i64 stride):
    for each chunk c of `width` rows: acc[wc : wc+w] += d[wc : wc+w] * s * (block sum of those rows),
    w = this block's (16, stride) sign bytes, tab = this block's 1 KB of tables."""
    name = f"ragbit_q1_0_pshufb{width}_block_f16scales"
    if name in module.globals:
        return module.globals[name]
    i8, i16, i32, i64, f32 = ir.IntType(8), ir.IntType(16), ir.IntType(32), ir.IntType(64), ir.FloatType()
    W, H = width, width // 2
    v16i8, vWi8, vHi16 = ir.VectorType(i8, 16), ir.VectorType(i8, W), ir.VectorType(i16, H)
    vWi16, vWi32, vWf32 = ir.VectorType(i16, W), ir.VectorType(i32, W), ir.VectorType(f32, W)
    fnty = ir.FunctionType(ir.VoidType(), [i8.as_pointer(), i8.as_pointer(), i16.as_pointer(), f32,
                                           f32.as_pointer(), i64, i64])
    fn = ir.Function(module, fnty, name)
    fn.linkage = "internal"
    shuf_name, madd_name = _INTRINSICS[W]
    pshufb = module.globals.get(shuf_name) or ir.Function(module, ir.FunctionType(vWi8, [vWi8, vWi8]), shuf_name)
    maddubs = module.globals.get(madd_name) or ir.Function(module, ir.FunctionType(vHi16, [vWi8, vWi8]), madd_name)
    w, tab, d, s, acc, n_chunks, stride = fn.args
    b = ir.IRBuilder(fn.append_basic_block("entry"))

    def splat(ty, n, v):
        return ir.Constant(ir.VectorType(ty, n), [ir.Constant(ty, v)] * n)

    def mask(idx):
        return ir.Constant(ir.VectorType(i32, len(idx)), idx)

    def load(ptr, offset, ty):
        return b.load(b.bitcast(b.gep(ptr, [offset]), ty.as_pointer()), align=1)

    nib, four, ones, zero8 = splat(i8, W, 15), splat(i8, W, 4), splat(i8, W, 1), splat(i8, W, 0)
    zero16 = splat(i16, H, 0)
    flip = splat(i16, W, 0x8000 - 0x10000)
    lanes = range(W // 16)
    # per 128-bit lane L: bytes 0..7 (lo) or 8..15 (hi) of l0 and l1 interleaved (punpcklbw / punpckhbw), so
    # the i16 element 8L + i of the lo sums is row 16L + i, of the hi sums row 16L + 8 + i
    lo_mask = mask([16 * L + i // 2 + (W if i % 2 else 0) for L in lanes for i in range(16)])
    hi_mask = mask([16 * L + 8 + i // 2 + (W if i % 2 else 0) for L in lanes for i in range(16)])
    # lo/hi i16 sums (concatenated) -> row order
    row_order = mask([(H if (r % 16) >= 8 else 0) + 8 * (r // 16) + r % 8 for r in range(W)])
    bcast = mask([i % 16 for i in range(W)])  # one 16-byte table in every lane
    tables = []
    for j in range(64):  # 1 KB: LLVM keeps what fits in registers
        t = load(tab, ir.Constant(i64, 16 * j), v16i8)
        tables.append(t if W == 16 else b.shuffle_vector(t, t, bcast))
    sv = b.insert_element(ir.Constant(vWf32, None), s, ir.Constant(i32, 0))
    sv = b.shuffle_vector(sv, sv, mask([0] * W))  # (W,) copies of s
    # prefetch distance: whole blocks (16 * stride weight bytes, 2 * stride scale bytes), about PREFETCH_BYTES
    ahead = b.udiv(ir.Constant(i64, PREFETCH_BYTES), b.mul(stride, ir.Constant(i64, 16)))
    ahead = b.select(b.icmp_unsigned("==", ahead, ir.Constant(i64, 0)), ir.Constant(i64, 1), ahead)
    pf_w, pf_d = b.mul(ahead, b.mul(stride, ir.Constant(i64, 16))), b.mul(ahead, b.mul(stride, ir.Constant(i64, 2)))
    per_line = 64 // W  # chunks sharing a 64-byte line of weights: each prefetches 16 / per_line of its lines
    with cgutils.for_range(b, n_chunks) as loop:
        r0 = b.mul(loop.index, ir.Constant(i64, W))
        acc_lo, acc_hi, acc_h = zero16, zero16, zero8
        turn = b.and_(loop.index, ir.Constant(i64, per_line - 1))
        for j in range(16 // per_line):
            k = b.add(ir.Constant(i64, j * per_line), turn)
            prefetch_l2(b, w, b.add(b.add(b.mul(stride, k), r0), pf_w))
        for line in range(0, 2 * W, 64):  # this chunk's scales
            prefetch_l2(b, b.bitcast(d, i8.as_pointer()), b.add(b.add(b.mul(r0, ir.Constant(i64, 2)), pf_d),
                                                                  ir.Constant(i64, line)))
        for k in range(16):
            wv = load(w, b.add(b.mul(stride, ir.Constant(i64, k)), r0), vWi8)
            i0 = b.and_(wv, nib)
            i1 = b.lshr(wv, four)
            l0 = b.call(pshufb, [tables[4 * k], i0])
            l1 = b.call(pshufb, [tables[4 * k + 1], i1])
            h0 = b.call(pshufb, [tables[4 * k + 2], i0])
            h1 = b.call(pshufb, [tables[4 * k + 3], i1])
            acc_h = b.add(acc_h, b.add(h0, h1))
            acc_lo = b.add(acc_lo, b.call(maddubs, [b.shuffle_vector(l0, l1, lo_mask), ones]))
            acc_hi = b.add(acc_hi, b.call(maddubs, [b.shuffle_vector(l0, l1, hi_mask), ones]))
        h_lo = b.bitcast(b.shuffle_vector(zero8, acc_h, lo_mask), vHi16)  # high sums << 8
        h_hi = b.bitcast(b.shuffle_vector(zero8, acc_h, hi_mask), vHi16)
        sums = b.shuffle_vector(b.add(acc_lo, h_lo), b.add(acc_hi, h_hi), row_order)  # (W,) i16, row order
        tot = b.xor(sums, flip)  # uint16 sum of (q + 1024) - 32768 = signed sum of q
        f = b.sitofp(b.sext(tot, vWi32), vWf32)
        dv = b.fpext(b.bitcast(load(d, r0, vWi16), ir.VectorType(ir.HalfType(), W)), vWf32)  # scales, half bits
        ap = b.bitcast(b.gep(acc, [r0]), vWf32.as_pointer())
        b.store(b.fadd(b.load(ap, align=4), b.fmul(b.fmul(dv, sv), f)), ap, align=4)
    b.ret_void()
    return fn


def prefetch_l2(b: ir.IRBuilder, ptr, offset) -> None:
    """prefetcht1 of ptr + offset bytes (a prefetch never faults, so addresses past the array are harmless)."""
    i32 = ir.IntType(32)
    module = b.module
    fn = module.globals.get("llvm.prefetch.p0") or ir.Function(
        module, ir.FunctionType(ir.VoidType(), [ir.IntType(8).as_pointer(), i32, i32, i32]), "llvm.prefetch.p0")
    # (address, read, locality 2 = keep in L2 and below, data cache)
    b.call(fn, [b.gep(ptr, [offset]), ir.Constant(i32, 0), ir.Constant(i32, 2), ir.Constant(i32, 1)])


@intrinsic
def _block(typingctx, width, w, tab, d, s, acc, n_chunks, stride):
    """The block kernel of `width` (a compile-time literal: 16, 32 or 64) rows per vector (see _define_block_fn)."""
    if not isinstance(width, types.IntegerLiteral) or width.literal_value not in _INTRINSICS:
        return None
    sig = types.void(width, w, tab, d, types.float32, acc, types.intp, types.intp)

    def codegen(context, builder, sig, args):
        fn = _define_block_fn(builder.module, sig.args[0].literal_value)
        nc, st = args[6], args[7]
        ptr = {i: context.make_array(sig.args[i])(context, builder, args[i]).data for i in (1, 2, 3, 5)}
        i8p, i16p, f32p = ir.IntType(8).as_pointer(), ir.IntType(16).as_pointer(), ir.FloatType().as_pointer()
        builder.call(fn, [builder.bitcast(ptr[1], i8p), builder.bitcast(ptr[2], i8p), builder.bitcast(ptr[3], i16p),
                          args[4], builder.bitcast(ptr[5], f32p), nc, st])
        return context.get_dummy_value()

    return sig, codegen


@intrinsic
def _block_at(typingctx, width, w, tab, d, s, acc, n_chunks, stride):
    """`_block` on raw addresses (int64) of the weights, tables, scales and accumulators: for the pool's item
    kernels, which receive their arrays as addresses (pool.py)."""
    if not isinstance(width, types.IntegerLiteral) or width.literal_value not in _INTRINSICS:
        return None
    sig = types.void(width, types.int64, types.int64, types.int64, types.float32, types.int64, types.intp,
                     types.intp)

    def codegen(context, builder, sig, args):
        fn = _define_block_fn(builder.module, sig.args[0].literal_value)
        i8p, i16p, f32p = ir.IntType(8).as_pointer(), ir.IntType(16).as_pointer(), ir.FloatType().as_pointer()
        builder.call(fn, [builder.inttoptr(args[1], i8p), builder.inttoptr(args[2], i8p),
                          builder.inttoptr(args[3], i16p), args[4], builder.inttoptr(args[5], f32p), args[6], args[7]])
        return context.get_dummy_value()

    return sig, codegen


@njit(inline="always")
def _matvec(bits_t, scales, tab, s, out, width):
    """out (n_out,) = W @ x given x's tables (build_tables); bits_t (n_tiles, n_blocks, 16, tile_rows), with the
    block kernel of `width` rows per vector; tile_rows % width == 0 (q1_0.tile_rows_for gives multiples of 64).
    Inlined into one entry point per width, where width is a constant: each compiles only when first called,
    so a CPU never sees instructions it lacks, and each caches on disk."""
    n_out = out.size
    n_tiles, n_blocks, tile_rows = scales.shape
    for it in prange(n_tiles):
        r0 = it * tile_rows
        n_r = min(n_out - r0, tile_rows)
        n_chunks = (n_r + width - 1) // width
        acc = np.zeros(tile_rows, np.float32)
        for b in range(n_blocks):
            _block(width, bits_t[it, b], tab[b], scales[it, b], s[b], acc, n_chunks, tile_rows)
        for r in range(n_r):          # not `out[r0:r0 + n_r] = acc[:n_r]`: see layers._split_qkv_row
            out[r0 + r] = acc[r]


@njit(parallel=True, cache=True)
def matvec_pshufb(bits_t, scales, tab, s, out):
    _matvec(bits_t, scales, tab, s, out, 16)       # SSSE3


@njit(parallel=True, cache=True)
def matvec_vpshufb256(bits_t, scales, tab, s, out):
    _matvec(bits_t, scales, tab, s, out, 32)       # AVX2


@njit(parallel=True, cache=True)
def matvec_vpshufb512(bits_t, scales, tab, s, out):
    _matvec(bits_t, scales, tab, s, out, 64)       # AVX-512BW


# The same kernels compiled without threads (prange runs as range): for small matrices, where waking the
# second thread costs more than the work it takes over (QuantMatrix.SERIAL_BELOW_BYTES, measured there).
@njit(cache=True)
def matvec_pshufb_1t(bits_t, scales, tab, s, out):
    _matvec(bits_t, scales, tab, s, out, 16)


@njit(cache=True)
def matvec_vpshufb256_1t(bits_t, scales, tab, s, out):
    _matvec(bits_t, scales, tab, s, out, 32)


@njit(cache=True)
def matvec_vpshufb512_1t(bits_t, scales, tab, s, out):
    _matvec(bits_t, scales, tab, s, out, 64)


MATVEC_1T = {"avx512bw": matvec_vpshufb512_1t, "avx2": matvec_vpshufb256_1t, "ssse3": matvec_pshufb_1t}
MATVEC = {"avx512bw": matvec_vpshufb512, "avx2": matvec_vpshufb256, "ssse3": matvec_pshufb}  # dispatch path ->


# ----------------------------------------------------------------------------------------------------
# the same product as items of the decode pool (pool.py): rows split in ITEM_ROWS ranges of the tiles

# Job parameters (pool.PARAMS order): out, bits_t, scales, tab, s (addresses), n_tiles, n_blocks, tile_rows,
# n_out, item_rows
_P_OUT, _P_BITS, _P_SCALES, _P_TAB, _P_S, _P_TILES, _P_BLOCKS, _P_TROWS, _P_NOUT, _P_IROWS = range(10)


@njit(inline="always")
def _matvec_item(job_addr, i, acc_addr, width):
    """Item i of the product: rows [r0, r0 + item_rows) of one tile, all blocks, into acc. Returns
    (r0 << 16) | rows (0 for an item past the matrix: a helper may hold an item number of a finished job)."""
    job = pool.carray_i64(job_addr, pool.N_PARAMS)
    n_tiles, n_blocks, tile_rows, n_out, item_rows = job[_P_TILES], job[_P_BLOCKS], job[_P_TROWS], job[_P_NOUT], \
        job[_P_IROWS]
    per_tile = tile_rows // item_rows
    it, sub = i // per_tile, i % per_tile
    r0 = it * tile_rows + sub * item_rows
    if it >= n_tiles or r0 >= n_out:
        return 0
    n_r = min(n_out - r0, item_rows)
    n_chunks = (n_r + width - 1) // width
    acc = pool.carray_f32(acc_addr, item_rows)
    acc[:] = 0.0
    s = pool.carray_f32(job[_P_S], n_blocks)
    block0 = it * n_blocks
    for b in range(n_blocks):
        blk = block0 + b
        _block_at(width, job[_P_BITS] + blk * 16 * tile_rows + sub * item_rows, job[_P_TAB] + b * TABLE_BYTES,
                  job[_P_SCALES] + 2 * (blk * tile_rows + sub * item_rows), s[b], acc_addr, n_chunks, tile_rows)
    return (r0 << 16) | n_r


def _item_pshufb(job, i, acc):
    return _matvec_item(job, i, acc, 16)


def _item_vpshufb256(job, i, acc):
    return _matvec_item(job, i, acc, 32)


def _item_vpshufb512(job, i, acc):
    return _matvec_item(job, i, acc, 64)


_ITEMS = {"avx512bw": _item_vpshufb512, "avx2": _item_vpshufb256, "ssse3": _item_pshufb}
_ITEM_CFUNCS: dict = {}


def item_kernel(path: str) -> int:
    """Address of the pool item kernel of `path`, compiled (or loaded from numba's cache) on first use only:
    a CPU never compiles the widths it lacks."""
    if path not in _ITEM_CFUNCS:
        _ITEM_CFUNCS[path] = cfunc(pool.ITEM_SIG, cache=True)(_ITEMS[path])
    return _ITEM_CFUNCS[path].address


@njit(cache=True)
def matvec_pool(ctl, scratch, fn, bits_t, scales, tab, s, out, item_rows, n_workers):
    """The product over the decode pool's threads (pool.run_job): items of item_rows rows (a divisor of the
    tile rows, a multiple of 64). Returns the number of items this thread took over from a late helper."""
    n_tiles, n_blocks, _, tile_rows = bits_t.shape
    p = pool.PARAMS
    ctl[p + _P_OUT], ctl[p + _P_BITS], ctl[p + _P_SCALES] = pool.address(out), pool.address(bits_t), \
        pool.address(scales)
    ctl[p + _P_TAB], ctl[p + _P_S] = pool.address(tab), pool.address(s)
    ctl[p + _P_TILES], ctl[p + _P_BLOCKS], ctl[p + _P_TROWS] = n_tiles, n_blocks, tile_rows
    ctl[p + _P_NOUT], ctl[p + _P_IROWS] = out.size, item_rows
    return pool.run_job(ctl, scratch, fn, n_tiles * (tile_rows // item_rows), n_workers)
