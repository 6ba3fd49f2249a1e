"""Imports every built-in component module so that each registers its class by name (for ragbit.toml).

Kept separate from the package __init__ so that `ragbit.pipeline` itself stays import-light.
"""
from ragbit.pipeline.components.citation_extractor import CitationExtractor  # noqa: F401
from ragbit.pipeline.components.bonsai_generator import BonsaiGenerator  # noqa: F401
from ragbit.pipeline.components.context_packer import ContextPacker  # noqa: F401
from ragbit.pipeline.components.prompt_builder import PromptBuilder  # noqa: F401
from ragbit.pipeline.components.reranker import CrossEncoderReranker, Reranker  # noqa: F401
from ragbit.pipeline.components.hybrid_retriever import HybridRetriever  # noqa: F401
