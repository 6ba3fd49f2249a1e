"""bm25s.BM25 with a vectorised index build: the same scores, without a Python loop per document.

Why: bm25s builds its score matrix one document at a time (a Counter, small numpy arrays, a set
intersection per document). On 64k code chunks (Django) that is ~4 s, paid again on every incremental
re-index because BM25 statistics are global. Here the whole corpus is one flat array of (term, document)
keys: one sort counts term frequencies and lays the entries out directly in CSC order (term-major, the
matrix bm25s stores), so the build is a handful of numpy calls.

`build_index_from_ids` is the override point bm25s documents for this. The idf and tf formulas are bm25s'
own scorer functions, applied to arrays; methods that need bm25s' non-occurrence array (bm25l, bm25+) use
the stock build.
"""
from __future__ import annotations

import bm25s
import numpy as np
from bm25s import scoring


class FlatCorpus:
    """Every document's token ids as one flat array plus offsets, and the vocabulary: a corpus bm25s'
    `index()` accepts (it reads `.ids` and `.vocab`) without a list of one array per document, which costs
    more than the build itself on 50k documents. `ids` still behaves as that list for bm25s' stock build."""

    def __init__(self, flat: np.ndarray, offsets: np.ndarray, vocab: dict[str, int]):
        self.flat, self.offsets, self.vocab = flat, offsets, vocab       # (n_tokens,), (n_docs + 1,)
        self.ids = _FlatDocs(flat, offsets)


class _FlatDocs:
    """Document i = flat[offsets[i]:offsets[i + 1]], as a sequence."""

    def __init__(self, flat: np.ndarray, offsets: np.ndarray):
        self.flat, self.offsets = flat, offsets

    def __len__(self) -> int:
        return len(self.offsets) - 1

    def __getitem__(self, i: int) -> np.ndarray:
        if not 0 <= i < len(self):
            raise IndexError(i)
        return self.flat[self.offsets[i]:self.offsets[i + 1]]

    def __iter__(self):
        return map(self.__getitem__, range(len(self)))


class VectorizedBM25(bm25s.BM25):
    def build_index_from_ids(self, unique_token_ids, corpus_token_ids, show_progress=True, leave_progress=False):
        idf_of = getattr(scoring, "_select_idf_scorer", None)           # bm25s internals: if a future
        tfc_of = getattr(scoring, "_select_tfc_scorer", None)           # version renames them, build stock
        if self.method in self.methods_requiring_nonoccurrence or idf_of is None or tfc_of is None:
            return super().build_index_from_ids(unique_token_ids, corpus_token_ids, show_progress, leave_progress)
        self.nonoccurrence_array = None                                  # what the stock build sets for these
        n_docs, n_vocab = len(corpus_token_ids), len(unique_token_ids)
        if isinstance(corpus_token_ids, _FlatDocs):
            lengths = np.diff(corpus_token_ids.offsets).astype(np.int64)                        # (n_docs,)
            terms = corpus_token_ids.flat.astype(np.int64)                                      # (n_tokens,)
        else:
            lengths = np.fromiter(map(len, corpus_token_ids), dtype=np.int64, count=n_docs)
            terms = (np.concatenate([np.asarray(d, dtype=np.int64) for d in corpus_token_ids]) if n_docs
                     else np.zeros(0, dtype=np.int64))
        docs = np.repeat(np.arange(n_docs, dtype=np.int64), lengths)                            # (n_tokens,)

        # one sort: unique (term, doc) pairs in term-major order, with their term frequencies
        keys, tf = np.unique(terms * n_docs + docs, return_counts=True)                         # (nnz,)
        term, doc = np.divmod(keys, n_docs)
        df = np.bincount(term, minlength=n_vocab)                                               # (n_vocab,)

        idf_score = idf_of(self.idf_method)
        # bm25s' own formula, once per distinct document frequency (a few thousand values for 100k terms)
        dfs, where = np.unique(df, return_inverse=True)
        idf_of_df = np.array([idf_score(int(d), N=n_docs) if d else 0.0 for d in dfs], dtype=self.dtype)
        idf = idf_of_df[where.reshape(-1)]                                                      # (n_vocab,)
        tfc = tfc_of(self.method)(
            tf_array=tf.astype(self.dtype), l_d=lengths[doc], l_avg=lengths.mean() if n_docs else 0.0,
            k1=self.k1, b=self.b, delta=self.delta)                                             # (nnz,)

        indptr = np.concatenate([[0], np.cumsum(df)])                                           # (n_vocab + 1,)
        return {
            "data": (idf[term] * tfc).astype(self.dtype),
            "indices": doc.astype(self.int_dtype),
            "indptr": indptr,                                                # int64, as scipy gives bm25s
            "num_docs": n_docs,
        }
