"""Check an answer's claims (`claims.py`) against the symbol table and the packed context.

Each name, call and path gets one status:

    context      defined in (or, for a name the table does not know, written in) a block of the packed context
    repo         defined in the repository, outside the context
    dependency   not defined here, but imported by the repository (`np.zeros` with `import numpy as np`), from
                 the standard library, or a member a class inherits from a base defined outside the repository
    unknown      none of these: the model may have invented it (with the closest defined names as suggestions)
    mismatch     defined, but called with arguments its signature does not take (Python signatures)
    miscited     a citation [n] whose block does not hold the name cited with it (or there is no block n)

Why a member reached through an unknown receiver (`searcher.search`, `self.table`) counts as defined when some
class defines that member: the receiver is a variable whose type the answer does not say, and flagging every
such name would bury the real inventions; a member defined nowhere is still flagged.
"""
from __future__ import annotations

import re
import time
from dataclasses import dataclass, field
from typing import Any

from ragbit.symbols.claims import STDLIB, Claim, extract_claims, split_bracketed
from ragbit.symbols.table import Symbol, SymbolTable

FLAGGED = ("unknown", "mismatch", "miscited")
_WORD = re.compile(r"[A-Za-z_]\w*")
_BASES = re.compile(r"^class\s+\w+\s*\((.*)\)")


@dataclass
class Finding:
    name: str
    kind: str                        # name | call | path | citation
    status: str                      # see the module docstring
    location: str | None = None      # "path:start-end" of a definition (the first, when several)
    suggestion: str | None = None    # for unknown names: the closest defined name
    detail: str = ""                 # why it is a mismatch or a wrong citation; where a dependency comes from

    def to_json(self) -> dict[str, Any]:
        return {"name": self.name, "kind": self.kind, "status": self.status, "location": self.location,
                "suggestion": self.suggestion, "detail": self.detail}


@dataclass
class Grounding:
    findings: list[Finding] = field(default_factory=list)
    seconds: float = 0.0
    note: str = ""                   # why nothing was checked (an index without a symbol table), else ""

    @property
    def flagged(self) -> list[Finding]:
        return [f for f in self.findings if f.status in FLAGGED]

    def to_json(self) -> list[dict[str, Any]]:
        return [f.to_json() for f in self.findings]

    def summary(self) -> str:
        """One line for under the answer: `checked 9 names: 8 found, 1 unknown: X (did you mean Y?)`."""
        if self.note:
            return f"not checked: {self.note}"
        names = [f for f in self.findings if f.kind != "citation"]
        if not self.findings:
            return ""
        found = sum(f.status not in FLAGGED for f in names)
        parts = [f"{found} found"]
        for status, label in (("unknown", "unknown"), ("mismatch", "wrong call"), ("miscited", "wrong citation")):
            bad = [f for f in self.findings if f.status == status]
            if bad:
                shown = ", ".join(_describe(f) for f in bad[:4]) + (", ..." if len(bad) > 4 else "")
                parts.append(f"{len(bad)} {label}{'s' if len(bad) > 1 and status != 'unknown' else ''}: {shown}")
        return f"checked {len(names)} name{'s' if len(names) != 1 else ''}: " + ", ".join(parts)


def _describe(f: Finding) -> str:
    if f.status == "unknown":
        return f.name + (f" (did you mean {f.suggestion}?)" if f.suggestion else "")
    return f"{f.name} ({f.detail})" if f.detail else f.name


def check_answer(answer: str, table: SymbolTable, blocks: list[Any] = ()) -> Grounding:
    """Every claim of `answer` classified; `blocks` are the packed context's blocks (n, path, start_line,
    end_line, text)."""
    t0 = time.perf_counter()
    checker = _Checker(table, list(blocks))
    findings = []
    for claim in extract_claims(answer):
        finding = checker.claim(claim)
        if finding is not None:
            findings.append(finding)
            findings += checker.citations(claim)
    return Grounding(findings, time.perf_counter() - t0)


class _Checker:
    def __init__(self, table: SymbolTable, blocks: list[Any]):
        self.table, self.blocks = table, blocks
        self.by_n = {b.n: b for b in blocks}
        self.context_text = "\n".join(b.text for b in blocks)
        self.context_words = set(_WORD.findall(self.context_text))

    # ------------------------------------------------------------------ one claim
    def claim(self, claim: Claim) -> Finding | None:
        if claim.kind == "path":
            return self.path(claim)
        name = claim.name
        symbols = self.table.resolve(name)
        if symbols:
            finding = Finding(name, claim.kind, self._where(symbols), _location(symbols[0]))
            if claim.kind == "call":
                problem = self._call_problem(name, symbols, claim)
                if problem:
                    finding.status, finding.detail = "mismatch", problem
            return finding
        parts = name.split(".")
        status, detail = self._unresolved(parts)
        if status == "repo" and claim.kind == "call":              # a member through a variable: any fits?
            members = [s for s in self.table.find(parts[-1]) if s.kind == "method"]
            problem = self._call_problem(name, members, claim) if members else ""
            if problem:
                return Finding(name, claim.kind, "mismatch", detail=problem)
        if status is None:
            if not claim.in_code and claim.kind == "name" and len(parts) == 1 and name not in self.context_words:
                # a snake_case word of prose that names nothing: too weak to flag (`the max_tokens setting`
                # might be English); flagged when it is close to a defined name
                suggestion = self._suggest(name)
                return Finding(name, claim.kind, "unknown", suggestion=suggestion) if suggestion else None
            return Finding(name, claim.kind, "unknown", suggestion=self._suggest(name))
        return Finding(name, claim.kind, status, detail=detail)

    def _unresolved(self, parts: list[str]) -> tuple[str | None, str]:
        """(status, detail) of a name the table does not define, or (None, "") when it is unknown."""
        name = ".".join(parts)
        dependency = self.table.dependency(name)
        if dependency is not None:
            return "dependency", f"from {dependency}"
        if parts[0] in STDLIB and (len(parts) > 1 or name in STDLIB):
            return "dependency", f"from {parts[0]} (standard library)"
        if name in self.context_text and (len(parts) > 1 or name in self.context_words):
            return "context", ""
        if len(parts) == 1:
            return None, ""
        owner, member = ".".join(parts[:-1]), parts[-1]
        owners = self.table.resolve(owner)
        if owners:
            inherited = self._inherited(owners, member)
            if inherited is None:
                return None, ""
            return inherited, ("inherited from a base class" if inherited == "repo"
                               else "inherited from a base outside the repository")
        if self.table.find(member) or member in self.context_words:
            return "repo", "a member reached through a variable"
        return None, ""

    def _inherited(self, owners: list[Symbol], member: str, depth: int = 0) -> str | None:
        """"repo" when a base class of `owners` defined in the repository has `member`, "dependency" when a base
        is defined outside it (the member may come from there), else None."""
        external = False
        for owner in owners:
            bases = _BASES.match(owner.signature) if owner.kind == "class" else None
            for base in (_top_level_split(bases.group(1)) if bases else []):
                base = base.split("[")[0].strip()
                if not base or "=" in base or base == "object":
                    continue
                resolved = self.table.resolve(base)
                if not resolved:
                    known = _outside_base_has(base, member)
                    if known:
                        return "dependency"
                    external = external or known is None
                elif self.table.resolve(f"{resolved[0].name}.{member}"):
                    return "repo"
                elif depth < 3:
                    found = self._inherited(resolved, member, depth + 1)
                    if found == "repo":
                        return found
                    external = external or found == "dependency"
        return "dependency" if external else None

    def _suggest(self, name: str) -> str | None:
        found = self.table.suggest(name, limit=1)
        return found[0] if found else None

    def _where(self, symbols: list[Symbol]) -> str:
        for s in symbols:
            for b in self.blocks:
                if b.path == s.path and b.start_line <= s.end_line and s.start_line <= b.end_line:
                    return "context"
        return "repo"

    # ------------------------------------------------------------------ paths
    def path(self, claim: Claim) -> Finding:
        path = claim.name.lstrip("./") if claim.name.startswith("./") else claim.name
        files = self.table.files
        if path in files:
            return Finding(claim.name, "path", self._path_status(path), path)
        matches = [p for p in files if p.endswith("/" + path) or path.endswith("/" + p)]
        if matches:
            return Finding(claim.name, "path", self._path_status(matches[0]), matches[0])
        base = path.rsplit("/", 1)[-1]
        same_name = [p for p in files if p.rsplit("/", 1)[-1] == base]
        if not same_name and "/" not in path and base in self.context_text:
            return Finding(claim.name, "path", "context")
        suggestion = same_name[0] if same_name else None
        if suggestion is None:
            from rapidfuzz import process
            best = process.extractOne(path, list(files), score_cutoff=70)
            suggestion = best[0] if best else None
        return Finding(claim.name, "path", "unknown", suggestion=suggestion)

    def _path_status(self, path: str) -> str:
        return "context" if any(b.path == path for b in self.blocks) else "repo"

    # ------------------------------------------------------------------ citations
    def citations(self, claim: Claim) -> list[Finding]:
        out = []
        for n in claim.citations:
            block = self.by_n.get(n)
            label = f"[{n}] {claim.name}"
            if block is None:
                out.append(Finding(label, "citation", "miscited", detail=f"there is no block {n}"))
            elif not self._block_holds(block, claim):
                out.append(Finding(label, "citation", "miscited", detail=f"block {n} does not contain it"))
            else:
                out.append(Finding(label, "citation", "context", f"{block.path}:{block.start_line}-{block.end_line}"))
        return out

    @staticmethod
    def _block_holds(block: Any, claim: Claim) -> bool:
        if claim.kind == "path":
            return block.path == claim.name or block.path.endswith("/" + claim.name.lstrip("./")) \
                or claim.name in block.text
        last = claim.name.rsplit(".", 1)[-1]
        return re.search(rf"(?<!\w){re.escape(last)}(?!\w)", block.text) is not None

    # ------------------------------------------------------------------ calls
    def _call_problem(self, name: str, symbols: list[Symbol], claim: Claim) -> str:
        """Why the call does not fit any of the definitions' signatures ("" when one fits or none can tell)."""
        if claim.args is None:
            return ""
        problems = []
        for s in symbols:
            signature, bound = s.signature, s.kind == "method"
            if s.kind == "class":
                init = self.table.find(f"{s.name}.__init__")
                if not init:
                    return ""
                signature, bound = init[0].signature, True
            problem = _signature_problem(signature, claim.args, claim.keywords, bound)
            if problem is None or problem == "":
                return ""
            problems.append(problem)
        return problems[0] if problems else ""


# typing's names for builtin containers: their members are the builtin's
_TYPING_BUILTINS = {"Dict": dict, "List": list, "Set": set, "FrozenSet": frozenset, "Tuple": tuple, "Type": type,
                    "DefaultDict": dict, "Mapping": dict, "MutableMapping": dict, "Sequence": list,
                    "MutableSequence": list, "AbstractSet": set, "MutableSet": set}


def _outside_base_has(base: str, member: str) -> bool | None:
    """Whether a base class defined outside the repository has `member`: known for builtins, typing's container
    names and classes of modules this process has already imported (nothing is imported to find out); None
    when it cannot be known (a third-party base: the member may be there)."""
    import builtins
    import sys
    name = base.rsplit(".", 1)[-1]
    cls = _TYPING_BUILTINS.get(name) or (getattr(builtins, base, None) if "." not in base else None)
    if cls is None and "." in base:
        module = sys.modules.get(base.rsplit(".", 1)[0])
        cls = getattr(module, name, None) if module is not None else None
    if cls is None:
        for module_name in ("collections", "collections.abc", "typing", "enum", "abc", "io", "threading"):
            module = sys.modules.get(module_name)
            if module is not None and isinstance(getattr(module, name, None), type):
                cls = getattr(module, name)
                break
    if not isinstance(cls, type):
        return None
    return hasattr(cls, member)


def _top_level_split(text: str) -> list[str]:
    """`A[str, int], B` -> ["A[str, int]", "B"]: commas outside brackets only."""
    return (split_bracketed(text + ")", 0) or ([], 0))[0]


def _location(s: Symbol) -> str:
    return f"{s.path}:{s.start_line}-{s.end_line}"


def _split_params(signature: str) -> list[str] | None:
    """The parameters of a Python `def` header; None for other headers, or one cut short (very long)."""
    if not signature.startswith(("def ", "async def ")) or "(" not in signature:
        return None
    split = split_bracketed(signature, signature.index("(") + 1)
    return split[0] if split is not None else None


def _signature_problem(signature: str, n_args: int, keywords: list[str], bound: bool) -> str | None:
    """None when the signature cannot be read; "" when the call fits; else what is wrong."""
    params = _split_params(signature)
    if params is None:
        return None
    positional, kwonly, required = [], [], []
    varargs = varkw = False
    star_seen = False
    for i, p in enumerate(params):
        name = re.match(r"\*{0,2}\s*(\w*)", p).group(1)
        if not name and p not in ("*", "/"):
            return None                                  # a parameter this reader does not understand
        if p.startswith("**"):
            varkw = True
        elif p.startswith("*"):
            varargs, star_seen = varargs or bool(name), True
        elif p == "/":
            continue
        elif i == 0 and bound and name in ("self", "cls"):
            continue
        elif star_seen:
            kwonly.append(name)
            if "=" not in p:
                required.append(name)
        else:
            positional.append(name)
            if "=" not in p:
                required.append(name)
    if n_args > len(positional) and not varargs:
        most = len(positional)
        return f"takes {most} positional argument{'s' if most != 1 else ''}, given {n_args}"
    for k in keywords:
        if k not in positional and k not in kwonly and not varkw:
            return f"has no parameter {k!r}"
    given = set(positional[:n_args]) | set(keywords)
    missing = [r for r in required if r not in given]
    if missing and not varkw:
        return f"missing argument {missing[0]!r}"
    return ""
