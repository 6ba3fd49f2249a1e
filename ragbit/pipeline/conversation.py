"""A conversation about a repository: every question re-retrieves, earlier turns stay in the messages.

Why keep the earlier user messages exactly as sent (context included): the generator reuses its KV cache
for the longest common token prefix of consecutive prompts, so an unchanged history means only the new
question and its context are processed. The user message kept is the one the pipeline's prompt step built
(`Answer.messages`), not a copy rebuilt here. When the history no longer fits the context window, the oldest
turns are dropped (which costs one full re-read of the shorter prompt); each message's token count is
computed once.
"""
from __future__ import annotations

from typing import Callable

from ragbit.config import RagbitConfig
from ragbit.pipeline.components.bonsai_generator import BonsaiGenerator
from ragbit.pipeline.pipeline import Pipeline
from ragbit.pipeline.components.citation_extractor import strip_thinking
from ragbit.pipeline.standard import Answer, ask, query_pipeline

PER_MESSAGE_TOKENS = 8     # chat-template tokens around each message (<|im_start|>role\n ... <|im_end|>\n)
QUESTION_ALLOWANCE = 300   # system prompt + question + instructions of the new turn, beyond its context


class Conversation:
    def __init__(self, cfg: RagbitConfig, pipeline: Pipeline | None = None, repair: bool = False) -> None:
        self.cfg = cfg
        self.repair = repair                             # one repair pass per answer (`ask(repair=...)`)
        self.pipeline = pipeline or query_pipeline(cfg)
        self.history: list[dict[str, str]] = []
        self._indexed = False
        self._tokens: dict[str, int] = {}                # message content -> token count (each counted once)

    def ask(self, question: str, on_token: Callable[[str], None] | None = None,
            on_repair: Callable[[str], None] | None = None, on_note: Callable[[str], None] | None = None) -> Answer:
        answer = ask(self.cfg, question, on_token=on_token, pipeline=self.pipeline, refresh=not self._indexed,
                     history=self._fitting_history(), repair=self.repair, on_repair=on_repair, on_note=on_note)
        self._indexed = True
        if answer.text and answer.messages and answer.messages[-1].get("role") == "user":
            self.history += [dict(answer.messages[-1]), {"role": "assistant", "content": strip_thinking(answer.text)}]
        return answer

    def reset(self) -> None:
        """Forget the turns so far (`/reset` in `ragbit chat`); the index and the loaded model stay."""
        self.history, self._tokens = [], {}

    def _fitting_history(self) -> list[dict[str, str]]:
        """Drop the oldest turns until history + a new turn fits the model's context window."""
        gens = self.pipeline.find_components(BonsaiGenerator)
        if not self.history or not gens or gens[0].generator is None:
            return list(self.history)
        gen = gens[0]
        room = gen.n_ctx - gen.max_tokens - self.cfg.query.budget - QUESTION_ALLOWANCE
        tokenizer = gen.generator.tokenizer
        for m in self.history:
            if m["content"] not in self._tokens:
                self._tokens[m["content"]] = len(tokenizer.encode(m["content"]))
        self._tokens = {m["content"]: self._tokens[m["content"]] for m in self.history}   # forget dropped turns
        cost = [self._tokens[m["content"]] + PER_MESSAGE_TOKENS for m in self.history]
        start = 0
        while start < len(self.history) and sum(cost[start:]) > room:
            start += 2                                   # a user turn and its answer go together
        self.history = self.history[start:]
        return list(self.history)
