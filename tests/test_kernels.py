"""Kernels against plain-numpy float64 references, for all five GGUF types.

Tolerance for products: |kernel - ref| <= 3e-5 * (|W| @ |x|) + 1e-6 elementwise, i.e. a float32-rounding
bound scaled by the magnitudes summed (float32 sums of <= 640 terms stay well inside it; a single wrong
sign or scale is off by O(|W| @ |x|) and fails).
"""

from __future__ import annotations

import struct
from pathlib import Path

import numpy as np
import pytest

from generator.kernels import (
    GGML_BF16,
    GGML_F16,
    GGML_F32,
    GGML_Q1_0,
    GGML_Q8_0,
    KernelFormatError,
    dequantize,
    prepare_matrix,
    quantize,
    set_threads,
    tensor_nbytes,
)

FIXTURE = Path(__file__).parent / "fixtures" / "reference" / "tiny-tied-q1_0.gguf"
REAL_Q1_0 = Path(__file__).parent / "fixtures" / "q1_0_blk0_attn_q.npy"  # raw bytes of one tensor of FIXTURE
ALL_TYPES = [GGML_F32, GGML_F16, GGML_BF16, GGML_Q8_0, GGML_Q1_0]
# (n_in, n_out): n_in must be a whole number of blocks; n_out deliberately odd / prime
SHAPES = {GGML_F32: (50, 37), GGML_F16: (50, 37), GGML_BF16: (50, 37), GGML_Q8_0: (96, 41), GGML_Q1_0: (384, 67)}
SHAPES_BIG = {GGML_Q1_0: (640, 301), GGML_Q8_0: (640, 301)}


def _weights(n_out: int, n_in: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return (rng.standard_normal((n_out, n_in)) * rng.uniform(0.5, 1.5, (n_out, 1))).astype(np.float32)


def _assert_close(got: np.ndarray, ref: np.ndarray, bound: np.ndarray) -> None:
    err = np.abs(got.astype(np.float64) - ref)
    tol = 3e-5 * bound + 1e-6
    assert got.dtype == np.float32
    assert np.all(err <= tol), f"max err {err.max():.3g}, worst err/tol {(err / tol).max():.3g}"


def _cases():
    for t in ALL_TYPES:
        yield t, SHAPES[t]
        if t in SHAPES_BIG:
            yield t, SHAPES_BIG[t]


@pytest.mark.parametrize("ggml_type,shape", list(_cases()))
def test_matvec_matmul_row_match_dequantized_reference(ggml_type, shape):
    n_in, n_out = shape
    raw = quantize(ggml_type, _weights(n_out, n_in, seed=ggml_type))
    assert raw.dtype == np.uint8 and raw.size == tensor_nbytes(ggml_type, n_in, n_out)
    w = dequantize(ggml_type, raw, n_in, n_out).astype(np.float64)  # (n_out, n_in)
    m = prepare_matrix(ggml_type, raw, n_in, n_out)
    assert (m.n_in, m.n_out, m.ggml_type, m.nbytes) == (n_in, n_out, ggml_type, raw.size)
    rng = np.random.default_rng(7)

    x = rng.standard_normal(n_in).astype(np.float32)
    _assert_close(m.matvec(x), w @ x, np.abs(w) @ np.abs(x))
    out = np.full(n_out, np.nan, dtype=np.float32)
    assert m.matvec(x, out=out) is out
    _assert_close(out, w @ x, np.abs(w) @ np.abs(x))

    for n_tok in (1, 3, 17):
        xs = rng.standard_normal((n_tok, n_in)).astype(np.float32)
        got = m.matmul(xs)
        assert got.shape == (n_tok, n_out)
        _assert_close(got, xs @ w.T, np.abs(xs) @ np.abs(w).T)

    for i in (0, n_out // 2, n_out - 1):
        assert np.array_equal(m.row(i), w[i].astype(np.float32))
    with pytest.raises(IndexError):
        m.row(n_out)


@pytest.mark.parametrize("ggml_type", ALL_TYPES)
def test_results_do_not_depend_on_thread_count(ggml_type):
    n_in, n_out = SHAPES_BIG.get(ggml_type, SHAPES[ggml_type])
    m = prepare_matrix(ggml_type, quantize(ggml_type, _weights(n_out, n_in, 3)), n_in, n_out)
    xs = np.random.default_rng(4).standard_normal((5, n_in)).astype(np.float32)
    try:
        set_threads(1)
        one = m.matvec(xs[0]), m.matmul(xs)
    finally:
        set_threads(0)
    two = m.matvec(xs[0]), m.matmul(xs)
    np.testing.assert_allclose(one[0], two[0], rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(one[1], two[1], rtol=1e-5, atol=1e-5)


def test_round_trip_q1_0_keeps_signs_and_block_mean():
    w = _weights(9, 256, 11)
    got = dequantize(GGML_Q1_0, quantize(GGML_Q1_0, w), 256, 9)
    assert np.array_equal(got >= 0, w >= 0)
    blocks = np.abs(w).reshape(9, 2, 128)
    d = np.abs(got).reshape(9, 2, 128)
    assert np.all(d == d[:, :, :1])  # one magnitude per block
    np.testing.assert_allclose(d[:, :, 0], blocks.mean(-1), rtol=1e-3)  # fp16 scale rounding
    raw = quantize(GGML_Q1_0, w)
    assert np.array_equal(quantize(GGML_Q1_0, dequantize(GGML_Q1_0, raw, 256, 9)), raw)  # idempotent


def test_round_trip_q8_0_and_16_bit_types_within_their_rounding():
    w = _weights(7, 64, 12)
    q8 = dequantize(GGML_Q8_0, quantize(GGML_Q8_0, w), 64, 7)
    step = np.abs(w).reshape(7, 2, 32).max(-1, keepdims=True) / 127
    assert np.all(np.abs(q8 - w).reshape(7, 2, 32) <= 0.5 * step * 1.01 + 1e-7)
    assert np.array_equal(dequantize(GGML_F32, quantize(GGML_F32, w), 64, 7), w)
    assert np.array_equal(dequantize(GGML_F16, quantize(GGML_F16, w), 64, 7), w.astype(np.float16).astype(np.float32))
    bf = dequantize(GGML_BF16, quantize(GGML_BF16, w), 64, 7)
    assert np.all(np.abs(bf - w) <= np.abs(w) * 2.0**-8)
    assert not np.array_equal(bf, w)  # really rounded to 8 mantissa bits


def test_bad_inputs_raise_format_errors():
    with pytest.raises(KernelFormatError):
        prepare_matrix(GGML_Q1_0, np.zeros(17, np.uint8), 128, 1)  # 18 bytes needed
    with pytest.raises(KernelFormatError):
        prepare_matrix(GGML_Q1_0, np.zeros(18, np.uint8), 100, 1)  # n_in not whole blocks
    with pytest.raises(KernelFormatError):
        prepare_matrix(3, np.zeros(18, np.uint8), 32, 1)  # Q4_1: unsupported
    m = prepare_matrix(GGML_Q1_0, np.zeros(36, np.uint8), 128, 2)
    with pytest.raises(KernelFormatError):
        m.matvec(np.zeros(127, np.float32))
    with pytest.raises(KernelFormatError):
        m.matvec(np.zeros(128, np.float32), out=np.zeros(2, np.float64))  # wrong out dtype
    with pytest.raises(KernelFormatError):
        m.matmul(np.zeros((3, 128), np.float32), out=np.zeros((2, 3), np.float32))  # wrong out shape


def _by_hand_q1_0_block(block: bytes) -> np.ndarray:
    """The format description, literally: fp16 LE scale, then weight j = +d if bit j%8 of byte j//8."""
    (d,) = struct.unpack("<e", block[:2])
    return np.array([d if (block[2 + j // 8] >> (j % 8)) & 1 else -d for j in range(128)], dtype=np.float32)


def test_q1_0_matches_bits_of_a_real_bonsai_layout_tensor():
    """blk.0.attn_q.weight (Q1_0, [256, 256]) of the reference model, bytes saved in REAL_Q1_0."""
    raw = np.load(REAL_Q1_0)
    n_in, n_out = 256, 256
    w = dequantize(GGML_Q1_0, raw, n_in, n_out)
    nb = n_in // 128
    for r, b in [(0, 0), (5, 1), (n_out - 1, nb - 1)]:
        off = (r * nb + b) * 18
        assert np.array_equal(w[r, b * 128:(b + 1) * 128], _by_hand_q1_0_block(raw[off:off + 18].tobytes()))
    assert len(np.unique(np.abs(w[3, :128]))) == 1 and w[3, 0] != 0
    m = prepare_matrix(GGML_Q1_0, raw, n_in, n_out)
    x = np.random.default_rng(0).standard_normal(n_in).astype(np.float32)
    w64 = w.astype(np.float64)
    _assert_close(m.matvec(x), w64 @ x, np.abs(w64) @ np.abs(x))
    assert np.array_equal(m.row(n_out - 1), w[n_out - 1])


@pytest.mark.slow
def test_saved_q1_0_bytes_are_those_in_the_gguf_file():
    """GGUFReader takes ~40 s on this file (151,936-token vocabulary), hence slow."""
    gguf = pytest.importorskip("gguf")
    t = next(t for t in gguf.GGUFReader(str(FIXTURE)).tensors if t.name == "blk.0.attn_q.weight")
    assert int(t.tensor_type) == GGML_Q1_0 and [int(v) for v in t.shape] == [256, 256]
    assert np.array_equal(np.asarray(t.data).reshape(-1), np.load(REAL_Q1_0))


def test_q1_0_matmul_over_several_token_tiles_and_threads():
    """More tokens than one table tile (64) and a ragged last tile; rows split across threads."""
    n_in, n_out = 256, 131
    raw = quantize(GGML_Q1_0, _weights(n_out, n_in, 21))
    w = dequantize(GGML_Q1_0, raw, n_in, n_out).astype(np.float64)
    m = prepare_matrix(GGML_Q1_0, raw, n_in, n_out)
    xs = np.random.default_rng(22).standard_normal((150, n_in)).astype(np.float32)
    _assert_close(m.matmul(xs), xs @ w.T, np.abs(xs) @ np.abs(w).T)


def test_q1_0_matvec_sees_in_place_changes_of_a_reused_input_buffer():
    """Decode tables are cached per input; a caller reusing one x buffer must still get fresh results."""
    n_in, n_out = 256, 40
    raw = quantize(GGML_Q1_0, _weights(n_out, n_in, 31))
    w = dequantize(GGML_Q1_0, raw, n_in, n_out).astype(np.float64)
    a = prepare_matrix(GGML_Q1_0, raw, n_in, n_out)
    b = prepare_matrix(GGML_Q1_0, quantize(GGML_Q1_0, _weights(n_out, n_in, 32)), n_in, n_out)
    x = np.random.default_rng(33).standard_normal(n_in).astype(np.float32)
    for _ in range(3):
        b.matvec(x)  # same x: shares the tables
        _assert_close(a.matvec(x), w @ x, np.abs(w) @ np.abs(x))
        x *= -0.5  # same buffer, new contents
        x[0] += 1.0


@pytest.mark.parametrize("types", [(GGML_Q1_0, GGML_Q1_0, GGML_Q1_0), (GGML_Q1_0, GGML_Q8_0, GGML_F16)],
                         ids=["same-type", "mixed-types"])
def test_stacked_matrices_equal_their_parts_side_by_side(types):
    """prepare_stacked (q/k/v and gate/up as one product): same-typed parts are concatenated into one
    matrix, mixed types fall back to StackedMatrix; either way the output is the parts' rows in order."""
    from generator.kernels.matrix import StackedMatrix, prepare_stacked

    n_in, n_outs = 384, (67, 33, 40)
    raws = [quantize(t, _weights(n, n_in, seed=10 + i)) for i, (t, n) in enumerate(zip(types, n_outs))]
    w = np.concatenate([dequantize(t, r, n_in, n) for t, r, n in zip(types, raws, n_outs)]).astype(np.float64)
    m = prepare_stacked(list(zip(types, raws, n_outs)), n_in)
    assert isinstance(m, StackedMatrix) == (len(set(types)) > 1)
    assert m.n_out == sum(n_outs)
    rng = np.random.default_rng(5)
    x = rng.standard_normal(n_in).astype(np.float32)
    _assert_close(m.matvec(x), w @ x, np.abs(w) @ np.abs(x))
    xs = rng.standard_normal((17, n_in)).astype(np.float32)
    _assert_close(m.matmul(xs), xs @ w.T, np.abs(xs) @ np.abs(w).T)
    for i in (0, 66, 67, 100, 139):
        assert np.array_equal(m.row(i), w[i].astype(np.float32))


@pytest.mark.parametrize("ggml_type", ALL_TYPES)
def test_packed_rows_decode_each_row_exactly_without_copying_the_tensor(ggml_type):
    """PackedRows (untied token embeddings, e.g. Bonsai-8B's 87.5 MB token_embd) reads rows straight from the
    raw bytes: every row equals the dequantized tensor's row bit for bit, and the tensor is not copied."""
    from generator.kernels.matrix import PackedRows

    n_in, n_out = SHAPES[ggml_type]
    raw = quantize(ggml_type, _weights(n_out, n_in, seed=3))
    rows = PackedRows(ggml_type, raw, n_in, n_out)
    assert np.shares_memory(rows.raw, raw)
    w = dequantize(ggml_type, raw, n_in, n_out)
    out = np.empty(n_in, np.float32)
    for i in (0, 1, n_out // 2, n_out - 1):
        assert np.array_equal(rows.row(i), w[i])
        assert rows.row(i, out) is out and np.array_equal(out, w[i])
    with pytest.raises(IndexError):
        rows.row(n_out)


def test_untied_model_keeps_its_token_embedding_in_the_file_map():
    """An untied model's token_embd is only looked up by row, so the loader leaves it zero-copy (PackedRows);
    a tied one is also the LM head and is a full QuantMatrix."""
    from generator.kernels.matrix import PackedRows
    from generator.model import Qwen3Model

    untied = Qwen3Model.load(FIXTURE.with_name("tiny-untied-yarn-q1_0.gguf"), n_ctx=64)
    assert isinstance(untied.tok_embd, PackedRows) and untied.lm_head is not untied.tok_embd
    tied = Qwen3Model.load(FIXTURE, n_ctx=64)
    assert not isinstance(tied.tok_embd, PackedRows) and tied.lm_head is tied.tok_embd
