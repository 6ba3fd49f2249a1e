"""Decode attention alone: milliseconds per generated token (every layer's attention over its KV cache) by context
depth, on one thread and on the threads, next to the time to read those cache bytes.

    flock /tmp/ragbit-bench.lock python benchmarks/bench_attention.py [--model 1.7b|8b] [--kv-cache f16,q8,q4]
        [--positions 16,64,150,300,500,900,1500] [--reps 9]

WHY: decode attention reads the whole filled cache per token, so after a RAG prompt it is a third to half of a
decode step on Bonsai-1.7B. Two choices rest on these figures: where `layers.PARALLEL_MIN_WORK` sends it over the
threads (the serial and parallel columns cross there), and whether the kernels keep up with memory (`cold`: a
separate cache per layer, as in the model, against `read`: the same bytes read by bench_generator's bandwidth
probe; `hot`: one layer's cache for every layer, in L2/L3, is the kernels' own speed). Random keys and values;
serial and parallel alternate per repeat and the median is printed. Compare columns of one run only.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

from bench_generator import measure_bandwidth  # noqa: E402
from generator import kv_cache, layers  # noqa: E402
from generator.kernels import dispatch  # noqa: E402
from generator.kernels.attention import TILE, padded_ctx  # noqa: E402

SHAPES = {"1.7b": dict(n_layer=28, n_head=16, n_kv=8, hd=128), "8b": dict(n_layer=36, n_head=32, n_kv=8, hd=128)}


def cache(kind: str, n_kv: int, hd: int, n_ctx: int, rng) -> tuple:
    """One layer's (keys, values, key scales, value scales) in the model's layout (kv_cache.KVCache)."""
    if kind == "f16":
        k = rng.standard_normal((n_kv, n_ctx // TILE, hd, TILE)).astype(np.float16).view(np.uint16)
        v = rng.standard_normal((n_kv, n_ctx, hd)).astype(np.float16).view(np.uint16)
        return k, v, np.ones((n_kv, 1, n_ctx), np.float32), np.ones((n_kv, n_ctx, 1), np.float32)
    nb = hd // kv_cache.Q8_BLOCK
    if kind == "q4":     # two 4-bit values per byte (generator/kernels/half.py, Q4_PACKING)
        k = rng.integers(0, 256, (n_kv, n_ctx // TILE, hd, TILE // 2), dtype=np.uint8)
        v = rng.integers(0, 256, (n_kv, n_ctx, hd // 2), dtype=np.uint8)
    else:
        k = rng.integers(-127, 128, (n_kv, n_ctx // TILE, hd, TILE), dtype=np.int8)
        v = rng.integers(-127, 128, (n_kv, n_ctx, hd), dtype=np.int8)
    return k, v, np.full((n_kv, nb, n_ctx), 0.01, np.float32), np.full((n_kv, n_ctx, nb), 0.01, np.float32)


def per_token(caches, pos0: int, n_head: int, hd: int, min_work: int) -> float:
    """Seconds of one decode step's attention over `caches` (one per layer) at position pos0."""
    layers.PARALLEL_MIN_WORK = min_work
    n_ctx = caches[0][1].shape[1]
    q = np.ones((1, n_head * hd), np.float32)
    scores, out = np.zeros((n_head, n_ctx), np.float32), np.zeros((1, n_head * hd), np.float32)
    t = time.perf_counter()
    for k, v, ks, vs in caches:
        layers.attention(q, k, v, ks, vs, pos0, n_head, np.float32(hd ** -0.5), scores, out)
    return time.perf_counter() - t


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default="1.7b", choices=sorted(SHAPES))
    ap.add_argument("--kv-cache", default="f16,q8,q4")
    ap.add_argument("--positions", default="16,64,150,300,500,900,1500")
    ap.add_argument("--reps", type=int, default=9)
    args = ap.parse_args()
    shape = SHAPES[args.model]
    positions = [int(p) for p in args.positions.split(",")]
    n_ctx = padded_ctx(max(positions) + 1)
    rng = np.random.default_rng(0)
    default = layers.PARALLEL_MIN_WORK
    print(f"decode attention path {layers.decode_path(shape['hd'])} ({dispatch.report()}); Bonsai-{args.model} shapes "
          f"{shape}; PARALLEL_MIN_WORK = {default}")
    for kind in args.kv_cache.split(","):
        cold = [cache(kind, shape["n_kv"], shape["hd"], n_ctx, rng) for _ in range(shape["n_layer"])]
        hot = cold[:1] * shape["n_layer"]
        print(f"\n{kind}: ms per token | {'pos':>5} {'serial':>8} {'parallel':>8} {'ratio':>6} {'hot':>7} {'read':>7}"
              f"  (default: parallel from {default // (shape['n_head'] * shape['hd'] * 2)} positions)")
        for pos0 in positions:
            n = pos0 + 1
            views = [a for k, v, ks, vs in cold for a in (np.ascontiguousarray(k[:, :-(-n // TILE)]),
                                                            np.ascontiguousarray(v[:, :n]))]
            read_s = sum(a.nbytes for a in views) / measure_bandwidth(views, repeats=3)["gbps"] / 1e9
            serial, parallel, in_cache = [], [], []
            per_token(cold, pos0, shape["n_head"], shape["hd"], 0)          # compiled and touched once
            for _ in range(args.reps):
                serial.append(per_token(cold, pos0, shape["n_head"], shape["hd"], 1 << 62))
                parallel.append(per_token(cold, pos0, shape["n_head"], shape["hd"], 0))
                in_cache.append(per_token(hot, pos0, shape["n_head"], shape["hd"], default))
            s, p = np.median(serial) * 1e3, np.median(parallel) * 1e3
            print(f"{'':>20} {pos0:>5} {s:8.3f} {p:8.3f} {p / s:6.2f} {np.median(in_cache) * 1e3:7.3f} "
                  f"{read_s * 1e3:7.3f}", flush=True)
    layers.PARALLEL_MIN_WORK = default


if __name__ == "__main__":
    main()
