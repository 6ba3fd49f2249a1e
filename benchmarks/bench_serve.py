"""`ragbit serve` under load: requests/s and time to first byte for /v1/embeddings and /v1/search (retrieval
only) at 1, 4 and 16 concurrent clients, the HTTP layer's overhead over the same call in-process, and the
server's memory when idle.

The server is a real `ragbit serve` subprocess on loopback (uvicorn); the clients are threads with one
keep-alive `http.client` connection each (standard library: the client's own cost stays small and the same
for every row). TTFB = request sent -> status line and headers read. The in-process row calls
`RagbitService.search` / `.embed` (exactly what the endpoints call) in this process, alternating with the
same HTTP call, so the p50 of the pairwise differences is the HTTP layer alone (target: < 5 ms p50).
Also prints CPU seconds (user+sys) the server spent per request, since wall time on a shared machine is
partly waiting for a core.

    ragbit index .                       # once, outside the timing lock (the bench refuses a missing index)
    flock /tmp/ragbit-bench.lock python benchmarks/bench_serve.py --repo . -n 200
    flock /tmp/ragbit-bench.lock python benchmarks/bench_serve.py --repo . -n 200 --watch   # no refresh per request
    # --index-dir DIR: an index kept elsewhere. Last lines: the per-request refresh when nothing changed (the
    # stat check of ragbit/serve/freshness.py vs the incremental re-index it saves) and the server's memory.
    # --model PATH.gguf: the generator the server loads (default: the tiny reference model; only memory depends on it)
"""
from __future__ import annotations

import argparse
import http.client
import json
import os
import socket
import statistics
import subprocess
import sys
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
TINY_MODEL = ROOT / "tests" / "fixtures" / "reference" / "tiny-tied-q1_0.gguf"
QUESTIONS = ["where are chunks loaded from disk", "how does the query pipeline pack context",
             "reciprocal rank fusion weights", "which file handles the command line",
             "how is the KV cache reused between turns", "BM25 over split code identifiers",
             "what happens when the index writer crashes", "tokenizer for the Bonsai model"]


def pct(xs: list[float], p: float) -> float:
    xs = sorted(xs)
    return xs[min(len(xs) - 1, round(p / 100 * (len(xs) - 1)))]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def proc_stat(pid: int) -> tuple[float, int]:
    """(CPU seconds user+sys, resident bytes) of a process, from /proc."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    tick = os.sysconf("SC_CLK_TCK")
    cpu = (int(fields[11]) + int(fields[12])) / tick
    rss = int(fields[21]) * os.sysconf("SC_PAGE_SIZE")
    return cpu, rss


def start_server(repo: Path, index_dir: Path, model: Path, port: int, watch: bool) -> subprocess.Popen:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    proc = subprocess.Popen([sys.executable, "-m", "ragbit.cli", "serve", "--repo", str(repo), "--model", str(model),
                             "--index-dir", str(index_dir), "--port", str(port), "--max-queue", "64"]
                            + (["--watch"] if watch else []),
                            env=env, stderr=subprocess.PIPE, text=True)
    deadline = time.time() + 600
    while time.time() < deadline:
        if proc.poll() is not None:
            raise SystemExit(f"server exited: {proc.stderr.read().strip()}")
        try:
            c = http.client.HTTPConnection("127.0.0.1", port, timeout=2)
            c.request("GET", "/health")
            if c.getresponse().status == 200:
                return proc
        except OSError:
            time.sleep(0.2)
    raise SystemExit("server did not start")


def run_clients(port: int, path: str, bodies: list[dict], clients: int, n: int) -> tuple[list[float], float]:
    """n requests spread over `clients` threads; returns (TTFB seconds per request, wall seconds)."""
    ttfb: list[float] = []
    lock = threading.Lock()
    counter = iter(range(n))

    def worker() -> None:
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=120)
        mine = []
        while True:
            with lock:
                i = next(counter, None)
            if i is None:
                break
            payload = json.dumps(bodies[i % len(bodies)]).encode()
            t0 = time.perf_counter()
            conn.request("POST", path, body=payload, headers={"Content-Type": "application/json"})
            resp = conn.getresponse()
            t1 = time.perf_counter()
            data = resp.read()
            if resp.status != 200:
                raise SystemExit(f"{path}: HTTP {resp.status}: {data[:200]!r}")
            mine.append(t1 - t0)
        conn.close()
        with lock:
            ttfb.extend(mine)

    threads = [threading.Thread(target=worker) for _ in range(clients)]
    t0 = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return ttfb, time.perf_counter() - t0


def paired_overhead(cfg, port: int, n: int, watch: bool) -> dict[str, tuple[float, float, float]]:
    """For search and embeddings: (in-process p50, HTTP p50, p50 of the per-pair difference), alternating one
    in-process call and one HTTP call (1 client, keep-alive) so both see the same machine load."""
    from ragbit.serve.service import RagbitService
    service = RagbitService(cfg, refresh_on_request=not watch)
    service.search("warm up", k=1)
    service.embed(["warm up"])
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=120)

    def over_http(path: str, body: dict) -> float:
        t0 = time.perf_counter()
        conn.request("POST", path, body=json.dumps(body).encode(), headers={"Content-Type": "application/json"})
        resp = conn.getresponse()
        t1 = time.perf_counter()
        resp.read()
        return t1 - t0

    def local(fn) -> float:
        t0 = time.perf_counter()
        fn()
        return time.perf_counter() - t0

    out = {}
    for name, path in (("search", "/v1/search"), ("embeddings", "/v1/embeddings")):
        inproc, remote = [], []
        for i in range(n):
            q = QUESTIONS[i % len(QUESTIONS)]
            if name == "search":
                inproc.append(local(lambda: service.search(q, k=10)))
                remote.append(over_http(path, {"query": q, "k": 10}))
            else:
                inproc.append(local(lambda: service.embed([q])))
                remote.append(over_http(path, {"model": "ragbit", "input": q, "encoding_format": "float"}))
        diffs = [r - l for r, l in zip(remote, inproc)]
        out[path] = (statistics.median(inproc), statistics.median(remote), statistics.median(diffs))
    conn.close()
    return out


def refresh_cost(cfg, n: int) -> tuple[float, float, float, float]:
    """(check wall, check CPU, re-index wall, re-index CPU), p50 seconds, of the refresh a request makes when
    nothing changed: the service's check
    (ragbit/serve/freshness.py), then the incremental re-index it replaces (`refresh_index`), alternating."""
    from ragbit.pipeline.standard import refresh_index
    from ragbit.serve.service import RagbitService
    service = RagbitService(cfg)
    service.refresh(force=True)
    time.sleep(2.1)                            # past the racy margin: the next refresh takes a trusted stamp
    service.refresh()
    walls: dict[str, list[float]] = {"check": [], "reindex": []}
    cpus: dict[str, list[float]] = {"check": [], "reindex": []}
    for _ in range(n):
        for name, fn in (("check", service.refresh), ("reindex", lambda: refresh_index(cfg, progress=False))):
            c0, t0 = time.process_time(), time.perf_counter()
            fn()
            walls[name].append(time.perf_counter() - t0)
            cpus[name].append(time.process_time() - c0)
    return (statistics.median(walls["check"]), statistics.median(cpus["check"]),
            statistics.median(walls["reindex"]), statistics.median(cpus["reindex"]))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--repo", type=Path, default=ROOT)
    ap.add_argument("--index-dir", type=Path, help="where the index lives (default REPO/.ragbit)")
    ap.add_argument("--model", type=Path, default=TINY_MODEL)
    ap.add_argument("-n", type=int, default=200, help="requests per row")
    ap.add_argument("--clients", default="1,4,16")
    ap.add_argument("--watch", action="store_true",
                    help="serve with --watch (no index refresh per request: a file watcher does it)")
    args = ap.parse_args()
    from indexes.store import IndexStore
    from ragbit.config import RagbitConfig
    overrides = {"index": {"dir": str(args.index_dir.resolve())}} if args.index_dir else {}
    cfg = RagbitConfig.load(args.repo.resolve(), overrides=overrides)
    if IndexStore(cfg.index_dir).current() is None:
        raise SystemExit(f"no index at {cfg.index_dir}: run `ragbit index {cfg.repo}` first (outside the timing lock)")

    from ragbit.indexing.indexer import index_repository
    index_repository(cfg, progress=False)          # up to date, so the server starts with nothing to index
    port = free_port()
    proc = start_server(cfg.repo, Path(cfg.index_dir), args.model, port, args.watch)
    try:
        time.sleep(1.0)
        idle_cpu, idle_rss = proc_stat(proc.pid)
        print(f"server idle after start: RSS {idle_rss / 2**20:.0f} MiB (model {args.model.name}; index refreshed "
              f"{'by a watcher' if args.watch else 'before each retrieval'})")
        rows = []
        bodies = {"/v1/search": [{"query": q, "k": 10} for q in QUESTIONS],
                  "/v1/embeddings": [{"model": "ragbit", "input": q, "encoding_format": "float"} for q in QUESTIONS]}
        for path in ("/v1/embeddings", "/v1/search"):
            run_clients(port, path, bodies[path], 1, 10)                      # warm
            for clients in (int(c) for c in args.clients.split(",")):
                cpu0, _ = proc_stat(proc.pid)
                ttfb, wall = run_clients(port, path, bodies[path], clients, args.n)
                cpu1, _ = proc_stat(proc.pid)
                rows.append((path, clients, len(ttfb) / wall, pct(ttfb, 50), pct(ttfb, 95), (cpu1 - cpu0) / len(ttfb)))
        _, busy_rss = proc_stat(proc.pid)
        paired = paired_overhead(cfg, port, args.n, args.watch)
    finally:
        proc.terminate()
        proc.wait(10)
    refresh = refresh_cost(cfg, min(args.n, 50))

    print(f"\n{'route':<16}{'clients':>8}{'req/s':>9}{'TTFB p50 ms':>13}{'p95 ms':>9}{'server CPU ms/req':>19}")
    for path, clients, rps, p50, p95, cpu in rows:
        print(f"{path:<16}{clients:>8}{rps:>9.1f}{p50 * 1e3:>13.2f}{p95 * 1e3:>9.2f}{cpu * 1e3:>19.2f}")
    print(f"\nHTTP layer vs the same call in-process, alternating ({args.n} pairs, 1 client):")
    for path, (inproc, remote, diff) in paired.items():
        verdict = "ok" if diff < 0.005 else "over the 5 ms target"
        print(f"  {path:<16} in-process p50 {inproc * 1e3:.2f} ms, HTTP p50 {remote * 1e3:.2f} ms, "
              f"overhead p50 {diff * 1e3:.2f} ms ({verdict})")
    check_wall, check_cpu, reindex_wall, reindex_cpu = refresh
    print(f"per-request refresh, nothing changed (p50 of {min(args.n, 50)}): stat check {check_wall * 1e3:.2f} ms wall "
          f"/ {check_cpu * 1e3:.2f} ms CPU, incremental re-index {reindex_wall * 1e3:.2f} ms / {reindex_cpu * 1e3:.2f} ms "
          f"(x{reindex_cpu / max(check_cpu, 1e-9):.0f} CPU)")
    print(f"server RSS: idle {idle_rss / 2**20:.0f} MiB, after the load {busy_rss / 2**20:.0f} MiB")


if __name__ == "__main__":
    main()
