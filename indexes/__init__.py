"""indexes: retrieval storage (FAISS dense vectors, BM25 lexical search, fusion, persistence).

Depends on nothing in ragbit or generator.
"""
