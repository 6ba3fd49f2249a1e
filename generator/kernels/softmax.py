"""Softmax pieces for attention with float32 exp that LLVM can vectorise (numba's math.exp is a scalar libm call
per score): `exp_f32`, `row_max` (a row's maximum, 16 lanes at a time), `exp_shifted` and `softmax_weights`.
Used by decode attention (attention.py, decode_attention.py), AMX prefill attention and SwiGLU (layers.py).
"""

from __future__ import annotations

import numpy as np
from llvmlite import ir
from numba import njit, types
from numba.core import cgutils
from numba.extending import intrinsic

TILE = 16        # float32 lanes per vector of row_max (rows are allocated in whole multiples of it)



@intrinsic
def _bits_to_f32(typingctx, i):
    if i != types.int32:
        return None

    def codegen(context, builder, sig, args):
        return builder.bitcast(args[0], ir.FloatType())

    return types.float32(types.int32), codegen


@njit(inline="always", fastmath=True)
def exp_f32(x):
    """e^x in float32 (Cephes expf: 2^n times a degree-6 polynomial on [-ln2/2, ln2/2]; relative error ~2e-7),
    x clamped to [-87, 88] (e^-87 ~ 1.6e-38, e^88 ~ 1.7e38: finite, no denormal scale)."""
    x = min(max(x, np.float32(-87.0)), np.float32(88.0))
    n = np.floor(x * np.float32(1.44269504088896341) + np.float32(0.5))   # float32 (math.floor gives int64)
    r = x - n * np.float32(0.693359375) - n * np.float32(-2.12194440e-4)
    p = np.float32(1.9875691500e-4)
    p = p * r + np.float32(1.3981999507e-3)
    p = p * r + np.float32(8.3334519073e-3)
    p = p * r + np.float32(4.1665795894e-2)
    p = p * r + np.float32(1.6666665459e-1)
    p = p * r + np.float32(5.0000001201e-1)
    y = p * (r * r) + r + np.float32(1.0)
    return y * _bits_to_f32(np.int32((np.int32(n) + np.int32(127)) << np.int32(23)))


@intrinsic
def row_max(typingctx, row, n):
    """max(row[:n]) of a float32 array, 16 lanes at a time (the lanes past n count as -inf; the vector loads may
    read up to 15 floats past n, so rows must be allocated in whole multiples of 16). WHY LLVM IR: numba's
    max(), np.maximum and a compare-and-select loop all stayed scalar (1.2 ns per score on Emerald Rapids, 3x
    the exp that follows)."""
    if not (isinstance(row, types.Array) and row.dtype == types.float32 and isinstance(n, types.Integer)):
        return None
    sig = types.float32(row, n)

    def codegen(context, builder, sig, args):
        b = builder
        f32, i32 = ir.FloatType(), ir.IntType(32)
        vf, vi = ir.VectorType(f32, TILE), ir.VectorType(i32, TILE)
        ptr = context.make_array(sig.args[0])(context, builder, args[0]).data
        n64 = b.sext(args[1], ir.IntType(64)) if args[1].type.width < 64 else args[1]
        ninf = ir.Constant(vf, [float("-inf")] * TILE)
        acc = cgutils.alloca_once_value(b, ninf)
        iota = ir.Constant(vi, list(range(TILE)))
        zeros = ir.Constant(vi, [0] * TILE)
        steps = b.udiv(b.add(n64, ir.Constant(n64.type, TILE - 1)), ir.Constant(n64.type, TILE))
        with cgutils.for_range(b, steps) as loop:
            p0 = b.mul(loop.index, ir.Constant(n64.type, TILE))
            x = b.load(b.bitcast(b.gep(ptr, [p0]), vf.as_pointer()), align=4)
            base = b.insert_element(ir.Constant(vi, None), b.trunc(p0, i32), ir.Constant(i32, 0))
            lim = b.insert_element(ir.Constant(vi, None), b.trunc(n64, i32), ir.Constant(i32, 0))
            keep = b.icmp_signed("<", b.add(b.shuffle_vector(base, base, zeros), iota),
                                 b.shuffle_vector(lim, lim, zeros))
            x = b.select(keep, x, ninf)
            a = b.load(acc)
            b.store(b.select(b.fcmp_ordered(">", x, a), x, a), acc)
        v = b.load(acc)
        m = b.extract_element(v, ir.Constant(i32, 0))
        for i in range(1, TILE):
            e = b.extract_element(v, ir.Constant(i32, i))
            m = b.select(b.fcmp_ordered(">", e, m), e, m)
        return m

    return sig, codegen


@njit(cache=True, fastmath=True)
def exp_shifted(row, n, m):
    """row[:n] <- exp(row[:n] - m); returns their sum. Not inlined on purpose: an inlined function takes its
    caller's fastmath flags, and without reassociation LLVM cannot vectorise the sum (measured 3x slower)."""
    den = np.float32(0.0)
    for p in range(n):
        e = exp_f32(row[p] - m)
        row[p] = e
        den += e
    return den


@njit(cache=True, fastmath=True)
def softmax_weights(row, n):
    """row[:n] <- exp(row[:n] - max); returns the sum (the caller divides once, after the weighted sum).
    row: allocated in whole multiples of 16 (row_max)."""
    return exp_shifted(row, n, row_max(row, n))
