"""Text generation: tokenizer + Qwen3 model + sampler, streaming text as it is produced.

WHY a separate piece from the model: the model only maps token ids to logits. Everything a user sees
is decided here: how a prompt becomes ids (chat template or raw text with special tokens parsed), when
to stop (any end-of-generation token, a stop string, max_tokens, a full context), and how ids become
text without ever emitting half a UTF-8 character or any part of a stop string.

Prefix reuse: the ids whose keys/values sit in the model's KV cache are remembered; a new prompt that
starts with the same ids (a chat that grows turn by turn) only prefills the new tail.
"""
from __future__ import annotations

import os
import time
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import numpy as np

from .chat import ChatTemplate
from .errors import GeneratorError
from .kernels.matrix import MATVEC_MAX_ROWS
from .sampling import Sampler, SamplingParams
from .tokenizer import BonsaiTokenizer

Prompt = str | Sequence[Mapping[str, Any]]   # raw text, or chat messages [{"role", "content"}]


class GenerationError(GeneratorError, ValueError):
    """The request cannot be served (empty prompt, prompt longer than the context, bad arguments)."""


@dataclass
class Timings:
    load_s: float = 0.0               # model + tokenizer load (once per Generator)
    prompt_s: float = 0.0             # prefill of the prompt tokens not already cached
    prompt_tokens_per_s: float = 0.0  # prefilled tokens / prompt_s
    gen_s: float = 0.0                # decode steps (one forward pass + sampling each)
    gen_tokens_per_s: float = 0.0     # decode steps / gen_s
    ttft_s: float = 0.0               # request start -> first token chosen (tokenize + prefill + sample)


@dataclass
class GenerationResult:
    text: str = ""                                            # generated text, stop string excluded
    prompt_token_ids: list[int] = field(default_factory=list)
    token_ids: list[int] = field(default_factory=list)        # generated ids (EOG token excluded)
    finish_reason: str = ""                                   # "eog" | "stop" | "length"
    cached_prompt_tokens: int = 0                             # prompt ids reused from the KV cache
    kernels: dict[str, str] = field(default_factory=dict)     # {"decode"/"prefill": instruction-set path}
    kv_cache: str = ""                                        # the KV cache's element type ("f16", "q4", ...)
    timings: Timings = field(default_factory=Timings)


class _StopMatcher:
    """Holds back text that could be the start of a stop string; reports the first complete match.

    Invariant: text before `emitted` cannot be the start of any stop string, so a match can only
    begin at or after it, even when a stop string is split across several tokens."""

    def __init__(self, stops: Sequence[str]):
        self.stops = [s for s in stops if s]
        self.text = ""
        self.emitted = 0

    def feed(self, piece: str) -> tuple[str, bool]:
        """Add text; return (text safe to emit now, whether a stop string was completed)."""
        self.text += piece
        best = -1
        for s in self.stops:
            i = self.text.find(s, self.emitted)
            if i >= 0 and (best < 0 or i < best):
                best = i
        if best >= 0:
            out, self.text = self.text[self.emitted:best], self.text[:best]
            self.emitted = best
            return out, True
        hold = len(self.text)
        for i in range(max(self.emitted, len(self.text) - max((len(s) for s in self.stops), default=0)), len(self.text)):
            tail = self.text[i:]
            if any(s.startswith(tail) for s in self.stops):
                hold = i
                break
        out = self.text[self.emitted:hold]
        self.emitted = hold
        return out, False

    def finish(self) -> str:
        """End of generation without a stop: release what was held back."""
        out = self.text[self.emitted:]
        self.emitted = len(self.text)
        return out


class Generator:
    """One model, its tokenizer and chat template; generations run one at a time."""

    def __init__(self, model: Any, tokenizer: BonsaiTokenizer, chat_template: ChatTemplate, load_s: float = 0.0):
        self.model, self.tokenizer, self.chat_template = model, tokenizer, chat_template
        self.load_s = load_s
        self.path: Path | None = None
        self._cached_ids: list[int] = []   # ids whose K/V are in the model's cache, in order
        # Logit rows past the tokenizer's table (a file with fewer tokens than embedding rows) are
        # never sampled: they have no text.
        self._n_sample = min(int(model.config.n_vocab), tokenizer.n_vocab)

    @classmethod
    def load(cls, model: str | os.PathLike[str], n_ctx: int = 4096, threads: int = 0,
             on_download: Callable[[str], None] | None = None, q1_decode: str = "float",
             kv_cache: str = "f32") -> "Generator":
        """Resolve (short name or path), load weights, tokenizer and template; `load_s` times it."""
        from .hub import resolve_model
        from .model import Qwen3Model

        path = resolve_model(model, on_download=on_download)
        t0 = time.perf_counter()
        qwen = Qwen3Model.load(path, n_ctx=n_ctx, threads=threads, q1_decode=q1_decode, kv_cache=kv_cache)
        meta = qwen.gguf.metadata
        gen = cls(qwen, BonsaiTokenizer.from_metadata(meta), ChatTemplate.from_metadata(meta),
                  load_s=time.perf_counter() - t0)
        qwen.gguf.forget_vocabulary()        # the tokenizer holds its own copy (measured -15 MB resident)
        gen.path = Path(path)
        return gen

    # -----------------------------------------------------------------------------------------------
    # prompt -> ids
    # -----------------------------------------------------------------------------------------------
    def render(self, prompt: Prompt, chat: bool = True, thinking: bool = False) -> str:
        """The prompt text the model will see."""
        if chat:
            messages = [{"role": "user", "content": prompt}] if isinstance(prompt, str) else list(prompt)
            return self.chat_template.render(messages, add_generation_prompt=True, enable_thinking=thinking)
        if not isinstance(prompt, str):
            raise GenerationError("a raw (non-chat) prompt must be text, not a list of messages")
        return prompt

    def prompt_ids(self, prompt: Prompt, chat: bool = True, thinking: bool = False) -> list[int]:
        """Token ids of the prompt; special-token texts are parsed, so hand-written chat prompts work."""
        ids = self.tokenizer.encode(self.render(prompt, chat, thinking), parse_special=True, add_special=True)
        if not ids:
            raise GenerationError("empty prompt")
        n_ctx = int(self.model.n_ctx)
        if len(ids) >= n_ctx:
            raise GenerationError(f"prompt is {len(ids)} tokens, which does not fit n_ctx={n_ctx} "
                                  f"(leave room for the answer: raise --n-ctx or shorten the prompt)")
        return ids

    # -----------------------------------------------------------------------------------------------
    # generation
    # -----------------------------------------------------------------------------------------------
    def stream(self, prompt: Prompt, chat: bool = True, max_tokens: int = 512,
               sampling: SamplingParams | None = None, stop: Sequence[str] | None = None,
               thinking: bool = False) -> Iterator[str]:
        """Yield text pieces as they are generated (for the ids, finish reason and timings as well, call
        `generate` with `on_piece`)."""
        result, pieces = self._begin(prompt, chat, max_tokens, sampling, stop, thinking)
        yield from pieces

    def generate(self, prompt: Prompt, chat: bool = True, max_tokens: int = 512,
                 sampling: SamplingParams | None = None, stop: Sequence[str] | None = None,
                 thinking: bool = False, on_piece: Callable[[str], None] | None = None) -> GenerationResult:
        """Run to completion and return text, ids, finish reason and timings. `on_piece` receives each text
        piece as it is generated (streaming); an exception it raises stops the generation there."""
        result, pieces = self._begin(prompt, chat, max_tokens, sampling, stop, thinking)
        for piece in pieces:
            if on_piece is not None:
                on_piece(piece)
        return result

    def _begin(self, prompt: Prompt, chat: bool, max_tokens: int, sampling: SamplingParams | None,
               stop: Sequence[str] | None, thinking: bool) -> tuple[GenerationResult, Iterator[str]]:
        """The result record (filled in as the pieces are produced) and the iterator of pieces."""
        t_start = time.perf_counter()
        if max_tokens < 1:
            raise GenerationError(f"max_tokens must be >= 1, got {max_tokens}")
        ids = self.prompt_ids(prompt, chat, thinking)
        result = GenerationResult(prompt_token_ids=ids, timings=Timings(load_s=self.load_s),
                                  kernels=dict(getattr(self.model, "kernel_paths", {})),
                                  kv_cache=getattr(self.model, "kv_cache_type", ""))
        return result, self._run(ids, max_tokens, Sampler(sampling), _StopMatcher(stop or ()), result, t_start)

    def _prefill(self, ids: list[int], result: GenerationResult) -> np.ndarray:
        """Reuse the longest cached prefix (keeping >= MATVEC_MAX_ROWS + 1 tokens to recompute), prefill the rest."""
        model = self.model
        if model.n_past != len(self._cached_ids):   # someone else used the model: trust nothing
            self._cached_ids = []
            model.reset()
        common = 0
        for a, b in zip(self._cached_ids, ids):
            if a != b:
                break
            common += 1
        # keep enough of the prompt's tail to recompute that it takes the same (matmul) kernel as a full prefill:
        # the same prompt gives the same logits whether or not most of it was cached (see prefill_chunks)
        common = max(0, min(common, len(ids) - (MATVEC_MAX_ROWS + 1)))
        model.truncate(common)
        self._cached_ids = self._cached_ids[:common]
        result.cached_prompt_tokens = common
        t0 = time.perf_counter()
        try:
            logits = model.prefill(ids[common:])
        except BaseException:   # a failed prefill leaves the cache in an unknown state
            self._cached_ids = []
            model.reset()
            raise
        self._cached_ids = list(ids)
        dt = time.perf_counter() - t0
        result.timings.prompt_s = dt
        result.timings.prompt_tokens_per_s = (len(ids) - common) / dt if dt > 0 else 0.0
        return logits

    def _run(self, ids: list[int], max_tokens: int, sampler: Sampler, stops: _StopMatcher,
             result: GenerationResult, t_start: float) -> Iterator[str]:
        tok, model, timings = self.tokenizer, self.model, result.timings
        logits = self._prefill(ids, result)
        decoder = tok.stream_decoder()
        history = list(ids)
        pieces: list[str] = []
        gen_s, n_decoded = 0.0, 0
        while True:
            t0 = time.perf_counter()
            token = sampler.sample(logits[: self._n_sample], history)
            if not result.token_ids:
                timings.ttft_s = time.perf_counter() - t_start
            if token in tok.eog_ids:
                result.finish_reason = "eog"
                break
            result.token_ids.append(token)
            history.append(token)
            out, stopped = stops.feed(decoder.push(token))
            if out:
                pieces.append(out)
                yield out
            if stopped:
                result.finish_reason = "stop"
                break
            if len(result.token_ids) >= max_tokens or model.n_past >= model.n_ctx:
                result.finish_reason = "length"
                break
            logits = model.decode(token)
            self._cached_ids.append(token)
            n_decoded += 1
            gen_s += time.perf_counter() - t0
        if result.finish_reason != "stop":
            out, stopped = stops.feed(decoder.flush())
            out += "" if stopped else stops.finish()
            if stopped:
                result.finish_reason = "stop"
            if out:
                pieces.append(out)
                yield out
        result.text = "".join(pieces)
        timings.gen_s = gen_s
        timings.gen_tokens_per_s = n_decoded / gen_s if gen_s > 0 else 0.0
