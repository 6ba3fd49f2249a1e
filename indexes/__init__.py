"""indexes: retrieval storage (FAISS dense vectors, BM25 lexical search, fusion, persistence).

Depends on nothing in ragbit or generator. Modules, each one job:

- lexical.py       code_tokens() + LexicalIndex (BM25 over segments; scores equal bm25s')
- bm25_segments.py immutable BM25 postings segments (term frequencies), merge, numba scoring kernels
- dense.py         DenseIndex (FAISS flat / hnsw / ivf, inner product on L2-normalised vectors)
- fusion.py        reciprocal_rank_fusion(), cap_per_key()
- store.py         IndexStore: atomic generations under a CURRENT pointer, writer lock, format version
- vector_cache.py  VectorCache: embeddings by content hash, append-only crash-safe shards

Nothing is imported here, so `import indexes.fusion` does not pay for faiss or numba.
"""
