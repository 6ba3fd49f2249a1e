"""The root of every error ragbit reports to a user as one line.

Why one root: the CLI has a single error boundary (`ragbit/cli/boundary.py`) that turns any `RagbitError`,
`indexes.errors.IndexesError` or `generator.errors.GeneratorError` into one `error: ...` line and an exit code,
so a new error class only has to subclass its package's root to be reported properly. Each class keeps its
built-in base too (`ValueError`, `RuntimeError`, ...), so callers that catch those still do.
"""
from __future__ import annotations


class RagbitError(Exception):
    """Something the user can fix (bad input, missing or stale index, unusable model); the message says what."""
