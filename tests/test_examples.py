"""The examples run as written (subprocess, their own argv) against a tiny synthetic model and a small repo.

The only thing swapped is the embedding model (the fake bag-of-words embedder, as in the other CLI tests),
by a two-line prelude before the example file is executed with runpy; the file itself is untouched.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import REFERENCE_DIR
from tests.retrieval_fixtures import make_repo

ROOT = Path(__file__).resolve().parents[1]
PRELUDE = ("import sys, runpy, ragbit.indexing.embeddings; from tests.retrieval_fixtures import FakeEmbedder; "
           "ragbit.indexing.embeddings.Embedder = lambda cfg=None: FakeEmbedder(); "
           "path = sys.argv.pop(1); sys.argv[0] = path; runpy.run_path(path, run_name='__main__')")


@pytest.fixture(scope="module")
def tiny_model(tmp_path_factory):
    from generator.synthetic import write_synthetic_gguf
    path = tmp_path_factory.mktemp("model") / "tiny-tied.gguf"
    return write_synthetic_gguf(path, "tiny-tied", tokenizer_from=REFERENCE_DIR / "tiny-tied-q1_0.gguf", seed=3)


def run_example(name: str, *args) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    return subprocess.run([sys.executable, "-c", PRELUDE, str(ROOT / "examples" / name), *map(str, args)],
                          cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)


def test_ask_from_python(tmp_path, tiny_model):
    repo = make_repo(tmp_path / "shop")
    r = run_example("ask_from_python.py", repo, "Where is the liveness probe answered?", "--model", tiny_model,
                    "--budget", 200, "--max-tokens", 3)
    assert r.returncode == 0, r.stderr
    assert (repo / ".ragbit").is_dir()                               # it indexed the repository
    lines = r.stdout.strip().splitlines()
    summary = json.loads(lines[-1])
    assert 0 < summary["context_tokens"] <= 200 and summary["prompt_tokens"] > summary["context_tokens"]
    assert any(line.startswith("[") and "cmd/server/main.go:" in line for line in lines)


def test_custom_pipeline_filters_paths(tmp_path, tiny_model):
    repo = make_repo(tmp_path / "shop")
    r = run_example("custom_pipeline.py", repo, "How is the invoice total computed?", "--model", tiny_model,
                    "--include", "src/*", "--max-tokens", 3)
    assert r.returncode == 0, r.stderr
    assert "pipeline: retriever -> only -> packer -> prompt -> generator -> citations" in r.stdout
    sources = [line.strip() for line in r.stdout.split("sources:")[1].splitlines() if line.strip().startswith("[")]
    assert sources and all(" src/" in s for s in sources)           # the filter kept only src/ files
    steps = r.stdout.split("step timings:")[1]
    assert all(f"{name} " in steps for name in ("retriever", "only", "packer", "generator"))
