"""Write Qwen3/Bonsai-layout GGUF files with random weights, for tests and speed benchmarks.

The files have the exact tensor names, shapes and types of PrismML's Bonsai GGUFs (Q1_0 matrices, F32 norms)
and carry a real tokenizer: every `tokenizer.*` key (vocab, merges, token types, special ids, chat template)
is copied from an existing GGUF, so the synthetic model tokenizes and chats like the real one.

Weights: every Q1_0 block gets random signs and its own scale (1/sqrt(n_in) times a 0.5..1.5 jitter,
renormalised to unit rms), every norm vector random gains in 0.6..1.4, so an engine that ignores block
scales or norm gains produces visibly wrong logits. Q1_0 bytes are produced directly as (fp16 d, 16 sign
bytes) blocks instead of quantizing float matrices: a bonsai-8b file has 8e9 weights, and drawing them as
floats first would take several minutes instead of seconds. F32 files (tiny shapes only) draw N(0, 1/n_in).
Q2_0 files (Ternary-Bonsai layout, fp16 d + 16 bytes of 2-bit codes per 64) draw codes -1, 0, +1, +2 with
chances 6/16, 5/16, 4/16, 1/16 (zero mean, mostly ternary like the real models, with some +2 so every code is
exercised) and the same jittered scales.

    python -m generator.synthetic --preset bonsai-8b --tokenizer-from tests/fixtures/reference/tiny-tied-q1_0.gguf \
        --out /tmp/bonsai-8b-synthetic.gguf
"""

from __future__ import annotations

import argparse
import os
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
from gguf import GGMLQuantizationType, GGUFWriter

from .gguf_file import BLOCK_SIZES, GGML_F32, GGML_Q1_0, GGML_Q2_0, GGUFFile
from .kernels.formats import q2_pack

Q1_BLOCK, Q1_BYTES = 128, 18  # weights per Q1_0 block, bytes per block (fp16 scale + 16 sign bytes)
_Q1_DTYPE = np.dtype([("d", "<f2"), ("signs", "u1", (16,))])  # one Q1_0 block, 18 bytes


@dataclass(frozen=True)
class SyntheticSpec:
    """Shape of a synthetic Qwen3 model (all sizes GGUF metadata will declare)."""

    n_layer: int
    n_embd: int
    n_ff: int
    n_head: int
    n_head_kv: int
    head_dim: int
    tied: bool = True                # LM head = token_embd (Bonsai 1.7B/4B) or its own output.weight (8B)
    yarn: bool = False               # YaRN x4 over 16384 (Bonsai-8B)
    weight_type: str = "Q1_0"        # "Q1_0", "Q2_0" or "F32" for the matrices (norms are always F32)
    context_length: int = 32768
    rope_base: float = 1_000_000.0


PRESETS: dict[str, SyntheticSpec] = {
    # tests: small but with every structural feature (GQA, q_dim != n_embd, tied/untied, YaRN)
    "tiny-tied": SyntheticSpec(2, 128, 256, 4, 2, 32),
    "tiny-untied-yarn": SyntheticSpec(2, 128, 384, 4, 1, 64, tied=False, yarn=True, context_length=65536),
    # benchmarks: the real Bonsai shapes
    "bonsai-1.7b": SyntheticSpec(28, 2048, 6144, 16, 8, 128),
    "bonsai-4b": SyntheticSpec(36, 2560, 9728, 32, 8, 128),
    "bonsai-8b": SyntheticSpec(36, 4096, 12288, 32, 8, 128, tied=False, yarn=True, context_length=65536),
}

_TYPES = {"Q1_0": GGML_Q1_0, "Q2_0": GGML_Q2_0, "F32": GGML_F32}
_FILE_TYPES = {GGML_Q1_0: 40, GGML_Q2_0: 41, GGML_F32: 0}  # general.file_type (llama.cpp's LLAMA_FTYPE_MOSTLY_*)


def tensor_plan(spec: SyntheticSpec, n_vocab: int) -> list[tuple[str, int, int]]:
    """(name, n_in, n_out) of every tensor in file order; vectors have n_out = 1."""
    q_dim, kv_dim = spec.n_head * spec.head_dim, spec.n_head_kv * spec.head_dim
    plan = [("token_embd.weight", spec.n_embd, n_vocab)]
    for i in range(spec.n_layer):
        b = f"blk.{i}."
        plan += [
            (b + "attn_norm.weight", spec.n_embd, 1),
            (b + "attn_q.weight", spec.n_embd, q_dim),
            (b + "attn_k.weight", spec.n_embd, kv_dim),
            (b + "attn_v.weight", spec.n_embd, kv_dim),
            (b + "attn_output.weight", q_dim, spec.n_embd),
            (b + "attn_q_norm.weight", spec.head_dim, 1),
            (b + "attn_k_norm.weight", spec.head_dim, 1),
            (b + "ffn_norm.weight", spec.n_embd, 1),
            (b + "ffn_gate.weight", spec.n_embd, spec.n_ff),
            (b + "ffn_up.weight", spec.n_embd, spec.n_ff),
            (b + "ffn_down.weight", spec.n_ff, spec.n_embd),
        ]
    plan.append(("output_norm.weight", spec.n_embd, 1))
    if not spec.tied:
        plan.append(("output.weight", spec.n_embd, n_vocab))
    return plan


# ---------------------------------------------------------------------------------------------------------------
# Random tensors
# ---------------------------------------------------------------------------------------------------------------


def random_q1_0(rng: np.random.Generator, n_in: int, n_out: int) -> np.ndarray:
    """Random Q1_0 matrix as raw GGUF bytes (n_out * n_in/128 * 18,) uint8: random signs, jittered scales."""
    nb = n_in // Q1_BLOCK
    blocks = np.empty((n_out, nb), _Q1_DTYPE)                                     # (n_out, nb) 18-byte blocks
    blocks["d"] = _block_scales(rng, n_in, n_out, nb)
    blocks["signs"] = rng.integers(0, 256, size=(n_out, nb, 16), dtype=np.uint8)
    return blocks.view(np.uint8).reshape(-1)


def _block_scales(rng: np.random.Generator, n_in: int, n_out: int, nb: int) -> np.ndarray:
    """(n_out, nb) fp16 scales: 1/sqrt(n_in) times a 0.5..1.5 jitter renormalised to unit rms."""
    jitter = rng.uniform(0.5, 1.5, size=(n_out, nb)).astype(np.float32)
    jitter /= np.sqrt(np.mean(jitter.astype(np.float64) ** 2))
    return (jitter / np.sqrt(n_in)).astype(np.float16)


# one code per uniform 4-bit draw: -1 (code 0) 6/16, 0 (code 1) 5/16, +1 (code 2) 4/16, +2 (code 3) 1/16: mean 0
_Q2_CODE_OF_NIBBLE = np.array([0] * 6 + [1] * 5 + [2] * 4 + [3], np.uint8)


def random_q2_0(rng: np.random.Generator, n_in: int, n_out: int) -> np.ndarray:
    """Random Q2_0 matrix as raw GGUF bytes (n_out * n_in/64 * 18,) uint8: codes 0..3 (values -1, 0, +1, +2) with
    chances 6/16, 5/16, 4/16, 1/16 (zero mean, like trained ternary weights: a mean would put the same bias into
    every logit and make a model repeat one token), jittered scales."""
    nb = n_in // 64
    blocks = np.empty((n_out, nb), _Q1_DTYPE)                                     # same 18-byte block shape
    blocks["d"] = _block_scales(rng, n_in, n_out, nb)
    nibbles = rng.integers(0, 256, size=(n_out, nb, 32), dtype=np.uint8)          # two draws per byte
    codes = np.empty((n_out, nb, 64), np.uint8)
    codes[..., 0::2] = _Q2_CODE_OF_NIBBLE[nibbles & 15]
    codes[..., 1::2] = _Q2_CODE_OF_NIBBLE[nibbles >> 4]
    blocks["signs"] = q2_pack(codes.reshape(n_out, nb, 16, 4))
    return blocks.view(np.uint8).reshape(-1)


def random_tensor(rng: np.random.Generator, ggml_type: int, n_in: int, n_out: int) -> np.ndarray:
    """Raw bytes of one tensor: a norm-gain vector (n_out == 1, always F32) or a weight matrix."""
    if n_out == 1:
        return rng.uniform(0.6, 1.4, size=n_in).astype(np.float32).view(np.uint8)
    if ggml_type == GGML_Q1_0:
        return random_q1_0(rng, n_in, n_out)
    if ggml_type == GGML_Q2_0:
        return random_q2_0(rng, n_in, n_out)
    w = rng.standard_normal((n_out, n_in), dtype=np.float32) * np.float32(1.0 / np.sqrt(n_in))
    return w.view(np.uint8).reshape(-1)


# ---------------------------------------------------------------------------------------------------------------
# Writer
# ---------------------------------------------------------------------------------------------------------------


def write_synthetic_gguf(out: str | os.PathLike[str], spec: SyntheticSpec | str,
                         tokenizer_from: str | os.PathLike[str] | None, seed: int = 0,
                         weight_type: str | None = None, n_vocab: int = 151936) -> Path:
    """Write a random-weight Qwen3 GGUF of shape `spec` (or a PRESETS name), tokenizer copied from a GGUF.

    The vocab size is the source tokenizer's. `tokenizer_from=None` writes no tokenizer and `n_vocab` rows
    instead: for tests of the arithmetic alone, where a small vocab keeps them fast (marked as llama.cpp's
    tokenizer model "none", so llama.cpp runs the file too, on token ids).
    Streams tensor by tensor: peak memory is one tensor, not the model.
    """
    if isinstance(spec, str):
        if spec not in PRESETS:
            raise ValueError(f"unknown preset {spec!r} (choose from {', '.join(PRESETS)})")
        spec = PRESETS[spec]
    if weight_type is not None:
        spec = replace(spec, weight_type=weight_type)
    if spec.weight_type not in _TYPES:
        raise ValueError(f"weight_type must be one of {', '.join(_TYPES)}, got {spec.weight_type!r}")
    wtype = _TYPES[spec.weight_type]
    block = BLOCK_SIZES[wtype][0]
    for n in (spec.n_embd, spec.n_ff, spec.n_head * spec.head_dim):
        if n % block:
            raise ValueError(f"{spec.weight_type} needs every matrix input size to be a multiple of {block}, got {n}")

    src, tok_keys = None, []
    if tokenizer_from is not None:
        src = GGUFFile(tokenizer_from)
        tok_keys = [k for k in src.metadata if k.startswith("tokenizer.")]
        if "tokenizer.ggml.tokens" not in src.metadata:
            raise ValueError(f"{tokenizer_from}: has no tokenizer.ggml.tokens to copy")
        n_vocab = len(src.metadata["tokenizer.ggml.tokens"])

    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    w = GGUFWriter(out, arch="qwen3")
    w.add_name(f"Bonsai-synthetic-{spec.n_layer}L-{spec.n_embd}-{spec.weight_type}-seed{seed}")
    w.add_uint32("general.file_type", _FILE_TYPES[wtype])
    w.add_uint32("general.quantization_version", 2)
    w.add_uint32("qwen3.context_length", spec.context_length)
    w.add_uint32("qwen3.embedding_length", spec.n_embd)
    w.add_uint32("qwen3.feed_forward_length", spec.n_ff)
    w.add_uint32("qwen3.block_count", spec.n_layer)
    w.add_uint32("qwen3.attention.head_count", spec.n_head)
    w.add_uint32("qwen3.attention.head_count_kv", spec.n_head_kv)
    w.add_uint32("qwen3.attention.key_length", spec.head_dim)
    w.add_uint32("qwen3.attention.value_length", spec.head_dim)
    w.add_float32("qwen3.attention.layer_norm_rms_epsilon", 1e-6)
    w.add_float32("qwen3.rope.freq_base", spec.rope_base)
    if spec.yarn:
        w.add_string("qwen3.rope.scaling.type", "yarn")
        w.add_float32("qwen3.rope.scaling.factor", 4.0)
        w.add_uint32("qwen3.rope.scaling.original_context_length", 16384)
    for key in tok_keys:
        types = src.value_types(key)
        w.add_key_value(key, src.metadata[key], types[0], types[1] if len(types) > 1 else None)
    if src is None:  # llama.cpp's "no vocab" model: it loads and runs on token ids (tests/fixtures/q2_0_llamacpp)
        w.add_string("tokenizer.ggml.model", "none")
        w.add_uint32("qwen3.vocab_size", n_vocab)

    plan = tensor_plan(spec, n_vocab)
    for name, n_in, n_out in plan:
        ttype = GGML_F32 if n_out == 1 else wtype
        if ttype == GGML_Q1_0:
            row_bytes = n_in // Q1_BLOCK * Q1_BYTES
            w.add_tensor_info(name, (n_out, row_bytes), np.dtype(np.uint8), n_out * row_bytes,
                              raw_dtype=GGMLQuantizationType.Q1_0)
        elif ttype == GGML_Q2_0:  # gguf 0.19 has no Q2_0 member: the shape is given in elements, the type as its id
            w.add_tensor_info(name, (n_out, n_in), np.dtype(np.float16), n_out * (n_in // 64) * 18, raw_dtype=GGML_Q2_0)
        else:
            shape = (n_in,) if n_out == 1 else (n_out, n_in)
            w.add_tensor_info(name, shape, np.dtype(np.float32), n_in * n_out * 4)
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_ti_data_to_file()
    rng = np.random.default_rng(seed)
    for name, n_in, n_out in plan:
        w.write_tensor_data(random_tensor(rng, GGML_F32 if n_out == 1 else wtype, n_in, n_out))
    w.close()
    return out


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description="Write a random-weight Bonsai/Qwen3-layout GGUF file.")
    ap.add_argument("--preset", choices=sorted(PRESETS), required=True)
    ap.add_argument("--tokenizer-from", required=True, help="GGUF file whose tokenizer.* metadata is copied")
    ap.add_argument("--out", required=True)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--weight-type", choices=sorted(_TYPES), default=None)
    args = ap.parse_args(argv)
    path = write_synthetic_gguf(args.out, args.preset, args.tokenizer_from, args.seed, args.weight_type)
    print(f"wrote {path} ({path.stat().st_size / 1e6:.1f} MB)")


if __name__ == "__main__":
    main()
