"""What an answer claims about the code: the names, calls, file paths and citations it mentions.

Pure text work (no index): `ragbit/symbols/grounding.py` checks each claim against the symbol table and the
packed context. What counts as a claim, and why:

- inline code (`Searcher.search`, `index_repository(cfg, progress=False)`, `ragbit/config.py`): the model
  marks code as code; a span that is a name, a call or a path is one claim, any other span (an expression, a
  shell command) contributes the calls inside it;
- fenced code blocks: the calls they make and the names they import; names the block itself defines (its
  `def`s, classes, assignments) are local to the example and not claims;
- prose: dotted names (`cfg.query.budget`), snake_case names and `name()` calls, and file paths; plain words
  and CamelCase words outside code are not (English has too many of those);
- citations [n]: each belongs to the claim just before it on the same line, whose name block n should hold.
"""
from __future__ import annotations

import builtins
import keyword
import re
import sys
from dataclasses import dataclass, field

PATH_EXTENSIONS = ("py", "pyi", "js", "mjs", "cjs", "jsx", "ts", "tsx", "go", "rs", "java", "c", "h", "cc", "cpp",
                   "hpp", "rb", "cs", "php", "kt", "swift", "scala", "md", "rst", "toml", "yaml", "yml", "json",
                   "cfg", "ini", "txt", "sh", "html", "css", "sql", "proto")
_EXT = "|".join(PATH_EXTENSIONS)
PATH = re.compile(rf"(?<![\w/.\-])((?:\.{{0,2}}/)?(?:[\w.\-]+/)*[\w\-]+(?:\.[\w\-]+)*\.(?:{_EXT}))(?::\d+(?:-\d+)?)?(?![\w])")
DOTTED = re.compile(r"(?<![\w.])([A-Za-z_]\w*(?:\.[A-Za-z_]\w*)+)(?![\w])")
SNAKE = re.compile(r"(?<![\w.])([a-z][a-z0-9]*(?:_[a-z0-9]+)+)(?![\w(])")
CALL = re.compile(r"(?<![\w.])([A-Za-z_]\w*(?:\.[A-Za-z_]\w*)*)\(")
NAME_SPAN = re.compile(r"^[A-Za-z_]\w*(?:\.[A-Za-z_]\w*)*$")
CITATION = re.compile(r"\[(\s*\d+\s*(?:[,;]\s*\d+\s*)*)\]")
FENCE = re.compile(r"```[^\n]*\n(.*?)(?:```|\Z)", re.DOTALL)
INLINE = re.compile(r"`([^`\n]+)`")
URL = re.compile(r"\b\w+://\S+")
THINK = re.compile(r"<think>.*?(</think>|$)", re.DOTALL)
DEFINED_IN_BLOCK = re.compile(r"^\s*(?:async\s+)?(?:def|class)\s+([A-Za-z_]\w*)|^\s*([A-Za-z_]\w*)\s*(?::[^=\n]*)?=(?!=)"
                              r"|^\s*for\s+([A-Za-z_]\w*)|\bas\s+([A-Za-z_]\w*)|^\s*import\s+([A-Za-z_]\w*)",
                              re.MULTILINE)
FROM_IMPORT = re.compile(r"^[ \t]*from[ \t]+([\w.]+)[ \t]+import[ \t]+(?:\(([^)]*)\)|([\w \t,]+))", re.MULTILINE)

# Never claims: language words and builtins every program has, and prose abbreviations that look dotted.
IGNORED = (set(keyword.kwlist) | set(dir(builtins)) | {"self", "cls", "this", "super", "true", "false", "null",
           "nil", "e.g", "i.e", "etc", "vs", "args", "kwargs", "print", "len"})
PROSE_DOTTED_IGNORED = re.compile(r"^(e\.g|i\.e|a\.k\.a|vs|etc|cf|approx|no|fig|www)\b", re.IGNORECASE)
STDLIB = frozenset(sys.stdlib_module_names)


@dataclass
class Claim:
    name: str                        # "Searcher.search", "ragbit/config.py"
    kind: str                        # name | call | path
    args: int | None = None          # a call's positional argument count (None: not a call or not countable)
    keywords: list[str] = field(default_factory=list)
    citations: list[int] = field(default_factory=list)   # [n] right after it on the same line
    in_code: bool = False            # from inline code or a code block (prose claims are looser)


def extract_claims(answer: str) -> list[Claim]:
    """The claims of an answer in order of first mention, one per distinct (kind, name, args, keywords)."""
    text = THINK.sub("", answer)
    claims: list[Claim] = []
    for block in FENCE.finditer(text):
        claims += _block_claims(block.group(1))
    prose = FENCE.sub("\n", text)
    for line in prose.split("\n"):
        claims += _line_claims(URL.sub(" ", line))
    seen: dict[tuple, Claim] = {}
    for c in claims:
        key = (c.kind, c.name, c.args, tuple(c.keywords))
        if key in seen:
            seen[key].citations += [n for n in c.citations if n not in seen[key].citations]
        else:
            seen[key] = c
    return list(seen.values())


def _ignored(name: str) -> bool:
    first = name.split(".")[0]
    return name in IGNORED or (first in IGNORED and first not in ("self", "cls", "this"))


def _line_claims(line: str) -> list[Claim]:
    """Claims of one prose line, with each citation attached to the claim before it."""
    found: list[tuple[int, Claim]] = []
    taken: list[tuple[int, int]] = []
    skipped: list[int] = []             # where an ignored name (`list(...)`) stands: a citation after it is its

    def add(start: int, end: int, claim: Claim) -> None:
        if any(s <= start < e for s, e in taken):
            return
        if _ignored(claim.name):
            skipped.append(start)
            return
        taken.append((start, end))
        found.append((start, claim))

    for m in INLINE.finditer(line):
        for claim in _span_claims(m.group(1)):
            add(m.start(), m.end(), claim)
    masked = INLINE.sub(lambda m: " " * len(m.group()), line)
    for m in PATH.finditer(masked):
        add(m.start(), m.end(), Claim(m.group(1), "path"))
    for m in CALL.finditer(masked):
        args, keywords, end = _call_args(masked, m.end())
        add(m.start(), end, Claim(m.group(1), "call", _reference(args, keywords), keywords))
    for m in DOTTED.finditer(masked):
        if not PROSE_DOTTED_IGNORED.match(m.group(1)) and not m.group(1)[-1].isdigit():
            add(m.start(), m.end(), Claim(m.group(1), "name"))
    for m in SNAKE.finditer(masked):
        add(m.start(), m.end(), Claim(m.group(1), "name"))
    found.sort(key=lambda sc: sc[0])
    for m in CITATION.finditer(line):
        before = [(start, c) for start, c in found if start < m.start()]
        if before and not any(before[-1][0] < s < m.start() for s in skipped):
            before[-1][1].citations += [int(n) for n in re.split(r"[,;]", m.group(1))]
    return [c for _, c in found]


def _span_claims(span: str) -> list[Claim]:
    """Claims of one inline code span."""
    span = span.strip()
    path = PATH.fullmatch(span)
    if path:
        return [Claim(path.group(1), "path", in_code=True)]
    if NAME_SPAN.match(span):
        return [Claim(span, "name", in_code=True)]
    call = CALL.match(span)
    if call and call.start() == 0:
        args, keywords, end = _call_args(span, call.end())
        if end == len(span):
            return [Claim(call.group(1), "call", _reference(args, keywords), keywords, in_code=True)]
    if span.startswith("-") or " --" in span or span.startswith(("$", "ragbit ", "pip ", "git ", "python ")):
        return []
    return _code_claims(span)


def _reference(args: int | None, keywords: list[str]) -> int | None:
    """Outside code blocks `name()` names a function rather than calling it with no arguments: not counted."""
    return None if args == 0 and not keywords else args


def _code_claims(code: str, local: set[str] = frozenset()) -> list[Claim]:
    out = []
    for m in CALL.finditer(code):
        name = m.group(1)
        if name in local or _ignored(name):
            continue
        args, keywords, _ = _call_args(code, m.end())
        out.append(Claim(name, "call", args, keywords, in_code=True))
    return out


def _block_claims(code: str) -> list[Claim]:
    """Claims of a fenced code block: its calls (not of names it defines) and its imports."""
    local = {g for m in DEFINED_IN_BLOCK.finditer(code) for g in m.groups() if g}
    claims = []
    for m in FROM_IMPORT.finditer(code):
        module = m.group(1)
        names = re.split(r"\s*,\s*", (m.group(2) or m.group(3)).strip())
        for name in (n.split()[0] for n in names if n.split()):
            if name:
                claims.append(Claim(f"{module}.{name}" if not module.startswith(".") else name, "name",
                                    in_code=True))
    lines = [line for line in code.split("\n") if not line.lstrip().startswith(("#", "//", "$", ">>>"))
             or line.lstrip().startswith(">>>")]
    body = "\n".join(line.lstrip()[4:] if line.lstrip().startswith(">>>") else line for line in lines)
    body = re.sub(r"#[^\n]*|\"\"\".*?\"\"\"|'''.*?'''|\"(?:\\.|[^\"\\\n])*\"|'(?:\\.|[^'\\\n])*'", '""', body,
                  flags=re.DOTALL)
    body = re.sub(r"^\s*(?:async\s+)?def\s+\w+\(", "", body, flags=re.MULTILINE)   # a definition, not a call
    body = re.sub(r"^\s*class\s+\w+\(", "", body, flags=re.MULTILINE)
    for c in _code_claims(body, local):
        claims.append(c)
    return claims


def split_bracketed(text: str, start: int) -> tuple[list[str], int] | None:
    """The comma-separated parts (stripped, empty ones dropped) of the bracket opened just before `start`, and
    the index after its closing bracket; None when it never closes. Commas inside nested brackets or quotes do
    not split. Serves calls in answers and parameter lists in signatures alike."""
    depth, i, part_start, parts = 1, start, start, []
    while i < len(text) and depth:
        ch = text[i]
        if ch in "([{":
            depth += 1
        elif ch in ")]}":
            depth -= 1
            if depth == 0:
                parts.append(text[part_start:i])
        elif ch == "," and depth == 1:
            parts.append(text[part_start:i])
            part_start = i + 1
        elif ch in "\"'":
            close = text.find(ch, i + 1)
            i = close if close > 0 else i
        i += 1
    if depth:
        return None
    return [p.strip() for p in parts if p.strip()], i


def _call_args(text: str, start: int) -> tuple[int | None, list[str], int]:
    """(positional count, keyword names, end) of the argument list opening just before `start`; count None when
    the list is not closed or holds *args / **kwargs / `...`."""
    split = split_bracketed(text, start)
    if split is None:
        return None, [], len(text)
    parts, end = split
    if any(p.startswith("*") or p == "..." or p.endswith("...") for p in parts):
        return None, [], end
    keywords = [p.split("=", 1)[0].strip() for p in parts if re.match(r"^[A-Za-z_]\w*\s*=(?!=)", p)]
    return len(parts) - len(keywords), keywords, end
