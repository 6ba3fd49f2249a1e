"""`ragbit query` speed on a real repository with a Bonsai-1.7B-shaped model: where does the time go?

The model is a random-weight file with Bonsai-1.7B's exact shapes and tensor types (generator/synthetic.py,
preset "bonsai-1.7b", real Qwen3 tokenizer), written once into the cache directory: the answer is
gibberish but every matrix product costs what the real model's does. Runs the standard pipeline through
`ask()` - index refresh, hybrid retrieval, packing to a 1,500-token budget, prompt processing,
generation - for a few questions and prints, per question: retrieval time, prompt tokens (and how many
came from the KV cache), prompt processing time = time to first token, and generation tok/s. The first
question also pays model load and numba compilation; compare the later ones.

    python benchmarks/bench_query.py                         # this repository, 3 questions, 32 new tokens
    python benchmarks/bench_query.py --repo /path/to/django --questions 2 --max-tokens 16

Timings are wall clock on a shared machine: compare them as ratios within one run.
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

QUESTIONS = [
    "How does the context packer merge adjacent chunks and respect the token budget?",
    "Where are pipeline connections validated, and what errors are reported?",
    "How is the hybrid search fused from BM25 and dense results?",
    "How does the generator reuse the KV cache between prompts?",
]


def synthetic_model(cache: Path) -> Path:
    from generator.synthetic import write_synthetic_gguf
    path = cache / "bonsai-1.7b-synthetic.gguf"
    if not path.is_file():
        cache.mkdir(parents=True, exist_ok=True)
        t0 = time.perf_counter()
        tmp = path.with_suffix(".part")
        write_synthetic_gguf(tmp, "bonsai-1.7b", tokenizer_from=ROOT / "tests/fixtures/reference/tiny-tied-q1_0.gguf")
        tmp.rename(path)
        print(f"wrote {path} ({path.stat().st_size / 1e6:.0f} MB) in {time.perf_counter() - t0:.1f}s", file=sys.stderr)
    return path


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repo", default=str(ROOT), help="repository to ask about (default: this one)")
    ap.add_argument("--cache", default=str(ROOT / "benchmarks/.cache"), help="model file and index go here")
    ap.add_argument("--model", default=None, help="a .gguf to use instead of the synthetic Bonsai-1.7B")
    ap.add_argument("--budget", type=int, default=1500)
    ap.add_argument("--max-tokens", type=int, default=32)
    ap.add_argument("--questions", type=int, default=3)
    ap.add_argument("--threads", type=int, default=0)
    a = ap.parse_args()

    from ragbit.config import RagbitConfig
    from ragbit.pipeline.standard import ask

    cache = Path(a.cache).resolve()
    model = Path(a.model) if a.model else synthetic_model(cache)
    repo = Path(a.repo).resolve()
    cfg = RagbitConfig.load(repo, overrides={
        "index": {"dir": str(cache / f"index-{repo.name}")},
        "generator": {"model": str(model), "max_tokens": a.max_tokens, "threads": a.threads},
        "query": {"budget": a.budget}})
    print(f"repo {repo}, model {model.name}, budget {a.budget} tokens, {a.max_tokens} new tokens")
    header = (f"{'#':>2} {'index_s':>8} {'retr_s':>7} {'pack_s':>7} {'load_s':>7} {'ctx_tok':>7} {'prompt':>6} "
              f"{'cached':>6} {'ttft_s':>7} {'pp_tok/s':>8} {'gen_tok/s':>9}")
    print(header)
    rows = []
    for i, question in enumerate(QUESTIONS[: a.questions], start=1):
        print(f"question {i}: {question}", file=sys.stderr, flush=True)
        answer = ask(cfg, question, on_token=lambda piece: print(".", end="", file=sys.stderr, flush=True))
        print(file=sys.stderr)
        if answer.error:
            print(f"error: {answer.error}", file=sys.stderr)
            return 1
        t, st = answer.timings, answer.stats
        row = {"question": question, "index_s": t.get("index_s", 0.0), "retrieval_s": t.get("retrieval_s", 0.0),
               "pack_s": t.get("pack_s", 0.0), "load_s": t.get("load_s", 0.0) if i == 1 else 0.0,
               "context_tokens": answer.context.tokens, "prompt_tokens": st.prompt_tokens,
               "cached_prompt_tokens": st.cached_prompt_tokens, "ttft_s": t.get("ttft_s", 0.0),
               "prompt_tokens_per_s": t.get("prompt_tokens_per_s", 0.0),
               "gen_tokens_per_s": t.get("gen_tokens_per_s", 0.0), "generated_tokens": st.generated_tokens}
        rows.append(row)
        print(f"{i:>2} {row['index_s']:>8.2f} {row['retrieval_s']:>7.3f} {row['pack_s']:>7.3f} {row['load_s']:>7.2f} "
              f"{row['context_tokens']:>7} {row['prompt_tokens']:>6} {row['cached_prompt_tokens']:>6} "
              f"{row['ttft_s']:>7.2f} {row['prompt_tokens_per_s']:>8.1f} {row['gen_tokens_per_s']:>9.2f}", flush=True)
    print(json.dumps(rows))
    return 0


if __name__ == "__main__":
    sys.exit(main())
