"""Speed of the Bonsai engine on Bonsai-1.7B/8B-shaped files, next to llama.cpp's figures on this machine.

One command from a fresh clone:

    python benchmarks/bench_generator.py                       # 1.7b and 8b, 1 and 2 threads
    python benchmarks/bench_generator.py --models 1.7b --threads 2 --quick
    python benchmarks/bench_generator.py --models 1.7b --threads 2 --quick --tg 64 --weight-type Q1_0,Q2_0 \
        --llama-bench PATH/TO/llama-bench         # Bonsai and Ternary-Bonsai beside llama.cpp, one table
    python benchmarks/bench_generator.py --models 1.7b --threads 2 --quick --kernel avx2 --codegen-cpu haswell \
        --llama-bench PATH/TO/avx2-only/llama-bench   # an AVX2 CPU's code on this one (a proxy: same caches, memory)

The first run writes random-weight Q1_0 (and, with --weight-type Q2_0, Ternary-Bonsai Q2_0) files of the real
shapes into --cache-dir (random weights compute
exactly as fast as trained ones; the real tokenizer comes from the test fixture). Every measurement runs in
a FRESH subprocess (`--worker`), so load times are real cold/warm starts and peak RSS (ru_maxrss) is the
engine's alone. Reported per (model, threads):
  load    Qwen3Model.load wall time, plus `ready` = load + first tiny prefill/decode (numba compile, if any),
          with an EMPTY numba cache (first run ever) and with a WARM one
  pp512   prefill of 512 tokens from an empty cache, tokens/s   (llama-bench pp512)
  tg64    64 decode steps from an empty cache, tokens/s          (llama-bench tg)
  ttft    time to first token of a 1,500-token prompt, and of a chat's second turn that reuses the cache
  rss     peak RSS vs the target: file size + KV cache + 300 MB
  roof    decode tokens/s / (memory read bandwidth / weight bytes read per token)
With --llama-bench PATH (a llama-bench binary of a llama.cpp build with Q1_0, built by the user), the same
files are run through llama.cpp's pp512, tg and tg at depth 1,500 (`-d 1500`) in the same run, right after
ragbit's worker for each (model, type, threads), one llama-bench process per test (its CPU seconds and peak RSS
are read with os.wait4), and the summary gives both and the ratios, per wall second and per CPU second.
For Q2_0 llama.cpp runs smaller tests (LLAMA_Q2_0_SIZES: its x86 Q2_0 kernel is scalar). Without it, the summary quotes the issue's
llama.cpp figures (measured on an AVX-512 machine of ~25-29 GB/s, not necessarily this one).
The machine is shared: each timing is given as wall time AND process CPU time (all threads); `cpu/w`
is CPU seconds per wall second (near the thread count = the threads had their cores). The bandwidth is
measured in the worker right before decode: the same numba threads stream the weight arrays decode reads
(best of 7 passes, `measure_bandwidth`), so decode's share of it compares like with like on a shared machine.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
TOKENIZER = ROOT / "tests" / "fixtures" / "reference" / "tiny-tied-q1_0.gguf"
PRESET = {"1.7b": "bonsai-1.7b", "4b": "bonsai-4b", "8b": "bonsai-8b"}
# llama.cpp figures quoted by issue #5 (llama-bench, 2 threads, an AVX-512 machine; tg measured with 32 tokens)
LLAMA_CPP = {"1.7b": {"pp512": 36.6, "tg": 21.4}, "8b": {"pp512": 8.5, "tg": 6.9}}
N_CTX = 2048


# ---------------------------------------------------------------------------------------------------------------
# worker side: runs in a fresh process, prints one JSON line
# ---------------------------------------------------------------------------------------------------------------


class Clock:
    """Wall and process CPU time (all threads) of a block."""

    def __enter__(self):
        self.wall, self.cpu = time.perf_counter(), time.process_time()
        return self

    def __exit__(self, *exc):
        self.wall, self.cpu = time.perf_counter() - self.wall, time.process_time() - self.cpu

    def as_dict(self) -> dict:
        return {"wall": self.wall, "cpu": self.cpu}


def _prompt(n: int, n_vocab: int, seed: int) -> list[int]:
    import numpy as np
    return np.random.default_rng(seed).integers(0, min(n_vocab, 150000), n).tolist()


def _bytes_per_token(model) -> int:
    """Weight bytes one decode step reads: every layer matrix + the LM head, in their in-memory layout."""
    def nbytes(m):
        return sum(a.nbytes for a in (getattr(m, "bits", None), getattr(m, "scales", None)) if a is not None) or m.nbytes
    mats = [getattr(lw, f) for lw in model.layers for f in ("wqkv", "wo", "w_gate_up", "w_down")]
    return sum(nbytes(m) for m in mats) + nbytes(model.lm_head)


_READ_KERNEL: list = []


def _read_kernel():
    """A numba kernel that streams a list of uint64 arrays in ONE parallel region: thread c reads chunk c of
    every array (like a matvec, which splits each matrix over the threads), as 8 sequential streams of 8
    independent integer sums. Measured on the shared Zen4: one float (or integer) sum per thread read 8 GB/s
    per CPU second, the 8 x 8 sums 25; the old probe (one float sum over 512 MiB) read less than decode
    itself. One region, because waking the threads once per array (226 arrays for Bonsai-1.7B) cost more
    than some arrays take to read."""
    if not _READ_KERNEL:
        import numpy as np
        from numba import njit, prange

        @njit(parallel=True, cache=False)
        def read_all(arrays, n_chunks):
            part = np.zeros(n_chunks, np.uint64)
            for c in prange(n_chunks):
                acc = np.zeros((8, 8), np.uint64)   # 8 streams x 8 lanes: independent adds, several misses in flight
                for a in arrays:
                    step = -(-a.size // n_chunks)
                    lo, hi = c * step, min((c + 1) * step, a.size)
                    sub = max(hi - lo, 0) // 64 * 8
                    for i in range(0, sub, 8):
                        for k in range(8):
                            for j in range(8):
                                acc[k, j] += a[lo + k * sub + i + j]
                    for i in range(lo + 8 * sub, hi):
                        acc[0, 0] += a[i]
                part[c] = acc.sum()
            return part.sum()

        _READ_KERNEL.append(read_all)
    return _READ_KERNEL[0]


def measure_bandwidth(arrays, repeats: int = 7) -> dict:
    """Best-of-`repeats` read bandwidth (GB/s) over `arrays` (each read whole) with numba's threads, by wall
    time and per CPU second of each thread. On a shared machine the best of several short passes is the one
    that had the cores and the memory bus: the ceiling a decode step competes for."""
    import numba
    import numpy as np
    from numba.typed import List
    read_all = _read_kernel()
    views = List([a.reshape(-1).view(np.uint64) for a in arrays if a.nbytes % 8 == 0 and a.flags.c_contiguous])
    n_chunks = numba.get_num_threads()
    read_all(List([views[0][:64]]), n_chunks)            # compile outside the timing
    total = sum(v.nbytes for v in views)
    best = best_cpu = 0.0
    for _ in range(repeats):
        t, c = time.perf_counter(), time.process_time()
        read_all(views, n_chunks)
        best = max(best, total / (time.perf_counter() - t) / 1e9)
        best_cpu = max(best_cpu, total * numba.get_num_threads() / max(time.process_time() - c, 1e-9) / 1e9)
    return {"gbps": best, "gbps_cpu": best_cpu, "bytes": total}


def _weight_arrays(model) -> list:
    """The arrays one decode step reads: every layer matrix's packed bits and scales, and the LM head's."""
    import numpy as np
    mats = [getattr(lw, f) for lw in model.layers for f in ("wqkv", "wo", "w_gate_up", "w_down")] + [model.lm_head]
    out, seen = [], set()
    for m in mats:
        for p in getattr(m, "parts", None) or [m]:
            for name in ("bits_t", "bits", "scales", "qs", "data"):
                a = getattr(p, name, None)
                if isinstance(a, np.ndarray) and a.flags.c_contiguous and a.__array_interface__["data"][0] not in seen:
                    seen.add(a.__array_interface__["data"][0])
                    out.append(a)
    return out


def worker_load(spec: dict) -> dict:
    """Cold/warm start: load, then the first tiny prefill + decode (where numba compiles if it must)."""
    from generator.model import Qwen3Model
    with Clock() as load:
        model = Qwen3Model.load(spec["path"], n_ctx=N_CTX, threads=spec["threads"], q1_decode=spec["decode"],
                                kv_cache=spec["kv"])
    with Clock() as first:
        model.prefill([1, 2, 3, 4, 5])
        model.decode(6)
    return {"load": load.as_dict(), "ready": {"wall": load.wall + first.wall, "cpu": load.cpu + first.cpu}}


def _rss_mb() -> int:
    """Resident set size now, in MB of 10^6 bytes like the peak (Linux /proc; 0 elsewhere). Logged after each
    stage, it shows where the peak comes from (load, first prefill, long prompt, chat)."""
    try:
        with open("/proc/self/status") as f:
            return next(int(line.split()[1]) * 1024 // 10**6 for line in f if line.startswith("VmRSS"))
    except (OSError, StopIteration):
        return 0


def _greedy_decode(model, token: int, n: int) -> dict:
    """Time n greedy decode steps from `token` on the model's current cache. The first step is timed apart
    ("first"): at a new cache depth it may pay a one-time compile or cache load (attention's parallel
    kernel); the steady rate is over the n steps after it."""
    with Clock() as first:
        token = int(model.decode(token).argmax())
    with Clock() as c:
        for _ in range(n):
            token = int(model.decode(token).argmax())
    return {**c.as_dict(), "n": n, "first": first.as_dict()}


def worker_speed(spec: dict) -> dict:
    from generator.generate import Generator
    gen = Generator.load(spec["path"], n_ctx=N_CTX, threads=spec["threads"], q1_decode=spec["decode"],
                         kv_cache=spec["kv"])
    model, out = gen.model, {"rss_stages": [("load", _rss_mb())]}
    model.prefill([1, 2, 3, 4, 5] * 4)  # compile / warm every path (matvec and both matmul tile sizes)
    model.decode(6)
    model.prefill(list(range(100, 140)))
    model.reset()
    out["bytes_per_token"] = _bytes_per_token(model)
    out["kernels"] = model.kernel_paths
    out["file_bytes"], out["kv_bytes"] = os.path.getsize(spec["path"]), model.kv_cache_bytes

    best = None
    for r in range(spec["repeats"]):
        model.reset()
        with Clock() as c:
            model.prefill(_prompt(512, model.config.n_vocab, r))
        best = c.as_dict() if best is None or c.wall < best["wall"] else best
    out["pp512"] = best
    out["rss_stages"].append(("pp512", _rss_mb()))
    print(f"  [worker] pp512 {best}", file=sys.stderr, flush=True)

    model.reset()
    first = int(model.prefill([1]).argmax())
    # the ceiling, measured in this process right before decode: the same threads stream the weights decode reads
    out["bandwidth"] = measure_bandwidth(_weight_arrays(model))
    print(f"  [worker] bandwidth {out['bandwidth']}", file=sys.stderr, flush=True)
    out["tg"] = _greedy_decode(model, first, spec["tg"])
    print(f"  [worker] tg {out['tg']}", file=sys.stderr, flush=True)
    out["rss_stages"].append(("tg", _rss_mb()))

    model.reset()
    with Clock() as c:
        int(model.prefill(_prompt(1500, model.config.n_vocab, 99)).argmax())
    out["ttft1500"] = c.as_dict()
    print(f"  [worker] ttft1500 {out['ttft1500']}", file=sys.stderr, flush=True)
    # decoding after that prompt: what a RAG answer runs at (attention reads 1,500 cached positions per token)
    out["tg_at1500"] = _greedy_decode(model, 100, spec["tg"])
    print(f"  [worker] tg after 1500 {out['tg_at1500']}", file=sys.stderr, flush=True)
    out["rss_stages"].append(("ttft1500+tg", _rss_mb()))

    # chat: a long first turn, then a second turn that extends it (prefix reuse)
    model.reset()
    words = " ".join(f"def f{i}(x): return x + {i}" for i in range(110))
    msgs = [{"role": "system", "content": "You answer questions about code."},
            {"role": "user", "content": f"Context:\n{words}\n\nQuestion: what does f3 return?"}]
    r1 = gen.generate(msgs, max_tokens=8)
    msgs += [{"role": "assistant", "content": r1.text}, {"role": "user", "content": "And f7?"}]
    r2 = gen.generate(msgs, max_tokens=2)
    out["chat"] = {"turn1_tokens": len(r1.prompt_token_ids), "turn1_ttft": r1.timings.ttft_s,
                   "turn2_tokens": len(r2.prompt_token_ids), "turn2_cached": r2.cached_prompt_tokens,
                   "turn2_ttft": r2.timings.ttft_s}
    out["rss_stages"].append(("chat", _rss_mb()))
    return out


def worker_main(spec: dict) -> None:
    result = {"load": worker_load, "speed": worker_speed}[spec["kind"]](spec)
    result["maxrss"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    print(json.dumps(result))


# ---------------------------------------------------------------------------------------------------------------
# parent side: model files, subprocesses, table
# ---------------------------------------------------------------------------------------------------------------


def run_worker(spec: dict, threads: int, numba_cache: str, kernel: str = "auto", codegen_cpu: str = "") -> dict:
    env = dict(os.environ, NUMBA_NUM_THREADS=str(threads), NUMBA_CACHE_DIR=numba_cache,
               PYTHONPATH=str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", ""))
    if kernel != "auto":
        env["RAGBIT_KERNEL"] = kernel
    if codegen_cpu:      # all numba code for that CPU: its name alone would keep the host's features (AVX-512 etc.)
        env["NUMBA_CPU_NAME"], env["NUMBA_CPU_FEATURES"] = codegen_cpu, ""
    proc = subprocess.run([sys.executable, __file__, "--worker", json.dumps(spec)], env=env,
                          stdout=subprocess.PIPE, text=True)
    if proc.returncode != 0:
        sys.exit(f"worker {spec['kind']} failed (traceback above)")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def ensure_model(name: str, cache_dir: Path, weight_type: str = "Q1_0") -> Path:
    from generator.synthetic import write_synthetic_gguf
    suffix = "" if weight_type == "Q1_0" else f"-{weight_type.lower()}"
    path = cache_dir / f"{PRESET[name]}{suffix}-synthetic.gguf"
    if not path.exists():
        cache_dir.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(".tmp")
        t = time.perf_counter()
        write_synthetic_gguf(tmp, PRESET[name], TOKENIZER, seed=0, weight_type=weight_type)
        os.replace(tmp, path)
        print(f"wrote {path} ({path.stat().st_size / 1e6:.0f} MB) in {time.perf_counter() - t:.0f} s", flush=True)
    return path


# llama.cpp of llama-cpp-python 0.3.36 has no x86 SIMD kernel for Q2_0 (ggml_vec_dot_q2_0_q8_0_generic, scalar):
# on a Zen4 at 2 threads it ran pp16 at 0.59 tok/s and tg4 at 0.21 tok/s, so its pp512 would take ~15 minutes and
# a 1,500-token depth ~40. For Q2_0 files it runs these smaller tests instead (and no depth), labelled as such.
LLAMA_Q2_0_SIZES = {"pp": 16, "tg": 4, "depth": 0}


def _run_measured(cmd: list[str]) -> tuple[str, dict]:
    """Run cmd; its stdout and what the kernel counted for that one process: CPU seconds (user+sys, all threads),
    wall seconds, peak RSS bytes (os.wait4, so other children do not mix in)."""
    with tempfile.TemporaryFile("w+") as out, tempfile.TemporaryFile("w+") as err:
        t = time.perf_counter()
        proc = subprocess.Popen(cmd, stdout=out, stderr=err, text=True)
        _, status, ru = os.wait4(proc.pid, 0)
        proc.returncode = os.waitstatus_to_exitcode(status)
        wall = time.perf_counter() - t
        out.seek(0)
        err.seek(0)
        if proc.returncode != 0:
            raise subprocess.CalledProcessError(proc.returncode, cmd, out.read(), err.read()[-2000:])
        return out.read(), {"cpu": ru.ru_utime + ru.ru_stime, "wall": wall, "maxrss": ru.ru_maxrss * 1024}


LLAMA_KV = {"q8": "q8_0", "q4": "q4_0"}   # ragbit's quantized cache types -> llama.cpp's nearest (-ctk / -ctv)


def run_llama_bench(binary: str, path: Path, threads: int, tg: int, repeats: int, weight_type: str = "Q1_0",
                    kv_types: tuple = ()) -> dict:
    """llama.cpp's own pp512, tg<tg> and tg<tg> after 1,500 cached tokens (-d 1500), tokens/s, on the same file
    and thread count ({} where it fails); smaller tests for Q2_0 (LLAMA_Q2_0_SIZES). For each quantized cache type
    in kv_types, also its tg at that depth with llama.cpp's nearest cache type (`tg_at1500_q4`: -ctk/-ctv q4_0, flash
    attention on, which llama.cpp needs for a quantized V cache). One llama-bench process per
    test, so each has its CPU seconds per wall second (`cpu_per_wall`: near the thread count = its threads had
    their cores; llama.cpp's threads spin while they wait, so this is CPU it held, not work) and its peak RSS."""
    pp, depth = (LLAMA_Q2_0_SIZES["pp"], LLAMA_Q2_0_SIZES["depth"]) if weight_type == "Q2_0" else (512, 1500)
    n_tg = min(tg, LLAMA_Q2_0_SIZES["tg"]) if weight_type == "Q2_0" else tg
    base = [binary, "-m", str(path), "-t", str(threads), "-r", str(repeats), "-o", "json"]
    tests = {"pp512": ["-p", str(pp), "-n", "0"], "tg": ["-p", "0", "-n", str(n_tg)]}
    if depth:
        tests["tg_at1500"] = ["-p", "0", "-n", str(n_tg), "-d", str(depth)]
        for kv in kv_types:
            if kv in LLAMA_KV:
                tests[f"tg_at1500_{kv}"] = tests["tg_at1500"] + ["-ctk", LLAMA_KV[kv], "-ctv", LLAMA_KV[kv], "-fa", "1"]
    res = {"sizes": {"pp": pp, "tg": n_tg, "depth": depth}}
    for key, key_args in tests.items():
        try:
            text, usage = _run_measured(base + key_args)
            res[key] = float(json.loads(text)[0]["avg_ts"])
        except (OSError, subprocess.CalledProcessError, json.JSONDecodeError, LookupError) as e:
            print(f"  llama-bench {' '.join(key_args)} failed: {e}", file=sys.stderr)
            continue
        res[key + "_cpu_per_wall"] = usage["cpu"] / usage["wall"]
        res["maxrss"] = max(res.get("maxrss", 0), usage["maxrss"])
    print(f"  [llama-bench] {res}", file=sys.stderr, flush=True)
    return res


def fmt(t: dict) -> str:
    return f"{t['wall']:6.2f} s wall {t['cpu']:6.2f} s cpu"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--models", default="1.7b,8b", help="comma list of 1.7b, 4b, 8b")
    ap.add_argument("--threads", default="1,2", help="comma list of thread counts")
    ap.add_argument("--quick", action="store_true", help="one repeat, tg16, no empty-numba-cache start")
    ap.add_argument("--tg", type=int, help="decode steps per tg measurement (default 64, 16 with --quick)")
    ap.add_argument("--cache-dir", default="/tmp/ragbit-bench-models")
    ap.add_argument("--weight-type", default="Q1_0",
                    help="comma list of matrix types of the synthetic files: Q1_0 (Bonsai), Q2_0 (Ternary-Bonsai)")
    ap.add_argument("--decode-kernel", default="int11", choices=["int11", "float"],
                    help="Q1_0 decode kernel (ragbit's default: int11)")
    ap.add_argument("--kv-cache", default="f16",
                    help="comma list of KV cache element types: f16 (ragbit's default), f32, q8, q4")
    ap.add_argument("--llama-bench", metavar="PATH",
                    help="llama-bench binary: also run llama.cpp on the same files, same run")
    ap.add_argument("--kernel", default="auto",
                    help="comma list of kernel paths to run (RAGBIT_KERNEL per worker), 'auto' = the dispatcher's "
                         "choice, 'all' = every path this CPU supports")
    ap.add_argument("--codegen-cpu", metavar="LLVM_CPU", default="",
                    help="compile every numba function for this LLVM CPU (e.g. haswell: AVX2 only; alderlake: "
                         "AVX-VNNI, no AVX-512), to time an older CPU's code on this one; pair it with --kernel")
    ap.add_argument("--worker", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.worker:
        return worker_main(json.loads(args.worker))

    sys.path.insert(0, str(ROOT))
    cache_dir = Path(args.cache_dir)
    warm_numba = str(cache_dir / "numba-cache")
    threads = [int(t) for t in args.threads.split(",")]
    models = args.models.split(",")
    for m in models:
        if m not in PRESET:
            sys.exit(f"error: unknown model {m!r} (choose from {', '.join(PRESET)})")
    from generator.cache_types import KV_CACHE_KINDS
    kv_types = args.kv_cache.split(",")
    if not set(kv_types) <= set(KV_CACHE_KINDS):
        sys.exit(f"error: unknown KV cache type in {args.kv_cache!r} (choose from {', '.join(KV_CACHE_KINDS)})")
    weight_types = args.weight_type.split(",")
    for wt in weight_types:
        if wt not in ("Q1_0", "Q2_0"):
            sys.exit(f"error: unknown weight type {wt!r} (choose from Q1_0, Q2_0)")
    paths = {(wt, m): ensure_model(m, cache_dir, wt) for wt in weight_types for m in models}
    from generator.kernels import dispatch
    kernels = _distinct_paths(dispatch) if args.kernel == "all" else args.kernel.split(",")
    print(f"CPU {_cpu_name()}; kernel paths it runs: {', '.join(dispatch.host_paths())}; timing: {', '.join(kernels)}"
          + (f"; all numba code compiled for LLVM's {args.codegen_cpu} (this CPU's caches and memory)"
             if args.codegen_cpu else ""))
    repeats, tg = (1, 16) if args.quick else (2, 64)
    tg = args.tg or tg
    rows = []
    for m in models:
        for wt in weight_types:
            for th in threads:
                for kernel, kv in [(k, kv) for k in kernels for kv in kv_types]:
                    res = {"model": m, "type": wt, "threads": th, "kernel": kernel, "kv": kv}
                    spec = {"path": str(paths[wt, m]), "threads": th, "decode": args.decode_kernel, "kv": kv}
                    if not args.quick:
                        with tempfile.TemporaryDirectory() as empty:
                            res["cold"] = run_worker({"kind": "load", **spec}, th, empty, kernel, args.codegen_cpu)
                    res["warm"] = run_worker({"kind": "load", **spec}, th, warm_numba, kernel, args.codegen_cpu)
                    res["speed"] = run_worker({"kind": "speed", "repeats": repeats, "tg": tg, **spec}, th, warm_numba,
                                              kernel, args.codegen_cpu)
                    res["bw"], res["bw_cpu"] = (res["speed"]["bandwidth"][k] for k in ("gbps", "gbps_cpu"))
                    report(res)
                    rows.append(res)
                if args.llama_bench:
                    llama = run_llama_bench(args.llama_bench, paths[wt, m], th, tg, repeats, wt, tuple(kv_types))
                    for r in rows[-len(kernels) * len(kv_types):]:
                        r["llama"] = llama
    summary(rows)


def _distinct_paths(dispatch) -> list[str]:
    """The host's paths that make a difference, widest first: caps that pick the same path for every operation
    (avx512vnni and avx512bw while only avx512bw is implemented) are timed once, under the narrowest name."""
    seen, out = set(), []
    for p in reversed(dispatch.host_paths()):
        choice = tuple(dispatch.choose(op, cap=p) for op in dispatch.IMPLEMENTED)
        if choice not in seen:
            seen.add(choice)
            out.insert(0, p)
    return out


def _cpu_name() -> str:
    """The CPU model name (Linux /proc/cpuinfo), for quoting beside every figure."""
    try:
        with open("/proc/cpuinfo") as f:
            return next(line.split(":", 1)[1].strip() for line in f if line.startswith("model name"))
    except (OSError, StopIteration):
        import platform
        return platform.processor() or "unknown CPU"


def report(r: dict) -> None:
    s = r["speed"]
    pp, tgd, tt, chat = s["pp512"], s["tg"], s["ttft1500"], s["chat"]
    tg_rate = tgd["n"] / tgd["wall"]
    ceiling = r["bw"] * 1e9 / s["bytes_per_token"]
    target = s["file_bytes"] + s["kv_bytes"] + 300e6
    print(f"\n=== bonsai-{r['model']} {r.get('type', 'Q1_0')}  threads {r['threads']}  kernel {r['kernel']}  kv {r.get('kv', 'f16')}  "
          f"(memory read bandwidth "
          f"{r['bw']:.1f} GB/s) ===")
    print(f"paths  {s['kernels']}")
    if "cold" in r:
        print(f"load   empty numba cache: load {fmt(r['cold']['load'])}; ready {fmt(r['cold']['ready'])}")
    print(f"load   warm numba cache:  load {fmt(r['warm']['load'])}; ready {fmt(r['warm']['ready'])}")
    print(f"pp512  {512 / pp['wall']:7.1f} tok/s   ({fmt(pp)}, cpu/w {pp['cpu'] / pp['wall']:.2f})")
    print(f"tg{tgd['n']:<3d}  {tg_rate:7.2f} tok/s   ({fmt(tgd)}, cpu/w {tgd['cpu'] / tgd['wall']:.2f}); "
          f"ceiling {ceiling:.1f} tok/s = {r['bw']:.1f} GB/s / {s['bytes_per_token'] / 1e6:.0f} MB per token "
          f"-> {tg_rate / ceiling:.0%} of it")
    tg_cpu_rate = tgd["n"] / (tgd["cpu"] / r["threads"])
    ceiling_cpu = r["bw_cpu"] * 1e9 / s["bytes_per_token"]
    print(f"       per CPU second of each thread (contention removed): tg {tg_cpu_rate:.2f} tok/s, pp512 "
          f"{512 / (pp['cpu'] / r['threads']):.1f} tok/s; bandwidth {r['bw_cpu']:.1f} GB/s -> ceiling "
          f"{ceiling_cpu:.1f} tok/s, {tg_cpu_rate / ceiling_cpu:.0%} of it")
    at = s["tg_at1500"]
    print(f"tg{at['n']:<3d}  {at['n'] / at['wall']:7.2f} tok/s after the 1,500-token prompt ({fmt(at)}) = "
          f"{at['n'] / at['wall'] / tg_rate:.0%} of the empty-cache rate; its first step {at['first']['wall']:.3f} s "
          f"(empty cache: {tgd['first']['wall']:.3f} s)")
    print(f"ttft   1500-token prompt {fmt(tt)}; chat turn 1 ({chat['turn1_tokens']} tok) {chat['turn1_ttft']:.2f} s, "
          f"turn 2 ({chat['turn2_tokens']} tok, {chat['turn2_cached']} cached) {chat['turn2_ttft']:.2f} s")
    print(f"rss    peak {s['maxrss'] / 1e6:.0f} MB; target file {s['file_bytes'] / 1e6:.0f} + KV(n_ctx {N_CTX}) "
          f"{s['kv_bytes'] / 1e6:.0f} + 300 = {target / 1e6:.0f} MB -> {'OK' if s['maxrss'] <= target else 'OVER'}; "
          "resident after " + ", ".join(f"{k} {v}" for k, v in s.get("rss_stages", [])) + " MB", flush=True)


def _per_thread_cpu(rate: float, cpu_per_wall: float, threads: int) -> float:
    """A rate (tok/s of wall time) per CPU second of each thread: what it would be had every thread held its core."""
    return rate * threads / cpu_per_wall if cpu_per_wall > 0 else float("nan")


def summary(rows: list[dict]) -> None:
    measured = any("llama" in r for r in rows)
    source = "llama.cpp measured in this run" if measured else "llama.cpp: the issue's figures, another machine"
    nan = float("nan")
    print(f"\n({source}; 'cpu' columns: tok per CPU second of each thread, i.e. with contention taken out; "
          "ratio = ragbit / llama.cpp; roof: tg / (bandwidth / bytes per token), by wall and by CPU seconds, "
          "llama.cpp's by CPU seconds; tg@1500 share: of the empty-cache tg, by wall and by CPU seconds per token; "
          "llama.cpp's on q8 / q4 rows: with its q8_0 / q4_0 cache)")
    print("model type thr kernel   kv  | pp512 tok/s  cpu | llama.cpp pp  cpu | ratio  cpu | tg tok/s  cpu | llama.cpp "
          "cpu | ratio  cpu | roof wall cpu llama | tg@1500 share cpu | llama.cpp share | ttft1500 wall  cpu | rss MB ragbit llama")
    for r in rows:
        s, th = r["speed"], r["threads"]
        ref = r.get("llama") if measured else (LLAMA_CPP.get(r["model"], {}) if th == 2 else {})
        ref = ref or {}
        pp_s, tg_s, at_s = s["pp512"], s["tg"], s["tg_at1500"]
        pp, tgd, at = 512 / pp_s["wall"], tg_s["n"] / tg_s["wall"], at_s["n"] / at_s["wall"]
        pp_cpu, tg_cpu = _per_thread_cpu(pp, pp_s["cpu"] / pp_s["wall"], th), _per_thread_cpu(tgd, tg_s["cpu"] / tg_s["wall"], th)
        ref_pp, ref_tg = ref.get("pp512", nan), ref.get("tg", nan)
        ref_at = ref.get(f"tg_at1500_{r.get('kv')}", ref.get("tg_at1500", nan))   # its own cache of that type
        ref_pp_cpu = _per_thread_cpu(ref_pp, ref.get("pp512_cpu_per_wall", th), th)
        ref_tg_cpu = _per_thread_cpu(ref_tg, ref.get("tg_cpu_per_wall", th), th)
        ceiling = r["bw"] * 1e9 / s["bytes_per_token"]
        ceiling_cpu = r["bw_cpu"] * 1e9 / s["bytes_per_token"]   # the same, per CPU second of each thread
        sizes = ref.get("sizes", {"pp": 512, "tg": tg_s["n"]})
        pp_label = f"pp{sizes['pp']}"
        print(f"{r['model']:5s} {r.get('type', 'Q1_0')} {th:3d} {r['kernel']:9s} {r.get('kv', 'f16'):3s} | {pp:11.1f} {pp_cpu:4.0f} | "
              f"{ref_pp:6.2f} {pp_label:>5s} {ref_pp_cpu:4.1f} | {pp / ref_pp:5.1f} {pp_cpu / ref_pp_cpu:4.1f} | "
              f"{tgd:8.2f} {tg_cpu:4.1f} | {ref_tg:6.2f} {ref_tg_cpu:5.2f} | {tgd / ref_tg:5.2f} {tg_cpu / ref_tg_cpu:4.2f} | "
              f"{tgd / ceiling:4.0%} {tg_cpu / ceiling_cpu:4.0%} {ref_tg_cpu / ceiling_cpu:5.0%} | {at:7.2f} {at / tgd:5.0%} "
              f"{(tg_s['cpu'] / tg_s['n']) / (at_s['cpu'] / at_s['n']):4.0%} | {ref_at:6.2f} {ref_at / ref_tg:4.0%} | "
              f"{s['ttft1500']['wall']:13.1f} {s['ttft1500']['cpu']:4.0f} | {s['maxrss'] / 1e6:10.0f} "
              f"{ref.get('maxrss', nan) / 1e6:5.0f}")
    if any(r.get("llama", {}).get("sizes", {}).get("pp", 512) != 512 for r in rows):
        q = LLAMA_Q2_0_SIZES
        print(f"Q2_0 rows: llama.cpp ran pp{q['pp']} (not pp512), tg{q['tg']} and no 1,500-token depth: its Q2_0 kernel "
              "is the scalar generic one on x86 (see LLAMA_Q2_0_SIZES); the pp ratio compares per-token rates.")


if __name__ == "__main__":
    main()
