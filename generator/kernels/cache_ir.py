"""LLVM vector IR for the kernels that read the KV cache: 16-float vectors of F16, float32, int8 or 4-bit cache
elements, the kernel-definition decorator, and the shape tokens that carry a kernel's shape in numba types.

WHY a module of its own: decode attention's float kernels (attention.py), its int8 q.k (attention_int8.py) and
the AMX prefill attention (attention_amx.py) all widen cache elements the same way; one `_Emit` keeps the cache's
element formats (half.Q4_PACKING for the 4-bit runs) in one place.
"""

from __future__ import annotations

import numpy as np
from llvmlite import ir
from numba import types
from numba.core import cgutils

TILE = 16        # positions per key tile = float32 lanes per vector
STEP_TILES = {"avx512vnni": 4, "avx512bw": 4, "avx2": 2}   # dispatch path -> key tiles per q.k step


# Software prefetch into L2 (prefetcht1), one per 64-byte line: keys one q.k step ahead, values PV_AHEAD positions
# ahead. WHY: each key tile is its own 4 KB and the hardware's streamers restart at every 4 KB page, so a cache
# coming from DRAM streamed well below the memory rate; with these, decode attention after 1,500 positions took
# 0.75-0.81x the time (F16 and q8, Bonsai-1.7B and 8B shapes, Emerald Rapids, bench_attention.py). With the cache
# in L3 (a few hundred positions) they cost 0-7%.
QK_AHEAD = 1      # q.k steps
PV_AHEAD = 32     # positions

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
