"""The root of every error the generator raises on purpose (bad model file, bad settings, unusable prompt).

Callers (ragbit's CLI) catch `GeneratorError` to report any of them as one line; each class keeps its
built-in base (`ValueError`, `RuntimeError`) too, so code that catches those still does.
"""


class GeneratorError(Exception):
    """A model, prompt or setting the generator cannot use; the message says which and why."""


class ModelError(GeneratorError, ValueError):
    """The model cannot do what was asked (bad token id, empty prompt, unsupported architecture, ...)."""


class ContextOverflowError(ModelError):
    """The tokens would not fit in the KV cache (n_ctx)."""
