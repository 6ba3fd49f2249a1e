"""Index a repository and ask it a question from Python.

    python examples/ask_from_python.py PATH/TO/REPO --model bonsai-1.7b "Where is the config parsed?"

`ask()` indexes the repository the first time (and refreshes it when files changed), retrieves, packs
the context, streams the answer through `on_token`, and returns an `Answer` with the cited sources.
"""
from __future__ import annotations

import argparse
import json
import sys

from ragbit.config import RagbitConfig
from ragbit.pipeline.standard import ask


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("repo")
    ap.add_argument("question", nargs="?", default="What does this project do?")
    ap.add_argument("--model", default="bonsai-1.7b", help="short name or path to a .gguf file")
    ap.add_argument("--budget", type=int, default=1500, help="context tokens")
    ap.add_argument("--max-tokens", type=int, default=256)
    args = ap.parse_args()

    cfg = RagbitConfig.load(args.repo, overrides={"generator": {"model": args.model, "max_tokens": args.max_tokens},
                                                  "query": {"budget": args.budget}})
    answer = ask(cfg, args.question, on_token=lambda text: print(text, end="", flush=True))
    print()
    if answer.error:                      # no model: the sources are still there
        print(f"warning: {answer.error}", file=sys.stderr)
    for source in answer.sources:
        print(f"{source}  (score {source.score:.3f})")
    summary = {k: v for k, v in answer.to_json().items() if k in ("prompt_tokens", "context_tokens", "omitted", "timings")}
    print(json.dumps(summary))
    return 0


if __name__ == "__main__":
    sys.exit(main())
