"""GroundingChecker: which names, calls, paths and citations of the answer the repository backs up.

The check itself is `ragbit/symbols/grounding.py`; this component gives it the index's symbol table (loaded
once, reloaded when a new generation is committed) and the packed context. An index written before symbol
tables, or an unreadable one, gives a Grounding whose `note` says why nothing was checked: the answer is never
lost to the check.
"""
from __future__ import annotations

from typing import Any

from ragbit.config import RagbitConfig
from ragbit.errors import RagbitError
from ragbit.pipeline.contract import Component, component
from ragbit.pipeline.components.citation_extractor import strip_thinking
from ragbit.pipeline.components.context_packer import PackedContext
from ragbit.symbols.grounding import Grounding, check_answer


@component
class GroundingChecker(Component):
    outputs = {"grounding": Grounding}

    def __init__(self, config: RagbitConfig) -> None:
        self.config = config
        self._table: Any = None
        self._generation: Any = None

    @classmethod
    def from_config(cls, cfg: RagbitConfig, **params: Any) -> "GroundingChecker":
        return cls(cfg, **params)

    def symbols(self):
        """The symbol table, or a string saying why there is none."""
        return self._symbols()

    def _symbols(self):
        """The committed generation's symbol table, reloaded when the generation changed."""
        from indexes.errors import IndexesError
        from ragbit.index_layout import open_index_store
        from ragbit.symbols.reader import load_symbols
        generation = open_index_store(self.config).current()
        if self._table is None or generation != self._generation:
            try:
                self._table, self._generation = load_symbols(self.config), generation
            except (RagbitError, IndexesError, OSError) as e:
                self._table, self._generation = None, None
                return str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        return self._table

    def run(self, answer: str, context: PackedContext) -> dict[str, Any]:
        answer = strip_thinking(answer)
        if not answer:
            return {"grounding": Grounding()}
        table = self._symbols()
        if isinstance(table, str):
            return {"grounding": Grounding(note=table)}
        return {"grounding": check_answer(answer, table, context.blocks)}
