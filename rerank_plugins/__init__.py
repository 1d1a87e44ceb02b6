"""rerank-plugins: published rerankers with their authors' exact scores, everywhere people rerank.

`CrossEncoder` is a drop-in subclass of `sentence_transformers.CrossEncoder`; the LangChain and
LlamaIndex adapters (`rerank_plugins.langchain`, `rerank_plugins.llama_index`) sit on top of it.
"""

from rerank_plugins.cross_encoder import CrossEncoder
from rerank_plugins.registry import FAMILIES, REGISTRY, RegistryEntry

__version__ = "0.1.0"

__all__ = ["FAMILIES", "REGISTRY", "CrossEncoder", "RegistryEntry", "__version__"]
