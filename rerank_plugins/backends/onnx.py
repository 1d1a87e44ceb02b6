"""ONNX Runtime: an ``InferenceSession`` over a family's exported score graph (``backend="onnx"``)."""

from __future__ import annotations

from collections.abc import Mapping

import torch

from rerank_plugins.backends.graph import ExportedFile, Runtime
from rerank_plugins.backends.options import BackendOptions, import_backend


class OnnxRuntime(Runtime):
    """An ONNX Runtime session with every graph optimisation on, as many threads as PyTorch uses.

    ``InferenceSession.run`` may be called from several threads at once, so one session serves every thread.
    """

    backend = "onnx"

    def __init__(self, exported: ExportedFile, options: BackendOptions) -> None:
        super().__init__(exported, options)
        ort = import_backend("onnx")
        session_options = ort.SessionOptions()
        session_options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        session_options.intra_op_num_threads = torch.get_num_threads()
        provider = options.provider or "CPUExecutionProvider"
        if provider not in ort.get_available_providers():
            raise ValueError(f"ONNX Runtime has no provider {provider!r} here: {ort.get_available_providers()}.")
        self.session = ort.InferenceSession(str(exported.path), session_options, providers=[provider])
        self.input_names = tuple(node.name for node in self.session.get_inputs())

    def __call__(self, inputs: Mapping[str, torch.Tensor]) -> torch.Tensor:
        (output,) = self.session.run(None, self.feeds(inputs))[:1]
        return torch.from_numpy(output)
