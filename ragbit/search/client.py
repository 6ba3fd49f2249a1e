"""Asking the index's warm search server, and starting one.

The server is the `ragbit serve` app (`ragbit/serve/app.py`) run by uvicorn on a Unix socket inside the index
directory (`ragbit/serve/socket_server.py`); a search is one `POST /v1/search` over that socket
(`ragbit/search/unix_http.py`: the smallest HTTP exchange, without `http.client`'s imports). `search()` is what `ragbit search` calls: the
running server's hits when one answers, else an in-process search (and a detached server is started for the
next call). `ask()` is the bare exchange, used by the console script (`ragbit/launcher.py`) too, so this module
imports only the standard library.

What `ragbit search` adds to the OpenAI-style body of /v1/search:

    "client": {"repo": "/abs/repo", "index_dir": "/abs/repo/.ragbit", "config": {fingerprint(cfg)} (optional)}
    "render": {"json": false, "terminal": {Terminal.to_json()}}     (optional: also return what is printed)

null k / mode / max_hits_per_file mean the repository's configured values. The server loads the repository's
config as the CLI would and answers only when it, and the client's own when sent, agree with the config it was
started with on everything that changes results; else it answers 409 and retires. The reply adds
"mode", "dense_complete", "stale" ({path: "deleted" | "changed"}) and, when asked for, "printed":
{"stdout", "stderr"}.

Safety rules shared with the server: the socket only appears once a server is listening, so a socket that
refuses a connection is stale and is removed here (only the very file we tried); any failure or error answer
means "search in-process", which then raises the canonical error message.
"""
from __future__ import annotations

import json
import os
import stat
from pathlib import Path

SOCKET_NAME = "search.sock"
LOCK_NAME = "search.lock"
LOG_NAME = "search-server.log"
SEARCH_PATH = "/v1/search"
MAX_UNIX_PATH = 100                  # sun_path is 104-108 bytes; longer paths: no server, in-process only
TIMEOUT = 60.0                       # a search normally takes milliseconds


def socket_path(index_dir: Path) -> Path:
    return Path(index_dir) / SOCKET_NAME


def fingerprint(cfg) -> dict:
    """What a server must agree on with a client to give the same answer as an in-process search."""
    import dataclasses               # here, not at the top: the console script's fast path imports this module
    return {"repo": str(cfg.repo), "index_dir": str(Path(cfg.index_dir).resolve()),
            "embed": dataclasses.asdict(cfg.embed), "rrf_k": cfg.search.rrf_k}


def search_request(repo, index_dir, question: str, k: int | None, mode: str | None,
                   max_hits_per_file: int | None, cfg=None, render: dict | None = None) -> dict:
    """The body of `POST /v1/search`; `cfg` (when the caller has one) lets the server check it serves the
    same config."""
    client = {"repo": str(repo), "index_dir": str(index_dir)}
    if cfg is not None:
        client["config"] = fingerprint(cfg)
    request = {"query": question, "k": k, "mode": mode, "max_hits_per_file": max_hits_per_file, "client": client}
    if render is not None:
        request["render"] = render
    return request


def ask(index_dir: Path, request: dict, timeout: float = TIMEOUT) -> dict | None:
    """The server's successful reply to `request`, or None (no server, stale socket, error answer)."""
    path = socket_path(index_dir)
    try:
        st = os.stat(path)
    except OSError:
        return None
    if not stat.S_ISSOCK(st.st_mode):
        return None
    from ragbit.search.unix_http import post
    try:
        status, data = post(str(path), SEARCH_PATH, json.dumps(request, ensure_ascii=False).encode(), timeout)
    except (ConnectionRefusedError, FileNotFoundError):
        _remove_stale(path, st)
        return None
    except OSError:                  # timeout, broken connection, a reply unix_http cannot read
        return None
    if status != 200:
        return None
    try:
        reply = json.loads(data)
    except ValueError:
        return None
    if not isinstance(reply, dict) or not isinstance(reply.get("data"), list):
        return None
    return reply


def hits_of(reply: dict):
    """The `Hits` of a successful reply."""
    from ragbit.search.searcher import Hit, Hits
    fields = ("path", "start_line", "end_line", "scope", "language", "score", "text", "rank")
    hits = Hits(Hit(**{f: h[f] for f in fields}, share=h.get("share")) for h in reply["data"])
    hits.dense_complete, hits.mode = bool(reply["dense_complete"]), reply["mode"]
    stale = reply.get("stale")
    hits.stale = {str(p): str(s) for p, s in stale.items()} if isinstance(stale, dict) else {}
    return hits


def query(cfg, question: str, k: int, mode: str, max_hits_per_file: int | None, timeout: float = TIMEOUT):
    """Hits from the index's running server for exactly this config, or None (then search in-process)."""
    request = search_request(cfg.repo, cfg.index_dir, question, k, mode, max_hits_per_file, cfg=cfg)
    reply = ask(cfg.index_dir, request, timeout)
    try:
        return hits_of(reply) if reply is not None else None
    except (KeyError, TypeError, ValueError, AttributeError):
        return None                  # not the reply this client understands: search in-process


def search(cfg, question: str, k: int, mode: str, max_hits_per_file: int | None, use_server: bool):
    """The CLI's search: the running server's hits, else in-process (then start a server for the next call)."""
    if use_server:
        hits = query(cfg, question, k=k, mode=mode, max_hits_per_file=max_hits_per_file)
        if hits is not None:
            return hits
    from ragbit.search.searcher import Searcher
    from ragbit.search.staleness import stale_files
    searcher = Searcher(cfg)
    hits = searcher.search(question, k=k, mode=mode, max_hits_per_file=max_hits_per_file)
    hits.stale = stale_files(cfg.repo, searcher.table, (h.path for h in hits))
    if use_server:
        spawn_server(cfg)            # for the next search; this one is answered already
    return hits


def _remove_stale(path: Path, seen: os.stat_result) -> None:
    """Remove a socket nobody listens on — only the very file we tried (not a fresh server's)."""
    try:
        now = os.stat(path)
        if (now.st_ino, now.st_dev) == (seen.st_ino, seen.st_dev):
            path.unlink()
    except OSError:
        pass


def server_running(index_dir: Path) -> bool:
    """True while a server holds the index's lock (starting up or serving)."""
    import fcntl
    try:
        fd = os.open(Path(index_dir) / LOCK_NAME, os.O_RDWR | os.O_CREAT, 0o600)
    except OSError:
        return True                  # cannot even open the lock file: do not try to start one
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        return False                 # nobody holds it (closing the fd releases our probe)
    except OSError:
        return True
    finally:
        os.close(fd)


def spawn_server(cfg):
    """Start a detached server for this index unless one is running (or the socket path is too long).

    Returns the Popen (tests stop it with it), or None when none was started."""
    index_dir = Path(cfg.index_dir)
    if len(os.fsencode(socket_path(index_dir.resolve()))) > MAX_UNIX_PATH or server_running(index_dir):
        return None
    import subprocess
    import ragbit
    from ragbit.child_process import module_command
    from ragbit.search.registry import SERVER_MODULE      # not at the top: it imports dataclasses (~5 ms)
    env = dict(os.environ)
    root = str(Path(ragbit.__file__).resolve().parent.parent)   # the server imports the same ragbit
    env["PYTHONPATH"] = os.pathsep.join(p for p in (root, env.get("PYTHONPATH", "")) if p)
    with open(index_dir / LOG_NAME, "ab") as log:
        return subprocess.Popen(module_command(SERVER_MODULE, "--repo", str(cfg.repo), "--index-dir", str(index_dir),
                                               "--idle-timeout", str(cfg.search.server_idle_timeout)),
                                stdin=subprocess.DEVNULL, stdout=log, stderr=log, env=env, cwd=str(cfg.repo),
                                start_new_session=True, close_fds=True)
