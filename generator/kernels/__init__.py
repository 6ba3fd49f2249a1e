"""Weight-matrix kernels for GGUF tensors (Q1_0 1-bit, Q8_0, F16, BF16, F32) in numba.

Public API: type ids, `dequantize` / `quantize` (plain numpy, for tests and model writers),
`prepare_matrix` -> `QuantMatrix` (matvec for decode, matmul for prefill, row for embeddings),
and `set_threads`.
"""

from .formats import (
    GGML_BF16,
    GGML_F16,
    GGML_F32,
    GGML_Q1_0,
    GGML_Q8_0,
    KernelFormatError,
    dequantize,
    quantize,
    tensor_nbytes,
)
from .matrix import QuantMatrix, prepare_matrix, set_threads

__all__ = [
    "GGML_F32", "GGML_F16", "GGML_Q8_0", "GGML_BF16", "GGML_Q1_0",
    "KernelFormatError", "QuantMatrix", "dequantize", "quantize", "prepare_matrix", "set_threads",
    "tensor_nbytes",
]
