"""Imports every built-in component module so that each registers its class by name (for ragbit.toml).

Kept separate from the package __init__ so that `ragbit.pipeline` itself stays import-light.
"""
from ragbit.pipeline.citations import CitationExtractor  # noqa: F401
from ragbit.pipeline.generator import BonsaiGenerator  # noqa: F401
from ragbit.pipeline.packer import ContextPacker  # noqa: F401
from ragbit.pipeline.prompt_builder import PromptBuilder  # noqa: F401
from ragbit.pipeline.reranker import CrossEncoderReranker, Reranker  # noqa: F401
from ragbit.pipeline.retriever import HybridRetriever  # noqa: F401
