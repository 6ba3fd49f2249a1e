"""GGUF tensor formats: type ids, byte layouts, and plain-numpy (de)quantization.

WHY plain numpy here: this is the slow, obviously-correct reference that the numba kernels are tested
against, and what test/bench model writers use to make GGUF bytes. Nothing here is on a hot path.

Layouts (a matrix in GGUF order [ne0=n_in, ne1=n_out] is n_out rows of n_in values, row-major):
  F32  (0):  float32 per value
  F16  (1):  IEEE fp16 per value
  BF16 (30): bfloat16 per value (upper half of a float32)
  Q8_0 (8):  blocks of 32 values = 34 bytes: fp16 scale d, 32 int8 q;          value = d * q
  Q1_0 (41): blocks of 128 values = 18 bytes: fp16 scale d, 16 bytes of signs;  value j = +d if bit
             (j % 8) of byte (j // 8) is 1 else -d
  Q2_0 (42): blocks of 64 values = 18 bytes: fp16 scale d, 16 bytes of 2-bit codes; value j = (q - 1) * d,
             q = bits 2*(j % 4) .. 2*(j % 4)+1 of byte (j // 4), so codes 0..3 mean -d, 0, +d, +2d
             (PrismML's Ternary-Bonsai; mainline llama.cpp's GGML_TYPE_Q2_0)
"""

from __future__ import annotations

import numpy as np

from generator.errors import GeneratorError

GGML_F32, GGML_F16, GGML_Q8_0, GGML_BF16, GGML_Q1_0, GGML_Q2_0 = 0, 1, 8, 30, 41, 42

# type -> (values per block, bytes per block)
BLOCK_LAYOUT: dict[int, tuple[int, int]] = {
    GGML_F32: (1, 4),
    GGML_F16: (1, 2),
    GGML_BF16: (1, 2),
    GGML_Q8_0: (32, 34),
    GGML_Q1_0: (128, 18),
    GGML_Q2_0: (64, 18),
}

TYPE_NAMES = {GGML_F32: "F32", GGML_F16: "F16", GGML_BF16: "BF16", GGML_Q8_0: "Q8_0", GGML_Q1_0: "Q1_0", GGML_Q2_0: "Q2_0"}

# Exact 16-bit -> float32 decode tables (256 KB each). numba has no float16, so kernels decode fp16 and
# bf16 with one table lookup; exact for every bit pattern (subnormals, inf, nan included).
F16_TO_F32 = np.arange(65536, dtype=np.uint32).astype(np.uint16).view(np.float16).astype(np.float32)
BF16_TO_F32 = (np.arange(65536, dtype=np.uint32) << 16).view(np.float32)


class KernelFormatError(GeneratorError, ValueError):
    """A tensor's type, shape or byte count does not fit what the kernels support."""


def tensor_nbytes(ggml_type: int, n_in: int, n_out: int) -> int:
    """Bytes of an (n_out, n_in) matrix of this type, after checking n_in fits the block size."""
    if ggml_type not in BLOCK_LAYOUT:
        raise KernelFormatError(f"unsupported GGML type {ggml_type} (supported: {sorted(TYPE_NAMES.values())})")
    per_block, block_bytes = BLOCK_LAYOUT[ggml_type]
    if n_in <= 0 or n_out <= 0 or n_in % per_block:
        raise KernelFormatError(
            f"{TYPE_NAMES[ggml_type]} matrix needs n_in a positive multiple of {per_block}, got n_in={n_in}, n_out={n_out}"
        )
    return n_out * (n_in // per_block) * block_bytes


def check_raw(ggml_type: int, raw: np.ndarray, n_in: int, n_out: int) -> np.ndarray:
    """Return raw as a 1-D uint8 array of exactly the tensor's bytes, or raise KernelFormatError."""
    want = tensor_nbytes(ggml_type, n_in, n_out)
    raw = np.asarray(raw)
    if raw.dtype != np.uint8:
        raw = raw.reshape(-1).view(np.uint8)
    raw = raw.reshape(-1)
    if raw.size != want:
        raise KernelFormatError(
            f"{TYPE_NAMES[ggml_type]} matrix {n_out}x{n_in} needs {want} bytes, got {raw.size}"
        )
    return raw


def split_blocks(ggml_type: int, raw: np.ndarray, n_in: int, n_out: int,
                 f16_bits: bool = False) -> tuple[np.ndarray, np.ndarray]:
    """Split a block-quantized tensor into (scales (n_out, n_blocks), payload (n_out, n_blocks, bytes)).

    The payload is a strided view into raw (no copy); the scales are decoded to float32, or with f16_bits
    kept as their uint16 IEEE-half bit patterns (what kernels that widen them on the fly store).
    """
    per_block, block_bytes = BLOCK_LAYOUT[ggml_type]
    blocks = check_raw(ggml_type, raw, n_in, n_out).reshape(n_out, n_in // per_block, block_bytes)
    d_bits = blocks[:, :, 0].astype(np.uint16) | (blocks[:, :, 1].astype(np.uint16) << 8)
    return (d_bits if f16_bits else F16_TO_F32[d_bits]), blocks[:, :, 2:]


def dequantize(ggml_type: int, raw: np.ndarray, n_in: int, n_out: int) -> np.ndarray:
    """Decode a whole tensor to float32 (n_out, n_in). For tests and small tensors (norms) only."""
    raw = check_raw(ggml_type, raw, n_in, n_out)
    if ggml_type == GGML_F32:
        return raw.view(np.float32).reshape(n_out, n_in).copy()
    if ggml_type == GGML_F16:
        return F16_TO_F32[raw.view(np.uint16)].reshape(n_out, n_in)
    if ggml_type == GGML_BF16:
        return BF16_TO_F32[raw.view(np.uint16)].reshape(n_out, n_in)
    scales, payload = split_blocks(ggml_type, raw, n_in, n_out)
    if ggml_type == GGML_Q8_0:
        q = payload.view(np.int8).astype(np.float32)  # (n_out, nb, 32)
        return (q * scales[:, :, None]).reshape(n_out, n_in)
    if ggml_type == GGML_Q2_0:
        return (q2_codes(payload).astype(np.float32) - 1.0) * np.repeat(scales, 64, axis=1)
    # Q1_0: bit (j % 8) of byte (j // 8) -> little bit order
    bits = np.unpackbits(payload, axis=-1, bitorder="little").astype(np.float32)  # (n_out, nb, 128)
    return ((2.0 * bits - 1.0) * scales[:, :, None]).reshape(n_out, n_in)


def q2_codes(payload: np.ndarray) -> np.ndarray:
    """Q2_0 payload (n_out, nb, 16) uint8 -> codes (n_out, nb * 64) uint8 in 0..3 (element j: bits 2*(j%4) of
    byte j//4)."""
    shifts = np.array([0, 2, 4, 6], dtype=np.uint8)
    codes = (payload[..., None] >> shifts) & 3                   # (n_out, nb, 16, 4)
    return codes.reshape(payload.shape[0], -1)


def _f32_to_f16_bits(v: np.ndarray) -> np.ndarray:
    return np.asarray(v, dtype=np.float32).astype(np.float16).view(np.uint16)


def _pack_blocks(scales: np.ndarray, payload: np.ndarray) -> np.ndarray:
    """(n_out, nb) float scales + (n_out, nb, k) uint8 payload -> 1-D uint8 GGUF bytes."""
    d = _f32_to_f16_bits(scales).astype(np.uint16)
    head = np.stack([(d & 0xFF).astype(np.uint8), (d >> 8).astype(np.uint8)], axis=-1)
    return np.concatenate([head, payload], axis=-1).reshape(-1)


def quantize(ggml_type: int, w: np.ndarray) -> np.ndarray:
    """float32 (n_out, n_in) -> uint8 raw bytes in GGUF layout (for test/bench model writers).

    Q1_0: d = mean(|w|) over the block (the L2-optimal scale for fixed signs), sign bit = (w >= 0).
    Q8_0: d = max(|w|) / 127, q = round(w / d) (llama.cpp's reference rule).
    Q2_0: d = max(|w|) over the block, q = clip(round(w / d) + 1, 0, 3) (llama.cpp's quantize_row_q2_0_ref).
    """
    w = np.asarray(w, dtype=np.float32)
    if w.ndim != 2:
        raise KernelFormatError(f"quantize expects a 2-D (n_out, n_in) matrix, got shape {w.shape}")
    n_out, n_in = w.shape
    tensor_nbytes(ggml_type, n_in, n_out)  # validates type and block fit
    if ggml_type == GGML_F32:
        return np.ascontiguousarray(w).view(np.uint8).reshape(-1).copy()
    if ggml_type == GGML_F16:
        return _f32_to_f16_bits(w).view(np.uint8).reshape(-1).copy()
    if ggml_type == GGML_BF16:
        u = w.view(np.uint32).astype(np.uint64)
        rounded = ((u + 0x7FFF + ((u >> 16) & 1)) >> 16).astype(np.uint16)  # round to nearest even
        return rounded.view(np.uint8).reshape(-1).copy()
    if ggml_type == GGML_Q8_0:
        blocks = w.reshape(n_out, n_in // 32, 32)
        d = np.abs(blocks).max(axis=-1) / 127.0
        d16 = d.astype(np.float16).astype(np.float32)
        inv = np.divide(1.0, d16, out=np.zeros_like(d16), where=d16 > 0)
        q = np.clip(np.rint(blocks * inv[:, :, None]), -127, 127).astype(np.int8)
        return _pack_blocks(d, q.view(np.uint8))
    if ggml_type == GGML_Q2_0:
        blocks = w.reshape(n_out, n_in // 64, 64)
        d = np.abs(blocks).max(axis=-1)
        inv = np.divide(1.0, d, out=np.zeros_like(d), where=d > 0)
        q = np.clip(np.rint(blocks * inv[:, :, None]) + 1, 0, 3).astype(np.uint8).reshape(n_out, n_in // 64, 16, 4)
        return _pack_blocks(d, q2_pack(q))
    blocks = w.reshape(n_out, n_in // 128, 128)
    d = np.abs(blocks).mean(axis=-1)
    signs = np.packbits(blocks >= 0, axis=-1, bitorder="little")  # (n_out, nb, 16)
    return _pack_blocks(d, signs)


def q2_pack(q: np.ndarray) -> np.ndarray:
    """Codes (..., 16, 4) in 0..3 -> Q2_0 payload bytes (..., 16): code i of a byte in bits 2i, 2i+1."""
    q = q.astype(np.uint8)
    return q[..., 0] | (q[..., 1] << 2) | (q[..., 2] << 4) | (q[..., 3] << 6)
