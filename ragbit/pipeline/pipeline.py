"""Pipeline: components wired output -> input, checked when built, run in dependency order.

    p = Pipeline(inputs={"query": str})
    p.add("retriever", HybridRetriever(cfg))
    p.add("packer", ContextPacker(budget=1500, tokenizer=tok))
    p.connect("retriever.hits", "packer.hits")     # explicit; or leave it out: matched by name
    result = p.run(query="where is the config parsed?")
    result["packer"]["context"], result.timings

Wiring rules (applied by `build()`, which `run()` calls if you did not):
1. explicit `connect(sender, receiver)`: "comp.output" -> "comp.input"; a bare pipeline input name as
   sender ("query" -> "retriever.query"); or two bare component names: every same-named output -> input;
2. every input still unconnected takes the pipeline input of the same name, else the same-named output
   of the NEAREST EARLIER component (so retriever -> filter -> packer chains by adding them in order);
3. an input that is still unconnected must have a default, otherwise the build fails.
Build also fails on unknown components/sockets, type mismatches, an input fed twice, and cycles; all
problems are reported together in one message. Why at build time: a misspelt socket in ragbit.toml
should fail before a model is loaded or an index is read, not after a minute of work.
"""
from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

from ragbit.pipeline.contract import OnToken, PipelineError, describe
from ragbit.pipeline.registry import build_component, resolve_component, type_name_of
from ragbit.pipeline.sockets import compatible, type_label

PIPELINE_INPUT = ""  # the sender name used for pipeline inputs inside an edge


@dataclass(frozen=True)
class Edge:
    sender: str          # component name, or PIPELINE_INPUT
    output: str
    receiver: str
    input: str

    def __str__(self) -> str:
        src = self.output if self.sender == PIPELINE_INPUT else f"{self.sender}.{self.output}"
        return f"{src} -> {self.receiver}.{self.input}"


@dataclass
class PipelineResult:
    outputs: dict[str, dict[str, Any]] = field(default_factory=dict)  # component -> output -> value
    timings: dict[str, float] = field(default_factory=dict)           # component -> run() seconds
    warm_up: dict[str, float] = field(default_factory=dict)           # component -> warm_up() seconds (first run)

    def __getitem__(self, component: str) -> dict[str, Any]:
        return self.outputs[component]

    def find(self, output: str) -> Any:
        """The value of the LAST step that produced an output of this name (None if no step did)."""
        for values in reversed(list(self.outputs.values())):
            if output in values:
                return values[output]
        return None


class Pipeline:
    def __init__(self, inputs: dict[str, Any] | None = None, defaults: dict[str, Any] | None = None) -> None:
        self.inputs: dict[str, Any] = dict(inputs or {})   # pipeline input name -> type
        self.defaults: dict[str, Any] = dict(defaults or {})  # pipeline inputs that run() may omit
        unknown = set(self.defaults) - set(self.inputs)
        if unknown:
            raise PipelineError(f"defaults for undeclared pipeline inputs: {', '.join(sorted(unknown))}")
        self.components: dict[str, Any] = {}
        self._explicit: list[tuple[str, str]] = []
        self._edges: list[Edge] | None = None              # set by build()
        self._order: list[str] = []
        self._warmed: set[str] = set()

    # --------------------------------------------------------------------------------------------------
    # Assembly
    # --------------------------------------------------------------------------------------------------
    def add(self, name: str, instance: Any) -> "Pipeline":
        if not name or "." in name:
            raise PipelineError(f"component name {name!r} must be non-empty and contain no '.'")
        if name in self.components or name in self.inputs:
            raise PipelineError(f"name '{name}' is already used in this pipeline")
        if "inputs" not in vars(type(instance)):
            describe(type(instance))  # an undecorated class with run() + outputs is fine too
        self.components[name] = instance
        self._edges = None
        return self

    def connect(self, sender: str, receiver: str) -> "Pipeline":
        self._explicit.append((sender, receiver))
        self._edges = None
        return self

    @classmethod
    def from_config(cls, cfg: Any) -> "Pipeline":
        """Build from `cfg.pipeline` (the [pipeline] section of ragbit.toml); inputs as `query_inputs()`."""
        pipeline = cls(**query_inputs())
        for spec in cfg.pipeline.components:
            comp_cls = resolve_component(spec["type"])
            pipeline.add(spec["name"], build_component(comp_cls, cfg, dict(spec.get("params", {}))))
        for sender, receiver in cfg.pipeline.connections:
            pipeline.connect(sender, receiver)
        return pipeline.build()

    # --------------------------------------------------------------------------------------------------
    # Validation
    # --------------------------------------------------------------------------------------------------
    def build(self) -> "Pipeline":
        problems: list[str] = []
        edges: list[Edge] = []
        fed: dict[tuple[str, str], Edge] = {}

        def add_edge(edge: Edge) -> None:
            key = (edge.receiver, edge.input)
            if key in fed:
                problems.append(f"input {edge.receiver}.{edge.input} is fed twice ({fed[key]} and {edge})")
                return
            sent = self._socket_type(edge.sender, edge.output, outputs=True)
            wanted = self._socket_type(edge.receiver, edge.input, outputs=False)
            if not compatible(sent, wanted):
                problems.append(f"type mismatch: {edge} sends {type_label(sent)} but "
                                f"{edge.receiver}.{edge.input} expects {type_label(wanted)}")
                return
            fed[key] = edge
            edges.append(edge)

        for sender, receiver in self._explicit:                            # rule 1
            try:
                for edge in self._parse_connection(sender, receiver):
                    add_edge(edge)
            except PipelineError as e:
                problems.append(str(e))

        names = list(self.components)
        for position, name in enumerate(names):                            # rules 2 and 3
            comp = type(self.components[name])
            for inp in comp.inputs:
                if (name, inp) in fed:
                    continue
                provider = self._provider_for(inp, names[:position])
                if provider is not None:
                    add_edge(Edge(provider, inp, name, inp))
                elif inp not in comp.input_defaults:
                    problems.append(f"input {name}.{inp} ({type_label(comp.inputs[inp])}) is not provided "
                                    "by any component or pipeline input")

        order, cycle = _topological_order(names, edges)
        if cycle:
            problems.append(f"cycle between components: {' -> '.join(cycle)}")
        if problems:
            raise PipelineError("invalid pipeline: " + "; ".join(problems))
        self._edges, self._order = edges, order
        return self

    def _provider_for(self, name: str, earlier: list[str]) -> str | None:
        if name in self.inputs:
            return PIPELINE_INPUT
        for candidate in reversed(earlier):
            if name in type(self.components[candidate]).outputs:
                return candidate
        return None

    def _parse_connection(self, sender: str, receiver: str) -> list[Edge]:
        s_comp, _, s_out = sender.partition(".")
        r_comp, _, r_in = receiver.partition(".")
        for comp in (s_comp, r_comp):
            if comp not in self.components and not (comp == s_comp and not s_out and comp in self.inputs):
                raise PipelineError(f"connect({sender!r}, {receiver!r}): unknown component '{comp}'")
        if not s_out and s_comp in self.inputs:                            # pipeline input -> comp.input
            if not r_in:
                raise PipelineError(f"connect({sender!r}, {receiver!r}): name the receiving input")
            self._socket_type(r_comp, r_in, outputs=False)
            return [Edge(PIPELINE_INPUT, s_comp, r_comp, r_in)]
        if not s_out and not r_in:                                         # comp -> comp, by names
            shared = [o for o in type(self.components[s_comp]).outputs if o in type(self.components[r_comp]).inputs]
            if not shared:
                raise PipelineError(f"connect({sender!r}, {receiver!r}): no output of {s_comp} has the name of an "
                                    f"input of {r_comp}")
            return [Edge(s_comp, o, r_comp, o) for o in shared]
        if not s_out or not r_in:
            raise PipelineError(f"connect({sender!r}, {receiver!r}): use 'component.output' -> 'component.input'")
        self._socket_type(s_comp, s_out, outputs=True)
        self._socket_type(r_comp, r_in, outputs=False)
        return [Edge(s_comp, s_out, r_comp, r_in)]

    def _socket_type(self, comp: str, socket: str, outputs: bool) -> Any:
        if comp == PIPELINE_INPUT:
            return self.inputs[socket]
        sockets = type(self.components[comp]).outputs if outputs else type(self.components[comp]).inputs
        if socket not in sockets:
            kind = "output" if outputs else "input"
            raise PipelineError(f"component '{comp}' has no {kind} '{socket}' (it has: {', '.join(sockets) or 'none'})")
        return sockets[socket]

    # --------------------------------------------------------------------------------------------------
    # Execution
    # --------------------------------------------------------------------------------------------------
    def run(self, **inputs: Any) -> PipelineResult:
        """Run every component once, in dependency order.

        If a component raises, the exception propagates unchanged, with `.partial_result` (the outputs
        and timings of the steps that did finish) and `.failed_step` attached, so a caller can still
        show, say, the retrieved sources when the model could not be loaded.
        """
        if self._edges is None:
            self.build()
        unknown = set(inputs) - set(self.inputs)
        missing = set(self.inputs) - set(inputs) - set(self.defaults)
        if unknown or missing:
            raise PipelineError("pipeline inputs: " + "; ".join(
                ([f"unknown {', '.join(sorted(unknown))}"] if unknown else []) +
                ([f"missing {', '.join(sorted(missing))}"] if missing else [])))
        inputs = {**self.defaults, **inputs}
        result = PipelineResult()
        incoming: dict[str, list[Edge]] = {name: [] for name in self.components}
        for edge in self._edges or []:
            incoming[edge.receiver].append(edge)
        for name in self._order:
            comp = self.components[name]
            kwargs = {e.input: inputs[e.output] if e.sender == PIPELINE_INPUT else result.outputs[e.sender][e.output]
                      for e in incoming[name]}
            try:
                if name not in self._warmed:
                    t0 = time.perf_counter()
                    if hasattr(comp, "warm_up"):
                        comp.warm_up()
                    result.warm_up[name] = time.perf_counter() - t0
                    self._warmed.add(name)
                t0 = time.perf_counter()
                out = comp.run(**kwargs)
                result.timings[name] = time.perf_counter() - t0
            except Exception as e:
                e.partial_result, e.failed_step = result, name  # type: ignore[attr-defined]
                raise
            declared = type(comp).outputs
            if not isinstance(out, dict) or set(declared) - set(out):
                got = sorted(out) if isinstance(out, dict) else type(out).__name__
                raise PipelineError(f"component '{name}' returned {got}, expected outputs {sorted(declared)}")
            result.outputs[name] = {k: out[k] for k in declared}
        return result

    def warm_up(self) -> None:
        """Load every component's heavy resources now instead of on the first run."""
        for name in self._order or list(self.components):
            if name not in self._warmed and hasattr(self.components[name], "warm_up"):
                self.components[name].warm_up()
                self._warmed.add(name)

    # --------------------------------------------------------------------------------------------------
    # Introspection
    # --------------------------------------------------------------------------------------------------
    @property
    def order(self) -> list[str]:
        if self._edges is None:
            self.build()
        return list(self._order)

    def spec(self) -> dict[str, Any]:
        """A plain description (types by name, params, resolved connections) for comparing and printing."""
        if self._edges is None:
            self.build()
        return {
            "inputs": {k: type_label(v) for k, v in self.inputs.items()},
            "components": {name: {"type": type_name_of(c), "params": dict(getattr(c, "init_params", {}))}
                           for name, c in self.components.items()},
            "connections": sorted(str(e) for e in self._edges or []),
        }

    def find_components(self, kind: type) -> list[Any]:
        return [c for c in self.components.values() if isinstance(c, kind)]


def query_inputs() -> dict[str, Any]:
    """The inputs of every query pipeline (standard or from ragbit.toml): the question, the earlier turns of
    a conversation (None outside `ragbit chat`), and where to stream the answer's text (None: nowhere)."""
    return {"inputs": {"query": str, "history": list[dict] | None, "on_token": OnToken | None},
            "defaults": {"history": None, "on_token": None}}


def _topological_order(names: list[str], edges: list[Edge]) -> tuple[list[str], list[str]]:
    """Kahn's algorithm, ties broken by insertion order; returns (order, []) or ([], one cycle)."""
    deps = {n: {e.sender for e in edges if e.receiver == n and e.sender != PIPELINE_INPUT} for n in names}
    order: list[str] = []
    remaining = list(names)
    while remaining:
        ready = [n for n in remaining if deps[n] <= set(order)]
        if not ready:
            return [], _find_cycle(remaining, deps)
        order.append(ready[0])
        remaining.remove(ready[0])
    return order, []


def _find_cycle(remaining: list[str], deps: dict[str, set[str]]) -> list[str]:
    """Walk dependencies from a stuck node until a node repeats; that loop is the cycle."""
    path: list[str] = [remaining[0]]
    while True:
        nxt = next(d for d in sorted(deps[path[-1]]) if d in remaining)
        if nxt in path:
            loop = path[path.index(nxt):] + [nxt]
            return list(reversed(loop))  # sender -> receiver order
        path.append(nxt)
