"""How well the grounding check (`ragbit/symbols/grounding.py`) tells invented names from real ones, and what it costs.

Answer snippets are written from the definitions of real repositories (the docstring development set's corpora:
jinja2, werkzeug, attrs, tqdm, packaging), in the styles a model answers in (inline code with citations, calls,
code blocks with imports, prose naming files and functions), each naming several things. Some snippets are left
as they are (every claim real); in the others ONE claim is corrupted the ways a small model gets code wrong:

    renamed method    `Environment.get_template` -> `Environment.get_templates` / `fetch_template` / `get_template_all`
    invented function  a module-level function renamed the same ways
    invented class     `Environment` -> `EnvironmentManager`
    invented keyword   `get_template(name, strict=True)` for a signature without `strict` or **kwargs
    extra argument     one positional argument more than the signature takes (no *args)
    moved file         `src/jinja2/compiler.py` -> `src/jinja2/core/compiler.py`
    wrong citation     [n] on a block that does not hold the name

Scored per claim: a claim is "flagged" when its status is unknown, mismatch or miscited. Precision = flagged
corrupted claims / flagged claims; recall = flagged corrupted claims / corrupted claims (the issue's targets:
precision >= 0.95, recall >= 0.90). The unknown-only row scores the name corruptions (renamed, invented, moved)
by the `unknown` status alone. Time: `check_answer` per snippet (claims, lookups, suggestions), p50/p95, on a
table already loaded, with its lookup memo emptied before each answer (the component loads the table once per
index generation; its load time is printed too).

    flock /tmp/ragbit-bench.lock python benchmarks/bench_grounding.py [--corpus-root /tmp/ragbit-eval/docstring-dev]
        [--per-corpus 50] [--seed 0] [--show-errors]
"""
from __future__ import annotations

import argparse
import random
import re
import statistics
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from types import SimpleNamespace

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from ragbit.config import ChunkConfig  # noqa: E402
from ragbit.evaluation.baselines import corpus_files  # noqa: E402
from ragbit.indexing.chunking import chunk_file_with_symbols  # noqa: E402
from ragbit.symbols.grounding import FLAGGED, _split_params, check_answer  # noqa: E402
from ragbit.symbols.table import SymbolTable  # noqa: E402

CORPORA = ("jinja2-3.1.4", "werkzeug-3.0.3", "attrs-23.2.0", "tqdm-4.66.4", "packaging-24.0")
INVENTED_KEYWORDS = ("strict", "timeout", "verbose", "force", "encoding_errors", "max_retries", "use_cache")
RENAMES = (lambda n: n + "s", lambda n: n + "_all", lambda n: "fetch_" + n.split("_", 1)[-1],
           lambda n: n[:-1] if len(n) > 4 else n + "x", lambda n: "_".join(reversed(n.split("_"))) + "_impl",
           lambda n: n.replace("get", "retrieve") if "get" in n else "do_" + n)
CLASS_RENAMES = (lambda n: n + "Manager", lambda n: "Base" + n, lambda n: n + "Impl", lambda n: n[:-1] + "er")


@dataclass
class Snippet:
    corpus: str
    text: str
    blocks: list
    bad: dict[str, str] = field(default_factory=dict)    # claim name -> corruption kind (one per corrupted snippet)


def build_table(corpus_dir: Path) -> tuple[SymbolTable, dict[str, str]]:
    """The symbol table `ragbit index` would store (the chunker's own records), and each file's text."""
    cfg = ChunkConfig()
    records, texts = [], {}
    for path, text in corpus_files(corpus_dir):
        _, symbols = chunk_file_with_symbols(path, text, cfg)
        records.append((path, symbols))
        texts[path] = text
    return SymbolTable.from_files(records), texts


def params(signature: str, bound: bool = False) -> tuple[int, list[str], bool, bool] | None:
    """(required positional count without self, parameter names, has *args, has **kwargs)."""
    ps = _split_params(signature)
    if ps is None:
        return None
    names, required, varargs, varkw, star = [], 0, False, False, False
    for i, p in enumerate(ps):
        name = re.match(r"\*{0,2}\s*(\w*)", p).group(1)
        if not name and p not in ("*", "/"):
            return None
        if p.startswith("**"):
            varkw = True
        elif p.startswith("*"):
            varargs, star = varargs or bool(name), True
        elif p == "/" or (i == 0 and bound and name in ("self", "cls")):
            continue
        else:
            names.append(name)
            if "=" not in p and not star:
                required += 1
    return required, names, varargs, varkw


def block_of(n: int, sym, texts: dict[str, str]):
    lines = texts[sym.path].split("\n")
    return SimpleNamespace(n=n, path=sym.path, start_line=sym.start_line, end_line=sym.end_line,
                           text="\n".join(lines[sym.start_line - 1:sym.end_line]))


def short(sym) -> str:
    """How an answer names a symbol: Class.method or function (without the module)."""
    parts = sym.name.split(".")
    return ".".join(parts[-2:]) if sym.kind == "method" else parts[-1]


def make_snippets(corpus: str, table: SymbolTable, texts: dict[str, str], n: int, rng: random.Random) -> list[Snippet]:
    symbols = [s for last in table.by_last.values() for s in last]
    public = lambda s: not any(p.startswith("_") for p in s.name.split(".")[-2:]) and "/tests/" not in "/" + s.path \
        and not s.path.startswith(("tests/", "docs/"))                                                # noqa: E731
    methods = [s for s in symbols if s.kind == "method" and public(s) and params(s.signature, True)]
    modules = {r["module"] for r in table.files.values() if r.get("module")}
    functions = [s for s in symbols if s.kind == "function" and public(s) and params(s.signature)
                 and s.name.rsplit(".", 1)[0] in modules]                       # module-level functions only
    classes = [s for s in symbols if s.kind == "class" and public(s)]
    paths = [p for p in table.files if p.endswith(".py") and "/tests/" not in "/" + p]
    imports = sorted({t for r in table.files.values() for _, t in r.get("imports", ()) if not table.resolve(t)
                      and "." in t})
    reexports = sorted({f"{r['module']}.{alias}" for r in table.files.values() if r.get("module")
                        and r["module"].count(".") <= 1 for alias, t in r.get("imports", ())
                        if alias != "*" and not alias.startswith("_") and table.resolve(t)})
    out = []
    for i in range(n):
        m, f, c = rng.choice(methods), rng.choice(functions), rng.choice(classes)
        path = rng.choice(paths)
        req_m, names_m, va_m, vk_m = params(m.signature, True)
        req_f, names_f, va_f, vk_f = params(f.signature)
        m_call = f"{short(m)}({', '.join(names_m[:req_m])})"
        f_call = f"{short(f)}({', '.join(names_f[:req_f])})"
        blocks = [block_of(1, m, texts), block_of(2, f, texts)]
        style = i % 4
        extra = []
        if imports and rng.random() < 0.5:
            extra.append(f"It relies on `{rng.choice(imports)}`.")
        if reexports and rng.random() < 0.5:
            extra.append(f"The public name is `{rng.choice(reexports)}`.")
        if style == 0:
            text = (f"`{short(m)}` [1] does the work; it is called by `{f_call}` [2], defined in {f.path}. "
                    f"See also `{short(c)}`. " + " ".join(extra))
        elif style == 1:
            text = (f"Use `{m_call}` on a `{m.name.split('.')[-2]}`. The helper {short(f)}() in `{f.path}` "
                    f"[2] prepares it. " + " ".join(extra))
        elif style == 2:
            module = f.name.rsplit(".", 1)[0]
            text = (f"```python\nfrom {module} import {short(f)}\nresult = {f_call}\n```\n"
                    f"Then `{short(c)}` and {path} handle the rest; `{short(m)}` [1] is the entry point. "
                    + " ".join(extra))
        else:
            text = (f"In {path}, `{short(c)}` wraps it. {short(m)} [1] is a method of "
                    f"`{m.name.split('.')[-2]}`, and `{f_call}` [2] builds the value. " + " ".join(extra))
        snippet = Snippet(corpus, text, blocks)
        if i % 2:
            corrupt(snippet, rng, table, m, f, c, path, names_m, va_m, vk_m, req_m, style)
        out.append(snippet)
    return out


def corrupt(s: Snippet, rng, table, m, f, c, path, names_m, va_m, vk_m, req_m, style) -> None:
    """Corrupt one claim of `s` in place (the kinds of the module docstring)."""
    kinds = ["renamed method", "invented function", "invented class", "moved file", "invented keyword",
             "extra argument", "wrong citation"]
    for _ in range(20):
        kind = rng.choice(kinds)
        if kind == "renamed method":
            owner, name = short(m).split(".")
            new = f"{owner}.{rng.choice(RENAMES)(name)}"
            if table.resolve(new) or new == short(m):
                continue
            if not _replace(s, short(m), new, kind, whole=True):
                continue
        elif kind == "invented function":
            new = rng.choice(RENAMES)(short(f))
            if table.find(new) or new == short(f) or not _replace(s, short(f), new, kind, whole=True):
                continue
        elif kind == "invented class":
            new = rng.choice(CLASS_RENAMES)(short(c))
            if table.find(new) or not _replace(s, f"`{short(c)}`", f"`{new}`", kind, name=new):
                continue
        elif kind == "moved file":
            target = f.path if f.path in s.text else path
            parts = target.split("/")
            new = "/".join(parts[:-1] + [rng.choice(("core", "utils", "internal", "lib"))] + parts[-1:])
            if new in table.files or not _replace(s, target, new, kind):
                continue
        elif kind in ("invented keyword", "extra argument"):
            call = f"{short(m)}({', '.join(names_m[:req_m])})"
            if call not in s.text or vk_m or (kind == "extra argument" and va_m):
                continue
            args = names_m[:req_m]
            if kind == "invented keyword":
                word = rng.choice([w for w in INVENTED_KEYWORDS if w not in names_m])
                new_call = f"{short(m)}({', '.join(args + [f'{word}=True'])})"
            else:
                new_call = f"{short(m)}({', '.join(args + ['None'] * (len(names_m) - req_m + 1))})"
            s.text = s.text.replace(call, new_call)
            s.bad[short(m)] = kind
        else:                                                     # wrong citation: point [1] at block 2
            if f"`{short(m)}` [1]" in s.text:
                s.text = s.text.replace(f"`{short(m)}` [1]", f"`{short(m)}` [2]")
            elif f"{short(m)} [1]" in s.text:
                s.text = s.text.replace(f"{short(m)} [1]", f"{short(m)} [2]")
            else:
                continue
            if re.search(rf"(?<!\w){re.escape(short(m).split('.')[-1])}(?!\w)", s.blocks[1].text):
                continue                                          # block 2 happens to hold the name: not wrong
            s.bad[f"[2] {short(m)}"] = kind
        return


def _replace(s: Snippet, old: str, new: str, kind: str, whole: bool = False, name: str | None = None) -> bool:
    pattern = rf"(?<![\w.]){re.escape(old)}(?![\w])" if whole else re.escape(old)
    if not re.search(pattern, s.text):
        return False
    s.text = re.sub(pattern, new, s.text)
    s.bad[name or new] = kind
    return True


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--corpus-root", default="/tmp/ragbit-eval/docstring-dev")
    ap.add_argument("--corpora", default=",".join(CORPORA))
    ap.add_argument("--per-corpus", type=int, default=50)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--show-errors", action="store_true", help="print every wrong flag and every miss")
    a = ap.parse_args()
    rng = random.Random(a.seed)
    tp = fp = fn = tn = 0
    unknown_tp = unknown_fn = 0
    by_kind: dict[str, list[int]] = {}
    times, load_times, n_snippets, n_claims = [], [], 0, 0
    errors = []
    for corpus in a.corpora.split(","):
        t = time.perf_counter()
        table, texts = build_table(Path(a.corpus_root) / corpus)
        build_s = time.perf_counter() - t
        import tempfile
        with tempfile.TemporaryDirectory() as tmp:           # load time of the stored form
            table.save(Path(tmp))
            t = time.perf_counter()
            SymbolTable.load(Path(tmp)).by_last
            load_times.append(time.perf_counter() - t)
        snippets = make_snippets(corpus, table, texts, a.per_corpus, rng)
        check_answer("`warm_up`", table)                     # first use builds the lookups (counted in load)
        for s in snippets:
            table._resolved.clear()                          # each answer starts cold, as in a one-shot query
            t = time.perf_counter()
            g = check_answer(s.text, table, s.blocks)
            times.append(time.perf_counter() - t)
            n_snippets += 1
            for finding in g.findings:
                n_claims += 1
                flagged = finding.status in FLAGGED
                # a citation of a corrupted name is wrong with it (`reverts` [1]: block 1 holds `revert`)
                bad = finding.name in s.bad or (finding.kind == "citation" and finding.name.split(" ", 1)[1] in s.bad)
                tp, fp = tp + (flagged and bad), fp + (flagged and not bad)
                fn, tn = fn + (bad and not flagged), tn + (not bad and not flagged)
                if finding.name in s.bad:
                    by_kind.setdefault(s.bad[finding.name], []).append(int(flagged))
                    if s.bad[finding.name] in ("renamed method", "invented function", "invented class", "moved file"):
                        unknown_tp += finding.status == "unknown"
                        unknown_fn += finding.status != "unknown"
                if flagged != bad:
                    errors.append((corpus, "false flag" if flagged else "missed", finding, s.text))
            missing = set(s.bad) - {f.name for f in g.findings}
            for name in missing:                                 # a corrupted claim the extractor never saw
                fn += 1
                by_kind.setdefault(s.bad[name], []).append(0)
                errors.append((corpus, "not extracted", name, s.text))
        print(f"{corpus}: {len(table.files)} files, {len(table)} symbols (built in {build_s:.1f}s), "
              f"{len(snippets)} snippets", file=sys.stderr)
    precision = tp / (tp + fp) if tp + fp else float("nan")
    recall = tp / (tp + fn) if tp + fn else float("nan")
    q = statistics.quantiles(times, n=20)
    print(f"\n{n_snippets} snippets ({sum(1 for _ in by_kind.values())} corruption kinds), {n_claims} claims checked")
    print(f"flagged (unknown | mismatch | miscited): precision {precision:.3f} ({tp}/{tp + fp}), "
          f"recall {recall:.3f} ({tp}/{tp + fn}); {fp} real claims flagged, {tn} passed")
    print(f"unknown status on renamed/invented/moved names: recall {unknown_tp / max(1, unknown_tp + unknown_fn):.3f} "
          f"({unknown_tp}/{unknown_tp + unknown_fn})")
    for kind, hits in sorted(by_kind.items()):
        print(f"  {kind:18s} caught {sum(hits)}/{len(hits)}")
    print(f"check time per answer: p50 {statistics.median(times) * 1000:.2f} ms, p95 {q[18] * 1000:.2f} ms, "
          f"max {max(times) * 1000:.2f} ms; symbol table load + lookups (once per generation): "
          f"{max(load_times) * 1000:.0f} ms max")
    if a.show_errors:
        for corpus, what, finding, text in errors:
            print(f"\n[{corpus}] {what}: {finding}\n  {text}")


if __name__ == "__main__":
    main()
