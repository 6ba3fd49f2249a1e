"""Where a long prefill's time goes, per operation: wall and CPU seconds of each weight product, the AMX kernel and
its activation conversion, attention, norms / RoPE / SwiGLU and the KV store.

    flock /tmp/ragbit-bench.lock python benchmarks/profile_prefill.py [--tokens 1500] [--chunk 512] [MODEL.gguf]

WHY: TTFT of a RAG prompt (issue #18) is one prefill; bench_generator.py gives its total only. Each operation is
wrapped in a timer (Python level, so an operation is the whole call: for the products both threads' work, with
`cpu/wall` near the thread count when the threads kept their cores, near 1 when one thread waited). Rows indented
by two spaces are parts of a row above (the AMX kernel and the activation conversion inside the products).
The model defaults to bench_generator's Bonsai-1.7B-shaped file; the run uses int11 decode and an F16 cache, as the
benchmark does, on the kernel path RAGBIT_KERNEL picks (default: the widest).
"""

from __future__ import annotations

import argparse
import sys
import time
from collections import defaultdict
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from generator import layers  # noqa: E402
from generator import model as model_module  # noqa: E402
from generator.kernels import matrix, q1_0_amx  # noqa: E402

STATS: dict[str, list[float]] = defaultdict(lambda: [0.0, 0.0, 0])   # name -> [wall, cpu, calls]


def timed(name, fn):
    def wrapper(*args, **kwargs):
        t, c = time.perf_counter(), time.process_time()
        result = fn(*args, **kwargs)
        s = STATS[name]
        s[0] += time.perf_counter() - t
        s[1] += time.process_time() - c
        s[2] += 1
        return result
    return wrapper


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("model", nargs="?", default="/tmp/ragbit-bench-models/bonsai-1.7b-synthetic.gguf")
    ap.add_argument("--tokens", type=int, default=1500)
    ap.add_argument("--chunk", type=int, help="Qwen3Model.PREFILL_CHUNK to try (default: the model's own)")
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args()
    Qwen3Model = model_module.Qwen3Model
    if args.chunk:
        Qwen3Model.PREFILL_CHUNK = args.chunk
    model = Qwen3Model.load(args.model, n_ctx=max(2048, args.tokens + 64), threads=args.threads, q1_decode="int11",
                            kv_cache="f16")
    names = {id(getattr(lw, f)): f for lw in model.layers for f in ("wqkv", "wo", "w_gate_up", "w_down")}
    product = model_module._product
    model_module._product = lambda m, x, out: timed("product " + names.get(id(m), "other"), product)(m, x, out)
    q1_0_amx.to_bf16_tiles = timed("  activations to bf16 tiles", q1_0_amx.to_bf16_tiles)
    for fmt in (matrix.Q1_FORMAT, matrix.Q2_FORMAT):
        fmt.matmul_amx = timed("  AMX kernel", fmt.matmul_amx)
        fmt.matmul_vnni = timed("  VNNI kernel", fmt.matmul_vnni)
        fmt.matmul_avxvnni = timed("  AVX-VNNI kernel", fmt.matmul_avxvnni)
    for name in ("rmsnorm", "rmsnorm_rows", "add_rmsnorm_rows", "split_qkv_norm_rope", "split_qkv_norm_rope_rows",
                 "attention", "swiglu", "swiglu_rows"):
        setattr(layers, name, timed(name, getattr(layers, name)))
    model.cache.append = timed("KV store", model.cache.append)
    rng = np.random.default_rng(1)
    model.prefill(list(rng.integers(0, 1000, 40)))          # compile / warm every kernel
    model.reset()
    STATS.clear()
    ids = list(rng.integers(0, model.config.n_vocab, args.tokens))
    t, c = time.perf_counter(), time.process_time()
    model.prefill(ids)
    wall, cpu = time.perf_counter() - t, time.process_time() - c
    print(f"{Path(args.model).name}: prefill of {args.tokens} tokens in batches of {model.prefill_chunk}, "
          f"{args.threads} threads: {wall:.2f} s wall, {cpu:.2f} CPU-s (cpu/wall {cpu / wall:.2f}); "
          f"paths {model.kernel_paths}")
    for name, (w, c_, n) in sorted(STATS.items(), key=lambda kv: -kv[1][0]):
        print(f"{name:28s} {w:7.3f} s wall ({100 * w / wall:4.1f}%) {c_:7.3f} CPU-s ({100 * c_ / cpu:4.1f}%) "
              f"cpu/wall {c_ / max(w, 1e-9):.2f}  calls {n}")


if __name__ == "__main__":
    main()
