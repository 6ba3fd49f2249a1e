"""The built-in components, one file each. Importing this package registers every class by name (for
ragbit.toml); `ragbit.pipeline` itself does not import it, so building a pipeline in code stays import-light.
"""
from ragbit.pipeline.components.bonsai_generator import BonsaiGenerator  # noqa: F401
from ragbit.pipeline.components.citation_extractor import CitationExtractor  # noqa: F401
from ragbit.pipeline.components.context_packer import ContextPacker  # noqa: F401
from ragbit.pipeline.components.grounding_checker import GroundingChecker  # noqa: F401
from ragbit.pipeline.components.hybrid_retriever import HybridRetriever  # noqa: F401
from ragbit.pipeline.components.prompt_builder import PromptBuilder  # noqa: F401
from ragbit.pipeline.components.reranker import CrossEncoderReranker, Reranker  # noqa: F401
