"""The background search server under faults (issue #20), through the real console script (`ragbit.launcher`,
what `ragbit search` runs) with the real embedding model, so the server and the in-process fallback rank alike:

- the server SIGKILLed mid-request (a request sent and waiting for its reply) and at random moments around
  searches: that search and the next still answer, with the results of an in-process search;
- a server that dies half-way through writing its reply;
- the index directory deleted while the server runs: one `no index` line, and the server exits;
- the repository moved after indexing: search, status and an incremental `ragbit index` work at the new place.

Short form in the default suite (one kill mid-request, one death mid-reply); `-m faults_long` kills the server
50 times more, half of them with a request inside it, half at random moments. Every server a test starts (they
write `pid N serving` to the index's log) is killed at teardown.
"""
from __future__ import annotations

import json
import os
import random
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from ragbit.config import RagbitConfig
from ragbit.indexing.indexer import index_repository
from ragbit.search import client as protocol
from tests.faults.test_crashes import WORKTREE
from tests.retrieval_fixtures import make_repo
from tests.test_search_server import _wait as wait_for

START_TIMEOUT = 180.0                # a server loads onnxruntime and the model on a busy 2-core machine
QUERIES = ["exponential backoff when the connection fails", "invoice total with vat", "image carousel"]


def ragbit(*args: str, cwd: Path | None = None) -> subprocess.Popen:
    """`ragbit ARGS` as the console script runs it (fast path through the server first), no terminal."""
    env = dict(os.environ, PYTHONPATH=str(WORKTREE))
    env.pop("RAGBIT_FASTPATH", None)
    return subprocess.Popen([sys.executable, "-m", "ragbit.launcher", *args], cwd=cwd or WORKTREE, env=env,
                            stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def run(*args: str, timeout: float = 300) -> subprocess.CompletedProcess:
    p = ragbit(*args)
    out, err = p.communicate(timeout=timeout)
    return subprocess.CompletedProcess(p.args, p.returncode, out, err)


def hits(repo: Path, query: str, *extra: str) -> list:
    r = run("search", query, "--repo", str(repo), "--json", "-k", "5", *extra)
    assert r.returncode == 0 and "Traceback" not in r.stderr, r.stderr
    return [(h["path"], h["start_line"], h["end_line"], h["score"]) for h in json.loads(r.stdout)["hits"]]


def server_pids(index_dir: Path) -> set[int]:
    log = index_dir / protocol.LOG_NAME
    text = log.read_text(errors="replace") if log.exists() else ""
    return {int(m) for m in re.findall(r"pid (\d+) serving", text)}


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    try:                             # a zombie (our child, not reaped yet) counts as gone
        return Path(f"/proc/{pid}/stat").read_text().split(")")[-1].split()[0] != "Z"
    except OSError:
        return False


def live_server(index_dir: Path) -> int:
    """The pid of the server answering on the index's socket (waits for one to start)."""
    sock = protocol.socket_path(index_dir)
    wait_for(lambda: sock.exists() and any(alive(p) for p in server_pids(index_dir)), START_TIMEOUT, "a server")
    return max(p for p in server_pids(index_dir) if alive(p))


def has_socket_fd(pid: int) -> bool:
    try:
        return any(os.readlink(f"/proc/{pid}/fd/{fd}").startswith("socket:") for fd in os.listdir(f"/proc/{pid}/fd"))
    except OSError:
        return False


@pytest.fixture(scope="module")
def template(tmp_path_factory):
    """A small repository indexed with the real model, and its in-process results (no server involved)."""
    root = make_repo(tmp_path_factory.mktemp("template") / "shop")
    index_repository(RagbitConfig.load(root), progress=False)
    return root, {q: hits(root, q, "--no-server") for q in QUERIES}


@pytest.fixture
def repo(template, tmp_path):
    """A copy of the template (its own index, no server yet); its servers are killed at teardown."""
    root = tmp_path / "shop"
    shutil.copytree(template[0], root, symlinks=True)
    yield root
    for index_dir in (root / ".ragbit", tmp_path / "moved" / ".ragbit"):
        for pid in server_pids(index_dir) if index_dir.is_dir() else ():
            if alive(pid):
                os.kill(pid, signal.SIGKILL)


@pytest.fixture
def expected(template) -> dict:
    return template[1]


def kill_mid_request(repo: Path, query: str) -> subprocess.Popen:
    """Stop the server, let `ragbit search` connect and send its request (it then waits for the reply), then
    SIGKILL the server: the request dies inside it. Returns the search's process."""
    pid = live_server(repo / ".ragbit")
    os.kill(pid, signal.SIGSTOP)
    p = ragbit("search", query, "--repo", str(repo), "--json", "-k", "5")
    wait_for(lambda: has_socket_fd(p.pid) or p.poll() is not None, 120, "the search to connect")
    time.sleep(0.3)                  # sendall into the socket buffer: then it blocks in recv
    assert p.poll() is None          # it is waiting for the reply the server will never send
    os.kill(pid, signal.SIGKILL)
    return p


def test_server_killed_mid_request_search_still_answers(repo, expected):
    assert hits(repo, QUERIES[0]) == expected[QUERIES[0]]          # in-process; starts a server
    first = live_server(repo / ".ragbit")
    assert hits(repo, QUERIES[1]) == expected[QUERIES[1]]          # answered by that server
    p = kill_mid_request(repo, QUERIES[2])
    out, err = p.communicate(timeout=300)
    assert p.returncode == 0 and "Traceback" not in err, err
    got = [(h["path"], h["start_line"], h["end_line"], h["score"]) for h in json.loads(out)["hits"]]
    assert got == expected[QUERIES[2]]                              # the in-process fallback answered
    assert not alive(first)
    second = live_server(repo / ".ragbit")                          # and started a fresh server
    assert second != first
    for q in QUERIES:                                               # which answers the next searches alike
        assert hits(repo, q) == expected[q]


def test_server_dying_half_way_through_its_reply(repo, expected, tmp_path):
    """A 'server' that reads the request, writes half of a real reply and SIGKILLs itself."""
    sock = protocol.socket_path(repo / ".ragbit")
    script = ("import os, signal, socket, sys\n"
              "s = socket.socket(socket.AF_UNIX); s.bind(sys.argv[1] + '.tmp'); s.listen(4)\n"
              "os.replace(sys.argv[1] + '.tmp', sys.argv[1]); print('up', flush=True)\n"
              "c, _ = s.accept(); c.recv(65536)\n"
              "c.sendall(b'{\"ok\": true, \"hits\": [{\"rank\": 1, \"path\": \"src/'); os.kill(os.getpid(), signal.SIGKILL)\n")
    fake = subprocess.Popen([sys.executable, "-c", script, str(sock)], stdout=subprocess.PIPE, text=True)
    assert fake.stdout.readline().strip() == "up"
    try:
        assert hits(repo, QUERIES[0]) == expected[QUERIES[0]]
    finally:
        fake.kill()
        fake.wait(timeout=30)
    assert fake.returncode == -signal.SIGKILL


def run_random_kills(repo: Path, expected: dict, n: int, seed: int) -> dict:
    """`n` times: a search starts and the server is SIGKILLed with the request inside it, or a random moment
    later (before, during or after the request); that search and the next answer with the in-process results."""
    rng = random.Random(seed)
    landed = {"before the request": 0, "mid-request": 0, "after the reply": 0}
    hits(repo, QUERIES[0])                                          # starts the first server
    for i in range(n):
        q = rng.choice(QUERIES)
        if rng.random() < 0.5:       # a request surely inside the server (a random moment rarely lands there)
            p, state = kill_mid_request(repo, q), "mid-request"
        else:
            pid = live_server(repo / ".ragbit")
            p = ragbit("search", q, "--repo", str(repo), "--json", "-k", "5")
            time.sleep(rng.uniform(0.0, 0.6))                       # the fast path answers in ~0.1-0.5 s here
            state = "after the reply" if p.poll() is not None else \
                "mid-request" if has_socket_fd(p.pid) else "before the request"
            os.kill(pid, signal.SIGKILL)
        out, err = p.communicate(timeout=300)
        assert p.returncode == 0 and "Traceback" not in err, (i, err)
        got = [(h["path"], h["start_line"], h["end_line"], h["score"]) for h in json.loads(out)["hits"]]
        assert got == expected[q], (i, state)
        landed[state] += 1
        nxt = rng.choice(QUERIES)
        assert hits(repo, nxt) == expected[nxt], i                  # the next search: restarted or in-process
    return landed


@pytest.mark.faults_long
@pytest.mark.timeout(7200)
def test_server_killed_at_random_moments_long(repo, expected):
    landed = run_random_kills(repo, expected, n=50, seed=2222)
    print(f"\n50 server kills, every search answered alike; landing: {landed}")


@pytest.mark.parametrize("what", ["the whole index directory", "its generations"])
def test_index_deleted_under_a_running_server(repo, expected, what):
    index_dir = repo / ".ragbit"
    hits(repo, QUERIES[0])
    pid = live_server(index_dir)
    assert hits(repo, QUERIES[1]) == expected[QUERIES[1]]          # served
    if what == "the whole index directory":
        shutil.rmtree(index_dir)
    else:                            # the server's socket stays: it is asked, finds no generation, says so
        for p in index_dir.iterdir():
            if p.name.startswith("gen-") or p.name in ("CURRENT", "vectors"):
                shutil.rmtree(p) if p.is_dir() else p.unlink()
    for _ in range(2):
        r = run("search", QUERIES[0], "--repo", str(repo))
        assert r.returncode == 1 and r.stdout == "", r.stdout + r.stderr
        assert r.stderr == f"error: no index at {repo}: run `ragbit index {repo}` first\n"
    if what == "the whole index directory":
        wait_for(lambda: not alive(pid), 30, "the server of the deleted index to exit")
    assert run("index", str(repo), "-q").returncode == 0            # a new index: searches answer again
    for q in QUERIES:
        assert hits(repo, q) == expected[q]


def test_repository_moved_after_indexing(repo, expected, tmp_path):
    hits(repo, QUERIES[0])
    old_server = live_server(repo / ".ragbit")
    moved = tmp_path / "moved"
    repo.rename(moved)
    for q in QUERIES:                # no server serves the new path yet: in-process, then a new server
        assert hits(moved, q) == expected[q]
    wait_for(lambda: not alive(old_server), 30, "the server of the old path to exit")
    status = run("status", str(moved), "--json")
    assert status.returncode == 0, status.stderr
    s = json.loads(status.stdout)
    assert (s["files"], s["added"], s["changed"], s["removed"], s["damaged"]) == (6, 0, 0, 0, []), s
    again = run("index", str(moved), "--json")
    assert again.returncode == 0, again.stderr
    r = json.loads(again.stdout)
    assert (r["files_unchanged"], r["chunks_embedded"], r["rechunked_all"]) == (6, 0, False), r   # incremental
    (moved / "src" / "net" / "retry.py").write_text("def giraffe_neck_length():\n    return 'tall giraffe'\n")
    status = json.loads(run("status", str(moved), "--json").stdout)
    assert status["changed"] == 1                                   # status tells the truth at the new place
    assert run("index", str(moved), "-q").returncode == 0
    assert hits(moved, "giraffe neck")[0][0] == "src/net/retry.py"
