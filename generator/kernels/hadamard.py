"""Walsh-Hadamard rotation of attention heads: each hd-value head of a row times H_hd / sqrt(hd), in place.

WHY: the quantized KV caches (q8, q4) hold keys and values rotated, and attention runs on rotated q, k, v with its
output rotated back (kv_cache.rotate_heads says why). A decode step rotates 48 heads per layer on Bonsai-1.7B;
numba's loops for the fast transform stayed scalar (7-10 us per 16 heads of 128, Emerald Rapids: 0.6 ms per
token), so this is LLVM vector IR, as the attention kernels are.

H_hd in Sylvester's order is H_(hd/16) (x) H_16 (the Kronecker product): for lane i of a 16-float vector, the
passes of H_16 pair it with lane i ^ h (h = 1, 2, 4, 8: a constant shuffle and one multiply-add by +-1);
H_(hd/16) pairs whole vectors 16 h values apart (h = 1, 2, 4, ...). hd: a power of two, >= 16.
"""

from __future__ import annotations

import math

import numpy as np
from llvmlite import ir
from numba import njit, prange, types
from numba.core import cgutils
from numba.extending import intrinsic

LANES = 16


@intrinsic
def _rotate(typingctx, x, first, count, hd, n_pass, norm):
    """Elements first .. first + count of x (C-contiguous float32; whole heads of hd values) <- each head times
    H_hd * norm; n_pass = log2(hd / 16)."""
    if not (isinstance(x, types.Array) and x.dtype == types.float32 and x.layout == "C"):
        return None
    sig = types.void(x, types.intp, types.intp, types.intp, types.intp, types.float32)

    def codegen(context, builder, sig, args):
        b = builder
        arr = context.make_array(sig.args[0])(context, builder, args[0])
        first, count, hd, n_pass, norm = args[1:]
        i64, i32, f32 = ir.IntType(64), ir.IntType(32), ir.FloatType()
        vf = ir.VectorType(f32, LANES)
        vfp = vf.as_pointer()
        ptr = b.gep(arr.data, [first])
        name = "llvm.fmuladd.v16f32"
        fma = b.module.globals.get(name) or ir.Function(b.module, ir.FunctionType(vf, [vf] * 3), name)

        def const(v):
            return ir.Constant(i64, v)

        def vec_at(index):           # pointer to the 16 floats at vector `index`
            return b.bitcast(b.gep(ptr, [b.mul(index, const(LANES))]), vfp)

        n_vec = b.udiv(count, const(LANES))
        s = b.insert_element(ir.Constant(vf, None), norm, ir.Constant(i32, 0))
        scale = b.shuffle_vector(s, s, ir.Constant(ir.VectorType(i32, LANES), [0] * LANES))
        # H_16 on every vector (and the norm)
        with cgutils.for_range(b, n_vec) as loop:
            p = vec_at(loop.index)
            v = b.load(p, align=4)
            h = 1
            while h < LANES:
                partner = b.shuffle_vector(v, v, ir.Constant(ir.VectorType(i32, LANES), [i ^ h for i in range(LANES)]))
                sign = ir.Constant(vf, [-1.0 if i & h else 1.0 for i in range(LANES)])
                v = b.call(fma, [v, sign, partner])    # lane i: v_i + v_(i^h), or v_(i^h) - v_i with bit h set
                h *= 2
            b.store(b.fmul(v, scale), p, align=4)
        # H_(hd/16) across the vectors of each head
        per_head = b.udiv(hd, const(LANES))
        with cgutils.for_range(b, b.udiv(n_vec, per_head)) as head:
            base = b.mul(head.index, per_head)
            with cgutils.for_range(b, n_pass) as pass_:
                half = b.shl(const(1), pass_.index)
                with cgutils.for_range(b, per_head) as i:
                    with cgutils.if_likely(b, b.icmp_unsigned("==", b.and_(i.index, half), const(0))):
                        pa, pb = vec_at(b.add(base, i.index)), vec_at(b.add(base, b.add(i.index, half)))
                        va, vb = b.load(pa, align=4), b.load(pb, align=4)
                        b.store(b.fadd(va, vb), pa, align=4)
                        b.store(b.fsub(va, vb), pb, align=4)
        return context.get_dummy_value()

    return sig, codegen


@njit(inline="always")
def _passes(hd):
    n_pass, n = 0, LANES
    while n < hd:
        n_pass, n = n_pass + 1, 2 * n
    return n_pass


@njit(cache=True)
def rotate_heads(x, hd):
    """x (T, n * hd) float32, C-contiguous <- each hd-value head times the orthonormal Walsh-Hadamard matrix
    (Sylvester order, entries +-1 / sqrt(hd); it is its own inverse)."""
    _rotate(x, 0, x.size, hd, _passes(hd), np.float32(1.0 / math.sqrt(hd)))


@njit(cache=True, parallel=True)
def rotate_heads_rows(x, hd, k):
    """`rotate_heads` with the rows split in k parts over the threads (a prompt chunk; k = numba's thread count,
    passed in: numba.get_num_threads() inside would keep the function out of the cache)."""
    n = x.shape[0]
    per, width = -(-n // k), x.shape[1]
    for c in prange(k):
        r0, r1 = c * per, min(n, (c + 1) * per)
        if r0 < r1:
            _rotate(x, r0 * width, (r1 - r0) * width, hd, _passes(hd), np.float32(1.0 / math.sqrt(hd)))


def fits(hd: int) -> bool:
    """Whether heads of hd values can be rotated: a power of two of at least one vector."""
    return hd >= LANES and hd & (hd - 1) == 0
