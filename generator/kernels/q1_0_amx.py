"""Q1_0 / Q2_0 prefill (matmul) on AMX tiles: bf16 activations times weights expanded to +-d bf16, `tdpbf16ps`.

WHY bf16 and not int8 tiles: the int8 path (q1_0_vnni.py) needs one activation scale per token and 32 inputs
(one per 128 inputs measured 4x the error), so an int8 tile product (`tdpbssd`) could cover only 32 inputs
before its int32 tile had to be stored, converted and scaled per token in AVX-512: that pass costs more than
the tile product it follows. In bf16 the weight's block scale is folded into the expanded weight (+-d, or
(q - 1) d for Q2_0) and the activations need no scale at all, so `tdpbf16ps` accumulates float32 over the
whole row with nothing between tile products: 16 x 16 x 32 multiply-adds per instruction.

Accuracy (per input i of a row: activation x_i, weight w_i = +-d_b): bf16 rounds x_i by <= |x_i| 2^-9 and d_b
(an fp16 scale: 11 significant bits) by <= |d_b| 2^-9 (round to nearest even); products are exact and summed in
float32. So |error| <= 2^-8 (1 + 2^-9) sum_i |w_i| |x_i| + float32 summation, below the int8 path's bound
(sum_i |w_i| s_i / 2, s_i = max |x| of its 32 inputs / 127) wherever a block's inputs are not all of one size,
and never above it by more than 1% (|x_i| <= 127 s_i, 127 / 256 < 1 / 2). The block scale is thus rounded to 8
significant bits instead of applied exactly per block: a systematic relative error <= 2^-9 per (row, block),
the same size as the rounding of one activation; tests/test_kernels_simd.py holds both paths to one bound.

Layout: the weights stay in the int11 decode layout (bits (n_tiles, n_blocks, 16, tile_rows)). Per row panel
(`panel_rows`: its bf16 copy within PANEL_BYTES, in L2) a thread expands them once (`_define_expand`: LLVM vector
IR, ~0.1 ns per weight; numba loops took 0.9) into tdpbf16ps B tiles (16 rows x 32 inputs, 1 KB: input pair kk,
row n -> bf16 at [kk][n][0..1]) and then sweeps every token of the batch over it: each 32 tokens x 32 rows of
the panel run one register block over ALL inputs, 4 float32 accumulator tiles (tmm0-3), 2 activation tiles
(tmm4-5), 2 weight tiles (tmm6-7), prefetching the next block's weight tiles, and store the accumulators
straight into `out`. WHY over all inputs: storing and reloading the 4 accumulators costs the tile pipeline
about as much as it takes to drain (a block of 8 steps ran at ~60% of one of 64 steps, Emerald Rapids), and
the KC passes that kept the activations in L1 needed a scratch copy of the accumulators and a copy into out.
Threads claim panels one at a time from a shared counter (prange over the threads, an atomic add), not in
prange's static halves: on this shared machine one thread often lost its core and the other waited.
Activations are converted once per call into 1 KB tiles (`to_bf16_tiles`), so every tile load is contiguous.
Tile permission is per process (dispatch.os_refuses asks for it); the tile configuration is per thread, so every
panel loads it (`ldtilecfg`) and releases the tiles at its end (`tilerelease`).

Speed (Sapphire Rapids-class Xeon, LLVM host name emeraldrapids, 2 vCPUs of a shared host; one thread, CPU time): 2048 x 12288 at 128 tokens ~300-330
GMAC/s against ~165 for the VNNI kernel; the register block alone reaches ~900 GMAC/s when its 32 KB of tiles
sit in L1 and ~400 from L2, and that varied 2x from minute to minute on this host (likely a busy sibling
hyperthread: it shares the core's AMX unit). The tile products also run slower on random data than on the
zeros cpu_peaks.py multiplies (~300 vs ~560 GMAC/s in one run of the same blocks), so that peak is optimistic.
"""

from __future__ import annotations

import numpy as np
from llvmlite import ir
from numba import njit, prange, types
from numba.extending import intrinsic

from .half import to_f32
from .pool import atomic_add

TILE = 16             # rows of a tile; a tile row is 64 bytes = 32 bf16 inputs or 16 float32 outputs
KSTEP = 32            # inputs per tdpbf16ps
TOKENS = 2 * TILE     # tokens per register block (2 activation tiles)
ROWS = 2 * TILE       # weight rows per register block (2 weight tiles)
PANEL_BYTES = 1 << 20  # bf16 bytes of one expanded row panel: stays in L2 while every token runs over it

_i8, _i16, _i64 = ir.IntType(8), ir.IntType(16), ir.IntType(64)


def tile_config() -> np.ndarray:
    """The 64-byte `ldtilecfg` operand: palette 1, tiles 0-7 of 16 rows x 64 bytes."""
    cfg = np.zeros(64, np.uint8)
    cfg[0] = 1
    cfg[16:32].view(np.uint16)[:] = 64       # colsb of tiles 0..7
    cfg[48:56] = TILE                        # rows of tiles 0..7
    return cfg


TILE_CFG = tile_config()


def _intrinsic_fn(module: ir.Module, name: str, args: list) -> ir.Function:
    if name in module.globals:
        return module.globals[name]
    return ir.Function(module, ir.FunctionType(ir.VoidType(), args), name)


def _define_block(module: ir.Module) -> ir.Function:
    """void f(i8* w, i64 w_tile2, i8* x, i64 x_tile2, i8* c, i64 c_stride, i64 steps, i64 first, i8* pf):
    c (32 tokens x 32 rows float32, row stride c_stride bytes) (+)= x @ w over `steps` steps of 32 inputs.
    x: activation tiles (16 tokens x 32 bf16, 1 KB each, consecutive steps 1 KB apart) of tokens 0-15 at x, of
    tokens 16-31 at x + x_tile2; w: weight tiles (32 inputs x 16 rows as bf16 pairs, 1 KB) of rows 0-15 at w, of
    rows 16-31 at w + w_tile2. first != 0 starts from zero instead of c. Needs the tile configuration loaded
    (tiles 0-7: 16 x 64 bytes). Each step also prefetches into L1 the next block's weight tiles of that step
    (2 KB at pf + 1 KB k and pf + w_tile2 + 1 KB k): tile loads from L2 ran at ~40% of the tile products' rate
    (16 KB blocks: 21 ns per tdpbf16ps from L2, 8.9 ns from L1, measured on Sapphire Rapids)."""
    name = "ragbit_amx_bf16_block"
    if name in module.globals:
        return module.globals[name]
    p8 = _i8.as_pointer()
    fn = ir.Function(module, ir.FunctionType(ir.VoidType(), [p8, _i64, p8, _i64, p8, _i64, _i64, _i64, p8]), name)
    fn.linkage = "internal"
    w, w_tile2, x, x_tile2, c, c_stride, steps, first, pf = fn.args
    i32 = ir.IntType(32)
    prefetch = module.globals.get("llvm.prefetch.p0") or ir.Function(
        module, ir.FunctionType(ir.VoidType(), [p8, i32, i32, i32]), "llvm.prefetch.p0")
    b = ir.IRBuilder(fn.append_basic_block("entry"))
    load = _intrinsic_fn(module, "llvm.x86.tileloadd64", [_i8, p8, _i64])
    store = _intrinsic_fn(module, "llvm.x86.tilestored64", [_i8, p8, _i64])
    zero = _intrinsic_fn(module, "llvm.x86.tilezero", [_i8])
    dot = _intrinsic_fn(module, "llvm.x86.tdpbf16ps", [_i8, _i8, _i8])

    def tmm(i):
        return ir.Constant(_i8, i)

    def const(v):
        return ir.Constant(_i64, v)

    # accumulator tile 2 i + j: tokens 16 i.., rows 16 j..  (byte offsets into c)
    c_at = [b.gep(c, [b.add(b.mul(c_stride, const(16 * i)), const(64 * j))]) for i in range(2) for j in range(2)]
    with b.if_else(b.icmp_signed("!=", first, const(0))) as (then, otherwise):
        with then:
            for t in range(4):
                b.call(zero, [tmm(t)])
        with otherwise:
            for t in range(4):
                b.call(load, [tmm(t), c_at[t], c_stride])
    x1 = b.gep(x, [x_tile2])
    w1 = b.gep(w, [w_tile2])
    entry = b.block
    loop = b.append_basic_block("loop")
    done = b.append_basic_block("done")
    b.cbranch(b.icmp_signed(">", steps, const(0)), loop, done)
    b.position_at_end(loop)
    k = b.phi(_i64)
    k.add_incoming(const(0), entry)
    o = b.mul(k, const(1024))
    row = const(64)
    b.call(load, [tmm(4), b.gep(x, [o]), row])
    b.call(load, [tmm(6), b.gep(w, [o]), row])
    b.call(load, [tmm(7), b.gep(w1, [o]), row])
    b.call(dot, [tmm(0), tmm(4), tmm(6)])
    b.call(load, [tmm(5), b.gep(x1, [o]), row])
    b.call(dot, [tmm(1), tmm(4), tmm(7)])
    b.call(dot, [tmm(2), tmm(5), tmm(6)])
    b.call(dot, [tmm(3), tmm(5), tmm(7)])
    pf1 = b.gep(pf, [w_tile2])
    for base in (pf, pf1):
        for line in range(16):
            b.call(prefetch, [b.gep(base, [b.add(o, const(64 * line))]), ir.Constant(i32, 0), ir.Constant(i32, 3),
                              ir.Constant(i32, 1)])
    k_next = b.add(k, const(1))
    k.add_incoming(k_next, loop)
    b.cbranch(b.icmp_signed("<", k_next, steps), loop, done)
    b.position_at_end(done)
    for t in range(4):
        b.call(store, [tmm(t), c_at[t], c_stride])
    b.ret_void()
    return fn


def _ptr(context, builder, ty, val):
    return builder.bitcast(context.make_array(ty)(context, builder, val).data, _i8.as_pointer())


@intrinsic
def _block(typingctx, w, w_off, w_tile2, x, x_off, x_tile2, c, c_off, c_stride, steps, first, pf_off):
    """The register block of _define_block on array operands; *_off are byte offsets into them (pf_off: into w)."""
    sig = types.void(w, types.intp, types.intp, x, types.intp, types.intp, c, types.intp, types.intp, types.intp,
                     types.intp, types.intp)

    def codegen(context, builder, sig, args):
        fn = _define_block(builder.module)
        w_p = builder.gep(_ptr(context, builder, sig.args[0], args[0]), [args[1]])
        x_p = builder.gep(_ptr(context, builder, sig.args[3], args[3]), [args[4]])
        c_p = builder.gep(_ptr(context, builder, sig.args[6], args[6]), [args[7]])
        pf_p = builder.gep(_ptr(context, builder, sig.args[0], args[0]), [args[11]])
        builder.call(fn, [w_p, args[2], x_p, args[5], c_p, args[8], args[9], args[10], pf_p])
        return context.get_dummy_value()

    return sig, codegen


@intrinsic
def _tiles_on(typingctx, cfg):
    """ldtilecfg: this thread's tile configuration (64 bytes, tile_config())."""
    sig = types.void(cfg)

    def codegen(context, builder, sig, args):
        fn = _intrinsic_fn(builder.module, "llvm.x86.ldtilecfg", [_i8.as_pointer()])
        builder.call(fn, [_ptr(context, builder, sig.args[0], args[0])])
        return context.get_dummy_value()

    return sig, codegen


@intrinsic
def _tiles_off(typingctx):
    """tilerelease: the thread's tile state back to init (so the OS need not save it)."""
    sig = types.void()

    def codegen(context, builder, sig, args):
        builder.call(_intrinsic_fn(builder.module, "llvm.x86.tilerelease", []), [])
        return context.get_dummy_value()

    return sig, codegen


@njit(parallel=True, cache=True)
def to_bf16_tiles(x, xt):
    """x (T, n_in) float32 -> xt (T_pad // 16, n_in // 32, 16, 32) bf16 bits, activation tiles: token t, input i
    at xt[t // 16, i // 32, t % 16, i % 32]; rounded to nearest even (no NaN among activations). Tiles past T are
    left as they are (the caller zeroes them)."""
    u = x.view(np.uint32)
    for t in prange(x.shape[0]):
        tt, tr = t // TILE, t % TILE
        for s in range(x.shape[1] // KSTEP):
            for j in range(KSTEP):
                v = u[t, s * KSTEP + j]
                xt[tt, s, tr, j] = np.uint16((v + np.uint32(0x7FFF) + ((v >> np.uint32(16)) & np.uint32(1)))
                                             >> np.uint32(16))


def _define_expand(module: ir.Module, wbits: int) -> ir.Function:
    """void f(i8* bits, i64 stride, i16* d3, i8* dst): one block of 16 rows into bf16 B tiles. bits: payload
    byte 0 of the block's first row (byte k of the 16 rows at bits + k * stride, consecutive rows contiguous); d3: three 32-lane uint16 vectors, bf16 +d, -d and 2d of row e // 2 in lane e;
    dst: the block's first B tile (a block's tiles are contiguous). Lane e of a 64-byte output row is row e // 2,
    input 2 kk + e % 2 of the tile's pair kk.
    wbits=1 (Q1_0): byte k = inputs 8k .. 8k+7 (bit j: input 8k + j; set = +d), pair h of byte k at dst + 256 k + 64 h.
    wbits=2 (Q2_0): byte k = inputs 4k .. 4k+3 (code j in bits 2j, weight (q - 1) d), pair h at dst + 128 k + 64 h."""
    name = f"ragbit_q{wbits}_0_amx_expand"
    if name in module.globals:
        return module.globals[name]
    p8, p16 = _i8.as_pointer(), _i16.as_pointer()
    fn = ir.Function(module, ir.FunctionType(ir.VoidType(), [p8, _i64, p16, p8]), name)
    fn.linkage = "internal"
    bits, stride, d3, dst = fn.args
    b = ir.IRBuilder(fn.append_basic_block("entry"))
    v16, v32, w32 = ir.VectorType(_i8, 16), ir.VectorType(_i8, 32), ir.VectorType(_i16, 32)
    spread = ir.Constant(ir.VectorType(ir.IntType(32), 32), [e // 2 for e in range(32)])   # lane e <- row e // 2
    zero8, zero16 = ir.Constant(v32, [0] * 32), ir.Constant(w32, [0] * 32)
    dpos, dneg, dtwo = (b.load(b.bitcast(b.gep(d3, [ir.Constant(_i64, 32 * i)]), w32.as_pointer()), align=2)
                        for i in range(3))
    pairs = 4 if wbits == 1 else 2
    for k in range(16):
        src = b.load(b.bitcast(b.gep(bits, [b.mul(stride, ir.Constant(_i64, k))]), v16.as_pointer()), align=1)
        wide = b.shuffle_vector(src, src, spread)
        for h in range(pairs):
            if wbits == 1:
                mask = ir.Constant(v32, [1 << (2 * h + e % 2) for e in range(32)])
                val = b.select(b.icmp_unsigned("!=", b.and_(wide, mask), zero8), dpos, dneg)
                off = 256 * k + 64 * h
            else:
                q = b.and_(b.lshr(wide, ir.Constant(v32, [4 * h + 2 * (e % 2) for e in range(32)])),
                           ir.Constant(v32, [3] * 32))
                lo = b.select(b.icmp_unsigned("==", q, zero8), dneg, zero16)
                hi = b.select(b.icmp_unsigned("==", q, ir.Constant(v32, [2] * 32)), dpos, dtwo)
                val = b.select(b.icmp_unsigned("<", q, ir.Constant(v32, [2] * 32)), lo, hi)
                off = 128 * k + 64 * h
            b.store(val, b.bitcast(b.gep(dst, [ir.Constant(_i64, off)]), w32.as_pointer()), align=2)
    b.ret_void()
    return fn


@intrinsic
def _expand_block(typingctx, wbits, bits, bits_off, stride, d3, dst, dst_off):
    """_define_expand on array operands (offsets in bytes); wbits a compile-time literal, 1 or 2."""
    if not (isinstance(wbits, types.IntegerLiteral) and wbits.literal_value in (1, 2)):
        return None
    sig = types.void(wbits, bits, types.intp, types.intp, d3, dst, types.intp)

    def codegen(context, builder, sig, args):
        fn = _define_expand(builder.module, sig.args[0].literal_value)
        src = builder.gep(_ptr(context, builder, sig.args[1], args[1]), [args[2]])
        d_p = builder.bitcast(_ptr(context, builder, sig.args[4], args[4]), _i16.as_pointer())
        out = builder.gep(_ptr(context, builder, sig.args[5], args[5]), [args[6]])
        builder.call(fn, [src, args[3], d_p, out])
        return context.get_dummy_value()

    return sig, codegen


@njit(inline="always")
def _expand(bits_t, scales, it, r, n_rows, wbits, w, dtmp, d3):
    """Expand rows r .. r + n_rows of tile `it` (tile-local), every input, into w (uint16 bf16 bits): the B tile
    (row tile rt, step s) at element (rt * S + s) * 512, S = n_in // 32, as [pair kk][row n][input 2 kk + p].
    Weight = +-d (Q1_0: bit set = +d) or (q - 1) d (Q2_0), d rounded to bf16 to nearest even (times -1, 0, 1, 2:
    exact). Scratch: dtmp (16,) float32, d3 (3, 32) uint16 (see _define_expand)."""
    n_blocks, tile_rows = scales.shape[1], scales.shape[2]
    qk = 128 // wbits
    S = n_blocks * qk // KSTEP
    du = dtmp.view(np.uint32)
    for rt in range(n_rows // TILE):
        rr = r + rt * TILE
        for blk in range(n_blocks):
            for n in range(TILE):
                dtmp[n] = to_f32(scales[it, blk, rr + n])
            for e in range(2 * TILE):
                v = du[e // 2]
                d = (v + np.uint32(0x7FFF) + ((v >> np.uint32(16)) & np.uint32(1))) >> np.uint32(16)
                d3[0, e] = np.uint16(d)
                d3[1, e] = np.uint16(d ^ np.uint32(0x8000))
                d3[2, e] = np.uint16(d + np.uint32(0x80)) if (d & np.uint32(0x7FFF)) != 0 else np.uint16(d)
            _expand_block(wbits, bits_t, ((it * n_blocks + blk) * 16) * tile_rows + rr, tile_rows, d3,
                          w, 2 * (rt * S + blk * (qk // KSTEP)) * 512)


def panel_rows(tile_rows: int, n_in: int) -> int:
    """Rows per expanded panel: its bf16 copy (rows x n_in x 2 bytes) within PANEL_BYTES (L2), a multiple of 32
    dividing tile_rows."""
    want = max(ROWS, min(tile_rows, PANEL_BYTES // (2 * n_in)) // ROWS * ROWS)
    for r in range(want, 0, -ROWS):
        if tile_rows % r == 0:
            return r
    return ROWS


@njit(inline="always")
def _matmul(bits_t, scales, xt, out, cfg, n_panel, wbits, n_threads, claim):
    """out (T_pad, n_tiles * tile_rows) float32 = x @ W.T; xt: x's bf16 activation tiles (to_bf16_tiles, T_pad %
    32 == 0, zero rows past the prompt); bits_t (n_tiles, n_blocks, 16, tile_rows), scales (n_tiles, n_blocks,
    tile_rows) fp16 bits. Row panels of n_panel rows are claimed one at a time from claim[0] (an int64 counter,
    0 on entry) by every thread; a panel's weights are expanded once (into L2), then every 32 tokens run over
    every 32 rows of it, each register block over ALL inputs, its accumulators stored straight into out."""
    n_tt, S = xt.shape[0], xt.shape[1]
    n_tiles, n_blocks, tile_rows = scales.shape
    per_tile = tile_rows // n_panel
    n_units = n_tiles * per_tile
    o_stride = 4 * out.shape[1]
    for _ in prange(n_threads):
        w = np.empty(n_panel * S * KSTEP, np.uint16)
        dtmp, d3 = np.empty(TILE, np.float32), np.empty((3, 2 * TILE), np.uint16)
        while True:
            u = atomic_add(claim, 0, 1)
            if u >= n_units:
                break
            it, r = u // per_tile, (u % per_tile) * n_panel
            col0 = it * tile_rows + r
            _expand(bits_t, scales, it, r, n_panel, wbits, w, dtmp, d3)
            _tiles_on(cfg)
            for tb in range(0, n_tt, 2):
                for rs in range(0, n_panel, ROWS):
                    nxt = rs + ROWS if rs + ROWS < n_panel else 0        # the next block's weights, into L1
                    _block(w, (rs // TILE) * S * 1024, S * 1024, xt, tb * S * 1024, S * 1024,
                           out, tb * TILE * o_stride + 4 * (col0 + rs), o_stride, S, 1, (nxt // TILE) * S * 1024)
            _tiles_off()


@njit(parallel=True, cache=True)
def matmul_amx(bits_t, scales, xt, out, cfg, n_panel, n_threads):
    _matmul(bits_t, scales, xt, out, cfg, n_panel, 1, n_threads, np.zeros(1, np.int64))   # Q1_0


@njit(parallel=True, cache=True)
def matmul_amx_q2(bits_t, scales, xt, out, cfg, n_panel, n_threads):
    _matmul(bits_t, scales, xt, out, cfg, n_panel, 2, n_threads, np.zeros(1, np.int64))   # Q2_0
