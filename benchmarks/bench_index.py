"""Indexing and search speed on real code: Django 5.1 and Sphinx 3.5 (sdists from PyPI) and a small project
(requests).

Prints per project: files/s and chunks/s of a cold index run (empty vector cache), its CPU time (cores busy on
average: under 2 on 2 idle cores means a core waited) and the load average at its end, the share of that time
spent inside the embedding model, peak RSS of the indexing process, the re-index time after touching one
file, and in-process search latency p50/p95 per mode. Each project runs in its own subprocess so peak RSS
is that project's alone. Timings are wall clock on a shared machine: compare them as ratios within one run.

    python benchmarks/bench_index.py --max-files 300          # quick: first 300 files of each project
    python benchmarks/bench_index.py                          # everything (Django: ~1 h of embedding on 2 cores)
    python benchmarks/bench_index.py --projects django --reindex-only 3   # one-file re-index on that index again
    python benchmarks/bench_index.py --projects sphinx        # Sphinx 3.5.0 (issue #19's second project)
    python benchmarks/bench_index.py --projects django --embed '{"lexical_only": ["tests/"]}'   # tests BM25 only
"""
from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import subprocess
import sys
import tarfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

PROJECTS = {"django": "django==5.1.*", "sphinx": "sphinx==3.5.0", "requests": "requests==2.32.*"}   # issue #19 asks
# for Django and Sphinx 3.5; "--projects sphinx" indexes the sdist (docs and tests included), as a user would
QUESTIONS = [
    "how are database transactions committed or rolled back",
    "where is the session cookie signed",
    "parse the HTTP Accept header",
    "retry a request when the connection fails",
    "validate an email address in a form field",
    "how does the URL resolver match a path to a view",
    "timezone aware datetime conversion",
    "cache backend that stores entries in memory",
    "redirect after a successful login",
    "stream a large file response in chunks",
    "which middleware adds security headers",
    "encode query string parameters",
    "template variable filters escaping html",
    "proxy settings from environment variables",
    "migrations autodetector renamed field",
    "password hashing algorithm iterations",
    "upload files multipart form data",
    "connection pool size",
    "translation of strings gettext",
    "raise an exception for bad status codes",
]


# ---------------------------------------------------------------------------------------------- download
def fetch(spec: str, cache: Path) -> Path:
    """pip download the sdist (cached) and unpack it; returns the unpacked top directory."""
    sdists = cache / "sdists"
    name = spec.split("==")[0]
    have = [p for p in sdists.glob("*.tar.gz") if p.name.lower().startswith(name + "-")] if sdists.is_dir() else []
    if not have:
        subprocess.run([sys.executable, "-m", "pip", "download", "--no-deps", "--no-binary", ":all:", spec,
                        "-d", str(sdists)], check=True, capture_output=True)
        have = [p for p in sdists.glob("*.tar.gz") if p.name.lower().startswith(name + "-")]
    tar = sorted(have)[-1]
    dest = cache / "src" / tar.name[: -len(".tar.gz")]
    if not dest.is_dir():
        dest.parent.mkdir(parents=True, exist_ok=True)
        with tarfile.open(tar) as t:
            t.extractall(dest.parent, filter="data")
    return dest


def subset(src: Path, dest: Path, max_files: int) -> Path:
    """A copy holding the first `max_files` files the walker would index (sorted by path)."""
    from ragbit.config import RagbitConfig
    from ragbit.indexing.walker import walk_repository
    if dest.exists():
        shutil.rmtree(dest)
    cfg = RagbitConfig.load(src)
    for i, sf in enumerate(walk_repository(src, cfg.walk, lambda m: None)):
        if i >= max_files:
            break
        out = dest / sf.path
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(sf.text, encoding="utf-8")
    return dest


# ---------------------------------------------------------------------------------------------- one project
def search_latency(cfg, embedder) -> dict:
    """p50/p95 ms per mode over QUESTIONS on the committed index (first search, which loads it, excluded)."""
    import numpy as np

    from ragbit.search.searcher import Searcher
    searcher = Searcher(cfg, embedder=embedder)
    searcher.search("warm up", k=10)
    latency = {}
    for mode in ("lexical", "dense", "hybrid"):
        ms = []
        for q in QUESTIONS:
            t = time.perf_counter()
            searcher.search(q, k=10, mode=mode)
            ms.append((time.perf_counter() - t) * 1000)
        latency[mode] = (float(np.percentile(ms, 50)), float(np.percentile(ms, 95)))
    return latency


def project_repo(name: str, cache: Path, max_files: int, fresh_subset: bool = False) -> Path:
    """The source tree a run indexes: the unpacked sdist, or the copy of its first `max_files` files (made anew
    for a full run; a re-index or latency run reuses the copy its index was built from)."""
    src = fetch(PROJECTS[name], cache)
    if not max_files:
        return src
    dest = cache / "subset" / name
    return subset(src, dest, max_files) if fresh_subset or not dest.is_dir() else dest


EMBED_OVERRIDES: dict = {}      # --embed: [embed] settings of every run (e.g. {"lexical_only": ["tests/"]})


def bench_config(repo: Path, index_dir: Path):
    """ragbit's config for `repo`, with the index kept under the bench cache rather than inside the source."""
    from ragbit.config import RagbitConfig
    return RagbitConfig.load(repo, overrides={"index": {"dir": str(index_dir)}, "embed": EMBED_OVERRIDES})


def reindex_one_file(repo: Path, cfg, embedder, tag: str = "") -> tuple[float, object]:
    """Append a comment to one mid-sized .py file, time `index_repository`, restore the file (source stays pristine)."""
    from ragbit.indexing.indexer import index_repository
    touched = next(p for p in sorted(repo.rglob("*.py")) if p.stat().st_size > 2000)
    original = touched.read_text()
    try:
        touched.write_text(original + f"\n# touched by bench_index {tag}\n")
        t = time.perf_counter()
        report = index_repository(cfg, progress=False, embedder=embedder)
        return time.perf_counter() - t, report
    finally:
        touched.write_text(original)


def reindex_only(repo: Path, index_dir: Path, repeats: int) -> None:
    """The one-file re-index, `repeats` times, on the (fully embedded) index a previous full run left behind."""
    from ragbit.indexing.embeddings import Embedder
    from ragbit.indexing.indexer import index_repository
    cfg = bench_config(repo, index_dir)
    embedder = Embedder(cfg.embed)
    embedder.embed(["warm up the model"], progress=False)
    for i in range(repeats):
        seconds, r = reindex_one_file(repo, cfg, embedder, tag=f"{i} {time.time_ns()}")   # new text: one chunk to embed
        print(f"  re-index after touching one file: {seconds:.2f}s ({r.files_changed} changed, {r.chunks_embedded} "
              "embedded): " + ", ".join(f"{k} {v:.2f}s" for k, v in r.timings.items()), flush=True)
    index_repository(cfg, progress=False, embedder=embedder)       # back in step with the restored file


def run_one(repo: Path, index_dir: Path) -> dict:
    from ragbit.indexing.embeddings import Embedder
    from ragbit.indexing.indexer import index_repository

    if index_dir.exists():
        shutil.rmtree(index_dir)
    cfg = bench_config(repo, index_dir)
    embedder = Embedder(cfg.embed)
    embedder.count_tokens("warm up the tokenizer")
    embedder.embed(["warm up the model"], progress=False)      # model load is not indexing speed
    t, cpu = time.perf_counter(), time.process_time()
    r = index_repository(cfg, progress=False, embedder=embedder)
    cold, cold_cpu = time.perf_counter() - t, time.process_time() - cpu
    rss_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024

    reindex, r2 = reindex_one_file(repo, cfg, embedder)
    latency = search_latency(cfg, embedder)
    return {"files": r.files, "chunks": r.chunks, "cold_s": cold, "cold_cpu_s": cold_cpu, "load": os.getloadavg(),
            "files_per_s": r.files / cold,
            "chunks_per_s": r.chunks / cold, "model_share": r.timings.get("model", 0) / cold,
            "walk_chunk_s": r.timings["walk_chunk"], "model_s": r.timings.get("model", 0),
            "peak_rss_mb": rss_mb, "reindex_s": reindex, "reindex_embedded": r2.chunks_embedded,
            "reindex_changed": r2.files_changed, "latency_ms": latency}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--cache", default="/tmp/ragbit-bench")
    ap.add_argument("--max-files", type=int, default=0, help="index only the first N files of each project")
    ap.add_argument("--projects", default="requests,django")
    ap.add_argument("--latency-only", action="store_true", help="only search latency, on the indexes of a previous run")
    ap.add_argument("--reindex-only", type=int, default=0, metavar="N",
                    help="only the one-file re-index, N times, on the index of a previous full run")
    ap.add_argument("--embed", default="{}", help='[embed] settings as JSON, e.g. \'{"lexical_only": ["tests/"]}\'')
    ap.add_argument("--_one", nargs=2, help=argparse.SUPPRESS)
    a = ap.parse_args()
    EMBED_OVERRIDES.update(json.loads(a.embed))
    if a._one:
        print(json.dumps(run_one(Path(a._one[0]), Path(a._one[1]))))
        return

    cache = Path(a.cache)
    if a.reindex_only:
        for name in a.projects.split(","):
            repo = project_repo(name, cache, a.max_files)
            print(f"{name}:", flush=True)
            reindex_only(repo, cache / "index" / name, a.reindex_only)
        return
    if a.latency_only:
        from ragbit.indexing.embeddings import Embedder
        embedder = Embedder()
        for name in a.projects.split(","):
            cfg = bench_config(project_repo(name, cache, a.max_files), cache / "index" / name)
            lat = search_latency(cfg, embedder)
            print(f"{name}: search latency p50/p95 ms (k=10, {len(QUESTIONS)} questions): "
                  + "  ".join(f"{mode} {p50:.1f}/{p95:.1f}" for mode, (p50, p95) in lat.items()), flush=True)
        return
    for name in a.projects.split(","):
        src = fetch(PROJECTS[name], cache)                         # unpacked once; names the release below
        repo = project_repo(name, cache, a.max_files, fresh_subset=True)
        out = subprocess.run([sys.executable, __file__, "--embed", a.embed, "--_one", str(repo),
                              str(cache / "index" / name)],
                             capture_output=True, text=True)
        if out.returncode != 0:
            print(f"{name}: failed\n{out.stderr[-3000:]}")
            continue
        m = json.loads(out.stdout.strip().splitlines()[-1])
        lat = "  ".join(f"{mode} {p50:.1f}/{p95:.1f}" for mode, (p50, p95) in m["latency_ms"].items())
        print(f"{name} ({src.name}{f', first {a.max_files} files' if a.max_files else ''}): "
              f"{m['files']} files, {m['chunks']} chunks in {m['cold_s']:.1f}s -> {m['files_per_s']:.2f} files/s, "
              f"{m['chunks_per_s']:.1f} chunks/s; CPU {m['cold_cpu_s']:.1f}s ({m['cold_cpu_s'] / m['cold_s']:.2f} "
              f"cores), load average at the end {m['load'][0]:.1f} / {m['load'][1]:.1f} / {m['load'][2]:.1f}; "
              f"walk+chunk {m['walk_chunk_s']:.1f}s, inside the model "
              f"{m['model_s']:.1f}s ({100 * m['model_share']:.0f}%); peak RSS {m['peak_rss_mb']:.0f} MB\n"
              f"  re-index after touching one file: {m['reindex_s']:.2f}s ({m['reindex_changed']} changed, "
              f"{m['reindex_embedded']} chunks embedded)\n"
              f"  search latency p50/p95 ms (k=10, {len(QUESTIONS)} questions): {lat}", flush=True)


if __name__ == "__main__":
    main()
