"""Cut a source file into retrievable chunks that each fit the embedding model's token budget.

One module per strategy, one shared budget/merging step:

    languages.py  file name -> language
    syntax.py     tree-sitter: split at definitions (Python, JS/TS, Go, Rust, Java, C/C++, Ruby, C#, PHP, ...)
    markup.py     Markdown / reStructuredText: split at headings
    windows.py    line windows: everything else, parse failures, and oversized spans of the others
    budget.py     measuring spans and merging small neighbours
    assembly.py   pieces -> chunks, each checked against the real counter: the `max_tokens` guarantee
    tokens.py     token counters: the embedding model's exact counts without one tokenizer call per line
"""
from __future__ import annotations

from ragbit.indexing.chunking.assembly import assemble
from ragbit.indexing.chunking.budget import Budget, Piece
from ragbit.indexing.chunking.chunk import Chunk, make_embed_text
from ragbit.indexing.chunking.languages import MARKUP, language_for_path
from ragbit.indexing.chunking.markup import markup_pieces
from ragbit.indexing.chunking.symbols import file_symbols
from ragbit.indexing.chunking.syntax import SYNTAX_LANGUAGES, find_definitions, parse, syntax_pieces
from ragbit.indexing.chunking.tokens import counter_for_tokenizer, estimate_tokens
from ragbit.indexing.chunking.windows import window_pieces
from ragbit.config import ChunkConfig

__all__ = ["Chunk", "chunk_file", "chunk_file_with_symbols", "counter_for_tokenizer", "estimate_tokens", "language_for_path",
           "make_embed_text"]

# Part of every index's chunk settings: bump it when chunk boundaries or `make_embed_text` change, so the next
# `ragbit index` re-chunks every file (the chunk table stores each chunk's content hash instead of recomputing it).
CHUNKER_VERSION = 2
# Part of the chunk settings too: bump it when what `symbols.file_symbols` records changes (every file is re-parsed
# once; no vector is recomputed).
SYMBOLS_VERSION = 1

# What a tree-sitter parse can raise on a grammar or input problem; anything else is a bug and propagates.
_PARSE_ERRORS = (LookupError, RuntimeError, ValueError, OSError, RecursionError)


def normalize_newlines(text: str) -> str:
    """Lines are split on "\\n" only (tree-sitter rows count "\\n"), so CRLF and lone CR become "\\n"."""
    return text.replace("\r\n", "\n").replace("\r", "\n") if "\r" in text else text


def chunk_file(path: str, text: str, cfg: ChunkConfig, count_tokens=None) -> list[Chunk]:
    """Chunks of one file, in line order, deterministic; every non-blank line is in at least one chunk.

    `count_tokens` measures `Chunk.embed_text`: a `str -> int` function (default: `estimate_tokens`), called
    about once per line plus once per chunk, or a counter from `counter_for_tokenizer` (e.g.
    `Embedder.token_counter`), which is much cheaper. Every returned chunk satisfies
    `count(chunk.embed_text) <= cfg.max_tokens`. Counting must be without truncation or padding (a HF
    tokenizer.json often has both switched on).
    """
    return chunk_file_with_symbols(path, text, cfg, count_tokens)[0]


def chunk_file_with_symbols(path: str, text: str, cfg: ChunkConfig,
                            count_tokens=None) -> tuple[list[Chunk], dict | None]:
    """`chunk_file`'s chunks and the file's symbol record (`symbols.file_symbols`; None for a file tree-sitter
    does not parse), both from one parse."""
    text = normalize_newlines(text)
    language = language_for_path(path) or "text"
    budget = Budget(path, language, text.split("\n"), cfg.max_tokens, cfg.min_lines, count_tokens,
                    cfg.merge_under, cfg.split_overlap_lines)
    pieces: list[Piece] | None = None
    symbols = None
    try:
        if language in SYNTAX_LANGUAGES:
            source = text.encode("utf-8")
            tree = parse(language, source)
            definitions = find_definitions(language, source, budget.lines, tree)
            pieces = syntax_pieces(budget, language, text, cfg.split_overlap_lines, definitions)
            symbols = file_symbols(path, language, definitions, tree, source)
        elif language in MARKUP:
            pieces = markup_pieces(budget, language, text, cfg.split_overlap_lines)
    except _PARSE_ERRORS:
        pieces = None
    if pieces is None:
        pieces = window_pieces(budget, cfg.window_lines, cfg.overlap_lines)
    return assemble(budget, pieces), symbols
