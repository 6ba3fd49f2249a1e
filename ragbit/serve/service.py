"""What `ragbit serve` and `ragbit mcp` do, as plain synchronous calls over the existing pipeline.

One object per served repository holds the query pipeline (`ragbit.pipeline.standard.query_pipeline`), its
loaded generator and embedder, and a Searcher for retrieval-only calls. The HTTP app and the MCP server
are thin layers over these methods; neither re-implements retrieval or generation.

Threads: generation (`rag_answer`, `plain_generate`) runs only on the engine queue's one thread;
`search` and `embed` run on worker threads beside it (one at a time, under `_retrieval_lock`), with their
own Searcher sharing the embedding model. The index is refreshed (incrementally) before a retrieval, never
in the middle of one, under `_index_lock`, unless a watcher keeps it fresh (`refresh_on_request=False`); a
refresh is skipped while nothing the index is built from has moved since the last one (freshness.py).
"""
from __future__ import annotations

import threading
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterator

from ragbit.config import RagbitConfig
from ragbit.errors import RagbitError

RAG_MODEL = "ragbit"


class ServeError(RagbitError, ValueError):
    """A request the service cannot answer as asked (unknown model, no model loaded, ...)."""


class ModelUnavailable(ServeError):
    """No generator is loaded (offline, missing or corrupt model file): retrieval still works."""


class NotThisIndex(ServeError):
    """A `ragbit search` client that means another index than the one served here."""


class ConfigMismatch(ServeError):
    """A `ragbit search` client whose configuration gives other results than this server's (or turns the
    server off): it must search in-process, and a background server should make way for a fresh one."""


@dataclass
class Generation:
    """What a generation request produced, in the units the OpenAI API reports."""
    text: str
    finish_reason: str                    # engine reason: eog | stop | length
    prompt_tokens: int
    completion_tokens: int
    cached_tokens: int = 0
    sources: list[dict[str, Any]] = field(default_factory=list)   # ragbit model only
    grounding: list[dict[str, Any]] = field(default_factory=list)  # ragbit model only: the answer's names checked

    def ragbit_extra(self) -> dict[str, Any] | None:
        """The response's `ragbit` field: sources and grounding, when there are any."""
        extra = {name: value for name, value in (("sources", self.sources), ("grounding", self.grounding)) if value}
        return extra or None


@dataclass
class Sampling:
    """One request's generation settings; None = the repository's `[generator]` default."""
    max_tokens: int | None = None
    temperature: float | None = None
    top_p: float | None = None
    seed: int | None = None
    stop: list[str] = field(default_factory=list)


def model_label(model: str) -> str:
    """The name clients use for the plain model: a short name as is, a .gguf path by its file stem."""
    return Path(model).stem if model.endswith(".gguf") or "/" in model else model


class RagbitService:
    def __init__(self, cfg: RagbitConfig, refresh_on_request: bool = True) -> None:
        from ragbit.pipeline.components.bonsai_generator import BonsaiGenerator
        from ragbit.pipeline.components.hybrid_retriever import HybridRetriever
        from ragbit.pipeline.standard import query_pipeline

        self.cfg = cfg
        self.refresh_on_request = refresh_on_request
        self.pipeline = query_pipeline(cfg)
        retrievers = self.pipeline.find_components(HybridRetriever)
        generators = self.pipeline.find_components(BonsaiGenerator)
        self._retriever = retrievers[0] if retrievers else None
        self._bonsai = generators[0] if generators else None
        self.embedder = self._retriever.shared_embedder() if self._retriever else None
        self._searcher: Any = None
        self._index_lock = threading.Lock()
        self._tree: Any = None           # TreeStamp of the last refresh: skip the next one while it holds
        self._retrieval_lock = threading.Lock()
        self.model_error = ""            # why generation is unavailable ("" = fine or not tried yet)
        self.model_name = model_label(cfg.generator.model)
        self.embedding_model_name = cfg.embed.model

    # ------------------------------------------------------------------------------------------ names
    @property
    def rag_names(self) -> set[str]:
        return {RAG_MODEL, f"{RAG_MODEL}:{self.model_name}"}

    def kind_of(self, model: str) -> str:
        """'rag' or 'plain' for a chat model name; ServeError (404 upstream) for anything else."""
        if model in self.rag_names:
            return "rag"
        if model in (self.model_name, self.cfg.generator.model):
            return "plain"
        raise ServeError(f"model {model!r} is not served here; try {RAG_MODEL!r} or {self.model_name!r}")

    # ------------------------------------------------------------------------------------------ start-up
    def prepare(self, load_model: bool = True, on_note: Callable[[str], None] = lambda m: None) -> None:
        """Index (first time) or refresh the repository, open the searcher, and load the generator now
        rather than on the first request. A model that cannot be loaded leaves retrieval working."""
        self.refresh(force=True)
        self._searcher_for().search("warm up", k=1)
        if load_model:
            try:
                self.generator()
            except ModelUnavailable as e:
                on_note(f"warning: {e}; serving retrieval and embeddings only")

    def generator(self) -> Any:
        """The loaded `generator.Generator` (loaded once, shared with the pipeline's components)."""
        from ragbit.pipeline.model_loader import model_errors
        if self._bonsai is None:
            raise ModelUnavailable("this pipeline has no generator")
        if self._bonsai.generator is None:
            try:
                self.pipeline.warm_up()
            except model_errors() as e:
                self.model_error = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
                raise ModelUnavailable(f"no model loaded: {self.model_error}") from None
        return self._bonsai.generator

    # ------------------------------------------------------------------------------------------ index
    def refresh(self, force: bool = False) -> bool:
        """Bring the index up to date with the files (incremental); True if it changed."""
        if not (force or self.refresh_on_request):
            return False
        from ragbit.pipeline.standard import refresh_index
        from ragbit.serve.freshness import TreeStamp
        with self._index_lock:
            if not force and self._tree is not None and self._tree.unchanged():
                return False             # no directory, file or index pointer moved since the last refresh
            tree = TreeStamp.take(self.cfg) if self.refresh_on_request else None
            self._tree = None
            _, changed = refresh_index(self.cfg, embedder=self.embedder, progress=None if force else False)
            if tree is not None:
                self._tree = tree.with_index(self.cfg.index_dir, refreshed=changed is not None)
        return bool(changed)

    def _searcher_for(self) -> Any:
        if self._searcher is None:
            from ragbit.search.searcher import Searcher
            self._searcher = Searcher(self.cfg, embedder=self.embedder)
        return self._searcher

    def search(self, query: str, k: int | None = None, mode: str | None = None,
               max_hits_per_file: int | None = None, defaults: Any = None) -> Any:
        """Retrieval only: the ranked `Hits` (a list; `.mode`, `.dense_complete`, and `.stale`: hit files
        deleted or changed since indexing). None means the `[search]` setting of `defaults` (a SearchConfig;
        this repository's when not given). A Searcher reopens the index after a refresh by itself."""
        from ragbit.search.staleness import stale_files
        self.refresh()
        s = defaults or self.cfg.search
        with self._retrieval_lock:
            searcher = self._searcher_for()
            hits = searcher.search(query, k=s.k if k is None else k, mode=mode or s.mode,
                                   max_hits_per_file=max_hits_per_file, list_config=s)
            hits.stale = stale_files(self.cfg.repo, searcher.table, (h.path for h in hits))
        return hits

    def client_search_config(self, repo: str, index_dir: str, config: dict[str, Any] | None) -> Any:
        """The `[search]` settings of a `ragbit search` client (its repository's config, loaded as the CLI
        loads it), after checking that it means this index with settings that give the same results
        (`ragbit.search.client.fingerprint`). NotThisIndex / ConfigMismatch otherwise."""
        from ragbit.search.client import fingerprint
        if Path(index_dir).resolve() != Path(self.cfg.index_dir).resolve():
            raise NotThisIndex(f"this server serves {Path(self.cfg.index_dir).resolve()}")
        theirs = RagbitConfig.load(repo, overrides={"index": {"dir": index_dir}})
        mine = fingerprint(self.cfg)
        if fingerprint(theirs) != mine or (config is not None and config != mine):
            raise ConfigMismatch("this server serves another index or configuration")
        if not theirs.search.server:
            raise ConfigMismatch("the configuration turns the search server off")
        return theirs.search

    def embed(self, texts: list[str]) -> tuple[Any, int]:
        """(unit vectors float32 (n, dim), token count) with the index's embedding model."""
        with self._retrieval_lock:
            vectors = self.embedder.embed(texts, progress=False)
        count = getattr(self.embedder, "count_tokens", None)
        tokens = sum(count(t) + 2 for t in texts) if count else sum(len(t.split()) for t in texts)
        return vectors, tokens

    def status(self) -> dict[str, Any]:
        import dataclasses
        from ragbit.search.status import index_status
        with self._index_lock:
            return dataclasses.asdict(index_status(self.cfg))

    # ------------------------------------------------------------------------------------------ generation
    def _sampling_params(self, s: Sampling) -> Any:
        from generator.sampling import SamplingParams
        from ragbit.pipeline.model_loader import sampling_settings
        base = sampling_settings(self.cfg)
        for name in ("temperature", "top_p", "seed"):
            value = getattr(s, name)
            if value is not None:
                base[name] = value
        return SamplingParams(**base)

    @contextmanager
    def _request_settings(self, s: Sampling) -> Iterator[None]:
        """The generator component with this request's settings, restored after (engine thread only)."""
        gen = self._bonsai
        saved = (gen.max_tokens, gen.sampling, gen.stop)
        sp = self._sampling_params(s)
        gen.max_tokens = s.max_tokens or self.cfg.generator.max_tokens
        gen.sampling = {k: getattr(sp, k) for k in ("temperature", "top_k", "top_p", "min_p", "repeat_penalty", "seed")}
        gen.stop = list(s.stop)
        try:
            yield
        finally:
            gen.max_tokens, gen.sampling, gen.stop = saved

    def rag_answer(self, messages: list[dict[str, str]], s: Sampling, emit: Callable[[str], None],
                   check: Callable[[], None]) -> Generation:
        """Retrieval-augmented answer to the last user message; earlier user/assistant turns are history.
        Runs `ragbit.pipeline.standard.ask` with this request's sampling settings."""
        from ragbit.pipeline.standard import ask
        question, history = split_conversation(messages)
        self.generator()
        self.refresh()

        def on_token(piece: str) -> None:
            check()
            emit(piece)

        with self._request_settings(s):
            answer = ask(self.cfg, question, on_token=on_token, pipeline=self.pipeline, refresh=False,
                         history=history or None)
        if answer.error:
            raise ModelUnavailable(answer.error)
        st = answer.stats
        return Generation(text=answer.text, finish_reason=st.finish_reason, prompt_tokens=st.prompt_tokens,
                          completion_tokens=st.generated_tokens, cached_tokens=st.cached_prompt_tokens,
                          sources=[source_json(x) for x in answer.sources],
                          grounding=answer.grounding.to_json() if answer.grounding is not None else [])

    def plain_generate(self, prompt: str | list[dict[str, str]], chat: bool, s: Sampling,
                       emit: Callable[[str], None], check: Callable[[], None]) -> Generation:
        """The model alone: chat messages through its chat template, or raw text (completions)."""
        gen = self.generator()

        def on_piece(piece: str) -> None:
            check()              # raises when the client has gone: the generation stops at this token
            emit(piece)

        r = gen.generate(prompt, chat=chat, max_tokens=s.max_tokens or self.cfg.generator.max_tokens,
                         sampling=self._sampling_params(s), stop=s.stop, thinking=self.cfg.query.thinking,
                         on_piece=on_piece)
        return Generation(text=r.text, finish_reason=r.finish_reason, prompt_tokens=len(r.prompt_token_ids),
                          completion_tokens=len(r.token_ids), cached_tokens=r.cached_prompt_tokens)


def split_conversation(messages: list[dict[str, str]]) -> tuple[str, list[dict[str, str]]]:
    """(question, history) from OpenAI messages: the last message must be the user's; system messages are
    dropped (ragbit's own system prompt tells the model how to cite)."""
    turns = [m for m in messages if m["role"] in ("user", "assistant")]
    if not turns or turns[-1]["role"] != "user" or not turns[-1]["content"].strip():
        raise ServeError("the last message must be a non-empty user message (the question)")
    return turns[-1]["content"], turns[:-1]


def source_json(source: Any) -> dict[str, Any]:
    d = source.to_dict()
    return {"n": d["n"], "path": d["path"], "start_line": d["start_line"], "end_line": d["end_line"],
            "score": round(float(d["score"]), 6), "cited": d["cited"]}
