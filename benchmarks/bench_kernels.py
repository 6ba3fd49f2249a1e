"""Kernel speed per matrix shape and whole-model estimates for Bonsai-1.7B / 8B shapes, next to llama.cpp.

Run:  python benchmarks/bench_kernels.py [--model 1.7b|8b|both] [--threads 1,2] [--reps 3] [--pp-tokens 512]
        [--q1-decode float|int11] [--no-pp]

For every matrix shape (random Q1_0 bytes of that shape) it times QuantMatrix.matvec (decode, one token)
and QuantMatrix.matmul (prefill, --pp-tokens tokens) and prints GFLOP/s (2 flops per weight and token)
and effective GB/s of weight bytes (GGUF bytes / time). Each figure is the best of --reps calls, by wall
clock and by CPU time / threads ("cpu" columns: robust to other processes sharing the cores, which
inflate wall times). Model estimates sum one layer's matrices x layers + LM head:
  tg  = 1 / (sum of matvec times)        (tables rebuilt for every matrix: q/k/v sharing is not credited)
  pp  = n_tok / (sum of matmul times)    (+ one LM-head matvec: only the last prompt token needs logits)
Attention, norms and RoPE are not included. The run also measures memory read bandwidth (numpy sum over a
1 GB array, 1 thread, and a numba parallel sum) and reports decode as a fraction of that ceiling.
Timings are never asserted anywhere; the machine is shared, so compare ratios within one run.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numba
import numpy as np
from numba import njit, prange

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from generator.kernels import GGML_Q1_0, dispatch, prepare_matrix, set_threads, tensor_nbytes  # noqa: E402

# (n_in, n_out) per matrix of one layer, layers, LM head (n_in, n_out)
MODELS = {
    "1.7b": dict(
        layer=[("q", 2048, 2048), ("k", 2048, 1024), ("v", 2048, 1024), ("o", 2048, 2048),
               ("gate", 2048, 6144), ("up", 2048, 6144), ("down", 6144, 2048)],
        n_layers=28, lm_head=(2048, 151936), llama_cpp=dict(pp512=36.6, tg=21.4),
    ),
    "8b": dict(
        layer=[("q", 4096, 4096), ("k", 4096, 1024), ("v", 4096, 1024), ("o", 4096, 4096),
               ("gate", 4096, 12288), ("up", 4096, 12288), ("down", 12288, 4096)],
        n_layers=36, lm_head=(4096, 151936), llama_cpp=dict(pp512=8.5, tg=6.9),
    ),
}


def random_q1_0(n_in: int, n_out: int, rng: np.random.Generator) -> np.ndarray:
    """Random GGUF Q1_0 bytes: random signs, fp16 scales ~ 1/sqrt(n_in)."""
    blocks = rng.integers(0, 256, (n_out, n_in // 128, 18), dtype=np.uint8)
    d = (rng.uniform(0.5, 1.5, (n_out, n_in // 128)) / np.sqrt(n_in)).astype(np.float16)
    blocks[:, :, :2] = d.view(np.uint8).reshape(n_out, n_in // 128, 2)
    return blocks.reshape(-1)


def best_time(fn, reps: int, threads: int) -> tuple[float, float]:
    """(best wall seconds, best cpu seconds / threads) over reps calls, after one warm-up call."""
    fn()
    wall = cpu = float("inf")
    for _ in range(reps):
        w0, c0 = time.perf_counter(), time.process_time()
        fn()
        wall = min(wall, time.perf_counter() - w0)
        cpu = min(cpu, (time.process_time() - c0) / threads)
    return wall, cpu


@njit(parallel=True, cache=True)
def _parallel_sum(a):
    n = a.size
    chunks = 64
    parts = np.zeros(chunks)
    for c in prange(chunks):
        s = np.float32(0.0)
        for i in range(c * n // chunks, (c + 1) * n // chunks):
            s += a[i]
        parts[c] = s
    return parts.sum()


def memory_bandwidth(reps: int) -> dict[str, float]:
    a = np.ones(1 << 28, dtype=np.float32)  # 1 GiB
    out = {}
    w, _ = best_time(lambda: a.sum(), reps, 1)
    out["numpy sum, 1 thread"] = a.nbytes / w / 1e9
    set_threads(0)
    w, _ = best_time(lambda: _parallel_sum(a), reps, numba.get_num_threads())
    out[f"numba sum, {numba.get_num_threads()} threads"] = a.nbytes / w / 1e9
    return out


def bench_shape(n_in, n_out, threads, reps, pp_tokens, rng, do_pp=True, q1_decode="float"):
    m = prepare_matrix(GGML_Q1_0, random_q1_0(n_in, n_out, rng), n_in, n_out, q1_decode=q1_decode)
    nbytes = tensor_nbytes(GGML_Q1_0, n_in, n_out)
    xs = [rng.standard_normal(n_in).astype(np.float32) for _ in range(2)]
    out = np.empty(n_out, np.float32)
    flip = [0]

    def decode():  # alternate inputs so every call rebuilds its tables (no credit for q/k/v sharing)
        flip[0] ^= 1
        m.matvec(xs[flip[0]], out)

    res = {"tg": best_time(decode, reps, threads)}
    if do_pp:
        xb = rng.standard_normal((pp_tokens, n_in)).astype(np.float32)
        ob = np.empty((pp_tokens, n_out), np.float32)
        res["pp"] = best_time(lambda: m.matmul(xb, ob), max(1, reps // 2), threads)
    res["nbytes"] = nbytes
    return res


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default="both", choices=["1.7b", "8b", "both"])
    ap.add_argument("--threads", default="1,2")
    ap.add_argument("--reps", type=int, default=4)
    ap.add_argument("--pp-tokens", type=int, default=512)
    ap.add_argument("--q1-decode", default="float", choices=["float", "int11"], help="Q1_0 decode kernel")
    ap.add_argument("--no-pp", action="store_true", help="decode only (skip the prefill timings)")
    args = ap.parse_args()
    rng = np.random.default_rng(0)
    print(f"numba {numba.__version__}, {numba.config.NUMBA_NUM_THREADS} cores available")
    print(f"CPU paths {', '.join(dispatch.host_paths())}; kernels (RAGBIT_KERNEL caps them): {dispatch.report()}")
    bw = memory_bandwidth(3)
    for k, v in bw.items():
        print(f"memory read bandwidth ({k}): {v:.1f} GB/s")
    ceiling_bw = max(bw.values())
    models = ["1.7b", "8b"] if args.model == "both" else [args.model]
    n_tok = args.pp_tokens
    for threads in [int(t) for t in args.threads.split(",")]:
        set_threads(threads)
        for name in models:
            spec = MODELS[name]
            print(f"\n== Bonsai-{name} shapes, {threads} thread(s), Q1_0, decode {args.q1_decode} ==")
            print(f"{'matrix':>8} {'n_in':>6} {'n_out':>7} | {'tg ms':>7} {'GFLOP/s':>8} {'GB/s':>6} {'cpu GB/s':>8} |"
                  f" {'pp ms':>8} {'GFLOP/s':>8} {'cpu GF/s':>8}")
            shapes = {}
            for label, n_in, n_out in spec["layer"]:
                if (n_in, n_out) not in shapes:
                    shapes[(n_in, n_out)] = bench_shape(n_in, n_out, threads, args.reps, n_tok, rng,
                                                         not args.no_pp, args.q1_decode)
            lm = spec["lm_head"]
            shapes[lm] = bench_shape(*lm, threads, args.reps, n_tok, rng, False, args.q1_decode)
            rows = [(lbl, ni, no) for lbl, ni, no in spec["layer"]] + [("lm_head", *lm)]
            tg = {"wall": 0.0, "cpu": 0.0}
            pp = {"wall": 0.0, "cpu": 0.0}
            total_bytes = 0
            for lbl, ni, no in rows:
                r = shapes[(ni, no)]
                mult = 1 if lbl == "lm_head" else spec["n_layers"]
                total_bytes += r["nbytes"] * mult
                flops = 2.0 * ni * no
                tw, tc = r["tg"]
                tg["wall"] += tw * mult
                tg["cpu"] += tc * mult
                line = (f"{lbl:>8} {ni:>6} {no:>7} | {tw * 1e3:7.3f} {flops / tw / 1e9:8.1f} {r['nbytes'] / tw / 1e9:6.1f}"
                        f" {r['nbytes'] / tc / 1e9:8.1f} |")
                if lbl == "lm_head":
                    pp["wall"] += tw
                    pp["cpu"] += tc
                    line += "   (last token only: 1 matvec)"
                else:
                    pw, pc = r.get("pp", (float("nan"), float("nan")))
                    pp["wall"] += pw * mult
                    pp["cpu"] += pc * mult
                    line += f" {pw * 1e3:8.1f} {flops * n_tok / pw / 1e9:8.1f} {flops * n_tok / pc / 1e9:8.1f}"
                print(line)
            ref = spec["llama_cpp"]
            ceiling = ceiling_bw * 1e9 / total_bytes
            for kind in ("wall", "cpu"):
                tg_s, pp_s = 1.0 / tg[kind], n_tok / pp[kind]
                print(f"  estimate ({kind:>4}): tg {tg_s:6.1f} tok/s ({tg_s / ref['tg']:.2f}x llama.cpp {ref['tg']}),"
                      f" pp{n_tok} {pp_s:6.1f} tok/s ({pp_s / ref['pp512']:.2f}x llama.cpp {ref['pp512']}),"
                      f" tg = {tg_s / ceiling:.0%} of the {ceiling:.0f} tok/s bandwidth ceiling"
                      f" ({total_bytes / 1e6:.0f} MB/token at {ceiling_bw:.1f} GB/s)")


if __name__ == "__main__":
    main()
