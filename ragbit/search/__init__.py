"""Reading an index: rank chunks for a question, serve searches warm, report what is indexed.

    searcher.py (BM25 + dense + path boost, fused)   server.py (one warm process per index)   status.py

Everything here reads what `ragbit/indexing/` wrote, through the names in `ragbit/index_layout.py`; it never
imports the indexer.
"""
