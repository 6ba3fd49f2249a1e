"""Pipelines declared in ragbit.toml: same pipeline as built in code, errors found at build time."""
from __future__ import annotations

import textwrap

import pytest

from ragbit.config import ConfigError, RagbitConfig
from ragbit.pipeline import Pipeline, PipelineError
from ragbit.pipeline.components.citation_extractor import CitationExtractor
from ragbit.pipeline.components.bonsai_generator import BonsaiGenerator
from ragbit.pipeline.components.context_packer import ContextPacker
from ragbit.pipeline.pipeline import query_inputs
from ragbit.pipeline.components.prompt_builder import PromptBuilder
from ragbit.pipeline.components.hybrid_retriever import HybridRetriever
from ragbit.pipeline.standard import query_pipeline, standard_pipeline

STANDARD_TOML = """
[query]
budget = 900
[[pipeline.components]]
name = "retriever"
type = "HybridRetriever"
[[pipeline.components]]
name = "packer"
type = "ContextPacker"
[[pipeline.components]]
name = "prompt"
type = "PromptBuilder"
[[pipeline.components]]
name = "generator"
type = "BonsaiGenerator"
[[pipeline.components]]
name = "citations"
type = "CitationExtractor"
[[pipeline.components]]
name = "grounding"
type = "GroundingChecker"
"""

CUSTOM_TOML = """
[generator]
model = "some/model.gguf"
max_tokens = 64
[pipeline]
connections = [["retriever.hits", "only_src.hits"], ["only_src.hits", "packer.hits"]]
[[pipeline.components]]
name = "retriever"
type = "HybridRetriever"
params = { k = 7 }
[[pipeline.components]]
name = "only_src"
type = "examples.custom_pipeline:PathFilter"
params = { include = ["src/*"] }
[[pipeline.components]]
name = "packer"
type = "ContextPacker"
params = { budget = 300 }
[[pipeline.components]]
name = "prompt"
type = "PromptBuilder"
[[pipeline.components]]
name = "generator"
type = "BonsaiGenerator"
[[pipeline.components]]
name = "citations"
type = "CitationExtractor"
"""


def load(tmp_path, toml: str) -> RagbitConfig:
    (tmp_path / "ragbit.toml").write_text(textwrap.dedent(toml), encoding="utf-8")
    return RagbitConfig.load(tmp_path)


def test_toml_declared_standard_pipeline_equals_the_built_in_one(tmp_path):
    cfg = load(tmp_path, STANDARD_TOML)
    from_toml = query_pipeline(cfg)                      # [pipeline] lists components -> built from toml
    in_code = standard_pipeline(cfg)
    assert from_toml.spec() == in_code.spec()
    assert from_toml.order == ["retriever", "packer", "prompt", "generator", "citations", "grounding"]
    assert from_toml.spec()["components"]["packer"]["params"]["budget"] == 900


def test_toml_pipeline_with_user_component_equals_code(tmp_path):
    from examples.custom_pipeline import PathFilter

    cfg = load(tmp_path, CUSTOM_TOML)
    in_code = Pipeline(**query_inputs())
    in_code.add("retriever", HybridRetriever(cfg, k=7))
    in_code.add("only_src", PathFilter(include=["src/*"]))
    in_code.add("packer", ContextPacker(budget=300, model="some/model.gguf", n_ctx=4096, threads=0,
                                         decode_kernel="int11", kv_cache="f16"))
    in_code.add("prompt", PromptBuilder())
    in_code.add("generator", BonsaiGenerator.from_config(cfg))
    in_code.add("citations", CitationExtractor())
    from_toml = Pipeline.from_config(cfg)
    assert from_toml.spec() == in_code.spec()
    spec = from_toml.spec()
    assert spec["components"]["only_src"]["type"] in ("PathFilter", "examples.custom_pipeline:PathFilter")
    assert "only_src.hits -> packer.hits" in spec["connections"]
    assert spec["components"]["generator"]["params"]["max_tokens"] == 64
    assert from_toml.order.index("only_src") < from_toml.order.index("packer")


def test_unknown_component_type_in_toml(tmp_path):
    cfg = load(tmp_path, STANDARD_TOML.replace('"PromptBuilder"', '"PromptBilder"'))
    with pytest.raises(PipelineError, match="unknown component type 'PromptBilder'"):
        query_pipeline(cfg)


def test_bad_params_in_toml(tmp_path):
    cfg = load(tmp_path, STANDARD_TOML.replace('type = "PromptBuilder"', 'type = "PromptBuilder"\nparams = { tone = "x" }'))
    with pytest.raises(PipelineError, match="cannot build .*PromptBuilder.*tone"):
        query_pipeline(cfg)


def test_missing_provider_in_toml_fails_before_anything_loads(tmp_path):
    cfg = load(tmp_path, STANDARD_TOML.replace('name = "retriever"\ntype = "HybridRetriever"', 'name = "p2"\ntype = "PromptBuilder"'))
    with pytest.raises(PipelineError, match=r"input packer\.hits .* is not provided"):
        query_pipeline(cfg)


def test_misspelt_connection_in_toml(tmp_path):
    cfg = load(tmp_path, CUSTOM_TOML.replace('"only_src.hits", "packer.hits"', '"only_src.hits", "packer.hit"'))
    with pytest.raises(PipelineError, match="component 'packer' has no input 'hit' \\(it has: hits\\)"):
        Pipeline.from_config(cfg)


def test_malformed_pipeline_section_is_a_config_error(tmp_path):
    with pytest.raises(ConfigError, match="needs string 'name' and 'type'"):
        load(tmp_path, '[[pipeline.components]]\nname = "x"\n')
    with pytest.raises(ConfigError, match="connections entries"):
        load(tmp_path, '[pipeline]\nconnections = [["a.b"]]\n')


def test_generator_engine_settings_are_validated_and_shared(tmp_path):
    with pytest.raises(ConfigError, match="kv_cache must be one of f16, f32, q8, q4"):
        load(tmp_path, '[generator]\nkv_cache = "q3"\n')
    cfg = load(tmp_path, '[generator]\nkv_cache = "f32"\nn_ctx = 2048\n')
    packer, gen = ContextPacker.from_config(cfg), BonsaiGenerator.from_config(cfg)
    assert packer.engine == gen.engine == {"n_ctx": 2048, "threads": 0, "decode_kernel": "int11", "kv_cache": "f32"}
