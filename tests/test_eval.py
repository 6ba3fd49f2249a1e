"""`ragbit eval` and the shared scoring of ragbit/evaluation/ (the retrieval benchmark runs the same code)."""
from __future__ import annotations

import json

import pytest
from typer.testing import CliRunner

import ragbit.indexing.embeddings
from ragbit.cli import app
from ragbit.evaluation.metrics import context_metrics, score_one
from tests.conftest import REFERENCE_DIR
from tests.retrieval_fixtures import FakeEmbedder, make_repo

runner = CliRunner()


def test_file_and_chunk_scores_follow_their_definitions():
    q = {"query": "q", "file": "b.py", "start_line": 10, "end_line": 20}
    results = [{"path": "a.py", "start_line": 1, "end_line": 5}, {"path": "b.py", "start_line": 1, "end_line": 9},
               {"path": "a.py", "start_line": 9, "end_line": 12}, {"path": "b.py", "start_line": 18, "end_line": 30}]
    m = score_one(q, results, True)
    assert (m["file_R@1"], m["file_R@5"], m["file_MRR@10"]) == (0.0, 1.0, 0.5)      # b.py is the 2nd distinct file
    assert (m["chunk_R@1"], m["chunk_R@5"], m["chunk_MRR@10"]) == (0.0, 1.0, 0.25)  # the 4th result overlaps
    two = score_one({"query": "q", "files": ["a.py", "c.py"]}, results, False)
    assert two["file_R@10"] == 0.5 and "chunk_R@1" not in two


def test_context_recall_counts_gold_lines_inside_the_blocks():
    class B:
        def __init__(self, path, s, e):
            self.path, self.start_line, self.end_line = path, s, e
    q = {"query": "q", "file": "b.py", "start_line": 11, "end_line": 20}
    assert context_metrics(q, [B("b.py", 1, 18)], 500) == {"ctx_lines@500": 0.8, "ctx_hit80@500": 1.0}
    assert context_metrics(q, [B("b.py", 1, 17), B("a.py", 11, 20)], 500) == {"ctx_lines@500": 0.7,
                                                                             "ctx_hit80@500": 0.0}


@pytest.fixture
def shop(tmp_path, monkeypatch):
    monkeypatch.setattr(ragbit.indexing.embeddings, "Embedder", lambda cfg=None: FakeEmbedder())
    repo = make_repo(tmp_path / "shop")
    questions = tmp_path / "q.jsonl"
    questions.write_text("\n".join(json.dumps(q) for q in [
        {"query": "retry_with_backoff attempts base_delay", "file": "src/net/retry.py", "start_line": 4,
         "end_line": 12},
        {"query": "render_pdf invoice path", "files": ["src/billing/invoice.py"]},
    ]) + "\n")
    return repo, questions


def test_eval_scores_every_mode_beside_bm25_with_context_recall(shop):
    from tests.test_json_schema import validate
    repo, questions = shop
    r = runner.invoke(app, ["eval", str(questions), "--repo", str(repo), "--json", "--modes", "lexical,hybrid",
                            "--model", str(REFERENCE_DIR / "tiny-tied-q1_0.gguf"), "--budgets", "300,3000"])
    assert r.exit_code == 0, r.output
    doc = json.loads(r.output)
    validate(doc)
    assert doc["questions"] == 2 and doc["with_lines"] == 1 and set(doc["retrieval"]) == {"lexical", "hybrid", "bm25"}
    assert doc["retrieval"]["lexical"]["file_R@1"] == 1.0 and doc["retrieval"]["bm25"]["file_R@1"] == 1.0
    assert "chunk_R@1" not in doc["retrieval"]["bm25"]                  # whole files have no line ranges
    assert doc["context"]["lexical"]["ctx_hit80@3000"] == 1.0            # the whole tiny repository fits
    assert set(doc["context"]) == {"lexical", "hybrid", "bm25-windows-packed"}

    table = runner.invoke(app, ["eval", str(questions), "--repo", str(repo), "--modes", "lexical",
                                "--model", str(repo / "missing.gguf")])
    assert table.exit_code == 0, table.output
    assert "lexical" in table.output and "bm25 (whole files)" in table.output
    assert "context recall: not measured: no tokenizer" in table.output


@pytest.mark.parametrize("content, message", [
    ("{not json\n", "q.jsonl:1: not JSON"),
    ('{"query": "x"}\n', 'q.jsonl:1: needs "files"'),
    ('{"query": "x", "file": "a.py", "start_line": 9, "end_line": 2}\n', "q.jsonl:1: line ranges need"),
    ("\n", "no questions"),
])
def test_a_bad_questions_file_is_one_error_line(shop, content, message):
    repo, questions = shop
    questions.write_text(content)
    r = runner.invoke(app, ["eval", str(questions), "--repo", str(repo)])
    assert r.exit_code == 1 and message in r.output and "Traceback" not in r.output
    assert runner.invoke(app, ["eval", str(questions), "--repo", str(repo), "--modes", "fast"]).exit_code == 1
