"""HybridRetriever: the pipeline's door into a ragbit index (BM25 + dense, fused), via Searcher."""
from __future__ import annotations

from typing import Any

from ragbit.config import RagbitConfig
from ragbit.pipeline.contract import Component, component
from ragbit.search.searcher import Hit


@component
class HybridRetriever(Component):
    """`query` -> the `k` best chunks for a prompt. The index is opened on the first run, not in __init__.

    Its defaults come from `[query]`, not `[search]`: a list a person reads wants many files (a per-file cap),
    a prompt wants the code that answers, which often sits in one file. Each hit carries its whole
    definition (`Hit.unit`) when `whole_definitions` is on, for the packer to use if it fits, and the best hit is
    followed by the definition of its own file that it calls (`Hit.callees`, see `Searcher`)."""

    outputs = {"hits": list[Hit]}

    def __init__(self, config: RagbitConfig, k: int | None = None, mode: str | None = None,
                 max_hits_per_file: int | None = None, embedder: Any = None,
                 whole_definitions: bool | None = None) -> None:
        self.config = config
        self.embedder = embedder         # an already-loaded Embedder to share (default: Searcher loads one)
        self.k = config.query.k if k is None else k
        self.mode = mode or config.search.mode
        self.max_hits_per_file = config.query.max_hits_per_file if max_hits_per_file is None else max_hits_per_file
        self.whole_definitions = config.query.whole_definitions if whole_definitions is None else whole_definitions
        self._searcher: Any = None
        self.pinned: list[Hit] = []      # hits put first whatever the question (the repair pass sets them)

    @classmethod
    def from_config(cls, cfg: RagbitConfig, **params: Any) -> "HybridRetriever":
        return cls(cfg, **params)

    def shared_embedder(self) -> Any:
        """The embedding model this retriever embeds questions with, made now if none was given.

        `ask()` indexes with this same instance, so one query loads the model once."""
        if self.embedder is None:
            from ragbit.indexing.embeddings import Embedder
            self.embedder = Embedder(self.config.embed)
            self._searcher = None            # a searcher opened before would load a second copy
        return self.embedder

    def warm_up(self) -> None:
        from ragbit.search.searcher import Searcher
        self._searcher = Searcher(self.config, embedder=self.embedder)

    def reload(self) -> None:
        """Forget the loaded index (it was refreshed on disk); the next run opens the new one."""
        self._searcher = None

    def run(self, query: str) -> dict[str, Any]:
        if self._searcher is None:
            self.warm_up()
        hits = self._searcher.search(query, k=self.k, mode=self.mode, max_hits_per_file=self.max_hits_per_file,
                                     units=self.whole_definitions)
        flat: list[Hit] = []
        for hit in hits:                 # a hit, then the definitions it calls (Hit.callees) right behind it
            flat.append(hit)
            flat.extend(hit.callees or ())
        return {"hits": list(self.pinned) + flat}
