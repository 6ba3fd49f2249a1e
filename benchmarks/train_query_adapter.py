"""Train the query adapter (ragbit/indexing/query_adapter.py): a 384 x 384 map from a question's vector to code.

The pairs are made the way ../shared/eval/make_docstring_queries.py makes the docstring development set, from
other projects: the first sentence of a public function's docstring is the question, and the project copy in
which that docstring is removed is the corpus. Sources are installed packages that are in neither development
set (nor in the eval README's example list), copied out of site-packages. Every chunk of each copy is indexed by
ragbit as a user's repository would be; the question vectors are the raw model's.

The objective: for each question, softmax over ALL chunk vectors of its own project (temperature TAU) of the
chunks that overlap its function, with W = I + A and LAMBDA * |A|^2 keeping W near the identity. Leave-projects-
out validation (--holdout) says whether it generalises; the final matrix is trained on every project and saved
with a `.json` that records the command, the packages and the figures.

    python benchmarks/train_query_adapter.py --work /tmp/qa-train            # ~30 min of 2 cores, mostly embedding
    python benchmarks/train_query_adapter.py --work /tmp/qa-train --save      # writes ragbit/indexing/query_adapters/
"""
from __future__ import annotations

import argparse
import importlib.metadata
import importlib.util
import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

# import name -> distribution name. Not: the development sets' projects (jinja2, werkzeug, attrs, tqdm, packaging;
# django, sympy, scikit-learn, matplotlib, sphinx, xarray, pylint, pytest, seaborn, astropy, flask, requests) nor
# the eval README's example list (click, rich, httpx).
PACKAGES = {"networkx": "networkx", "mpmath": "mpmath", "docutils": "docutils", "setuptools": "setuptools",
            "huggingface_hub": "huggingface-hub", "pydantic": "pydantic", "fsspec": "fsspec", "anyio": "anyio",
            "jsonschema": "jsonschema", "markdown_it": "markdown-it-py", "pyparsing": "pyparsing",
            "dateutil": "python-dateutil", "starlette": "starlette", "uvicorn": "uvicorn", "filelock": "filelock",
            "pathspec": "pathspec", "typer": "typer"}
QUERIES_PER_PROJECT = 120
SEED = 1
TAU = 0.05
LAMBDA = 0.1
STEPS = 200
LR = 1e-3


def copy_sources(work: Path, packages: dict[str, str] = PACKAGES) -> list[Path]:
    """Each installed package (import name -> distribution) copied to work/src/<name>-<version> (no compiled files)."""
    out = []
    for name, dist in packages.items():
        spec = importlib.util.find_spec(name)
        if spec is None or not spec.submodule_search_locations:
            print(f"skipping {name}: not installed", file=sys.stderr)
            continue
        dest = work / "src" / f"{name}-{importlib.metadata.version(dist)}"
        if not dest.is_dir():
            shutil.copytree(list(spec.submodule_search_locations)[0], dest,
                            ignore=shutil.ignore_patterns("*.so", "*.pyd", "__pycache__", "*.pyc"))
        out.append(dest)
    return out


def make_pairs(work: Path, sources: list[Path], eval_dir: Path) -> Path:
    """Run the development set's own recipe over the copies; returns the directory with queries.jsonl."""
    pairs = work / "pairs"
    if not (pairs / "queries.jsonl").is_file():
        subprocess.run([sys.executable, str(eval_dir / "make_docstring_queries.py"), "--out", str(pairs),
                        "--n", str(QUERIES_PER_PROJECT), "--seed", str(SEED), *map(str, sources)], check=True)
    return pairs


def blank_docstrings(pairs: Path) -> int:
    """Blank EVERY docstring left in the copies (lines kept, so the gold ranges hold; a body left empty gets `pass`).

    Why: in the copies only the questions' own docstrings are gone, so "the chunk without a docstring" would be a
    shortcut to the answer that the map could learn and that real repositories do not offer. With every docstring
    blanked the map can only learn what a question's words mean in code (the held-out gain is the same either way:
    development set, dense chunk R@10 .693 -> .748 trained with every docstring blanked, .740 with them kept)."""
    import ast
    done = pairs / ".docstrings-blanked"
    if done.exists():
        return 0
    n = 0
    for path in sorted(pairs.rglob("*.py")):
        try:
            text = path.read_text(encoding="utf-8")
            tree = ast.parse(text)
        except (SyntaxError, UnicodeDecodeError, ValueError):
            continue
        lines = text.splitlines(keepends=True)
        spans = []
        for node in ast.walk(tree):
            if not isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef, ast.Module)) or not node.body:
                continue
            doc = node.body[0]
            if not (isinstance(doc, ast.Expr) and isinstance(doc.value, ast.Constant) and isinstance(doc.value.value, str)):
                continue
            first = lines[doc.lineno - 1]
            if first.lstrip()[:1] not in "\"'rRbBuUfF" or len(node.body) > 1 and node.body[1].lineno == doc.end_lineno:
                continue                                  # the docstring shares a line with code: leave it
            spans.append((doc.lineno - 1, doc.end_lineno, len(node.body) == 1, first[: len(first) - len(first.lstrip())]))
        for a, b, alone, indent in sorted(spans, reverse=True):
            lines[a:b] = [indent + "pass\n" if alone and i == 0 else "\n" for i in range(b - a)]
            n += 1
        path.write_text("".join(lines), encoding="utf-8")
    done.write_text(f"{n}\n")
    return n


def index_projects(pairs: Path, index_root: Path, embedder) -> None:
    """Index every project copy as a user's repository (vectors cached: a second run embeds nothing)."""
    from ragbit.config import RagbitConfig
    from ragbit.indexing.indexer import index_repository
    for corpus in sorted(p.name for p in pairs.iterdir() if p.is_dir()):
        cfg = RagbitConfig.load(pairs / corpus, overrides={"index": {"dir": str(index_root / corpus)}})
        report = index_repository(cfg, progress=False, embedder=embedder)
        print(f"  {corpus}: {report.chunks} chunks, {report.chunks_embedded} embedded", file=sys.stderr, flush=True)


def load_project(index_dir: Path, embedder):
    """(chunk vectors (n, dim) by chunk position, [(path, start, end)] by chunk position), from the vector cache."""
    from indexes.store import IndexStore
    from indexes.vector_cache import VectorCache
    from ragbit.chunk_table import ChunkTable
    table = ChunkTable.load(IndexStore(index_dir).current())
    cache = VectorCache(index_dir / "vectors", embedder.vector_cache_id, embedder.dim)
    vectors, found = cache.get(list(table.content_hash))
    if not all(found):
        sys.exit(f"{index_dir}: {found.count(False)} chunks without a vector (index it again)")
    return np.asarray(vectors, np.float32), [(c.path, c.start_line, c.end_line) for c in table.chunks]


def examples(pairs: Path, index_root: Path, embedder) -> list[tuple[str, np.ndarray, np.ndarray, list[list[int]]]]:
    """Per project: (name, chunk vectors, question vectors, gold chunk positions per question)."""
    queries = [json.loads(line) for line in (pairs / "queries.jsonl").open()]
    out = []
    for corpus in sorted({q["corpus"] for q in queries}):
        vectors, spans = load_project(index_root / corpus, embedder)
        qs = [q for q in queries if q["corpus"] == corpus]
        gold = [[i for i, (p, a, b) in enumerate(spans) if p == q["file"] and a <= q["end_line"] and b >= q["start_line"]]
                for q in qs]
        keep = [i for i, g in enumerate(gold) if g]
        qvec = embedder.embed([qs[i]["query"] for i in keep], progress=False)     # raw: embed() is never adapted
        out.append((corpus, vectors, qvec, [gold[i] for i in keep]))
    return out


def recall(data, W: np.ndarray | None) -> tuple[float, float]:
    """(R@1, R@10) of the gold chunk among all chunks of its project, dense search alone."""
    r1 = r10 = n = 0
    for _, V, Q, G in data:
        q = Q if W is None else Q @ W.T
        q = q / np.linalg.norm(q, axis=1, keepdims=True)
        top = np.argsort(-(q @ V.T), axis=1)[:, :10]
        for t, g in zip(top, G):
            r1 += int(t[0] in g)
            r10 += int(bool(set(t.tolist()) & set(g)))
            n += 1
    return r1 / max(n, 1), r10 / max(n, 1)


def train(data, steps: int = STEPS, lam: float = LAMBDA, tau: float = TAU, lr: float = LR) -> np.ndarray:
    """W = I + A minimising the in-project softmax loss of the gold chunks (full softmax, Adam)."""
    import torch
    torch.manual_seed(0)
    dim = data[0][1].shape[1]
    eye = torch.eye(dim)
    A = torch.zeros(dim, dim, requires_grad=True)
    opt = torch.optim.Adam([A], lr=lr)
    tensors = [(torch.from_numpy(V), torch.from_numpy(Q), G) for _, V, Q, G in data]
    n = sum(len(G) for _, _, G in tensors)
    for _ in range(steps):
        opt.zero_grad()
        loss = lam * (A ** 2).sum()
        for V, Q, G in tensors:
            q = Q @ (eye + A).T
            S = (q / q.norm(dim=1, keepdim=True)) @ V.T / tau
            pos = torch.stack([torch.logsumexp(S[i, g], dim=0) for i, g in enumerate(G)])
            loss = loss + (torch.logsumexp(S, dim=1) - pos).sum() / n
        loss.backward()
        opt.step()
    return (eye + A).detach().numpy()


def training_arguments(doc: str, work: str, holdout: str, what: str) -> argparse.ArgumentParser:
    """The options every training script of a learned search part takes (this one, train_reranker.py)."""
    ap = argparse.ArgumentParser(description=doc, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--work", default=work, help="copies, pairs and indexes go here")
    ap.add_argument("--eval-dir", default=str(ROOT.parent / "shared" / "eval"))
    ap.add_argument("--holdout", default=holdout, help="';'-separated groups of projects held out in turn")
    ap.add_argument("--save", action="store_true", help=f"train on every project and write the {what}")
    return ap


def prepare_projects(work: Path, packages: dict[str, str], eval_dir: Path):
    """Copies, question pairs (every docstring blanked) and an index per project; returns (pairs dir, embedder)."""
    from ragbit.indexing.embeddings import Embedder
    pairs = make_pairs(work, copy_sources(work, packages), eval_dir)
    print(f"{blank_docstrings(pairs)} other docstrings blanked", file=sys.stderr)
    embedder = Embedder()
    index_projects(pairs, work / "index", embedder)
    return pairs, embedder


def main() -> None:
    a = training_arguments(__doc__, "/tmp/qa-train", "networkx,anyio,docutils;huggingface_hub,pydantic,setuptools,"
                           "starlette;mpmath,fsspec,markdown_it,typer", "adapter").parse_args()
    from ragbit.indexing.query_adapter import adapter_path
    work = Path(a.work)
    pairs, embedder = prepare_projects(work, PACKAGES, Path(a.eval_dir))
    data = examples(pairs, work / "index", embedder)
    print(f"{sum(len(d[3]) for d in data)} questions over {len(data)} projects", file=sys.stderr)

    figures = {}
    for group in filter(None, a.holdout.split(";")):
        held = set(group.split(","))
        fit = [d for d in data if d[0].rsplit("-", 1)[0] not in held]
        val = [d for d in data if d[0].rsplit("-", 1)[0] in held]
        before, after = recall(val, None), recall(val, train(fit))
        figures[group] = {"R@1": [round(before[0], 3), round(after[0], 3)], "R@10": [round(before[1], 3), round(after[1], 3)]}
        print(f"held out {group}: dense chunk R@1 {before[0]:.3f} -> {after[0]:.3f}, "
              f"R@10 {before[1]:.3f} -> {after[1]:.3f} ({sum(len(d[3]) for d in val)} questions)")
    if a.save:
        W = train(data)
        path = adapter_path(embedder._base_id)
        path.parent.mkdir(parents=True, exist_ok=True)
        np.save(path, W.astype(np.float32))
        meta = {"model": embedder._base_id, "command": "python benchmarks/train_query_adapter.py --save",
                "projects": [d[0] for d in data], "questions": sum(len(d[3]) for d in data),
                "objective": {"tau": TAU, "lambda": LAMBDA, "steps": STEPS, "lr": LR},
                "held_out_dense_chunk_recall_before_after": figures}
        path.with_suffix(".json").write_text(json.dumps(meta, indent=1) + "\n")
        print(f"wrote {path}")


if __name__ == "__main__":
    main()
