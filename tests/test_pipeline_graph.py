"""Pipeline wiring: build-time validation, dependency order, timings, partial results on failure."""
from __future__ import annotations

import pytest

from ragbit.pipeline.contract import Component, PipelineError, component
from ragbit.pipeline.registry import resolve_component
from ragbit.pipeline.pipeline import Pipeline
from ragbit.pipeline.sockets import compatible


class Token(str):
    """A str subclass, to check that subclasses are accepted where the base class is expected."""


@component(name="test_Split")
class Split(Component):
    outputs = {"words": list[str]}

    def __init__(self, sep: str = " ") -> None:
        self.sep = sep
        self.warmed = 0

    def warm_up(self) -> None:
        self.warmed += 1

    def run(self, text: str) -> dict:
        return {"words": text.split(self.sep)}


@component(name="test_Count")
class Count(Component):
    outputs = {"n": int}

    def run(self, words: list[str]) -> dict:
        return {"n": len(words)}


@component(name="test_Upper")
class Upper(Component):
    outputs = {"words": list[str]}

    def run(self, words: list[str], suffix: str = "") -> dict:
        return {"words": [w.upper() + suffix for w in words]}


@component(name="test_Echo")
class Echo(Component):
    outputs = {"text": str}

    def run(self, text: str) -> dict:
        return {"text": text}


@component(name="test_Boom")
class Boom(Component):
    outputs = {"n": int}

    def run(self, words: list[str]) -> dict:
        raise RuntimeError("boom")


def test_runs_in_dependency_order_not_insertion_order():
    p = Pipeline(inputs={"text": str})
    p.add("count", Count()).add("upper", Upper()).add("split", Split())
    p.connect("split.words", "upper.words").connect("upper.words", "count.words")
    result = p.run(text="a b c")
    assert p.order == ["split", "upper", "count"]
    assert result["upper"]["words"] == ["A", "B", "C"]
    assert result["count"]["n"] == 3
    assert set(result.timings) == {"split", "upper", "count"}
    assert all(t >= 0 for t in result.timings.values())


def test_inputs_matched_by_name_to_nearest_earlier_component():
    p = Pipeline(inputs={"text": str})
    p.add("split", Split()).add("upper", Upper()).add("count", Count())
    p.build()
    assert p.spec()["connections"] == ["split.words -> upper.words", "text -> split.text", "upper.words -> count.words"]
    assert p.run(text="x y")["count"]["n"] == 2


def test_warm_up_runs_once_before_first_run_only():
    split = Split()
    p = Pipeline(inputs={"text": str}).add("split", split)
    assert split.warmed == 0                          # building is cheap
    first = p.run(text="a")
    p.run(text="b")
    assert split.warmed == 1
    assert "split" in first.warm_up


def test_missing_input_fails_at_build():
    p = Pipeline(inputs={"text": str}).add("count", Count())
    with pytest.raises(PipelineError, match=r"input count\.words \(list\[str\]\) is not provided"):
        p.build()


def test_optional_input_may_stay_unconnected():
    p = Pipeline(inputs={"text": str}).add("split", Split()).add("upper", Upper())
    assert p.run(text="a")["upper"]["words"] == ["A"]


def test_type_mismatch_fails_at_build():
    p = Pipeline(inputs={"text": str}).add("split", Split()).add("count", Count()).add("echo", Echo())
    p.connect("count.n", "echo.text")
    with pytest.raises(PipelineError, match=r"type mismatch: count\.n -> echo\.text sends int but echo\.text expects str"):
        p.build()


def test_cycle_fails_at_build():
    p = Pipeline().add("a", Upper()).add("b", Upper())
    p.connect("a.words", "b.words").connect("b.words", "a.words")
    with pytest.raises(PipelineError, match=r"cycle between components: (a -> b -> a|b -> a -> b)"):
        p.build()


def test_unknown_component_and_socket_fail_at_build():
    p = Pipeline(inputs={"text": str}).add("split", Split()).add("count", Count())
    p.connect("split.words", "nope.words")
    with pytest.raises(PipelineError, match="unknown component 'nope'"):
        p.build()
    p = Pipeline(inputs={"text": str}).add("split", Split()).add("count", Count())
    p.connect("split.wrds", "count.words")
    with pytest.raises(PipelineError, match=r"component 'split' has no output 'wrds' \(it has: words\)"):
        p.build()


def test_unknown_component_type_names_the_registered_ones():
    with pytest.raises(PipelineError, match=r"unknown component type 'NoSuchThing' \(registered: .*test_Split"):
        resolve_component("NoSuchThing")
    with pytest.raises(PipelineError, match="cannot import component module"):
        resolve_component("no_such_module_xyz:Thing")


def test_input_fed_twice_fails():
    p = Pipeline(inputs={"text": str}).add("s1", Split()).add("s2", Split()).add("count", Count())
    p.connect("s1.words", "count.words").connect("s2.words", "count.words")
    with pytest.raises(PipelineError, match=r"input count\.words is fed twice"):
        p.build()


def test_all_problems_reported_together():
    p = Pipeline().add("count", Count()).add("echo", Echo())
    with pytest.raises(PipelineError) as err:
        p.build()
    assert "count.words" in str(err.value) and "echo.text" in str(err.value)


def test_run_checks_pipeline_inputs():
    p = Pipeline(inputs={"text": str}).add("split", Split())
    with pytest.raises(PipelineError, match="missing text"):
        p.run()
    with pytest.raises(PipelineError, match="unknown other"):
        p.run(text="a", other=1)


def test_failing_step_keeps_partial_result():
    p = Pipeline(inputs={"text": str}).add("split", Split()).add("boom", Boom())
    with pytest.raises(RuntimeError, match="boom") as err:
        p.run(text="a b")
    assert err.value.failed_step == "boom"
    assert err.value.partial_result["split"]["words"] == ["a", "b"]


def test_undecorated_class_with_run_and_outputs_is_accepted():
    class Plain:
        outputs = {"n": int}

        def run(self, words: list[str]) -> dict:
            return {"n": len(words) * 10}

    p = Pipeline(inputs={"text": str}).add("split", Split()).add("plain", Plain())
    assert p.run(text="a b")["plain"]["n"] == 20


def test_component_without_annotations_is_rejected():
    with pytest.raises(PipelineError, match="needs a type annotation"):
        @component(name="test_Bad")
        class Bad:
            outputs = {"n": int}

            def run(self, words):
                return {"n": 0}


@pytest.mark.parametrize("sender,receiver,ok", [
    (list[str], list[str], True),
    (list[str], list, True),
    (list[str], list[int], False),
    (Token, str, True),
    (str, Token, False),
    (int, int | None, True),
    (int | None, int, False),
    (dict, list[dict], False),
])
def test_type_compatibility(sender, receiver, ok):
    assert compatible(sender, receiver) is ok


def test_undecorated_subclass_gets_its_own_sockets():
    class Words(Split):                               # Split is decorated; this run() takes other inputs
        outputs = {"words": list[str]}

        def run(self, text: str, extra: str = "!") -> dict:
            return {"words": [text + extra]}

    p = Pipeline(inputs={"text": str}).add("w", Words())
    assert p.run(text="hi")["w"]["words"] == ["hi!"]
    assert Words.inputs == {"text": str, "extra": str} and Split.inputs == {"text": str}
