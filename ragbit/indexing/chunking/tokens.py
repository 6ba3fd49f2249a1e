"""Token counters for the chunker: the embedding model's own token counts, without one tokenizer call per line.

Why: the chunker needs a cost for every line (to plan chunks) and an exact count for every chunk (the
`max_tokens` guarantee). Calling a Hugging Face tokenizer once per line plus once per chunk costs ~25 us per
call and tokenizes the source twice: ~0.3 MB of source per CPU-second, most of the time of lexical indexing.

One interface, three counters (`as_counter` picks):

    CallableCounter   any `str -> int` (the chars/3.2 estimate, test counters, fakes): one call per line
    TokenizerCounter  any `tokenizers.Tokenizer`: line costs from ONE encode-with-offsets per file, exact chunk
                      counts in batches (`encode_batch`)
    WordPieceCounter  a BERT-style tokenizer (BertNormalizer + BertPreTokenizer + WordPiece, e.g. MiniLM, mpnet,
                      bge): no token crosses whitespace or ASCII punctuation, so a text's count is the sum of
                      its words' counts. Words repeat endlessly in code, so each distinct word is tokenized once
                      and looked up after that. Exact; on Django (30 MB) 5.4 CPU-s for every line's cost, where
                      one plain encode per file takes ~20 s and one per line ~30 s.

`additive` is the property the chunker relies on to skip re-counting whole chunks: count(a + "\\n" + b) ==
count(a) + count(b). Only WordPieceCounter has it; for the others every chunk is counted exactly once more.
"""
from __future__ import annotations

import re
from itertools import chain
from typing import Callable, Sequence

# ASCII whitespace and ASCII punctuation: every one of these is a word boundary for BertPreTokenizer (it splits
# on whitespace and isolates each punctuation character), so counting word by word is exact.
_WORD = re.compile(r"[^ \t\n!-/:-@\[-`{-~]+|[!-/:-@\[-`{-~]")
_CACHE_LIMIT = 1 << 19            # distinct words (and lines) kept; beyond that a cache starts afresh


class CallableCounter:
    """Wraps a plain `str -> int` counter. Line cost = count(line + "\\n") minus the per-call overhead."""

    additive = False

    def __init__(self, count: Callable[[str], int]):
        self.count = count
        self.overhead = count("")                     # e.g. [CLS]/[SEP] if the function adds them

    def count_many(self, texts: Sequence[str]) -> list[int]:
        return [self.count(t) for t in texts]

    def line_costs(self, lines: Sequence[str]) -> list[int]:
        return [max(0, self.count(line + "\n") - self.overhead) for line in lines]


class TokenizerCounter:
    """Any `tokenizers.Tokenizer` (truncation and padding off), counting text tokens only (no special tokens).

    Line costs: the whole file is encoded once and each token is charged to the line its first character is
    on. A token that spans a newline (possible in byte-level BPE) makes that an estimate, which is all the
    planner needs: chunks are checked with `count_many`, which is exact.
    """

    additive = False
    overhead = 0

    def __init__(self, tokenizer):
        self.tokenizer = tokenizer

    def count(self, text: str) -> int:
        return len(self.tokenizer.encode(text, add_special_tokens=False).ids)

    def count_many(self, texts: Sequence[str]) -> list[int]:
        if not texts:
            return []
        return [len(e.ids) for e in self.tokenizer.encode_batch(list(texts), add_special_tokens=False)]

    def line_costs(self, lines: Sequence[str]) -> list[int]:
        import numpy as np
        if not lines:
            return []
        text = "\n".join(lines) + "\n"
        offsets = self.tokenizer.encode(text, add_special_tokens=False).offsets
        if not offsets:
            return [0] * len(lines)
        starts = np.fromiter((s for s, _ in offsets), dtype=np.int64, count=len(offsets))
        line_starts = np.cumsum([0] + [len(line) + 1 for line in lines[:-1]])
        rows = np.searchsorted(line_starts, starts, side="right") - 1
        return np.bincount(rows, minlength=len(lines)).tolist()


def _piece_counts(tokenizer, pieces: Sequence[str]) -> list[int]:
    """Token counts of many whitespace-free pieces from ONE encode of them joined by spaces.

    Valid only where a space is a token boundary (BertPreTokenizer) and no added token contains one: each
    token then lies inside one piece and is charged to the piece its first character is in."""
    import numpy as np
    starts = np.cumsum([0] + [len(p) + 1 for p in pieces[:-1]])                       # (n_pieces,)
    offsets = tokenizer.encode(" ".join(pieces), add_special_tokens=False).offsets
    if not offsets:
        return [0] * len(pieces)
    first = np.fromiter((a for a, _ in offsets), dtype=np.int64, count=len(offsets))   # (n_tokens,)
    return np.bincount(np.searchsorted(starts, first, side="right") - 1, minlength=len(pieces)).tolist()


class WordPieceCounter:
    """Exact counts for BERT-style tokenizers from cached per-word counts. Build with `supports` checked.

    Exactness argument: BertNormalizer works character by character (clean-up, CJK spacing, accents,
    lowercase), BertPreTokenizer splits at every whitespace and isolates every punctuation character, and
    WordPiece tokenizes each resulting word on its own. `_WORD` cuts only at ASCII whitespace and ASCII
    punctuation, a subset of those boundaries, so each piece tokenizes the same alone as in context. What is
    left (Unicode punctuation, CJK, control characters, over-long words) stays inside a piece and is handled
    by the tokenizer itself. The one thing matched across boundaries is an added token ("[CLS]", "[MASK]"),
    matched in the raw text (`supports` requires normalized=False): a text containing one is counted by the
    tokenizer directly.

    Two caches: word -> count, and line -> cost (most lines of code occur more than once: Django has 41 %
    distinct lines). Words not seen before are tokenized in one batch per file.
    """

    additive = True
    overhead = 0

    def __init__(self, tokenizer):
        self.tokenizer = tokenizer
        self._words: dict[str, int] = {}
        self._lines: dict[str, int] = {}
        contents = [t.content for t in tokenizer.get_added_tokens_decoder().values() if t.content]
        self._added = re.compile("|".join(map(re.escape, contents))) if contents else None

    @staticmethod
    def supports(tokenizer) -> bool:
        from tokenizers import models, normalizers, pre_tokenizers
        added = tokenizer.get_added_tokens_decoder().values()
        return (isinstance(tokenizer.model, models.WordPiece)
                and isinstance(tokenizer.pre_tokenizer, pre_tokenizers.BertPreTokenizer)
                and (tokenizer.normalizer is None or isinstance(tokenizer.normalizer, normalizers.BertNormalizer))
                and all(not t.normalized and not re.search(r"\s", t.content) for t in added))

    def _exact(self, text: str) -> int:
        return len(self.tokenizer.encode(text, add_special_tokens=False).ids)

    def _learn(self, words) -> None:
        """Put every word of `words` in the word cache (one encode for all the new ones)."""
        words = set(words)
        if len(self._words) + len(words) > _CACHE_LIMIT:
            self._words.clear()
        new = list(words.difference(self._words))
        if new:
            self._words.update(zip(new, _piece_counts(self.tokenizer, new)))

    def count(self, text: str) -> int:
        if self._added is not None and self._added.search(text):
            return self._exact(text)
        words = _WORD.findall(text)
        self._learn(words)
        return sum(map(self._words.__getitem__, words))

    def count_many(self, texts: Sequence[str]) -> list[int]:
        return [self.count(t) for t in texts]

    def line_costs(self, lines: Sequence[str]) -> list[int]:
        if self._added is not None and self._added.search("\n".join(lines)):
            return [self.count(line) for line in lines]
        distinct = set(lines)
        if len(self._lines) + len(distinct) > _CACHE_LIMIT:
            self._lines.clear()
        new = list(distinct.difference(self._lines))
        if new:
            words = list(map(_WORD.findall, new))
            self._learn(chain.from_iterable(words))
            get = self._words.__getitem__
            self._lines.update(zip(new, (sum(map(get, w)) for w in words)))
        return list(map(self._lines.__getitem__, lines))


def estimate_tokens(text: str) -> int:
    """Default token counter: ~3.2 characters per token, a fair upper-ish guess for code with BPE/WordPiece."""
    return (len(text) * 5 + 15) // 16


def counter_for_tokenizer(tokenizer):
    """The fastest exact counter for a `tokenizers.Tokenizer` (truncation and padding must be off)."""
    return WordPieceCounter(tokenizer) if WordPieceCounter.supports(tokenizer) else TokenizerCounter(tokenizer)


def as_counter(count_tokens) -> "CallableCounter | TokenizerCounter | WordPieceCounter":
    """A counter object from what callers pass: None (the estimate), a counter, or a `str -> int` function."""
    if count_tokens is None:
        return CallableCounter(estimate_tokens)
    if hasattr(count_tokens, "line_costs"):
        return count_tokens
    return CallableCounter(count_tokens)
