"""GGUF fuzzing (issue #20): seeded mutations of two model files (bit flips, truncations, header and tensor
table damage, huge counts and offsets, wrong type bytes) loaded by the generator in worker processes. Every
variant must load or fail with one domain-error line: no crash, no traceback, no hang, bounded memory.

Bases: a tiny Bonsai-layout model without tokenizer (55 kB: loads in milliseconds, so most variants go
there) and the tiny reference model with the real 151k-token Qwen3 tokenizer (full `Generator.load`).
A failing seed is reproducible with `python -m tests.faults.gguf_fuzz_worker BASE SEED 1 DIR FULL`; fixed
failures are kept in REGRESSION_SEEDS.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from tests.conftest import REFERENCE_DIR

WORKTREE = Path(__file__).resolve().parents[2]
BATCH = 150
# seeds that failed once (kept even if the ranges above change): reference 14 = a multi-line TokenizerError
REGRESSION_SEEDS: dict[str, list[int]] = {"notok": [], "reference": [14]}


@pytest.fixture(scope="module")
def bases(tmp_path_factory) -> dict[str, tuple[Path, bool]]:
    from generator.synthetic import write_synthetic_gguf
    notok = write_synthetic_gguf(tmp_path_factory.mktemp("fuzz") / "notok.gguf", "tiny-tied", tokenizer_from=None,
                                 seed=5, n_vocab=512)
    return {"notok": (notok, False), "reference": (REFERENCE_DIR / "tiny-tied-q1_0.gguf", True)}


def run_batch(base: Path, full: bool, first: int, count: int, workdir: Path) -> list[dict]:
    """Run seeds [first, first + count) in one worker; a worker that dies is restarted after the seed it died
    on, which is recorded as a crash."""
    records: list[dict] = []
    while count > 0:
        env = dict(os.environ, PYTHONPATH=str(WORKTREE), NUMBA_NUM_THREADS="1")
        p = subprocess.run([sys.executable, "-m", "tests.faults.gguf_fuzz_worker", str(base), str(first), str(count),
                            str(workdir), "1" if full else "0"], cwd=WORKTREE, env=env, capture_output=True,
                           text=True, timeout=60 + 30 * count)
        done, started = set(), None
        for line in p.stdout.splitlines():
            rec = json.loads(line)
            if "start" in rec:
                started = rec["start"]
            else:
                records.append(rec)
                done.add(rec["seed"])
        if p.returncode == 0 and len(done) == count:
            break
        dead = started if started is not None and started not in done else first
        records.append({"seed": dead, "outcome": "crash",
                        "message": f"worker died (exit {p.returncode}): {p.stderr.strip()[-300:]}"})
        count -= dead + 1 - first
        first = dead + 1
    return records


def fuzz(bases, tmp_path, plan: dict[str, list[int]]) -> Counter:
    jobs = []
    for name, seeds in plan.items():
        base, full = bases[name]
        seeds = sorted(seeds)
        for i in range(0, len(seeds), BATCH):
            chunk = seeds[i:i + BATCH]
            assert chunk == list(range(chunk[0], chunk[0] + len(chunk)))
            jobs.append((name, base, full, chunk[0], len(chunk)))
    with ThreadPoolExecutor(max_workers=2) as pool:
        results = list(pool.map(lambda j: (j[0], run_batch(j[1], j[2], j[3], j[4], tmp_path)), jobs))
    outcomes: Counter = Counter()
    bad = []
    for name, records in results:
        for rec in records:
            outcomes[rec["outcome"]] += 1
            if rec["outcome"] == "error" and ("\n" in rec["message"] or not rec["message"].strip()):
                bad.append((name, rec["seed"], "multi-line error", rec["message"][:300]))
            elif rec["outcome"] in ("crash", "timeout"):
                bad.append((name, rec["seed"], rec.get("what"), rec.get("message", "")[:300]))
    print(f"\n{sum(outcomes.values())} variants: {dict(outcomes)}")
    assert not bad, "\n".join(map(str, bad[:20]))
    return outcomes


def test_gguf_fuzz_short(bases, tmp_path):
    outcomes = fuzz(bases, tmp_path, {"notok": list(range(280)),
                                      "reference": sorted(set(range(20)) | set(REGRESSION_SEEDS["reference"]))})
    assert outcomes["error"] > 100          # most mutations are caught, and each was one line


@pytest.mark.faults_long
@pytest.mark.timeout(7200)
def test_gguf_fuzz_long(bases, tmp_path):
    outcomes = fuzz(bases, tmp_path, {"notok": list(range(100_000, 109_500)),
                                      "reference": list(range(200_000, 200_500))})
    assert sum(outcomes.values()) == 10_000
