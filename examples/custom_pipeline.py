"""Compose your own query pipeline, with a component you write yourself.

    python examples/custom_pipeline.py PATH/TO/REPO --model bonsai-1.7b --include "src/*" "What computes the total?"

A component is a class with typed `run()` parameters (its inputs), an `outputs` dict, a cheap __init__
and (optionally) a `warm_up()` for heavy loading. `PathFilter` below keeps only hits whose path matches
one of some glob patterns; it slots between the retriever and the packer. The same pipeline can be
declared in ragbit.toml, naming the class by import path:

    [[pipeline.components]]
    name = "only_src"
    type = "examples.custom_pipeline:PathFilter"
    params = { include = ["src/*"] }
"""
from __future__ import annotations

import argparse
import fnmatch
import sys

from ragbit.config import RagbitConfig
from ragbit.pipeline import Component, Pipeline, PipelineError, component
from ragbit.pipeline.components.bonsai_generator import BonsaiGenerator
from ragbit.pipeline.components.citation_extractor import CitationExtractor
from ragbit.pipeline.components.context_packer import ContextPacker
from ragbit.pipeline.components.hybrid_retriever import HybridRetriever
from ragbit.pipeline.components.prompt_builder import PromptBuilder
from ragbit.pipeline.pipeline import query_inputs
from ragbit.pipeline.standard import ask
from ragbit.search.searcher import Hit


@component
class PathFilter(Component):
    """Keep the hits whose path matches any `include` glob and no `exclude` glob."""

    outputs = {"hits": list[Hit]}

    def __init__(self, include: list[str] | None = None, exclude: list[str] | None = None) -> None:
        self.include = list(include or ["*"])
        self.exclude = list(exclude or [])

    def run(self, hits: list[Hit]) -> dict:
        def keep(path: str) -> bool:
            return (any(fnmatch.fnmatch(path, p) for p in self.include)
                    and not any(fnmatch.fnmatch(path, p) for p in self.exclude))
        return {"hits": [h for h in hits if keep(h.path)]}


def build(cfg: RagbitConfig, include: list[str]) -> Pipeline:
    p = Pipeline(**query_inputs())                       # query, history, on_token: what ask() feeds it
    p.add("retriever", HybridRetriever(cfg))
    p.add("only", PathFilter(include=include))          # its `hits` input takes the retriever's `hits`
    p.add("packer", ContextPacker(budget=cfg.query.budget, model=cfg.generator.model))
    p.add("prompt", PromptBuilder())
    p.add("generator", BonsaiGenerator.from_config(cfg))
    p.add("citations", CitationExtractor())
    return p.build()                                     # wiring mistakes fail here, before any loading


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("repo")
    ap.add_argument("question")
    ap.add_argument("--model", default="bonsai-1.7b", help="short name or path to a .gguf file")
    ap.add_argument("--include", nargs="+", default=["*"], help="glob patterns of paths to keep")
    ap.add_argument("--max-tokens", type=int, default=256)
    args = ap.parse_args()

    cfg = RagbitConfig.load(args.repo, overrides={"generator": {"model": args.model, "max_tokens": args.max_tokens}})
    try:
        pipeline = build(cfg, args.include)
    except PipelineError as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    print("pipeline:", " -> ".join(pipeline.order))
    answer = ask(cfg, args.question, on_token=lambda t: print(t, end="", flush=True), pipeline=pipeline)
    if answer.error:
        print(f"warning: {answer.error}", file=sys.stderr)
    print("\nsources:")
    for source in answer.sources:
        print(f"  {source}")
    print("step timings: " + ", ".join(f"{name} {s:.3f}s" for name, s in answer.step_timings.items()))
    return 0


if __name__ == "__main__":
    sys.exit(main())
