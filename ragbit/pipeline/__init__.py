"""Composable query pipelines: retrieved code in, cited answer out.

    from ragbit.pipeline import Pipeline, component, Component
    from ragbit.pipeline.standard import standard_pipeline, ask

The engine: `contract` (what a component is, `@component`), `registry` (a component by its name), `sockets` (type compatibility),
`pipeline` (wiring, validation, execution), `model_loader` (one shared Generator per model and settings).
The built-in components, one per file, are in `components/`; `standard` is the default query pipeline and
`ask()`, `conversation` is `ragbit chat`.
"""
from ragbit.pipeline.contract import Component, PipelineError, component
from ragbit.pipeline.registry import registered, resolve_component
from ragbit.pipeline.pipeline import Pipeline, PipelineResult

__all__ = ["Component", "Pipeline", "PipelineError", "PipelineResult", "component", "registered",
           "resolve_component"]
