"""Finding a component class by the name ragbit.toml gives it, and naming an instance the same way.

Why apart from `contract`: the lookup must import the built-in components, and they import the contract; with
both in one module the contract and `components/` formed an import circle."""
from __future__ import annotations

import importlib
from typing import Any, Callable

from ragbit.pipeline.contract import _REGISTRY, PipelineError, _qualname, describe


def _load_builtins() -> None:
    """Register the built-in components (imported on first lookup: building `ragbit.pipeline` stays cheap)."""
    importlib.import_module("ragbit.pipeline.components")


def registered() -> dict[str, type]:
    """All registered component classes, built-ins included."""
    _load_builtins()
    return dict(_REGISTRY)


def resolve_component(type_name: str) -> type:
    """A registered name ("HybridRetriever") or an import path ("examples.custom_pipeline:PathFilter")."""
    if ":" in type_name:
        module_name, _, attr = type_name.partition(":")
        try:
            module = importlib.import_module(module_name)
        except ImportError as e:
            raise PipelineError(f"cannot import component module '{module_name}': {e}") from None
        cls = getattr(module, attr, None)
        if not isinstance(cls, type):
            raise PipelineError(f"module '{module_name}' has no class '{attr}'")
        if "inputs" not in vars(cls):  # an undecorated class (or subclass): read its own run()
            describe(cls)
        return cls
    _load_builtins()
    if type_name not in _REGISTRY:
        known = ", ".join(sorted(_REGISTRY)) or "none"
        raise PipelineError(f"unknown component type '{type_name}' (registered: {known}; "
                            "or give 'package.module:Class')")
    return _REGISTRY[type_name]


def build_component(cls: type, cfg: Any, params: dict[str, Any]) -> Any:
    """Instantiate `cls` for a RagbitConfig `cfg`; a bad param is a PipelineError, not a TypeError."""
    factory: Callable[..., Any] = getattr(cls, "from_config", None) or (lambda _cfg, **p: cls(**p))
    try:
        return factory(cfg, **params)
    except TypeError as e:
        raise PipelineError(f"cannot build {_qualname(cls)} with params {params}: {e}") from None


def type_name_of(instance: Any) -> str:
    """How ragbit.toml would name this component's class: its registered name, else its import path."""
    cls = type(instance)
    name = getattr(cls, "component_name", None)
    if name is not None and _REGISTRY.get(name) is cls:
        return name
    return _qualname(cls)
