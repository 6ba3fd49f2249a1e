"""`ragbit search`: BM25 + dense (MiniLM/FAISS) over the committed index, fused by reciprocal rank.

Why hybrid: BM25 finds the chunk that shares the question's identifiers, dense finds the one that means
the same in other words; RRF needs no score calibration. Each side contributes a deeper candidate list
(CANDIDATES_PER_K * k) than asked for, so a chunk ranked 30th by one side and 3rd by the other still wins.

Why tests rank lower: a question about code is answered by the code, and a test that calls a function repeats
its name and its arguments (so it matches a question as well as the definition does). Chunks of test files get
half their fused score unless the question itself is about tests. On the issue set (lexical) that took file R@1
.330 -> .459 and the gold function inside a 1,500-token context .337 -> .396; on the docstring set chunk R@10
.543 -> .606.

Why prose files rank lower too: documentation, release notes and READMEs describe the code in the words people
use to ask about it, so BM25 and the embedding model both rank them above the code, and then they fill the
prompt of a generator that needs the code. Chunks of .rst/.md/.txt files get DOC_FACTOR of their fused score
when the question names code or is a long report, PLAIN_DOC_FACTOR when it is a short plain-language question
(there the doc may be the answer: "rolling updates on kubernetes" must still find the deployment guide), and
nothing when the question is about the docs. Measured, issue set (lexical; tuned on django + sympy, 58 queries,
the other 51 held out): gold function inside the 1,500-token context .418 -> .473 tuned, .370 -> .391 held
out, file R@10 .743 -> .761 (0.5 and 0.3 alike). Docstring set (hybrid), same measure: .693 with 1.0, .709
with 0.9, .724 with 0.85, .732 with 0.8 and 0.5; below 0.85 the plain doc answer of tests/test_search.py loses.

Why a nested function's unit is the function around it: a chunk of `generate` inside `Response.iter_content`
is a fragment of the method that holds the state it reads; the packer shows the whole method (when it fits the
budget left). Issue set, gold function in 1,500 tokens: held out .391 -> .435, tuned unchanged;
docstring set .740 -> .732 (one question).

Why the best hit brings the function it calls: a bug report names the public entry point (`col_insert`,
`mutual_info_score`) while the fix is in the helper of the same file it delegates to (`_eval_col_insert`,
`check_clusterings`). With `units`, the first hit carries the first definition of its own file that its whole
definition calls and that is not ranked already (`Hit.callees`); the prompt's retriever packs it right after
its caller. Gold function inside the context, 1,000 / 1,500 tokens: issue set hybrid (60 queries with vectors)
.259 / .426 -> .296 / .444, lexical (109) .337 / .455 -> .356 / .465; docstring set (hybrid) .677 / .709 ->
.669 / .717 (at 500 tokens .559 -> .535: the helper takes the next hit's place). Two callees, or the callees of
the first two hits, scored the same or lower.

Why hybrid search also reads the question's code names alone: in a bug report of 100+ words the few names it
gives (`header_rows`, `RST.__init__`, `get_writer()`) are a handful of BM25's terms among the prose, and the
chunks that define or use them can rank below chunks that share many ordinary words. Hybrid search adds a third
list, BM25 over those names alone (snake_case, camelCase, dotted, `name(`, backticked; `code_identifiers`), at
IDENTIFIER_WEIGHT in the fusion. Measured (session 11) on the 109 issues, hybrid: weight 0.1 / 0.2 / 0.3 / 0.5 /
1.0 gave gold function inside 1,500 tokens .475 / .475 / .475 / .475 / .455 (from .455), at 1,000 tokens .356 /
.366 / .356 / .337 / .337 (from .347), file R@1 .550 / .560 / .541 / .532 / .505 (from .550); at 0.2 both halves
gain (django + sympy, 58 issues: .491 -> .509 at 1,500; the other 51: .413 -> .435) and chunk R@10 .525 -> .535.
Docstring set: 1,500 tokens .717 -> .724, 1,000 .669 -> .685, file R@1 .677 -> .685. Lexical mode keeps one list:
there the extra list (which turns BM25's own scores into a fusion) lost a file and a question at 1,500 tokens.

Why a short question's vector is mapped before dense search: all-MiniLM-L6-v2 was trained on sentence pairs,
so "Load a template by name and return it" lands nearer to prose repeating its words than to the function that
does it. For a question of at most PLAIN_MAX_WORDS words, dense search uses `normalise(W @ q)`, W the model's
query adapter (ragbit/indexing/query_adapter.py, trained by benchmarks/train_query_adapter.py on 1,278
docstring-sentence -> function pairs from 17 other Python projects with every docstring blanked). Measured
(session 12), docstring set, 127 questions: gold function inside 1,500 / 1,000 tokens .732 / .685 -> .772 / .701,
hybrid chunk R@10 .630 -> .654, dense .638 -> .685, file R@1 .685 -> .724; leave-projects-out on the training
projects, dense chunk R@10 +.02 on each of three held-out groups. Long reports are not mapped: an adapter applied
to them (issue set) took hybrid chunk R@10 .535 -> .505 and 1,500 tokens .485 -> .475.

Why a prose hit is packed alone (no whole section): a question about code that matches a paragraph of the docs
needs that paragraph, not the section around it, and a section can be 500 tokens of the prompt. Gold function
inside the prompt, hybrid: docstring set 1,000 / 1,500 tokens .701 / .772 -> .709 / .780, issue set .396 / .485 ->
.406 / .485 (session 12).

Why a learned reranker reorders the best candidates (ragbit/search/rerank.py): RRF adds lists by rank alone and
cannot weigh how much of a definition's name the question says, how close BM25's scores are, or what kind of chunk
a candidate is. A linear model over 17 such signals, trained on 2,042 questions from 27 other projects, reorders
the RERANK_DEPTH best fused candidates of every hybrid search. Measured (session 13, the shipped weights): docstring
set, hybrid chunk R@10 .764 -> .850, file R@1 .724 -> .756, gold function inside 1,500 tokens .780 -> .850; issue
set, prompt only, 1,000 / 1,500 / 3,000 tokens .406 / .485 / .554 -> .416 / .495 / .614 (500: .248 -> .228). A long
report's list kept the fused order until session 15 (reranked, with a cap of 2 hits per file then, it lost file R@1
.560 -> .541); with today's list shape (the best hits, then new files) reranking it puts the answer in the first
ten far more often: issue set, all 109 reports, hybrid list of 20, chunk R@10 .574 -> .683 (both halves of the set,
alternate reports by id: .588 -> .725 and .560 -> .640), file R@10 .844 -> .853, file MRR@10 .648 -> .660, file R@1
.550 -> .560, at the cost of the first hit: chunk R@1 .327 -> .277.

Why a Python stub ranks like prose: a `.pyi` file beside its module repeats the module's signatures with no
body, so it matches a question's words as well as the definition does but cannot show what the code does.
Docstring set (hybrid, with the learned reranker; attrs and werkzeug ship stubs): file R@1 .693 -> .756, chunk
R@10 .835 -> .850, gold function in 1,000 tokens .795 -> .811 (session 13). A stub with no module beside it
(the interface of a compiled extension) stays code.

Why a path boost: many real questions quote a file path ("django/db/models/query.py", a traceback line) or
a file name. Chunks of the files the question names are added as a third ranked list to the fusion.

Why a quoted traceback's functions are one more list: a traceback names the very functions the failure went
through, by file and name (`File ".../site-packages/pkg/mod.py", line 12, in func`, pytest's `pkg/mod.py:12: in
func`, and the stack traces of JavaScript, the JVM, Go and Rust: `question.traceback_frames`), which neither BM25
(one word among hundreds) nor the embedding sees as special. Hybrid search fuses the
chunks of those functions, innermost frame first (where the error was raised), at FRAME_WEIGHT (as the path boost).
Measured (session 16), issue set, the 101 reports with line targets (16 quote a traceback; the rest are unchanged by
construction), gold function >= 80% inside the 500 / 1,000 / 1,500 / 3,000-token context: .218 / .446 / .515 / .644
-> .218 / .446 / .535 / .644 (weight 0.5: 1,500 .525; 2.0: 500 .208, 1,500 .535).
"""
from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path

from ragbit.config import DEFAULT_EMBED_MODEL, RagbitConfig
from ragbit.errors import RagbitError
from ragbit.index_layout import (DENSE_DELTA, DENSE_FILE, DENSE_IDS, LEXICAL_DIR, SCOPE_SEP, TABLE_DIR, TABLE_FILE_V1,
                                 check_model, outer_function_scope)
from ragbit.search.question import (CALLED, KEYWORDS, RERANK_MAX_WORDS, TITLE_WEIGHT, code_identifiers,
                                    fusion_weights, is_plain_language, is_short, list_cap, list_head,
                                    report_title, traceback_frames)

MODES = ("hybrid", "dense", "lexical")
CANDIDATES_PER_K = 5
MIN_CANDIDATES = 50
PATH_WEIGHT = 1.0          # RRF weight of the "files named in the question" list (BM25 and dense: 1.0)
MAX_NAME_MATCHES = 3       # a bare file name ("utils.py") naming more files than this is ignored
TEST_FACTOR = 0.5          # fused score of a chunk in a test file, unless the question is about tests
DOC_FACTOR = 0.5           # the same for a chunk of a prose file (.rst, .md, .txt), unless the question is about docs
PLAIN_DOC_FACTOR = 0.85    # ... for a plain-language question (where a doc may well be the answer)
MAX_UNIT_CHUNKS = 12       # a definition made of more chunks than this is never packed whole
CALLEE_HITS = 1            # the first hits whose callees are attached for packing (search(units=True))
MAX_CALLEES = 1            # callees attached per such hit
FRAME_WEIGHT = 1.0          # RRF weight of the functions a quoted traceback passes through (see above)
IDENTIFIER_WEIGHT = 0.2     # RRF weight of BM25 over the question's code names alone, in hybrid search (see above)

# "a/b/c.py", "c.py", "/usr/lib/.../a/b/c.py", "a.b.c" (dotted module path)
_PATH_LIKE = re.compile(r"[\w.\-/\\]*\w\.\w+|[\w\-]+(?:[/\\][\w.\-]+)+")
_TEST_PATH = re.compile(r"(^|/)(tests?|testing)/|(^|/)test_[^/]*$|_tests?\.\w+$|(^|/)conftest\.py$")
_DOC_PATH = re.compile(r"\.(rst|txt|md|markdown|adoc|rdoc|textile)$", re.IGNORECASE)
_ABOUT_DOCS = re.compile(r"\b(docs?|documentation|documented|tutorial|readme|guide|changelog|release notes?)\b",
                         re.IGNORECASE)
_ABOUT_TESTS = re.compile(r"\b(tests?|testing|pytest|unittest|fixtures?|test_\w+)\b", re.IGNORECASE)
_DOTTED = re.compile(r"\b[A-Za-z_]\w*(?:\.[A-Za-z_]\w*){1,}\b")
# what is not code when looking for calls: Python docstrings (their doctests call other functions), comments
_TRIPLE_QUOTED = re.compile(r'("""|\'\'\')[\s\S]*?(?:\1|\Z)')
_HASH_COMMENT = re.compile(r"#[^\n]*")
_SLASH_COMMENT = re.compile(r"/\*[\s\S]*?(?:\*/|\Z)|//[^\n]*")
_RAISED = re.compile(r"\b(?:raise|throw)\s+(?:new\s+)?[\w.]+\s*\(")   # an exception built to be raised
_HASH_COMMENT_LANGUAGES = {"python", "ruby", "bash", "shell", "perl", "r", "toml", "yaml"}


def called_names(text: str, language: str) -> list[str]:
    """Names `text` calls (`name(`), first call first, each once. Skipped: calls inside Python docstrings
    (doctest examples: `>>> zeros(3)` in `col_insert`'s docstring is not what `col_insert` delegates to) and
    comments, the exception a `raise` / `throw` builds (`raise ShapeError(...)` is not the helper), and
    keywords followed by a parenthesis (`if (`)."""
    if language == "python":
        text = _HASH_COMMENT.sub("", _TRIPLE_QUOTED.sub("", text))
    elif language in _HASH_COMMENT_LANGUAGES:
        text = _HASH_COMMENT.sub("", text)
    else:
        text = _SLASH_COMMENT.sub("", text)
    return [name for name in dict.fromkeys(CALLED.findall(_RAISED.sub("raise ", text))) if name not in KEYWORDS]


class SearchError(RagbitError, ValueError):
    """A bad search request or an unusable index; the message is one line for the user."""


@dataclass
class Hit:
    path: str
    start_line: int
    end_line: int
    scope: str
    language: str
    score: float
    text: str
    rank: int
    unit: "Hit | None" = None    # the whole definition this chunk is part of (search(units=True)), for packing
    callees: "list[Hit] | None" = None   # definitions of the same file this hit calls (search(units=True))
    share: float | None = None   # the learned reranker's belief that this hit answers a short question (the packer
                                 # spends tokens by it); None when the order is the fusion's or the question is long

    def to_json(self) -> dict:
        return {"path": self.path, "start_line": self.start_line, "end_line": self.end_line,
                "scope": self.scope, "language": self.language, "score": round(self.score, 6),
                "text": self.text}


class Hits(list):
    """The ranked hits, plus whether dense search saw every chunk (False while vectors are being computed)."""
    dense_complete: bool = True
    mode: str = "hybrid"


class Searcher:
    """Loads the committed generation on first search (the constructor touches nothing on disk)."""

    def __init__(self, cfg: RagbitConfig, embedder=None):
        self.cfg = cfg
        self._embedder = embedder
        self._embedder_given = embedder is not None
        self._loaded = False
        self._generation: Path | None = None
        self.lexical = None
        self.dense = None
        self._dense_loaded = False

    # ------------------------------------------------------------------ loading
    def _load(self, lexical: bool = True, dense: bool = True) -> None:
        """Load the committed generation; reload when a writer has committed a newer one since (one small
        file read per search), so a long-lived Searcher sees the dense index as soon as it is complete.

        Only the parts a search needs are loaded (lexical: BM25, dense: FAISS): `--mode lexical` never
        imports faiss, `--mode dense` never imports numba (each costs a noticeable part of a cold search)."""
        from indexes.store import IndexFormatError, IndexMissingError
        from ragbit.index_layout import open_index_store
        store = open_index_store(self.cfg)
        gen = store.current()
        if self._loaded and gen == self._generation and (not lexical or self.lexical is not None) \
                and (not dense or self._dense_loaded):
            return
        try:            # retries if a writer switches generations
            store.read(lambda g, manifest: self._load_generation(g, manifest, lexical, dense))
        except IndexMissingError:
            raise IndexMissingError(f"no index at {self.cfg.repo}: run `ragbit index {self.cfg.repo}` first") from None
        except IndexFormatError:
            raise
        except (OSError, ValueError) as e:
            raise SearchError(f"corrupt index at {self.cfg.index_dir}: {e}; run `ragbit index --rebuild`") from None

    def _load_generation(self, gen: Path, manifest: dict, lexical: bool, dense: bool) -> None:
        """Switch to generation `gen` if it is new, then load the missing parts the caller needs."""
        import numpy as np                           # here, not at module top: the search client needs only Hit

        from indexes.store import check_generation
        if not (self._loaded and gen == self._generation):
            from ragbit.chunk_table import ChunkTable
            check_generation(gen, manifest, (TABLE_DIR, TABLE_FILE_V1, DENSE_IDS))   # readers verify what they load
            table = ChunkTable.load(gen)
            dense_ids = np.load(gen / DENSE_IDS) if (gen / DENSE_FILE).is_file() else np.zeros(0, dtype=np.int64)
            if self._loaded and manifest.get("embed_model_id") != self.manifest.get("embed_model_id") \
                    and not self._embedder_given:
                self._embedder = None                    # rebuilt with another model: load that one
            self.manifest, self.table, self.dense_ids = manifest, table, dense_ids
            self.lexical, self.dense, self._dense_loaded = None, None, False
            # slot -> chunk position; -1: a slot whose vector an in-place update removed
            self.dense_complete = bool(manifest.get("dense_complete")) \
                and int(np.count_nonzero(dense_ids >= 0)) + int(manifest.get("lexical_only_chunks", 0)) == len(table)
            self._paths = [f.path for f in table.files]
            self._defs_cache: dict[str, dict[str, list[int]]] = {}
            self._file_kinds: dict[str, str] = {}
            self._stubbed: set[str] | None = None       # the .pyi paths that have their .py beside them
            self._by_name: dict[str, list[str]] = {}
            for p in self._paths:
                self._by_name.setdefault(p.rsplit("/", 1)[-1].lower(), []).append(p)
            self._generation = gen
            self._loaded = True
        if lexical and self.lexical is None:
            from indexes.lexical import LexicalIndex
            check_generation(gen, manifest, (LEXICAL_DIR,))
            self.lexical = LexicalIndex.load(gen / LEXICAL_DIR)
        if dense and not self._dense_loaded:
            if (gen / DENSE_FILE).is_file():
                check_generation(gen, manifest, (DENSE_FILE, DENSE_DELTA))
                from indexes.dense import DenseIndex, LayeredDense
                self.dense = DenseIndex.load(gen / DENSE_FILE, mmap=True)     # vectors stay on disk
                base_slots = (manifest.get("dense_index") or {}).get("base_slots")
                if base_slots is not None:          # vectors added / removed since the base file was written
                    delta = np.load(gen / DENSE_DELTA) if base_slots < len(self.dense_ids) else None
                    self.dense = LayeredDense(self.dense, delta if delta is not None else
                                              np.zeros((0, self.dense.dim), np.float32), base_slots,
                                              self.dense_ids >= 0)
            self._dense_loaded = True

    @property
    def embedder(self):
        """The model the index was built with (or the configured one, which must be the same)."""
        if self._embedder is None:
            from ragbit.indexing.embeddings import Embedder
            embed_cfg = self.cfg.embed
            recorded = self.manifest.get("embed_model")
            if embed_cfg.model == DEFAULT_EMBED_MODEL and recorded:
                embed_cfg = type(embed_cfg)(**{**embed_cfg.__dict__, "model": recorded})
            embedder = Embedder(embed_cfg)
            check_model(self.manifest, embedder.model_id, self.cfg.index_dir)
            self._embedder = embedder
        return self._embedder

    # ------------------------------------------------------------------ rankings
    def _lexical_ranking(self, query: str, n: int) -> list[int]:
        hits = self.lexical.search(query, n)
        self._last_scores = dict(hits)
        self._lists.lexical = hits
        return [pos for pos, _ in hits]

    def _dense_ranking(self, query: str, n: int) -> list[int]:
        if self.dense is None or len(self.dense) == 0:
            return []
        qvec = self.embedder.embed_query(query)
        W = getattr(self.embedder, "query_adapter", None) if is_short(query) else None
        if W is not None:                # a short question: its vector moved towards code (see the module docstring)
            from ragbit.indexing.query_adapter import adapt
            qvec = adapt(W, qvec)
        hits = self._dense_hits(qvec, n)
        self._last_scores = dict(hits)
        self._lists.dense = hits
        return [pos for pos, _ in hits]

    def _dense_hits(self, qvec, n: int) -> list[tuple[int, float]]:
        """(chunk position, cosine) of the `n` chunks nearest to `qvec`, best first."""
        return [(int(self.dense_ids[slot]), score) for slot, score in self.dense.search(qvec, n)]

    def named_files(self, query: str) -> list[str]:
        """Repository files the question names by path, dotted module path or (unambiguous) file name."""
        self._load(lexical=False, dense=False)
        found: dict[str, None] = {}
        candidates = [m.group().replace("\\", "/") for m in _PATH_LIKE.finditer(query)]
        # astropy.io.registry -> astropy/io/registry.py (not the package __init__.py: `from django.db import
        # models` names django/db/__init__.py, which is rarely what the question is about)
        # and a dotted name that goes on past its module (django.contrib.admin.utils.display_for_field) names
        # the module too: every prefix of two or more parts is tried, and only existing paths match
        for dotted in _DOTTED.findall(query):
            parts = dotted.split(".")
            candidates += ["/".join(parts[:n]) + ".py" for n in range(len(parts), 1, -1)]
        for cand in candidates:
            cand = cand.strip("./")
            if not cand:
                continue
            if "/" in cand:
                for p in self.repo_paths_of(cand):
                    found.setdefault(p, None)
            else:
                same = self._by_name.get(cand.lower(), [])
                if 0 < len(same) <= MAX_NAME_MATCHES:
                    for p in same:
                        found.setdefault(p, None)
        return list(found)

    def repo_paths_of(self, written: str) -> list[str]:
        """The repository files a path as written elsewhere names: the same path, a suffix of it (a traceback's
        `/usr/lib/python3/site-packages/pkg/mod.py` is the repository's `pkg/mod.py`, or `src/pkg/mod.py`)."""
        cand = written.strip("./")
        return [p for p in self._paths if cand == p or cand.endswith("/" + p) or p.endswith("/" + cand)] if cand else []

    def _frame_ranking(self, query: str) -> list[int]:
        """Chunks of the functions a quoted traceback passes through, innermost frame first; within a function the
        chunk holding the frame's line first."""
        frames = traceback_frames(query)
        if not frames:
            return []
        self._load(lexical=False, dense=False)
        t, ranking = self.table, {}
        for written, line, name in frames:
            for path in self.repo_paths_of(written):
                f = t.by_path[path]
                inside = [pos for pos in range(f.first, f.first + f.count)
                          if any(label.rsplit(" ", 1)[-1] == name for label in t.scope[pos].split(SCOPE_SEP))]
                inside.sort(key=lambda pos: not t.start_line[pos] <= line <= t.end_line[pos])
                for pos in inside:
                    ranking.setdefault(pos, None)
        return list(ranking)

    def _path_ranking(self, query: str, order: list[int]) -> list[int]:
        """Chunks of the named files, in the order the other rankings put them (then file order)."""
        named = self.named_files(query)
        if not named:
            return []
        positions: list[int] = []
        for p in named:
            f = self.table.by_path[p]
            positions.extend(range(f.first, f.first + f.count))
        rank = {pos: i for i, pos in enumerate(order)}
        return sorted(positions, key=lambda pos: (rank.get(pos, len(order)), pos))

    # ------------------------------------------------------------------ search
    def search(self, query: str, k: int | None = None, mode: str | None = None,
               max_hits_per_file: int | None = None, path_boost: bool = True, units: bool = False,
               demote: bool = True, list_config=None) -> Hits:
        """The `k` best chunks. Without `max_hits_per_file`, the list is shaped by `list_config` (a SearchConfig;
        this index's `[search]` by default): its per-file cap (`list_cap`) and its tail of new files (`list_head`). `units`: attach to each hit the whole definition it belongs to (`Hit.unit`),
        so a packer can show a function split over several chunks in one piece. `demote=False` turns off the
        demotion of test and prose files (for comparisons)."""
        from indexes.fusion import cap_per_key

        from ragbit.search.rerank import RERANK_DEPTH, candidate_window
        k = self.cfg.search.k if k is None else k
        mode = mode or self.cfg.search.mode
        shape = list_config or self.cfg.search
        cap = list_cap(query, shape) if max_hits_per_file is None else max_hits_per_file
        head = list_head(k, shape) if max_hits_per_file is None else None
        if mode not in MODES:
            raise SearchError(f"search mode must be hybrid, dense or lexical, not {mode!r}")
        if k <= 0:
            raise SearchError(f"k must be positive, got {k}")
        if not query.strip():
            raise SearchError("empty question")
        self._load(lexical=mode != "dense", dense=mode != "lexical")
        fused = self.fused(query, mode, CANDIDATES_PER_K * k * (3 if cap or head else 1), path_boost, demote)
        short = is_short(query, RERANK_MAX_WORDS)
        reranked = mode == "hybrid" and self.reranker is not None
        if reranked:
            fused = candidate_window(fused, self._lists)
            fused = self.reranker.rerank(fused, self.rerank_features(query, fused[:RERANK_DEPTH]))
        fused = cap_per_key(fused, key=self.table.path.__getitem__, cap=cap, new_keys_after=head)[:k]
        hits = Hits(self._hit(pos, score, r) for r, (pos, score) in enumerate(fused, start=1))
        if reranked and short:
            for hit in hits:
                hit.share = hit.score
        if units:
            for hit, (pos, _) in zip(hits, fused):
                hit.unit = self._unit(pos, hit)
            taken = {pos for pos, _ in fused}
            for hit, (pos, _) in list(zip(hits, fused))[:CALLEE_HITS]:
                hit.callees = self._callees(pos, hit, taken)
        hits.dense_complete = self.dense_complete or mode == "lexical"
        hits.mode = mode
        return hits

    def fused(self, query: str, mode: str, n: int, path_boost: bool = True,
              demote: bool = True) -> list[tuple[int, float]]:
        """(chunk position, score), best first: the lists of `mode` fused, test and prose files demoted. Each list
        is asked for at least MIN_CANDIDATES and LIST_DEPTH (the reranker's features read that deep) or `n`.
        The lists themselves stay in `self._lists` for the reranker."""
        from indexes.fusion import reciprocal_rank_fusion

        from ragbit.search.rerank import LIST_DEPTH, Lists
        self._last_scores: dict[int, float] = {}
        self._lists = Lists([], [])
        n = max(MIN_CANDIDATES, LIST_DEPTH, n)
        rankings, weights = [], []
        lexical_weight, dense_weight = fusion_weights(query) if mode == "hybrid" else (1.0, 1.0)
        if mode in ("hybrid", "lexical"):
            rankings.append(self._lexical_ranking(query, n))
            weights.append(lexical_weight)
        if mode in ("hybrid", "dense"):
            rankings.append(self._dense_ranking(query, n))
            weights.append(dense_weight)
        title = report_title(query) if mode == "hybrid" else ""
        if title and self.dense is not None and len(self.dense):   # a report's title, as the short question it is
            rankings.append([pos for pos, _ in self._dense_hits(self.embedder.embed_query(title), n)])
            weights.append(TITLE_WEIGHT)
        idents = " ".join(code_identifiers(query)) if mode == "hybrid" else ""
        if idents:                                   # a question that is only code names: BM25's list again
            rankings.append(rankings[0] if idents == query.strip() else
                            [pos for pos, _ in self.lexical.search(idents, n)])
            weights.append(IDENTIFIER_WEIGHT)
        frames = self._frame_ranking(query) if mode == "hybrid" else []
        if frames:                                   # the functions a quoted traceback passes through
            rankings.append(frames)
            weights.append(FRAME_WEIGHT)
        if path_boost:
            fused_so_far = [pos for pos, _ in reciprocal_rank_fusion(rankings, k=self.cfg.search.rrf_k)]
            named = self._path_ranking(query, fused_so_far)
            if named:
                rankings.append(named)
                weights.append(PATH_WEIGHT)
        fused = reciprocal_rank_fusion(rankings, k=self.cfg.search.rrf_k, weights=weights)
        if len(rankings) == 1:                       # one list: keep its own scores (BM25 / cosine)
            fused = list(self._last_scores.items())
        if demote:
            doc_factor = 1.0 if _ABOUT_DOCS.search(query) else PLAIN_DOC_FACTOR if is_plain_language(query) else DOC_FACTOR
            fused = self._demote(fused, tests=not _ABOUT_TESTS.search(query), doc_factor=doc_factor)
        return fused

    @property
    def reranker(self):
        """The learned reranker of this index's vector space (ragbit/search/rerank.py), or None: the model has none,
        or `[search] rerank` is off. Looked up once per generation."""
        if not self.cfg.search.learned_rerank:
            return None
        if getattr(self, "_reranker_of", None) != self._generation:
            from ragbit.search.rerank import RerankerError, load_reranker
            try:
                self._reranker = load_reranker(self.manifest.get("embed_model_id") or "")
            except RerankerError as e:
                raise SearchError(str(e)) from None
            self._reranker_of = self._generation
        return self._reranker

    def rerank_features(self, query: str, fused: list[tuple[int, float]]):
        """The reranker's features of the fused candidates (after `fused()` ran for this query)."""
        from ragbit.search.rerank import features
        t = self.table
        return features(query, fused, self._lists, t.scope, t.path, t.start_line, t.end_line, self._file_kind)

    def _demote(self, fused: list[tuple[int, float]], tests: bool, doc_factor: float) -> list[tuple[int, float]]:
        """Scale the scores of test-file chunks by TEST_FACTOR (if `tests`) and of prose files by `doc_factor`,
        and re-sort (stable: ties keep their order)."""
        factor = {"test": TEST_FACTOR if tests else 1.0, "doc": doc_factor, "code": 1.0}
        if factor["test"] == factor["doc"] == 1.0:
            return fused
        path, kind = self.table.path, self._file_kind
        scaled = [(pos, score * factor[kind(path[pos])]) for pos, score in fused]
        return sorted(scaled, key=lambda ps: -ps[1])

    def _file_kind(self, path: str) -> str:
        """"test", "doc" (prose, or a Python stub `.pyi` beside the module it declares) or "code"."""
        kind = self._file_kinds.get(path)
        if kind is None:
            kind = self._file_kinds[path] = ("test" if _TEST_PATH.search(path) else
                                             "doc" if _DOC_PATH.search(path) or self._is_stub(path) else "code")
        return kind

    def _is_stub(self, path: str) -> bool:
        if not path.endswith(".pyi"):
            return False
        if self._stubbed is None:
            self._stubbed = {p + "i" for p in self._paths if p.endswith(".py")}
        return path in self._stubbed

    def _hit(self, pos: int, score: float, rank: int) -> Hit:
        c = self.table.chunk(pos)
        return Hit(path=c.path, start_line=c.start_line, end_line=c.end_line, scope=c.scope or "",
                   language=c.language or "", score=score, text=c.text, rank=rank)

    def _definitions(self, path: str) -> dict[str, list[int]]:
        """Name -> positions of the first chunk of each definition of that name in one file (cached)."""
        found = self._defs_cache.get(path)
        if found is None:
            found, prev = {}, None
            f = self.table.by_path[path]
            for i in range(f.first, f.first + f.count):
                scope = self.table.scope[i]
                if scope and scope != prev:
                    found.setdefault(scope.rsplit(SCOPE_SEP, 1)[-1].split(" ", 1)[-1], []).append(i)
                prev = scope
            self._defs_cache[path] = found
        return found

    def _callees(self, pos: int, hit: Hit, taken: set[int]) -> list[Hit]:
        """Up to MAX_CALLEES definitions of the hit's own file that the hit's whole definition calls, in call
        order, skipping chunks already ranked. Of two definitions with the called name (two classes' `_setup`),
        the one nearest the caller's scope (the same class first) is taken."""
        body = hit.unit or hit
        scope = self.table.scope[pos] or ""
        own = {label.split(" ", 1)[-1] for label in scope.split(SCOPE_SEP)}
        defs = self._definitions(hit.path)

        def shared_prefix(at: int) -> int:
            return len(os.path.commonprefix([scope.split(SCOPE_SEP), self.table.scope[at].split(SCOPE_SEP)]))

        out: list[Hit] = []
        for name in called_names(body.text, hit.language):
            if name in own or name not in defs:
                continue
            at = max(defs[name], key=shared_prefix)
            if at in taken:
                continue
            taken.add(at)
            callee = self._hit(at, hit.score, hit.rank)
            callee.share = hit.share                 # packed on its caller's merit
            callee.unit = self._unit(at, callee)
            out.append(callee)
            if len(out) >= MAX_CALLEES:
                break
        return out

    def _unit(self, pos: int, hit: Hit) -> Hit | None:
        """The chunks around `pos` that belong to the same definition: its neighbours in the file whose scope
        is the chunk's scope or nested in it (the parts of a split function, the methods of a small class).
        None when the chunk is its own unit, is at module level, is prose (a section of a .md/.rst/.txt file: the
        paragraph that matched is the part worth its tokens), or the unit spans more than MAX_UNIT_CHUNKS."""
        scope = self.table.scope[pos]
        if not scope or _DOC_PATH.search(self.table.path[pos]):
            return None
        scope = outer_function_scope(scope)         # a nested function's unit is the function around it
        f = self.table.by_path[self.table.path[pos]]
        nested = scope + SCOPE_SEP

        def inside(i: int) -> bool:
            s = self.table.scope[i]
            return s == scope or s.startswith(nested)

        lo = hi = pos
        while lo > f.first and inside(lo - 1) and hi - lo < MAX_UNIT_CHUNKS:
            lo -= 1
        while hi < f.first + f.count - 1 and inside(hi + 1) and hi - lo < MAX_UNIT_CHUNKS:
            hi += 1
        if lo == hi or hi - lo >= MAX_UNIT_CHUNKS:
            return None
        lines: dict[int, str] = {}
        for i in range(lo, hi + 1):                   # split parts overlap by a line or two: number them
            start, text = self.table.start_line[i], self.table.text[i]
            for j, line in enumerate(text[:-1].split("\n") if text.endswith("\n") else text.split("\n")):
                lines.setdefault(start + j, line)
        first, last = min(lines), max(lines)
        return Hit(path=hit.path, start_line=first, end_line=last, scope=scope, language=hit.language,
                   score=hit.score, text="\n".join(lines.get(i, "") for i in range(first, last + 1)), rank=hit.rank)
