"""Chunker: definitions per language, scope paths, exact line ranges, merging, splitting, markup, windows, budget."""
from __future__ import annotations

import hashlib
from pathlib import Path

import pytest

from ragbit.indexing.chunking import Chunk, chunk_file, estimate_tokens, language_for_path
from ragbit.indexing.chunking import syntax
from ragbit.indexing.chunking.syntax import find_definitions
from ragbit.config import ChunkConfig

FIXTURES = Path(__file__).parent / "fixtures" / "chunking"
NO_MERGE = dict(min_lines=0, merge_under=0.0)


def read(name: str) -> str:
    return (FIXTURES / name).read_text(encoding="utf-8")


def lines_of(text: str) -> list[str]:
    return text.split("\n")


def assert_exact_and_covering(chunks: list[Chunk], text: str) -> None:
    """Every chunk's text is exactly its lines; every non-blank line of the file is in some chunk."""
    lines = lines_of(text)
    covered = set()
    for c in chunks:
        assert 1 <= c.start_line <= c.end_line <= len(lines)
        if c.start_line == c.end_line and c.text != lines[c.start_line - 1]:
            assert c.text in lines[c.start_line - 1]              # a slice of an over-long line
        else:
            assert c.text == "\n".join(lines[c.start_line - 1:c.end_line])
        covered.update(range(c.start_line, c.end_line + 1))
    missing = [i + 1 for i, line in enumerate(lines) if line.strip() and i + 1 not in covered]
    assert missing == []
    assert [c.start_line for c in chunks] == sorted(c.start_line for c in chunks)


def flatten(defs, scope=""):
    for d in defs:
        s = f"{scope} > {d.label}" if scope else d.label
        yield s, d.start + 1, d.end + 1
        yield from flatten(d.children, s)


# ==================================================================================================================
# definitions per language: (scope path, first line, last line), 1-based inclusive, comments/decorators attached
# ==================================================================================================================

EXPECTED_DEFINITIONS = {
    "sample.py": [("class Indexer", 7, 19), ("class Indexer > def __init__", 11, 12),
                  ("class Indexer > def add", 14, 19), ("class Indexer > def add > def normalise", 17, 18),
                  ("def main", 22, 23)],
    "sample.js": [("function readFile", 3, 6), ("class Store", 8, 16), ("class Store > method constructor", 9, 11),
                  ("class Store > method get", 13, 15), ("function handler", 18, 20), ("function ids", 22, 24)],
    "sample.ts": [("interface Options", 3, 6), ("type Key", 8, 8), ("enum Color", 10, 13), ("class Cache", 15, 21),
                  ("class Cache > method get", 18, 20), ("function makeCache", 23, 25), ("namespace Util", 27, 31),
                  ("namespace Util > function id", 28, 30)],
    "sample.tsx": [("interface Props", 3, 5), ("function Greeting", 7, 9), ("class App", 11, 15),
                   ("class App > method render", 12, 14)],
    "sample.go": [("type Store", 5, 9), ("func (s *Store) Get", 11, 16), ("func New", 18, 20)],
    "sample.rs": [("struct Store", 3, 7), ("trait Get", 9, 11), ("trait Get > fn get", 10, 10),
                  ("impl Get for Store", 13, 17), ("impl Get for Store > fn get", 14, 16), ("mod tests", 19, 24),
                  ("mod tests > fn works", 20, 23), ("macro_rules! square", 26, 28)],
    "Sample.java": [("class Store", 5, 21), ("class Store > constructor Store", 9, 11),
                    ("class Store > method get", 13, 16), ("class Store > interface Listener", 18, 20),
                    ("class Store > interface Listener > method changed", 19, 19)],
    "sample.c": [("struct point", 3, 6), ("struct box", 8, 10), ("function add", 12, 16), ("function make", 18, 20)],
    "sample.cpp": [("namespace geo", 3, 18), ("namespace geo > class Vec", 5, 12),
                   ("namespace geo > class Vec > function dot", 9, 11),
                   ("namespace geo > function Vec<double>::norm", 14, 16)],
    "sample.rb": [("module Store", 3, 18), ("module Store > class Memory", 5, 17),
                  ("module Store > class Memory > def initialize", 6, 8),
                  ("module Store > class Memory > def get", 10, 12),
                  ("module Store > class Memory > def self.build", 14, 16)],
    "Sample.cs": [("namespace Example", 3, 19), ("namespace Example > class Store", 5, 13),
                  ("namespace Example > class Store > constructor Store", 7, 7),
                  ("namespace Example > class Store > method Get", 9, 12),
                  ("namespace Example > interface IStore", 15, 18),
                  ("namespace Example > interface IStore > method Get", 17, 17)],
    "sample.php": [("function helper", 3, 5), ("class Store", 7, 11), ("class Store > function get", 8, 10)],
    "sample.kt": [("class Store", 3, 7), ("class Store > fun get", 4, 6), ("interface Listener", 9, 11),
                  ("interface Listener > fun changed", 10, 10), ("object Registry", 13, 15), ("fun main", 17, 19)],
    "sample.swift": [("struct Point", 3, 5), ("class Store", 7, 13), ("class Store > init", 8, 8),
                     ("class Store > func get", 10, 12), ("protocol Listener", 15, 17),
                     ("protocol Listener > func changed", 16, 16)],
    "sample.scala": [("trait Store", 3, 5), ("class Memory", 7, 11), ("class Memory > def get", 8, 10),
                     ("object Main", 13, 17), ("object Main > def main", 14, 16)],
}


@pytest.mark.parametrize("name", sorted(EXPECTED_DEFINITIONS))
def test_definitions_and_scope_paths_per_language(name):
    text = read(name)
    language = language_for_path(name)
    assert language in syntax.SYNTAX_LANGUAGES
    got = list(flatten(find_definitions(language, text.encode(), lines_of(text))))
    assert got == EXPECTED_DEFINITIONS[name]


@pytest.mark.parametrize("name", sorted(EXPECTED_DEFINITIONS))
def test_unmerged_chunks_are_top_level_definitions_plus_module_code(name):
    """With merging off and a roomy budget, each top-level definition is one chunk with its exact lines."""
    text = read(name)
    chunks = chunk_file(name, text, ChunkConfig(max_tokens=100_000, **NO_MERGE))
    assert_exact_and_covering(chunks, text)
    top = [(s, a, b) for s, a, b in EXPECTED_DEFINITIONS[name] if " > " not in s]
    assert [(c.scope, c.start_line, c.end_line) for c in chunks if c.scope] == top
    assert all(c.language == language_for_path(name) and c.path == name for c in chunks)
    module_level = [c for c in chunks if not c.scope]            # imports, package lines, ...
    for c in module_level:
        assert not any(a <= c.start_line <= b for _, a, b in top)


# ==================================================================================================================
# merging and splitting
# ==================================================================================================================

def count_lines(s: str) -> int:
    """A counter whose results are easy to reason about: one token per line (header lines included)."""
    return s.count("\n") + 1


def test_oversized_class_is_split_at_its_methods():
    text = read("sample.py")
    cfg = ChunkConfig(max_tokens=10, **NO_MERGE)                 # class Indexer = 13 lines + 2 header lines
    chunks = chunk_file("sample.py", text, cfg, count_tokens=count_lines)
    assert [(c.scope, c.start_line, c.end_line) for c in chunks] == [
        ("", 1, 4),
        ("class Indexer", 7, 9),                                   # decorator, class line, docstring
        ("class Indexer > def __init__", 11, 12),
        ("class Indexer > def add", 14, 19),
        ("def main", 22, 23),
        ("", 26, 27),
    ]
    assert_exact_and_covering(chunks, text)


def test_small_neighbours_merge_under_their_common_scope():
    text = read("sample.py")
    chunks = chunk_file("sample.py", text, ChunkConfig(max_tokens=10, min_lines=5), count_tokens=count_lines)
    spans = [(c.scope, c.start_line, c.end_line) for c in chunks]
    # the 3-line class header and the 2-line __init__ merge (7..12 = 6 lines + 2 header lines <= 10);
    # add (6 lines) does not fit with them; main and the __main__ block are small and merge at module level.
    assert spans == [("", 1, 4), ("class Indexer", 7, 12), ("class Indexer > def add", 14, 19), ("", 22, 27)]
    assert all(count_lines(c.embed_text) <= 10 for c in chunks)
    assert_exact_and_covering(chunks, text)


def test_merging_stops_at_the_budget():
    text = "\n\n".join(f"def f{i}():\n    return {i}" for i in range(30)) + "\n"
    chunks = chunk_file("many.py", text, ChunkConfig(max_tokens=20, min_lines=5), count_tokens=count_lines)
    assert len(chunks) > 1
    assert all(count_lines(c.embed_text) <= 20 for c in chunks)
    assert sum(c.text.count("def f") for c in chunks) == 30            # nothing lost, nothing doubled
    assert_exact_and_covering(chunks, text)


def test_oversized_function_is_split_into_overlapping_windows():
    body = "\n".join(f"    x{i} = compute({i})" for i in range(60))
    text = f"import os\n\n\ndef big():\n{body}\n    return x0\n"
    cfg = ChunkConfig(max_tokens=14, split_overlap_lines=2, **NO_MERGE)
    chunks = chunk_file("big.py", text, cfg, count_tokens=count_lines)
    windows = [c for c in chunks if c.scope == "def big"]
    assert len(windows) >= 5
    assert windows[0].start_line == 4 and windows[-1].end_line == 65
    for a, b in zip(windows, windows[1:]):
        assert b.start_line == a.end_line - 1                          # 2 lines of overlap
    assert all(count_lines(c.embed_text) <= 14 for c in chunks)
    assert_exact_and_covering(chunks, text)


def test_overlong_single_line_is_cut_into_slices_that_fit():
    line = "".join(f"item{i}," for i in range(600))                    # ~5000 characters on one line
    text = f"start\n{line}\nend\n"
    chunks = chunk_file("data.txt", text, ChunkConfig(max_tokens=100))
    slices = [c for c in chunks if c.start_line == c.end_line == 2]
    assert len(slices) > 1 and "".join(c.text for c in slices) == line
    assert all(estimate_tokens(c.embed_text) <= 100 for c in chunks)
    assert_exact_and_covering(chunks, text)


@pytest.mark.parametrize("max_tokens", [16, 40, 120])
@pytest.mark.parametrize("name", sorted(EXPECTED_DEFINITIONS) + ["doc.md", "guide.rst"])
def test_max_tokens_respected_with_a_custom_counter(name, max_tokens):
    text = read(name)

    def words(s: str) -> int:                                       # 2 "special tokens" + one per word
        return 2 + len(s.split())
    chunks = chunk_file(name, text, ChunkConfig(max_tokens=max_tokens), count_tokens=words)
    assert chunks
    assert max(words(c.embed_text) for c in chunks) <= max_tokens
    assert_exact_and_covering(chunks, text)


# ==================================================================================================================
# markup
# ==================================================================================================================

def test_markdown_split_by_heading_path():
    text = read("doc.md")
    chunks = chunk_file("doc.md", text, ChunkConfig(max_tokens=10_000, **NO_MERGE))
    assert [(c.scope, c.start_line, c.end_line) for c in chunks] == [
        ("", 1, 3),                                                 # front matter / preamble
        ("# Ragbit", 5, 7),
        ("# Ragbit > ## Install", 9, 16),                           # the "# not a heading" in the fence stays
        ("# Ragbit > ## Install > ### From source", 18, 20),
        ("# Ragbit > ## Usage", 22, 25),                            # setext heading "Usage\n-----"
        ("# Appendix", 27, 28),
    ]
    assert chunks[1].language == "markdown"
    assert_exact_and_covering(chunks, text)


def test_rst_levels_follow_adornment_order():
    text = read("guide.rst")
    chunks = chunk_file("guide.rst", text, ChunkConfig(max_tokens=10_000, **NO_MERGE))
    assert [(c.scope, c.start_line, c.end_line) for c in chunks] == [
        ("# Guide", 1, 5),
        ("# Guide > ## Install", 7, 10),
        ("# Guide > ## Install > ### Details", 12, 15),
        ("# Guide > ## Usage", 17, 20),
    ]
    assert_exact_and_covering(chunks, text)


def test_oversized_markdown_section_is_windowed_under_its_heading():
    text = "# Big\n\n" + "\n".join(f"Sentence number {i} about things." for i in range(80)) + "\n"
    chunks = chunk_file("big.md", text, ChunkConfig(max_tokens=12), count_tokens=count_lines)
    assert len(chunks) > 5 and {c.scope for c in chunks} == {"# Big"}
    assert all(count_lines(c.embed_text) <= 12 for c in chunks)
    assert_exact_and_covering(chunks, text)


# ==================================================================================================================
# windows and fallbacks
# ==================================================================================================================

def test_unknown_files_use_line_windows():
    text = "\n".join(f"line {i}" for i in range(1, 101)) + "\n"
    chunks = chunk_file("notes.unknownext", text, ChunkConfig(window_lines=40, overlap_lines=8))
    assert language_for_path("notes.unknownext") is None
    assert [(c.start_line, c.end_line) for c in chunks] == [(1, 40), (33, 72), (65, 100)]
    assert {c.language for c in chunks} == {"text"} and {c.scope for c in chunks} == {""}
    assert_exact_and_covering(chunks, text)


def test_windows_are_capped_by_max_tokens_too():
    text = "\n".join("word " * 20 for _ in range(100))
    chunks = chunk_file("notes.txt", text, ChunkConfig(max_tokens=50, window_lines=40))
    assert all(estimate_tokens(c.embed_text) <= 50 for c in chunks)
    assert all(c.n_lines < 40 for c in chunks)
    assert_exact_and_covering(chunks, text)


def test_parse_failure_falls_back_to_windows(monkeypatch):
    text = read("sample.go")
    cfg = ChunkConfig(window_lines=8, overlap_lines=2)

    def broken(language):
        raise LookupError(f"no grammar for {language}")
    monkeypatch.setattr(syntax, "_parser", broken)
    chunks = chunk_file("sample.go", text, cfg)
    assert {c.scope for c in chunks} == {""} and chunks[0].language == "go"
    assert [(c.start_line, c.end_line) for c in chunks] == [(1, 8), (7, 14), (13, 20)]
    assert_exact_and_covering(chunks, text)


def test_broken_syntax_still_covers_every_line():
    text = "def ok():\n    return 1\n\nclass Broken(:\n    def m(self)\n        pass\n\nx = [1, 2\n"
    chunks = chunk_file("broken.py", text, ChunkConfig(**NO_MERGE))
    assert any(c.scope == "def ok" for c in chunks)
    assert_exact_and_covering(chunks, text)


def test_empty_and_blank_files_have_no_chunks():
    assert chunk_file("a.py", "", ChunkConfig()) == []
    assert chunk_file("a.md", "\n\n   \n", ChunkConfig()) == []
    assert chunk_file("a.txt", "", ChunkConfig()) == []


def test_crlf_input_gives_the_same_chunks_as_lf():
    text = read("sample.rs")
    assert chunk_file("a.rs", text.replace("\n", "\r\n"), ChunkConfig()) == chunk_file("a.rs", text, ChunkConfig())


def test_deterministic():
    text = read("sample.ts")
    assert chunk_file("a.ts", text, ChunkConfig(max_tokens=40)) == chunk_file("a.ts", text, ChunkConfig(max_tokens=40))


# ==================================================================================================================
# chunk record
# ==================================================================================================================

def test_embed_text_and_content_hash():
    c = Chunk(path="src/a.py", language="python", start_line=3, end_line=4, scope="class A > def f",
              text="def f():\n    pass")
    assert c.embed_text == "src/a.py\nclass A > def f\ndef f():\n    pass"
    assert c.content_hash == hashlib.sha256(c.embed_text.encode()).hexdigest()
    top = Chunk(path="a.py", language="python", start_line=1, end_line=1, scope="", text="x = 1")
    assert top.embed_text == "a.py\nx = 1"
    assert Chunk("b.py", "python", 1, 1, "", "x = 1").content_hash != top.content_hash   # path is embedded


@pytest.mark.parametrize("path, language", [
    ("src/a.py", "python"), ("web/App.tsx", "tsx"), ("web/app.ts", "typescript"), ("x.mjs", "javascript"),
    ("main.go", "go"), ("lib.rs", "rust"), ("A.java", "java"), ("a.h", "c"), ("a.hpp", "cpp"), ("a.cc", "cpp"),
    ("a.rb", "ruby"), ("A.cs", "csharp"), ("a.php", "php"), ("A.kt", "kotlin"), ("A.swift", "swift"),
    ("A.scala", "scala"), ("README.md", "markdown"), ("docs/index.rst", "rst"), ("Makefile", "make"),
    ("Dockerfile", "dockerfile"), ("conf.YAML", "yaml"), ("noext", None), ("a.weird", None),
])
def test_language_for_path(path, language):
    assert language_for_path(path) == language


def test_budget_holds_when_the_line_estimate_is_far_too_optimistic():
    """A counter that is not additive over lines (quadratic in the line count): planning by per-line estimate
    merges too much, and the final exact check must undo those merges without losing or doubling lines."""
    def quadratic(s: str) -> int:
        return (s.count("\n") + 1) ** 2
    for name in ("sample.py", "Sample.java", "doc.md"):
        text = read(name)
        chunks = chunk_file(name, text, ChunkConfig(max_tokens=50, min_lines=5), count_tokens=quadratic)
        assert max(quadratic(c.embed_text) for c in chunks) <= 50
        assert_exact_and_covering(chunks, text)
