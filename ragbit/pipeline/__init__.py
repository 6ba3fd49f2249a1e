"""Composable query pipelines: retrieved code in, cited answer out.

    from ragbit.pipeline import Pipeline, component, Component
    from ragbit.pipeline.standard import standard_pipeline, ask

Modules, one job each: `component` (the contract + registry), `sockets` (type compatibility),
`pipeline` (wiring, validation, execution), `packing` (token-budgeted context), `prompting` (system
prompt, message layout, citation extraction), `models` (one shared Generator per model), then one module
per built-in component, and `standard` (the default query pipeline and `ask()`), `conversation` (chat).
"""
from ragbit.pipeline.contract import Component, PipelineError, component, registered, resolve_component
from ragbit.pipeline.pipeline import Pipeline, PipelineResult

__all__ = ["Component", "Pipeline", "PipelineError", "PipelineResult", "component", "registered",
           "resolve_component"]
