"""Memory (issue #20): peak RSS of `ragbit index` on a repository of many small files and on one of a few huge
files, through the real CLI (tests/faults/driver.py, fake embedder: 256-dim vectors, no model in memory).

Measured as the peak RSS of the `ragbit index` process (`getrusage(RUSAGE_CHILDREN).ru_maxrss` in a wrapper
process whose only child it is). Bounds, over the RSS of indexing a 10-file repository (the interpreter,
numpy, numba, faiss, bm25s: ~140 MB here):
- small files (~200 bytes, 3 chunks each): at most 30 KB per file (measured ~19 KB: chunk table, BM25,
  vectors and the FAISS index, each held once or twice while a generation is written). Short form 5,000
  files, long form (`-m faults_long`) 100,000.
- huge files: a 2 GB sparse file and 50 MB files are skipped by their size without being read (+40 MB at
  most); with the size limit raised past them, a file whose first 8 KB hold a NUL byte is binary after an
  8 KB read, so the 2 GB file still costs nothing (the rest: at most ~4x the largest file read).
"""
from __future__ import annotations

import json
import os
import random
import subprocess
import sys
from pathlib import Path

import pytest

from tests.faults.test_crashes import WORKTREE

WORDS = ("alpha beta gamma delta parse render index query token vector cache shard commit walk chunk table "
         "server socket retry invoice").split()
PER_FILE_KB = 30                     # the small-files bound, per file
MB = 1024 * 1024

_WRAPPER = ("import json, resource, subprocess, sys\n"
            "r = subprocess.run(sys.argv[1:], capture_output=True, text=True)\n"
            "print(json.dumps({'rc': r.returncode, 'out': r.stdout, 'err': r.stderr,\n"
            "                  'kb': resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss}))\n")


def index_peak_mb(repo: Path, *extra: str) -> tuple[float, dict]:
    """(peak RSS in MB of `ragbit index REPO --json EXTRA`, its JSON report)."""
    env = dict(os.environ, PYTHONPATH=str(WORKTREE), RAGBIT_FAULTS_EMBED_DELAY="0")
    w = subprocess.run([sys.executable, "-c", _WRAPPER, sys.executable, "-m", "tests.faults.driver", "index",
                        str(repo), "--json", *extra], cwd=WORKTREE, env=env, capture_output=True, text=True,
                       timeout=7200)
    r = json.loads(w.stdout)
    assert r["rc"] == 0 and "Traceback" not in r["err"], r["err"][-2000:]
    return r["kb"] / 1024, json.loads(r["out"])


def small_files(root: Path, n: int, seed: int = 5) -> Path:
    """`n` Python modules of ~200 bytes, 100 per directory; every file adds names of its own to the vocabulary."""
    rng = random.Random(seed)
    for i in range(n):
        d = root / f"pkg{i // 100:04d}"
        if i % 100 == 0:
            d.mkdir(parents=True, exist_ok=True)
        a, b, c = rng.sample(WORDS, 3)
        (d / f"mod{i:06d}.py").write_text(f'"""Module {i}: the {a} of {b} for {c}."""\n\n\ndef {a}_{b}_{i}(x):\n'
                                          f'    return x + {i}\n\n\nclass {c.title()}{i}:\n    value = "{a} {c} {i}"\n')
    return root


@pytest.fixture(scope="module")
def baseline_mb(tmp_path_factory) -> float:
    mb, report = index_peak_mb(small_files(tmp_path_factory.mktemp("tiny") / "repo", 10))
    assert report["files_added"] == 10
    return mb


def check_small_files(tmp_path, baseline_mb, n: int) -> float:
    mb, report = index_peak_mb(small_files(tmp_path / "repo", n))
    assert report["files_added"] == n and report["chunks"] == 3 * n and report["dense_complete"]
    per_file_kb = (mb - baseline_mb) * 1024 / n
    print(f"\n{n} small files: peak RSS {mb:.0f} MB ({baseline_mb:.0f} MB for 10 files; "
          f"{per_file_kb:.1f} KB per file more)")
    assert mb <= baseline_mb + n * PER_FILE_KB / 1024, (mb, baseline_mb)
    return mb


def test_rss_small_files_short(tmp_path, baseline_mb):
    check_small_files(tmp_path, baseline_mb, 5_000)


@pytest.mark.faults_long
@pytest.mark.timeout(7200)
def test_rss_small_files_long(tmp_path, baseline_mb):
    check_small_files(tmp_path, baseline_mb, 100_000)


def huge_files(root: Path) -> Path:
    small_files(root, 6)
    with open(root / "disk-image.txt", "wb") as f:            # 2 GB sparse: zeros nobody wrote
        f.truncate(2 * 1024 * MB)
    line = b"def handler(event):  return event.payload  # a long generated log of calls\n"
    (root / "calls.txt").write_bytes(line * (50 * MB // len(line)))                    # 50 MB of lines
    (root / "bundle.txt").write_bytes(b"var a=1;" * (50 * MB // 8))              # 50 MB, one line
    (root / "core-dump.txt").write_bytes(b"\x7fELF\x00" + b"x" * (50 * MB))          # NUL in its head
    return root


def test_rss_huge_files_skipped_unread(tmp_path, baseline_mb):
    repo = huge_files(tmp_path / "repo")
    mb, report = index_peak_mb(repo)                          # default limit: 1 MB
    assert report["files_added"] == 6 and report["skipped"].get("too large") == 4, report["skipped"]
    print(f"\n2 GB sparse + 3 x 50 MB files, default limit: peak RSS {mb:.0f} MB (10 files: {baseline_mb:.0f} MB)")
    assert mb <= baseline_mb + 40
    listed = subprocess.run([sys.executable, "-m", "tests.faults.driver", "index", str(repo), "--list-skipped"],
                            cwd=WORKTREE, env=dict(os.environ, PYTHONPATH=str(WORKTREE)), capture_output=True,
                            text=True, timeout=300)
    assert sorted(l for l in listed.stdout.splitlines() if l.startswith("too large")) == [
        f"too large\t{name}" for name in ("bundle.txt", "calls.txt", "core-dump.txt", "disk-image.txt")]


def test_rss_huge_files_with_the_limit_raised(tmp_path, baseline_mb):
    """Past the size limit, content rules decide: the 2 GB file must still not be read (binary at 8 KB)."""
    repo = huge_files(tmp_path / "repo")
    (repo / "calls.txt").unlink()                             # 50 MB of real lines would be indexed: slow, not huge
    mb, report = index_peak_mb(repo, "--max-file-bytes", str(3 * 1024 * MB))
    assert report["files_added"] == 6, report
    assert report["skipped"].get("binary") == 2 and report["skipped"].get("minified/generated") == 1, report["skipped"]
    print(f"\n2 GB sparse + 2 x 50 MB files, limit 3 GB: peak RSS {mb:.0f} MB (10 files: {baseline_mb:.0f} MB)")
    assert mb <= baseline_mb + 4 * 50
