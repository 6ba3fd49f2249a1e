"""Q2_0 (GGUF type 42, PrismML's Ternary-Bonsai): layout, loading and every kernel path against float64
dequantize(W) @ x (generator/kernels/q2_0.py explains how the Q1_0 kernels serve it).

Weights here are random payload bytes, so all four codes (-1, 0, +1, +2) occur (quantize() never makes +2).
Tolerances, per output: float paths 3e-5 * (|W| @ |x|) (float32 summation); int11 decode 16 * sum_b |d_b| * s_b
with s_b = max over the block's input pairs of 2 (|x_a| + |x_b|) / 1023 (32 table entries per block, each rounded
by <= s_b / 2); int8 prefill (VNNI) sum_i |w_i| * s_i / 2 with s_i = max |x| of input i's 32 inputs / 127.
Each test also checks its bound is < 1-5% of |W| @ |x|, so a wrong sign, code or scale would fail it.
"""

from __future__ import annotations

import numpy as np
import pytest

from generator.gguf_file import GGUFError, GGUFFile
from generator.kernels import GGML_Q1_0, GGML_Q2_0, KernelFormatError, dequantize, dispatch, prepare_matrix, quantize
from generator.kernels.formats import tensor_nbytes
from generator.model import Qwen3Model
from generator.synthetic import write_synthetic_gguf

SHAPES = [(192, 67), (640, 301), (256, 1100)]  # partial row tiles and 64-row chunks, 3..10 blocks per row


def _case(n_in: int, n_out: int, seed: int):
    rng = np.random.default_rng(seed)
    blocks = np.zeros((n_out, n_in // 64, 18), np.uint8)
    blocks[:, :, :2] = (rng.uniform(0.5, 1.5, (n_out, n_in // 64)) / 8).astype(np.float16).view(np.uint8).reshape(
        n_out, n_in // 64, 2)
    blocks[:, :, 2:] = rng.integers(0, 256, (n_out, n_in // 64, 16), dtype=np.uint8)
    raw = blocks.reshape(-1)
    return raw, dequantize(GGML_Q2_0, raw, n_in, n_out).astype(np.float64), rng


def test_layout_is_llama_cpp_q2_0():
    """Element j: bits 2*(j%4) of byte j//4, value (q - 1) * d (llama.cpp's dequantize_row_q2_0)."""
    block = np.zeros(18, np.uint8)
    block[:2] = np.array([0.5], np.float16).view(np.uint8)
    block[2] = 0b11_10_01_00          # elements 0..3: codes 0, 1, 2, 3
    block[3] = 0b00_01_10_11          # elements 4..7: codes 3, 2, 1, 0
    w = dequantize(GGML_Q2_0, block, 64, 1)[0]
    assert w[:8].tolist() == [-0.5, 0.0, 0.5, 1.0, 1.0, 0.5, 0.0, -0.5]
    assert np.all(w[8:] == -0.5)
    # quantize follows llama.cpp's quantize_row_q2_0_ref: d = max |w|, q = round(w / d) + 1
    x = np.linspace(-1, 1, 64, dtype=np.float32).reshape(1, 64)
    back = dequantize(GGML_Q2_0, quantize(GGML_Q2_0, x), 64, 1)
    assert np.array_equal(back, np.round(x) * np.float32(1.0))
    assert tensor_nbytes(GGML_Q2_0, 128, 3) == 3 * 2 * 18


@pytest.mark.parametrize("shape", SHAPES)
def test_float_mode_is_exact(shape):
    n_in, n_out = shape
    raw, w, rng = _case(n_in, n_out, seed=n_out)
    m = prepare_matrix(GGML_Q2_0, raw, n_in, n_out, q1_decode="float")
    assert m.kernel_paths == {"decode": "portable (float)", "prefill": "portable"}
    x = rng.standard_normal(n_in).astype(np.float32)
    assert np.all(np.abs(m.matvec(x) - w @ x) <= 3e-5 * (np.abs(w) @ np.abs(x)) + 1e-6)
    for n_tok in (3, 17, 40):   # 16- and 64-token table tiles
        xs = rng.standard_normal((n_tok, n_in)).astype(np.float32)
        assert np.all(np.abs(m.matmul(xs) - xs @ w.T) <= 3e-5 * (np.abs(xs) @ np.abs(w).T) + 1e-6)
    for i in (0, n_out // 2, n_out - 1):
        assert np.array_equal(m.row(i), w[i].astype(np.float32))


def _int11_bound(w: np.ndarray, x: np.ndarray) -> np.ndarray:
    n_out, n_in = w.shape
    d = np.abs(w).reshape(n_out, n_in // 64, 64).max(-1)                                   # >= |d_b| where used
    s = 2 * np.abs(x.astype(np.float64)).reshape(n_in // 64, 32, 2).sum(-1).max(-1) / 1023  # (n_blocks,)
    return 16 * d @ s


@pytest.mark.parametrize("shape", SHAPES)
def test_int11_decode_within_its_rounding_bound(shape, int11_path):
    n_in, n_out = shape
    raw, w, rng = _case(n_in, n_out, seed=n_out)
    m = prepare_matrix(GGML_Q2_0, raw, n_in, n_out, q1_decode="int11")
    assert (m.decode, m.path) == ("int11", dispatch.choose("q2_decode_int11"))
    for scale in (1.0, 1e-3, 50.0):
        x = (rng.standard_normal(n_in) * scale).astype(np.float32)
        x[:64] *= 10                                              # one block much larger than the rest
        mag = np.abs(w) @ np.abs(x)
        bound = _int11_bound(w, x)
        assert np.all(bound < 0.01 * mag)
        err = np.abs(m.matvec(x).astype(np.float64) - w @ x)
        assert np.all(err <= bound * (1 + 1e-4) + 3e-5 * mag + 1e-6), f"worst err/bound {(err / bound).max():.3g}"
        assert err.max() > 0                                      # really the integer path
    assert np.array_equal(m.matvec(np.zeros(n_in, np.float32)), np.zeros(n_out, np.float32))
    for i in (0, n_out - 1):
        assert np.array_equal(m.row(i), w[i].astype(np.float32))


def test_every_int11_width_gives_the_same_bits(monkeypatch):
    runnable = [p for p in dispatch.IMPLEMENTED["q2_decode_int11"] if dispatch.supported(p)]
    if len(runnable) < 2:
        pytest.skip(f"this CPU runs only {runnable} of the integer-table paths: nothing to compare")
    raw, _, rng = _case(256, 1100, seed=3)
    x = rng.standard_normal(256).astype(np.float32)
    outs = []
    for path in runnable:
        monkeypatch.setenv("RAGBIT_KERNEL", path)
        outs.append(prepare_matrix(GGML_Q2_0, raw, 256, 1100, q1_decode="int11").matvec(x).copy())
    assert all(np.array_equal(outs[0], o) for o in outs[1:])


@pytest.mark.parametrize("n_tok", [3, 17, 40])
def test_int11_mode_prefill(int11_path, n_tok):
    """Prefill in the integer mode: int8 activations on VNNI (within their rounding bound), float32 tables
    elsewhere. Token counts around the 6-token register tile; rows not a multiple of 32."""
    n_in, n_out = 192, 67
    raw, w, rng = _case(n_in, n_out, seed=9)
    m = prepare_matrix(GGML_Q2_0, raw, n_in, n_out, q1_decode="int11")
    assert m.prefill_path == ("avx512vnni" if int11_path == "avx512vnni" else "portable")
    xs = rng.standard_normal((n_tok, n_in)).astype(np.float32)
    xs[:, 64:128] *= 30
    err = np.abs(m.matmul(xs).astype(np.float64) - xs @ w.T)
    mag = np.abs(xs) @ np.abs(w).T
    if m.prefill_path == "portable":
        assert np.all(err <= 3e-5 * mag + 1e-6)
    else:
        s = np.abs(xs.astype(np.float64)).reshape(n_tok, n_in // 32, 32).max(-1) / 127     # (T, n_in / 32)
        bound = 0.5 * np.repeat(s, 32, axis=1) @ np.abs(w).T
        assert np.all(bound < 0.05 * mag)
        assert np.all(err <= bound * (1 + 1e-4) + 3e-5 * mag + 1e-6), f"worst err/bound {(err / bound).max():.3g}"
        assert err.max() > 1e-4                                     # really the int8 path


def test_bad_sizes_are_one_clear_error():
    raw, _, _ = _case(128, 3, seed=1)
    with pytest.raises(KernelFormatError, match="Q2_0 matrix 3x128 needs 108 bytes, got 90"):
        prepare_matrix(GGML_Q2_0, raw[:90], 128, 3)
    with pytest.raises(KernelFormatError, match="multiple of 64"):
        prepare_matrix(GGML_Q2_0, raw, 96, 3)


def test_ternary_model_file_loads_and_bad_files_fail_in_one_line(tmp_path):
    path = write_synthetic_gguf(tmp_path / "t.gguf", "tiny-tied", None, seed=1, weight_type="Q2_0", n_vocab=256)
    gf = GGUFFile(path)
    assert gf.tensor("blk.0.ffn_down.weight").type_name == "Q2_0"
    model = Qwen3Model.load(path, n_ctx=32, q1_decode="int11")
    assert np.isfinite(model.prefill([1, 2, 3])).all()
    # a Q2_0 row length that is not a multiple of 64, and a truncated file: GGUFError, one line
    data = path.read_bytes()
    name = b"blk.0.ffn_down.weight"
    at = data.index(name) + len(name) + 4                            # after the name and n_dims: ne0 (u64)
    assert int.from_bytes(data[at:at + 8], "little") == 256
    bad = tmp_path / "bad.gguf"
    bad.write_bytes(data[:at] + (250).to_bytes(8, "little") + data[at + 8:])
    with pytest.raises(GGUFError, match="not a multiple of 64") as info:
        GGUFFile(bad)
    assert "\n" not in str(info.value)
    bad.write_bytes(data[: len(data) - 1000])
    with pytest.raises(GGUFError, match="truncated") as info:
        GGUFFile(bad)
    assert "\n" not in str(info.value)


@pytest.mark.parametrize("ggml_type", [GGML_Q1_0, GGML_Q2_0])
def test_small_matrices_run_on_one_thread_with_the_same_bits(ggml_type, monkeypatch, int11_path):
    """int11 decode of matrices under matrix.SERIAL_BELOW_BYTES runs the one-thread kernel (no wake-up of the
    second thread); the result is the threaded kernel's, bit for bit (each row's block sums run in one order)."""
    from generator.kernels import matrix, q1_0_simd

    n_in, n_out = 256, 1100
    raw = (_case(n_in, n_out, seed=4)[0] if ggml_type == GGML_Q2_0
           else quantize(GGML_Q1_0, np.random.default_rng(4).standard_normal((n_out, n_in)).astype(np.float32)))
    m = prepare_matrix(ggml_type, raw, n_in, n_out, q1_decode="int11")
    if m.decode != "int11":
        pytest.skip("no integer-table decode on this path")
    assert m.nbytes < matrix.SERIAL_BELOW_BYTES and m._int11_1t is q1_0_simd.MATVEC_1T[m.path]
    x = np.random.default_rng(5).standard_normal(n_in).astype(np.float32)
    one = m.matvec(x).copy()
    monkeypatch.setattr(matrix, "SERIAL_BELOW_BYTES", 0)
    assert np.array_equal(one, m.matvec(x))
