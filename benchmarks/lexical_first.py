"""Time until lexical search works: `index_repository(embed=False)` from scratch, then after touching one file.

    python benchmarks/lexical_first.py <repo> [--touch REL_PATH] [--profile N] [--workers N]

Reports wall AND CPU seconds (process_time, plus children for a process pool) per phase: the machine is shared,
so CPU time is the figure to compare between runs. The index goes to a temporary directory (never the repo).
--profile N prints the N most expensive functions (cumulative) of the from-scratch run.
"""
from __future__ import annotations

import argparse
import cProfile
import os
import pstats
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from ragbit.config import RagbitConfig  # noqa: E402
from ragbit.indexing.indexer import index_repository  # noqa: E402


def cpu() -> float:
    t = os.times()
    return t.user + t.system + t.children_user + t.children_system


def run(cfg: RagbitConfig, label: str, profile: int = 0):
    prof = cProfile.Profile() if profile else None
    w0, c0 = time.perf_counter(), cpu()
    if prof:
        prof.enable()
    r = index_repository(cfg, progress=False, embed=False)
    if prof:
        prof.disable()
    wall, cpus = time.perf_counter() - w0, cpu() - c0
    phases = ", ".join(f"{k} {v:.2f}s" for k, v in r.timings.items())
    print(f"{label}: wall {wall:.2f} s, cpu {cpus:.2f} s; {r.files} files (+{r.files_added} "
          f"~{r.files_changed}), {r.chunks} chunks; phases (wall): {phases}")
    if prof:
        pstats.Stats(prof).sort_stats("cumulative").print_stats(profile)
    return r, wall, cpus


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("repo")
    ap.add_argument("--touch", default="django/db/models/query.py", help="file to append a line to, then re-index")
    ap.add_argument("--profile", type=int, default=0)
    ap.add_argument("--workers", type=int, default=1, help="chunking processes (0 = one per core)")
    args = ap.parse_args()
    repo = Path(args.repo).resolve()
    with tempfile.TemporaryDirectory() as tmp:
        cfg = RagbitConfig.load(repo, overrides={"index": {"dir": str(Path(tmp) / "idx"),
                                                              "workers": args.workers}})
        r, wall, cpus = run(cfg, "from scratch", args.profile)
        mb = sum((repo / f.path).stat().st_size for f in _files(cfg)) / 1e6
        print(f"  {r.files / wall:.0f} files/s wall, {mb:.1f} MB indexed -> {mb / cpus:.2f} MB per CPU-second")
        target = repo / args.touch
        if target.is_file():
            original = target.read_bytes()
            try:
                target.write_bytes(original + b"\n# touched by benchmarks/lexical_first.py\n")
                run(cfg, f"one file changed ({args.touch})")
            finally:
                target.write_bytes(original)


def _files(cfg: RagbitConfig):
    from ragbit.chunk_table import ChunkTable
    from indexes.store import IndexStore
    return ChunkTable.load(Path(IndexStore(cfg.index_dir).current())).files


if __name__ == "__main__":
    main()
