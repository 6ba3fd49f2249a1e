"""BonsaiGenerator: chat messages -> answer text, streamed token by token, with timings.

Wraps `generator.Generator` (our numba engine). The model is loaded on the first run (through
`model_loader.load_generator`, shared with the ContextPacker's tokenizer). Thinking is off by default: on a
laptop CPU every reasoning token costs as much as an answer token. Its optional `on_token` input (a callable
taking the new text; the query pipelines' `on_token` input) streams the answer; the result still carries it
whole.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any

from ragbit.config import RagbitConfig
from ragbit.pipeline.contract import Component, OnToken, component
from ragbit.pipeline.model_loader import engine_settings, load_generator, sampling_settings


@dataclass
class GenerationStats:
    prompt: str                          # the exact text the model read (chat template applied)
    prompt_tokens: int
    generated_tokens: int
    finish_reason: str                   # "eog" (end of turn) | "stop" (stop string) | "length" (max_tokens)
    cached_prompt_tokens: int = 0        # prompt tokens reused from the KV cache (a chat's earlier turns)
    timings: dict[str, float] = field(default_factory=dict)  # load_s, prompt_s, ttft_s, gen_tokens_per_s, ...


@component
class BonsaiGenerator(Component):
    outputs = {"answer": str, "stats": GenerationStats}

    def __init__(self, model: str = "bonsai-1.7b", n_ctx: int = 4096, threads: int = 0, max_tokens: int = 512,
                 decode_kernel: str = "int11", kv_cache: str = "f16",
                 thinking: bool = False, sampling: dict[str, Any] | None = None, generator: Any = None,
                 stop: list[str] | None = None) -> None:
        self.model, self.n_ctx = model, n_ctx
        self.engine = {"n_ctx": n_ctx, "threads": threads, "decode_kernel": decode_kernel, "kv_cache": kv_cache}
        self.max_tokens = max_tokens
        self.thinking = thinking
        self.sampling = dict(sampling or {})
        self.generator = generator
        self.stop = list(stop or [])         # stop strings (the answer ends before the first one)

    @classmethod
    def from_config(cls, cfg: RagbitConfig, **params: Any) -> "BonsaiGenerator":
        g = cfg.generator
        defaults = {"model": g.model, **engine_settings(cfg), "max_tokens": g.max_tokens,
                    "thinking": cfg.query.thinking, "sampling": sampling_settings(cfg)}
        return cls(**{**defaults, **params})

    def warm_up(self) -> None:
        if self.generator is None:
            self.generator = load_generator(self.model, **self.engine)

    def run(self, messages: list[dict], on_token: OnToken | None = None) -> dict[str, Any]:
        from generator.sampling import SamplingParams

        def on_piece(piece: str) -> None:
            if on_token is not None and piece:
                on_token(piece)

        result = self.generator.generate(messages, chat=True, max_tokens=self.max_tokens,
                                         sampling=SamplingParams(**self.sampling), stop=self.stop,
                                         thinking=self.thinking, on_piece=on_piece)
        stats = GenerationStats(prompt=self.generator.render(messages, chat=True, thinking=self.thinking),
                                prompt_tokens=len(result.prompt_token_ids), generated_tokens=len(result.token_ids),
                                cached_prompt_tokens=result.cached_prompt_tokens,
                                finish_reason=result.finish_reason, timings=dataclasses.asdict(result.timings))
        return {"answer": result.text, "stats": stats}
