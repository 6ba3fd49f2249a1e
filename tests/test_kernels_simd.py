"""The Q1_0 / Q2_0 "int11" decode path (q1_0_simd.py) against float64 dequantize(W) @ x, on every instruction-set
path the dispatcher implements for it (`int11_path` fixture: skipped where this CPU lacks the instructions).

Tolerance for int11 matvec, per row: |kernel - ref| <= 16 * sum_b |d_b| * s_b * (1 + 1e-4) + 3e-5 * (|W| @ |x|)
+ 1e-6, where d_b is the row's block scale and s_b = (largest sum of |x| over the block's 4-input groups) / 1023:
each of a block's 32 table entries is rounded by at most s_b / 2, plus float32 rounding. The test also checks
that this bound is tight enough to catch a wrong sign or scale (it is < 1% of |W| @ |x|).
"""

from __future__ import annotations

import numpy as np
import pytest

from generator.kernels import GGML_Q1_0, GGML_Q2_0, dequantize, prepare_matrix, quantize, set_threads
from generator.kernels import dispatch, q1_0_simd


SHAPES = [(384, 67), (640, 301), (256, 1024)]


def _case(n_in: int, n_out: int, seed: int, ggml_type: int = GGML_Q1_0):
    """(raw bytes, float64 dequantized W, rng). Q2_0: random payload bytes, so all four codes occur."""
    rng = np.random.default_rng(seed)
    if ggml_type == GGML_Q2_0:
        blocks = np.zeros((n_out, n_in // 64, 18), np.uint8)
        d = (rng.uniform(0.5, 1.5, (n_out, n_in // 64)) / 8).astype(np.float16)
        blocks[:, :, :2] = d.view(np.uint8).reshape(n_out, n_in // 64, 2)
        blocks[:, :, 2:] = rng.integers(0, 256, (n_out, n_in // 64, 16), dtype=np.uint8)
        raw = blocks.reshape(-1)
    else:
        w32 = (rng.standard_normal((n_out, n_in)) * rng.uniform(0.5, 1.5, (n_out, 1))).astype(np.float32)
        raw = quantize(GGML_Q1_0, w32)
    w = dequantize(ggml_type, raw, n_in, n_out).astype(np.float64)  # (n_out, n_in)
    return raw, w, rng


def _int11_bound(w: np.ndarray, x: np.ndarray, ggml_type: int = GGML_Q1_0) -> np.ndarray:
    """16 * sum_b |d_b| s_b per row, from the format's definition (not from the kernel's tables): a block's 32
    table entries are each rounded by <= s_b / 2. Q1_0: s_b = largest sum of |x| over the block's 4-input groups
    / 1023; Q2_0 (64-input blocks, values up to 2 d): largest 2 (|x_a| + |x_b|) over its input pairs / 1023."""
    n_out, n_in = w.shape
    qk, group, reach = (64, 2, 2.0) if ggml_type == GGML_Q2_0 else (128, 4, 1.0)
    d = np.abs(w).reshape(n_out, n_in // qk, qk).max(-1)  # (n_out, n_blocks): >= the block scale where it matters
    s = reach * np.abs(x.astype(np.float64)).reshape(n_in // qk, qk // group, group).sum(-1).max(-1) / 1023
    return 16 * d @ s


@pytest.mark.parametrize("ggml_type", [GGML_Q1_0, GGML_Q2_0], ids=["Q1_0", "Q2_0"])
@pytest.mark.parametrize("shape", SHAPES)
def test_int11_matvec_within_its_rounding_bound(shape, ggml_type, int11_path):
    n_in, n_out = shape
    raw, w, rng = _case(n_in, n_out, seed=n_out, ggml_type=ggml_type)
    m = prepare_matrix(ggml_type, raw, n_in, n_out, q1_decode="int11")
    op = "q2_decode_int11" if ggml_type == GGML_Q2_0 else "q1_decode_int11"
    assert (m.decode, m.path) == ("int11", dispatch.choose(op))
    for scale in (1.0, 1e-3, 50.0):  # the tables rescale per block: any input magnitude works
        x = (rng.standard_normal(n_in) * scale).astype(np.float32)
        x[:128] *= 10  # one block much larger than the rest
        ref = w @ x
        mag = np.abs(w) @ np.abs(x)
        bound = _int11_bound(w, x, ggml_type)
        assert np.all(bound < 0.01 * mag)  # a wrong sign or scale would exceed it
        got = m.matvec(x)
        assert got.dtype == np.float32 and got.shape == (n_out,)
        err = np.abs(got.astype(np.float64) - ref)
        assert np.all(err <= bound * (1 + 1e-4) + 3e-5 * mag + 1e-6), f"worst err/bound {(err / bound).max():.3g}"
        assert err.max() > 0  # really the integer path, not the float one


def test_int11_zero_input_and_thread_count(int11_path):
    n_in, n_out = 640, 301
    raw, w, rng = _case(n_in, n_out, seed=5)
    m = prepare_matrix(GGML_Q1_0, raw, n_in, n_out, q1_decode="int11")
    assert m.path == dispatch.choose("q1_decode_int11")
    assert np.array_equal(m.matvec(np.zeros(n_in, np.float32)), np.zeros(n_out, np.float32))
    x = rng.standard_normal(n_in).astype(np.float32)
    x[128:256] = 0  # an all-zero block in the middle
    try:
        set_threads(1)
        one = m.matvec(x).copy()
    finally:
        set_threads(0)
    assert np.array_equal(one, m.matvec(x))  # integer sums per block: no order dependence
    err = np.abs(one.astype(np.float64) - w @ x)
    assert np.all(err <= _int11_bound(w, x) * (1 + 1e-4) + 3e-5 * (np.abs(w) @ np.abs(x)) + 1e-6)


def _bf16_bound(w: np.ndarray, xs: np.ndarray) -> np.ndarray:
    """(T, n_out) bound of the AMX path (q1_0_amx.py): each activation and each block scale rounded to bf16 by at
    most 2^-9 of itself, so each product by 2^-8 + 2^-18. It is below _int8_bound (|x_i| <= 127 s_i)."""
    return (2.0 ** -8 + 2.0 ** -18) * np.abs(xs.astype(np.float64)) @ np.abs(w).T


def _int8_bound(w: np.ndarray, xs: np.ndarray) -> np.ndarray:
    """(T, n_out) bound of the int8-activation matmul: each input is rounded by at most s/2, s = max |x| of its
    token's 32 inputs / 127, and meets its weight: sum_i |w_i| s_i / 2 per row (Q1_0: |w_i| = d_b, so
    16 * sum_b d_b * sum_{j in b} s_j; Q2_0: |w_i| = |q_i - 1| d_b)."""
    s = np.abs(xs.astype(np.float64)).reshape(len(xs), -1, 32).max(-1) / 127                  # (T, n_in / 32)
    return 0.5 * np.repeat(s, 32, axis=1) @ np.abs(w).T


@pytest.mark.parametrize("ggml_type", [GGML_Q1_0, GGML_Q2_0], ids=["Q1_0", "Q2_0"])
@pytest.mark.parametrize("n_tok,shape", [(3, (384, 67)), (17, (384, 67)), (40, (384, 67)), (45, (1280, 600))])
def test_int11_mode_prefill_and_rows(int11_path, n_tok, shape, ggml_type):
    """Prefill in the integer mode: float32-exact tables where the CPU has no VNNI; int8 activations on VNNI and
    bf16 on AMX tiles, within the int8 rounding bound (AMX also within its own, tighter one). Token counts around
    the register tiles (6 tokens on AVX-512 VNNI, 3 on AVX-VNNI, 32 on AMX), rows not a multiple of 32, inputs not a multiple of the AMX
    kernel's 256-input passes, several row panels and tiles."""
    n_in, n_out = shape
    raw, w, rng = _case(n_in, n_out, seed=9, ggml_type=ggml_type)
    m = prepare_matrix(ggml_type, raw, n_in, n_out, q1_decode="int11")
    # a cap runs the best prefill not wider than it: avx512bw (no prefill of its own) the 256-bit VNNI one
    want = {"avx512bw": "avxvnni" if dispatch.supported("avxvnni") else "portable"}.get(int11_path, int11_path)
    assert m.prefill_path == (want if want in ("amx", "avx512vnni", "avxvnni") else "portable")
    xs = rng.standard_normal((n_tok, n_in)).astype(np.float32)
    xs[:, 128:256] *= 30  # two blocks much larger than the rest: scales are per token and block
    err = np.abs(m.matmul(xs).astype(np.float64) - xs @ w.T)
    mag = np.abs(xs) @ np.abs(w).T
    if m.prefill_path == "portable":
        assert np.all(err <= 3e-5 * mag + 1e-6)
    else:
        bound = _int8_bound(w, xs)
        assert np.all(bound < 0.05 * mag)  # tight enough that a wrong sign or scale would exceed it
        assert np.all(err <= bound * (1 + 1e-4) + 3e-5 * mag + 1e-6), f"worst err/bound {(err / bound).max():.3g}"
        if m.prefill_path == "amx":
            own = _bf16_bound(w, xs)
            assert np.all(err <= own * (1 + 1e-4) + 3e-5 * mag + 1e-6), f"worst err/bf16 bound {(err / own).max():.3g}"
        assert err.max() > 1e-4  # really the int8 / bf16 path
    for i in (0, 33, n_out - 1):
        assert np.array_equal(m.row(i), w[i].astype(np.float32))


def test_tables_hold_rounded_group_sums():
    x = np.random.default_rng(1).standard_normal(256).astype(np.float32)
    tab = np.empty((2, 16, 4, 16), np.uint8)
    s = np.empty(2, np.float32)
    q1_0_simd.build_tables(x, tab, s)
    q = tab[:, :, :2].astype(np.int64) + 256 * tab[:, :, 2:].astype(np.int64) - 1024  # (2, 16, 2, 16)
    signs = np.array([[1 if (m >> i) & 1 else -1 for i in range(4)] for m in range(16)])  # (16 patterns, 4)
    groups = x.astype(np.float64).reshape(2, 16, 2, 4)  # (block, byte, nibble, input)
    exact = np.einsum("bkhi,mi->bkhm", groups, signs) / s[:, None, None, None]
    assert np.all(np.abs(q - exact) <= 0.5 + 1e-4)
    assert np.abs(q).max() == 1023  # the largest group uses the full range


def test_unknown_mode_and_fallback(monkeypatch):
    raw, w, _ = _case(128, 3, seed=2)
    from generator.kernels import KernelFormatError
    with pytest.raises(KernelFormatError):
        prepare_matrix(GGML_Q1_0, raw, 128, 3, q1_decode="int4")
    monkeypatch.setenv("RAGBIT_KERNEL", "portable")  # no integer-table path: the float kernel serves int11
    m = prepare_matrix(GGML_Q1_0, raw, 128, 3, q1_decode="int11")
    assert (m.decode, m.path) == ("float", "portable")
    assert not q1_0_simd.available()
    x = np.arange(128, dtype=np.float32) / 128
    np.testing.assert_allclose(m.matvec(x), w @ x, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("ggml_type", [GGML_Q1_0, GGML_Q2_0], ids=["Q1_0", "Q2_0"])
def test_every_width_gives_the_same_bits(monkeypatch, ggml_type):
    """The widths only change how many rows one instruction serves: the integer block sums, and so the float
    results, must be identical. Shapes with a partial last tile and a partial 64-row chunk."""
    from generator.kernels import dispatch

    runnable = [p for p in dispatch.IMPLEMENTED["q1_decode_int11"] if dispatch.supported(p)]
    if len(runnable) < 2:
        pytest.skip(f"this CPU runs only {runnable} of the integer-table paths: nothing to compare")
    for n_in, n_out in [(384, 67), (256, 1100)]:
        raw, _, rng = _case(n_in, n_out, seed=n_out, ggml_type=ggml_type)
        x = rng.standard_normal(n_in).astype(np.float32)
        outs = []
        for path in runnable:
            monkeypatch.setenv("RAGBIT_KERNEL", path)
            m = prepare_matrix(ggml_type, raw, n_in, n_out, q1_decode="int11")
            assert m.path == path
            outs.append(m.matvec(x).copy())
        assert all(np.array_equal(outs[0], o) for o in outs[1:])


def test_table_cache_follows_inputs_changed_in_place(int11_path):
    """Decode reuses its input buffers in place and alternates input sizes (n_embd, n_ff): the per-size table
    cache must rebuild whenever the contents change (even one value) and never mix sizes up."""
    raw_a, w_a, rng = _case(256, 70, seed=11)
    raw_b, w_b, _ = _case(640, 70, seed=12)
    a = prepare_matrix(GGML_Q1_0, raw_a, 256, 70, q1_decode="int11")
    b = prepare_matrix(GGML_Q1_0, raw_b, 640, 70, q1_decode="int11")
    xa, xb = rng.standard_normal(256).astype(np.float32), rng.standard_normal(640).astype(np.float32)
    for step in range(4):
        xa[step] += 30.0                    # the same buffers, changed in place
        xb[-1 - step] -= 30.0
        for m, w, x in ((a, w_a, xa), (b, w_b, xb), (a, w_a, xa)):
            got = m.matvec(x)
            tab, s = np.empty((x.size // 128, 16, 4, 16), np.uint8), np.empty(x.size // 128, np.float32)
            q1_0_simd.build_tables(x, tab, s)                        # tables built afresh, outside the cache
            fresh = np.empty(70, np.float32)
            m._int11(m.bits_t, m.scales, tab, s, fresh)
            assert np.array_equal(got, fresh)
            err = np.abs(got.astype(np.float64) - w @ x)
            assert np.all(err <= _int11_bound(w, x) * (1 + 1e-4) + 3e-5 * (np.abs(w) @ np.abs(x)) + 1e-6)


def test_avx_vnni_kernels_build_for_a_cpu_without_avx512():
    """The avxvnni path is for CPUs with AVX-VNNI and no AVX-512 (Intel cores from Alder Lake on), which the
    test machine may not be: its kernels are compiled here for such a CPU (LLVM's alderlake) and must use the
    VEX-encoded 256-bit vpdpbusd and no 512-bit register (an EVEX or zmm instruction would die there with SIGILL)."""
    import re

    import llvmlite.binding as llvm
    from llvmlite import ir

    from generator.kernels import q1_0_vnni

    llvm.initialize_native_target()
    llvm.initialize_native_asmprinter()
    module = ir.Module("avxvnni")
    module.triple = "x86_64-unknown-linux-gnu"
    for wbits in (1, 2):
        for fn in (q1_0_vnni._define_dot(module, wbits, 8), q1_0_vnni._define_expand(module, wbits)):
            fn.linkage = "external"                      # kept by codegen without a caller
    q8 = q1_0_vnni._define_quantize(module)              # the activations' int8 form, on the same CPUs
    q8.linkage = "external"
    parsed = llvm.parse_assembly(str(module))
    parsed.verify()
    machine = llvm.Target.from_triple(module.triple).create_target_machine(cpu="alderlake", opt=2)
    asm = machine.emit_assembly(parsed)
    dots = [line for line in asm.splitlines() if "vpdpbusd" in line]
    assert len(dots) >= 2 * 2 * 3                        # both formats: 2 row vectors x 3 tokens, unrolled
    assert all(re.search(r"\{vex\}\s*vpdpbusd\s+%ymm", line) for line in dots), dots[:3]
    assert "zmm" not in asm


def test_activations_quantize_per_32_inputs():
    """The VNNI prefill's int8 activations (q1_0_vnni.quantize_rows, LLVM vector IR) against numpy: per token and
    32 inputs s = max|x| / 127, q = x / s rounded, and the sum of q (llama.cpp's Q8_0, but ties round half to even
    as np.round does, where llama.cpp's roundf rounds them away from zero); a run of zeros gives s = 0, q = 0."""
    from generator.kernels import q1_0_vnni
    rng = np.random.default_rng(3)
    x = rng.standard_normal((7, 256), dtype=np.float32) * np.float32(3.0)
    x[1, 32:64] = 0.0                                        # a run of zeros
    x[2, :32] = 0.0
    x[2, :7] = [127.0, 0.5, 1.5, 2.5, -0.5, -1.5, -2.5]     # max 127: s = 1, so x / s ties at n + 0.5
    x[3] *= np.float32(1e-30)                                # tiny, still normal numbers of scale
    xq = np.full((8, 256), 99, np.int8)
    sx = np.full((8, 8), -1.0, np.float32)
    qx = np.full((8, 8), -1, np.int32)
    q1_0_vnni.quantize_rows(x, xq[:7], sx[:7], qx[:7])
    runs = x.reshape(7, 8, 32)
    amax = np.abs(runs).max(axis=2)
    s = amax / np.float32(127.0)
    with np.errstate(divide="ignore"):
        inv = np.where(amax > 0, np.float32(1.0) / s, np.float32(0.0)).astype(np.float32)
    q = np.round(runs * inv[:, :, None]).astype(np.int32)
    assert np.array_equal(sx[:7], s) and np.array_equal(xq[:7].reshape(7, 8, 32), q.astype(np.int8))
    assert np.array_equal(qx[:7], q.sum(axis=2))
    assert (xq[7] == 99).all() and (sx[7] == -1).all()       # the padding row is the caller's
    assert sx[2, 0] == 1.0 and xq[2, 1:7].tolist() == [0, 2, 2, 0, -2, -2]   # half to even, not away from zero
    assert sx[1, 1] == 0.0 and (xq[1, 32:64] == 0).all() and (np.abs(xq[:7]) <= 127).all()
