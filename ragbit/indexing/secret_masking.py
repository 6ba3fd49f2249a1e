"""Mask secrets inside ordinary files before anything else sees the text.

Why here and not later: the walker's text is what gets chunked, tokenized for BM25, embedded, stored in the
chunk table, shown by `ragbit search` and packed into prompts. Masking it once, right after decoding, keeps a
token out of all of them. Files that are secrets by name (`.env`, keys, ...) are never read at all (walker).

Why a pattern table and not a library: detect-secrets 1.5.0 (the well-kept pure-Python choice) scanned
Django's source at ~0.1 MB/s here (its per-line plugin loop; ~11 minutes for Django's 66 MB), and its
entropy plugins flag ordinary prose and identifiers by the hundred. This table follows gitleaks: each rule has
cheap keywords that must occur in the file (lower-cased) before its regex runs, so a typical source file costs
a few substring tests.

A match is replaced in place by `[REDACTED:<rule>]`; newlines inside a match (a PEM block) are kept, so every
line number stays what it is on disk. Bump `MASKING_VERSION` when the rules change: indexes re-chunk once.
"""
from __future__ import annotations

import math
import re
from collections import Counter
from dataclasses import dataclass

MASKING_VERSION = 1

# Languages where a bare word after `password:` is a value, not a variable (YAML, INI, .env-like, shell, ...).
CONFIG_SUFFIXES = frozenset({
    "yaml", "yml", "ini", "cfg", "conf", "config", "toml", "properties", "env", "sh", "bash", "zsh", "xml", "json",
    "tf", "hcl", "service", "",
})


@dataclass(frozen=True)
class _Rule:
    name: str
    keywords: tuple[str, ...]        # lower-case; the regex runs only if one occurs in the lower-cased text
    regex: re.Pattern
    group: int = 0                   # which group is the secret


def _rule(name: str, keywords: tuple[str, ...], pattern: str, group: int = 0, flags: int = 0) -> _Rule:
    return _Rule(name, keywords, re.compile(pattern, flags), group)


_RULES = (
    _rule("private-key", ("private key",),
          r"-----BEGIN[ A-Z0-9_-]{0,40}PRIVATE KEY(?: BLOCK)?-----[\s\S]*?-----END[ A-Z0-9_-]{0,40}PRIVATE KEY(?: BLOCK)?-----"),
    _rule("aws-access-key", ("akia", "asia", "abia", "acca", "a3t"),
          r"\b((?:AKIA|ASIA|ABIA|ACCA|A3T[A-Z0-9])[A-Z0-9]{16})\b", 1),
    _rule("aws-secret-key", ("aws",),
          r"(?i)aws.{0,24}?(?:secret|key).{0,24}?[\"'=:\s]\s*[\"']?([A-Za-z0-9/+]{40})(?![A-Za-z0-9/+])", 1),
    _rule("github-token", ("ghp_", "gho_", "ghu_", "ghs_", "ghr_", "github_pat_"),
          r"\b((?:gh[pousr]_[A-Za-z0-9]{30,255})|github_pat_[A-Za-z0-9_]{22,255})\b", 1),
    _rule("gitlab-token", ("glpat-", "glptt-", "gldt-", "glrt-", "glcbt-", "glsoat-", "gloas-"),
          r"\b(gl(?:pat|ptt|dt|rt|cbt|soat|oas)-[A-Za-z0-9_\-]{20,})", 1),
    _rule("slack-token", ("xox",), r"\b(xox[abposr]-[A-Za-z0-9-]{10,})", 1),
    _rule("slack-webhook", ("hooks.slack.com",), r"(hooks\.slack\.com/(?:services|workflows)/[A-Za-z0-9+/_-]{20,})", 1),
    _rule("stripe-key", ("sk_live", "sk_test", "rk_live", "rk_test"), r"\b([sr]k_(?:live|test)_[A-Za-z0-9]{16,})\b", 1),
    _rule("google-api-key", ("aiza",), r"\b(AIza[0-9A-Za-z_\-]{35})(?![0-9A-Za-z_\-])", 1),
    _rule("openai-key", ("sk-",), r"(?<![A-Za-z0-9_-])(sk-(?:proj-|ant-[a-z0-9]+-)?[A-Za-z0-9_\-]{32,})", 1),
    _rule("npm-token", ("npm_",), r"\b(npm_[A-Za-z0-9]{36})\b", 1),
    _rule("pypi-token", ("pypi-",), r"(pypi-AgE[A-Za-z0-9_\-]{50,})", 1),
    _rule("jwt", ("eyj",), r"\b(eyJ[A-Za-z0-9_-]{10,}\.eyJ[A-Za-z0-9_-]{10,}\.[A-Za-z0-9_-]{10,})", 1),
    # scheme://user:PASSWORD@host  (also postgres+psycopg://, mongodb+srv://, redis://:PASSWORD@host)
    _rule("url-password", ("://",), r"\b[a-zA-Z][a-zA-Z0-9+.\-]{1,30}://[^\s:/@\"'<>]*:([^\s/@\"'<>]{3,})@[\w.\-\[]", 1),
)

# `password = "..."`, `secret: ...`, `API_KEY=...`, `"client_secret": "..."`: key names that hold secrets.
# The regex starts at the key word itself (what precedes it in the name does not matter): a leading `[\w]*`
# would be tried at every position of the file and made this rule 30x slower.
_SECRET_KEY = r"(?:passw(?:or)?d|passwd|pwd|secret|api[_\-]?key|apikey|access[_\-]?key|auth[_\-]?token|" \
              r"access[_\-]?token|refresh[_\-]?token|private[_\-]?key|client[_\-]?secret|credentials?|token)[\w.\-]*"
# It runs on the lower-cased text (10x faster than re.IGNORECASE); values are then cut from the original.
_ASSIGNMENT_SOURCE = (_SECRET_KEY + r"[\"']?[ \t]*(?::=|=>|=|:)[ \t]*"
                      r"(?:(?P<q>[\"'])(?P<quoted>[^\"'\n]{1,400})(?P=q)|(?P<bare>[^\s\"'#;,()\[\]{}<>]{1,400}))")
_ASSIGNMENT = re.compile(_ASSIGNMENT_SOURCE)
_ASSIGNMENT_ANY_CASE = re.compile(_ASSIGNMENT_SOURCE, re.IGNORECASE)   # when lower() changes the length
_ASSIGNMENT_KEYWORDS = ("pass", "pwd", "secret", "key", "token", "credential")

# Values that are plainly not secrets: references, placeholders, types and literals.
_NOT_A_VALUE = re.compile(r"(?i)^(?:none|null|nil|true|false|yes|no|undefined|str|string|int|bool|bytes|optional\b.*"
                          r"|\$\{?[\w.]+\}?|\{\{.*\}\}|%\(?\w*\)?s?|<[^>]*>|\*+|x+|\.\.\.|changeme|your[_\-].*|"
                          r"os\.environ.*|env\(.*|process\.env.*)$")
_PLACEHOLDER = re.compile(r"(?i)^(?:password|passwd|pass|pwd|secret|token|\$\{?\w+\}?|\{\w*\}|<\w+>|\*+|x+)$")
_IDENTIFIER_LIKE = re.compile(r"^[a-z_][a-z0-9_\-]*$|^[A-Z_][A-Z0-9_]*$|^[\w]+(?:\.[\w]+)+(?:\(.*)?$|^\w+\(.*$|^\[.*$")
_FILE_NAME = re.compile(r"^[A-Za-z_][\w\-./]*\.[a-z]{2,5}$")

# A long quoted random-looking string anywhere ("generic high-entropy token"): mixed case and digits, no
# spaces, and an entropy no hex digest or word reaches.
_QUOTED_TOKEN = re.compile(r"[\"']([A-Za-z0-9+/_\-]{32,200}={0,2})[\"']")
_MIN_ENTROPY = 4.5


def shannon_entropy(s: str) -> float:
    n = len(s)
    return -sum(c / n * math.log2(c / n) for c in Counter(s).values()) if n else 0.0


def _looks_random(value: str) -> bool:
    """Mixed classes and high entropy, and not an alphabet written out in order ("ABC...xyz0123...")."""
    if not (any(c.isupper() for c in value) and any(c.islower() for c in value) and any(c.isdigit() for c in value)):
        return False
    runs = sum(1 for a, b in zip(value, value[1:]) if ord(b) - ord(a) == 1)
    return runs < len(value) // 4 and shannon_entropy(value) >= _MIN_ENTROPY


def _is_secret_value(value: str, quoted: bool, config_like: bool) -> bool:
    value = value.strip()
    if len(value) < 4 or _NOT_A_VALUE.match(value):
        return False
    if quoted:
        if " " in value:                         # a message ("Enter your password"), not a value
            return False
        if config_like:
            return True
        # in code a quoted value must look like a credential, not a word, a key name or a format string
        return (len(value) >= 6 and not _IDENTIFIER_LIKE.match(value) and not _FILE_NAME.match(value)
                and "{" not in value and "%" not in value)
    # bare: in code an expression (`password = form.x`); in a config file (YAML, .ini, shell) the value itself
    return config_like


def find_secrets(text: str, path: str = "") -> list[tuple[int, int, str]]:
    """(start, end, rule) spans of secrets in `text`, sorted and not overlapping."""
    lower = text.lower()
    spans: list[tuple[int, int, str]] = []
    for rule in _RULES:
        if any(k in lower for k in rule.keywords):
            for m in rule.regex.finditer(text):
                if rule.name == "url-password" and _PLACEHOLDER.match(m.group(rule.group)):
                    continue                     # "user:password@host" in docs is a placeholder
                spans.append((m.start(rule.group), m.end(rule.group), rule.name))
    if any(k in lower for k in _ASSIGNMENT_KEYWORDS):
        suffix = path.rsplit("/", 1)[-1]
        suffix = suffix.rsplit(".", 1)[-1].lower() if "." in suffix.lstrip(".") else ""
        config_like = suffix in CONFIG_SUFFIXES
        same_length = len(lower) == len(text)           # lower() of a few non-ASCII letters adds characters
        regex, subject = (_ASSIGNMENT, lower) if same_length else (_ASSIGNMENT_ANY_CASE, text)
        for m in regex.finditer(subject):
            group = "quoted" if m.group("quoted") is not None else "bare"
            start, end = m.span(group)
            if _is_secret_value(text[start:end], group == "quoted", config_like):
                spans.append((start, end, "assignment"))
    if len(text) >= 34:
        for m in _QUOTED_TOKEN.finditer(text):
            if _looks_random(m.group(1)):
                spans.append((m.start(1), m.end(1), "high-entropy"))
    spans.sort()
    merged: list[tuple[int, int, str]] = []
    for s, e, name in spans:
        if merged and s < merged[-1][1]:
            if e > merged[-1][1]:
                merged[-1] = (merged[-1][0], e, merged[-1][2])
            continue
        merged.append((s, e, name))
    return merged


def mask_secrets(text: str, path: str = "") -> tuple[str, int]:
    """(text with every secret replaced by `[REDACTED:rule]`, number of secrets). Line count is unchanged."""
    spans = find_secrets(text, path)
    if not spans:
        return text, 0
    out, pos = [], 0
    for s, e, name in spans:
        out.append(text[pos:s])
        newlines = text.count("\n", s, e)
        out.append(f"[REDACTED:{name}]" + "\n" * newlines)   # a PEM block keeps its lines (as empty ones)
        pos = e
    out.append(text[pos:])
    return "".join(out), len(spans)
