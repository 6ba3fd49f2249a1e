"""The default query pipeline and `ask()`: what `ragbit query` runs, callable from Python.

    retriever -> [reranker] -> packer -> prompt -> generator -> citations -> [grounding]

`ask()` adds what a user expects around it: the index is built (first time) or refreshed (files changed)
before retrieving, tokens are streamed to a callback, and when no model is usable (offline hub, missing
or corrupt file) the retrieved sources still come back, with `Answer.error` saying why there is no answer.
"""
from __future__ import annotations

import time
from pathlib import Path
from dataclasses import dataclass, field
from typing import Any, Callable

from indexes.errors import IndexesError
from ragbit.config import RagbitConfig
from ragbit.pipeline.components.citation_extractor import CitationExtractor
from ragbit.pipeline.contract import PipelineError
from ragbit.pipeline.components.bonsai_generator import BonsaiGenerator, GenerationStats
from ragbit.pipeline.model_loader import model_errors, start_kernel_warmup
from ragbit.pipeline.components.context_packer import ContextPacker
from ragbit.pipeline.components.context_packer import PackedContext
from ragbit.pipeline.pipeline import Pipeline, query_inputs
from ragbit.pipeline.components.prompt_builder import PromptBuilder
from ragbit.pipeline.components.grounding_checker import GroundingChecker
from ragbit.symbols.grounding import Grounding
from ragbit.pipeline.components.citation_extractor import Source, sources_for
from ragbit.pipeline.components.reranker import CrossEncoderReranker
from ragbit.pipeline.components.hybrid_retriever import HybridRetriever


def standard_pipeline(cfg: RagbitConfig) -> Pipeline:
    p = Pipeline(**query_inputs())
    p.add("retriever", HybridRetriever(cfg))
    if cfg.query.reranker:
        p.add("reranker", CrossEncoderReranker(cfg.query.reranker))
    p.add("packer", ContextPacker.from_config(cfg))
    p.add("prompt", PromptBuilder())
    p.add("generator", BonsaiGenerator.from_config(cfg))
    p.add("citations", CitationExtractor())
    if cfg.query.grounding:
        p.add("grounding", GroundingChecker.from_config(cfg))
    return p.build()


def query_pipeline(cfg: RagbitConfig) -> Pipeline:
    """The [pipeline] of ragbit.toml if it lists components, else the standard one."""
    return Pipeline.from_config(cfg) if cfg.pipeline.components else standard_pipeline(cfg)


@dataclass
class Answer:
    question: str
    text: str = ""                                   # "" when no answer was generated
    sources: list[Source] = field(default_factory=list)
    hits: list[Any] = field(default_factory=list)    # retrieved, before packing
    context: PackedContext | None = None
    messages: list[dict] = field(default_factory=list)  # what the generator was asked (system, history, user)
    stats: GenerationStats | None = None
    timings: dict[str, float] = field(default_factory=dict)       # index_s, retrieval_s, pack_s, load_s, ttft_s, ...
    step_timings: dict[str, float] = field(default_factory=dict)  # pipeline component name -> run() seconds
    error: str = ""                                  # why there is no answer (no model, ...)
    grounding: Grounding | None = None               # what the answer names, checked against the index
    repair: Any = None                               # ragbit.symbols.repair.Repair when a repair pass ran

    def to_json(self) -> dict[str, Any]:
        ctx = self.context
        return {
            "question": self.question,
            "answer": self.text,
            "error": self.error or None,
            "sources": [s.to_dict() for s in self.sources],
            "sources_cited": bool(self.sources) and all(s.cited for s in self.sources),
            "prompt_tokens": self.stats.prompt_tokens if self.stats else None,
            "cached_prompt_tokens": self.stats.cached_prompt_tokens if self.stats else None,
            "generated_tokens": self.stats.generated_tokens if self.stats else None,
            "finish_reason": self.stats.finish_reason if self.stats else None,
            "context_tokens": ctx.tokens if ctx else 0,
            "budget": ctx.budget if ctx else None,
            "omitted": {"count": len(ctx.omitted), "paths": sorted({o.path for o in ctx.omitted})} if ctx
                       else {"count": 0, "paths": []},
            "timings": {k: round(v, 4) for k, v in self.timings.items()},
            "prompt": self.stats.prompt if self.stats else None,
            "grounding": self.grounding.to_json() if self.grounding is not None else [],
            "repair": self.repair.to_json() if self.repair is not None else None,
        }


def refresh_index(cfg: RagbitConfig, embedder: Any = None, progress: bool | None = None,
                  on_note: Callable[[str], None] | None = None) -> tuple[float, bool | None]:
    """Index the repository if it has no index (with progress), else refresh it (quietly: nothing to do
    is the common case). Returns (seconds spent, whether the index changed). While another process writes the
    index, or when the index directory is read-only, the committed generation is used as it is (no wait, no
    error): changed is then None (not known).

    With `on_note` (the caller answers a question and can tell the user): when more than `[index]
    background_after` chunks would have to be embedded, the chunk table and BM25 are committed, the rest is
    embedded by a background process (ragbit/indexing/background.py), and `on_note` hears one line saying so."""
    from indexes.store import IndexFormatError, IndexLockedError, IndexNotWritableError
    from ragbit.index_layout import BACKGROUND_LOG, background_indexer, open_index_store
    from ragbit.indexing import background
    from ragbit.indexing.indexer import index_repository
    t0 = time.perf_counter()
    store = open_index_store(cfg)
    defer = on_note is not None and cfg.index.background_after > 0
    pid = background_indexer(cfg.index_dir) if defer else None
    if pid and store.current() is not None:         # it holds the writer lock; readers use what is committed
        on_note(f"the index is still being embedded in the background (pid {pid}); this answer used what is "
                "committed so far")
        return time.perf_counter() - t0, None
    if progress is None:
        try:
            progress = store.current() is None
        except IndexFormatError:            # a damaged pointer: index_repository rebuilds, with progress
            progress = True
    try:
        report = index_repository(cfg, progress=progress, embedder=embedder,
                                  embed_at_most=cfg.index.background_after if defer else None)
    except (IndexLockedError, IndexNotWritableError):
        # another `ragbit index` is writing, or nobody may: readers use the last committed generation
        if store.current() is None:
            raise
        return time.perf_counter() - t0, None
    changed = bool(report.files_added or report.files_changed or report.files_removed or report.rechunked_all)
    if report.embedding_deferred:
        pid = background.start(cfg)
        on_note(f"answering from keyword search{' and the vectors there are' if report.chunks_reused else ''}: "
                f"{report.embedding_deferred} chunks are being embedded in the background (pid {pid}, log "
                f"{Path(cfg.index_dir) / BACKGROUND_LOG}); later questions use them once they are done")
        changed = True
    return time.perf_counter() - t0, changed


def _keeping_the_cores(cfg: RagbitConfig):
    """A background indexer of this index (if one runs) waits while the answer is generated: the prompt then runs
    at full speed (ragbit/indexing/background.py)."""
    from contextlib import nullcontext

    from ragbit.index_layout import background_indexer
    from ragbit.indexing.background import answering
    return answering(cfg.index_dir) if background_indexer(cfg.index_dir) else nullcontext()


def ask(cfg: RagbitConfig, question: str, on_token: Callable[[str], None] | None = None,
        pipeline: Pipeline | None = None, refresh: bool = True, history: list[dict] | None = None,
        repair: bool = False, on_repair: Callable[[str], None] | None = None,
        on_note: Callable[[str], None] | None = None) -> Answer:
    """Answer `question` about `cfg.repo` with `pipeline` (default: `query_pipeline(cfg)`).

    `repair`: when the grounding check finds unknown names with close defined ones, generate once more with
    those definitions first in the context (same budget); `on_repair` hears one line saying so before the
    second answer streams. The Answer is then the second one, with `repair` set.

    `on_note`: a large first index is embedded in the background and this hears one line saying so (see
    `refresh_index`); without it, the question waits for the whole index.

    Raises the usual domain errors (no such repo, index locked, ...) except the model ones: those give an
    Answer with sources and `error` set.
    """
    answer = Answer(question)
    pipeline = pipeline or query_pipeline(cfg)
    for generator in pipeline.find_components(BonsaiGenerator):    # a fresh install compiles the engine's
        start_kernel_warmup(generator.model, **generator.engine)     # kernels while the index is refreshed
    if refresh:
        # One embedding model for indexing and for the retriever's question vectors: it loads once.
        retrievers = pipeline.find_components(HybridRetriever)
        embedder = retrievers[0].shared_embedder() if retrievers else None
        answer.timings["index_s"], changed = refresh_index(cfg, embedder=embedder, on_note=on_note)
        if changed:
            for r in retrievers:
                r.reload()
    inputs: dict[str, Any] = {"query": question}
    for name, value in (("history", history), ("on_token", on_token)):
        if name in pipeline.inputs:
            inputs[name] = value
        elif value:
            raise PipelineError(f"this pipeline has no '{name}' input, so it cannot "
                                f"{'hold a conversation' if name == 'history' else 'stream the answer'} "
                                "(build it with Pipeline(**query_inputs()))")
    try:
        with _keeping_the_cores(cfg):
            result = pipeline.run(**inputs)
    except model_errors() as e:
        result = getattr(e, "partial_result", None)
        if result is None or isinstance(e, IndexesError):    # a missing index is not a missing model
            raise
        answer.error = f"no answer generated: {str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__}"
        from generator.hub import BONSAI_MODELS, ModelNotAvailableError
        if isinstance(e, ModelNotAvailableError):         # say how to make a model stick, not only this once
            name = cfg.generator.model.lower() if cfg.generator.model.lower() in BONSAI_MODELS else "bonsai-1.7b"
            answer.error += (f" (`ragbit pull {name}` downloads it where the network allows; RAGBIT_MODEL=PATH "
                             "or [generator] model in ~/.config/ragbit/config.toml makes a file the default)")
    _fill(answer, result, pipeline)
    if repair and answer.text and answer.grounding is not None:
        answer = _repaired(cfg, answer, pipeline, inputs, on_repair) or answer
    return answer


def _repaired(cfg: RagbitConfig, first: Answer, pipeline: Pipeline, inputs: dict[str, Any],
              on_repair: Callable[[str], None] | None) -> Answer | None:
    """The answer of one repair pass (ragbit/symbols/repair.py), or None when there is nothing to repair."""
    from ragbit.symbols.repair import repair_hits
    checkers, retrievers = pipeline.find_components(GroundingChecker), pipeline.find_components(HybridRetriever)
    table = checkers[0].symbols() if checkers else None
    if not retrievers or table is None or isinstance(table, str):
        return None
    hits, repair = repair_hits(first.grounding, table, cfg.repo)
    if not hits:
        return None
    repair.first_answer = first.text
    if on_repair is not None:
        on_repair(repair.note())
    for r in retrievers:
        r.pinned = hits
    try:
        with _keeping_the_cores(cfg):
            result = pipeline.run(**inputs)
    finally:
        for r in retrievers:
            r.pinned = []
    answer = Answer(first.question, timings=dict(first.timings))
    _fill(answer, result, pipeline)
    answer.repair = repair
    return answer


def _fill(answer: Answer, result: Any, pipeline: Pipeline) -> None:
    """Copy the pipeline's outputs (by conventional output names) and step timings into the Answer."""
    answer.step_timings = dict(result.timings)
    answer.hits = result.find("hits") or []
    answer.context = result.find("context")
    answer.messages = result.find("messages") or []
    answer.stats = result.find("stats")
    answer.text = result.find("answer") or ""
    answer.sources = result.find("sources") or []
    answer.grounding = result.find("grounding")
    if not answer.sources and answer.error:            # no answer: list what was packed, or else retrieved
        if answer.context is not None:
            answer.sources = sources_for("", answer.context.blocks)
        else:
            answer.sources = [Source(h.rank, h.path, h.start_line, h.end_line, float(h.score), cited=False)
                              for h in answer.hits]
    timing_names = {HybridRetriever: "retrieval_s", ContextPacker: "pack_s", CrossEncoderReranker: "rerank_s",
                    GroundingChecker: "grounding_s"}
    for name, comp in pipeline.components.items():
        label = timing_names.get(type(comp))
        if label and name in result.timings:
            answer.timings[label] = answer.timings.get(label, 0.0) + result.timings[name]
    if answer.stats is not None:
        answer.timings.update(answer.stats.timings)

