"""Built-in components without a model: prompt layout, citations, the reranker slot, chat history trimming."""
from __future__ import annotations

from dataclasses import replace

from ragbit.config import RagbitConfig
from ragbit.pipeline import Pipeline
from ragbit.pipeline.components.citation_extractor import CitationExtractor
from ragbit.pipeline.conversation import Conversation
from ragbit.pipeline.components.bonsai_generator import BonsaiGenerator
from ragbit.pipeline.components.context_packer import pack
from ragbit.pipeline.components.prompt_builder import PromptBuilder
from ragbit.pipeline.components.prompt_builder import SYSTEM_PROMPT
from ragbit.pipeline.components.reranker import Reranker
from ragbit.pipeline.standard import standard_pipeline
from ragbit.search.searcher import Hit


def make_hits() -> list[Hit]:
    return [Hit("a.py", 1, 2, "", "python", 0.9, "def a():\n    return 1", 1),
            Hit("b.py", 5, 6, "", "python", 0.5, "def b():\n    return 2", 2)]


def test_prompt_layout_system_history_then_context_and_question(bonsai_tokenizer):
    ctx = pack(make_hits(), lambda t: len(bonsai_tokenizer.encode(t)), budget=500)
    history = [{"role": "user", "content": "earlier"}, {"role": "assistant", "content": "reply [1]"}]
    messages = PromptBuilder().run(query="what does b return?", context=ctx, history=history)["messages"]
    assert [m["role"] for m in messages] == ["system", "user", "assistant", "user"]
    assert messages[0]["content"] == SYSTEM_PROMPT and "[n]" in SYSTEM_PROMPT
    last = messages[-1]["content"]
    assert last.index("[1] a.py:1-2") < last.index("[2] b.py:5-6") < last.index("Question: what does b return?")


def test_citation_extractor_component(bonsai_tokenizer):
    ctx = pack(make_hits(), lambda t: len(bonsai_tokenizer.encode(t)), budget=500)
    sources = CitationExtractor().run(answer="b returns 2 [2].", context=ctx)["sources"]
    assert [(s.n, s.path, s.start_line, s.end_line, s.cited) for s in sources] == [(2, "b.py", 5, 6, True)]


class ReverseReranker(Reranker):
    """A stand-in reranker: reverses the order (any component with run(query, hits) fits the slot)."""

    def run(self, query: str, hits: list[Hit]) -> dict:
        return {"hits": [replace(h, rank=r) for r, h in enumerate(reversed(hits), start=1)]}


class FixedHits:
    outputs = {"hits": list[Hit]}

    def run(self, query: str) -> dict:
        return {"hits": make_hits()}


def test_reranker_slot_sits_between_retriever_and_packer(tmp_path, bonsai_tokenizer):
    from ragbit.pipeline.components.context_packer import ContextPacker

    p = Pipeline(inputs={"query": str})
    p.add("retriever", FixedHits()).add("reranker", ReverseReranker())
    p.add("packer", ContextPacker(budget=500, tokenizer=bonsai_tokenizer))
    result = p.run(query="q")
    assert [b.path for b in result["packer"]["context"].blocks] == ["b.py", "a.py"]

    cfg = RagbitConfig.load(tmp_path, overrides={"query": {"reranker": "some/cross-encoder"}})
    conns = standard_pipeline(cfg).spec()["connections"]
    assert "retriever.hits -> reranker.hits" in conns and "reranker.hits -> packer.hits" in conns
    assert "query -> reranker.query" in conns


class _LoadedGenerator:
    def __init__(self, tokenizer):
        self.tokenizer = tokenizer


def test_chat_history_drops_oldest_turns_when_the_window_is_full(tmp_path, bonsai_tokenizer):
    cfg = RagbitConfig.load(tmp_path, overrides={"query": {"budget": 200}})
    gen = BonsaiGenerator(n_ctx=1024, max_tokens=100, generator=_LoadedGenerator(bonsai_tokenizer))
    conv = Conversation(cfg, pipeline=Pipeline().add("generator", gen))  # trimming reads the generator's limits
    turn = lambda i: [{"role": "user", "content": f"question {i} " + "word " * 150},  # noqa: E731
                      {"role": "assistant", "content": f"answer {i}"}]
    conv.history = turn(1) + turn(2) + turn(3) + turn(4) + turn(5)
    kept = conv._fitting_history()
    room = 1024 - 100 - 200 - 300
    cost = sum(len(bonsai_tokenizer.encode(m["content"])) + 8 for m in kept)
    assert cost <= room
    assert kept[-2]["content"].startswith("question 5") and kept[0]["role"] == "user"
    assert len(kept) < 10 and len(kept) % 2 == 0
    assert conv.history == kept
