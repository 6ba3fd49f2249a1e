"""Does an 8-bit or 4-bit KV cache keep the answers? Top-1 agreement of each KV cache type with the F16 cache.

Run:  python benchmarks/kv_cache_accuracy.py [--decode int11|float] [--long PATH.gguf]

Teacher-forced, like tests/test_reference_greedy.py: every reference run (the 12 Q1_0 runs of
tests/fixtures/reference/greedy.jsonl, real Qwen3 token ids, and the 8 Q2_0 runs of tests/fixtures/q2_0_llamacpp)
is fed as prompt + llama.cpp's generated tokens, once per cache type, and the logits of each step are compared
with the F16 cache's (ragbit's default): the share of steps with the same argmax, that share over the steps
where F16's top-2 margin is >= 0.1 (a clear lead), and the logit differences. The F32 cache is printed as the
yardstick: F16 itself moves the logits that much from exact.
--long PATH adds a long-context run on a Bonsai-shaped file (benchmarks/bench_generator.py writes them): a
1,500-token random prompt, then 32 teacher-forced steps (F16's own greedy picks).
The models have random weights: attention over random keys is diffuse, so this shows the cache's rounding is
small against the logits' spread; it cannot show how trained attention (sharper, with outlier key dimensions)
reacts. Check on a real Bonsai file before making a cache type the default.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
from generator.cache_types import KV_CACHE_KINDS  # noqa: E402
from generator.model import Qwen3Model  # noqa: E402

FIXTURES = ROOT / "tests" / "fixtures"
CLEAR_LEAD = 0.1


def _runs() -> list[tuple[Path, list[int], list[int]]]:
    """(model file, prompt ids, teacher-forced ids) of every reference run."""
    out = []
    for sub in ("reference", "q2_0_llamacpp"):
        for line in (FIXTURES / sub / "greedy.jsonl").read_text().splitlines():
            if line.strip():
                r = json.loads(line)
                out.append((FIXTURES / sub / r["model"], r["prompt_ids"], r["generated_ids"]))
    return out


def _forced_logits(model: Qwen3Model, prompt: list[int], forced: list[int]) -> np.ndarray:
    """(len(forced), n_vocab) logits: after the prompt, then after each forced token but the last."""
    model.reset()
    rows = [model.prefill(prompt).copy()]
    for tok in forced[:-1]:
        rows.append(model.decode(tok).copy())
    return np.stack(rows)


def _compare(name: str, logits: dict[str, list[np.ndarray]]) -> None:
    """Print each cache type's agreement with F16 over all runs (runs may differ in vocabulary size)."""
    for kind in (k for k in logits if k != "f16"):
        same = clear_same = clear = 0
        n = worst = total = 0.0
        for base, other in zip(logits["f16"], logits[kind]):
            top2 = np.sort(base, axis=1)[:, -2:]
            lead = top2[:, 1] - top2[:, 0] >= CLEAR_LEAD
            hit = np.argmax(other, axis=1) == np.argmax(base, axis=1)
            same, clear_same, clear = same + hit.sum(), clear_same + hit[lead].sum(), clear + lead.sum()
            d = np.abs(other - base)
            n, worst, total = n + len(base), max(worst, float(d.max())), total + float(d.mean(axis=1).sum())
        print(f"{name:12s} {kind} vs f16: argmax same at {same}/{n:.0f} steps ({same / n:.1%}), {clear_same}/{clear} "
              f"where f16 leads by >= {CLEAR_LEAD}; logits max |diff| {worst:.4f}, mean {total / n:.5f}", flush=True)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--decode", default="int11", choices=["int11", "float"])
    ap.add_argument("--long", metavar="PATH", help="a Bonsai-shaped GGUF for a 1,500-token run")
    args = ap.parse_args()
    kinds = ("f16",) + tuple(k for k in KV_CACHE_KINDS if k != "f16")
    logits: dict[str, list[np.ndarray]] = {k: [] for k in kinds}
    models: dict[tuple[Path, str], Qwen3Model] = {}
    for path, prompt, forced in _runs():
        for kind in kinds:
            if (path, kind) not in models:
                models[path, kind] = Qwen3Model.load(path, n_ctx=512, threads=1, q1_decode=args.decode, kv_cache=kind)
            logits[kind].append(_forced_logits(models[path, kind], prompt, forced))
    _compare("reference", logits)
    if args.long:
        rng = np.random.default_rng(1500)
        long = {k: [] for k in kinds}
        forced = None
        for kind in kinds:
            model = Qwen3Model.load(args.long, n_ctx=1600, q1_decode=args.decode, kv_cache=kind)
            prompt = rng.integers(0, min(model.config.n_vocab, 150000), 1500).tolist() if forced is None else prompt
            if forced is None:             # F16's own greedy continuation, fed to every cache type
                model.reset()
                forced, tok = [], int(model.prefill(prompt).argmax())
                for _ in range(32):
                    forced.append(tok)
                    tok = int(model.decode(tok).argmax())
            long[kind].append(_forced_logits(model, prompt, forced))
            del model
        _compare("long (1,500)", long)


if __name__ == "__main__":
    main()
