"""ONNX Runtime: an ``InferenceSession`` over a family's exported score graph (``backend="onnx"``)."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

import torch

from rerank_plugins.backends.graph import ExportedFile, Runtime
from rerank_plugins.backends.options import BackendOptions, dynamic_int8_weights, import_backend


class OnnxRuntime(Runtime):
    """An ONNX Runtime session with every graph optimisation on, as many threads as PyTorch uses.

    ``InferenceSession.run`` may be called from several threads at once, so one session serves every thread. Its
    worker threads stop spinning when a run returns: what comes between runs (tokenizing, ListConRanker's
    ListTransformer in PyTorch, the caller's own work) then has the cores to itself.
    """

    backend = "onnx"

    def __init__(self, exported: ExportedFile, options: BackendOptions) -> None:
        super().__init__(exported, options)
        ort = import_backend("onnx")
        session_options = ort.SessionOptions()
        session_options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        session_options.intra_op_num_threads = torch.get_num_threads()
        # Spinning workers would keep the cores busy after each run, slowing the PyTorch work that follows.
        session_options.add_session_config_entry("session.force_spinning_stop", "1")
        provider = options.provider or "CPUExecutionProvider"
        if provider not in ort.get_available_providers():
            raise ValueError(f"ONNX Runtime has no provider {provider!r} here: {ort.get_available_providers()}.")
        self.session = ort.InferenceSession(str(exported.path), session_options, providers=[provider])
        self.input_names = tuple(node.name for node in self.session.get_inputs())

    def __call__(self, inputs: Mapping[str, torch.Tensor]) -> torch.Tensor:
        (output,) = self.session.run(None, self.feeds(inputs))[:1]
        return torch.from_numpy(output)


OPTIMIZATION_LEVELS = ("O1", "O2", "O3", "O4")


def quantize_dynamic_int8(source: Path, target: Path, config: str) -> None:
    """ONNX Runtime's dynamic int8 quantization of an exported graph, with the weights of ``config``
    (:data:`~rerank_plugins.backends.options.DYNAMIC_INT8_WEIGHTS`)."""
    weights = dynamic_int8_weights(config)
    import_backend("onnx")
    from onnx import TensorProto
    from onnxruntime.quantization import QuantType, quantize_dynamic

    target.parent.mkdir(parents=True, exist_ok=True)
    quantize_dynamic(
        source,
        target,
        per_channel=True,
        reduce_range=weights.reduce_range,
        weight_type=getattr(QuantType, weights.type),
        # fused operators (Attention, SkipLayerNormalization, ...) defeat ONNX's type inference: their outputs are fp32
        extra_options={"WeightSymmetric": True, "ActivationSymmetric": False, "DefaultTensorType": TensorProto.FLOAT},
        use_external_data_format=has_external_data(source),  # a graph over 2 GB: the int8 one may be too
    )


def has_external_data(path: Path) -> bool:
    """True when the exported graph keeps its weights in files beside it (graphs over 2 GB)."""
    import onnx
    from onnx.external_data_helper import uses_external_data

    header = onnx.load(str(path), load_external_data=False)
    return any(uses_external_data(tensor) for tensor in header.graph.initializer)


def optimize_onnx(source: Path, target: Path, level: str, model_type: str) -> None:
    """Optimum's O1-O3 with ONNX Runtime's own tools: O1 the basic graph optimisations; O2 the transformer fusions
    (attention, layer norm, GELU); O3 O2 plus the GELU approximation. O4 (fp16) needs a GPU."""
    if level not in OPTIMIZATION_LEVELS:
        raise ValueError(f"optimization_config must be one of {OPTIMIZATION_LEVELS}, got {level!r}.")
    if level == "O4":
        raise ValueError("O4 is O3 in fp16 mixed precision, for a GPU; on a CPU use O1-O3 or an int8 export.")
    import_backend("onnx")
    from onnxruntime.transformers.fusion_options import FusionOptions
    from onnxruntime.transformers.optimizer import optimize_model

    fusion = FusionOptions(model_type)
    fusion.enable_gelu_approximation = level == "O3"
    optimized = optimize_model(
        str(source),
        model_type=model_type,
        optimization_options=fusion,
        opt_level=1 if level == "O1" else 2,
        only_onnxruntime=level == "O1",
        use_gpu=False,
    )
    target.parent.mkdir(parents=True, exist_ok=True)
    optimized.save_model_to_file(str(target))
    check_runs_on_cpu(target, level)


def check_runs_on_cpu(path: Path, level: str) -> None:
    """An optimised graph whose fused operators this ONNX Runtime cannot run on a CPU is a ``ValueError`` now, not
    a file that fails at load: T5's O2 fusions (``RelativePositionBias``) have no CPU kernel in older releases."""
    ort = import_backend("onnx")
    try:
        ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    except Exception as error:  # onnxruntime raises its own exception types (NOT_IMPLEMENTED, ...)
        path.unlink(missing_ok=True)
        reason = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        raise ValueError(
            f"{level} fuses operators that ONNX Runtime {ort.__version__} cannot run on a CPU ({reason}). Use "
            "optimization_config='O1', or a newer onnxruntime."
        ) from error
