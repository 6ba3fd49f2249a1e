"""The reranker slot: reorder retrieved hits with a model that reads query and chunk TOGETHER.

A cross-encoder is slower than the bi-encoder used for retrieval but judges relevance better, so it is
applied to the k retrieved chunks only. Any component with `run(query, hits) -> {"hits": ...}` fits the
slot; `CrossEncoderReranker` is the one shipped, over a sentence-transformers CrossEncoder model. No
cross-encoder ships with ragbit's dependencies and model hubs may be unreachable, so it is off by
default (QueryConfig.reranker = "") and a model that cannot be loaded is a clear RerankerError.
"""
from __future__ import annotations

from dataclasses import replace
from typing import Any

from ragbit.config import RagbitConfig
from ragbit.errors import RagbitError
from ragbit.pipeline.contract import Component, component
from ragbit.search.searcher import Hit


class RerankerError(RagbitError, RuntimeError):
    """The reranking model cannot be loaded or run."""


class Reranker(Component):
    """The slot's contract: same hits out, best first, `score` replaced by the reranker's score."""

    outputs = {"hits": list[Hit]}

    def run(self, query: str, hits: list[Hit]) -> dict[str, Any]:  # pragma: no cover - abstract
        raise NotImplementedError


@component
class CrossEncoderReranker(Reranker):
    def __init__(self, model: str, top_k: int | None = None, batch_size: int = 16) -> None:
        self.model = model
        self.top_k = top_k
        self.batch_size = batch_size
        self._encoder: Any = None

    @classmethod
    def from_config(cls, cfg: RagbitConfig, **params: Any) -> "CrossEncoderReranker":
        return cls(**{"model": cfg.query.reranker, **params})

    def warm_up(self) -> None:
        if not self.model:
            raise RerankerError("no reranker model configured ([query] reranker in ragbit.toml)")
        try:
            from sentence_transformers import CrossEncoder
            self._encoder = CrossEncoder(self.model, device="cpu")
        except Exception as e:  # offline hub, bad path, not a cross-encoder: all one line for the user
            raise RerankerError(f"cannot load reranker model '{self.model}': {str(e).splitlines()[0]}") from None

    def run(self, query: str, hits: list[Hit]) -> dict[str, Any]:
        if not hits:
            return {"hits": []}
        scores = self._encoder.predict([(query, h.text) for h in hits], batch_size=self.batch_size)
        ranked = sorted(zip(hits, scores), key=lambda pair: -float(pair[1]))[: self.top_k or len(hits)]
        return {"hits": [replace(h, score=float(s), rank=r) for r, (h, s) in enumerate(ranked, start=1)]}
