"""The symbol table of one index generation: where every name of the repository is defined, and what it imports.

Written by the indexer inside the chunk table's segments (one record per file, from the chunker's parse:
`ragbit/indexing/chunking/symbols.py`; layout in `ragbit/table_segments.py`), read by `ragbit symbols` and the
grounding check. Both sides import this module; it imports neither of them.

Why per-file records on disk: a re-index keeps the segments of unchanged files (and their records) as they
are, so only new and changed files are parsed, and only their records are written. Why lookups by last name component: an answer says
`Searcher.search`, `searcher.Searcher.search` or `search`; every one of them ends with a component that indexes
a short candidate list, and a suffix test on the candidates' full names decides.
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from ragbit import table_segments as seg
from ragbit.errors import RagbitError
from ragbit.index_layout import SYMBOLS_FILE_V1, TABLE_DIR

TABLE_VERSION = 1
MAX_ALIAS_HOPS = 4          # `pkg.Foo` -> `pkg.sub.Foo` -> ...: re-exports followed at most this deep


class SymbolTableError(RagbitError, ValueError):
    """The symbol table of an index is missing or unreadable."""


@dataclass(frozen=True)
class Symbol:
    name: str            # fully qualified: "ragbit.search.searcher.Searcher.search" (Python), "Store.get" (others)
    kind: str            # function, method, class, module, constant, variable, attribute, impl, ...
    path: str
    start_line: int
    end_line: int
    signature: str

    def to_json(self) -> dict:
        return {"name": self.name, "kind": self.kind, "path": self.path, "start_line": self.start_line,
                "end_line": self.end_line, "signature": self.signature}


def _join(module: str, qualname: str) -> str:
    return f"{module}.{qualname}" if module else qualname


class SymbolTable:
    """Per-file records (path -> {"module", "symbols", "imports"}), with lookups built on first use."""

    def __init__(self, files: dict[str, dict]):
        self.files = files
        self._by_last: dict[str, list[Symbol]] | None = None

    # ------------------------------------------------------------------ building and persistence
    @classmethod
    def from_files(cls, records: list[tuple[str, dict | None]], previous: "SymbolTable | None" = None,
                   reused: set[str] = frozenset()) -> "SymbolTable":
        """(path, record) in index order; a path in `reused` keeps its record from `previous`. Every indexed file
        has a record (empty for files tree-sitter does not parse), so the table also knows every path."""
        files = {}
        for path, record in records:
            if path in reused and previous is not None:
                record = previous.files.get(path)
            files[path] = record or {}
        return cls(files)

    def save(self, directory: Path) -> None:
        """One file, as index format 1 stored it (the indexer writes records into table segments instead)."""
        data = {"version": TABLE_VERSION, "files": self.files}
        with open(Path(directory) / SYMBOLS_FILE_V1, "w", encoding="utf-8") as out:
            out.write(json.dumps(data, ensure_ascii=False, separators=(",", ":")))

    @classmethod
    def load(cls, directory: Path) -> "SymbolTable":
        """The records of a generation (its table segments), or of a format-1 / `save`d symbols file."""
        table_dir = Path(directory) / TABLE_DIR
        if table_dir.is_dir():
            return cls._from_segments(table_dir)
        path = Path(directory) / SYMBOLS_FILE_V1
        try:
            with open(path, encoding="utf-8") as f:
                data = json.load(f)
            if data.get("version") != TABLE_VERSION:
                raise ValueError(f"symbol table version {data.get('version')}, this ragbit reads {TABLE_VERSION}")
            files = data["files"]
            if not isinstance(files, dict):
                raise ValueError("no file records")
        except FileNotFoundError:
            raise SymbolTableError(f"{Path(directory).parent}: this index has no symbol table yet; "
                                   "`ragbit index` adds it") from None
        except (OSError, ValueError, TypeError, KeyError, AttributeError) as e:
            raise SymbolTableError(f"{path}: unreadable symbol table ({type(e).__name__}: {e})") from None
        return cls(files)

    @classmethod
    def _from_segments(cls, table_dir: Path) -> "SymbolTable":
        try:
            names, order, _ = seg.read_layout(table_dir)
            paths, records = [], []
            for name in names:
                meta = json.loads((table_dir / name / seg.FILES_FILE).read_text(encoding="utf-8"))
                paths.append(meta["path"])
                records.append(seg.read_symbols(table_dir / name, len(meta["path"])))
            files = {paths[s][j]: records[s][j] or {} for s, j in order.tolist()}
        except (seg.SegmentFormatError, OSError, ValueError, TypeError, KeyError, IndexError) as e:
            raise SymbolTableError(f"{table_dir}: unreadable symbol table ({type(e).__name__}: {e})") from None
        return cls(files)

    # ------------------------------------------------------------------ lookups
    def _build(self) -> None:
        by_last: dict[str, list[Symbol]] = {}
        self._modules: dict[str, str] = {}                 # module -> path
        self._imports: dict[str, dict[str, str]] = {}      # module (or path) -> alias -> target
        self._imported_roots: dict[str, str] = {}          # alias or target root -> a target naming it
        self._modules_by_last: dict[str, list[str]] = {}   # last component -> modules ("searcher" -> [...])
        self._alias_targets: dict[str, list[str]] = {}     # alias -> what the modules importing it mean by it
        self._resolved: dict[str, list[Symbol]] = {}       # resolve() memo: the table never changes
        for path, record in self.files.items():
            module = record.get("module", "")
            if module:
                self._modules[module] = path
                self._modules_by_last.setdefault(module.rsplit(".", 1)[-1], []).append(module)
                n_lines = max((s[3] for s in record.get("symbols", ())), default=1)
                sym = Symbol(module, "module", path, 1, n_lines, "")
                by_last.setdefault(module.rsplit(".", 1)[-1], []).append(sym)
            for qualname, kind, start, end, signature in record.get("symbols", ()):
                sym = Symbol(_join(module, qualname), kind, path, start, end, signature)
                by_last.setdefault(qualname.rsplit(".", 1)[-1], []).append(sym)
            aliases = {}
            for alias, target in record.get("imports", ()):
                aliases[alias] = target
                targets = self._alias_targets.setdefault(alias, [])
                if target not in targets:
                    targets.append(target)
                self._imported_roots.setdefault(alias, target)
                self._imported_roots.setdefault(target.split(".")[0], target)
                self._imported_roots.setdefault(target, target)
            self._imports[module or path] = aliases
        self._by_last = by_last

    @property
    def by_last(self) -> dict[str, list[Symbol]]:
        if self._by_last is None:
            self._build()
        return self._by_last

    def _names(self) -> list[str]:
        """Every defined last name component, once (what fuzzy matching searches)."""
        if getattr(self, "_name_list", None) is None:
            self._name_list = list(self.by_last)
        return self._name_list

    def __len__(self) -> int:
        return sum(len(r.get("symbols", ())) for r in self.files.values())

    def find(self, name: str) -> list[Symbol]:
        """Definitions whose qualified name is `name` or ends with "." + `name`, in file order."""
        name = name.strip().strip(".")
        if not name:
            return []
        last = name.rsplit(".", 1)[-1]
        suffix = "." + name
        return [s for s in self.by_last.get(last, ()) if s.name == name or s.name.endswith(suffix)]

    def resolve(self, name: str) -> list[Symbol]:
        """`find`, then through imports: `pkg.Foo` where pkg/__init__.py does `from .sub import Foo` is
        pkg.sub.Foo; `Alias.method` where a module imports `Real as Alias` is Real.method."""
        if self._by_last is None:
            self._build()
        if name not in self._resolved:
            self._resolved[name] = self._resolve(name)
        return self._resolved[name]

    def _resolve(self, name: str) -> list[Symbol]:
        seen: set[str] = set()
        todo = [name]
        for _ in range(MAX_ALIAS_HOPS):
            found, nxt = [], []
            for candidate in todo:
                if candidate in seen:
                    continue
                seen.add(candidate)
                hits = self.find(candidate)
                if hits:
                    found += hits
                    continue
                nxt += self._through_imports(candidate)
            if found:
                return found
            if not nxt:
                return []
            todo = nxt
        return []

    def _through_imports(self, name: str) -> list[str]:
        """Names `name` may stand for after one import hop."""
        if self._by_last is None:
            self._build()
        parts = name.split(".")
        out = []
        for i in range(len(parts) - 1, -1, -1):
            prefix, alias, rest = ".".join(parts[:i]), parts[i], parts[i + 1:]
            if prefix:
                last = prefix.rsplit(".", 1)[-1]
                modules = [m for m in self._modules_by_last.get(last, ())
                           if m == prefix or m.endswith("." + prefix)]
                targets = [self._imports.get(m, {}).get(alias) for m in modules]
            else:
                targets = self._alias_targets.get(alias, [])
            for target in targets:
                if target and target != name:
                    out.append(".".join([target] + rest))
            if out:
                break
        return list(dict.fromkeys(out))[:20]

    def dependency(self, name: str) -> str | None:
        """The import that `name` comes from when it names something the repository imports but does not
        define (`np.zeros` with `import numpy as np`: "numpy"), else None."""
        if self._by_last is None:
            self._build()
        parts = name.split(".")
        for i in range(len(parts), 0, -1):
            target = self._imported_roots.get(".".join(parts[:i]))
            if target is not None and not self.resolve(target):
                return target.split(".")[0]
        return None

    def suggest(self, name: str, limit: int = 3) -> list[str]:
        """Close defined names for a name that is not defined: same owner first (`Session.fetch_all` ->
        `Session.fetch`), then any name of the repository."""
        from rapidfuzz import process
        from rapidfuzz.distance import Levenshtein
        parts = name.split(".")
        last = parts[-1]
        if len(parts) > 1:
            owner = ".".join(parts[:-1])
            members = {s.name.rsplit(".", 1)[-1] for s in self.resolve_members(owner)}
            if members:
                best = process.extract(last, members, scorer=Levenshtein.normalized_similarity, limit=limit)
                good = [f"{owner}.{m}" for m, score, _ in best if score >= 0.5]
                if good:
                    return good
        best = process.extract(last, self._names(), scorer=Levenshtein.normalized_similarity,
                               limit=limit, score_cutoff=0.6)
        return [m for m, _, _ in best]

    def resolve_members(self, owner: str) -> list[Symbol]:
        """Definitions directly inside the class or module `owner` (after resolving it)."""
        owners = self.resolve(owner)
        prefixes = {o.name + "." for o in owners}
        out = []
        if not prefixes:
            return out
        paths = {o.path for o in owners}
        for path in paths:
            record = self.files.get(path, {})
            module = record.get("module", "")
            for qualname, kind, start, end, signature in record.get("symbols", ()):
                full = _join(module, qualname)
                for p in prefixes:
                    if full.startswith(p) and "." not in full[len(p):]:
                        out.append(Symbol(full, kind, path, start, end, signature))
        return out

    def fuzzy(self, name: str, limit: int = 10) -> list[Symbol]:
        """Definitions whose names are closest to `name` (for `ragbit symbols` when none matches exactly)."""
        from rapidfuzz import process
        from rapidfuzz.distance import Levenshtein
        out: list[Symbol] = []
        for key, _, _ in process.extract(name.rsplit(".", 1)[-1], self._names(),
                                         scorer=Levenshtein.normalized_similarity, limit=limit, score_cutoff=0.5):
            out += self.by_last[key]
        return out[:limit]
