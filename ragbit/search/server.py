"""A small background search server per index, so `ragbit search` from the shell answers in milliseconds.

Why: a cold `ragbit search` imports bm25s/numba/scipy/faiss/onnxruntime and loads the BM25 index, the chunk
table and the ONNX session — seconds of CPU on every call. The first search of an index runs in-process and
starts this server (detached); later searches send one JSON line over a Unix-domain socket inside the index
directory and get the hit dicts back. The CLI renders them exactly as it renders in-process hits.

Safety rules:
- one server per index directory: it holds an exclusive flock on `search.lock` for its whole life;
- the socket only appears (atomic rename) once the server is loaded and listening, so a socket that refuses
  a connection is stale (its server died) and is removed by the client;
- a request names the repo, index dir and search-relevant config; a server started for anything else answers
  "mismatch" and retires (the client searches in-process and starts a fresh server);
- JSON only (no pickle), bounded request size, socket file mode 0600;
- it exits after `search.server_idle_timeout` seconds without a request, when the index directory or its
  socket disappears, or on SIGTERM. A newer committed index generation is picked up by `Searcher` itself.

Forwarded commands (the console script's fast path, `ragbit/launcher.py`): importing typer, rich and the
config costs a shell call ~0.4 s CPU before it can even ask the server. So the launcher sends the raw argv
(plus cwd, tty flags, terminal size and the environment variables that shape output) and the server, which
has typer loaded, runs the real `search` command in-process with captured stdout/stderr and returns them
with the exit code. Same code, same output. Anything it cannot reproduce exactly (another index or config,
`--no-server`, unusual environment, a crash) is answered "unsupported" and the launcher runs the normal CLI.
"""
from __future__ import annotations

import io
import json
import os
import socket
import stat
import sys
import time
from pathlib import Path

PROTOCOL = 1
SOCKET_NAME = "search.sock"
LOCK_NAME = "search.lock"
LOG_NAME = "search-server.log"
MAX_REQUEST_BYTES = 64 * 1024        # a question plus a few small fields
MAX_RESPONSE_BYTES = 256 * 1024 * 1024
MAX_K = 10_000
TICK_SECONDS = 1.0                   # how often an idle server checks its index dir, socket and timeout
MAX_UNIX_PATH = 100                  # sun_path is 104-108 bytes; longer paths: no server, in-process only
FORWARD_TIMEOUT = 60.0               # a forwarded search normally takes milliseconds
# Environment read while rendering (rich, click): the server sets the client's values around a forwarded call.
OUTPUT_ENV = ("COLUMNS", "LINES", "TERM", "COLORTERM", "NO_COLOR", "FORCE_COLOR", "TTY_COMPATIBLE",
              "TTY_INTERACTIVE", "JUPYTER_COLUMNS", "JUPYTER_LINES")
# Environment read once at import (typer, rich): client and server must agree, or the launcher takes the slow path.
IMPORT_ENV = ("TERMINAL_WIDTH", "_TYPER_FORCE_DISABLE_TERMINAL", "GITHUB_ACTIONS", "FORCE_COLOR", "PY_COLORS",
              "TYPER_USE_RICH", "TYPER_STANDARD_TRACEBACK", "_TYPER_STANDARD_TRACEBACK",
              "DATABRICKS_RUNTIME_VERSION")

_serving: "SearchServer | None" = None   # set inside the server while it runs a forwarded command


class Unsupported(Exception):
    """A forwarded command the server cannot answer exactly as the client's own process would."""


# ---------------------------------------------------------------------------------------------- shared
def socket_path(index_dir: Path) -> Path:
    return Path(index_dir) / SOCKET_NAME


def fingerprint(cfg) -> dict:
    """What a server must agree on with a client to give the same answer as an in-process search."""
    import dataclasses               # here, not at the top: the launcher's fast path imports this module
    return {"repo": str(cfg.repo), "index_dir": str(Path(cfg.index_dir).resolve()),
            "embed": dataclasses.asdict(cfg.embed), "rrf_k": cfg.search.rrf_k}


def _read_line(conn: socket.socket, limit: int) -> bytes:
    """One newline-terminated message (or up to EOF); ValueError past `limit` bytes."""
    buf = bytearray()
    while not buf.endswith(b"\n"):
        chunk = conn.recv(65536)
        if not chunk:
            break
        buf += chunk
        if len(buf) > limit:
            raise ValueError(f"message longer than {limit} bytes")
    return bytes(buf)


# ---------------------------------------------------------------------------------------------- client
def query(cfg, question: str, k: int, mode: str, max_hits_per_file: int, timeout: float = 60.0):
    """Hits from the index's running server, or None when no server answers correctly (then search in-process).

    Any error answer also returns None: the in-process search then raises the canonical error message."""
    path = socket_path(cfg.index_dir)
    try:
        st = os.stat(path)
    except OSError:
        return None
    if not stat.S_ISSOCK(st.st_mode):
        return None
    request = {"v": PROTOCOL, "config": fingerprint(cfg), "query": question, "k": k, "mode": mode,
               "max_hits_per_file": max_hits_per_file}
    data = json.dumps(request, ensure_ascii=False).encode() + b"\n"
    if len(data) > MAX_REQUEST_BYTES:
        return None
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
        s.settimeout(timeout)
        try:
            s.connect(str(path))
        except (ConnectionRefusedError, FileNotFoundError):
            _remove_stale(path, st)
            return None
        except OSError:
            return None
        try:
            s.sendall(data)
            reply = json.loads(_read_line(s, MAX_RESPONSE_BYTES))
        except (OSError, ValueError):
            return None
    if not isinstance(reply, dict) or not reply.get("ok"):
        return None
    from ragbit.search.searcher import Hit, Hits
    hits = Hits(Hit(**h) for h in reply["hits"])
    hits.dense_complete, hits.mode = bool(reply["dense_complete"]), reply["mode"]
    return hits


def forward(index_dir: Path, argv: list[str], prog: str, cwd: str) -> dict | None:
    """Run a `ragbit` command line in the index's server: {"stdout", "stderr", "exit"} or None (run it here).

    Never removes or spawns anything: when the server is missing or stale, the normal CLI handles that."""
    env = {n: os.environ[n] for n in OUTPUT_ENV + IMPORT_ENV if n in os.environ}
    size = None
    for fd in (0, 1, 2):             # as rich measures the terminal
        try:
            size = os.get_terminal_size(fd)
            break
        except (OSError, ValueError):
            pass
    if size is not None and (size.columns <= 0 or size.lines <= 0):
        return None
    request = {"v": PROTOCOL, "argv": argv, "prog": prog, "cwd": cwd, "env": env,
               "stdout_isatty": sys.stdout.isatty(), "stderr_isatty": sys.stderr.isatty(),
               "terminal": [size.columns, size.lines] if size else None}
    data = json.dumps(request, ensure_ascii=False).encode() + b"\n"
    if len(data) > MAX_REQUEST_BYTES:
        return None
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
        s.settimeout(FORWARD_TIMEOUT)
        try:
            s.connect(str(socket_path(index_dir)))
            s.sendall(data)
            reply = json.loads(_read_line(s, MAX_RESPONSE_BYTES))
        except (OSError, ValueError):
            return None
    if not isinstance(reply, dict) or not reply.get("ok") or type(reply.get("exit")) is not int:
        return None
    if not isinstance(reply.get("stdout"), str) or not isinstance(reply.get("stderr"), str):
        return None
    return reply


def search(cfg, question: str, k: int, mode: str, max_hits_per_file: int, use_server: bool):
    """The CLI's search: the running server's hits, else in-process (then start a server for the next call).

    Inside the server (a forwarded command) it answers from the loaded index, or raises Unsupported for another
    index/config or a no-server request: the server never asks itself, never spawns another server."""
    if _serving is not None:
        if not use_server or fingerprint(cfg) != _serving.fingerprint:
            raise Unsupported("another index or configuration, or no server wanted")
        return _serving.searcher.search(question, k=k, mode=mode, max_hits_per_file=max_hits_per_file)
    if use_server:
        hits = query(cfg, question, k=k, mode=mode, max_hits_per_file=max_hits_per_file)
        if hits is not None:
            return hits
    from ragbit.search.searcher import Searcher
    hits = Searcher(cfg).search(question, k=k, mode=mode, max_hits_per_file=max_hits_per_file)
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
    if _serving is not None:
        return None
    if len(os.fsencode(socket_path(index_dir.resolve()))) > MAX_UNIX_PATH or server_running(index_dir):
        return None
    import subprocess
    import ragbit
    env = dict(os.environ)
    root = str(Path(ragbit.__file__).resolve().parent.parent)   # the server imports the same ragbit
    env["PYTHONPATH"] = os.pathsep.join(p for p in (root, env.get("PYTHONPATH", "")) if p)
    with open(index_dir / LOG_NAME, "ab") as log:
        return subprocess.Popen([sys.executable, "-m", "ragbit.search.server", "--repo", str(cfg.repo),
                                 "--index-dir", str(index_dir),
                                 "--idle-timeout", str(cfg.search.server_idle_timeout)],
                                stdin=subprocess.DEVNULL, stdout=log, stderr=log, env=env, cwd=str(cfg.repo),
                                start_new_session=True, close_fds=True)


# ---------------------------------------------------------------------------------------------- server
class SearchServer:
    """Serves one index, one request at a time (a search takes milliseconds; the shell is one user)."""

    def __init__(self, cfg, idle_timeout: float):
        from ragbit.search.searcher import Searcher
        self.cfg, self.idle_timeout = cfg, idle_timeout
        self.index_dir = Path(cfg.index_dir).resolve()
        self.sock_path = socket_path(self.index_dir)
        self.fingerprint = fingerprint(cfg)
        self.searcher = Searcher(cfg)
        self._sock: socket.socket | None = None
        self._ident: tuple[int, int] | None = None
        self.import_env = {n: os.environ[n] for n in IMPORT_ENV if n in os.environ}

    def warm_up(self) -> None:
        """Load the index and the embedding model before the socket appears (errors show on first request)."""
        try:
            self.searcher.search("warm up", k=1, mode="hybrid")
        except Exception as e:  # noqa: BLE001  e.g. no embedding model: lexical searches still work
            print(f"warm-up: {type(e).__name__}: {e}", file=sys.stderr, flush=True)
        import ragbit.cli  # noqa: F401  typer and every command, for forwarded command lines

    def bind(self) -> None:
        """Listen on a temporary name, then rename onto the socket path: a visible socket always answers."""
        tmp = self.index_dir / f".{SOCKET_NAME}.{os.getpid()}"
        tmp.unlink(missing_ok=True)
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        old_umask = os.umask(0o177)
        try:
            sock.bind(str(tmp))
        finally:
            os.umask(old_umask)
        sock.listen(16)
        os.replace(tmp, self.sock_path)
        st = os.stat(self.sock_path)
        self._sock, self._ident = sock, (st.st_ino, st.st_dev)
        sock.settimeout(TICK_SECONDS)

    def still_wanted(self) -> bool:
        try:
            st = os.stat(self.sock_path)
        except OSError:
            return False             # index dir deleted, or our socket removed
        return (st.st_ino, st.st_dev) == self._ident

    def serve_forever(self) -> None:
        last = time.monotonic()
        while True:
            try:
                conn, _ = self._sock.accept()
            except TimeoutError:
                if time.monotonic() - last > self.idle_timeout or not self.still_wanted():
                    return
                continue
            with conn:
                retire = self.handle(conn)
            last = time.monotonic()
            if retire or not self.still_wanted():
                return

    def handle(self, conn: socket.socket) -> bool:
        """Answer one request; True when this server should retire (a client with another config)."""
        import dataclasses
        conn.settimeout(10.0)
        retire = False
        try:
            request = json.loads(_read_line(conn, MAX_REQUEST_BYTES))
            if isinstance(request, dict) and "argv" in request:
                reply = self.run_forwarded(request)
            else:
                args = self._validate(request)
                if request["config"] != self.fingerprint:
                    retire = True
                    reply = {"ok": False, "error": "mismatch: this server serves another index or configuration"}
                else:
                    hits = self.searcher.search(**args)
                    reply = {"ok": True, "hits": [dataclasses.asdict(h) for h in hits],
                             "dense_complete": hits.dense_complete, "mode": hits.mode}
        except Exception as e:  # noqa: BLE001  a bad request or failing search never kills the server
            reply = {"ok": False, "error": f"{type(e).__name__}: {e}"}
        try:
            conn.sendall(json.dumps(reply, ensure_ascii=False).encode() + b"\n")
        except OSError:
            pass
        return retire

    def run_forwarded(self, r: dict) -> dict:
        """Run the client's `ragbit search ...` through the real CLI, as the client's process would.

        cwd, output environment, tty flags and terminal size are the client's for the call, then restored."""
        global _serving
        argv, prog, cwd, env, term = r.get("argv"), r.get("prog"), r.get("cwd"), r.get("env"), r.get("terminal")
        if r.get("v") != PROTOCOL or not isinstance(argv, list) or not all(isinstance(a, str) for a in argv) \
                or argv[:1] != ["search"] or not isinstance(prog, str) or not isinstance(cwd, str) \
                or not isinstance(env, dict) or not all(isinstance(v, str) for v in env.values()):
            raise ValueError("argv, prog, cwd and env are required; only `search` is forwarded")
        if {n: env[n] for n in IMPORT_ENV if n in env} != self.import_env:
            raise Unsupported("typer/rich were imported under another environment")
        want = {n: env.get(n) for n in OUTPUT_ENV}
        if term is not None:         # rich measures fds 0-2, which are the client's terminal, not ours
            want["COLUMNS"] = want["COLUMNS"] or str(int(term[0]))
            want["LINES"] = want["LINES"] or str(int(term[1]))
        from ragbit.cli import main as cli_main
        out, err = _captured(bool(r.get("stdout_isatty"))), _captured(bool(r.get("stderr_isatty")))
        saved = sys.stdout, sys.stderr, os.getcwd(), {n: os.environ.get(n) for n in OUTPUT_ENV}
        try:
            os.chdir(cwd)
            _set_env(want)
            sys.stdout, sys.stderr, _serving = out, err, self
            try:
                cli_main(argv, prog_name=prog)             # the console script's own entry
                code = 0
            except SystemExit as e:
                code = 0 if e.code is None else e.code
            if type(code) is not int:
                raise Unsupported(f"exit {code!r}")
            out.flush()
            err.flush()
        finally:
            sys.stdout, sys.stderr, _serving = saved[0], saved[1], None
            os.chdir(saved[2])
            _set_env(saved[3])
        return {"ok": True, "exit": code, "stdout": out.buffer.getvalue().decode(),
                "stderr": err.buffer.getvalue().decode()}

    @staticmethod
    def _validate(r) -> dict:
        if not isinstance(r, dict) or r.get("v") != PROTOCOL:
            raise ValueError(f"not a protocol-{PROTOCOL} request")
        q, k, mode, cap = r.get("query"), r.get("k"), r.get("mode"), r.get("max_hits_per_file")
        if not isinstance(q, str) or not isinstance(mode, str) or not isinstance(r.get("config"), dict):
            raise ValueError("query, mode and config are required")
        for name, v in (("k", k), ("max_hits_per_file", cap)):
            if type(v) is not int or not 0 <= v <= MAX_K:
                raise ValueError(f"{name} must be an integer in 0..{MAX_K}")
        return {"query": q, "k": k, "mode": mode, "max_hits_per_file": cap}

    def close(self) -> None:
        if self._sock is not None:
            self._sock.close()
            if self.still_wanted():
                self.sock_path.unlink(missing_ok=True)


class _TTYBytes(io.BytesIO):
    def __init__(self, tty: bool):
        super().__init__()
        self.tty = tty

    def isatty(self) -> bool:
        return self.tty


def _captured(tty: bool) -> io.TextIOWrapper:
    """A text stream that collects UTF-8 bytes and reports the client's isatty (rich and click ask)."""
    return io.TextIOWrapper(_TTYBytes(tty), encoding="utf-8", errors="strict", write_through=True)


def _set_env(values: dict) -> None:
    for name, value in values.items():
        if value is None:
            os.environ.pop(name, None)
        else:
            os.environ[name] = value


def main(argv: list[str] | None = None) -> int:
    import argparse
    import fcntl
    import signal
    from ragbit.config import RagbitConfig

    p = argparse.ArgumentParser(prog="python -m ragbit.search.server", description=__doc__.splitlines()[0])
    p.add_argument("--repo", required=True)
    p.add_argument("--index-dir", required=True)
    p.add_argument("--idle-timeout", type=float, default=None, help="seconds (default: config)")
    a = p.parse_args(argv)
    cfg = RagbitConfig.load(a.repo, overrides={"index": {"dir": a.index_dir}})
    idle = cfg.search.server_idle_timeout if a.idle_timeout is None else a.idle_timeout
    lock_fd = os.open(Path(cfg.index_dir) / LOCK_NAME, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(lock_fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        return 0                     # another server owns this index
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    server = SearchServer(cfg, idle)
    server.warm_up()
    server.bind()
    print(f"{time.strftime('%Y-%m-%d %H:%M:%S')} pid {os.getpid()} serving {server.index_dir}", flush=True)
    try:
        server.serve_forever()
    finally:
        server.close()
        print(f"{time.strftime('%Y-%m-%d %H:%M:%S')} pid {os.getpid()} exits", flush=True)
    return 0


if __name__ == "__main__":
    # Run in the importable module, not in `__main__`: the CLI reads `ragbit.search.server._serving`, and a
    # second copy of this module would leave it unset (the server would then ask itself and hang).
    from ragbit.search.server import main as _main
    sys.exit(_main())
