"""Where running search servers list themselves, so `ragbit server list` / `stop` can find them.

Why: each indexed repository gets its own background server (~300 MB with the embedding model loaded), and
they live in hidden index directories all over the disk; without a list nobody knows what is running. A server
writes `<pid>.json` (repo, index dir, start time) here when it starts listening, touches it after each request
(its mtime is the last use) and removes it when it exits. An entry whose process is gone, or is not a search
server any more (pid reused), is stale and is removed by whoever reads it. Standard library only.
"""
from __future__ import annotations

import json
import os
import signal
import time
from dataclasses import dataclass
from pathlib import Path

SERVER_MODULE = "ragbit.serve.socket_server"     # what `ragbit search` starts (python -m ...)


def registry_dir() -> Path:
    """$XDG_RUNTIME_DIR/ragbit/servers (per login session, tmpfs), else ~/.cache/ragbit/servers."""
    runtime = os.environ.get("XDG_RUNTIME_DIR", "").strip()
    base = Path(runtime) if runtime and Path(runtime).is_absolute() else Path.home() / ".cache"
    return base / "ragbit" / "servers"


@dataclass
class ServerEntry:
    pid: int
    repo: str
    index_dir: str
    started: float
    last_used: float
    rss_bytes: int | None


def register(repo: str, index_dir: str) -> Path:
    d = registry_dir()
    d.mkdir(parents=True, exist_ok=True)
    path = d / f"{os.getpid()}.json"
    tmp = d / f".{os.getpid()}.json.tmp"
    tmp.write_text(json.dumps({"pid": os.getpid(), "repo": repo, "index_dir": index_dir, "started": time.time()}),
                   encoding="utf-8")
    os.replace(tmp, path)
    return path


def touch(path: Path | None) -> None:
    if path is not None:
        try:
            os.utime(path)
        except OSError:
            pass


def unregister(path: Path | None) -> None:
    if path is not None:
        path.unlink(missing_ok=True)


def _is_server(pid: int) -> bool:
    """Is `pid` alive and a ragbit search server? (/proc on Linux; elsewhere: alive is enough)"""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return False                 # another user's process: not ours to list or stop
    try:
        return SERVER_MODULE.encode() in Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return not Path("/proc/self").exists()


def _rss(pid: int) -> int | None:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    return None


def running() -> list[ServerEntry]:
    """The live servers, oldest first; stale entries are removed on the way."""
    entries = []
    d = registry_dir()
    if not d.is_dir():
        return []
    for path in d.glob("*.json"):
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
            pid = int(data["pid"])
            last = path.stat().st_mtime
        except (OSError, ValueError, KeyError, TypeError):
            continue
        if not _is_server(pid):
            path.unlink(missing_ok=True)
            continue
        entries.append(ServerEntry(pid, str(data.get("repo", "?")), str(data.get("index_dir", "?")),
                                   float(data.get("started", 0)), last, _rss(pid)))
    return sorted(entries, key=lambda e: e.started)


def stop(entry: ServerEntry, wait: float = 5.0) -> bool:
    """SIGTERM the server (it removes its socket and entry) and wait for it to go; True when it is gone."""
    if not _is_server(entry.pid):
        return True
    os.kill(entry.pid, signal.SIGTERM)
    deadline = time.monotonic() + wait
    while time.monotonic() < deadline:
        if not _is_server(entry.pid):
            return True
        time.sleep(0.05)
    return False
