"""What a question is made of, and what that changes in a search: its words, the code names it gives, whether it
is a short plain-language question or a long report; the fusion weights and the list shape that follow from it.
`ragbit/search/searcher.py` asks these once per search.

Why the lexical list weighs less for plain-language questions: a short question with no identifier in it
("Load a template by name and return it") shares few words with the code that answers it, and BM25 then
ranks whatever repeats those words; the embedding model matches meaning. For such questions (at most
PLAIN_MAX_WORDS words, no snake_case / camelCase / dotted name, no backticks or call parentheses) BM25's
list counts PLAIN_LEXICAL_WEIGHT in the fusion instead of 1. Chosen on 58 questions of the docstring set
(jinja2, werkzeug): gold function inside the 1,500-token context .621 with weight 1, .672 with 0.3, .690 with
0.15; attrs, tqdm and packaging were held out. Issue texts and questions that name code keep weight 1.

Why a long report's title is searched on its own: a bug report starts with a line that says what is wrong in a few
words ("Return values of non converged affinity propagation clustering"), then a traceback, a snippet, what was
expected. The embedding model reads the first 256 tokens of the whole report as one averaged meaning, and BM25
counts the title's words as a handful among hundreds; the title alone is the short, plain question the embedding
model matches best. So hybrid search of a report of more than PLAIN_MAX_WORDS words whose first line is a title
(`report_title`) fuses one more list, dense search of the title, at TITLE_WEIGHT. Until session 15 a long report's
whole-text embedding also counted only 0.25 in a prompt's fusion (chosen in session 10, before the learned reranker
reordered prompts); with the reranker it is better at full weight. Measured (session 15), issue set, the 91 reports
with line targets of the 13 projects embedded then, gold function >= 80% inside the 1,000 / 1,500 / 3,000-token
context: .429 / .516 / .637 (weight 0.25, no title) -> .429 / .538 / .670 (weight 1) -> .462 / .538 / .670 (and the
title at 0.5; 0.3 the same, 1.0 .440 / .538 / .681); at 1,000 tokens both halves of the set (alternate reports by
id) gain. In a list of 20 (reranked, see searcher.py), all 109 reports: file R@10 .853 -> .872, MRR@10 .660 ->
.670, chunk R@10 .683 both; BM25 of the title added nothing.

Why a list's head is the best hits and its tail new files (`list_head`, `[search] new_files_share`): the answer's
file often holds several of the best chunks (the function, the helper it calls, the class around it), so a
per-file cap (2 per file until session 14) pushed them out of the first ten; but a list a person reads should
also show the other files worth a look. So the first half of a list is the best hits wherever they are, and the
second half adds only files not yet in it (the best hit of each). The order of files is the fused order either
way, so file-level recall does not move. Measured (session 14, k = 20 as score.py asks): issue set (109 reports),
lexical, cap 2 -> head and tail: chunk R@5 / R@10 .416 / .455 -> .455 / .564, file R@10 .761 both; hybrid on the
26 reports of the eight smaller projects chunk R@10 .538 -> .654; docstring set (127 short questions), hybrid,
cap 6 -> head and tail: chunk R@10 .843 -> .898, file R@10 1.000 both. The caps (`list_cap`) remain as settings.
"""
from __future__ import annotations

import re

PLAIN_LEXICAL_WEIGHT = 0.2  # BM25's weight in the fusion for a plain-language question (see above)
PLAIN_MAX_WORDS = 40
TITLE_WEIGHT = 0.5         # RRF weight of dense search of a long report's title in hybrid search (see above)
RERANK_MAX_WORDS = PLAIN_MAX_WORDS   # questions the learned reranker reorders (ragbit/search/rerank.py)

WORDS = re.compile(r"[A-Za-z_][\w.]*\w|[A-Za-z_]")
CODE_WORD = re.compile(r"_|\.|[a-z][A-Z]")
CALLED = re.compile(r"\b([A-Za-z_]\w*)\s*\(")
KEYWORDS = {"if", "elif", "for", "while", "switch", "catch", "return", "and", "or", "not", "in", "with", "assert",
             "yield", "await", "lambda", "function", "sizeof", "typeof", "print", "Traceback"}


def is_short(query: str, limit: int = PLAIN_MAX_WORDS) -> bool:
    """At most `limit` words: a question that asks for one thing, not a long report."""
    return len(WORDS.findall(query)) <= limit


_BACKTICKED = re.compile(r"`([^`\n]{1,80})`")


def code_identifiers(query: str) -> list[str]:
    """The words of a question that name code: snake_case, camelCase, dotted names, `name(`, and what is in
    backticks; each once, in order."""
    found = [w for w in WORDS.findall(query) if CODE_WORD.search(w)]
    found += CALLED.findall(query)
    for quoted in _BACKTICKED.findall(query):
        found += WORDS.findall(quoted)
    return [w for w in dict.fromkeys(found) if w not in KEYWORDS]


def is_plain_language(query: str) -> bool:
    """A short question that names no code: no identifier with `_`, `.` or camelCase, no backticks or `()`."""
    if "`" in query or "()" in query:
        return False
    words = WORDS.findall(query)
    return len(words) <= PLAIN_MAX_WORDS and not any(CODE_WORD.search(w) for w in words)


def fusion_weights(query: str) -> tuple[float, float]:
    """(BM25, dense) weights of hybrid search's fusion for this question: BM25 counts less for a short
    plain-language question (see the module docstring)."""
    if is_plain_language(query):
        return PLAIN_LEXICAL_WEIGHT, 1.0
    return 1.0, 1.0


def report_title(query: str) -> str:
    """The title of a long report: its first line, when more lines follow and it has 2 to PLAIN_MAX_WORDS words
    (a leading Markdown `#` dropped); "" for a short question or a report without one (one that starts with
    its traceback has none)."""
    first, _, rest = query.strip().partition("\n")
    first = first.strip().lstrip("#").strip()
    if not rest.strip() or is_short(query) or not 2 <= len(WORDS.findall(first)) <= PLAIN_MAX_WORDS \
            or first.startswith("Traceback ("):
        return ""
    return first


# Stack frames as runtimes print them. Python and pytest print the innermost call last; the others print it first.
# Each pattern's groups: (file, line, function); Java gives the class's dotted name instead of a path.
_PYTHON_FRAMES = (re.compile(r'File "([^"\n]+)", line (\d+), in ([\w<>]+)'),                    # CPython
                  re.compile(r'^[ \t]*([^\s:"]+\.py):(\d+): in ([\w<>]+)', re.MULTILINE))        # pytest
_OTHER_FRAMES = (
    re.compile(r'^[ \t]*at (?:async )?(?:new )?([\w$.<>\[\] ]+?) \(([^()\s]+?):(\d+):\d+\)', re.MULTILINE),  # V8
    re.compile(r'^[ \t]*at ([\w$.]+)\.([\w$<>]+)\(([\w$]+\.(?:java|kt|scala)):(\d+)\)', re.MULTILINE),    # JVM
    re.compile(r'^([\w./*()-]+)\.(\w+)\([^\n]*\)\n[ \t]+(\S+\.go):(\d+)', re.MULTILINE),                   # Go
    re.compile(r'^[ \t]*\d+: ([\w:<>]+)::(?!h[0-9a-f]{16}\b)(\w+)(?:::h[0-9a-f]{16})?\n[ \t]+at (\S+\.rs):(\d+)',
               re.MULTILINE),                                                                            # Rust
)


def _frame(pattern_index: int, m: re.Match) -> tuple[str, int, str]:
    """(file as written, line, function) of one match of _OTHER_FRAMES[pattern_index]."""
    if pattern_index == 0:                                   # at Cart.addItem (/app/src/cart.js:3:12)
        return m.group(2), int(m.group(3)), m.group(1).rsplit(".", 1)[-1]
    if pattern_index == 1:                                   # at com.shop.Cart$Inner.add(Cart.java:3)
        package = m.group(1).split("$")[0].rpartition(".")[0]
        return (package.replace(".", "/") + "/" if package else "") + m.group(3), int(m.group(4)), m.group(2)
    # Go: main.(*Cart).AddItem(...) \n /app/main.go:3; Rust: 3: shop::cart::Cart::add_item \n at ./src/cart.rs:3
    return m.group(3), int(m.group(4)), m.group(2)


def traceback_frames(query: str) -> list[tuple[str, int, str]]:
    """(file as written, line, function) of every stack frame the question quotes (Python, pytest, JavaScript,
    JVM, Go and Rust formats), innermost first (the order in which a reader looks for the fault), each once;
    anonymous and module-level frames (`<module>`, `<anonymous>`) left out."""
    found: list[tuple[int, list[tuple[str, int, str]]]] = []    # (where in the text, its frames innermost first)
    python = sorted((m.start(), (m.group(1), int(m.group(2)), m.group(3)))
                    for pattern in _PYTHON_FRAMES for m in pattern.finditer(query))
    if python:
        found.append((python[0][0], [frame for _, frame in reversed(python)]))
    for i, pattern in enumerate(_OTHER_FRAMES):
        frames = [(m.start(), _frame(i, m)) for m in pattern.finditer(query)]
        if frames:
            found.append((frames[0][0], [frame for _, frame in frames]))
    ordered = [(path.replace("\\", "/"), line, name) for _, frames in sorted(found) for path, line, name in frames
               if name and not name.startswith("<")]
    return list(dict.fromkeys(ordered))


def list_cap(query: str, search_cfg) -> int:
    """Hits per file in a result list when the caller sets none: `[search] short_max_hits_per_file` for a question of
    at most PLAIN_MAX_WORDS words (it asks for one thing, and the best file's other definitions are likely
    answers), `max_hits_per_file` otherwise (a long report spans files)."""
    if is_short(query):
        return search_cfg.short_max_hits_per_file
    return search_cfg.max_hits_per_file


def list_head(k: int, search_cfg) -> int | None:
    """How many hits of a `k`-hit list are the best ones wherever they are, before the list adds only files not yet
    in it (`[search] new_files_share`); None when the whole list is ranked by score."""
    if search_cfg.new_files_share <= 0:
        return None
    return max(1, round(k * (1 - search_cfg.new_files_share)))
