"""The served index stays fresh: a file changed on disk is found by the next retrieval (refresh before each
request), or, with a watcher, shortly after the change without any request doing the work."""
from __future__ import annotations

import json
import time

import ragbit.indexing.embeddings
from ragbit.config import RagbitConfig
from tests.retrieval_fixtures import FakeEmbedder, make_repo
from tests.serve_fixtures import http, running_server

NEW_FILE = "src/shipping/parcel.py"
NEW_CODE = 'def zanzibar_parcel_weight(parcel):\n    """Weight of a zanzibar parcel in grams."""\n    return parcel.grams\n'


def search(url: str, query: str) -> list[dict]:
    status, _, text = http("POST", url + "/v1/search", {"query": query, "k": 3, "mode": "lexical"})
    assert status == 200, text
    return json.loads(text)["data"]


def test_a_changed_file_is_indexed_before_the_next_retrieval(tmp_path, monkeypatch):
    monkeypatch.setattr(ragbit.indexing.embeddings, "Embedder", lambda cfg=None: FakeEmbedder())
    repo = make_repo(tmp_path / "shop")
    with running_server(RagbitConfig.load(repo), load_model=False) as (url, serve_app):
        assert all(h["path"] != NEW_FILE for h in search(url, "zanzibar parcel weight"))
        (repo / NEW_FILE).parent.mkdir(parents=True)
        (repo / NEW_FILE).write_text(NEW_CODE)
        assert search(url, "zanzibar parcel weight")[0]["path"] == NEW_FILE


def test_watcher_reindexes_after_a_change_without_a_request(tmp_path, monkeypatch):
    monkeypatch.setattr(ragbit.indexing.embeddings, "Embedder", lambda cfg=None: FakeEmbedder())
    repo = make_repo(tmp_path / "shop")
    with running_server(RagbitConfig.load(repo), watch=True, load_model=False) as (url, serve_app):
        service = serve_app.service
        assert not service.refresh_on_request
        (repo / NEW_FILE).parent.mkdir(parents=True)
        (repo / NEW_FILE).write_text(NEW_CODE)
        deadline = time.time() + 30
        while time.time() < deadline:
            hits = search(url, "zanzibar parcel weight")        # requests do not refresh: only the watcher does
            if hits and hits[0]["path"] == NEW_FILE:
                break
            time.sleep(0.2)
        assert hits and hits[0]["path"] == NEW_FILE
        (repo / NEW_FILE).unlink()
        deadline = time.time() + 30
        while time.time() < deadline and any(h["path"] == NEW_FILE for h in search(url, "zanzibar parcel weight")):
            time.sleep(0.2)
        assert all(h["path"] != NEW_FILE for h in search(url, "zanzibar parcel weight"))
