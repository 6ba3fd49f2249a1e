"""Q1_0 / Q2_0 prefill (matmul) on VNNI: int8 activations times weights expanded to bytes, `vpdpbusd`, in 512-bit
(AVX-512 VNNI) or 256-bit vectors (AVX-VNNI: Intel client cores from Alder Lake on have it without AVX-512).

WHY: the float prefill (q1_0.matmul_lut4_*) is bound by table traffic in L2; a prompt of 1,500 tokens took
~20-40 s. `vpdpbusd` does 64 int8 multiply-adds per instruction, so a 1-bit weight becomes a byte once per
(rows, block) and is reused for every token of the batch.

Arithmetic, per token t and 128-input block b (the weight block scale d_w as now, one activation scale per
token and block):
  xq[t, i] = round(x[t, i] / s[t, j]),  s[t, j] = max |x[t, 32 inputs j]| / 127   (int8, llama.cpp's Q8_0)
  sum_i sign_i x_i  ~  sum_j s[t, j] * (2 * sum_{i in j: bit set} xq[t, i] - sum_{i in j} xq[t, i])
  out[t, r] += d_w[r, b] * sum_j s[t, j] * (2 P_j - Q_j)   P_j: vpdpbusd of {0,1} weight bytes (u8) with xq (s8)
The error is the int8 rounding of the activations (|x - s*xq| <= s/2), as in llama.cpp's own Q1_0 x Q8_0
path. (One scale per 128 inputs measured 4x the error, enough to flip a reference argmax.) So this path is not float32-exact: it runs only in the "int11"
(fast integer) mode, and the reference tests hold it to the llama.cpp tolerances.

Weight layout: the int11 decode layout, bits (n_tiles, n_blocks, 16, tile_rows) (byte k of consecutive rows
contiguous). Per 32 rows and block the kernel expands the 128 x 32 bits into 4 KB of {0,1} bytes arranged for
vpdpbusd: group g (inputs 4g..4g+3) of 16 rows is one 64-byte vector, byte 4r + j = weight (row r, input 4g+j);
then every NT tokens run 32 groups x 2 row vectors x NT tokens of vpdpbusd with the 4 activation bytes of a
group broadcast (int32 accumulators in registers), folded into float per 32 inputs and into the output per block.

The 256-bit kernel is the same code at 8 lanes: one call covers the 16 rows of one 64-byte row vector (its two
32-byte halves), so a block takes two calls, on the same expanded bytes. Emerald Rapids, Bonsai-1.7B shape, 512
tokens, one process: it prefilled at 1.3x the float-table path's rate (avx2 cap) and 0.6-0.7x the 512-bit kernel's.

Q2_0 (64-input blocks of 2-bit codes, value (q - 1) d): the same kernel with each code expanded to a byte 0..3
(16 groups per block), sum_i (q_i - 1) x_i ~ sum_j s[t, j] (P_j - Q_j), over 2 activation scales per block.
"""

from __future__ import annotations

import llvmlite.binding as llvm_binding
import numpy as np
from llvmlite import ir
from numba import njit, prange, types
from numba.core import cgutils
from numba.extending import intrinsic

QK = 128
GROUPS = QK // 4   # 4-input groups per block: one vpdpbusd each
ROWS = 32          # rows per expanded weight block: two 16-lane int32 vectors
NT = 6             # tokens per register tile. 512-bit: 2 x 6 int32 + 2 x 6 float accumulators + weights fit 32 zmm;
# 256-bit (AVX-VNNI CPUs have 16 ymm): the 12 int32 accumulators, 2 weight vectors and the broadcast activations
# fit, and LLVM keeps the float sums (touched once per 32 inputs) on the stack (seen in its alderlake code);
# 6 tokens ran 1.3x the speed of 3 (Emerald Rapids, ymm kernel)
SUBS = 4           # activation scales per block: one per 32 inputs (llama.cpp's Q8_0 granularity)
QS = QK // SUBS
EXPANDED = GROUPS * ROWS * 4  # bytes of one expanded (32 rows, block)

_i8, _i16, _i32, _i64, _f32 = ir.IntType(8), ir.IntType(16), ir.IntType(32), ir.IntType(64), ir.FloatType()


def _vpdpbusd(module: ir.Module, lanes: int) -> ir.Function:
    """llvm.x86.avx512.vpdpbusd.512 (lanes 16) or .256 (lanes 8): its operand types changed from <lanes x i32> to
    <4 lanes x i8> in LLVM 21. The 256-bit one is also AVX-VNNI's (VEX-encoded where the CPU has no AVX512-VL)."""
    name = f"llvm.x86.avx512.vpdpbusd.{32 * lanes}"
    if name in module.globals:
        return module.globals[name]
    acc = ir.VectorType(_i32, lanes)
    src = ir.VectorType(_i8, 4 * lanes) if llvm_binding.llvm_version_info[0] >= 21 else acc
    return ir.Function(module, ir.FunctionType(acc, [acc, src, src]), name)


def _define_expand(module: ir.Module, wbits: int) -> ir.Function:
    """void f(i8* bits, i64 stride, i8* dst): bits = a block's (16, stride) payload bytes at the first of 32 rows;
    dst (groups, 2 row vectors, 64 bytes): byte 4r + j of (g, v) = weight (row 16v + r, input 4g + j) as a byte:
    wbits=1 (Q1_0, 32 groups): its sign bit, 0 or 1; wbits=2 (Q2_0, 16 groups): its code, 0..3."""
    name = f"ragbit_q{wbits}_0_vnni_expand"
    if name in module.globals:
        return module.globals[name]
    fn = ir.Function(module, ir.FunctionType(ir.VoidType(), [_i8.as_pointer(), _i64, _i8.as_pointer()]), name)
    fn.linkage = "internal"
    bits, stride, dst = fn.args
    b = ir.IRBuilder(fn.append_basic_block("entry"))
    v16, v64 = ir.VectorType(_i8, 16), ir.VectorType(_i8, 64)
    spread = ir.Constant(ir.VectorType(_i32, 64), [i // 4 for i in range(64)])  # byte 4r + j <- row r
    zero, one = ir.Constant(v64, [0] * 64), ir.Constant(v64, [1] * 64)
    if wbits == 2:                            # byte k of each row: inputs 4k .. 4k+3 = group k, code j in bits 2j
        shifts, three = ir.Constant(v64, [2 * (i % 4) for i in range(64)]), ir.Constant(v64, [3] * 64)
        for k in range(16):
            for v in range(2):
                src = b.load(b.bitcast(b.gep(bits, [b.add(b.mul(stride, ir.Constant(_i64, k)), ir.Constant(_i64, 16 * v))]),
                                       v16.as_pointer()), align=1)
                codes = b.and_(b.lshr(b.shuffle_vector(src, src, spread), shifts), three)
                b.store(codes, b.bitcast(b.gep(dst, [ir.Constant(_i64, (2 * k + v) * 64)]), v64.as_pointer()), align=1)
        b.ret_void()
        return fn
    for k in range(16):                       # sign byte k of each row: inputs 8k .. 8k+7 = groups 2k, 2k+1
        for v in range(2):
            src = b.load(b.bitcast(b.gep(bits, [b.add(b.mul(stride, ir.Constant(_i64, k)), ir.Constant(_i64, 16 * v))]),
                                   v16.as_pointer()), align=1)
            wide = b.shuffle_vector(src, src, spread)
            for half in range(2):
                pattern = ir.Constant(v64, [1 << (4 * half + i % 4) for i in range(64)])
                is_set = b.icmp_unsigned("!=", b.and_(wide, pattern), zero)
                g = 2 * k + half
                out = b.bitcast(b.gep(dst, [ir.Constant(_i64, (2 * g + v) * 64)]), v64.as_pointer())
                b.store(b.select(is_set, one, zero), out, align=1)
    b.ret_void()
    return fn


def _define_dot(module: ir.Module, wbits: int, lanes: int) -> ir.Function:
    """void f(i8* w, i8* xq, i64 x_stride, float* sx, i32* qx, i64 s_stride, i16* d, float* out, i64 o_stride, i64 T):
    for every token t < T and 2 * lanes rows r of one expanded block w (see _define_expand:
    lanes 16 = all 32 rows; lanes 8 = the 16 rows of one 64-byte row vector, w, d and out offset to it by the caller):
      out[t*o_stride + r] += d[r] * sum_j sx[t*s_stride + j] * (2 * sum_{g in sub-block j} w_g[r] . xq[t, 4g..] - qx[t*s_stride + j])
    over the block's 4 sub-blocks j of 32 inputs; xq points at the block's first input of token 0, sx / qx at its
    first sub-block, d at the 32 rows' half scales. That is wbits=1 (Q1_0: weight 2 w - 1); wbits=2 (Q2_0: weight
    w - 1, 64-input blocks) sums over 2 sub-blocks without the factor 2. Tokens go NT at a time (register tiles);
    xq / sx / qx are read up to the next multiple of NT tokens (the caller pads them), out only up to T.
    WHY the token loop is here and not in numba: a call per NT tokens (numba's slicing and call overhead) cost
    ~2% of the kernel's time (Zen4)."""
    name = f"ragbit_q{wbits}_0_vnni_dot_{lanes}"
    subs = SUBS if wbits == 1 else SUBS // 2
    if name in module.globals:
        return module.globals[name]
    p8, p16, p32, pf = _i8.as_pointer(), _i16.as_pointer(), _i32.as_pointer(), _f32.as_pointer()
    fnty = ir.FunctionType(ir.VoidType(), [p8, p8, _i64, pf, p32, _i64, p16, pf, _i64, _i64])
    fn = ir.Function(module, fnty, name)
    fn.linkage = "internal"
    w, xq0, x_stride, sx0, qx0, s_stride, d, out0, o_stride, n_tokens = fn.args
    b = ir.IRBuilder(fn.append_basic_block("entry"))
    dpbusd = _vpdpbusd(module, lanes)
    vi32, vi8, vf32 = ir.VectorType(_i32, lanes), ir.VectorType(_i8, 4 * lanes), ir.VectorType(_f32, lanes)  # one register
    src_ty = dpbusd.function_type.args[1]
    lane0 = ir.Constant(ir.VectorType(_i32, lanes), [0] * lanes)

    def const(v):
        return ir.Constant(_i64, v)

    def splat(value, ty):
        return b.shuffle_vector(b.insert_element(ir.Constant(ty, None), value, ir.Constant(_i32, 0)),
                                ir.Constant(ty, None), lane0)

    # The activation-sum term does not depend on the row: sum_j s_j (2 P_j - Q_j) = sum_j (2 s_j) P_j - C with
    # C = sum_j s_j Q_j one scalar per token and block. So per sub-block a row vector costs a convert and one
    # multiply-add (not shift, subtract, convert, multiply, add), and C is subtracted once per block.
    # Loop-carried accumulators live in allocas that LLVM promotes to registers; loops over sub-blocks and
    # groups instead of unrolling them keep the first compile short
    fmuladd = module.globals.get(f"llvm.fmuladd.v{lanes}f32") or ir.Function(
        module, ir.FunctionType(vf32, [vf32] * 3), f"llvm.fmuladd.v{lanes}f32")
    facc = [[b.alloca(vf32) for _ in range(NT)] for _ in range(2)]   # float sums over the sub-blocks
    iacc = [[b.alloca(vi32) for _ in range(NT)] for _ in range(2)]   # int32 sums of one sub-block
    cacc = [b.alloca(_f32) for _ in range(NT)]                          # C of each token
    dv = [b.fpext(b.bitcast(b.load(b.bitcast(b.gep(d, [const(lanes * v)]), ir.VectorType(_i16, lanes).as_pointer()), align=2),
                            ir.VectorType(ir.HalfType(), lanes)), vf32) for v in range(2)]
    n_tiles = b.sdiv(b.add(n_tokens, const(NT - 1)), const(NT))
    tile_loop = cgutils.for_range(b, n_tiles)
    tile = tile_loop.__enter__().index
    t0 = b.mul(tile, const(NT))
    xq, out = b.gep(xq0, [b.mul(t0, x_stride)]), b.gep(out0, [b.mul(t0, o_stride)])
    sx, qx = b.gep(sx0, [b.mul(t0, s_stride)]), b.gep(qx0, [b.mul(t0, s_stride)])
    nt = b.sub(n_tokens, t0)
    for row in facc:
        for slot in row:
            b.store(ir.Constant(vf32, [0.0] * lanes), slot)
    for slot in cacc:
        b.store(ir.Constant(_f32, 0.0), slot)
    p_factor = ir.Constant(_f32, 2.0 if wbits == 1 else 1.0)
    with cgutils.for_range(b, const(subs)) as sub_loop:
        j = sub_loop.index
        for row in iacc:
            for slot in row:
                b.store(ir.Constant(vi32, [0] * lanes), slot)
        with cgutils.for_range(b, const(GROUPS // SUBS)) as loop:
            g = b.add(b.mul(j, const(GROUPS // SUBS)), loop.index)
            wv = [b.load(b.bitcast(b.gep(w, [b.add(b.mul(g, const(128)), const(4 * lanes * v))]),
                                   vi8.as_pointer()), align=1) for v in range(2)]
            wv = [b.bitcast(x, src_ty) for x in wv]
            for t in range(NT):
                xp = b.gep(xq, [b.add(b.mul(x_stride, const(t)), b.mul(g, const(4)))])
                xv = b.bitcast(splat(b.load(b.bitcast(xp, p32), align=1), vi32), src_ty)
                for v in range(2):
                    b.store(b.call(dpbusd, [b.load(iacc[v][t]), wv[v], xv]), iacc[v][t])
        for t in range(NT):
            so = b.add(b.mul(s_stride, const(t)), j)   # read for padding tokens too: the caller pads sx / qx
            s_t = b.load(b.gep(sx, [so]))
            b.store(b.fadd(b.load(cacc[t]), b.fmul(s_t, b.sitofp(b.load(b.gep(qx, [so])), _f32))), cacc[t])
            sv = splat(b.fmul(s_t, p_factor), vf32)
            for v in range(2):
                p = b.sitofp(b.load(iacc[v][t]), vf32)
                b.store(b.call(fmuladd, [sv, p, b.load(facc[v][t])]), facc[v][t])
    for t in range(NT):
        with b.if_then(b.icmp_signed("<", const(t), nt)):
            cv = splat(b.load(cacc[t]), vf32)
            for v in range(2):
                op = b.bitcast(b.gep(out, [b.add(b.mul(o_stride, const(t)), const(lanes * v))]), vf32.as_pointer())
                b.store(b.call(fmuladd, [dv[v], b.fsub(b.load(facc[v][t]), cv), b.load(op, align=4)]), op, align=4)
    tile_loop.__exit__(None, None, None)
    b.ret_void()
    return fn


def _ptr(context, builder, ty, val, elem):
    return builder.bitcast(context.make_array(ty)(context, builder, val).data, elem.as_pointer())


def _literal_wbits(wbits) -> bool:
    return isinstance(wbits, types.IntegerLiteral) and wbits.literal_value in (1, 2)


def _literal_lanes(lanes) -> bool:
    return isinstance(lanes, types.IntegerLiteral) and lanes.literal_value in (8, 16)


@intrinsic
def _expand(typingctx, wbits, bits, stride, dst):
    """Expand one (32 rows, block) of weights (bits: the block's (16, tile_rows) bytes from the first row);
    wbits (a compile-time literal) 1 = Q1_0, 2 = Q2_0."""
    if not _literal_wbits(wbits):
        return None
    sig = types.void(wbits, bits, types.intp, dst)

    def codegen(context, builder, sig, args):
        fn = _define_expand(builder.module, sig.args[0].literal_value)
        builder.call(fn, [_ptr(context, builder, sig.args[1], args[1], _i8), args[2],
                          _ptr(context, builder, sig.args[3], args[3], _i8)])
        return context.get_dummy_value()

    return sig, codegen


@intrinsic
def _dot(typingctx, wbits, lanes, w, xq, x_stride, sx, qx, s_stride, d, out, o_stride, nt):
    if not (_literal_wbits(wbits) and _literal_lanes(lanes)):
        return None
    sig = types.void(wbits, lanes, w, xq, types.intp, sx, qx, types.intp, d, out, types.intp, types.intp)

    def codegen(context, builder, sig, args):
        fn = _define_dot(builder.module, sig.args[0].literal_value, sig.args[1].literal_value)
        a, sig = args[2:], types.void(*sig.args[2:])
        builder.call(fn, [_ptr(context, builder, sig.args[0], a[0], _i8), _ptr(context, builder, sig.args[1], a[1], _i8),
                          a[2], _ptr(context, builder, sig.args[3], a[3], _f32),
                          _ptr(context, builder, sig.args[4], a[4], _i32), a[5],
                          _ptr(context, builder, sig.args[6], a[6], _i16), _ptr(context, builder, sig.args[7], a[7], _f32),
                          a[8], a[9]])
        return context.get_dummy_value()

    return sig, codegen


def _define_quantize(module: ir.Module) -> ir.Function:
    """void f(float* x, i8* xq, float* s, i32* q): one run of QS inputs -> int8 (llama.cpp's Q8_0 rule):
    *s = max |x| / 127, xq = x / *s rounded half to even (np.round's rule), *q = sum of xq. As vectors: numba
    kept the max and the rounding scalar (0.7-0.9 ns per input, ~4% of a prefill on Zen4)."""
    name = "ragbit_q8_quantize_run"
    if name in module.globals:
        return module.globals[name]
    vf, vb, vi = ir.VectorType(_f32, QS), ir.VectorType(_i8, QS), ir.VectorType(_i32, QS)
    fn = ir.Function(module, ir.FunctionType(ir.VoidType(), [_f32.as_pointer(), _i8.as_pointer(), _f32.as_pointer(),
                                                             _i32.as_pointer()]), name)
    fn.linkage = "internal"
    x, xq, s_out, q_out = fn.args
    b = ir.IRBuilder(fn.append_basic_block("entry"))

    def intrinsic_fn(base, ret, args):
        full = f"{base}.v{QS}{'f32' if args[0] == vf else 'i32'}"
        return module.globals.get(full) or ir.Function(module, ir.FunctionType(ret, args), full)

    v = b.load(b.bitcast(x, vf.as_pointer()), align=4)
    amax = b.call(intrinsic_fn("llvm.vector.reduce.fmax", _f32, [vf]), [b.call(intrinsic_fn("llvm.fabs", vf, [vf]), [v])])
    s = b.fdiv(amax, ir.Constant(_f32, 127.0))
    inv = b.select(b.fcmp_ordered(">", amax, ir.Constant(_f32, 0.0)), b.fdiv(ir.Constant(_f32, 1.0), s),
                   ir.Constant(_f32, 0.0))
    inv_v = b.shuffle_vector(b.insert_element(ir.Constant(vf, None), inv, ir.Constant(_i32, 0)), ir.Constant(vf, None),
                             ir.Constant(vi, [0] * QS))
    q = b.fptosi(b.call(intrinsic_fn("llvm.roundeven", vf, [vf]), [b.fmul(v, inv_v)]), vi)
    b.store(b.trunc(q, vb), b.bitcast(xq, vb.as_pointer()), align=1)
    b.store(s, s_out)
    b.store(b.call(intrinsic_fn("llvm.vector.reduce.add", _i32, [vi]), [q]), q_out)
    b.ret_void()
    return fn


@intrinsic
def _quantize_run(typingctx, x, xq, sx, qx, j):
    """Run j (inputs QS j .. QS j + QS - 1) of one token's row: x, xq, sx, qx are the token's rows (contiguous)."""
    if not all(isinstance(a, types.Array) and a.ndim == 1 and a.layout == "C" for a in (x, xq, sx, qx)):
        return None
    sig = types.void(x, xq, sx, qx, types.intp)

    def codegen(context, builder, sig, args):
        fn = _define_quantize(builder.module)
        j64 = args[4]
        off = builder.mul(j64, ir.Constant(j64.type, QS))
        ptrs = [builder.gep(_ptr(context, builder, sig.args[0], args[0], _f32), [off]),
                builder.gep(_ptr(context, builder, sig.args[1], args[1], _i8), [off]),
                builder.gep(_ptr(context, builder, sig.args[2], args[2], _f32), [j64]),
                builder.gep(_ptr(context, builder, sig.args[3], args[3], _i32), [j64])]
        builder.call(fn, ptrs)
        return context.get_dummy_value()

    return sig, codegen


@njit(parallel=True, cache=True)
def quantize_rows(x, xq, sx, qx):
    """x (T, n_in) float32 -> xq (T, n_in) int8, sx (T, n_in // 32) float32 scales, qx (T, n_in // 32) int32 sums
    of xq per 32 inputs (all C-contiguous). Rows past T (padding to a multiple of NT tokens) are left as they are:
    the caller zeroes them."""
    T, n_in = x.shape
    for t in prange(T):
        xr, qr, sr, cr = x[t], xq[t], sx[t], qx[t]
        for j in range(n_in // QS):
            _quantize_run(xr, qr, sr, cr, j)


@njit(inline="always")
def _matmul(bits_t, scales, xq, sx, qx, out, wbits, lanes):
    """out (T, n_out) = x @ W.T from x's int8 form (quantize_rows; xq, sx, qx padded with zero rows to a multiple
    of NT tokens: the kernel reads whole token tiles); bits_t (n_tiles, n_blocks, 16, tile_rows),
    scales (n_tiles, n_blocks, tile_rows) half bits; tile_rows % 32 == 0; wbits 1 (Q1_0) or 2 (Q2_0) and lanes
    16 (AVX-512) or 8 (AVX-VNNI, two calls of 16 rows per block), constants.
    Work units of 32 rows in parallel; each expands a block's weights once (4 KB, in L1) and runs every token
    over it."""
    T, n_out = out.shape
    n_tiles, n_blocks, tile_rows = scales.shape
    qk = QK // wbits                              # inputs per block: 16 payload bytes either way
    subs = qk // QS
    per_tile = tile_rows // ROWS
    rows = 2 * lanes                              # rows per kernel call
    out[:, :] = 0
    for u in prange(n_tiles * per_tile):
        it, r = u // per_tile, (u % per_tile) * ROWS
        r0 = it * tile_rows + r
        if r0 >= n_out:
            continue
        w = np.empty(EXPANDED, np.uint8)
        acc = np.zeros((T, ROWS), np.float32)     # (tokens, 32 rows): contiguous rows per token
        for b in range(n_blocks):
            _expand(wbits, bits_t[it, b, :, r:], tile_rows, w)
            for h in range(ROWS // rows):
                _dot(wbits, lanes, w[64 * h:], xq[:, b * qk:], xq.shape[1], sx[:, b * subs:], qx[:, b * subs:],
                     sx.shape[1], scales[it, b, r + rows * h:], acc[:, rows * h:], ROWS, T)
        n_r = min(ROWS, n_out - r0)
        out[:, r0:r0 + n_r] = acc[:, :n_r]


@njit(parallel=True, cache=True)
def matmul_vnni(bits_t, scales, xq, sx, qx, out):
    _matmul(bits_t, scales, xq, sx, qx, out, 1, 16)   # Q1_0, AVX-512 VNNI


@njit(parallel=True, cache=True)
def matmul_vnni_q2(bits_t, scales, xq, sx, qx, out):
    _matmul(bits_t, scales, xq, sx, qx, out, 2, 16)   # Q2_0, AVX-512 VNNI


@njit(parallel=True, cache=True)
def matmul_avxvnni(bits_t, scales, xq, sx, qx, out):
    _matmul(bits_t, scales, xq, sx, qx, out, 1, 8)    # Q1_0, AVX-VNNI (256-bit)


@njit(parallel=True, cache=True)
def matmul_avxvnni_q2(bits_t, scales, xq, sx, qx, out):
    _matmul(bits_t, scales, xq, sx, qx, out, 2, 8)    # Q2_0, AVX-VNNI (256-bit)
