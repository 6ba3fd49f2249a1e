"""`ragbit index --ray` against the plain local indexer on the same input, with the real embedding model.

Each run indexes a fresh copy of a synthetic repository (benchmarks/synthetic_repo.py, seed 7) into an empty index
(no cached vectors) in its own process: the plain indexer, then a local Ray instance with 1, 2 and 4 worker
processes per stage (`ray.init(num_cpus=N)`, shut down after the run). Printed per run: wall time of
`index_repository` (model loads and Ray start included, as a user waits for them), chunks/s over that, the
embed phase alone and its chunks/s. The overhead of the Ray path is the 1-worker run against the plain one.

    flock /tmp/ragbit-bench.lock python benchmarks/bench_ray.py --files 120

On a 2-core machine 4 workers oversubscribe the cores: that row shows the cost of too many workers, not scaling.
The extrapolation at the end is arithmetic on the measured per-worker rate, stated as such.
"""
from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))


def child(repo: Path, index_dir: Path, workers: int) -> dict:
    from ragbit.config import RagbitConfig
    from ragbit.indexing.indexer import index_repository
    overrides = {"index": {"dir": str(index_dir), "ray": "local" if workers else "", "ray_workers": workers}}
    cfg = RagbitConfig.load(repo, overrides)
    t = time.perf_counter()
    r = index_repository(cfg, progress=False)
    wall = time.perf_counter() - t
    return {"wall": wall, "chunks": r.chunks, "embedded": r.chunks_embedded, "timings": r.timings,
            "backend": r.embed_backend}


def same_index(a: Path, b: Path) -> str:
    """Do two indexes hold the same chunks (ids, order) and vectors? The least cosine between a chunk's vectors."""
    import numpy as np

    from indexes.dense import DenseIndex
    from indexes.store import IndexStore
    from ragbit.chunk_table import ChunkTable
    ga, gb = Path(IndexStore(a).current()), Path(IndexStore(b).current())
    same_chunks = list(ChunkTable.load(ga).content_hash) == list(ChunkTable.load(gb).content_hash)
    va = DenseIndex.load(ga / "dense.faiss")._index.reconstruct_n(0, len(DenseIndex.load(ga / "dense.faiss")))
    vb = DenseIndex.load(gb / "dense.faiss")._index.reconstruct_n(0, len(DenseIndex.load(gb / "dense.faiss")))
    cos = float(np.min(np.sum(va * vb, axis=1))) if va.shape == vb.shape else float("nan")
    return (f"same chunk ids and order: {same_chunks}; vectors: least cosine {cos:.6f}, "
            f"max |difference| {float(np.max(np.abs(va - vb))) if va.shape == vb.shape else float('nan'):.2e}")


def main() -> None:
    if len(sys.argv) > 1 and sys.argv[1] == "_child":
        print(json.dumps(child(Path(sys.argv[2]), Path(sys.argv[3]), int(sys.argv[4]))))
        return
    from bench_scale import cpu_name
    from synthetic_repo import generate
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--files", type=int, default=120)
    ap.add_argument("--workers", type=int, nargs="+", default=[0, 1, 2, 4], help="0 = the plain local indexer")
    ap.add_argument("--work", type=Path, default=Path("/tmp/ragbit-bench-ray"))
    a = ap.parse_args()
    repo = generate(a.work / f"repo-{a.files}", a.files, seed=7)
    print(f"CPU: {cpu_name()}")
    print(f"input: synthetic repository, {a.files} files; real embedding model; empty vector cache per run")
    print(f"{'run':>16s} {'wall s':>7s} {'chunks':>7s} {'chunks/s':>8s} {'embed s':>8s} {'embed chunks/s':>14s}")
    rows = {}
    for workers in a.workers:
        index_dir = a.work / f"index-{workers}"
        shutil.rmtree(index_dir, ignore_errors=True)
        proc = subprocess.run([sys.executable, __file__, "_child", str(repo), str(index_dir), str(workers)],
                              capture_output=True, text=True)
        subprocess.run(["ray", "stop", "--force"], capture_output=True)     # never leave Ray processes behind
        if proc.returncode:
            print(f"{workers} workers failed: {proc.stderr.strip().splitlines()[-1:]}")
            continue
        d = json.loads(proc.stdout.strip().splitlines()[-1])
        rows[workers] = d
        embed_s = d["timings"].get("embed", 0.0)
        name = "plain local" if workers == 0 else f"ray, {workers} worker{'s' * (workers > 1)}"
        print(f"{name:>16s} {d['wall']:7.1f} {d['chunks']:7d} {d['chunks'] / d['wall']:8.1f} {embed_s:8.1f} "
              f"{d['embedded'] / embed_s if embed_s else 0:14.1f}", flush=True)
    for workers in (w for w in rows if w and 0 in rows):
        print(f"ray {workers} vs plain: {same_index(a.work / 'index-0', a.work / f'index-{workers}')}")
    if 0 in rows and 1 in rows:
        print(f"overhead of the Ray path on one machine (1 worker vs plain): "
              f"{rows[1]['wall'] / rows[0]['wall']:.2f}x wall ({rows[1]['wall'] - rows[0]['wall']:+.1f} s)")
    best = max((w for w in rows if w), key=lambda w: rows[w]["embedded"] / max(rows[w]["timings"].get("embed", 1e-9), 1e-9),
               default=None)
    if best:
        per_core = rows[best]["embedded"] / rows[best]["timings"]["embed"] / min(best, 2)
        print(f"EXTRAPOLATION (arithmetic, not measured): at {per_core:.1f} chunks/s per core (this run's best, "
              "these 2 shared cores), 10M chunks take "
              + ", ".join(f"{1e7 / (per_core * cores * n) / 3600:.1f} h on {n} machine{'s' * (n > 1)} of {cores} cores"
                          for n, cores in ((1, 2), (10, 16), (100, 16)))
              + " (assumes linear scaling and that the driver's walk, cache writes and commit keep up)")


if __name__ == "__main__":
    main()
