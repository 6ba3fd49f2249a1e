"""Where names are defined: the symbol table of an index (`table.py`) and reading it from the committed
generation (`reader.py`). Used by `ragbit symbols` and the grounding check."""
