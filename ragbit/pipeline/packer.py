"""ContextPacker: retrieved hits -> numbered context blocks within a token budget (see packing.py)."""
from __future__ import annotations

from typing import Any

from ragbit.config import RagbitConfig
from ragbit.pipeline.component import Component, component
from ragbit.pipeline.models import engine_settings, load_generator
from ragbit.pipeline.packing import PackedContext, pack
from ragbit.searcher import Hit


@component
class ContextPacker(Component):
    """Counts tokens with the generator's tokenizer: pass `tokenizer`, or `model` and it is loaded on
    first run through the same cache the BonsaiGenerator uses (one load for both)."""

    outputs = {"context": PackedContext}

    def __init__(self, budget: int = 1500, tokenizer: Any = None, model: str | None = None,
                 n_ctx: int = 4096, threads: int = 0, decode_kernel: str = "int11", kv_cache: str = "f16") -> None:
        if budget <= 0:
            raise ValueError(f"context budget must be positive, got {budget}")
        if tokenizer is None and model is None:
            raise ValueError("ContextPacker needs a tokenizer or a model name to take it from")
        self.budget = budget
        self.tokenizer = tokenizer
        self.model = model
        self.engine = {"n_ctx": n_ctx, "threads": threads, "decode_kernel": decode_kernel, "kv_cache": kv_cache}

    @classmethod
    def from_config(cls, cfg: RagbitConfig, **params: Any) -> "ContextPacker":
        defaults = {"budget": cfg.query.budget, "model": cfg.generator.model, **engine_settings(cfg)}
        return cls(**{**defaults, **params})

    def warm_up(self) -> None:
        if self.tokenizer is None:
            self.tokenizer = load_generator(self.model, **self.engine).tokenizer

    def count_tokens(self, text: str) -> int:
        return len(self.tokenizer.encode(text, parse_special=False))

    def run(self, hits: list[Hit]) -> dict[str, Any]:
        return {"context": pack(hits, self.count_tokens, self.budget)}
