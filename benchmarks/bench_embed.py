"""Embedding speed and retrieval quality: sentence-transformers defaults vs ragbit's backends, in ONE run.

    python benchmarks/bench_embed.py                       # ~10 min on 2 busy cores
    python benchmarks/bench_embed.py --chunks 96 --queries 100 --repeats 1   # quick look
    python benchmarks/bench_embed.py --plain-index REPO   # the no-ragbit pipeline, to set beside `ragbit index REPO`

Speed: 40-line windows (the chunker's fallback unit) from an installed Python package (default
`transformers`). Reported per configuration:
  cpu_ms/chunk  process CPU time per chunk with ONE thread: the amount of work, robust to other processes
                on the machine (wall time on a shared 2-core box is not);
  chunks/cpu-s  1000 / cpu_ms: chunks per second of one core (2 idle cores give ~2x that);
  wall chunks/s with --wall: wall-clock throughput with the default threads (noisy when shared);
  x_anchor      anchor cpu_ms / config cpu_ms: the speed-up ragbit gets from the change;
  cores         with --wall: process CPU-s / wall-s of the wall run (~2 on 2 idle cores; ~1 = one thread).
Each figure is the best of --repeats interleaved runs.

Quality: (docstring first line -> function without its docstring) pairs from another package (default
`rich`); the corpus is every function of that package with >= 3 lines. Recall@1/@10 per configuration
on the same queries, and the mean cosine of its chunk vectors to the fp32 torch ones.

Ceiling: each path's CPU time per chunk against the time its multiply-adds (of the chunks' real token counts)
would take at one core's instruction peak for its format (benchmarks/cpu_peaks.py: fp32 FMA, bf16 dot, int8
VNNI, or AMX tiles where faster), attention counted at bf16 for int8 paths; and the most any path of that format
could gain over the anchor.

Configurations: anchor = SentenceTransformer(model) defaults (fp32 torch, batch 32); sentence-transformers
already sorts texts by length inside `encode`, so "length-sorted batching" is the anchor itself (and 95%
of windows fill the 256-token window anyway). torch-threads = torch pinned to the cores we may use;
torch-bf16 / onnx / onnx-int8 / auto = ragbit.indexing.embedding_backends (auto prints what it resolved to);
"@128" = max_seq_length 128 instead of 256 (longer text is cut); "+v128" = each text embedded as views of at
most 128 tokens pooled back to one vector, as `ragbit index` does with `[embed] view_tokens = 128` (opt-in; nothing
is cut); "~dynamic" = an
openvino path without its AMX shape rules (batches not padded to 16 tokens, no static-shape copies: the path
before they were added).
--ragbit-chunks times the texts ragbit really embeds (its chunker's output, <= 254 tokens) instead of windows. cos_min / cos_mean: cosine of each timed window's vector to the
first config's (the anchor's) on the same windows; --no-recall skips the docstring set (a quick speed run).

OpenMP: by default the anchor and ragbit's torch paths run with the library defaults (workers spin-wait);
--passive-omp sets OMP_WAIT_POLICY=PASSIVE before torch loads, as `ragbit index` does, for every torch config.
"""
from __future__ import annotations

import argparse
import ast
import importlib.util
import random
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from ragbit.indexing.embedding_backends import (configure_torch_threads, cpu_flags,  # noqa: E402
                                                physical_cores, prefer_passive_openmp, resolve_backend)
from ragbit.indexing.sentence_encoders import load_sentence_model  # noqa: E402


def package_dir(name: str) -> Path:
    spec = importlib.util.find_spec(name)
    if spec is None or not spec.submodule_search_locations:
        sys.exit(f"error: package {name!r} is not installed")
    return Path(list(spec.submodule_search_locations)[0])


def code_windows(pkg: str, n: int, lines: int = 40, seed: int = 0) -> list[str]:
    """`n` non-overlapping `lines`-line windows, sampled reproducibly from the package's .py files."""
    wins = []
    for f in sorted(package_dir(pkg).rglob("*.py")):
        text = f.read_text(encoding="utf-8", errors="replace").splitlines()
        wins += ["\n".join(text[i:i + lines]) for i in range(0, len(text) - lines + 1, lines)]
    random.Random(seed).shuffle(wins)
    return wins[:n]


def ragbit_chunks(pkg: str, n: int, seed: int = 0) -> list[str]:
    """`n` of the texts ragbit itself embeds for the package (its chunker, <= 254 model tokens each)."""
    from ragbit.config import ChunkConfig, WalkConfig
    from ragbit.indexing.chunking import chunk_file
    from ragbit.indexing.embeddings import Embedder
    from ragbit.indexing.walker import walk_repository
    root = Path(pkg) if Path(pkg).is_dir() else package_dir(pkg)
    emb = Embedder()
    cfg = ChunkConfig(max_tokens=emb.max_text_tokens)
    texts = [c.embed_text for sf in walk_repository(root, WalkConfig(), lambda msg: None)
             for c in chunk_file(sf.path, sf.text, cfg, emb.token_counter)]
    random.Random(seed).shuffle(texts)
    return texts[:n]


class Views:
    """A model whose `encode` embeds each text as views of `view_tokens` model tokens, pooled back to one
    vector (what `ragbit index` does with [embed] view_tokens, ragbit/indexing/embed_views.py)."""

    def __init__(self, model, view_tokens: int):
        tok = model.tokenizer.backend_tokenizer
        self.model, self.view_tokens = model, view_tokens
        self.tok = tok.__class__.from_str(tok.to_str())        # private copy: no truncation, no padding
        self.tok.no_truncation()
        self.tok.no_padding()
        self.ragbit_backend = f"{getattr(model, 'ragbit_backend', 'sentence-transformers')} + views of {view_tokens}"

    def __getattr__(self, name):
        return getattr(self.model, name)

    def encode(self, texts, batch_size: int = 32, normalize_embeddings: bool = True, **kw):
        from ragbit.indexing.embed_views import plan_views, pool_views
        views, owner = plan_views(texts, self.tok, self.view_tokens)
        vecs = self.model.encode(views, batch_size=batch_size, normalize_embeddings=True, **kw)
        return pool_views(np.asarray(vecs, dtype=np.float32), owner, len(texts))


def docstring_pairs(pkg: str, n_queries: int, seed: int = 0) -> tuple[list[str], list[str], list[int]]:
    """(queries, corpus, target index per query) from a package's functions."""
    corpus, candidates = [], []
    for f in sorted(package_dir(pkg).rglob("*.py")):
        src = f.read_text(encoding="utf-8", errors="replace")
        try:
            tree = ast.parse(src)
        except SyntaxError:
            continue
        lines = src.splitlines()
        for node in ast.walk(tree):
            if not isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)) or node.end_lineno - node.lineno < 2:
                continue
            body = lines[node.lineno - 1:node.end_lineno]
            doc = ast.get_docstring(node)
            if doc and isinstance(node.body[0], ast.Expr):
                d0, d1 = node.body[0].lineno - node.lineno, node.body[0].end_lineno - node.lineno
                body = body[:d0] + body[d1 + 1:]
                first = doc.strip().splitlines()[0].strip()
                if len(first) >= 20:
                    candidates.append((first, len(corpus)))
            corpus.append("\n".join(body))
    seen, unique = set(), []
    for q, i in candidates:           # a repeated docstring line has no single right answer
        if q not in seen:
            seen.add(q)
            unique.append((q, i))
    dup = {q for q, _ in candidates if sum(1 for c, _ in candidates if c == q) > 1}
    unique = [(q, i) for q, i in unique if q not in dup]
    random.Random(seed).shuffle(unique)
    unique = unique[:n_queries]
    return [q for q, _ in unique], corpus, [i for _, i in unique]


def recall(q_vecs: np.ndarray, c_vecs: np.ndarray, targets: list[int], k: int) -> float:
    top = np.argsort(-(q_vecs @ c_vecs.T), axis=1)[:, :k]
    return float(np.mean([t in row for t, row in zip(targets, top)]))


def timed(model, texts: list[str], batch: int) -> tuple[float, float, np.ndarray]:
    """(cpu seconds, wall seconds, vectors) of one encode call."""
    c, w = time.process_time(), time.perf_counter()
    vecs = model.encode(texts, batch_size=batch, normalize_embeddings=True)
    return time.process_time() - c, time.perf_counter() - w, np.asarray(vecs, dtype=np.float32)


def encoder_macs(config, seq_len: int) -> tuple[float, float]:
    """Multiply-adds of one BERT-style encoder pass over seq_len tokens: (weight matmuls, attention).

    Weight matmuls: the Q/K/V/output projections and the FFN; attention: scores and weighted values."""
    h, ff, layers = config.hidden_size, config.intermediate_size, config.num_hidden_layers
    return float(layers * seq_len * (4 * h * h + 2 * h * ff)), float(layers * 2 * seq_len * seq_len * h)


def matmul_format(name: str) -> str:
    """The number format a configuration's weight matmuls run in: int8, bf16 or fp32."""
    backend = name.partition("@")[0].partition("+")[0].partition("~")[0]
    backend = "torch" if backend in ("anchor", "torch-threads") else resolve_backend(backend)
    return "int8" if backend.endswith("int8") else "bf16" if backend in ("openvino", "torch-bf16") else "fp32"


def print_ceiling(config, tokens_per_chunk: list[int], cpu_ms: dict[str, float]) -> None:
    """How far each configuration is from what this CPU's multiply units allow (benchmarks/cpu_peaks.py).

    A configuration's ceiling: its weight matmuls at the peak of their format, attention at the peak of bf16 (int8
    paths keep attention in bf16) or fp32, and nothing else costs anything. `cpu_ms` is per chunk, one thread;
    `tokens_per_chunk` the real (truncated, unpadded) lengths."""
    from cpu_peaks import core_peaks, format_peaks
    measured = core_peaks(cpu_flags())
    peaks = format_peaks(measured)              # bf16 / int8 at the faster of zmm and AMX tiles
    if "fp32" not in peaks:
        return
    weights, attention = (float(np.mean(x)) for x in zip(*(encoder_macs(config, n) for n in tokens_per_chunk)))

    def ideal_ms(fmt: str) -> float:
        fmt = fmt if fmt in peaks else "fp32"
        attention_fmt = fmt if fmt != "int8" else "bf16" if "bf16" in peaks else "fp32"
        return 1e3 * (weights / peaks[fmt] + attention / peaks[attention_fmt]) / 1e9

    print(f"\nceiling: one core multiplies {', '.join(f'{f} {g:.1f}' for f, g in measured.items())} GMAC/s "
          f"(cpu_peaks.py); a chunk of mean {np.mean(tokens_per_chunk):.0f} tokens is {weights / 1e9:.2f} GMAC in weight "
          f"matmuls + {attention / 1e9:.2f} in attention")
    anchor = cpu_ms.get("anchor")
    for name, ms in cpu_ms.items():
        fmt = matmul_format(name)
        line = f"  {name:16} {fmt}: ideal {ideal_ms(fmt):5.1f} ms/chunk, runs at {ideal_ms(fmt) / ms:4.0%} of it"
        if anchor and fmt != "fp32":
            line += (f"; this format's ceiling is {anchor / ideal_ms(fmt):.1f}x the anchor, 5x needs "
                     f"{ideal_ms(fmt) / (anchor / 5):.0%} of it")
        print(line)


def plain_index(repo: str, model: str) -> None:
    """The pipeline a user would write without ragbit, timed as `ragbit index` is (model load included):
    the files ragbit's walker indexes, cut into 40-line windows, embedded with SentenceTransformer defaults."""
    t0, c0 = time.perf_counter(), time.process_time()
    from sentence_transformers import SentenceTransformer
    from ragbit.config import WalkConfig
    from ragbit.indexing.embeddings import resolve_model
    from ragbit.indexing.walker import walk_repository
    windows = []
    for sf in walk_repository(Path(repo), WalkConfig(), lambda msg: None):
        lines = sf.text.splitlines()
        windows += ["\n".join(lines[i:i + 40]) for i in range(0, max(len(lines), 1), 40)]
    st = SentenceTransformer(resolve_model(model)[0], device="cpu")
    t1 = time.perf_counter()
    st.encode(windows, batch_size=32, normalize_embeddings=True)
    wall, cpu = time.perf_counter() - t0, time.process_time() - c0
    print(f"plain sentence-transformers over {repo}: {len(windows)} 40-line windows, {wall:.1f} s wall "
          f"({t1 - t0:.1f} s walk + load), {cpu:.1f} CPU-s, {len(windows) / wall:.1f} windows/s")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default="all-MiniLM-L6-v2")
    ap.add_argument("--chunks", type=int, default=256)
    ap.add_argument("--chunk-package", default="transformers", help="a package name or a directory")
    ap.add_argument("--ragbit-chunks", action="store_true",
                    help="time ragbit's own chunks of --chunk-package (<= 254 tokens) instead of 40-line windows")
    ap.add_argument("--queries", type=int, default=200)
    ap.add_argument("--query-package", default="rich")
    ap.add_argument("--repeats", type=int, default=2)
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--cache-dir", default=None, help="ONNX exports (default: a temporary directory)")
    ap.add_argument("--configs", default="anchor,onnx,onnx-int8,anchor@128,onnx-int8@128")
    ap.add_argument("--wall", action="store_true", help="also time wall-clock with default threads")
    ap.add_argument("--no-recall", action="store_true", help="skip the docstring recall set (cosines are kept)")
    ap.add_argument("--plain-index", metavar="REPO", help="only time the plain pipeline over REPO (see plain_index)")
    ap.add_argument("--passive-omp", action="store_true", help="OMP_WAIT_POLICY=PASSIVE for torch (as ragbit does)")
    args = ap.parse_args()
    if args.passive_omp:
        prefer_passive_openmp()
    if args.plain_index:
        return plain_index(args.plain_index, args.model)

    from ragbit.indexing.embeddings import resolve_model   # the indexer's own name -> packaged-model resolution
    source, model_id, _ = resolve_model(args.model)
    cache = args.cache_dir or tempfile.mkdtemp(prefix="ragbit-bench-onnx-")
    if not args.cache_dir:
        import atexit
        import shutil
        atexit.register(shutil.rmtree, cache, ignore_errors=True)
    flags = cpu_flags()
    print(f"cpu: {physical_cores()} cores usable, "
          f"{' '.join(sorted(f for f in flags if 'avx' in f or 'vnni' in f or 'amx' in f))}")

    windows = (ragbit_chunks if args.ragbit_chunks else code_windows)(args.chunk_package, args.chunks)
    queries, corpus, targets = docstring_pairs(args.query_package, 0 if args.no_recall else args.queries)
    kind = "ragbit chunks" if args.ragbit_chunks else "40-line windows"
    print(f"speed set: {len(windows)} {kind} of {args.chunk_package}; quality set: {len(queries)} "
          f"queries over {len(corpus)} functions of {args.query_package}")

    from sentence_transformers import SentenceTransformer
    models: dict[str, tuple[object, object]] = {}      # name -> (model for 1-thread CPU, model for wall)
    for name in args.configs.split(","):
        name, _, shapes = name.partition("~")
        name, _, views = name.partition("+v")
        backend, _, seq = name.partition("@")
        if backend == "anchor":
            m = SentenceTransformer(source, device="cpu")
            pair = (m, m)
        elif backend == "torch-threads":
            m = load_sentence_model(source, "torch", cache, model_id=model_id)
            pair = (m, m)
        elif resolve_backend(backend).startswith("torch"):     # torch threads are set per timing below
            m = load_sentence_model(source, backend, cache, model_id=model_id)
            pair = (m, m)
        else:
            pair = (load_sentence_model(source, backend, cache, model_id=model_id, threads=1),
                    load_sentence_model(source, backend, cache, model_id=model_id))
        for m in pair:
            m.max_seq_length = int(seq) if seq else m.max_seq_length
            if shapes == "dynamic":             # OpenVINO as before padding to 16 and static copies (AMX rules)
                m.token_step, m.max_static = 1, 0
        if views:
            pair = (Views(pair[0], int(views)), Views(pair[1], int(views)))
            name = f"{name}+v{views}"
        name += f"~{shapes}" if shapes else ""
        models[name] = pair
        print(f"{name}: runs {pair[1].ragbit_backend if hasattr(pair[1], 'ragbit_backend') else 'sentence-transformers'}")
    tok = models[next(iter(models))][0].tokenizer
    n_tok = [len(tok(w)["input_ids"]) for w in windows]
    print(f"window tokens: median {int(np.median(n_tok))}, {np.mean(np.array(n_tok) > 256):.0%} over 256")

    import torch
    default_threads = configure_torch_threads(0)
    cpu = {n: float("inf") for n in models}
    wall = {n: float("inf") for n in models}
    cores = {n: float("nan") for n in models}         # CPU-s / wall-s of the wall run: threads really busy
    window_vecs = {}
    for rep in range(args.repeats):              # interleave configs so load changes hit all of them
        for name, (one, dflt) in models.items():
            torch.set_num_threads(1)
            c, _, window_vecs[name] = timed(one, windows, args.batch)
            cpu[name] = min(cpu[name], c)
            torch.set_num_threads(default_threads)
            if args.wall:
                c, w, _ = timed(dflt, windows, args.batch)
                if w < wall[name]:
                    wall[name], cores[name] = w, c / w
            print(f"  rep {rep} {name}: cpu {cpu[name]:.1f}s" + (f" wall {wall[name]:.1f}s" if args.wall else ""),
                  flush=True)

    torch.set_num_threads(default_threads)
    ref = window_vecs[next(iter(models))]
    print(f"\n{'config':16} {'cpu_ms/chunk':>12} {'chunks/cpu-s':>12} {'wall chunks/s':>13} {'x_anchor':>8} "
          f"{'cores':>5} {'R@1':>6} {'R@10':>6} {'cos_min':>8} {'cos_mean':>8}")
    for name, (_, model) in models.items():
        if queries:
            qv = model.encode(queries, batch_size=args.batch, normalize_embeddings=True)
            cv = model.encode(corpus, batch_size=args.batch, normalize_embeddings=True)
            r1, r10 = f"{recall(qv, cv, targets, 1):6.3f}", f"{recall(qv, cv, targets, 10):6.3f}"
        else:
            r1 = r10 = f"{'-':>6}"
        cos = np.sum(window_vecs[name] * ref, axis=1)     # same windows, same batches as the timed run
        per_chunk = 1000 * cpu[name] / len(windows)
        ratio = cpu["anchor"] / cpu[name] if "anchor" in cpu else float("nan")
        wall_rate = f"{len(windows) / wall[name]:13.1f}" if args.wall else f"{'-':>13}"
        print(f"{name:16} {per_chunk:12.1f} {1000 / per_chunk:12.2f} {wall_rate} {ratio:8.2f} {cores[name]:5.2f} "
              f"{r1} {r10} {cos.min():8.4f} {cos.mean():8.4f}", flush=True)

    if "anchor" in models:                       # how close each path is to this core's multiply units
        anchor = models["anchor"][0]
        seq = [min(n, anchor.max_seq_length) for n in n_tok]
        print_ceiling(anchor[0].auto_model.config, seq,
                      {name: 1000 * cpu[name] / len(windows) for name in models if "+v" not in name and "@" not in name})

if __name__ == "__main__":
    main()
