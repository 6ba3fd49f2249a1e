"""Sentence encoders that run without torch (ONNX Runtime, OpenVINO) or in bf16 under torch, and
`load_sentence_model`, which returns the one a backend names (ragbit/indexing/embedding_backends.py says why
each exists and which one "auto" picks).
"""
from __future__ import annotations

import sys
import threading
from collections import deque
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Iterator, Sequence

import numpy as np

from ragbit.indexing.embedding_backends import (BF16_FLAGS, BackendError, configure_torch_threads, cpu_flags,
                                                physical_cores, resolve_backend)
from ragbit.indexing.onnx_export import _load_sentence_transformer, default_cache_dir, ensure_export, valid_export


# ====================================================================================== inference (no torch)
@dataclass
class OnnxSentenceEncoder:
    """A sentence encoder on ONNX Runtime with the SentenceTransformer calls ragbit makes.

    tokenize (Rust `tokenizers`, truncate to max_seq_length) -> batches of texts of similar TOKEN counts, each
    padded to its longest -> ONNX transformer: last_hidden_state (batch, seq, hidden) -> pooling (mean over real
    tokens / CLS / max) -> optional L2 normalisation.
    Why token counts: sentence-transformers sorts texts by characters, and code's characters per token vary too
    much for that: over Django's 59k chunks (256 at a time, batches of 8) character order padded 11.3% of the
    tokens the model ran, token order 1.8%.
    """

    export_dir: Path
    threads: int = 0

    SORT_WINDOW = 4096      # texts tokenized and sorted together (bounds the memory their encodings hold)

    def __post_init__(self):
        from tokenizers import Tokenizer

        self.manifest = valid_export(self.export_dir)
        if self.manifest is None:
            raise BackendError(f"no valid ONNX export in {self.export_dir}")
        self._open_model()
        self._tokenizer = Tokenizer.from_file(str(self.export_dir / "tokenizer.json"))
        self._tokenizer.no_padding()
        self.max_seq_length = int(self.manifest["max_seq_length"])

    def _open_model(self) -> None:
        """An ONNX Runtime session over model.onnx, on every usable core (or `threads`)."""
        import onnxruntime as ort
        opts = ort.SessionOptions()
        opts.intra_op_num_threads = self.threads or physical_cores()
        opts.inter_op_num_threads = 1
        opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        opts.log_severity_level = 3
        # no spin-waiting workers: on a busy laptop they made one-question encodes ~2-4x slower
        # (measured p50 55 ms spinning vs 15-30 ms not, 2 threads, loaded 2-core box); batches don't care
        opts.add_session_config_entry("session.intra_op.allow_spinning", "0")
        self.session = ort.InferenceSession(str(self.export_dir / "model.onnx"), opts,
                                            providers=["CPUExecutionProvider"])

    def _hidden(self, feeds: dict[str, np.ndarray]) -> np.ndarray:
        """last_hidden_state (batch, seq, dim) of one padded batch."""
        return self.session.run(None, {n: feeds[n] for n in self.manifest["inputs"]})[0]

    # --- the SentenceTransformer-compatible surface
    @property
    def tokenizer(self):
        """Exposes `backend_tokenizer` like a HF fast tokenizer (what ragbit's token counter reads)."""
        return _TokenizerView(self._tokenizer)

    def get_sentence_embedding_dimension(self) -> int:
        return int(self.manifest["dim"])

    get_embedding_dimension = get_sentence_embedding_dimension

    def encode(self, sentences: str | Sequence[str], batch_size: int = 32, show_progress_bar: bool = False,
               convert_to_numpy: bool = True, normalize_embeddings: bool = False, **_ignored) -> np.ndarray:
        single = isinstance(sentences, str)
        texts = [sentences] if single else list(sentences)
        out = np.zeros((len(texts), self.get_sentence_embedding_dimension()), dtype=np.float32)
        self._tokenizer.enable_truncation(self.max_seq_length)
        batches = self._batches(texts, batch_size)
        if show_progress_bar:
            from tqdm import tqdm
            batches = tqdm(batches, desc="Batches", total=-(-len(texts) // batch_size))
        self._run(batches, out)
        if normalize_embeddings or self.manifest["normalize"]:
            out /= np.maximum(np.linalg.norm(out, axis=1, keepdims=True), 1e-12)
        return out[0] if single else out

    def encode_stream(self, text_lists: Iterable[Sequence[str]], batch_size: int = 32,
                      normalize_embeddings: bool = False) -> Iterator[np.ndarray]:
        """The vectors of each list of texts in turn, as `encode` gives them (here one list after the other)."""
        for texts in text_lists:
            yield self.encode(texts, batch_size=batch_size, normalize_embeddings=normalize_embeddings)

    # --- batches
    def _batches(self, texts: list[str], batch_size: int):
        """(positions in `texts`, model inputs) per padded batch: each SORT_WINDOW of texts is tokenized at once
        and cut, longest first, into batches of nearly equal token counts."""
        for w in range(0, len(texts), self.SORT_WINDOW):
            encs = self._tokenizer.encode_batch(texts[w:w + self.SORT_WINDOW])
            order = np.argsort([-len(e.ids) for e in encs], kind="stable")
            for s in range(0, len(order), batch_size):
                idx = order[s:s + batch_size]
                yield w + idx, self._feeds([encs[i] for i in idx])

    token_step = 1          # a batch's length is rounded up to a multiple of this (OpenVINO on AMX: 16)

    def _feeds(self, encs) -> dict[str, np.ndarray]:
        """input_ids, attention_mask and token_type_ids (batch, seq) of encodings padded to the longest (rounded up
        to a multiple of `token_step`; the mask keeps the padding out of the vectors)."""
        seq = -(-max(len(e.ids) for e in encs) // self.token_step) * self.token_step
        ids = np.full((len(encs), seq), self.manifest["pad_id"], dtype=np.int64)   # (batch, seq)
        mask = np.zeros((len(encs), seq), dtype=np.int64)                           # (batch, seq)
        for row, e in enumerate(encs):
            ids[row, :len(e.ids)] = e.ids
            mask[row, :len(e.ids)] = 1
        return {"input_ids": ids, "attention_mask": mask, "token_type_ids": np.zeros_like(ids)}

    def _run(self, batches, out: np.ndarray) -> None:
        """Embed every (positions, inputs) batch into out[positions], one after the other."""
        for idx, feeds in batches:
            out[idx] = self._pool(self._hidden(feeds), feeds["attention_mask"])

    def _pool(self, hidden: np.ndarray, mask: np.ndarray) -> np.ndarray:
        """(batch, dim) sentence vectors from last_hidden_state (batch, seq, dim) and the attention mask."""
        mode = self.manifest["pooling"]
        if mode == "cls":
            return hidden[:, 0]
        if mode == "max":
            return np.where(mask[..., None] > 0, hidden, -1e9).max(axis=1)
        m = mask[..., None].astype(np.float32)
        return (hidden * m).sum(axis=1) / np.maximum(m.sum(axis=1), 1e-9)


class OpenVinoSentenceEncoder(OnnxSentenceEncoder):
    """The same export, tokenization and pooling as `OnnxSentenceEncoder`, run by OpenVINO's CPU plugin.

    Precision: bf16 where the CPU computes it natively (AVX512-BF16 on Zen4, AMX on Sapphire Rapids), fp32
    elsewhere; OpenVINO keeps normalisations and softmax accumulation in fp32. Threads are not pinned to cores
    (the machine is shared with the indexer's other work and other programs).
    One stream per core, each one thread, fed batch after batch (OpenVINO's THROUGHPUT mode) rather than every core
    on each batch: no thread waits for the others at the end of each operation, and the next batch is tokenized
    while the streams run. Zen4, 768 Django chunks, int8: 16.7 CPU-ms per chunk with two streams vs 18.6 with two
    threads on each batch (16.2 on one thread); on a shared machine a descheduled partner thread stalls no one.
    The batches are started and collected by the calling thread, not by Python callbacks on OpenVINO's threads
    (`AsyncInferQueue`): with those the process aborted at times ("Resource deadlock avoided": a thread joining
    itself, likely the executor's last reference released on its own thread).

    On AMX (tiles of 16 rows) two shape rules pay, measured per batch interleaved on ragbit's Django chunks (one
    thread, bf16, Emerald Rapids, benchmarks/ov_shapes.py):
      * every batch is padded to a multiple of TOKEN_STEP = 16 tokens: 0.90-0.93 of the CPU of unpadded batches
        although it runs 5% more tokens (multiples of 8: 0.93, of 32: 0.95, of 64: 1.00);
      * a (BATCH, length) shape seen STATIC_AFTER times gets its own static-shape copy of the model (at most
        MAX_STATIC): OpenVINO fuses more on static shapes (the residual Add and LayerNorm's scale and shift into
        one kernel, FullyConnected ~10% faster). All shapes static would give 0.83 (vs 0.92 padded only), but
        each compiled copy holds its own repacked weights and each stream's buffers (~70 MB with one stream,
        ~170 MB with two: peak RSS 515 -> 1206 MB with 4 copies on 2 cores), so only the most used few are
        made: 4 copies gave 0.85. Small jobs (a query, a one-file re-index) never reach STATIC_AFTER.
        MAX_STATIC is the memory / speed knob.
    The whole encoder with both rules against it without them, two streams, groups of 64 chunks each encoded by
    both in turn (benchmarks/ov_shapes.py --encoders): 0.82-0.86 of the CPU in 3 runs of 4 (1.09 in one with a
    single static copy; padding alone 0.98 in the run that had both); vectors within cosine 0.9999 of the
    unpadded ones.
    Both only where the CPU has AMX: on Zen4 (int8, VNNI) static shapes gained ~5% per shape, less than their
    padding (NOTES.md)."""

    def _open_model(self) -> None:
        import openvino as ov
        core = ov.Core()
        bf16 = bool(BF16_FLAGS & cpu_flags())
        self.precision = "bf16" if bf16 else "f32"
        cores = self.threads or physical_cores()
        config = {"INFERENCE_NUM_THREADS": cores, "INFERENCE_PRECISION_HINT": self.precision,
                  "PERFORMANCE_HINT": "THROUGHPUT", "NUM_STREAMS": cores, "ENABLE_CPU_PINNING": False}
        if self.manifest.get("int8_weights"):     # activations quantized per token and group: int8 (VNNI) matmuls
            config["DYNAMIC_QUANTIZATION_GROUP_SIZE"] = int(self.manifest["dynamic_quantization_group"])
        self._core, self._config = core, config
        self.compiled = core.compile_model(self._read_model(), "CPU", config)
        self._jobs = int(self.compiled.get_property("OPTIMAL_NUMBER_OF_INFER_REQUESTS"))     # one per stream
        self._per_thread = threading.local()
        self._input_names = [port.get_any_name() for port in self.compiled.inputs]
        amx = "amx_bf16" in cpu_flags()
        self.token_step = self.TOKEN_STEP if amx else 1
        self.max_static = self.MAX_STATIC if amx else 0
        self.static_after = self.STATIC_AFTER
        self.static: dict[tuple[int, int], object] = {}     # (batch, length) -> its static-shape compiled model
        self._shape_seen: dict[tuple[int, int], int] = {}
        self._static_lock = threading.Lock()

    BATCH = 8
    TOKEN_STEP = 16         # on AMX (see the class docstring)
    STATIC_AFTER = 16       # full batches of one shape before it gets a static copy (128 texts)
    MAX_STATIC = 4          # static copies at most (~170 MB each with two streams)

    def _read_model(self):
        return self._core.read_model(str(self.export_dir / "model.onnx"))

    def _compiled_for(self, shape: tuple[int, int]):
        """The compiled model that runs a batch of `shape`: its static copy if it has one (made here once the shape
        has been seen `static_after` times, while fewer than `max_static` exist), else the dynamic model."""
        static = self.static.get(shape)
        if static is not None or shape[0] != self.BATCH or len(self.static) >= self.max_static:
            return static if static is not None else self.compiled
        with self._static_lock:                 # two threads may encode at once
            seen = self._shape_seen[shape] = self._shape_seen.get(shape, 0) + 1
            if seen >= self.static_after and shape not in self.static and len(self.static) < self.max_static:
                import openvino as ov
                model = self._read_model()      # read again rather than kept: the fp32 constants cost ~100 MB
                model.reshape({port.get_any_name(): ov.PartialShape(list(shape)) for port in model.inputs})
                self.static[shape] = self._core.compile_model(model, "CPU", self._config)
        return self.static.get(shape, self.compiled)

    def encode(self, sentences, batch_size: int = 32, **kwargs) -> np.ndarray:
        """As `OnnxSentenceEncoder.encode`, in batches of at most BATCH texts: OpenVINO loses nothing on small
        batches (Zen4, int8, two streams, token-sorted: 16.8 / 16.4 / 17.1 / 17.8 CPU-ms per chunk at 4 / 8 / 16 /
        32 texts)."""
        return super().encode(sentences, batch_size=min(batch_size, self.BATCH), **kwargs)

    def encode_stream(self, text_lists: Iterable[Sequence[str]], batch_size: int = 32,
                      normalize_embeddings: bool = False) -> Iterator[np.ndarray]:
        """The vectors of each list of texts in turn, with the streams kept busy ACROSS lists: the next list is
        tokenized and its batches started while the last batches of the one before still run, and while the
        caller works on the vectors yielded (the indexer writes them to its cache). With one `encode` per list,
        the streams would idle at every list's start (tokenizing) and end (the last batch runs alone)."""
        self._tokenizer.enable_truncation(self.max_seq_length)
        batch_size = min(batch_size, self.BATCH)
        normalize = normalize_embeddings or self.manifest["normalize"]
        lists: deque[_PendingList] = deque()           # lists started, oldest first; yielded once all done

        def batches():
            for texts in text_lists:
                pending = _PendingList(len(texts), self.get_sentence_embedding_dimension(), batch_size)
                lists.append(pending)
                for idx, feeds in self._batches(list(texts), batch_size):
                    yield (pending, idx), feeds
                pending.all_started = True

        for (pending, idx), vectors in self._infer(batches()):
            pending.out[idx] = vectors
            pending.left -= 1
            while lists and lists[0].done():
                yield lists.popleft().vectors(normalize)
        while lists:                                   # lists with no texts after the last batch
            yield lists.popleft().vectors(normalize)

    def _run(self, batches, out: np.ndarray) -> None:
        """Every batch through the streams; each finished batch is pooled into out[positions]."""
        for idx, vectors in self._infer(batches):
            out[idx] = vectors

    def _infer(self, jobs):
        """(key, pooled vectors) of every (key, model inputs) job, in the order started: a job is started as soon
        as a stream is free, so up to one job per stream runs while this thread tokenizes the next. The vectors
        are a view into the request's output: use them before the next item is asked for."""
        running = deque()             # (request, its idle list, key, mask), at most one per stream
        try:
            for key, feeds in jobs:
                if len(running) >= self._jobs:
                    request, idle, done_key, mask = running.popleft()
                    request.wait()
                    yield done_key, self._pool(request.get_output_tensor(0).data, mask)
                    idle.append(request)
                request, idle = self._idle_request(self._compiled_for(feeds["input_ids"].shape))
                request.start_async({n: feeds[n] for n in self._input_names})
                running.append((request, idle, key, feeds["attention_mask"]))
            while running:
                request, idle, done_key, mask = running.popleft()
                request.wait()
                yield done_key, self._pool(request.get_output_tensor(0).data, mask)
                idle.append(request)
        finally:
            for request, idle, _, _ in running:        # stopped early (an error, a closed generator)
                request.wait()
                idle.append(request)

    def _idle_request(self, compiled):
        """(an idle infer request of `compiled`, the list to give it back to): this thread's own (calls in two
        threads never share one), made on first need."""
        lists = self._per_thread.__dict__.setdefault("idle", {})
        idle = lists.setdefault(id(compiled), [])
        return (idle.pop() if idle else compiled.create_infer_request()), idle


class _PendingList:
    """One list of texts inside `OpenVinoSentenceEncoder.encode_stream`: its vectors, filled in batch by batch,
    and whether every batch has been started and has finished."""

    def __init__(self, n: int, dim: int, batch_size: int):
        self.out = np.zeros((n, dim), dtype=np.float32)
        self.left = -(-n // batch_size)          # batches not finished yet
        self.all_started = False

    def done(self) -> bool:
        return self.all_started and self.left == 0

    def vectors(self, normalize: bool) -> np.ndarray:
        if normalize:
            self.out /= np.maximum(np.linalg.norm(self.out, axis=1, keepdims=True), 1e-12)
        return self.out


class _TokenizerView:
    """The two uses ragbit makes of a HF fast tokenizer: `.backend_tokenizer` and `tok(text)["input_ids"]`
    (untruncated, like a HF tokenizer called without truncation=True)."""

    def __init__(self, tok):
        self.backend_tokenizer = tok

    def __call__(self, text: str | Sequence[str], add_special_tokens: bool = True, **_ignored) -> dict:
        tok = self.backend_tokenizer
        tok.no_truncation()
        if isinstance(text, str):
            return {"input_ids": tok.encode(text, add_special_tokens=add_special_tokens).ids}
        return {"input_ids": [e.ids for e in tok.encode_batch(list(text), add_special_tokens=add_special_tokens)]}


# ====================================================================================== torch bf16
class TorchBf16Encoder:
    """A SentenceTransformer whose `encode` runs under CPU autocast to bfloat16; returns float32 vectors.

    Autocast (not `model.to(torch.bfloat16)`): matmuls run in bf16 through oneDNN (AMX / avx512_core_bf16),
    while LayerNorm, softmax and pooling stay fp32. Measured on Zen4, 64 windows: cosine to fp32 min 0.99997
    with autocast vs 0.998 with the whole model cast, and autocast was also faster (27.6 vs 18.5 chunks/s).
    Every other attribute is the wrapped SentenceTransformer's.
    """

    ragbit_backend = "torch-bf16"

    def __init__(self, model):
        self.__dict__["model"] = model

    def __getattr__(self, name):
        return getattr(self.model, name)

    def __setattr__(self, name, value):           # e.g. max_seq_length: set on the wrapped model
        setattr(self.model, name, value)

    def encode(self, sentences, *args, normalize_embeddings: bool = False, **kwargs):
        import torch
        with torch.autocast("cpu", dtype=torch.bfloat16):
            out = self.model.encode(sentences, *args, normalize_embeddings=False, **kwargs)
        if isinstance(out, torch.Tensor):
            out = out.float().numpy()
        out = np.asarray(out, dtype=np.float32)
        if normalize_embeddings:
            out = out / np.maximum(np.linalg.norm(out, axis=-1, keepdims=True), 1e-12)
        return out


# ====================================================================================== entry point
def load_sentence_model(model_name_or_path: str, backend: str = "onnx", cache_dir: str | Path | None = None,
                        *, model_id: str | None = None, device: str = "cpu", threads: int = 0):
    """A sentence encoder for `backend` ("auto" is resolved here); ONNX exports are made once into `cache_dir`.

    Returns a SentenceTransformer for "torch" (or after a failed ONNX attempt, with one warning line on
    stderr), a `TorchBf16Encoder` for "torch-bf16", an `OpenVinoSentenceEncoder` for "openvino" and an
    `OnnxSentenceEncoder` otherwise; `.ragbit_backend`
    names the path that runs. `model_id` names the model in cache keys (defaults to the path/name given).
    """
    backend = resolve_backend(backend)
    if backend.startswith(("onnx", "openvino")) and device == "cpu":
        try:
            d = ensure_export(model_name_or_path, model_id or model_name_or_path, backend,
                              cache_dir or default_cache_dir(), device=device)
            encoder = (OpenVinoSentenceEncoder if backend.startswith("openvino") else OnnxSentenceEncoder)(d, threads=threads)
            encoder.ragbit_backend = backend
            return encoder
        except Exception as e:   # noqa: BLE001 - any failure here has a working fallback
            msg = (str(e).strip().splitlines() or [type(e).__name__])[0]
            print(f"warning: embedding backend {backend!r} unavailable ({msg}); using torch", file=sys.stderr)
    configure_torch_threads(threads)
    model = _load_sentence_transformer(model_name_or_path, device)
    if backend == "torch-bf16" and device == "cpu":
        return TorchBf16Encoder(model)
    model.ragbit_backend = "torch"
    return model
