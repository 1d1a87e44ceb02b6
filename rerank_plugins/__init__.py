"""rerank-plugins: published rerankers with their authors' exact scores, everywhere people rerank.

`CrossEncoder` is a drop-in subclass of `sentence_transformers.CrossEncoder`; the LangChain, LlamaIndex and
Haystack adapters (`rerank_plugins.langchain`, `rerank_plugins.llama_index`, `rerank_plugins.haystack`) sit on top
of it.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from rerank_plugins.registry import FAMILIES, REGISTRY, RegistryEntry

__version__ = "0.1.0"

EXPORT_HELPERS = (
    "export_optimized_onnx_model",
    "export_dynamic_quantized_onnx_model",
    "export_static_quantized_openvino_model",
)
"""sentence-transformers' export helpers, for every family (``rerank_plugins.backends.export``)."""

__all__ = [
    "FAMILIES",
    "REGISTRY",
    "CrossEncoder",
    "RegistryEntry",
    "__version__",
    "export_dynamic_quantized_onnx_model",
    "export_optimized_onnx_model",
    "export_static_quantized_openvino_model",
]

if TYPE_CHECKING:
    from rerank_plugins.backends.export import (
        export_dynamic_quantized_onnx_model,
        export_optimized_onnx_model,
        export_static_quantized_openvino_model,
    )
    from rerank_plugins.cross_encoder import CrossEncoder


def __getattr__(name: str) -> Any:
    # Imported on first use: torch and sentence-transformers take seconds to import, and commands such as
    # `rerank-plugins evaluate` never need them.
    if name == "CrossEncoder":
        from rerank_plugins.cross_encoder import CrossEncoder

        return CrossEncoder
    if name in EXPORT_HELPERS:
        from rerank_plugins.backends import export

        return getattr(export, name)
    raise AttributeError(f"module 'rerank_plugins' has no attribute {name!r}")
