"""Lexical (BM25) search over code chunks, backed by bm25s.

Why a code tokenizer of our own: source code names things with compound identifiers. A question says
"how is the query set filtered", the code says `QuerySet.filter_by`. Emitting both the whole identifier and
its parts (camelCase, snake_case, dotted paths, digit runs) lets either spelling match, while the whole
identifier still rewards an exact match with a rarer (higher-idf) token. The same function tokenizes
documents and queries, so both sides always agree.

BM25 is scored at query time over immutable segments (`indexes/bm25_segments.py`, bm25s' formula), so a
re-index writes only the new documents' postings; this module tokenizes, keeps the segments' document
positions and turns scores into (position, score) pairs.
"""
from __future__ import annotations

import functools
import json
import re
import uuid
from collections import Counter
from itertools import chain
from pathlib import Path
from typing import Sequence

import numpy as np

# ----------------------------------------------------------------------------------------------------------
# tokenizer
# ----------------------------------------------------------------------------------------------------------

# A "word" is a run of identifier characters, possibly joined by dots (module.Class.method). Anything else,
# including path separators, hyphens and operators, separates words.
_WORD = re.compile(r"\w+(?:\.\w+)*")
# camelCase / PascalCase / ACRONYMWord / digit-run boundaries inside one underscore-free ASCII piece.
_CAMEL = re.compile(r"[A-Z]+(?=[A-Z][a-z])|[A-Z]?[a-z]+|[A-Z]+|[0-9]+")

# Small on purpose: English function words that dominate questions, and keywords present in nearly every
# Python/JS chunk. Anything that might name a concept ("class", "error", "test", "import" in a question about
# imports...) stays searchable.
STOP_WORDS = frozenset(
    """
    the an and or of to in on at by for from with as is are was were be been being it its this that these those
    there here what which who whom whose how why when where does do did done can could should would will shall
    may might must has have had not no but if then else than so such into onto about over under any all some
    me my we our you your they them their he she his her
    self cls def return pass none true false null var let const
    """.split()
)
# "by" is a stop word in prose but a real part of identifiers like filter_by: free-standing words and dotted
# parts (self.x) are filtered against the stop list, snake/camel pieces of an identifier are not.


@functools.lru_cache(maxsize=1 << 18)
def _identifier_tokens(word: str) -> tuple[str, ...]:
    """All tokens for one (possibly dotted) identifier: the whole thing, each dotted part, each snake piece,
    each camel/digit sub-word. Unique, in first-seen order, lowercased; () for a stop word.

    Cached: code repeats the same identifiers constantly, and this is the hot path of indexing."""
    if word.lower() in STOP_WORDS:
        return ()
    out: list[str] = [word]
    for part in word.split("."):
        if part.lower() in STOP_WORDS:      # self.x, this.y: the receiver says nothing
            continue
        out.append(part)
        pieces = [p for p in part.split("_") if p]
        if pieces != [part]:          # filter_by -> filter, by ; __init__ -> init
            out.extend(pieces)
        for piece in pieces:
            if piece.isascii():
                subs = _CAMEL.findall(piece)
                if len(subs) > 1:
                    out.extend(subs)
    seen: dict[str, None] = {}
    for tok in out:
        tok = tok.lower()
        if len(tok) > 1:
            seen.setdefault(tok, None)
    return tuple(seen)


def code_tokens(text: str) -> list[str]:
    """Lowercase search tokens for code or a question about code (same function for both sides).

    "QuerySet.filter_by" -> ["queryset.filter_by", "queryset", "query", "set", "filter_by", "filter", "by"].
    1-character tokens are dropped; a free-standing word on the stop list is dropped, a stop word that is
    only part of a compound identifier ("by" in filter_by) is kept.
    """
    return list(chain.from_iterable(map(_identifier_tokens, _WORD.findall(text))))


class _TokenIds(dict):
    """word -> ids of its `_identifier_tokens`, growing `vocab` (token -> id) as new tokens appear.

    Why: indexing turns every document into token ids. Looking each WORD up once (code repeats its words
    endlessly) does tokenizing and vocabulary mapping in one C-level pass, instead of building token strings
    and letting bm25s map them one by one."""

    def __init__(self):
        super().__init__()
        self.vocab: dict[str, int] = {}

    def __missing__(self, word: str) -> tuple[int, ...]:
        ids = self[word] = tuple(self.vocab.setdefault(t, len(self.vocab)) for t in _identifier_tokens(word))
        return ids


def corpus_token_ids(texts: Sequence[str], vocab: dict[str, int] | None = None
                     ) -> tuple[list[list[int]], dict[str, int]]:
    """(ids per document, vocabulary): document i is `code_tokens(texts[i])` mapped through the vocabulary,
    which is `vocab` (kept as is, grown by new tokens) or a new one."""
    if isinstance(vocab, _TokenIds):                # a batch of a larger corpus: its word cache is kept too
        ids = vocab
    else:
        ids = _TokenIds()
        if vocab is not None:
            ids.vocab = vocab
    lookup, find = ids.__getitem__, _WORD.findall
    docs = [list(chain.from_iterable(map(lookup, find(t)))) for t in texts]
    return docs, ids.vocab


# ----------------------------------------------------------------------------------------------------------
# index
# ----------------------------------------------------------------------------------------------------------

_META_FILE = "lexical.json"        # header: format, live document count, segments and their sizes
_POSITIONS_FILE = "positions.npy"  # per document of every segment (in segment order): table position, or -1
_FORMAT = 2                        # 1: one bm25s index (read by converting its saved token ids)
TOKENIZE_BATCH = 50_000  # documents tokenized at a time into arrays
MERGE_SHARE = 0.10    # merge everything when small segments + dead documents exceed this share of the base
MAX_SEGMENTS = 8      # merge the small segments into one when there are more


class LexicalIndex:
    """BM25 over texts tokenized with `code_tokens`. Positions are indices into the `texts` given to build.

    The postings live in immutable segments (`indexes/bm25_segments.py`): an incremental build adds one
    segment for the new documents and re-points the old ones (moved or dead), so its cost follows the
    change, not the corpus; scores are computed at query time with live-corpus statistics and equal a build
    from scratch (float32 rounding aside)."""

    def __init__(self, segments: list, positions: list[np.ndarray], n_docs: int):
        self._segments = segments           # [Segment], the first (largest) is the base
        self._positions = positions         # per segment: (len(segment),) int32 position or -1
        self._n_docs = n_docs
        total = sum(int(np.asarray(s.lengths, dtype=np.int64)[p >= 0].sum())
                    for s, p in zip(segments, positions))
        self._avg_length = total / n_docs if n_docs else 0.0

    @classmethod
    def build(cls, texts: Sequence[str], previous: "LexicalIndex | None" = None,
              same_as: Sequence[int] | None = None) -> "LexicalIndex":
        """BM25 over `texts`. With `previous`, `same_as[i]` is the position in `previous` of a document with
        exactly the text `texts[i]`, or -1: only the -1 documents are tokenized, into one new segment; the
        previous segments are kept with their documents re-pointed (or marked dead). Merges follow
        MERGE_SHARE / MAX_SEGMENTS. The result ranks and scores as a build from scratch."""
        from indexes.bm25_segments import Segment
        n = len(texts)
        if previous is None or same_as is None or not previous._segments:
            return cls._fresh(texts, np.arange(n, dtype=np.int64), [], [], n)
        same_as = np.asarray(same_as, dtype=np.int64)
        kept = same_as >= 0
        if same_as.shape != (n,) or same_as.max(initial=-1) >= len(previous) \
                or np.bincount(same_as[kept], minlength=1).max(initial=0) > 1:       # O(n), no sort
            raise ValueError("same_as must give, for each text, a distinct position in the previous index or -1")
        moved = np.full(len(previous) + 1, -1, dtype=np.int32)          # previous position -> new; [-1] -> -1
        moved[same_as[kept]] = np.flatnonzero(kept)
        positions = [moved[p] for p in previous._positions]            # p == -1 (dead) reads moved[-1] = -1
        todo = np.flatnonzero(~kept)
        index = cls._fresh([texts[i] for i in todo], todo, list(previous._segments), positions, n) \
            if len(todo) else cls(list(previous._segments), positions, n)
        return index._merged_if_due()

    @classmethod
    def _fresh(cls, texts, at: np.ndarray, segments: list, positions: list, n: int) -> "LexicalIndex":
        """`segments` plus one new segment over `texts` (document i at position at[i])."""
        from indexes.bm25_segments import Segment
        if len(texts):
            # in batches: a list of Python ids per document costs ~8 bytes a token, ~0.7 GB at 900k chunks
            words, flats, lengths = _TokenIds(), [], []
            for a in range(0, len(texts), TOKENIZE_BATCH):
                docs, vocab = corpus_token_ids(texts[a:a + TOKENIZE_BATCH], words)
                lengths.append(np.fromiter(map(len, docs), dtype=np.int64, count=len(docs)))
                flats.append(np.fromiter(chain.from_iterable(docs), dtype=np.int32, count=int(lengths[-1].sum())))
                del docs
            offsets = np.zeros(len(texts) + 1, dtype=np.int64)
            np.cumsum(np.concatenate(lengths), out=offsets[1:])
            flat = np.concatenate(flats)
            del flats
            segments = segments + [Segment.from_token_ids(flat, offsets, vocab)]
            positions = positions + [np.asarray(at, dtype=np.int32)]
        return cls(segments, positions, n)

    def _merged_if_due(self) -> "LexicalIndex":
        """Lucene-style merge policy, two tiers: everything into one segment once small segments and dead
        documents outweigh MERGE_SHARE of the base; else the small segments into one past MAX_SEGMENTS."""
        from indexes.bm25_segments import Segment
        segs, pos = self._segments, self._positions
        if len(segs) <= 1 and not any((p < 0).any() for p in pos):
            return self
        dead = sum(int((p < 0).sum()) for p in pos)
        small = sum(len(s) for s in segs[1:])
        if small + dead > MERGE_SHARE * max(len(segs[0]), 1):
            one = Segment.merged(segs, pos, self._n_docs)
            return LexicalIndex([one], [np.arange(self._n_docs, dtype=np.int32)], self._n_docs)
        if len(segs) > MAX_SEGMENTS:
            live = np.concatenate([p for p in pos[1:]])
            order = np.flatnonzero(live >= 0)
            local = [np.where(p >= 0, 0, -1) for p in pos[1:]]          # filled below: merged numbering
            start = 0
            for p, l in zip(pos[1:], local):
                alive = p >= 0
                l[alive] = np.arange(start, start + int(alive.sum()))
                start += int(alive.sum())
            tail = Segment.merged(segs[1:], local, len(order))
            return LexicalIndex([segs[0], tail], [pos[0], live[order].astype(np.int32)], self._n_docs)
        return self

    def __len__(self) -> int:
        return self._n_docs

    @property
    def segment_sizes(self) -> list[int]:
        """Documents (live or dead) per segment, base first."""
        return [len(s) for s in self._segments]

    def scores(self, query: str) -> np.ndarray | None:
        """(n_docs,) float32 BM25 score of every position for `query`, or None if no query token is known.

        Repeated query tokens are kept and each adds its term's score again: a long question or bug report
        that names `header` five times is about headers. Measured on the SWE-bench file-retrieval dev set
        (109 issues, whole files as documents): MRR@10 0.409 with repeats vs 0.327 deduplicated."""
        from indexes.bm25_segments import B, K1, add_scores, idf, live_postings
        if not self._n_docs:
            return None
        scores = None
        for token, times in Counter(code_tokens(query)).items():
            where = [(s, p, s.term_id(token)) for s, p in zip(self._segments, self._positions)]
            where = [(s, p, t) for s, p, t in where if t >= 0]
            df = sum(live_postings(s.indptr, s.docs, p, t) for s, p, t in where)
            if not df:
                continue
            if scores is None:
                scores = np.zeros(self._n_docs, dtype=np.float32)
            weight = times * idf(df, self._n_docs)
            for s, p, t in where:
                add_scores(scores, s.indptr, s.docs, s.tf, s.lengths, p, t, weight, self._avg_length, K1, B)
        return scores

    def search(self, query: str, k: int) -> list[tuple[int, float]]:
        """Best-first (position, score) for documents with score > 0; [] if no query token is in the corpus."""
        scores = self.scores(query) if k > 0 else None
        if scores is None:
            return []
        k = min(k, scores.shape[0])
        top = np.argpartition(-scores, k - 1)[:k] if k < scores.shape[0] else np.arange(scores.shape[0])
        top = top[np.argsort(-scores[top], kind="stable")]
        return [(int(i), float(scores[i])) for i in top if scores[i] > 0]

    # ------------------------------------------------------------------------------------------------------
    # persistence: a header, the positions, one directory per segment (shared by hard links between
    # generations: a commit writes only its new segment)
    # ------------------------------------------------------------------------------------------------------

    def save(self, directory: Path) -> None:
        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        names = []
        for seg in self._segments:
            name = seg.source.name if seg.source is not None else f"seg-{uuid.uuid4().hex[:12]}"
            seg.save(directory / name)
            names.append(name)
        np.save(directory / _POSITIONS_FILE, np.concatenate(self._positions) if self._positions
                else np.zeros(0, np.int32))
        header = {"format": _FORMAT, "n_docs": self._n_docs,
                  "segments": [{"name": n, "docs": len(s)} for n, s in zip(names, self._segments)]}
        (directory / _META_FILE).write_text(json.dumps(header), encoding="utf-8")

    @classmethod
    def load(cls, directory: Path) -> "LexicalIndex":
        """The index saved in `directory` (segments memory-mapped); ValueError naming what is wrong."""
        from indexes.bm25_segments import Segment
        directory = Path(directory)
        try:
            header = json.loads((directory / _META_FILE).read_text(encoding="utf-8"))
            n_docs = int(header["n_docs"])
        except (OSError, ValueError, KeyError, TypeError) as e:
            raise ValueError(f"{directory}: not a lexical index ({e})") from None
        if header.get("format") != _FORMAT:
            return cls._from_format_1(directory, n_docs)
        try:
            sizes = [int(s["docs"]) for s in header["segments"]]
            segments = [Segment.load(directory / str(s["name"])) for s in header["segments"]]
            flat = np.load(directory / _POSITIONS_FILE)
        except (OSError, KeyError, TypeError) as e:
            raise ValueError(f"{directory}: damaged lexical index ({e})") from None
        if [len(s) for s in segments] != sizes or flat.shape != (sum(sizes),) \
                or int((flat >= 0).sum()) != n_docs or flat.max(initial=-1) >= n_docs:
            raise ValueError(f"{directory}: lexical index segments disagree with its header")
        positions = np.split(flat.astype(np.int32), np.cumsum(sizes)[:-1]) if sizes else []
        return cls(segments, positions, n_docs)

    @classmethod
    def _from_format_1(cls, directory: Path, n_docs: int) -> "LexicalIndex":
        """An index saved before segments (bm25s files plus every document's token ids), as one segment."""
        from indexes.bm25_segments import Segment
        if n_docs == 0:
            return cls([], [], 0)
        try:
            vocab = json.loads((directory / "vocab.index.json").read_text(encoding="utf-8"))
            flat = np.load(directory / "doc_tokens.npy")
            offsets = np.load(directory / "doc_offsets.npy")
        except (OSError, ValueError) as e:
            raise ValueError(f"{directory}: lexical index from an older ragbit without token ids ({e}); "
                             "run `ragbit index --rebuild`") from None
        if offsets.shape != (n_docs + 1,) or offsets[-1] != flat.shape[0] \
                or (flat.shape[0] and int(flat.max()) >= len(vocab)):
            raise ValueError(f"{directory}: damaged lexical index")
        return cls([Segment.from_token_ids(flat, offsets, vocab)], [np.arange(n_docs, dtype=np.int32)], n_docs)
