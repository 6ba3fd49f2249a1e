"""BM25 postings in immutable segments, scored at query time from raw term frequencies.

Why segments: BM25 statistics are corpus-wide (document count, document frequency, average length), so an
index that stores finished scores (bm25s does) must be rebuilt from every chunk on every commit: 17 s of a
one-file re-index at 180k chunks. Lucene's answer, copied here: a segment stores term frequencies and document
lengths only, never scores; a commit writes a small segment for the new documents and marks the replaced ones
dead; search sums the live postings of every segment with statistics of the whole live corpus, so the scores
are those of a build from scratch. A merge folds segments together when the small ones grow.

A segment is four arrays and a vocabulary:
    indptr (n_terms + 1,) int64   postings of term t are entries indptr[t]:indptr[t + 1]
    docs   (nnz,) int32           segment-local document number of each entry, ascending within a term
    tf     (nnz,) int32           how often the term occurs in that document
    lengths (n_docs,) int32       token count of each document
    terms  [n_terms] str          the token of each term number
Document d of a segment is "live" at table position `positions[d]` (>= 0), or dead (-1): the index
(`indexes/lexical.py`) keeps that array, so deleting or moving documents never touches a segment.

The scoring formula is bm25s' default ("lucene" idf, Robertson tf part, k1 = 1.5, b = 0.75): the tests
compare against bm25s itself.
"""
from __future__ import annotations

import json
import math
import os
import shutil
from dataclasses import dataclass
from pathlib import Path

import numba
import numpy as np

K1, B = 1.5, 0.75

_ARRAYS = ("indptr", "docs", "tf", "lengths")
_TERMS_FILE = "terms.json"


@dataclass
class Segment:
    terms: list[str]
    indptr: np.ndarray
    docs: np.ndarray
    tf: np.ndarray
    lengths: np.ndarray
    source: Path | None = None          # the directory it was loaded from: saving hard-links, not rewrites
    _term_id: dict[str, int] | None = None

    def __len__(self) -> int:
        return int(self.lengths.shape[0])

    def term_id(self, token: str) -> int:
        """The term number of `token` in this segment, or -1."""
        if self._term_id is None:
            self._term_id = {t: i for i, t in enumerate(self.terms)}
        return self._term_id.get(token, -1)

    # ------------------------------------------------------------------------------------------- building
    @classmethod
    def from_token_ids(cls, flat: np.ndarray, offsets: np.ndarray, vocab: dict[str, int]) -> "Segment":
        """A segment over documents given as token ids (document i = flat[offsets[i]:offsets[i + 1]]) in
        `vocab` (token -> id; ids that do not occur are dropped). One sort of (term, doc) keys counts term
        frequencies and lays the postings out term-major, without a Python loop per document."""
        n_docs = len(offsets) - 1
        lengths = np.diff(offsets).astype(np.int64)                                            # (n_docs,)
        keys = np.asarray(flat).astype(np.int64)                           # (n_tokens,) term * n_docs + doc,
        keys *= max(n_docs, 1)                                             # built in place: at 1M chunks each
        keys += np.repeat(np.arange(n_docs, dtype=np.int64), lengths)      # temporary is ~1 GB
        keys, tf = np.unique(keys, return_counts=True)                                         # (nnz,)
        term, doc = np.divmod(keys, max(n_docs, 1))
        used, term = np.unique(term, return_inverse=True)            # renumber the terms that occur 0..
        token_of = np.empty(len(vocab), dtype=object)
        token_of[np.fromiter(vocab.values(), dtype=np.int64, count=len(vocab))] = list(vocab)
        df = np.bincount(term.reshape(-1), minlength=len(used))
        return cls(terms=token_of[used].tolist(), indptr=np.concatenate([[0], np.cumsum(df)]).astype(np.int64),
                   docs=doc.astype(np.int32), tf=tf.astype(np.int32), lengths=lengths.astype(np.int32))

    @classmethod
    def merged(cls, segments: list["Segment"], positions: list[np.ndarray], n_docs: int) -> "Segment":
        """One segment holding the live documents of `segments` (document d of segment s lives at
        positions[s][d], or is dead at -1), numbered by position: document i of the result is position i.
        Built from the postings alone: nothing is tokenized again."""
        vocab: dict[str, int] = {}
        keys, tfs = [], []
        for seg, pos in zip(segments, positions):
            term_of = np.fromiter((vocab.setdefault(t, len(vocab)) for t in seg.terms), dtype=np.int64,
                                  count=len(seg.terms))                                 # segment term -> merged
            entry_term = np.repeat(term_of, np.diff(seg.indptr))                         # (nnz,)
            at = np.asarray(pos, dtype=np.int64)[seg.docs]                               # (nnz,) positions
            live = at >= 0
            keys.append(entry_term[live] * max(n_docs, 1) + at[live])
            tfs.append(np.asarray(seg.tf)[live])
        key = np.concatenate(keys) if keys else np.zeros(0, np.int64)
        order = np.argsort(key, kind="stable")
        key, tf = key[order], np.concatenate(tfs)[order] if tfs else np.zeros(0, np.int32)
        term, doc = np.divmod(key, max(n_docs, 1))
        used, term = np.unique(term, return_inverse=True)
        token_of = np.empty(len(vocab), dtype=object)
        token_of[list(vocab.values())] = list(vocab)
        lengths = np.zeros(n_docs, dtype=np.int32)
        for seg, pos in zip(segments, positions):
            pos = np.asarray(pos)
            lengths[pos[pos >= 0]] = np.asarray(seg.lengths)[pos >= 0]
        df = np.bincount(term.reshape(-1), minlength=len(used))
        return cls(terms=token_of[used].tolist(), indptr=np.concatenate([[0], np.cumsum(df)]).astype(np.int64),
                   docs=doc.astype(np.int32), tf=tf.astype(np.int32), lengths=lengths)

    # ---------------------------------------------------------------------------------------- persistence
    def save(self, directory: Path) -> None:
        """Write the segment to `directory` (new), or hard-link the files of the one it was loaded from: a
        segment never changes once written, so generations share their unchanged segments."""
        if self.source is not None and self.source.is_dir():
            directory.mkdir(parents=True)
            for name in [f"{a}.npy" for a in _ARRAYS] + [_TERMS_FILE]:
                try:
                    os.link(self.source / name, directory / name)
                except OSError:
                    shutil.copy2(self.source / name, directory / name)
            return
        directory.mkdir(parents=True)
        for name in _ARRAYS:
            np.save(directory / f"{name}.npy", getattr(self, name))
        (directory / _TERMS_FILE).write_text(json.dumps(self.terms, ensure_ascii=False), encoding="utf-8")

    @classmethod
    def load(cls, directory: Path) -> "Segment":
        """Memory-mapped arrays (plain ndarray views); ValueError naming what is wrong."""
        try:
            arrays = {a: np.asarray(np.load(directory / f"{a}.npy", mmap_mode="r")) for a in _ARRAYS}
            terms = json.loads((directory / _TERMS_FILE).read_text(encoding="utf-8"))
        except (OSError, ValueError, UnicodeDecodeError) as e:
            raise ValueError(f"{directory}: unreadable lexical segment ({e})") from None
        seg = cls(terms=terms, source=directory, **arrays)
        nnz = arrays["docs"].shape[0]
        ok = (isinstance(terms, list) and seg.indptr.shape == (len(terms) + 1,) and arrays["tf"].shape == (nnz,)
              and (len(terms) == 0 or (int(seg.indptr[0]) == 0 and int(seg.indptr[-1]) == nnz))
              and (nnz == 0 or int(arrays["docs"].max()) < len(seg)))
        if not ok:
            raise ValueError(f"{directory}: inconsistent lexical segment")
        return seg


# -------------------------------------------------------------------------------------------- scoring
def idf(df: int, n_docs: int) -> float:
    """bm25s' "lucene" idf (scoring._score_idf_lucene)."""
    return math.log(1 + (n_docs - df + 0.5) / (df + 0.5))


@numba.njit(cache=True, nogil=True)
def live_postings(indptr, docs, positions, term):
    """How many postings of `term` belong to live documents (positions[doc] >= 0)."""
    n = 0
    for e in range(indptr[term], indptr[term + 1]):
        if positions[docs[e]] >= 0:
            n += 1
    return n


@numba.njit(cache=True, nogil=True)
def add_scores(scores, indptr, docs, tf, lengths, positions, term, weight, avg_length, k1, b):
    """scores[position] += weight * tf / (tf + k1 * (1 - b + b * length / avg_length)) over the live postings
    of `term` (weight = idf times how often the query names the term)."""
    for e in range(indptr[term], indptr[term + 1]):
        d = docs[e]
        p = positions[d]
        if p >= 0:
            f = np.float64(tf[e])
            scores[p] += np.float32(weight * f / (k1 * ((1.0 - b) + b * lengths[d] / avg_length) + f))
