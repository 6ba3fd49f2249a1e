"""How long `ragbit search` takes from the shell: cold (fresh process, no server), warm (server up), in-process.

Rows: `cold` and `warm` run `python -m ragbit.cli` (typer imported, then the server asked); `fast` runs the
console script's code (`ragbit.launcher:main`), which asks the server for the hits and their printed form
before importing typer; `python -c pass` is the interpreter's own start-up, a floor no client can go under.

Targets (project issue 7): cold < 2 s, warm < 100 ms. Prints p50/p95 of wall time AND CPU time (user+sys of
the client process; for warm also the server's CPU per request), because the machine this runs on is often
shared and wall time then mostly measures waiting for a core.

    python benchmarks/bench_search.py --repo . --index-dir /tmp/warm-idx -n 10
    python benchmarks/bench_search.py --django          # the index benchmarks/bench_index.py built, if cached
"""
from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
DJANGO_INDEX = Path("/tmp/ragbit-bench/index/django")     # bench_index.py --cache default
QUESTIONS = ["where are chunks loaded from disk", "how does the query pipeline pack context",
             "reciprocal rank fusion weights", "which file handles the command line"]
TARGETS = {"cold": 2.0, "warm": 0.100, "fast": 0.100}
CLI = [sys.executable, "-m", "ragbit.cli"]
BYTECODE = False   # --bytecode: let the clients cache compiled modules (.pyc), as a normal install does
CONSOLE_SCRIPT = [sys.executable, "-c", "import sys; from ragbit.launcher import main; sys.exit(main())"]


def _pct(xs: list[float], p: float) -> float:
    xs = sorted(xs)
    return xs[min(len(xs) - 1, round(p / 100 * (len(xs) - 1)))]


def _children_cpu() -> float:
    r = resource.getrusage(resource.RUSAGE_CHILDREN)
    return r.ru_utime + r.ru_stime


def _proc_cpu(pid: int) -> float:
    """user+sys seconds of a running process (Linux /proc)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def search_cmds(prefix: list[str], repo: Path, index_dir: Path, n: int, mode: str, extra: list[str]) -> list[list[str]]:
    return [prefix + ["search", QUESTIONS[i % len(QUESTIONS)], "--repo", str(repo), "--index-dir", str(index_dir),
                      "--mode", mode, "--json", *extra] for i in range(n)]


def run_cli(cmds: list[list[str]]) -> tuple[list[float], list[float]]:
    """Each command in a fresh process; wall and CPU (user+sys) seconds of each."""
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")])}
    if BYTECODE:
        env.pop("PYTHONDONTWRITEBYTECODE", None)
    walls, cpus = [], []
    for cmd in cmds:
        c0, t0 = _children_cpu(), time.perf_counter()
        r = subprocess.run(cmd, env=env, capture_output=True, text=True)
        walls.append(time.perf_counter() - t0)
        cpus.append(_children_cpu() - c0)
        if r.returncode != 0:
            raise SystemExit(f"search failed: {r.stderr.strip()}")
    return walls, cpus


def in_process(cfg, n: int, mode: str) -> tuple[list[float], list[float]]:
    from ragbit.search.searcher import Searcher
    s = Searcher(cfg)
    s.search(QUESTIONS[0], mode=mode)                 # load once, as the server does
    walls, cpus = [], []
    for i in range(n):
        c0, t0 = time.process_time(), time.perf_counter()
        s.search(QUESTIONS[i % len(QUESTIONS)], mode=mode)
        walls.append(time.perf_counter() - t0)
        cpus.append(time.process_time() - c0)
    return walls, cpus


def row(name: str, walls: list[float], cpus: list[float], note: str = "") -> None:
    target = TARGETS.get(name.split()[0])
    t = f"target < {target * 1000:.0f} ms" if target else ""
    print(f"  {name:<16} wall p50 {_pct(walls, 50) * 1000:8.1f} ms  p95 {_pct(walls, 95) * 1000:8.1f} ms   "
          f"cpu p50 {_pct(cpus, 50) * 1000:8.1f} ms  p95 {_pct(cpus, 95) * 1000:8.1f} ms   {t} {note}")


def bench(repo: Path, index_dir: Path, n: int, mode: str) -> None:
    import ragbit.search.client as ss
    from ragbit.config import RagbitConfig
    cfg = RagbitConfig.load(repo, overrides={"index": {"dir": str(index_dir)}})
    chunks = json.loads((index_dir / (index_dir / "CURRENT").read_text().strip() / "manifest.json").read_text())
    print(f"{index_dir} ({chunks.get('files')} files, {chunks.get('chunks')} chunks), mode {mode}, n={n}, "
          f"load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores")
    row("cold", *run_cli(search_cmds(CLI, repo, index_dir, n, mode, ["--no-server"])))
    proc = ss.spawn_server(cfg)
    try:
        if proc is not None:
            end = time.monotonic() + 300
            while not ss.socket_path(index_dir).exists() and proc.poll() is None and time.monotonic() < end:
                time.sleep(0.1)
        pid = proc.pid if proc is not None else None
        s0 = _proc_cpu(pid) if pid else 0.0
        walls, cpus = run_cli(search_cmds(CLI, repo, index_dir, n, mode, []))
        server_cpu = (_proc_cpu(pid) - s0) / n * 1000 if pid else float("nan")
        row("warm", walls, cpus, f"(+ server cpu {server_cpu:.1f} ms/request)" if pid else "(existing server)")
        from ragbit import launcher
        if launcher.fast_search(search_cmds([], repo, index_dir, 1, mode, [])[0]) is None:
            print("  note: the fast path declined this search (ragbit.toml in the repo?): `fast` is the slow path")
        s0 = _proc_cpu(pid) if pid else 0.0
        walls, cpus = run_cli(search_cmds(CONSOLE_SCRIPT, repo, index_dir, n, mode, []))
        server_cpu = (_proc_cpu(pid) - s0) / n * 1000 if pid else float("nan")
        row("fast", walls, cpus, f"(+ server cpu {server_cpu:.1f} ms/request)" if pid else "(existing server)")
        row("python -c pass", *run_cli([[sys.executable, "-c", "pass"]] * n))
    finally:
        if proc is not None:
            proc.terminate()
            proc.wait(timeout=30)
    row("in-process", *in_process(cfg, n, mode))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repo", type=Path)
    ap.add_argument("--index-dir", type=Path)
    ap.add_argument("--django", action="store_true", help=f"also the index at {DJANGO_INDEX}")
    ap.add_argument("-n", type=int, default=10)
    ap.add_argument("--mode", default="hybrid")
    ap.add_argument("--bytecode", action="store_true",
                    help="unset PYTHONDONTWRITEBYTECODE for the clients (some sandboxes set it: then every start "
                         "recompiles ragbit's modules from source, which no user install does)")
    a = ap.parse_args()
    global BYTECODE
    BYTECODE = a.bytecode
    if os.environ.get("PYTHONDONTWRITEBYTECODE") and not a.bytecode:
        print("note: PYTHONDONTWRITEBYTECODE is set: clients recompile ragbit from source on every start "
              "(--bytecode measures a normal install)")
    if a.repo:
        bench(a.repo.resolve(), (a.index_dir or a.repo / ".ragbit").resolve(), a.n, a.mode)
    if a.django:
        if not (DJANGO_INDEX / "CURRENT").is_file():
            print(f"no Django index at {DJANGO_INDEX}: run benchmarks/bench_index.py first")
            return
        gen = (DJANGO_INDEX / "CURRENT").read_text().strip()
        repo = Path(json.loads((DJANGO_INDEX / gen / "manifest.json").read_text())["repo"])
        bench(repo, DJANGO_INDEX, a.n, a.mode)


if __name__ == "__main__":
    main()
