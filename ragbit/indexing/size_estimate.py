"""How big is this indexing job? Files, chunks and time on this machine, estimated before the work starts.

Why: on a monorepo (100k+ files) a first `ragbit index` embeds millions of chunks, hours of CPU on a laptop.
The user should learn that before the hours start, with the numbers to decide (index a part with
`--include`, or go on). Counting files costs one directory walk without reads; the estimate reads and chunks a
uniform sample of files and embeds a few of their chunks, timed here, so it reflects this machine and its load
at the time (a busy machine gives a pessimistic figure).
"""
from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path

from ragbit.config import ChunkConfig, WalkConfig

SAMPLE_FILES = 60           # files read and chunked for the estimate (~1 s of chunking)
SAMPLE_EMBED = 48           # chunks embedded for the estimate, after a warm-up batch (the model is loaded anyway)
MIN_FILES = 5_000           # below this a first index takes minutes at most: no estimate, no question
ASK_ABOVE_SECONDS = 30 * 60  # ... and an estimate under this goes on without asking (the question is for hours)


@dataclass(frozen=True)
class SizeEstimate:
    files: int
    chunks: int                 # estimated
    chunk_seconds: float        # walk + chunk, estimated
    embed_seconds: float        # embedding every chunk, estimated
    sample_files: int

    @property
    def seconds(self) -> float:
        return self.chunk_seconds + self.embed_seconds

    @property
    def worth_asking(self) -> bool:
        """Long enough to ask before starting: 5,000 small files that index in seconds are not."""
        return self.seconds >= ASK_ABOVE_SECONDS

    def describe(self, repo: str) -> str:
        """Two lines for the user: the figures, then what they can do."""
        return (f"{repo} is large: {self.files:,} files, ~{self.chunks:,} chunks (from {self.sample_files} "
                f"sampled files); indexing takes about {duration(self.seconds)} on this machine "
                f"(walk+chunk {duration(self.chunk_seconds)}, then lexical search works; embedding "
                f"{duration(self.embed_seconds)}).\n"
                "Index a part with --include 'src/**' (or [walk] include in ragbit.toml), spread embedding over "
                "a cluster with --ray, or go on (--yes skips this question; Ctrl-C keeps what is done).")


def duration(seconds: float) -> str:
    if seconds < 90:
        return f"{seconds:.0f} s"
    if seconds < 5400:
        return f"{seconds / 60:.0f} min"
    return f"{seconds / 3600:.1f} h"


def estimate(repo: Path, walk_cfg: WalkConfig, chunk_cfg: ChunkConfig, embedder,
             min_files: int | None = None) -> SizeEstimate | None:
    """The estimate for indexing `repo` from scratch, or None when it has fewer than `min_files` files
    (default MIN_FILES)."""
    from ragbit.indexing.chunking import chunk_file
    from ragbit.indexing.walker import survey

    t = time.perf_counter()
    files, sample = survey(repo, walk_cfg, SAMPLE_FILES)
    walk_seconds = time.perf_counter() - t              # listing + stat of every file, read of the sample
    if files < (MIN_FILES if min_files is None else min_files) or not sample:
        return None
    counter = getattr(embedder, "token_counter", None) or embedder.count_tokens
    t = time.perf_counter()
    chunks = [c for sf in sample for c in chunk_file(sf.path, sf.text, chunk_cfg, count_tokens=counter)]
    per_file_seconds = (time.perf_counter() - t) / len(sample)
    chunks_per_file = len(chunks) / len(sample)
    texts = [c.embed_text for c in chunks[:SAMPLE_EMBED + 8]]
    embed_rate = _embed_rate(embedder, texts)
    total_chunks = int(round(files * chunks_per_file))
    return SizeEstimate(files=files, chunks=total_chunks,
                        chunk_seconds=walk_seconds + files * per_file_seconds,
                        embed_seconds=total_chunks / embed_rate if embed_rate else 0.0,
                        sample_files=len(sample))


def _embed_rate(embedder, texts: list[str]) -> float:
    """Chunks per second of `embedder` on `texts` (the first 8 warm it up and are not timed)."""
    if len(texts) <= 8:
        return 0.0
    embedder.embed(texts[:8], progress=False)
    t = time.perf_counter()
    embedder.embed(texts[8:], progress=False)
    return (len(texts) - 8) / max(time.perf_counter() - t, 1e-6)
