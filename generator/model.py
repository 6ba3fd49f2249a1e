"""Qwen3 (PrismML Bonsai) forward pass on the CPU: load a GGUF file, compute exact float32 logits.

Layout follows llama2.c (banner sections, a shape comment on every buffer) and nanoGPT (one config dataclass,
one readable forward). Prefill and decode share one layer function (`Qwen3Model._layer`) over a `Workspace` of
T tokens: prefill passes a prompt chunk (each matrix runs its batched matmul kernel), decode passes T = 1 in
buffers allocated once (the matvec kernel). The KV cache is its own small class (`kv_cache.KVCache`).
Matrix products come from `generator.kernels`; the other hot loops from `generator.layers`.

Per layer (README of the reference fixtures):
    n = rmsnorm(x) * attn_norm
    h = x + W_o . attn(rope(qnorm(W_q n)), rope(knorm(W_k n)), W_v n)
    m = rmsnorm(h) * ffn_norm
    x' = h + W_down . (silu(W_gate m) * (W_up m))
logits = W_head . (rmsnorm(x_L) * output_norm), W_head = output.weight or (tied) token_embd.weight.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass
from typing import Any, Sequence

import numpy as np

from .errors import ContextOverflowError, ModelError
from .gguf_file import GGUFError, GGUFFile, TensorRef
from .kernels import KernelFormatError, dequantize, dispatch, prepare_matrix, set_threads
from .kernels.attention import padded_ctx
from .kernels.matrix import MATVEC_MAX_ROWS, Q1_DECODE_MODES, PackedRows, QuantMatrix, merge_kernel_paths, prepare_stacked
from . import layers
from .kv_cache import KV_CACHE_TYPES, KVCache, kv_cache_bytes, rotate_heads


# ---------------------------------------------------------------------------------------------------------------
# Config: every size comes from the file
# ---------------------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Qwen3Config:
    n_vocab: int           # rows of token_embd (151936 for Qwen3/Bonsai, pad rows included)
    n_layer: int           # qwen3.block_count
    n_embd: int            # qwen3.embedding_length
    n_ff: int              # qwen3.feed_forward_length
    n_head: int            # qwen3.attention.head_count
    n_head_kv: int         # qwen3.attention.head_count_kv
    head_dim: int          # qwen3.attention.key_length (= value_length)
    rope_base: float       # qwen3.rope.freq_base
    rms_eps: float         # qwen3.attention.layer_norm_rms_epsilon
    n_ctx_train: int       # qwen3.context_length
    rope_scaling: str = "none"     # qwen3.rope.scaling.type: "none" | "yarn"
    rope_factor: float = 1.0       # qwen3.rope.scaling.factor
    rope_orig_ctx: int = 0         # qwen3.rope.scaling.original_context_length

    @property
    def q_dim(self) -> int:
        return self.n_head * self.head_dim

    @property
    def kv_dim(self) -> int:
        return self.n_head_kv * self.head_dim

    @classmethod
    def from_gguf(cls, gguf: GGUFFile) -> "Qwen3Config":
        """The config of an open file: the one place a model's sizes are read (n_vocab from the token_embd
        shape); a ModelError becomes a GGUFError naming the file."""
        embd = gguf.require("token_embd.weight")
        if len(embd.shape) != 2:
            raise gguf.error(f"tensor 'token_embd.weight' has shape {list(embd.shape)}, expected 2 dimensions")
        try:
            config = cls.from_metadata(gguf.metadata, n_vocab=embd.shape[1])
        except ModelError as exc:
            raise gguf.error(str(exc)) from None
        gguf.require("token_embd.weight", (config.n_embd, config.n_vocab))
        n_tokens = len(gguf.metadata.get("tokenizer.ggml.tokens") or [])
        if n_tokens > config.n_vocab:        # the tokenizer would produce ids the embedding has no row for
            raise gguf.error(f"tensor 'token_embd.weight' has {config.n_vocab} rows but the tokenizer has "
                             f"{n_tokens} tokens")
        return config

    @classmethod
    def from_metadata(cls, meta: dict[str, Any], n_vocab: int | None = None) -> "Qwen3Config":
        """Config from GGUF metadata. n_vocab: rows of token_embd (from_gguf passes it); without it,
        the tokenizer's vocab size. Raises ModelError naming the missing/bad key.
        """
        if n_vocab is None:
            n_vocab = len(meta.get("tokenizer.ggml.tokens") or [])
        arch = meta.get("general.architecture")
        if arch != "qwen3":
            raise ModelError(f"unsupported architecture {arch!r} (only qwen3 / Bonsai is supported)")

        def get(key: str, default: Any = None, kind: type = int) -> Any:
            value = meta.get(f"qwen3.{key}", default)
            if value is None:
                raise ModelError(f"missing metadata key 'qwen3.{key}'")
            try:
                return kind(value)
            except (TypeError, ValueError, OverflowError):
                raise ModelError(f"metadata key 'qwen3.{key}' has bad value {value!r}") from None

        n_embd, n_head = get("embedding_length"), get("attention.head_count")
        head_dim = get("attention.key_length", n_embd // max(n_head, 1))
        scaling = str(meta.get("qwen3.rope.scaling.type", "none") or "none").lower()
        if scaling not in ("none", "yarn"):
            raise ModelError(f"unsupported rope scaling {scaling!r} (supported: none, yarn)")
        cfg = cls(
            n_vocab=int(n_vocab), n_layer=get("block_count"), n_embd=n_embd, n_ff=get("feed_forward_length"),
            n_head=n_head, n_head_kv=get("attention.head_count_kv", n_head), head_dim=head_dim,
            rope_base=get("rope.freq_base", 10000.0, float),
            rms_eps=get("attention.layer_norm_rms_epsilon", 1e-6, float),
            n_ctx_train=get("context_length"),
            rope_scaling=scaling,
            rope_factor=get("rope.scaling.factor", 1.0, float) if scaling == "yarn" else 1.0,
            rope_orig_ctx=get("rope.scaling.original_context_length") if scaling == "yarn" else 0,
        )
        if get("attention.value_length", head_dim) != head_dim:
            raise ModelError("qwen3.attention.value_length != key_length is not supported")
        for name in ("n_layer", "n_embd", "n_ff", "n_head", "n_head_kv", "head_dim", "n_ctx_train", "n_vocab"):
            if getattr(cfg, name) <= 0:
                raise ModelError(f"invalid model size {name}={getattr(cfg, name)}")
        if cfg.n_head % cfg.n_head_kv or cfg.head_dim % 2:
            raise ModelError(f"invalid attention shape: {cfg.n_head} heads, {cfg.n_head_kv} kv heads, "
                             f"head_dim {cfg.head_dim}")
        # NaN/inf/negative hyper-parameters load fine and then produce garbage: reject them here
        if not (math.isfinite(cfg.rms_eps) and 0.0 < cfg.rms_eps < 1.0):
            raise ModelError(f"metadata key 'qwen3.attention.layer_norm_rms_epsilon' has bad value {cfg.rms_eps!r} "
                             "(expected a small positive number)")
        if not (math.isfinite(cfg.rope_base) and cfg.rope_base > 1.0):
            raise ModelError(f"metadata key 'qwen3.rope.freq_base' has bad value {cfg.rope_base!r} (expected > 1)")
        if not math.isfinite(cfg.rope_factor):
            raise ModelError(f"metadata key 'qwen3.rope.scaling.factor' has bad value {cfg.rope_factor!r}")
        if cfg.rope_scaling == "yarn" and (cfg.rope_factor <= 1.0 or cfg.rope_orig_ctx <= 0):
            raise ModelError("YaRN rope scaling needs factor > 1 and original_context_length > 0")
        return cfg


# ---------------------------------------------------------------------------------------------------------------
# Weights
# ---------------------------------------------------------------------------------------------------------------


@dataclass
class LayerWeights:
    attn_norm: np.ndarray   # (n_embd,) float32
    wqkv: QuantMatrix       # n_embd -> q_dim + 2 kv_dim: attn_q, attn_k, attn_v stacked (rows in that order)
    wo: QuantMatrix         # q_dim -> n_embd
    q_norm: np.ndarray      # (head_dim,) float32
    k_norm: np.ndarray      # (head_dim,) float32
    ffn_norm: np.ndarray    # (n_embd,) float32
    w_gate_up: QuantMatrix  # n_embd -> 2 n_ff: ffn_gate, ffn_up stacked
    w_down: QuantMatrix     # n_ff -> n_embd


def _matrix(gf: GGUFFile, name: str, n_in: int, n_out: int, q1_decode: str = "float",
            rows_only: bool = False) -> QuantMatrix:
    """A weight matrix; rows_only (an untied token embedding) leaves it in the memory map (see PackedRows)."""
    ref = gf.require(name, (n_in, n_out))
    try:
        if rows_only:
            return PackedRows(ref.ggml_type, ref.raw, n_in, n_out)
        matrix = prepare_matrix(ref.ggml_type, ref.raw, n_in, n_out, q1_decode)
    except KernelFormatError as exc:
        raise gf.error(f"tensor {name!r}: {exc}") from None
    gf.release(ref)  # repacked (or zero-copy and refaulted on use): keep peak RSS at ~one copy of the weights
    return matrix


def _stacked(gf: GGUFFile, names: list[str], n_in: int, n_outs: list[int], q1_decode: str) -> QuantMatrix:
    """Matrices that multiply the same input, as one (see prepare_stacked)."""
    refs = [gf.require(name, (n_in, n)) for name, n in zip(names, n_outs)]
    try:
        matrix = prepare_stacked([(r.ggml_type, r.raw, n) for r, n in zip(refs, n_outs)], n_in, q1_decode)
    except KernelFormatError as exc:
        raise gf.error(f"tensors {', '.join(map(repr, names))}: {exc}") from None
    for r in refs:
        gf.release(r)
    return matrix


def _vector(gf: GGUFFile, name: str, n: int) -> np.ndarray:
    ref: TensorRef = gf.require(name, (n,))
    try:
        return np.ascontiguousarray(dequantize(ref.ggml_type, ref.raw, n, 1).reshape(n), dtype=np.float32)
    except KernelFormatError as exc:
        raise gf.error(f"tensor {name!r}: {exc}") from None


# ---------------------------------------------------------------------------------------------------------------
# KV cache and per-step activations
# ---------------------------------------------------------------------------------------------------------------


@dataclass
class Workspace:
    """Activations of T tokens through one layer: a prompt chunk (prefill) or T = 1 (decode, allocated once)."""
    x: np.ndarray        # (T, n_embd) residual stream
    xn: np.ndarray       # (T, n_embd) normed input of a sub-block
    qkv: np.ndarray      # (T, q_dim + 2 kv_dim) W_qkv n, copied into the contiguous q, k, v below
    q: np.ndarray        # (T, q_dim) queries
    k: np.ndarray        # (T, kv_dim) new keys
    v: np.ndarray        # (T, kv_dim) new values
    att: np.ndarray      # (T, q_dim) attention output, all heads
    proj: np.ndarray     # (T, n_embd) W_o / W_down output
    gate_up: np.ndarray  # (T, 2 n_ff) W_gate_up m: gate, up side by side
    act: np.ndarray      # (T, n_ff) silu(gate) * up

    @classmethod
    def allocate(cls, cfg: Qwen3Config, T: int) -> "Workspace":
        qd, kd, ff = cfg.q_dim, cfg.kv_dim, cfg.n_ff
        widths = dict(x=cfg.n_embd, xn=cfg.n_embd, qkv=qd + 2 * kd, q=qd, k=kd, v=kd, att=qd, proj=cfg.n_embd,
                      gate_up=2 * ff, act=ff)
        return cls(**{name: np.zeros((T, n), np.float32) for name, n in widths.items()})

    def rows(self, T: int) -> "Workspace":
        """The first T rows of every buffer (views: a shorter last prompt chunk reuses the same memory)."""
        return Workspace(**{name: getattr(self, name)[:T] for name in self.__dataclass_fields__})


def _product(matrix: QuantMatrix, x: np.ndarray, out: np.ndarray) -> None:
    """out (T, n_out) = x (T, n_in) @ W.T: the matvec kernel for one token (decode), the matmul kernel for more."""
    if x.shape[0] == 1:
        matrix.matvec(x[0], out[0])
    else:
        matrix.matmul(x, out)


# ---------------------------------------------------------------------------------------------------------------
# Model
# ---------------------------------------------------------------------------------------------------------------



def prefill_chunks(n: int, size: int) -> list[tuple[int, int]]:
    """[start, end) batches of at most `size` tokens covering n tokens, none of MATVEC_MAX_ROWS tokens or fewer
    unless n itself is that short: a short tail borrows tokens from the batch before it. Why: a batch that
    small takes the matvec kernel, which rounds differently from the matmul kernel; keeping every prompt token
    on one kernel makes a prompt's logits independent of where it was cut."""
    bounds = [(c0, min(c0 + size, n)) for c0 in range(0, n, size)]
    if len(bounds) > 1 and bounds[-1][1] - bounds[-1][0] <= MATVEC_MAX_ROWS:
        cut = bounds[-1][1] - (MATVEC_MAX_ROWS + 1)
        bounds[-2:] = [(bounds[-2][0], cut), (cut, n)]
    return bounds

class Qwen3Model:
    """A loaded Qwen3/Bonsai model with its KV cache. Not thread-safe; one sequence at a time.

    The logits returned by prefill/decode live in a preallocated buffer: valid until the next call
    (copy them to keep them).
    """

    PREFILL_CHUNK = 512  # most prompt tokens per batch. The AMX matmul expands each weight panel to bf16 once per
    # batch, so a longer batch spreads that over more tokens (at 128 tokens a 1,500-token prefill took 11.7-12.1
    # CPU-s against 10.6 at 256, Bonsai-1.7B shape, Emerald Rapids, 2 threads; 512 is measured in engine9's report).
    PREFILL_FFN_BYTES = 26 << 20  # ... but the batch's (T, 2 n_ff) float32 gate/up buffer stays within this, so a
    # large model keeps its peak RSS: Bonsai-1.7B (n_ff 6,144) batches 512 tokens, Bonsai-8B (12,288) 256

    def __init__(self, gguf: GGUFFile, config: Qwen3Config, n_ctx: int, q1_decode: str = "float",
                 kv_cache: str = "f32"):
        cfg = self.config = config
        self.gguf, self.n_ctx = gguf, n_ctx
        self.kv_cache_type = kv_cache
        self.exact = q1_decode == "float"   # the float32-exact mode; "int11" rounds to bf16 where that is its precision
        # prompt tokens per batch: a multiple of 32 (the AMX kernels' token block, so no padding rows)
        self.prefill_chunk = max(32, min(self.PREFILL_CHUNK, self.PREFILL_FFN_BYTES // (8 * cfg.n_ff)) // 32 * 32)
        self.kv_cache_bytes = kv_cache_bytes(cfg, n_ctx, kv_cache)

        # ---- weights (matrices stay packed in the memory map; prepare_matrix may repack once) ----
        self.tied = not gguf.has_tensor("output.weight")   # tied: token_embd is the LM head too
        self.tok_embd = _matrix(gguf, "token_embd.weight", cfg.n_embd, cfg.n_vocab, q1_decode,   # rows = tokens
                                rows_only=not self.tied)
        self.layers = [
            LayerWeights(
                attn_norm=_vector(gguf, f"blk.{i}.attn_norm.weight", cfg.n_embd),
                wqkv=_stacked(gguf, [f"blk.{i}.attn_{w}.weight" for w in "qkv"], cfg.n_embd,
                              [cfg.q_dim, cfg.kv_dim, cfg.kv_dim], q1_decode),
                wo=_matrix(gguf, f"blk.{i}.attn_output.weight", cfg.q_dim, cfg.n_embd, q1_decode),
                q_norm=_vector(gguf, f"blk.{i}.attn_q_norm.weight", cfg.head_dim),
                k_norm=_vector(gguf, f"blk.{i}.attn_k_norm.weight", cfg.head_dim),
                ffn_norm=_vector(gguf, f"blk.{i}.ffn_norm.weight", cfg.n_embd),
                w_gate_up=_stacked(gguf, [f"blk.{i}.ffn_gate.weight", f"blk.{i}.ffn_up.weight"], cfg.n_embd,
                                   [cfg.n_ff, cfg.n_ff], q1_decode),
                w_down=_matrix(gguf, f"blk.{i}.ffn_down.weight", cfg.n_ff, cfg.n_embd, q1_decode),
            )
            for i in range(cfg.n_layer)
        ]
        self.output_norm = _vector(gguf, "output_norm.weight", cfg.n_embd)            # (n_embd,)
        self.lm_head = self.tok_embd if self.tied else _matrix(gguf, "output.weight", cfg.n_embd, cfg.n_vocab, q1_decode)
        # which instruction-set path each product runs on (kernels/dispatch.py), for --json and benchmarks
        self.kernel_paths = merge_kernel_paths([self.lm_head] + [getattr(lw, f) for lw in self.layers for f in (
            "wqkv", "wo", "w_gate_up", "w_down")])
        self.kernel_paths["attention_decode"] = layers.decode_path(cfg.head_dim)
        self.kernel_paths["attention_prefill"] = layers.prefill_path(cfg.head_dim)

        # ---- RoPE tables (YaRN folded in) ----
        self.rope_cos, self.rope_sin = layers.rope_tables(                                # (n_ctx, head_dim/2)
            n_ctx, cfg.head_dim, cfg.rope_base, cfg.rope_factor, cfg.rope_orig_ctx)
        self.attn_scale = np.float32(1.0 / math.sqrt(cfg.head_dim))

        # ---- KV cache and the decode workspace (one token, reused for every step) ----
        self.cache = KVCache(cfg, n_ctx, kv_cache)
        self.work = Workspace.allocate(cfg, 1)
        self.scores = np.zeros((cfg.n_head, padded_ctx(n_ctx)), np.float32)  # attention scratch, a row per head
        self.logits = np.zeros(cfg.n_vocab, np.float32)         # (n_vocab,)

    # --- construction -----------------------------------------------------------------------------------------

    @classmethod
    def load(cls, path: str | os.PathLike[str], n_ctx: int = 4096, threads: int = 0,
             q1_decode: str = "float", kv_cache: str = "f32") -> "Qwen3Model":
        """Open and validate a Bonsai/Qwen3 GGUF file. Raises GGUFError (file) or ModelError (settings).

        q1_decode picks the Q1_0 decode (matvec) kernel: "float" is float32-exact (the reference checks at
        1e-3); "int11" rounds per-group activation sums to 11-bit integers and runs about 2x faster, with
        logits ~10x closer to float32 than llama.cpp's own int8 path (see generator/kernels/q1_0_simd.py).
        Prompt processing stays float32 either way.
        kv_cache picks the cache element type: "f32" (exact), "f16" (half the memory and the bytes read per
        decoded token; llama.cpp's default), "q8" (int8 with a scale per 32 values: 56% of F16) or "q4" (4-bit
        with a scale per 32 values: 31% of F16)."""
        gguf = GGUFFile(path)
        config = Qwen3Config.from_gguf(gguf)
        if not 1 <= int(n_ctx) <= config.n_ctx_train:
            raise ModelError(f"n_ctx={n_ctx} must be between 1 and the model's context length "
                             f"{config.n_ctx_train}")
        import numba
        if not 0 <= threads <= numba.config.NUMBA_NUM_THREADS:      # numba raises a bare ValueError above
            raise ModelError(f"threads must be between 0 (all cores) and {numba.config.NUMBA_NUM_THREADS} "
                             f"(the cores numba may use), got {threads}")
        if kv_cache not in KV_CACHE_TYPES:
            raise ModelError(f"unknown KV cache type {kv_cache!r}; choose one of {', '.join(KV_CACHE_TYPES)}")
        need, free = kv_cache_bytes(config, int(n_ctx), kv_cache), _available_ram()
        if free is not None and need > free:
            raise ModelError(f"the KV cache for n_ctx={n_ctx} needs {need / 2**30:.1f} GiB but only "
                             f"{free / 2**30:.1f} GiB of RAM is available; lower n_ctx")
        set_threads(threads)
        try:
            dispatch.forced()           # a bad RAGBIT_KERNEL is a setting error, not a tensor's
        except KernelFormatError as exc:
            raise ModelError(str(exc)) from None
        if q1_decode not in Q1_DECODE_MODES:
            raise ModelError(f"unknown decode kernel {q1_decode!r}; choose one of {', '.join(Q1_DECODE_MODES)}")
        return cls(gguf, config, int(n_ctx), q1_decode, kv_cache)

    @staticmethod
    def estimate_kv_cache_bytes(path: str | os.PathLike[str], n_ctx: int, kv_cache: str = "f32") -> int:
        """KV cache bytes load(path, n_ctx, kv_cache=...) would allocate, read from the file's metadata only."""
        return kv_cache_bytes_for_file(path, n_ctx, kv_cache)

    # --- cache control ----------------------------------------------------------------------------------------

    @property
    def n_past(self) -> int:
        """Positions held in the KV cache."""
        return self.cache.n_past

    @property
    def k_cache(self) -> np.ndarray:
        return self.cache.k

    @property
    def v_cache(self) -> np.ndarray:
        return self.cache.v

    def reset(self) -> None:
        """Forget every cached position."""
        self.cache.truncate(0)

    def truncate(self, n: int) -> None:
        """Keep the first n cached positions (reuse a shared prompt prefix)."""
        self.cache.truncate(n)

    def _check_tokens(self, ids: np.ndarray) -> None:
        if ids.size == 0:
            raise ModelError("empty prompt: nothing to prefill")
        if not self.cache.room_for(ids.size):
            raise ContextOverflowError(
                f"context overflow: {self.n_past} cached + {ids.size} new tokens > n_ctx={self.n_ctx}; "
                f"shorten the prompt or raise n_ctx" if ids.size > 1 else
                f"context overflow: the cache is full (n_ctx={self.n_ctx})")
        bad = (ids < 0) | (ids >= self.config.n_vocab)
        if bad.any():
            raise ModelError(f"token id {int(ids[bad][0])} out of range [0, {self.config.n_vocab})")

    # --- the forward pass: T tokens through every layer -------------------------------------------------------

    def prefill(self, token_ids: Sequence[int]) -> np.ndarray:
        """Append tokens to the cache; return the logits (n_vocab,) float32 after the LAST one.
        Chunks of `prefill_chunk` tokens go through each matrix as one batch (matmul)."""
        ids = np.asarray(token_ids, dtype=np.int64).reshape(-1)
        self._check_tokens(ids)
        work = Workspace.allocate(self.config, min(ids.size, self.prefill_chunk))  # freed after the prompt
        for c0, c1 in prefill_chunks(ids.size, self.prefill_chunk):
            chunk = ids[c0:c1]
            x = self._forward(chunk, work.rows(chunk.size))
        return self._head(x[-1:])

    def decode(self, token_id: int) -> np.ndarray:
        """Append one token; return the logits (n_vocab,) float32 for the next one (matvec, preallocated buffers)."""
        ids = np.array([token_id], dtype=np.int64)
        self._check_tokens(ids)
        return self._head(self._forward(ids, self.work))

    def _forward(self, ids: np.ndarray, w: Workspace) -> np.ndarray:
        """Embed ids, run every layer over them at positions n_past.., advance the cache; return the residual
        stream (T, n_embd) after the last layer."""
        for t, tok in enumerate(ids):
            self.tok_embd.row(int(tok), w.x[t])
        pos0 = self.n_past
        for li, lw in enumerate(self.layers):
            self._layer(li, lw, w, pos0)
        self.cache.advance(ids.size)
        return w.x

    def _layer(self, li: int, lw: LayerWeights, w: Workspace, pos0: int) -> None:
        """One transformer layer on w.x in place (see the module docstring), for prefill and decode alike."""
        cfg = self.config
        rows = w.x.shape[0] >= layers.PARALLEL_ROWS      # a prompt chunk: the row kernels split tokens over threads
        # attention
        (layers.rmsnorm_rows if rows else layers.rmsnorm)(w.x, lw.attn_norm, cfg.rms_eps, w.xn)
        _product(lw.wqkv, w.xn, w.qkv)
        (layers.split_qkv_norm_rope_rows if rows else layers.split_qkv_norm_rope)(
            w.qkv, w.q, w.k, w.v, cfg.n_head, cfg.n_head_kv, cfg.head_dim, lw.q_norm, lw.k_norm, cfg.rms_eps,
            self.rope_cos, self.rope_sin, pos0)
        if self.cache.rotated:       # quantized caches hold rotated keys and values (kv_cache.rotate_heads says why)
            for part in (w.q, w.k, w.v):
                rotate_heads(part, cfg.head_dim)
        self.cache.append(li, w.k, w.v, pos0)
        layers.attention(w.q, self.cache.k[li], self.cache.v[li], self.cache.k_scale[li], self.cache.v_scale[li], pos0,
                         cfg.n_head, self.attn_scale, self.scores, w.att, self.kernel_paths["attention_decode"],
                         self.kernel_paths["attention_prefill"], exact=self.exact)
        if self.cache.rotated:
            rotate_heads(w.att, cfg.head_dim)
        _product(lw.wo, w.att, w.proj)
        # feed-forward
        if rows:
            layers.add_rmsnorm_rows(w.x, w.proj, lw.ffn_norm, cfg.rms_eps, w.xn)
        else:
            w.x += w.proj
            layers.rmsnorm(w.x, lw.ffn_norm, cfg.rms_eps, w.xn)
        _product(lw.w_gate_up, w.xn, w.gate_up)
        (layers.swiglu_rows if rows else layers.swiglu)(w.gate_up, w.act)
        _product(lw.w_down, w.act, w.proj)
        w.x += w.proj

    def _head(self, x_last: np.ndarray) -> np.ndarray:
        """Final norm + LM head for one row (1, n_embd) -> self.logits (n_vocab,)."""
        layers.rmsnorm(x_last, self.output_norm, self.config.rms_eps, self.work.xn)
        self.lm_head.matvec(self.work.xn[0], self.logits)
        return self.logits


def _available_ram() -> int | None:
    """MemAvailable from /proc/meminfo in bytes (None where unknown, e.g. not Linux)."""
    try:
        with open("/proc/meminfo") as fh:
            for line in fh:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    return None


def kv_cache_bytes_for_file(path: str | os.PathLike[str], n_ctx: int, kv_cache: str = "f32") -> int:
    """KV cache size a model file would need at n_ctx, without loading its weights."""
    return kv_cache_bytes(Qwen3Config.from_gguf(GGUFFile(path)), n_ctx, kv_cache)


__all__ = ["Qwen3Config", "Qwen3Model", "ModelError", "ContextOverflowError", "GGUFError", "KV_CACHE_TYPES", "kv_cache_bytes",
           "kv_cache_bytes_for_file", "KVCache"]
