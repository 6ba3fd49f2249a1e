"""CPU backends for sentence-embedding models, and the choice among them by CPU features ("auto").

WHY: the embedding model dominates indexing time on a CPU laptop, and which path is fastest depends on the
CPU (figures: AUTO_TABLE below, from benchmarks/bench_embed.py). Backends:
  * "torch"       plain sentence-transformers (fp32 torch), threads pinned to the usable cores;
  * "torch-bf16"  the same model run under torch.autocast(bfloat16): oneDNN's bf16 matmuls (AMX on Sapphire
                  Rapids, avx512_core_bf16 on Zen4); LayerNorm/softmax stay fp32, so vectors stay within
                  cosine ~1 - 3e-5 of fp32;
  * "openvino"    the ONNX export (the same model.onnx "onnx" runs) on OpenVINO's CPU runtime, in bf16 where the CPU
                  has AVX512-BF16 or AMX (else fp32): oneDNN bf16 kernels for every matmul, attention included,
                  with none of autocast's casts; loads in ~0.3 CPU-s without torch; cosine to fp32 ~0.99997;
  * "openvino-int8" the same with int8 weights (per output column) and activations quantized by OpenVINO per
                  token and group of 128 channels: VNNI matmuls, the rest bf16; cosine to fp32 ~0.998;
  * "onnx"        ONNX Runtime fp32: same work per chunk as torch, but needs no torch import, so it is also
                  what answers QUERIES for every path but "torch" (`query_backend`): `ragbit search` starts fast;
  * "onnx-int8"   ONNX Runtime with dynamically quantized MatMuls (VNNI kernels where the CPU has them);
                  vectors differ more (cosine ~0.99) and depend slightly on batch-mates (per-batch scales);
  * "auto"        the first row of AUTO_TABLE whose CPU flags this machine has.
Every path's vectors are within cosine 0.99 of fp32 (tests/test_embedding_backends.py states it), so they
share one vector space: an index built by one path is searched with another's query vectors.

ONNX details:
  * `load_sentence_model(name_or_dir, backend, cache_dir)` returns something with the slice of the
    SentenceTransformer API ragbit uses (`encode`, `max_seq_length`, `get_sentence_embedding_dimension`,
    `tokenizer`).
  * "onnx" / "onnx-int8": the first call loads the model with sentence-transformers + torch, exports the
    transformer to ONNX (legacy TorchScript exporter: no extra packages), fuses attention/LayerNorm/GELU
    with onnxruntime's BERT optimizer, and for int8 quantizes the weights of MatMuls dynamically. The result
    (model.onnx, tokenizer.json, pooling settings, a checksum) is written into a temporary directory inside
    `cache_dir` and renamed into place, so a crash never leaves a half-written export. Later calls need
    only onnxruntime + tokenizers + numpy.
  * The export is keyed by the model's identity (config + weight file sizes) and the backend; a cache
    entry whose checksum does not match is deleted and exported again.
  * Any failure on the ONNX path prints ONE warning line and falls back to torch.
"""
from __future__ import annotations

import hashlib
import importlib.util
import json
import os
import re
import shutil
import sys
import tempfile
import threading
from collections import deque
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Iterator, Sequence

import numpy as np

from ragbit.config import EMBED_BACKENDS as BACKENDS
from ragbit.errors import RagbitError

EXPORT_FORMAT = 1                 # bump when the export recipe changes: old cache entries are ignored
MANIFEST = "ragbit_export.json"


class BackendError(RagbitError, RuntimeError):
    """An embedding backend cannot be prepared; the message is one line for the user."""


# ====================================================================================== threads
def physical_cores() -> int:
    """Cores to use for one process: the affinity mask (cgroups / taskset) rather than the host's count."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except (AttributeError, OSError):
        return max(1, os.cpu_count() or 1)


def prefer_passive_openmp() -> None:
    """Let torch's OpenMP workers sleep instead of spin-waiting between ops (unless the user set it).

    Must run before torch is first imported (libgomp reads it once). On a 2-core machine shared with other
    work, spinning workers wait on a descheduled partner: measured fp32 MiniLM on Zen4 with other processes
    busy, 2 threads: 6.0-6.3 chunks/s spinning vs 8.4-8.5 passive (1 thread: 8.0-11.7). The generator makes
    the same choice (generator/kernels/__init__.py)."""
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")


def configure_torch_threads(threads: int = 0) -> int:
    """Pin torch's intra-op pool to `threads` (0 = all cores we may use) and return the count.

    On a 2-core laptop torch already defaults to 2; setting it explicitly matters when the process
    inherited OMP_NUM_THREADS=1 or a larger host count from a container.
    """
    import torch
    n = threads or physical_cores()
    torch.set_num_threads(n)
    return n


# ====================================================================================== CPU / quantization
def cpu_flags() -> set[str]:
    """x86 feature flags from /proc/cpuinfo (empty set elsewhere)."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("flags"):
                return set(line.split(":", 1)[1].split())
    except OSError:
        pass
    return set()


VNNI_FLAGS = frozenset({"avx512_vnni", "avx_vnni", "avx512vnni"})
BF16_FLAGS = frozenset({"avx512_bf16", "amx_bf16"})


@dataclass(frozen=True)
class AutoRow:
    """One row of the "auto" choice: the first row whose `needs` (any one of these CPU flags) matches wins."""
    needs: frozenset[str]    # any one of these CPU flags (empty: every CPU)
    backend: str
    cpu: str                 # the feature that decides, for one-line messages
    why: str                 # the measurement behind the row (bench_embed.py, wall chunks/s, 2 threads)
    module: str = ""         # the row applies only where this Python package is installed

    def applies(self, flags: set[str]) -> bool:
        return (not self.needs or bool(self.needs & flags)) and (
            not self.module or importlib.util.find_spec(self.module) is not None)


# THE choice table of `[embed] backend = "auto"` (the only place it lives). The first matching row wins. Figures
# from benchmarks/bench_embed.py (40-line windows of `transformers`, 256 tokens, 2 threads), each path beside
# sentence-transformers defaults (the "anchor", fp32 torch) in the same run. Quality rule: a path must keep
# every vector within cosine 0.99 of fp32; onnx-int8 does not (per-window min 0.987-0.991, mean 0.994 on
# Zen4; R@1 on the docstring set .50 -> .46), so "auto" never picks it: it stays an explicit choice, as do
# "openvino" (bf16 only: slower than openvino-int8, closer to fp32) and "torch-bf16" where openvino is. A row with
# `module` applies only where that package is installed; the next row with the same flags is its fallback.
AUTO_TABLE: tuple[AutoRow, ...] = (
    AutoRow(BF16_FLAGS, "openvino-int8", "AVX512-BF16/AMX",
            "Zen4 (OpenVINO 2026.4, int8 weights + per-token 128-group activations, rest bf16): 17.3 vs anchor "
            "67.3 CPU-ms per Django chunk (3.89x with batches sorted by tokens; 3.43x before, when openvino bf16 "
            "was 2.61x, torch-bf16 1.80x, onnx-int8 2.13x at cosine .984), cosine min 0.9984 over 200 chunks; "
            "docstring set (retrieval_eval, 127 "
            "q) hybrid file/chunk R@1/5/10 and context@500-3000 within .01 of fp32 torch (chunk R@10 .646 vs "
            ".630), dense within .01 but context@1000 .630 vs .654",
            module="openvino"),
    AutoRow(frozenset({"amx_bf16"}), "torch-bf16", "AMX-BF16",
            "Sapphire Rapids, issue #19: bf16 torch 84.9 wall chunks/s vs anchor 30.5 (2.8x), cos >= 0.998"),
    AutoRow(frozenset({"avx512_bf16"}), "torch-bf16", "AVX512-BF16",
            "Zen4 (oneDNN brg_matmul:avx512_core_bf16): 44-48.5 vs anchor 82-93 CPU-ms per chunk (1.76-2.00x, "
            "9 runs), cosine min 0.99997, docstring R@10 .820 = anchor; onnx fp32 0.92-1.12x; full index of "
            "Flask 3.0.3 191 s / 92 CPU-s vs 389 s / 158 CPU-s with onnx"),
    AutoRow(frozenset(), "onnx", "no BF16",
            "Zen1 (AVX2, NOTES.md #7): onnx fp32 = the anchor's CPU per chunk, int8 no faster; loads without "
            "torch. With VNNI but no BF16 int8 would be faster (Zen4: 2.0x CPU) but fails the 0.99 floor"),
)


def choose_backend(flags: set[str] | None = None) -> AutoRow:
    """The AUTO_TABLE row for this CPU (or for `flags`)."""
    flags = cpu_flags() if flags is None else flags
    return next(row for row in AUTO_TABLE if row.applies(flags))


def backend_reason(configured: str) -> str:
    """Why the path runs, in a few words: "configured", or "auto: CPU has <feature>"."""
    return f"auto: CPU has {choose_backend().cpu}" if configured == "auto" else "configured"


def resolve_backend(backend: str, flags: set[str] | None = None) -> str:
    """A concrete backend name: "auto" becomes this CPU's choice, anything else stays."""
    if backend not in BACKENDS:
        raise BackendError(f"embedding backend must be one of {', '.join(BACKENDS)}, not {backend!r}")
    return choose_backend(flags).backend if backend == "auto" else backend


def query_backend(backend: str) -> str:
    """The backend that embeds one question for an index built with `backend`.

    A question is a few dozen tokens: load time, not throughput, decides. ONNX fp32 loads without importing
    torch (~2 CPU-s instead of ~11 for a cold `ragbit search`), and its vectors match every path's within
    the shared tolerance; only an explicit "torch" keeps torch for queries too. ("openvino" loads fast too, but
    its bf16 kernels bring nothing to one question and ONNX Runtime is what every install has.)"""
    return "torch" if backend == "torch" else "onnx"


def int8_options(flags: set[str] | None = None) -> dict:
    """quantize_dynamic keyword arguments for this CPU (weights are signed int8, activations uint8).

    ONNX Runtime's x86 kernels multiply uint8 activations by int8 weights (U8S8). With VNNI that is
    exact; on plain AVX2 the kernel's 16-bit intermediate sums can saturate, which `reduce_range`
    (7-bit weights) avoids.
    """
    flags = cpu_flags() if flags is None else flags
    has_vnni = bool(VNNI_FLAGS & flags)
    return {"per_channel": True, "reduce_range": not has_vnni}


# ====================================================================================== cache keys
def _slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "_", text).strip("_")[-80:] or "model"


def source_fingerprint(model_dir: str | Path | None, model_id: str) -> str:
    """Short hash of what identifies the weights: config files' bytes and the weight files' sizes."""
    h = hashlib.sha256(f"{model_id}|{EXPORT_FORMAT}".encode())
    if model_dir is not None and Path(model_dir).is_dir():
        d = Path(model_dir)
        for name in sorted(os.listdir(d)):
            p = d / name
            if not p.is_file():
                continue
            if name.endswith(".json"):
                h.update(name.encode() + p.read_bytes())
            elif name.endswith((".safetensors", ".bin", ".onnx")):
                h.update(f"{name}:{p.stat().st_size}".encode())
    return h.hexdigest()[:16]


def export_dir_for(cache_dir: str | Path, model_id: str, backend: str, model_dir: str | Path | None) -> Path:
    """<cache_dir>/<model slug>-<backend>-<fingerprint>: one directory per (model, export, weights); "openvino"
    runs the fp32 "onnx" export, so the two share a directory."""
    export = "onnx" if backend == "openvino" else backend
    return Path(cache_dir) / f"{_slug(model_id)}-{export}-{source_fingerprint(model_dir, model_id)}"


def default_cache_dir() -> Path:
    """~/.cache/ragbit/onnx (XDG_CACHE_HOME respected)."""
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "ragbit" / "onnx"


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


# ====================================================================================== export (torch, once)
def _load_sentence_transformer(source: str, device: str):
    """A SentenceTransformer without the weight-loading progress bars (they clutter ragbit's own)."""
    from sentence_transformers import SentenceTransformer
    from transformers.utils import logging as hf_logging
    hf_logging.disable_progress_bar()
    # A local directory needs no hub: say so per call rather than through HF_HUB_OFFLINE, which would
    # also switch off model downloads elsewhere in the process (the generator's `bonsai-*` short names).
    return SentenceTransformer(source, device=device, local_files_only=Path(source).is_dir())


def export_onnx(st_model, out_dir: Path, quantize: bool) -> None:
    """Write model.onnx + tokenizer.json + MANIFEST for a loaded SentenceTransformer into `out_dir`.

    The transformer is re-loaded with eager attention (the sdpa path traces a mask shortcut that is
    only valid for unpadded batches) and traced with a PADDED batch so the mask path is recorded.
    """
    import torch
    from transformers import AutoModel

    first, pooling = st_model[0], st_model[1] if len(st_model) > 1 else None
    pool_cfg = pooling.get_config_dict() if pooling is not None else {}
    mode = pool_cfg.get("pooling_mode", "mean")
    if mode not in ("mean", "cls", "max"):
        raise BackendError(f"pooling mode {mode!r} is not supported by the ONNX backend")
    hf = first.auto_model
    model = AutoModel.from_pretrained(hf.config._name_or_path or hf.name_or_path, attn_implementation="eager")
    model.eval()
    tok = st_model.tokenizer
    sample = tok(["def f(x):\n    return x + 1", "a"], return_tensors="pt", padding=True)
    names = [n for n in ("input_ids", "attention_mask", "token_type_ids") if n in sample]

    class _Body(torch.nn.Module):          # positional inputs -> last_hidden_state, for the tracer
        def __init__(self, m):
            super().__init__()
            self.m = m

        def forward(self, *args):
            return self.m(**dict(zip(names, args))).last_hidden_state

    raw = out_dir / "raw.onnx"
    with torch.no_grad(), _quiet():
        torch.onnx.export(_Body(model), tuple(sample[n] for n in names), str(raw), dynamo=False,
                          opset_version=17, input_names=names, output_names=["last_hidden_state"],
                          dynamic_axes={n: {0: "batch", 1: "seq"} for n in names + ["last_hidden_state"]})
    fused = out_dir / "fused.onnx"
    with _quiet():
        from onnxruntime.transformers.optimizer import optimize_model
        cfg = model.config
        opt = optimize_model(str(raw), model_type="bert", num_heads=cfg.num_attention_heads,
                             hidden_size=cfg.hidden_size, opt_level=1)
        opt.save_model_to_file(str(fused))
    raw.unlink()
    final = out_dir / "model.onnx"
    if quantize:
        import onnx
        from onnxruntime.quantization import QuantType, quantize_dynamic
        with _quiet():   # fused ops (com.microsoft domain) defeat shape inference: weights are float32
            quantize_dynamic(str(fused), str(final), weight_type=QuantType.QInt8,
                             op_types_to_quantize=["MatMul", "Attention"], **int8_options(),
                             extra_options={"DefaultTensorType": onnx.TensorProto.FLOAT})
        fused.unlink()
    else:
        fused.rename(final)
    backend_tok = tok.backend_tokenizer
    backend_tok.save(str(out_dir / "tokenizer.json"))
    manifest = {"format": EXPORT_FORMAT, "inputs": names, "pooling": mode,
                "normalize": any(type(m).__name__ == "Normalize" for m in st_model),
                "max_seq_length": int(st_model.max_seq_length),
                "dim": int(_embedding_dim(st_model)),
                "pad_id": int(tok.pad_token_id or 0), "int8": quantize, **({"int8_options": int8_options()} if quantize else {}),
                "sha256": _sha256(final)}
    (out_dir / MANIFEST).write_text(json.dumps(manifest, indent=1))


def _embedding_dim(st_model) -> int:
    get = getattr(st_model, "get_embedding_dimension", None) or st_model.get_sentence_embedding_dimension
    return get()


class _quiet:
    """Silence the exporter's tracer warnings and optimizer logging (they are about our fixed recipe)."""

    def __enter__(self):
        import logging
        import warnings
        self._w = warnings.catch_warnings()
        self._w.__enter__()
        warnings.simplefilter("ignore")
        self._level = logging.root.manager.disable
        logging.disable(logging.WARNING)

    def __exit__(self, *exc):
        import logging
        logging.disable(self._level)
        self._w.__exit__(*exc)


def valid_export(d: Path) -> dict | None:
    """The manifest of a complete, uncorrupted export in `d`, else None."""
    try:
        manifest = json.loads((d / MANIFEST).read_text())
        if manifest.get("format") != EXPORT_FORMAT or not (d / "tokenizer.json").is_file():
            return None
        if _sha256(d / "model.onnx") != manifest["sha256"]:
            return None
        return manifest
    except (OSError, ValueError, KeyError):
        return None


def ensure_export(source: str, model_id: str, backend: str, cache_dir: str | Path,
                  device: str = "cpu") -> Path:
    """Directory holding a valid export for (model, backend); exports it (atomically) when missing/corrupt."""
    from filelock import FileLock

    model_dir = source if Path(source).is_dir() else None
    target = export_dir_for(cache_dir, model_id, backend, model_dir)
    if valid_export(target):
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    with FileLock(str(target) + ".lock"):
        if valid_export(target):             # another process finished it while we waited
            return target
        if target.exists():
            shutil.rmtree(target)             # corrupt or from an interrupted older run
        base = ensure_export(source, model_id, "onnx", cache_dir, device) if backend == "openvino-int8" else None
        st = None if base else _load_sentence_transformer(source, device)
        tmp = Path(tempfile.mkdtemp(prefix=".export-", dir=target.parent))
        try:
            if base:
                _derive_int8_weights(base, tmp)
            else:
                export_onnx(st, tmp, quantize=backend == "onnx-int8")
            os.replace(tmp, target)
        finally:
            if tmp.exists():
                shutil.rmtree(tmp, ignore_errors=True)
    return target


def _derive_int8_weights(base: Path, out_dir: Path) -> None:
    """The "openvino-int8" export: the fp32 export in `base` with int8 weights (ragbit/indexing/int8_weights.py);
    made from the files alone, so no torch is loaded."""
    from ragbit.indexing.int8_weights import DYNAMIC_GROUP, quantize_weights_int8
    with _quiet():
        quantize_weights_int8(base / "model.onnx", out_dir / "model.onnx")
    shutil.copy(base / "tokenizer.json", out_dir / "tokenizer.json")
    manifest = {**json.loads((base / MANIFEST).read_text()), "int8_weights": True,
                "dynamic_quantization_group": DYNAMIC_GROUP, "sha256": _sha256(out_dir / "model.onnx")}
    (out_dir / MANIFEST).write_text(json.dumps(manifest, indent=1))


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

    def _feeds(self, encs) -> dict[str, np.ndarray]:
        """input_ids, attention_mask and token_type_ids (batch, seq) of encodings padded to the longest."""
        seq = max(len(e.ids) for e in encs)
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
    itself, likely the executor's last reference released on its own thread)."""

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
        self.compiled = core.compile_model(core.read_model(str(self.export_dir / "model.onnx")), "CPU", config)
        self._jobs = int(self.compiled.get_property("OPTIMAL_NUMBER_OF_INFER_REQUESTS"))     # one per stream
        self._per_thread = threading.local()
        self._input_names = [port.get_any_name() for port in self.compiled.inputs]

    BATCH = 8

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
        requests = getattr(self._per_thread, "requests", None)
        if requests is None:           # this thread's requests (calls in two threads never share one)
            requests = self._per_thread.requests = [self.compiled.create_infer_request() for _ in range(self._jobs)]
        idle, running = list(requests), deque()
        try:
            for key, feeds in jobs:
                if not idle:
                    request, done_key, mask = running.popleft()
                    request.wait()
                    yield done_key, self._pool(request.get_output_tensor(0).data, mask)
                    idle.append(request)
                request = idle.pop()
                request.start_async({n: feeds[n] for n in self._input_names})
                running.append((request, key, feeds["attention_mask"]))
            while running:
                request, done_key, mask = running.popleft()
                request.wait()
                yield done_key, self._pool(request.get_output_tensor(0).data, mask)
        finally:
            for request, _, _ in running:              # stopped early (an error, a closed generator)
                request.wait()


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
def vector_space_id(model_id: str, backend: str) -> str:
    """The id an index records for its vectors: every backend shares the model's.

    All paths give vectors within cosine 0.99 of fp32 torch (tests/test_embedding_backends.py), so an index
    built by one path is searched with another's query vectors, and switching paths (a new CPU, a fallback)
    keeps cached vectors. (Before "auto", onnx-int8 had its own id "<model>+int8"; such an index asks for
    `ragbit index --rebuild` once.)"""
    return model_id


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
