"""Walk a directory tree and chunk every file: timing plus the chunker's invariants on real code.

    python benchmarks/walk_chunk.py <root> [--tokenizer PATH/tokenizer.json] [--max-tokens 256]

Checks (and reports violations of) the two guarantees the indexer relies on: every chunk's embed_text fits
max_tokens counted by the tokenizer itself (one plain encode per chunk, after the timed part), and every
non-blank line of every file is inside some chunk.
"""
from __future__ import annotations

import argparse
import collections
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from ragbit.indexing.chunking import chunk_file  # noqa: E402
from ragbit.config import ChunkConfig, WalkConfig  # noqa: E402
from ragbit.indexing.walker import WalkStats, walk_repository  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("root")
    ap.add_argument("--tokenizer", help="a tokenizer.json; default: the chars/3.2 estimate")
    ap.add_argument("--max-tokens", type=int, default=256)
    args = ap.parse_args()

    count = exact = None
    if args.tokenizer:
        from tokenizers import Tokenizer
        from ragbit.indexing.chunking import counter_for_tokenizer
        tok = Tokenizer.from_file(args.tokenizer)
        tok.no_truncation(); tok.no_padding()
        count = counter_for_tokenizer(tok)              # what the indexer uses
        exact = lambda s: len(tok.encode(s, add_special_tokens=False).ids)   # noqa: E731  the check

    stats = WalkStats()
    t0 = time.perf_counter()
    files = list(walk_repository(Path(args.root), WalkConfig(), warn=lambda m: None, stats=stats))
    t_walk = time.perf_counter() - t0

    cfg = ChunkConfig(max_tokens=args.max_tokens)
    t0, c0 = time.perf_counter(), time.process_time()
    per_file = [chunk_file(f.path, f.text, cfg, count_tokens=count) for f in files]
    t_chunk, cpu_chunk = time.perf_counter() - t0, time.process_time() - c0

    n_chunks, over, uncovered, by_lang = 0, 0, 0, collections.Counter()
    check = exact or (lambda s: (len(s) * 5 + 15) // 16)
    for f, chunks in zip(files, per_file):
        n_chunks += len(chunks)
        covered = set()
        for c in chunks:
            by_lang[c.language] += 1
            covered.update(range(c.start_line, c.end_line + 1))
            if check(c.embed_text) > args.max_tokens:
                over += 1
        uncovered += sum(1 for i, line in enumerate(f.text.split("\n")) if line.strip() and i + 1 not in covered)
    mb = stats.bytes / 1e6
    print(f"walk : {stats.files} files, {mb:.1f} MB in {t_walk:.2f} s; {stats.summary()}")
    print(f"chunk: {n_chunks} chunks in {t_chunk:.2f} s wall, {cpu_chunk:.2f} s CPU ({mb / cpu_chunk:.2f} MB/CPU-s, "
          f"{'tokenizer' if count else 'estimate'}); over budget: {over}; uncovered lines: {uncovered}")
    print("chunks by language:", dict(by_lang.most_common(12)))


if __name__ == "__main__":
    main()
