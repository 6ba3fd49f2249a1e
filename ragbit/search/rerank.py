"""A learned reranker: a few cheap signals per candidate, one weighted sum, trained offline on short questions.

Why: reciprocal rank fusion adds two lists by rank alone. It cannot see that the chunk defining `resolve_types`
answers "Resolve any strings and forward annotations in type annotations" better than a docs page that repeats
the words, that BM25's score of the third hit is near the first's while the tenth is far, or that a module-level
fragment rarely answers a question about what a function does. A linear model over such signals
(FEATURES: the fused score and rank, each list's rank and score, how much of a definition's name the question
says, what kind of chunk it is, how many of the best candidates share its file, its size) reorders the first
RERANK_DEPTH fused candidates of every question, in hybrid search only (it needs both lists). Its scores are
calibrated beliefs (`Hit.share`) only for questions of at most 40 words, the kind it was trained on.

How it was made: `benchmarks/train_reranker.py`, on 2,042 questions from 27 Python projects that are in no
development set (first docstring sentence -> the function, every docstring blanked, as the query adapter's 1,278
questions are made; 764 of them from 10 projects the adapter never saw), listwise softmax over each question's
candidates. On those 10 projects, held out in three groups, chunk R@10 went .837 / .764 / .759 -> .898 / .812 /
.786 and R@1 .416 / .413 / .420 -> .521 / .486 / .438. The weights, the means and scales of the features, and
the figures live in a `.json` per embedding model under `rerankers/` (the dense signals depend on the model's
cosine scale); a model without one keeps the fused order. `[search] learned_rerank = false` turns it off.

Why each list's best few are always among the candidates it reorders (`candidate_window`): with four or five lists
in the fusion (BM25, dense, a report's title, its code names, named files), a chunk that only the dense list puts
first gets one term of 1/61 and can end past the 50th fused place, behind chunks that are mediocre in every list;
the reranker, which reads each list's rank and score, never sees it. So the LIST_TOPS best of BM25's and of the
dense list take the last places of the window when fusion left them out. Measured (session 16), issue set (109
reports, 101 with line targets), hybrid: chunk R@10 .683 -> .693, MRR@10 .670 -> .671, gold function >= 80% inside
the 1,000 / 3,000-token context .446 / .644 -> .455 / .653 (500 and 1,500 unchanged, file R@10 .872 both); the
docstring set (127 short questions) is unchanged at every level (its projects are small: the tops were already in).
"""
from __future__ import annotations

import json
import math
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import numpy as np

from ragbit.index_layout import SCOPE_SEP

RERANKER_DIR = Path(__file__).resolve().parent / "rerankers"
RERANK_DEPTH = 50        # fused candidates reordered; the rest keep their order below them
LIST_TOPS = 5            # each list's best that are always among those candidates (see above)
LIST_DEPTH = 100         # a list's rank beyond this counts as absent (search asks each list for >= 100)
RRF_K = 60

FEATURES = (
    "fused_score",       # fused score / the best fused score
    "fused_rank",        # log2(1 + rank) in the fused order
    "lexical_rank",      # RRF_K / (RRF_K + rank) in BM25's list, 0 when absent
    "lexical_score",     # BM25 score / the list's best
    "dense_rank",        # RRF_K / (RRF_K + rank) in the dense list, 0 when absent
    "dense_gap",         # cosine - the list's best cosine (absent: the list's worst)
    "name_share",        # share of the definition's name words that the question says
    "name_any",          # 1 when the question says any word of the definition's name
    "scope_share",       # the same for the enclosing class / function names
    "file_share",        # the same for the file's name
    "module_level",      # 1 for a chunk outside any definition
    "class_chunk",       # 1 when the chunk's own scope is a class (its header, its attributes)
    "test_file",
    "prose_file",
    "file_support",      # share of the first 20 candidates that come from the same file
    "log_lines",         # log of the chunk's line count
    "depth",             # how deeply the chunk's scope is nested
)


class RerankerError(ValueError):
    """A reranker file that exists but cannot be used; the message is one line for the user."""


@lru_cache(maxsize=1 << 16)
def _stem(word: str) -> str:
    """Snowball's English stem ("annotations" -> "annot", "types" -> "type"): a question's words and a name's
    pieces meet in their stems."""
    import snowballstemmer
    return _stemmer(snowballstemmer).stemWord(word)


@lru_cache(maxsize=1)
def _stemmer(module):
    return module.stemmer("english")


_QUESTION_STOP = frozenset("get set new given return returns class def".split())


def words(text: str) -> set[str]:
    """Stemmed lowercase words of a question or a name, identifiers split (`resolve_types` -> resolve, type)."""
    from indexes.lexical import code_tokens
    return {_stem(t) for t in code_tokens(text) if "." not in t and "_" not in t} - _QUESTION_STOP


@dataclass
class Lists:
    """What the fusion was made of, best first: (chunk position, score) per list."""
    lexical: list[tuple[int, float]]
    dense: list[tuple[int, float]]


def features(question: str, fused: list[tuple[int, float]], lists: Lists, scope: list[str], path: list[str],
             start_line: list[int], end_line: list[int], file_kind) -> np.ndarray:
    """(len(fused), len(FEATURES)) float64: the signals of each fused candidate, in FEATURES order.
    `scope`, `path`, `start_line`, `end_line` are the chunk table's columns by position; `file_kind(path)` says
    "test", "doc" or "code"."""
    q = words(question)
    lexical = {pos: (r, s) for r, (pos, s) in enumerate(lists.lexical[:LIST_DEPTH])}
    dense = {pos: (r, s) for r, (pos, s) in enumerate(lists.dense[:LIST_DEPTH])}
    lex_best = max((s for _, s in lexical.values()), default=1.0) or 1.0
    cos = [s for _, s in dense.values()]
    cos_best, cos_worst = (max(cos), min(cos)) if cos else (0.0, 0.0)
    top = fused[0][1] if fused and fused[0][1] > 0 else 1.0
    first_files = [path[pos] for pos, _ in fused[:20]]
    X = np.zeros((len(fused), len(FEATURES)))
    for i, (pos, score) in enumerate(fused):
        labels = scope[pos].split(SCOPE_SEP) if scope[pos] else []
        kind, _, name = labels[-1].partition(" ") if labels else ("", "", "")
        name_words = words(name)
        outer_words = words(" ".join(label.partition(" ")[2] for label in labels[:-1]))
        file_words = words(path[pos].rsplit("/", 1)[-1].rsplit(".", 1)[0])
        lr, ls = lexical.get(pos, (None, 0.0))
        dr, ds = dense.get(pos, (None, cos_worst))
        X[i] = (score / top, math.log2(2 + i),
                RRF_K / (RRF_K + lr) if lr is not None else 0.0, ls / lex_best,
                RRF_K / (RRF_K + dr) if dr is not None else 0.0, ds - cos_best,
                len(name_words & q) / len(name_words) if name_words else 0.0, float(bool(name_words & q)),
                len(outer_words & q) / len(outer_words) if outer_words else 0.0,
                len(file_words & q) / len(file_words) if file_words else 0.0,
                float(not labels), float(kind == "class"),
                float(file_kind(path[pos]) == "test"), float(file_kind(path[pos]) == "doc"),
                first_files.count(path[pos]) / 20, math.log(end_line[pos] - start_line[pos] + 1), len(labels))
    return X


@dataclass
class Reranker:
    mean: np.ndarray
    scale: np.ndarray
    weights: np.ndarray

    def scores(self, X: np.ndarray) -> np.ndarray:
        """Softmax over the candidates of the weighted sum: each candidate's share of the model's belief."""
        s = ((X - self.mean) / self.scale) @ self.weights
        p = np.exp(s - s.max())
        return p / p.sum()

    def rerank(self, fused: list[tuple[int, float]], X: np.ndarray) -> list[tuple[int, float]]:
        """`fused`'s first len(X) candidates reordered by the model (scores: their softmax shares, summing to 1);
        the rest follow with score 0, in their fused order."""
        p = self.scores(X)
        order = np.argsort(-p, kind="stable")
        return [(fused[i][0], float(p[i])) for i in order] + [(pos, 0.0) for pos, _ in fused[len(X):]]


def candidate_window(fused: list[tuple[int, float]], lists: Lists, depth: int = RERANK_DEPTH,
                     tops: int = LIST_TOPS) -> list[tuple[int, float]]:
    """`fused` with the `tops` best of the dense and BM25 lists moved into its first `depth` places where fusion left
    them out (they take the window's last places, in list order; everything else keeps its order)."""
    window = {pos for pos, _ in fused[:depth]}
    missing = list(dict.fromkeys(pos for ranked in (lists.dense, lists.lexical) for pos, _ in ranked[:tops]
                                 if pos not in window))
    if not missing:
        return fused
    score, moved = dict(fused), set(missing)
    rest = [(pos, s) for pos, s in fused if pos not in moved]
    keep = depth - len(missing)
    return rest[:keep] + [(pos, score.get(pos, 0.0)) for pos in missing] + rest[keep:]


def reranker_path(model_id: str) -> Path:
    return RERANKER_DIR / (model_id.replace("/", "--") + ".json")


@lru_cache(maxsize=4)
def load_reranker(model_id: str) -> Reranker | None:
    """The reranker trained for `model_id`'s vectors, or None when there is none."""
    path = reranker_path(model_id)
    if not path.is_file():
        return None
    try:
        meta = json.loads(path.read_text(encoding="utf-8"))
        if list(meta["features"]) != list(FEATURES):
            raise ValueError(f"its features {meta['features']} are not this version's")
        arrays = [np.asarray(meta[key], dtype=np.float64) for key in ("mean", "scale", "weights")]
        if any(a.shape != (len(FEATURES),) or not np.isfinite(a).all() for a in arrays) or (arrays[1] <= 0).any():
            raise ValueError("its mean, scale and weights must be finite, one per feature")
    except (OSError, ValueError, KeyError, TypeError) as e:
        raise RerankerError(f"unusable reranker {path}: {e}; reinstall ragbit or set [search] learned_rerank = false") from None
    return Reranker(*arrays)


def reranker_info(model_id: str) -> dict:
    """What the reranker's file records about how it was trained (empty without one)."""
    path = reranker_path(model_id)
    try:
        meta = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return {k: v for k, v in meta.items() if k not in ("mean", "scale", "weights")}
