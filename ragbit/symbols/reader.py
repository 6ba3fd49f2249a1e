"""Load the symbol table of the committed index generation (verified against its checksum), for readers."""
from __future__ import annotations

from pathlib import Path

from ragbit.config import RagbitConfig
from ragbit.index_layout import SYMBOLS_FILE_V1, TABLE_DIR
from ragbit.symbols.table import SymbolTable


def load_symbols(cfg: RagbitConfig) -> SymbolTable:
    """The committed generation's symbol table. Raises IndexMissingError (no index), IndexFormatError (damaged)
    or SymbolTableError (an index written before symbol tables: `ragbit index` adds one)."""
    from indexes.store import IndexMissingError, check_generation
    from ragbit.index_layout import open_index_store

    def load(gen: Path, manifest: dict) -> SymbolTable:
        check_generation(gen, manifest, (TABLE_DIR, SYMBOLS_FILE_V1))
        return SymbolTable.load(gen)

    try:
        return open_index_store(cfg).read(load)
    except IndexMissingError:
        raise IndexMissingError(f"no index at {cfg.repo}: run `ragbit index {cfg.repo}` first") from None
