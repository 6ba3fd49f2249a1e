"""The `--json` documents of `ragbit search`, `query`, `status`, `index`, `symbols`, `eval` and `generate`: one place
builds each.

Why one module: scripts and editors depend on these shapes, so each document names its schema and version
(`"schema": "ragbit.search/1"`) and docs/json.md documents every field as a JSON Schema that the tests
validate real output against. Add a field: same version. Rename, remove or retype one: bump the version and
the doc. Standard library only (the search server renders search documents).
"""
from __future__ import annotations

import dataclasses

SEARCH_SCHEMA = "ragbit.search/1"
QUERY_SCHEMA = "ragbit.query/1"
STATUS_SCHEMA = "ragbit.status/1"
INDEX_SCHEMA = "ragbit.index/1"
SYMBOLS_SCHEMA = "ragbit.symbols/1"
EVAL_SCHEMA = "ragbit.eval/1"
GENERATE_SCHEMA = "ragbit.generate/1"


def search_document(hits) -> dict:
    """`ragbit search --json`: the ranked hits and what the index could not see (incomplete, stale)."""
    return {"schema": SEARCH_SCHEMA, "mode": getattr(hits, "mode", "hybrid"),
            "dense_complete": bool(getattr(hits, "dense_complete", True)),
            "stale": dict(getattr(hits, "stale", {}) or {}),
            "hits": [{"rank": h.rank, **h.to_json()} for h in hits]}


def query_document(answer, verbose: bool = False) -> dict:
    """`ragbit query --json`: the answer, its sources and counts; the full prompt only when `verbose`."""
    doc = {"schema": QUERY_SCHEMA, **answer.to_json()}
    if not verbose:
        doc.pop("prompt", None)
    return doc


def status_document(status) -> dict:
    """`ragbit status --json`: the IndexStatus fields, plus whether the index is up to date."""
    doc = {"schema": STATUS_SCHEMA, **dataclasses.asdict(status)}
    doc["up_to_date"] = not (status.added or status.changed or status.removed)
    return doc


def index_document(report) -> dict:
    """`ragbit index --json`: what the run did (the IndexReport fields and the file total)."""
    doc = {"schema": INDEX_SCHEMA, **dataclasses.asdict(report)}
    doc["files"] = report.files
    doc["timings"] = {k: round(v, 4) for k, v in report.timings.items()}
    return doc


def symbols_document(name: str, exact, close) -> dict:
    """`ragbit symbols --json`: the definitions of a name, or the closest ones when none matches exactly."""
    return {"schema": SYMBOLS_SCHEMA, "name": name, "exact": bool(exact),
            "symbols": [s.to_json() for s in (exact or close)]}


def eval_document(report) -> dict:
    """`ragbit eval --json`: means per system (retrieval and context recall) and the scores of each question."""
    clean = lambda row: {k: (None if v != v else round(v, 6)) for k, v in row.items()}   # noqa: E731 (NaN -> null)
    return {"schema": EVAL_SCHEMA, "repo": report.repo, "questions": report.questions,
            "with_lines": report.with_lines, "k": report.k, "modes": list(report.modes),
            "budgets": list(report.budgets),
            "retrieval": {name: clean(row) for name, row in report.retrieval.items()},
            "context": {name: clean(row) for name, row in report.context.items()},
            "context_note": report.context_note,
            "per_question": report.per_question,
            "timings": {k: round(v, 4) for k, v in report.timings.items()}}


def generate_document(result) -> dict:
    """`ragbit generate --json`: the text and token ids, why it stopped, which kernels and KV cache ran, speeds."""
    t = result.timings
    return {"schema": GENERATE_SCHEMA, "text": result.text, "prompt_token_ids": list(result.prompt_token_ids),
            "token_ids": list(result.token_ids), "finish_reason": result.finish_reason,
            "kernels": dict(result.kernels), "kv_cache": result.kv_cache,
            "timings": {"load_s": t.load_s, "prompt_tokens_per_s": t.prompt_tokens_per_s,
                        "gen_tokens_per_s": t.gen_tokens_per_s, "ttft_s": t.ttft_s}}
