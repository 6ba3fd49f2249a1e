"""Speed of the Qwen3/Bonsai engine: load time, prefill tokens/s, decode tokens/s.

Uses a real GGUF (--model) or writes a random-weight file of a real Bonsai shape once (--preset, cached in
--cache-dir). Random weights compute exactly as fast as trained ones. Timings are wall clock AND process CPU
time: on a shared machine compare CPU time, or ratios within one run.

    python benchmarks/bench_generator.py --preset bonsai-1.7b --prompt-tokens 256 --decode-tokens 16
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from generator.model import Qwen3Model  # noqa: E402
from generator.synthetic import PRESETS, write_synthetic_gguf  # noqa: E402

TOKENIZER = Path(__file__).resolve().parents[1] / "tests" / "fixtures" / "reference" / "tiny-tied-q1_0.gguf"


class Timer:
    def __enter__(self):
        self.wall, self.cpu = time.perf_counter(), time.process_time()
        return self

    def __exit__(self, *exc):
        self.wall, self.cpu = time.perf_counter() - self.wall, time.process_time() - self.cpu


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", help="a GGUF file (default: a synthetic file of --preset)")
    ap.add_argument("--preset", default="bonsai-1.7b", choices=sorted(PRESETS))
    ap.add_argument("--cache-dir", default="/tmp/ragbit-bench-models")
    ap.add_argument("--prompt-tokens", type=int, default=256)
    ap.add_argument("--decode-tokens", type=int, default=16)
    ap.add_argument("--n-ctx", type=int, default=4096)
    ap.add_argument("--threads", type=int, default=0)
    args = ap.parse_args()

    path = Path(args.model) if args.model else Path(args.cache_dir) / f"{args.preset}-synthetic.gguf"
    if not path.exists():
        with Timer() as t:
            write_synthetic_gguf(path, args.preset, TOKENIZER, seed=0)
        print(f"wrote {path} ({path.stat().st_size / 1e6:.0f} MB) in {t.wall:.1f} s")

    with Timer() as t:
        model = Qwen3Model.load(path, n_ctx=args.n_ctx, threads=args.threads)
    cfg = model.config
    print(f"{path.name}: {cfg.n_layer} layers, n_embd {cfg.n_embd}, n_ff {cfg.n_ff}, heads {cfg.n_head}/"
          f"{cfg.n_head_kv}, vocab {cfg.n_vocab}, rope {cfg.rope_scaling}; KV cache "
          f"{model.kv_cache_bytes / 2**20:.0f} MiB at n_ctx {args.n_ctx}")
    print(f"load            {t.wall:8.2f} s wall {t.cpu:8.2f} s cpu")

    model.prefill([1, 2, 3])  # compile / warm up every kernel once
    model.decode(4)
    model.reset()

    prompt = [(7919 * i) % cfg.n_vocab for i in range(args.prompt_tokens)]
    with Timer() as t:
        logits = model.prefill(prompt)
    print(f"prefill {len(prompt):5d} tok {t.wall:8.2f} s wall {t.cpu:8.2f} s cpu  "
          f"{len(prompt) / t.wall:8.1f} tok/s")

    walls, cpus = [], []
    token = int(logits.argmax())
    for _ in range(args.decode_tokens):
        with Timer() as t:
            token = int(model.decode(token).argmax())
        walls.append(t.wall)
        cpus.append(t.cpu)
    w, c = statistics.median(walls), statistics.median(cpus)
    print(f"decode  {args.decode_tokens:5d} tok {w * 1e3:8.1f} ms wall {c * 1e3:8.1f} ms cpu per token (median) "
          f"{1 / w:8.2f} tok/s at position {model.n_past}")


if __name__ == "__main__":
    main()
