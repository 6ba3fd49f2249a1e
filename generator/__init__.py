"""generator: a CPU inference engine for PrismML's 1-bit Bonsai (Qwen3) GGUF models, in numba.

Depends on nothing in ragbit or indexes. Modules (import them directly; this package imports nothing heavy):
  gguf_file   GGUFFile(path): validated, memory-mapped GGUF (metadata as plain values, TensorRef byte views)
  model       Qwen3Model.load(path, n_ctx, threads): prefill(ids) / decode(id) -> float32 logits,
              truncate(n) / reset(); Qwen3Config; GGUFError / ModelError / ContextOverflowError
  layers      numba RMSNorm, q/k norm + NEOX RoPE (YaRN tables), GQA attention, SwiGLU, KV cache stores
  cache_types the KV cache kinds (f16, f32, q8, q4), importable without numba
  kernels     weight-matrix kernels (Q1_0, Q8_0, F16, BF16, F32): prepare_matrix -> matvec / matmul / row
  synthetic   random-weight Bonsai-layout GGUF writer (tests, benchmarks): python -m generator.synthetic
"""
