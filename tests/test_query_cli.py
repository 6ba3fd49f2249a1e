"""`ragbit query` / `ragbit chat` end to end: a small repository, a tiny random-weight Bonsai-layout model
(written by generator/synthetic.py with the real Qwen3 tokenizer) and the fake embedder.

What is checked is what a user relies on: the prompt the model read holds the right chunk, the answer
stream ends, sources are listed, and a missing/corrupt model still gives sources plus one warning line.
The model's words are gibberish (random weights), so the answer text itself is only compared with itself.
"""
from __future__ import annotations

import json

import pytest
from typer.testing import CliRunner

import ragbit.indexing.embeddings
from ragbit.cli import app
from ragbit.config import RagbitConfig
from tests.conftest import REFERENCE_DIR
from tests.retrieval_fixtures import FakeEmbedder, make_repo

runner = CliRunner()
QUESTION = "How does retry_with_backoff sleep between failures?"
RETRY_BLOCK = "src/net/retry.py:4-"   # retry_with_backoff's own chunk: one definition, one chunk (line 1 is an import)


@pytest.fixture(scope="session")
def tiny_model(tmp_path_factory):
    from generator.synthetic import write_synthetic_gguf
    path = tmp_path_factory.mktemp("model") / "tiny-tied.gguf"
    return write_synthetic_gguf(path, "tiny-tied", tokenizer_from=REFERENCE_DIR / "tiny-tied-q1_0.gguf", seed=3)


@pytest.fixture(autouse=True)
def fake_embedder(monkeypatch):
    monkeypatch.setattr(ragbit.indexing.embeddings, "Embedder", lambda cfg=None: FakeEmbedder())


@pytest.fixture
def repo(tmp_path):
    return make_repo(tmp_path / "shop")


def invoke(*args, input=None):
    return runner.invoke(app, [str(a) for a in args], input=input)


def test_query_prompt_holds_the_retrieved_chunk_and_stream_matches_json(repo, tiny_model):
    args = ("query", QUESTION, "--repo", repo, "--model", tiny_model, "--max-tokens", 6, "--budget", 400)
    r = invoke(*args, "--json", "--verbose")                # --verbose: the whole prompt is in the document
    assert r.exit_code == 0, r.output
    out = json.loads(r.stdout)
    from tests.test_json_schema import validate
    validate(out)
    prompt = out["prompt"]
    # The chunk that answers the question is in the prompt, headed as a citable block, with whole lines.
    assert RETRY_BLOCK in prompt
    assert "            time.sleep(base_delay * 2 ** attempt)\n" in prompt
    assert prompt.index("Context:") < prompt.index("Question: " + QUESTION)
    assert "<think>\n\n</think>" in prompt                # thinking off by default
    assert out["context_tokens"] <= out["budget"] == 400
    assert out["prompt_tokens"] > out["context_tokens"]
    assert out["finish_reason"] in ("eog", "length", "stop") and out["generated_tokens"] <= 6
    assert out["sources"] and all(set(s) >= {"path", "start_line", "end_line", "score", "n"} for s in out["sources"])
    assert "src/net/retry.py" in {s["path"] for s in out["sources"]}
    assert set(out["timings"]) >= {"index_s", "retrieval_s", "pack_s", "load_s", "ttft_s", "prompt_s",
                                   "gen_tokens_per_s"}
    assert out["error"] is None
    plain = json.loads(invoke(*args, "--json").stdout)      # without --verbose: the same answer, no prompt
    assert "prompt" not in plain and plain["answer"] == out["answer"]

    # Same question streamed (greedy, so the same answer), then the sources list; context on stderr.
    r = invoke(*args, "--show-context")
    assert r.exit_code == 0, r.output
    answer, _, rest = r.stdout.partition("\nsources")
    assert answer.rstrip("\n") == out["answer"].rstrip("\n")
    listed = [line.strip() for line in rest.splitlines()[1:] if line.startswith("  [")]
    assert listed == [f"[{s['n']}] {s['path']}:{s['start_line']}-{s['end_line']}" for s in out["sources"]]
    assert "[1] " + RETRY_BLOCK in r.stderr
    assert "tok/s" in r.stderr.splitlines()[-1]


def test_small_budget_reports_what_was_left_out(repo, tiny_model):
    r = invoke("query", "invoice total and carousel slides and health handler", "--repo", repo,
               "--model", tiny_model, "--max-tokens", 2, "--budget", 120, "--json")
    out = json.loads(r.stdout)
    assert out["context_tokens"] <= 120
    assert out["omitted"]["count"] > 0 and out["omitted"]["paths"]
    r = invoke("query", "invoice total and carousel slides and health handler", "--repo", repo,
               "--model", tiny_model, "--max-tokens", 2, "--budget", 120)
    assert f"left out for lack of budget (120 tokens): {out['omitted']['count']} chunk" in r.stdout


@pytest.mark.parametrize("model", ["missing", "corrupt"])
def test_no_model_still_prints_sources_and_one_warning(repo, tmp_path, model):
    assert invoke("index", repo, "--quiet").exit_code == 0
    path = tmp_path / "model.gguf"
    if model == "corrupt":
        path.write_bytes(b"GGUF\x03\x00\x00\x00" + b"\x00" * 40)
    r = invoke("query", QUESTION, "--repo", repo, "--model", path)
    assert r.exit_code == 0, r.output
    assert "Traceback" not in r.output
    warnings = [line for line in r.stderr.splitlines() if line.strip()]
    assert len(warnings) == 1 and warnings[0].startswith("warning: no answer generated: "), r.stderr
    assert r.stdout.startswith("sources (retrieved; no answer was generated):")
    assert RETRY_BLOCK in r.stdout

    out = json.loads(invoke("query", QUESTION, "--repo", repo, "--model", path, "--json").stdout)
    assert out["answer"] == "" and out["error"].startswith("no answer generated")
    assert out["sources"] and out["sources"][0]["path"] == "src/net/retry.py"


def test_bad_input_is_one_error_line(repo, tmp_path):
    r = invoke("query", QUESTION, "--repo", tmp_path / "nope")
    assert r.exit_code == 1 and r.stderr.strip().startswith("error: ") and len(r.stderr.strip().splitlines()) == 1
    r = invoke("query", QUESTION, "--repo", repo, "--model", "no-such-model")
    assert r.exit_code == 1, r.output
    assert r.stderr.strip().splitlines()[-1].startswith("error: unknown model 'no-such-model'")
    assert "Traceback" not in r.output


def test_chat_reads_stdin_until_exit_and_reuses_the_prefix(repo, tiny_model):
    from ragbit.pipeline.conversation import Conversation

    cfg = RagbitConfig.load(repo, overrides={"generator": {"model": str(tiny_model), "max_tokens": 4},
                                             "query": {"budget": 250}})
    conv = Conversation(cfg)
    first = conv.ask(QUESTION)
    second = conv.ask("And what does render_pdf write?")
    assert first.text and second.text
    assert QUESTION in second.stats.prompt                             # earlier turn kept in the messages
    assert "src/billing/invoice.py" in second.stats.prompt            # re-retrieved for the new question
    assert second.stats.cached_prompt_tokens > first.stats.prompt_tokens // 2

    r = invoke("chat", "--repo", repo, "--model", tiny_model, "--max-tokens", 3, "--budget", 150,
               input=f"{QUESTION}\n\nwhat is the health probe?\n/exit\nnot asked\n")
    assert r.exit_code == 0, r.output
    assert r.stdout.count("sources") == 2
