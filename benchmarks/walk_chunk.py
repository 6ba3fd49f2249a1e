"""Walk a directory tree and chunk every file: timing plus the chunker's invariants on real code.

    python benchmarks/walk_chunk.py <root> [--tokenizer PATH/tokenizer.json] [--max-tokens 256]

Checks (and reports violations of) the two guarantees the indexer relies on: every chunk's embed_text fits
max_tokens under the given counter, and every non-blank line of every file is inside some chunk.
"""
from __future__ import annotations

import argparse
import collections
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from ragbit.chunking import chunk_file  # noqa: E402
from ragbit.config import ChunkConfig, WalkConfig  # noqa: E402
from ragbit.walker import WalkStats, walk_repository  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("root")
    ap.add_argument("--tokenizer", help="a tokenizer.json; default: the chars/3.2 estimate")
    ap.add_argument("--max-tokens", type=int, default=256)
    args = ap.parse_args()

    count = None
    if args.tokenizer:
        from tokenizers import Tokenizer
        tok = Tokenizer.from_file(args.tokenizer)
        tok.no_truncation(); tok.no_padding()
        count = lambda s: len(tok.encode(s).ids)   # noqa: E731

    stats = WalkStats()
    t0 = time.perf_counter()
    files = list(walk_repository(Path(args.root), WalkConfig(), warn=lambda m: None, stats=stats))
    t_walk = time.perf_counter() - t0

    cfg = ChunkConfig(max_tokens=args.max_tokens)
    t0 = time.perf_counter()
    n_chunks, over, uncovered, by_lang = 0, 0, 0, collections.Counter()
    for f in files:
        chunks = chunk_file(f.path, f.text, cfg, count_tokens=count)
        n_chunks += len(chunks)
        covered = set()
        for c in chunks:
            by_lang[c.language] += 1
            covered.update(range(c.start_line, c.end_line + 1))
            if (count or (lambda s: (len(s) * 5 + 15) // 16))(c.embed_text) > args.max_tokens:
                over += 1
        uncovered += sum(1 for i, line in enumerate(f.text.split("\n")) if line.strip() and i + 1 not in covered)
    t_chunk = time.perf_counter() - t0

    mb = stats.bytes / 1e6
    print(f"walk : {stats.files} files, {mb:.1f} MB in {t_walk:.2f} s; {stats.summary()}")
    print(f"chunk: {n_chunks} chunks in {t_chunk:.2f} s ({mb / t_chunk:.2f} MB/s, "
          f"{'tokenizer' if count else 'estimate'}); over budget: {over}; uncovered lines: {uncovered}")
    print("chunks by language:", dict(by_lang.most_common(12)))


if __name__ == "__main__":
    main()
