"""ragbit: ask questions about a codebase on a CPU, with PrismML's 1-bit Bonsai models.

`ragbit` may import `generator` and `indexes`; those two never import `ragbit` or each other.
"""
__version__ = "0.1.0"
