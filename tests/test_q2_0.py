"""Q2_0 (GGUF type 42, PrismML's Ternary-Bonsai): layout, loading and every kernel path against float64
dequantize(W) @ x (generator/kernels/q2_0.py explains how the Q1_0 kernels serve it).

Weights here are random payload bytes, so all four codes (-1, 0, +1, +2) occur (quantize() never makes +2).
Tolerance of the float paths, per output: 3e-5 * (|W| @ |x|) (float32 summation). The integer mode of Q2_0
(int11 decode, int8 prefill on VNNI) is checked beside Q1_0's in test_kernels_simd.py (same tests and bounds,
parametrized by type).
"""

from __future__ import annotations

import numpy as np
import pytest

from generator.gguf_file import GGUFError, GGUFFile
from generator.kernels import GGML_Q1_0, GGML_Q2_0, KernelFormatError, dequantize, dispatch, prepare_matrix, quantize
from generator.kernels.formats import tensor_nbytes
from generator.model import Qwen3Model
from generator.synthetic import write_synthetic_gguf
from test_kernels_simd import _case as simd_case

SHAPES = [(192, 67), (640, 301), (256, 1100)]  # partial row tiles and 64-row chunks, 3..10 blocks per row


def _case(n_in: int, n_out: int, seed: int):
    return simd_case(n_in, n_out, seed, GGML_Q2_0)


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
    raw = simd_case(n_in, n_out, 4, ggml_type)[0]
    m = prepare_matrix(ggml_type, raw, n_in, n_out, q1_decode="int11")
    if m.decode != "int11":
        pytest.skip("no integer-table decode on this path")
    assert m.nbytes < matrix.SERIAL_BELOW_BYTES and m._int11_1t is q1_0_simd.MATVEC_1T[m.path]
    x = np.random.default_rng(5).standard_normal(n_in).astype(np.float32)
    one = m.matvec(x).copy()
    monkeypatch.setattr(matrix, "SERIAL_BELOW_BYTES", 0)
    assert np.array_equal(one, m.matvec(x))
