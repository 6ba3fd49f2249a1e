"""Writing an index: walk the repository, chunk files, embed chunks, commit a generation.

    walker.py -> chunking/ (+ chunk_pool.py) -> embeddings.py (embedding_backends.py: the choice; onnx_export.py; sentence_encoders.py) -> indexer.py

`indexer.index_repository` drives the steps; the on-disk names it writes are in `ragbit/index_layout.py`,
which the reading side (`ragbit/search/`) imports too, so nothing there imports this package's indexer.
"""
