"""The root of every error the retrieval storage raises on purpose (missing, locked or unreadable index).

Callers (ragbit's CLI) catch `IndexesError` to report any of them as one line; each class keeps its
built-in base (`ValueError`, `RuntimeError`, `FileNotFoundError`) too, so code that catches those still does.
"""


class IndexesError(Exception):
    """An index that is missing, locked, or not readable by this version; the message says which."""
