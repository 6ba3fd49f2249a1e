"""The component contract: typed inputs and outputs, cheap construction, heavy loading on first use.

A component is any class decorated with `@component` that has

- `outputs = {"name": type, ...}`        what `run` returns (a dict with exactly these keys),
- `run(self, name: type, ...) -> dict`   its inputs are `run`'s annotated parameters; a parameter with a
                                         default is optional (the pipeline may leave it unconnected),
- optionally `warm_up(self)`             heavy loading (models, indexes); the pipeline calls it once,
                                         just before the first `run`, so building a pipeline stays instant,
- optionally `from_config(cls, cfg, **params)`  how to build it from a RagbitConfig plus ragbit.toml params
                                         (default: `cls(**params)`).

Why `run`'s signature is the input declaration: one place to read, and the pipeline can check at build
time that every input is provided with a compatible type. `@component` also registers the class under
its name, so ragbit.toml can refer to it (lookups by name or "package.module:Class" path: `registry`).
"""
from __future__ import annotations

import functools
import inspect
import typing
from typing import Any, Callable, ClassVar

from ragbit.errors import RagbitError

_MISSING = inspect.Parameter.empty
OnToken = Callable[[str], None]  # receives each new piece of the answer as it is generated (a streaming input)


class PipelineError(RagbitError, ValueError):
    """A pipeline that cannot be built or run as described; the message says what and where."""


class Component:
    """Optional convenience base: a no-op `warm_up`, `from_config` that passes params through."""

    outputs: ClassVar[dict[str, Any]] = {}
    inputs: ClassVar[dict[str, Any]]             # filled in by @component from run()'s signature
    input_defaults: ClassVar[dict[str, Any]]

    def warm_up(self) -> None:
        """Load heavy resources; called once by the pipeline before the first run."""

    def run(self, **inputs: Any) -> dict[str, Any]:  # pragma: no cover - every component overrides it
        raise NotImplementedError


# ======================================================================================================
# Registry: name -> class, filled by @component
# ======================================================================================================

_REGISTRY: dict[str, type] = {}


def component(cls: type | None = None, *, name: str | None = None) -> Any:
    """Class decorator: read the class's sockets, record its init params, register it by name.

    Usable bare (`@component`) or with a name (`@component(name="MyFilter")`).
    """
    def decorate(c: type) -> type:
        describe(c)
        _record_init_params(c)
        reg_name = name or c.__name__
        existing = _REGISTRY.get(reg_name)
        if existing is not None and _qualname(existing) != _qualname(c):
            raise PipelineError(f"component name '{reg_name}' is already registered by {_qualname(existing)}")
        _REGISTRY[reg_name] = c
        c.component_name = reg_name
        return c
    return decorate(cls) if cls is not None else decorate


def describe(cls: type) -> None:
    """Set `cls.inputs` / `cls.input_defaults` from `run`'s signature and check `cls.outputs`."""
    run = getattr(cls, "run", None)
    if not callable(run):
        raise PipelineError(f"{_qualname(cls)} is not a component: it has no run() method")
    outputs = getattr(cls, "outputs", None)
    if not isinstance(outputs, dict) or not all(isinstance(k, str) for k in outputs):
        raise PipelineError(f"{_qualname(cls)}: `outputs` must be a dict of output name -> type")
    try:
        hints = typing.get_type_hints(run)
    except Exception as e:  # an annotation that does not resolve: say which class
        raise PipelineError(f"{_qualname(cls)}.run: cannot resolve type annotations ({e})") from None
    inputs: dict[str, Any] = {}
    defaults: dict[str, Any] = {}
    for pname, param in list(inspect.signature(run).parameters.items())[1:]:  # skip self
        if param.kind in (param.VAR_POSITIONAL, param.VAR_KEYWORD):
            raise PipelineError(f"{_qualname(cls)}.run: declare every input by name (no *args/**kwargs)")
        if pname not in hints:
            raise PipelineError(f"{_qualname(cls)}.run: input '{pname}' needs a type annotation")
        inputs[pname] = hints[pname]
        if param.default is not _MISSING:
            defaults[pname] = param.default
    cls.inputs = inputs
    cls.input_defaults = defaults


def _record_init_params(cls: type) -> None:
    """Wrap __init__ so each instance remembers the arguments it was built with (`init_params`).

    Why: a pipeline can then describe itself (`Pipeline.spec()`), which is how a pipeline built from
    ragbit.toml is compared with one built in code.
    """
    init = cls.__dict__.get("__init__")
    if init is None or getattr(init, "_records_params", False):
        return
    sig = inspect.signature(init)

    @functools.wraps(init)
    def wrapped(self: Any, *args: Any, **kwargs: Any) -> None:
        bound = sig.bind(self, *args, **kwargs)
        self.init_params = {k: v for k, v in list(bound.arguments.items())[1:]}
        init(self, *args, **kwargs)

    wrapped._records_params = True  # type: ignore[attr-defined]
    cls.__init__ = wrapped


def _qualname(cls: type) -> str:
    return f"{cls.__module__}:{cls.__qualname__}"
