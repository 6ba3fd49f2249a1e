"""`ragbit eval`: a user's labelled questions about one repository, scored in one process.

Every mode asked for (hybrid, dense, lexical) ranks each question with the index's `Searcher` as `ragbit
search` does, and the query pipeline's own retriever and packer fill each token budget as `ragbit query` does;
BM25 over whole files (and BM25 windows packed to the same budgets) are computed on the same files in the same
run, so a figure is always read beside its baseline. The embedding model is loaded once for all of it.

Questions file (JSONL, one object per line):
    {"query": "how are retries configured?", "files": ["src/net/retry.py"]}
    {"query": "...", "file": "src/net/retry.py", "start_line": 4, "end_line": 20}      # one gold range
    {"query": "...", "gold_files": [...], "gold_ranges": [{"file", "start_line", "end_line"}, ...]}
Line ranges add the chunk-level scores and context recall; files alone give the file-level scores.
"""
from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

from ragbit.config import RagbitConfig
from ragbit.errors import RagbitError
from ragbit.evaluation.metrics import KS, mean, norm_path, score_one, targets

BUDGETS = (500, 1000, 1500, 3000)
MODES = ("hybrid", "dense", "lexical")
BASELINE = "bm25"                  # whole files, score.py's baseline
CONTEXT_BASELINE = "bm25-windows-packed"


class EvalError(RagbitError, ValueError):
    """A questions file ragbit eval cannot use; the message is one line naming the file and line."""


def load_questions(path: Path) -> list[dict]:
    """The questions of a JSONL file, each checked: a `query` string and gold files (or one gold range)."""
    try:
        lines = Path(path).read_text(encoding="utf-8").splitlines()
    except FileNotFoundError:
        raise EvalError(f"{path}: no such file") from None
    except (OSError, UnicodeDecodeError) as e:
        raise EvalError(f"{path}: unreadable ({e})") from None
    questions = []
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        try:
            q = json.loads(line)
        except json.JSONDecodeError as e:
            raise EvalError(f"{path}:{number}: not JSON ({e.msg})") from None
        problem = _problem(q)
        if problem:
            raise EvalError(f"{path}:{number}: {problem}")
        questions.append(q)
    if not questions:
        raise EvalError(f"{path}: no questions (one JSON object per line: "
                        '{"query": "...", "files": ["path/in/repo.py"]})')
    return questions


def _problem(q: Any) -> str:
    if not isinstance(q, dict):
        return "each line must be a JSON object"
    if not isinstance(q.get("query"), str) or not q["query"].strip():
        return 'needs a "query" string'
    gold = q.get("gold_files", q.get("files", [q["file"]] if isinstance(q.get("file"), str) else None))
    if not isinstance(gold, list) or not gold or not all(isinstance(f, str) for f in gold):
        return 'needs "files": a non-empty list of paths (or "file" with "start_line" and "end_line")'
    try:
        for _, s, e in targets(q):
            if not (isinstance(s, int) and isinstance(e, int) and 1 <= s <= e):
                return "line ranges need integer start_line <= end_line, from 1"
    except (KeyError, TypeError):
        return 'each of "gold_ranges" needs "file", "start_line" and "end_line"'
    return ""


@dataclass
class EvalReport:
    repo: str
    questions: int
    with_lines: int
    k: int
    modes: list[str]
    budgets: list[int]
    retrieval: dict[str, dict[str, float]] = field(default_factory=dict)   # system -> metric -> mean
    context: dict[str, dict[str, float]] = field(default_factory=dict)     # system -> ctx_hit80@B / ctx_lines@B
    context_note: str = ""             # why context recall was not measured, else ""
    per_question: list[dict] = field(default_factory=list)
    timings: dict[str, float] = field(default_factory=dict)


def token_counter(model: str) -> tuple[Any, str]:
    """(the generator's tokenizer, "") for a model file or a downloaded model name; (None, why) otherwise.
    Only the tokenizer is read (GGUF metadata), not the weights; nothing is downloaded."""
    from generator.errors import GeneratorError
    path = Path(model).expanduser()
    if not path.is_file():
        from ragbit.models import cached_file
        try:
            path = cached_file(model)
        except (GeneratorError, ValueError, OSError):
            path = None
    if path is None:
        return None, (f"no tokenizer: model {model!r} is not downloaded (`ragbit pull {model}`, or --model FILE); "
                      "context recall needs the generator's token counts")
    from generator.gguf_file import GGUFFile
    from generator.tokenizer import BonsaiTokenizer
    try:
        return BonsaiTokenizer.from_metadata(GGUFFile(str(path)).metadata), ""
    except (GeneratorError, ValueError, OSError) as e:
        return None, f"no tokenizer from {path}: {str(e).splitlines()[0] if str(e) else type(e).__name__}"


def evaluate(cfg: RagbitConfig, questions: list[dict], k: int = 10, modes: tuple[str, ...] = MODES,
             budgets: tuple[int, ...] = BUDGETS, tokenizer: Any = None, embedder: Any = None,
             progress: Callable[[str], None] | None = None) -> EvalReport:
    """Score `questions` on `cfg.repo` (see the module docstring). `tokenizer` None: no context recall."""
    from ragbit.evaluation.baselines import BM25Files
    from ragbit.search.searcher import Searcher

    say = progress or (lambda message: None)
    repo = Path(cfg.repo)
    report = EvalReport(str(repo), len(questions), sum(1 for q in questions if targets(q)), k, list(modes),
                        list(budgets) if tokenizer is not None else [])
    per_q: list[dict[str, dict]] = [{} for _ in questions]

    t = time.perf_counter()
    baseline = BM25Files(BASELINE)
    baseline.index(str(repo))
    for q, m in zip(questions, per_q):
        m[BASELINE] = score_one(q, baseline.search(q["query"], k), False)
    report.timings["baseline_s"] = time.perf_counter() - t

    searcher = Searcher(cfg, embedder=embedder)
    for mode in modes:
        t = time.perf_counter()
        say(f"ranking {len(questions)} questions ({mode})")
        for q, m in zip(questions, per_q):
            hits = searcher.search(q["query"], k=k, mode=mode)
            results = [{"path": norm_path(h.path, str(repo)), "start_line": h.start_line, "end_line": h.end_line}
                       for h in hits]
            m[mode] = score_one(q, results, True)
            m[mode]["top"] = [[r["path"], r["start_line"], r["end_line"]] for r in results]
        report.timings[f"{mode}_s"] = time.perf_counter() - t

    with_lines = [i for i, q in enumerate(questions) if targets(q)]
    if tokenizer is not None and budgets and with_lines:
        _context(cfg, questions, with_lines, per_q, modes, budgets, tokenizer, searcher, report, say)
    elif tokenizer is None:
        report.context_note = "not measured: no generator tokenizer"
    elif not with_lines:
        report.context_note = "not measured: no question has line ranges"

    systems = list(modes) + [BASELINE]
    keys = [f"file_R@{k_}" for k_ in KS] + ["file_MRR@10"]
    chunk_keys = [f"chunk_R@{k_}" for k_ in KS] + ["chunk_MRR@10"] if with_lines else []
    for system in systems:
        row = {key: mean(m[system][key] for m in per_q if system in m and key in m[system]) for key in keys}
        if system != BASELINE:
            row.update({key: mean(m[system][key] for m in per_q if key in m.get(system, {})) for key in chunk_keys})
        report.retrieval[system] = row
    report.per_question = [{"query": q["query"], **{s: {k_: v for k_, v in m[s].items()} for s in m}}
                           for q, m in zip(questions, per_q)]
    return report


def _context(cfg, questions, with_lines, per_q, modes, budgets, tokenizer, searcher, report, say) -> None:
    """Context recall: the pipeline's retriever (its [query] settings) and packer at each budget."""
    from ragbit.evaluation.baselines import BM25WindowsPacked
    from ragbit.evaluation.metrics import context_metrics
    from ragbit.pipeline.components.context_packer import ContextPacker
    from ragbit.pipeline.components.hybrid_retriever import HybridRetriever

    count = lambda text: len(tokenizer.encode(text, parse_special=False))     # noqa: E731
    packers = [ContextPacker(budget=b, tokenizer=tokenizer) for b in budgets]
    for mode in modes:
        t = time.perf_counter()
        say(f"packing contexts at {', '.join(map(str, budgets))} tokens ({mode})")
        retriever = HybridRetriever(cfg, mode=mode, embedder=None if mode == "lexical" else searcher.embedder)
        for i in with_lines:
            hits = retriever.run(query=questions[i]["query"])["hits"]
            ctx = per_q[i].setdefault(f"context-{mode}", {})
            for packer in packers:
                ctx.update(context_metrics(questions[i], packer.run(hits=hits)["context"].blocks, packer.budget))
        report.timings[f"context_{mode}_s"] = time.perf_counter() - t
    t = time.perf_counter()
    windows = BM25WindowsPacked(cfg.repo, count)
    for i in with_lines:
        ctx = per_q[i].setdefault(f"context-{CONTEXT_BASELINE}", {})
        for budget in budgets:
            ctx.update(context_metrics(questions[i], windows.blocks(questions[i]["query"], budget), budget))
    report.timings["context_baseline_s"] = time.perf_counter() - t
    for system in list(modes) + [CONTEXT_BASELINE]:
        name = f"context-{system}"
        report.context[system] = {f"ctx_{kind}@{b}": mean(per_q[i][name][f"ctx_{kind}@{b}"] for i in with_lines)
                                  for kind in ("hit80", "lines") for b in budgets}


def render(report: EvalReport) -> str:
    """The tables `ragbit eval` prints."""
    fmt = lambda v: "-" if v != v else f"{v:.3f}"                             # noqa: E731
    out = [f"{report.questions} questions ({report.with_lines} with line ranges) on {report.repo}, k={report.k}",
           ""]
    keys = [f"file_R@{k}" for k in KS] + ["file_MRR@10"]
    chunk_keys = [f"chunk_R@{k}" for k in KS] + ["chunk_MRR@10"] if report.with_lines else []
    heads = ["R@1", "R@5", "R@10", "MRR@10"] + (["chunk R@1", "chunk R@5", "chunk R@10", "chunk MRR@10"]
                                              if chunk_keys else [])
    out.append(f"{'files':<22}" + "".join(f"{h:>13}" for h in heads))
    for system, row in report.retrieval.items():
        label = system if system != BASELINE else "bm25 (whole files)"
        out.append(f"{label:<22}" + "".join(f"{fmt(row.get(key, float('nan'))):>13}" for key in keys + chunk_keys))
    out.append("")
    if report.context:
        out.append("context recall: share of questions whose gold lines are >= 80% inside the packed context")
        out.append(f"{'tokens':<22}" + "".join(f"{b:>13}" for b in report.budgets))
        for system, row in report.context.items():
            out.append(f"{system:<22}" + "".join(f"{fmt(row[f'ctx_hit80@{b}']):>13}" for b in report.budgets))
    else:
        out.append(f"context recall: {report.context_note}")
    return "\n".join(out) + "\n"
