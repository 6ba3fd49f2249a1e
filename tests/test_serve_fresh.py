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


def test_the_refresh_is_skipped_while_nothing_moved_and_each_kind_of_change_is_seen(tmp_path, monkeypatch):
    """Without a watcher: an up-to-date tree costs stats, not a re-index; an edit keeping the size, a new file
    in a new directory, a deletion and an ignore rule added are each indexed before the next retrieval."""
    import ragbit.indexing.walker
    import ragbit.pipeline.standard
    from ragbit.serve.service import RagbitService
    monkeypatch.setattr(ragbit.indexing.embeddings, "Embedder", lambda cfg=None: FakeEmbedder())
    margin = 0.3                                   # the 2 s "racily clean" margin, shortened for the test
    monkeypatch.setattr(ragbit.indexing.walker, "RACY_MARGIN_NS", int(margin * 1e9))
    refreshes = []
    real_refresh = ragbit.pipeline.standard.refresh_index
    monkeypatch.setattr(ragbit.pipeline.standard, "refresh_index",
                        lambda *a, **kw: refreshes.append(1) or real_refresh(*a, **kw))
    repo = make_repo(tmp_path / "shop")
    service = RagbitService(RagbitConfig.load(repo))
    service.prepare(load_model=False)

    def paths(query: str) -> list[str]:
        return [h.path for h in service.search(query, k=3, mode="lexical")]

    def settle() -> None:                          # let the tree be still for longer than the margin
        time.sleep(margin + 0.1)
        paths("warm")                              # refreshes once more (the last stamp was taken too early)
        before = len(refreshes)
        paths("warm")
        assert len(refreshes) == before            # nothing moved: no re-index

    settle()
    retry = repo / "src" / "net" / "retry.py"
    text = retry.read_text()
    retry.write_text(text.replace("gave up after retries", "zanzibar ends retries"))   # same size, in place
    assert retry.stat().st_size == len(text.encode())
    assert paths("zanzibar")[:1] == ["src/net/retry.py"]
    settle()
    (repo / NEW_FILE).parent.mkdir(parents=True)
    (repo / NEW_FILE).write_text(NEW_CODE)
    assert paths("zanzibar parcel weight")[:1] == [NEW_FILE]
    settle()
    retry.unlink()
    assert "src/net/retry.py" not in paths("zanzibar retries")
    settle()
    (repo / ".gitignore").write_text("src/shipping/\n")
    assert NEW_FILE not in paths("zanzibar parcel weight")
