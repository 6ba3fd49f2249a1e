"""The KV cache element types the engine offers, in a module that imports nothing: ragbit's config checks a
setting against it without loading numba (cold CLI commands stay fast). generator.model maps each to its storage."""

KV_CACHE_KINDS = ("f16", "f32", "q8", "q4")   # f16 default; f32 exact; q8 / q4: int8 / 4-bit per 32 values
