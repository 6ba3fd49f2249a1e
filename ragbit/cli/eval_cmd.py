"""`ragbit eval QUESTIONS.jsonl`: retrieval quality on the user's own labelled questions (ragbit/evaluation/)."""
from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Optional

import typer

from ragbit.cli import app, examples
from ragbit.cli.boundary import fail, guarded, repo_config


@app.command("eval", short_help="Score retrieval on your own labelled questions.", epilog=examples(
    "ragbit eval questions.jsonl                  # hybrid, dense, lexical and BM25, context recall",
    "ragbit eval questions.jsonl --modes lexical -k 5 --json",
    'echo \'{"query": "where are retries configured?", "files": ["src/net/retry.py"]}\' > q.jsonl'))
def eval_(
    questions: Path = typer.Argument(..., help="JSONL: one {\"query\": ..., \"files\": [...]} per line "
                                     "(or \"file\", \"start_line\", \"end_line\" for a gold range)"),
    repo: Optional[Path] = typer.Option(None, "--repo", help="repository the questions are about (default: "
                                        "the one around the working directory); indexed first if needed"),
    k: int = typer.Option(10, "-k", min=1, help="results ranked per question"),
    modes: str = typer.Option("hybrid,dense,lexical", "--modes", help="comma list of search modes"),
    budgets: str = typer.Option("500,1000,1500,3000", "--budgets", help="context budgets in generator tokens"),
    model: Optional[str] = typer.Option(None, "--model", help="the generator whose tokenizer counts context "
                                        "tokens (a downloaded name or a .gguf file; default: the configured one)"),
    index_dir: Optional[str] = typer.Option(None, "--index-dir", help="where the index lives"),
    as_json: bool = typer.Option(False, "--json", help="print one JSON document (schema ragbit.eval/1, "
                                 "docs/json.md)"),
) -> None:
    """Score retrieval on labelled questions: Recall@1/5/10 and MRR@10 per mode beside BM25 over whole files,
    and the share of questions whose gold lines land in the packed context at each budget."""
    from ragbit.evaluation.runner import MODES
    mode_list = tuple(m.strip() for m in modes.split(",") if m.strip())
    bad = [m for m in mode_list if m not in MODES]
    if bad or not mode_list:
        fail(f"--modes takes a comma list of {', '.join(MODES)}, not {modes!r}")
    try:
        budget_list = tuple(int(b) for b in budgets.split(",") if b.strip())
    except ValueError:
        fail(f"--budgets takes a comma list of token counts, not {budgets!r}")
    if any(b <= 0 for b in budget_list):
        fail("--budgets must be positive")

    def go():
        from ragbit.evaluation.runner import evaluate, load_questions, token_counter
        from ragbit.pipeline.standard import refresh_index
        cfg = repo_config(repo, {"index": {"dir": index_dir}, "generator": {"model": model}})
        qs = load_questions(questions)
        refresh_index(cfg, progress=None if not as_json else False)
        tokenizer, why = token_counter(cfg.generator.model) if budget_list else (None, "")
        say = (lambda m: print(m, file=sys.stderr, flush=True)) if not as_json else None
        report = evaluate(cfg, qs, k=k, modes=mode_list, budgets=budget_list, tokenizer=tokenizer, progress=say)
        if why:
            report.context_note = f"not measured: {why}"
        return report
    report = guarded(go, "the last committed index is intact")
    if as_json:
        from ragbit.json_forms import eval_document
        typer.echo(json.dumps(eval_document(report), ensure_ascii=False))
        return
    from ragbit.evaluation.runner import render
    sys.stdout.write(render(report))
