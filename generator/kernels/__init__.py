"""Weight-matrix kernels for GGUF tensors (Q1_0 1-bit, Q2_0 2-bit, Q8_0, F16, BF16, F32) in numba.

Public API: type ids, `dequantize` / `quantize` (plain numpy, for tests and model writers),
`prepare_matrix` -> `QuantMatrix` (matvec for decode, matmul for prefill, row for embeddings),
and `set_threads`.
"""

import os

# numba's OpenMP threads spin while they wait for the next parallel region. Decode runs ~200 short
# regions per token; when the cores are shared with other busy processes, spinning threads starve the
# one that has work, and a 2-thread matvec measured 20 ms instead of 0.3 ms. Passive waiting costs a
# few microseconds per region and removes that cliff. Set before numba loads its OpenMP runtime; an
# explicit user setting wins.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

from . import dispatch
from .formats import (
    GGML_BF16,
    GGML_F16,
    GGML_F32,
    GGML_Q1_0,
    GGML_Q2_0,
    GGML_Q8_0,
    KernelFormatError,
    dequantize,
    quantize,
    tensor_nbytes,
)
from .matrix import QuantMatrix, prepare_matrix
from .pool import set_threads

__all__ = [
    "GGML_F32", "GGML_F16", "GGML_Q8_0", "GGML_BF16", "GGML_Q1_0", "GGML_Q2_0",
    "KernelFormatError", "QuantMatrix", "dequantize", "quantize", "prepare_matrix", "set_threads",
    "tensor_nbytes", "dispatch",
]
