"""The background search server (the `ragbit serve` app under uvicorn on the index's Unix socket): same answers
as in-process search, stale sockets, idle exit, re-index, bad requests, config mismatch, `--no-server`, and the
console script's fast path (hits rendered by the server). Real subprocesses, real ONNX model; every server a
test starts is killed at teardown. No timing assertions (waits are generous upper bounds)."""
from __future__ import annotations

import dataclasses
import http.client
import json
import os
import re
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
from typer.testing import CliRunner

import ragbit.search.client as ss
from ragbit import launcher
from ragbit.cli import app
from ragbit.config import RagbitConfig
from ragbit.indexing.indexer import index_repository
from ragbit.search.searcher import Searcher
from tests.retrieval_fixtures import make_repo

pytestmark = pytest.mark.search_server
runner = CliRunner()
START_TIMEOUT = 180.0        # loading onnxruntime on a busy 2-core machine


def _wait(predicate, timeout: float, what: str) -> None:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if predicate():
            return
        time.sleep(0.1)
    raise AssertionError(f"timed out waiting for {what}")


@pytest.fixture(scope="module")
def repo(tmp_path_factory):
    root = make_repo(tmp_path_factory.mktemp("srv") / "shop")
    index_repository(RagbitConfig.load(root), progress=False)       # the real default model
    return root


@pytest.fixture(scope="module")
def servers():
    """Start servers through this; all are killed (and reaped) when the module ends."""
    started = []

    def start(cfg):
        proc = ss.spawn_server(cfg)
        assert proc is not None, "a server was already running"
        started.append(proc)
        sock = ss.socket_path(cfg.index_dir)
        _wait(lambda: sock.exists() or proc.poll() is not None, START_TIMEOUT, "the server socket")
        assert proc.poll() is None, (cfg.index_dir / ss.LOG_NAME).read_text()
        return proc

    yield start
    for proc in started:
        if proc.poll() is None:
            proc.kill()
        proc.wait(timeout=30)


@pytest.fixture(scope="module")
def server(repo, servers):
    return servers(RagbitConfig.load(repo))


class UnixHTTPConnection(http.client.HTTPConnection):
    """The standard library's HTTP client on the index's Unix socket: a client ragbit did not write."""

    def __init__(self, path: str, timeout: float) -> None:
        super().__init__("localhost", timeout=timeout)
        self.socket_path = path

    def connect(self) -> None:
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.settimeout(self.timeout)
        self.sock.connect(self.socket_path)


def _raw(cfg, payload: bytes, path: str = "/v1/search") -> tuple[int, dict]:
    """(status, JSON body) of one POST over the index's socket, as any HTTP client would send it."""
    conn = UnixHTTPConnection(str(ss.socket_path(cfg.index_dir)), timeout=60)
    try:
        conn.request("POST", path, body=payload, headers={"Content-Type": "application/json"})
        response = conn.getresponse()
        return response.status, json.loads(response.read())
    finally:
        conn.close()


QUESTIONS = ["how is value added tax applied to the invoice total", "exponential backoff when the connection fails",
             "retry.py backoff"]


@pytest.mark.parametrize("mode", ["hybrid", "dense", "lexical"])
def test_server_answers_exactly_the_in_process_hits(repo, server, mode):
    cfg = RagbitConfig.load(repo)
    local = Searcher(cfg)
    for q in QUESTIONS:
        for cap in (0, 1):
            remote = ss.query(cfg, q, k=5, mode=mode, max_hits_per_file=cap)
            assert remote is not None
            want = local.search(q, k=5, mode=mode, max_hits_per_file=cap)
            assert [dataclasses.asdict(h) for h in remote] == [dataclasses.asdict(h) for h in want]
            assert (remote.dense_complete, remote.mode) == (want.dense_complete, want.mode)


@pytest.mark.parametrize("extra", [["--json"], []])
def test_cli_output_is_identical_with_and_without_server(repo, server, extra, monkeypatch):
    calls = []
    monkeypatch.setattr(ss, "query", lambda *a, **kw: calls.append(1) or _real_query(*a, **kw))
    args = ["search", "invoice total with vat", "--repo", str(repo), "-k", "4", *extra]
    via_server = runner.invoke(app, args)
    in_process = runner.invoke(app, args + ["--no-server"])
    assert via_server.exit_code == 0 and in_process.exit_code == 0, via_server.output + in_process.output
    assert calls == [1]                               # --no-server did not even ask the server
    assert via_server.stdout == in_process.stdout and via_server.stdout.strip()


_real_query = ss.query


def test_bad_requests_get_an_error_and_the_server_keeps_serving(repo, server):
    cfg = RagbitConfig.load(repo)
    status, body = _raw(cfg, b"not json")
    assert status == 400 and body["error"]["message"]
    negative_k = ss.search_request(cfg.repo, cfg.index_dir, "x", -3, "lexical", 0)
    assert _raw(cfg, json.dumps(negative_k).encode())[0] == 400
    huge_k = ss.search_request(cfg.repo, cfg.index_dir, "x", 10**12, "lexical", 0)
    assert _raw(cfg, json.dumps(huge_k).encode())[0] == 400
    bad_mode = ss.search_request(cfg.repo, cfg.index_dir, "invoice", 2, "nonsense", 0, cfg=cfg)
    status, body = _raw(cfg, json.dumps(bad_mode).encode())
    assert status == 400 and body["error"]["param"] == "mode"
    assert server.poll() is None
    assert ss.query(cfg, "invoice total", k=2, mode="lexical", max_hits_per_file=0)


def test_server_notices_a_reindex(repo, server):
    cfg = RagbitConfig.load(repo)
    assert not any(h.path == "src/zebra.py" for h in ss.query(cfg, "zebra stripes", 5, "lexical", 0) or [])
    (repo / "src" / "zebra.py").write_text("def count_zebra_stripes(zebra):\n    return zebra.stripes\n")
    index_repository(cfg, progress=False)
    hits = ss.query(cfg, "zebra stripes", 5, "lexical", 0)
    assert hits is not None and hits[0].path == "src/zebra.py"


def test_stale_socket_is_removed_and_search_still_answers(tmp_path, monkeypatch):
    root = make_repo(tmp_path / "shop")
    index_repository(RagbitConfig.load(root), progress=False)
    cfg = RagbitConfig.load(root)
    path = ss.socket_path(cfg.index_dir)
    dead = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    dead.bind(str(path))                               # a socket file nobody listens on (server died)
    dead.close()
    assert path.exists()
    spawned = []
    monkeypatch.setattr(ss, "spawn_server", lambda c: spawned.append(c))
    result = runner.invoke(app, ["search", "exponential backoff", "--repo", str(root), "--json",
                                 "--mode", "lexical"])
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["hits"][0]["path"] == "src/net/retry.py"
    assert not path.exists() and len(spawned) == 1      # removed, and a fresh server was asked for


def test_idle_server_exits_and_removes_its_socket(repo, servers, tmp_path):
    cfg = RagbitConfig.load(repo, overrides={"index": {"dir": str(tmp_path / "idx")}})
    index_repository(cfg, progress=False)
    cfg.search.server_idle_timeout = 1.0
    proc = servers(cfg)
    assert ss.query(cfg, "invoice", 1, "lexical", 0) is not None
    proc.wait(timeout=60)
    assert proc.returncode == 0 and not ss.socket_path(cfg.index_dir).exists()


def test_a_client_with_another_config_is_refused_and_the_server_retires(repo, servers, tmp_path):
    cfg = RagbitConfig.load(repo, overrides={"index": {"dir": str(tmp_path / "idx")}})
    index_repository(cfg, progress=False)
    proc = servers(cfg)
    other = RagbitConfig.load(repo, overrides={"index": {"dir": str(tmp_path / "idx")}, "search": {"rrf_k": 5}})
    assert ss.query(other, "invoice", 1, "lexical", 0) is None
    proc.wait(timeout=60)
    assert not ss.socket_path(cfg.index_dir).exists()


@pytest.mark.parametrize("how", ["flag", "config"])
def test_no_server_never_spawns(tmp_path, monkeypatch, how):
    root = make_repo(tmp_path / "shop")
    index_repository(RagbitConfig.load(root), progress=False)
    if how == "config":
        (root / "ragbit.toml").write_text("[search]\nserver = false\n")
    monkeypatch.setattr(ss, "spawn_server", lambda c: pytest.fail("spawned a server"))
    args = ["search", "invoice", "--repo", str(root), "--mode", "lexical"] + (["--no-server"] if how == "flag" else [])
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output
    assert not ss.socket_path(root / ".ragbit").exists()


# ---------------------------------------------------------------------------------------------- launcher
ROOT = Path(__file__).resolve().parents[1]


def _launch(args: list[str], cwd: Path, fastpath: bool = True) -> subprocess.CompletedProcess:
    """The console script's code path (`ragbit.launcher:main`) in a fresh process, no terminal."""
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")])}
    env.pop("RAGBIT_FASTPATH", None)
    if not fastpath:
        env["RAGBIT_FASTPATH"] = "0"
    return subprocess.run([sys.executable, "-m", "ragbit.launcher", *args], cwd=cwd, env=env,
                          stdin=subprocess.DEVNULL, capture_output=True, timeout=300)


@pytest.mark.parametrize("extra", [["--json"], []])
def test_fast_path_output_is_byte_identical_to_no_server(repo, server, extra, monkeypatch):
    args = ["search", "invoice total with vat", "-k", "4", *extra]
    fast = _launch(args, repo)
    slow = _launch(args + ["--no-server"], repo, fastpath=False)
    assert (fast.returncode, slow.returncode) == (0, 0), fast.stderr + slow.stderr
    assert fast.stdout == slow.stdout and fast.stdout.strip()
    assert fast.stderr == slow.stderr
    monkeypatch.chdir(repo)                           # the same request in this process really is answered by the server
    reply = launcher.fast_search(args)
    assert reply is not None and reply["exit"] == 0
    if extra:                                         # human output depends on this process's terminal
        assert reply["stdout"].encode() == fast.stdout


@pytest.mark.parametrize("bad", [["--mode", "nonsense"], ["-k", "0"], ["--bogus"]])
def test_fast_path_bad_flag_gives_the_slow_paths_error_and_exit_code(repo, server, bad, monkeypatch):
    args = ["search", "invoice", *bad]
    fast, slow = _launch(args, repo), _launch(args, repo, fastpath=False)
    assert fast.returncode == slow.returncode != 0
    assert (fast.stdout, fast.stderr) == (slow.stdout, slow.stderr) and fast.stderr.strip()
    if bad[0] == "--mode":
        assert fast.stderr == b"error: --mode must be one of hybrid, dense, lexical, not 'nonsense'\n"
    monkeypatch.chdir(repo)                           # the fast path leaves bad flags to the full CLI
    assert launcher.fast_search(args) is None


def test_fast_path_leaves_a_question_on_standard_input_to_the_full_cli(repo, server, monkeypatch):
    monkeypatch.chdir(repo)
    assert launcher.fast_search(["search", "-"]) is None and launcher.parse_search(["invoice"]) is not None
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")])}
    env.pop("RAGBIT_FASTPATH", None)
    r = subprocess.run([sys.executable, "-m", "ragbit.launcher", "search", "-", "--json"], cwd=repo, env=env,
                       input=b"invoice total\n", capture_output=True, timeout=300)
    assert r.returncode == 0 and json.loads(r.stdout)["hits"], r.stderr


def test_server_refuses_requests_it_cannot_answer_and_keeps_serving(repo, server, tmp_path):
    cfg = RagbitConfig.load(repo)
    status, body = _raw(cfg, json.dumps(ss.search_request(repo, tmp_path, "invoice", 1, None, None)).encode())
    assert status == 409 and body["error"]["code"] == "wrong_index"                 # another index
    status, _ = _raw(cfg, json.dumps({"argv": ["status"]}).encode())                 # not a search
    assert status == 400
    assert server.poll() is None                                    # refused, not retired
    request = ss.search_request(repo, cfg.index_dir, "invoice", 1, None, None,
                                render={"json": True, "terminal": {"is_tty": False, "encoding": "utf-8", "environ": {}}})
    reply = ss.ask(cfg.index_dir, request)
    assert reply is not None and json.loads(reply["printed"]["stdout"])["hits"][0]["path"] == "src/billing/invoice.py"


def test_the_socket_serves_the_openai_app_too(repo, server):
    """One server, not two: the same app answers the OpenAI routes on the socket (a model loads on first use)."""
    cfg = RagbitConfig.load(repo)
    status, body = _raw(cfg, json.dumps({"query": "invoice total", "k": 2, "mode": "lexical"}).encode())
    assert status == 200 and body["data"][0]["path"] == "src/billing/invoice.py" and "printed" not in body
    status, body = _raw(cfg, json.dumps({"model": "ragbit", "input": ["invoice"]}).encode(), "/v1/embeddings")
    assert status == 200 and len(body["data"][0]["embedding"]) == 384
    assert ss.socket_path(cfg.index_dir).stat().st_mode & 0o777 == 0o600


def test_no_socket_takes_the_slow_path(tmp_path, monkeypatch):
    root = make_repo(tmp_path / "shop")
    index_repository(RagbitConfig.load(root), progress=False)
    sock = ss.socket_path(root / ".ragbit")
    monkeypatch.chdir(root)
    args = ["search", "exponential backoff", "--json", "--mode", "lexical"]
    assert launcher.fast_search(args) is None
    result = _launch(args, root)                      # answers in-process, and starts a server
    try:
        assert result.returncode == 0, result.stderr
        assert json.loads(result.stdout)["hits"][0]["path"] == "src/net/retry.py"
    finally:
        # the server it started: wait for its socket (it may not hold its lock yet when the search returns, and a
        # server left running here outlives the test until its idle timeout)
        _wait(lambda: sock.exists(), START_TIMEOUT, "the server's socket")
        log = (root / ".ragbit" / ss.LOG_NAME).read_text()
        for pid in {int(m) for m in re.findall(r"pid (\d+) serving", log)}:
            os.kill(pid, signal.SIGTERM)
        _wait(lambda: not ss.server_running(root / ".ragbit"), 60, "the spawned server to exit")
