"""ONNX Runtime and OpenVINO backends for every built-in family but ``logit-score``: ``CrossEncoder(..., backend=...)``.

Each family module exposes its score computation as an exportable torch module (its *score graph*,
:class:`~rerank_plugins.backends.graph.ScoreGraph`); a backend exports it once (``torch.onnx.export``; OpenVINO
converts the ONNX file), saves it beside the model in sentence-transformers' layout (``onnx/model.onnx``,
``openvino/openvino_model.xml``) and runs it in place of the torch forward. Tokenization, batching and the
request core are unchanged. The export helpers keep sentence-transformers' names:
:func:`export_optimized_onnx_model`, :func:`export_dynamic_quantized_onnx_model`,
:func:`export_static_quantized_openvino_model`. See ``docs/performance.md`` ("CPU deployment").

Importing this package imports neither torch nor a runtime.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from rerank_plugins.backends.options import BackendOptions, split_backend_options

if TYPE_CHECKING:
    from rerank_plugins.backends.export import (
        export_dynamic_quantized_onnx_model as export_dynamic_quantized_onnx_model,
    )
    from rerank_plugins.backends.export import export_optimized_onnx_model as export_optimized_onnx_model
    from rerank_plugins.backends.export import (
        export_static_quantized_openvino_model as export_static_quantized_openvino_model,
    )

EXPORT_HELPERS = (
    "export_optimized_onnx_model",
    "export_dynamic_quantized_onnx_model",
    "export_static_quantized_openvino_model",
)

__all__ = ["BackendOptions", "split_backend_options", *EXPORT_HELPERS]


def __getattr__(name: str) -> Any:
    if name in EXPORT_HELPERS:
        from rerank_plugins.backends import export

        return getattr(export, name)
    raise AttributeError(f"module 'rerank_plugins.backends' has no attribute {name!r}")
