"""CPU backends for sentence-embedding models, and the choice among them by CPU features ("auto").

This module holds the CPU facts and the choice; the ONNX/OpenVINO export cache is ragbit/indexing/onnx_export.py,
the encoders and `load_sentence_model` are ragbit/indexing/sentence_encoders.py.

WHY: the embedding model dominates indexing time on a CPU laptop, and which path is fastest depends on the
CPU (figures: AUTO_TABLE below, from benchmarks/bench_embed.py). Backends:
  * "torch"       plain sentence-transformers (fp32 torch), threads pinned to the usable cores;
  * "torch-bf16"  the same model run under torch.autocast(bfloat16): oneDNN's bf16 matmuls (AMX on Sapphire
                  Rapids, avx512_core_bf16 on Zen4); LayerNorm/softmax stay fp32, so vectors stay within
                  cosine ~1 - 3e-5 of fp32;
  * "openvino"    the ONNX export (the same model.onnx "onnx" runs) on OpenVINO's CPU runtime, in bf16 where the CPU
                  has AVX512-BF16 or AMX (else fp32): oneDNN bf16 kernels for every matmul (weight matmuls on AMX
                  tiles where the CPU has them), with none of autocast's casts; loads in ~0.3 CPU-s without torch;
                  cosine to fp32 ~0.99997;
  * "openvino-int8" the same with int8 weights (per output column) and activations quantized by OpenVINO per
                  token and group of 128 channels: VNNI matmuls, the rest bf16; cosine to fp32 ~0.998. On AMX
                  CPUs OpenVINO decompresses these weights to bf16 for its AMX kernels instead: no int8 gain;
  * "onnx"        ONNX Runtime fp32: same work per chunk as torch, but needs no torch import, so it is also
                  what answers QUERIES for every path but "torch" (`query_backend`): `ragbit search` starts fast;
  * "onnx-int8"   ONNX Runtime with dynamically quantized MatMuls (VNNI kernels where the CPU has them);
                  vectors differ more (cosine ~0.99) and depend slightly on batch-mates (per-batch scales);
  * "auto"        the first row of AUTO_TABLE whose CPU flags this machine has.
Every path's vectors are within cosine 0.99 of fp32 (tests/test_embedding_backends.py states it), so they
share one vector space: an index built by one path is searched with another's query vectors.

ONNX details:
  * `sentence_encoders.load_sentence_model(name_or_dir, backend, cache_dir)` returns something with the slice of the
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

import importlib.util
import os
from dataclasses import dataclass
from pathlib import Path

from ragbit.config import EMBED_BACKENDS as BACKENDS
from ragbit.errors import RagbitError



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
# Zen4; R@1 on the docstring set .50 -> .46), so "auto" never picks it: it stays an explicit choice, as does
# "torch-bf16" where openvino is. AMX decides between the openvino paths: with AMX tiles bf16 is the fast format
# (openvino), without them (Zen4) int8 VNNI is (openvino-int8). A row with `module` applies only where that
# package is installed; the next row with the same flags is its fallback.
AUTO_TABLE: tuple[AutoRow, ...] = (
    AutoRow(frozenset({"amx_bf16"}), "openvino", "AMX-BF16",
            "Emerald Rapids (Sapphire Rapids' successor, same AMX), 2 KVM cores at load 5-8 (OpenVINO 2026.4): "
            "bf16 on AMX tiles 16.1-16.3 vs anchor 58.6 CPU-ms per 256-token window (3.60-3.65x, 4 interleaved "
            "runs; 3.60x and 3.65x in two full runs), wall 38.5-39.8 vs 7.2 chunks/s (the anchor's torch threads "
            "suffer most from the load), cosine min 0.99997; openvino-int8 3.26x (2.89-2.99x in the full runs): "
            "OpenVINO runs its int8 weights decompressed to bf16 on the same AMX kernels "
            "(brgemm_avx512_amx_bf16), so the decompression is pure cost; torch-bf16 3.00-3.33x, onnx 0.88-0.95x, "
            "onnx-int8 1.58x at cosine .989. Docstring set (127 q) against onnx fp32: hybrid file R@1/10 "
            ".756/1.000 and chunk R@10 .850 equal, context@1500 .850 equal; dense within one question (.008). "
            "Django 5.1 (59,302 chunks) fully indexed in 650 s wall at 0.91 cores (load 7), 594 CPU-s. On ragbit's "
            "own chunks of Django (mean 166 tokens, --ragbit-chunks): 11.1 vs anchor 47.2 CPU-ms (4.24x), wall 90.4 vs "
            "12.7 chunks/s. Not faster here (session 15): NNCF int8 with SmoothQuant (0.91x, cosine .992), f16 (no "
            "AMX-FP16), the unfused export (0.99x). Since session 16 the encoder pads batches to 16 tokens and runs "
            "its 4 most used shapes on static copies (OpenVinoSentenceEncoder): on 1024-2048 Django chunks compared "
            "group by group with the path before (benchmarks/ov_shapes.py --encoders), 0.82-0.86 of its CPU in 3 "
            "runs of 4 (1.09 in the fourth, with one static copy), cosine to it >= 0.9999; whole-run figures under "
            "load 3-4 could not tell them apart (bench_embed --ragbit-chunks: 16.6 vs 16.8 CPU-ms, anchor 49.2: "
            "2.96x, with this CPU's AMX peak measured at 516 instead of ~1800-2000 GMAC/s during that run)",
            module="openvino"),
    AutoRow(BF16_FLAGS, "openvino-int8", "AVX512-BF16",
            "Zen4 (OpenVINO 2026.4, int8 weights + per-token 128-group activations, rest bf16): 17.3 vs anchor "
            "67.3 CPU-ms per Django chunk (3.89x with batches sorted by tokens; 3.43x before, when openvino bf16 "
            "was 2.61x, torch-bf16 1.80x, onnx-int8 2.13x at cosine .984; again 17.0 vs 62.5, 3.67x, with both at "
            "~52% of their format's peak by bench_embed's ceiling lines), cosine min 0.9984 over 200 chunks; "
            "docstring set (retrieval_eval, 127 "
            "q) hybrid file/chunk R@1/5/10 and context@500-3000 within .01 of fp32 torch (chunk R@10 .646 vs "
            ".630), dense within .01 but context@1000 .630 vs .654; with session 13's retrieval within two "
            "questions (.016): hybrid context@1500 .787 vs .780, chunk R@10 .748 vs .764, file R@1 .709 vs .724",
            module="openvino"),
    AutoRow(frozenset({"amx_bf16"}), "torch-bf16", "AMX-BF16",
            "Sapphire Rapids, issue #19: bf16 torch 84.9 wall chunks/s vs anchor 30.5 (2.8x), cos >= 0.998; "
            "Emerald Rapids: 16.6 vs 49.8 CPU-ms per window (3.00x), cosine min 0.99997"),
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




def vector_space_id(model_id: str, backend: str) -> str:
    """The id an index records for its vectors: every backend shares the model's.

    All paths give vectors within cosine 0.99 of fp32 torch (tests/test_embedding_backends.py), so an index
    built by one path is searched with another's query vectors, and switching paths (a new CPU, a fallback)
    keeps cached vectors. (Before "auto", onnx-int8 had its own id "<model>+int8"; such an index asks for
    `ragbit index --rebuild` once.)"""
    return model_id
