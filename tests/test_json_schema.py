"""Every `--json` document validates against the schema docs/json.md publishes for its version (#21 item 8)."""
from __future__ import annotations

import json
import re
from pathlib import Path

import jsonschema
import pytest

from ragbit import json_forms
from tests.test_cli_user import make_repo, run

ROOT = Path(__file__).resolve().parents[1]


def documented_schemas() -> dict[str, dict]:
    text = (ROOT / "docs" / "json.md").read_text(encoding="utf-8")
    schemas = [json.loads(block) for block in re.findall(r"```json\n(.*?)```", text, re.S)]
    return {s["$id"]: s for s in schemas}


def validate(document: dict) -> None:
    schemas = documented_schemas()
    assert document["schema"] in schemas, f"{document['schema']} is not documented in docs/json.md"
    schema = schemas[document["schema"]]
    jsonschema.Draft202012Validator.check_schema(schema)
    jsonschema.validate(document, schema, cls=jsonschema.Draft202012Validator)


def test_the_doc_covers_exactly_the_versions_ragbit_prints():
    printed = {json_forms.SEARCH_SCHEMA, json_forms.QUERY_SCHEMA, json_forms.STATUS_SCHEMA, json_forms.INDEX_SCHEMA,
               json_forms.SYMBOLS_SCHEMA, json_forms.EVAL_SCHEMA, json_forms.GENERATE_SCHEMA}
    assert set(documented_schemas()) == printed


def test_a_document_missing_a_field_fails_validation():
    with pytest.raises(jsonschema.ValidationError):
        validate({"schema": json_forms.SEARCH_SCHEMA, "mode": "hybrid", "dense_complete": True, "stale": {}})


@pytest.fixture(scope="module")
def repo(tmp_path_factory) -> Path:
    return make_repo(tmp_path_factory.mktemp("json") / "demo")


def test_index_status_search_and_query_documents_validate(repo):
    index = run("index", "--json", cwd=repo)
    assert index.returncode == 0, index.stderr
    doc = json.loads(index.stdout)
    validate(doc)
    assert doc["files"] == 3 and doc["files_added"] == 3 and doc["skipped"].get("excluded dir") == 2

    status = json.loads(run("status", "--json", cwd=repo).stdout)
    validate(status)
    assert status["up_to_date"] is True and status["files"] == 3

    (repo / "src" / "pkg" / "gone.py").unlink()
    search = run("search", "soon deleted helper", "--json", "--no-server", cwd=repo)
    doc = json.loads(search.stdout)
    validate(doc)
    assert doc["hits"][0]["path"] == "src/pkg/gone.py" and doc["stale"] == {"src/pkg/gone.py": "deleted"}
    assert [h["rank"] for h in doc["hits"]] == list(range(1, len(doc["hits"]) + 1))
    validate(json.loads(run("status", "--json", cwd=repo).stdout))

    # no model here: the document still comes, with the error and the sources, and no prompt
    missing = str(repo / "no-such-model.gguf")
    query = run("query", "what does combine_three_values return?", "--json", "--model", missing, cwd=repo)
    assert query.returncode == 0, query.stderr
    doc = json.loads(query.stdout)
    validate(doc)
    assert doc["error"] and doc["answer"] == "" and doc["sources"] and "prompt" not in doc
