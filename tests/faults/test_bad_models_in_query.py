"""`ragbit query`, `query --json` and `chat` with a model that cannot run: sources plus one warning line, exit
0, never a traceback (issue #20: a token_embd with the wrong vocabulary size)."""
from __future__ import annotations

import json

import pytest
from typer.testing import CliRunner

import ragbit.indexing.embeddings
from ragbit.cli import app
from tests.conftest import REFERENCE_DIR
from tests.retrieval_fixtures import FakeEmbedder, make_repo

runner = CliRunner()


@pytest.fixture(scope="module")
def small_vocab_model(tmp_path_factory):
    """Embedding of 1,000 rows under the real 151,936-token tokenizer: its prompt ids have no row."""
    import generator.synthetic as synthetic
    plan = synthetic.tensor_plan
    synthetic.tensor_plan = lambda spec, n: plan(spec, 1000)
    try:
        return synthetic.write_synthetic_gguf(tmp_path_factory.mktemp("m") / "v.gguf", "tiny-tied",
                                              tokenizer_from=REFERENCE_DIR / "tiny-tied-q1_0.gguf", seed=1)
    finally:
        synthetic.tensor_plan = plan


@pytest.fixture
def repo(tmp_path, monkeypatch):
    monkeypatch.setattr(ragbit.indexing.embeddings, "Embedder", lambda cfg=None: FakeEmbedder())
    return make_repo(tmp_path / "shop")


def warning_lines(stderr: str) -> list[str]:
    return [l for l in stderr.splitlines() if l.strip()]


@pytest.mark.parametrize("as_json", [False, True])
def test_query_with_wrong_vocab_model(repo, small_vocab_model, as_json):
    r = runner.invoke(app, ["query", "retry backoff", "--repo", str(repo), "--model", str(small_vocab_model),
                            "--max-tokens", "2"] + (["--json"] if as_json else []))
    assert r.exit_code == 0, r.output
    assert "Traceback" not in r.output
    [line] = [l for l in warning_lines(r.stderr) if l.startswith("warning:")]
    assert "1000 rows" in line
    if as_json:
        out = json.loads(r.stdout)
        assert out["error"] and out["sources"]
    else:
        assert "sources (retrieved; no answer was generated):" in r.stdout


def test_chat_with_wrong_vocab_model(repo, small_vocab_model):
    r = runner.invoke(app, ["chat", "--repo", str(repo), "--model", str(small_vocab_model), "--max-tokens", "2"],
                      input="retry backoff\n")
    assert r.exit_code == 0, r.output
    assert "Traceback" not in r.output and "1000 rows" in r.stderr
