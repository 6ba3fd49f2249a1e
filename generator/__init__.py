"""generator: a CPU inference engine for PrismML's 1-bit Bonsai (Qwen3) GGUF models, in numba.

Depends on nothing in ragbit or indexes.
"""
