"""What an index generation looks like on disk: the one module both its writer and its readers import.

The writer (`ragbit/indexing/indexer.py`) and the readers (`ragbit/search/searcher.py`, `ragbit/search/status.py`)
agree here on the file names inside a generation, on which part of the repository is the index itself (never
walked), on the embedding-model check and on when recorded stat stamps can be trusted. Generations themselves
(atomic switch, lock, the layout's `FORMAT_VERSION` recorded in every manifest) are `indexes/store.py`'s job:
bump it there when these files change incompatibly. Imports nothing heavy: the search client loads it.

    <index dir>/gen-N/
        manifest.json       written by indexes.store: format_version, embed model, chunk settings, ...
        table/              TABLE_DIR: files, chunks and symbol records in immutable segments (`ragbit/table_segments.py`)
        lexical/            LEXICAL_DIR: BM25 (`indexes/lexical.py`)
        dense.faiss         DENSE_FILE: FAISS index over the chunks embedded so far (`indexes/dense.py`)
        dense_ids.npy       DENSE_IDS: dense position -> chunk position
        dense_delta.npy     DENSE_DELTA: vectors added since dense.faiss was written (`indexing/dense_update.py`)

    Format 1 (read, converted in memory, never written): chunk_table.txt (TABLE_FILE_V1) and symbols.json
    (SYMBOLS_FILE_V1) in place of table/, each rewritten whole by every commit.
"""
from __future__ import annotations

from pathlib import Path

from ragbit.errors import RagbitError

TABLE_DIR = "table"                     # the chunk table and the symbol table, in segments (format 2)
TABLE_FILE_V1 = "chunk_table.txt"       # format 1's chunk table: one file, read and converted
SYMBOLS_FILE_V1 = "symbols.json"        # format 1's symbol table: one file, read and converted
LEGACY_TABLE_FILE = "chunks.jsonl"      # written by ragbit before the columnar table: re-chunked, not read
LEXICAL_DIR = "lexical"
DENSE_FILE = "dense.faiss"
DENSE_IDS = "dense_ids.npy"             # dense position -> chunk position (the dense index may cover a subset)
DENSE_DELTA = "dense_delta.npy"         # vectors of the slots from the manifest's dense_index.base_slots on
# A background indexer (`ragbit/indexing/background.py`: the embedding half of an index, started by a question)
# leaves these beside the generations; `ragbit status` reads them to say that embedding is under way.
BACKGROUND_LOG = "index-background.log"
BACKGROUND_PID = "index-background.pid"
BACKGROUND_CONFIG = "index-background.json"
ANSWERING_PREFIX = "answering-"         # + the pid of a process generating an answer: the background indexer waits
VECTOR_CACHE_DIR = "vectors"            # embedded chunks by content hash, reused across generations (indexes/vector_cache)
# What ragbit keeps in an index directory beside the generations (names or prefixes; the search server's socket,
# lock and log among them): the index writer still takes such a directory for its own (IndexStore's also_ours).
APP_FILES = ("index-background.", ANSWERING_PREFIX, VECTOR_CACHE_DIR, "search", ".search")
# A chunk's scope is the path of definitions around it, joined: "class Indexer > def add". The chunker writes it,
# the searcher reads it to find the chunks of one definition (a hit's whole function, for packing).
SCOPE_SEP = " > "
# The keywords that label a function in a scope path (chunking/syntax.py's rule table, every language): a hit
# inside a nested function belongs to the outermost function around it, which is what a reader needs to see.
FUNCTION_KEYWORDS = frozenset({"def", "function", "func", "fn", "fun", "method", "constructor", "init"})


def outer_function_scope(scope: str) -> str:
    """The scope path down to the outermost function ("class A > def f > def g" -> "class A > def f"); the scope
    itself when no function is on it (a class, a module-level chunk)."""
    parts = scope.split(SCOPE_SEP)
    for i, part in enumerate(parts):
        if part.split(" ", 1)[0] in FUNCTION_KEYWORDS:
            return SCOPE_SEP.join(parts[: i + 1])
    return scope


class ModelMismatchError(RagbitError, RuntimeError):
    """The index was built with another embedding model than the one requested."""


def check_model(manifest: dict | None, model_id: str, index_dir: Path) -> None:
    """Refuse to mix vectors of two embedding models in one index (writer) or to query it with another (reader)."""
    if manifest and manifest.get("embed_model_id") not in (None, model_id):
        raise ModelMismatchError(
            f"the index at {index_dir} was built with embedding model {manifest['embed_model_id']!r}, "
            f"not {model_id!r}: run `ragbit index --rebuild` to re-embed with the new model")


class CommittedIndexError(RagbitError, RuntimeError):
    """The index directory is tracked by git: it came with the repository, so ragbit neither reads nor writes it."""


_TRUSTED: set[tuple] = set()   # (repo, index dir, CURRENT's stat) already checked: not tracked by git


def open_index_store(cfg, **kwargs):
    """The IndexStore of cfg's index directory, for reading or writing, after `refuse_committed_index`: every
    reader and the writer open the index through here."""
    from indexes.store import IndexStore
    refuse_committed_index(cfg.repo, cfg.index_dir)
    return IndexStore(cfg.index_dir, **kwargs)


def refuse_committed_index(repo, index_dir) -> None:
    """Raise CommittedIndexError when git tracks anything at or under the index directory (or where its link
    points, inside the repository).

    WHY: an index is read with FAISS's and numpy's loaders and a chunk table, which trust their input. ragbit
    writes `*` into every index's .gitignore, so an index in the repository's history was not built by ragbit
    on this machine: a cloned repository could ship a crafted `.ragbit/` that `ragbit search` would load, or
    that `ragbit index` would extend. One `git ls-files` (a few ms), once per process and committed generation;
    nothing is asked where git or a repository is missing, or where the index lives outside the repository."""
    import os
    import subprocess

    from indexes.store import CURRENT_FILE
    repo, index_dir = Path(repo), Path(index_dir)
    try:
        st = os.stat(index_dir / CURRENT_FILE)
        stamp = (st.st_ino, st.st_size, st.st_mtime_ns)
    except OSError:
        stamp = None
    key = (str(repo), str(index_dir), stamp)
    if key in _TRUSTED:
        return
    rels = set()
    for base, target in ((repo.absolute(), index_dir.absolute()), (repo.resolve(), index_dir.resolve())):
        try:
            rels.add(target.relative_to(base).as_posix() or ".")
        except ValueError:
            pass
    tracked = ""
    if rels and ((repo / ".git").exists() or _inside_git(repo)):
        try:
            done = subprocess.run(["git", "-C", str(repo), "ls-files", "-z", "--", *sorted(rels)],
                                  capture_output=True, timeout=30, stdin=subprocess.DEVNULL)
            if done.returncode == 0:
                tracked = done.stdout.decode("utf-8", "replace").split("\0")[0]
        except (OSError, subprocess.SubprocessError):
            pass
    if tracked:
        raise CommittedIndexError(
            f"the index directory {index_dir} is tracked by git ({tracked} is committed in {repo}): it came with "
            "the repository, and ragbit does not read or update an index it did not build (a crafted one could "
            "exploit the index readers); delete that directory and run `ragbit index`, or put the index "
            "elsewhere with --index-dir or [index] dir")
    _TRUSTED.add(key)


def _inside_git(repo: Path) -> bool:
    """A repository below a git work tree's top (a monorepo's part): some parent holds .git."""
    return any((parent / ".git").exists() for parent in Path(repo).absolute().parents)


def index_dir_ignore(cfg) -> list[str]:
    """Gitignore pattern for the index directory when it lives inside the repository (it is never indexed)."""
    try:
        rel = cfg.index_dir.resolve().relative_to(cfg.repo)
    except ValueError:
        return []
    return ["/" + rel.as_posix() + "/"]


def stamp_lookup(manifest: dict | None, table, walk_cfg):
    """`known` for walk_repository: the previous table's settled stamps, when the walk's content rules are the
    ones they were recorded under; else None (every file is read)."""
    from ragbit.indexing.walker import content_rules
    if manifest and table is not None and manifest.get("content_rules") == content_rules(walk_cfg):
        return table.sha_if_stamped
    return None


def background_indexer(index_dir: str | Path) -> int | None:
    """The pid of a background indexer of `index_dir` that is still running, else None."""
    import os
    try:
        pid = int((Path(index_dir) / BACKGROUND_PID).read_text(encoding="utf-8").strip())
        os.kill(pid, 0)
    except (OSError, ValueError):
        return None
    try:                                           # a pid reused by an unrelated process does not count
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            if b"ragbit.indexing.background" not in f.read():
                return None
    except OSError:
        pass                                       # no /proc (macOS): the pid file is all there is
    return pid
