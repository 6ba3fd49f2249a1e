"""How ragbit scales: a synthetic monorepo of 100k files, and search at 100k / 1M chunks.

Parts (each prints its own table; run them one at a time under the shared lock):

    repo    index a synthetic repository (benchmarks/synthetic_repo.py, reproducible by seed) in a child process
            with a synthetic embedder (hashed bag-of-words vectors, dim 384, no model time: what is measured is
            everything around the model): walk+chunk time, time until lexical search works, dense build, total,
            peak RSS, then the re-index after one file changes, and search p50/p95 per mode on that index.
    dense   FAISS flat (exact) against HNSW and IVF on clustered synthetic vectors (dim 384) at the given sizes:
            build time, single-query p50/p95, recall@10 against exact search.
    lexical BM25 (indexes.lexical) over N synthetic chunk texts: build time and query p50/p95.

    python benchmarks/synthetic_repo.py /tmp/synth-100k --files 100000          # once, ~3 CPU-min, ~600 MB
    flock /tmp/ragbit-bench.lock python benchmarks/bench_scale.py repo /tmp/synth-100k
    flock /tmp/ragbit-bench.lock python benchmarks/bench_scale.py dense --n 50000 100000 1000000 --kinds hnsw
    flock /tmp/ragbit-bench.lock python benchmarks/bench_scale.py lexical --n 100000 1000000

Timings are wall clock on a shared machine: compare them as ratios within one run, and read the CPU line.
"""
from __future__ import annotations

import argparse
import hashlib
import json
import re
import resource
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

QUERIES = ["fetch session token", "retry backoff delay", "validate invoice balance", "parse manifest schema",
           "flush cache shard", "render template page", "resolve route handler", "commit transaction ledger",
           "register plugin hook", "schedule worker queue", "encode packet header", "ShardTreeError",
           "load_expire", "where is the socket origin closed", "update quota for tenant", "merge snapshot delta",
           "which endpoint publishes the topic", "lock lease timeout", "decode cursor offset", "trace span sampler"]


def cpu_name() -> str:
    """e.g. "AMD EPYC (family 25 model 17), avx512f avx512_vnni avx512_bf16, no AMX, 2 cores"."""
    import os
    info = {}
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        key, _, value = line.partition(":")
        info.setdefault(key.strip(), value.strip())
    flags = set(info.get("flags", "").split())
    simd = " ".join(f for f in ("avx2", "avx512f", "avx512_vnni", "avx512_bf16") if f in flags)
    return (f"{info.get('model name', 'unknown CPU')} (family {info.get('cpu family')} model {info.get('model')}), "
            f"{simd}, {'AMX' if 'amx_tile' in flags else 'no AMX'}, {len(os.sched_getaffinity(0))} cores")


def percentiles(ms: list[float]) -> tuple[float, float]:
    return float(np.percentile(ms, 50)), float(np.percentile(ms, 95))


# ---------------------------------------------------------------------------------------------- embedder
_WORD = re.compile(r"[a-z]+")


class SyntheticEmbedder:
    """Hashed bag-of-words vectors (dim 384, unit length): index-shaped data at no model cost. Token counts come
    from the real MiniLM tokenizer, so chunks are cut as in a real run."""

    model_id = "synthetic-bag-of-words-384"
    dim = 384

    def __init__(self):
        from ragbit.indexing.embeddings import Embedder
        self._real = Embedder()
        self.token_counter = self._real.token_counter
        self.max_text_tokens = self._real.max_text_tokens
        self.seconds_in_model = 0.0
        self._slot: dict[str, int] = {}

    def count_tokens(self, text: str) -> int:
        return self.token_counter.count(text)

    def _vector(self, text: str) -> np.ndarray:
        v = np.zeros(self.dim, dtype=np.float32)
        for w in _WORD.findall(text.lower()):
            slot = self._slot.get(w)
            if slot is None:
                slot = self._slot[w] = int.from_bytes(hashlib.blake2b(w.encode(), digest_size=4).digest()) % self.dim
            v[slot] += 1.0
        n = np.linalg.norm(v)
        return v / n if n else v

    def embed(self, texts, progress: bool = True) -> np.ndarray:
        t = time.perf_counter()
        out = np.stack([self._vector(x) for x in texts]) if len(texts) else np.zeros((0, self.dim), np.float32)
        self.seconds_in_model += time.perf_counter() - t
        return out

    def embed_query(self, text: str) -> np.ndarray:
        return self._vector(text)


# ---------------------------------------------------------------------------------------------- repo
def repo_child(repo: Path, index_dir: Path, reindex_runs: int = 3, embed_sample: int = 0) -> dict:
    from ragbit.config import RagbitConfig
    from ragbit.indexing.indexer import index_repository
    from ragbit.search.searcher import Searcher

    cfg = RagbitConfig.load(repo, overrides={"index": {"dir": str(index_dir)}})
    embedder = SyntheticEmbedder()
    embedder.count_tokens("warm up the tokenizer")
    warm = (index_dir / "CURRENT").exists()           # --keep-index: an index from an earlier run, brought up to date
    t, cpu = time.perf_counter(), time.process_time()
    r = index_repository(cfg, progress=False, embedder=embedder)
    cold = time.perf_counter() - t
    out = {"files": r.files, "chunks": r.chunks, "cold_s": cold, "cold_cpu_s": time.process_time() - cpu, "warm": warm,
           "timings": r.timings,
           "rss_after_index_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}

    py_files = sorted(repo.rglob("*.py"))
    touched = py_files[len(py_files) // 2]
    original = touched.read_text()
    reindex = []
    try:
        for i in range(reindex_runs):
            touched.write_text(original + f"\ndef touched_by_bench_scale_{i}():\n    return {time.time_ns()}\n")
            t, cpu = time.perf_counter(), time.process_time()
            r2 = index_repository(cfg, progress=False, embedder=embedder)
            reindex.append({"s": time.perf_counter() - t, "cpu_s": time.process_time() - cpu,
                            "timings": r2.timings, "changed": r2.files_changed,
                            "embedded": r2.chunks_embedded})
    finally:
        touched.write_text(original)
    out["reindex"] = reindex

    searcher = Searcher(cfg, embedder=embedder)
    t = time.perf_counter()
    searcher.search("warm up", k=10)
    out["first_search_s"] = time.perf_counter() - t
    out["latency_ms"] = {}
    for mode in ("lexical", "dense", "hybrid"):
        ms = []
        for q in QUERIES * 2:
            t = time.perf_counter()
            searcher.search(q, k=10, mode=mode)
            ms.append((time.perf_counter() - t) * 1000)
        out["latency_ms"][mode] = percentiles(ms)
    out["peak_rss_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    if embed_sample:                 # the real model's rate on this corpus: what the synthetic vectors leave out
        rows = np.random.default_rng(0).choice(len(searcher.table), size=embed_sample, replace=False)
        texts = [searcher.table.embed_text(int(i)) for i in rows]
        embedder._real.embed(texts[:8], progress=False)                                 # load the model
        t, cpu = time.perf_counter(), time.process_time()
        embedder._real.embed(texts, progress=False)
        out["embed_rate"] = {"chunks": embed_sample, "s": time.perf_counter() - t, "cpu_s": time.process_time() - cpu,
                             "backend": getattr(embedder._real, "backend_used", None) or getattr(embedder._real, "backend", "")}
    return out


def run_repo(repo: Path, index_dir: Path, reindex_runs: int, embed_sample: int = 0, keep: bool = False) -> None:
    if index_dir.exists() and not keep:
        shutil.rmtree(index_dir)
    proc = subprocess.run([sys.executable, __file__, "_repo_child", str(repo), str(index_dir), str(reindex_runs),
                           str(embed_sample)],
                          capture_output=True, text=True)
    if proc.returncode:
        sys.exit(proc.stderr[-3000:])
    d = json.loads(proc.stdout.strip().splitlines()[-1])
    t = d["timings"]
    print(f"CPU: {cpu_name()}")
    print(f"synthetic repository {repo}: {d['files']:,} files, {d['chunks']:,} chunks (synthetic vectors, dim 384)")
    if d["warm"]:
        print(f"  (--keep-index: the existing index was brought up to date in {d['cold_s']:.1f}s; no cold figures)")
    else:
        print(f"  cold index {d['cold_s']:.1f}s wall, {d['cold_cpu_s']:.1f}s CPU (user+sys): walk+chunk {t.get('walk_chunk', 0):.1f}s, lexical (BM25) "
              f"{t.get('lexical', 0):.1f}s, 'embedding' (synthetic) {t.get('embed', 0):.1f}s, dense {t.get('dense', 0):.1f}s")
        print(f"  lexical search ready after ~{t.get('walk_chunk', 0) + t.get('lexical', 0):.1f}s (generation A commit "
              "adds the table write)")
    print(f"  peak RSS {d['peak_rss_mb']:.0f} MB (after the cold index {d['rss_after_index_mb']:.0f} MB)")
    for i, r in enumerate(d["reindex"]):
        print(f"  one-file re-index #{i + 1}: {r['s']:.2f}s wall, {r['cpu_s']:.2f}s CPU ({r['changed']} changed, {r['embedded']} embedded): "
              + ", ".join(f"{k} {v:.2f}s" for k, v in r["timings"].items()))
    print(f"  first search (loads the index) {d['first_search_s']:.2f}s")
    for mode, (p50, p95) in d["latency_ms"].items():
        print(f"  search {mode:8s} p50 {p50:7.1f} ms  p95 {p95:7.1f} ms  (in-process, warm)")
    if "embed_rate" in d:
        e = d["embed_rate"]
        rate = e["chunks"] / e["s"]
        print(f"  real model ({e['backend']}) on {e['chunks']} sampled chunks: {rate:.1f} chunks/s wall, "
              f"{e['chunks'] / e['cpu_s']:.1f} per CPU-second; at that rate embedding all {d['chunks']:,} chunks "
              f"would take ~{d['chunks'] / rate / 3600:.1f} h (extrapolated, not measured)")


# ---------------------------------------------------------------------------------------------- dense
def clustered_vectors(n: int, dim: int = 384, clusters: int = 2000, seed: int = 0) -> np.ndarray:
    """Unit vectors around `clusters` random centres (embeddings of code cluster by topic; uniform random
    vectors would be the hardest, least realistic case for an approximate index)."""
    rng = np.random.default_rng(seed)
    centres = rng.standard_normal((clusters, dim)).astype(np.float32)
    out = np.empty((n, dim), dtype=np.float32)
    step = 100_000
    for s in range(0, n, step):
        m = min(step, n - s)
        out[s:s + m] = centres[rng.integers(0, clusters, m)] + 0.9 * rng.standard_normal((m, dim)).astype(np.float32)
    out /= np.linalg.norm(out, axis=1, keepdims=True)
    return out


def real_vectors(root: Path) -> np.ndarray:
    """Every distinct vector of the vector caches under `root` (e.g. retrieval_eval's --index-root), MiniLM only."""
    parts = []
    for space in root.rglob("space.json"):
        if json.loads(space.read_text()).get("model_id", "").endswith("all-MiniLM-L6-v2"):
            parts += [np.load(f) for f in space.parent.glob("*.npy")]
    return np.unique(np.concatenate(parts).astype(np.float32), axis=0) if parts else np.zeros((0, 384), np.float32)


def resampled(real: np.ndarray, n: int, sigma: float = 0.02, seed: int = 0) -> np.ndarray:
    """`n` unit vectors: the real ones first, then noisy copies of random real ones (per-dimension sigma 0.02:
    cosine ~0.93 to their source, about as close as a real near neighbour), so a large corpus keeps the
    neighbourhood structure of real embeddings."""
    rng = np.random.default_rng(seed)
    out = np.empty((n, real.shape[1]), dtype=np.float32)
    m = min(n, len(real))
    out[:m] = real[:m]
    for s in range(m, n, 100_000):
        e = min(n, s + 100_000)
        out[s:e] = real[rng.integers(0, len(real), e - s)] + sigma * rng.standard_normal((e - s, real.shape[1]))
    out /= np.linalg.norm(out, axis=1, keepdims=True)
    return out


def run_dense(sizes: list[int], kinds: list[str], real_root: Path | None, queries: int = 200) -> None:
    from indexes.dense import DenseIndex
    real = real_vectors(real_root) if real_root else np.zeros((0, 384), np.float32)
    print(f"CPU: {cpu_name()}")
    print(f"vectors: {f'{len(real):,} distinct real MiniLM vectors from {real_root}, resampled with noise beyond that' if len(real) else 'clustered synthetic (2,000 centres)'}")
    print(f"{'n':>9s} {'kind':5s} {'build s':>8s} {'p50 ms':>7s} {'p95 ms':>7s} {'recall@10':>9s}")
    for n in sizes:
        xb = resampled(real, n) if len(real) else clustered_vectors(n)
        rng = np.random.default_rng(1)
        q = xb[rng.integers(0, n, queries)] + 0.02 * rng.standard_normal((queries, xb.shape[1])).astype(np.float32)
        q /= np.linalg.norm(q, axis=1, keepdims=True)
        exact = None
        for kind in ["flat"] + [k for k in kinds if k != "flat"]:
            t = time.perf_counter()
            index = DenseIndex.build(xb, kind=kind)
            build = time.perf_counter() - t
            ms, found = [], []
            for v in q:
                t = time.perf_counter()
                hits = index.search(v, 10)
                ms.append((time.perf_counter() - t) * 1000)
                found.append({i for i, _ in hits})
            if kind == "flat":
                exact = found
            recall = np.mean([len(f & e) / 10 for f, e in zip(found, exact)])
            p50, p95 = percentiles(ms)
            print(f"{n:9,d} {kind:5s} {build:8.1f} {p50:7.2f} {p95:7.2f} {recall:9.3f}", flush=True)
            del index
        del xb


# ---------------------------------------------------------------------------------------------- lexical
def run_lexical(sizes: list[int]) -> None:
    sys.path.insert(0, str(ROOT / "benchmarks"))
    import random

    from indexes.lexical import LexicalIndex
    from synthetic_repo import Vocabulary, python_body
    print(f"CPU: {cpu_name()}")
    for n in sizes:
        v = Vocabulary(random.Random(n))
        texts = ["\n".join(python_body(v, "    ", 8)) for _ in range(n)]
        t = time.perf_counter()
        index = LexicalIndex.build(texts)
        build = time.perf_counter() - t
        del texts
        index.search("warm up", 10)
        ms = []
        for q in QUERIES * 2:
            t = time.perf_counter()
            index.search(q, 10)
            ms.append((time.perf_counter() - t) * 1000)
        p50, p95 = percentiles(ms)
        print(f"{n:9,d} chunks: BM25 build {build:.1f}s, query p50 {p50:.1f} ms p95 {p95:.1f} ms, "
              f"peak RSS so far {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:.0f} MB", flush=True)


def main() -> None:
    if len(sys.argv) > 1 and sys.argv[1] == "_repo_child":
        print(json.dumps(repo_child(Path(sys.argv[2]), Path(sys.argv[3]), int(sys.argv[4]), int(sys.argv[5]))))
        return
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = ap.add_subparsers(dest="part", required=True)
    p = sub.add_parser("repo")
    p.add_argument("repo", type=Path)
    p.add_argument("--index-dir", type=Path, default=None, help="default: /tmp/ragbit-bench-scale/<repo name>")
    p.add_argument("--reindex", type=int, default=3, help="one-file re-index runs")
    p.add_argument("--keep-index", action="store_true",
                   help="start from the index an earlier run left in --index-dir (re-index and search figures only)")
    p.add_argument("--embed-sample", type=int, default=0,
                   help="also time the real embedding model on this many chunks of the index (0: skip)")
    p = sub.add_parser("dense")
    p.add_argument("--n", type=int, nargs="+", default=[100_000])
    p.add_argument("--kinds", nargs="+", default=["hnsw", "ivf"])
    p.add_argument("--real", type=Path, default=Path("/tmp/ragbit-eval"),
                   help="vector caches of real MiniLM embeddings to start from (retrieval_eval's index root)")
    p = sub.add_parser("lexical")
    p.add_argument("--n", type=int, nargs="+", default=[100_000])
    a = ap.parse_args()
    if a.part == "repo":
        run_repo(a.repo, a.index_dir or Path("/tmp/ragbit-bench-scale") / a.repo.name, a.reindex, a.embed_sample, a.keep_index)
    elif a.part == "dense":
        run_dense(a.n, a.kinds, a.real if a.real.is_dir() else None)
    else:
        run_lexical(a.n)


if __name__ == "__main__":
    main()
