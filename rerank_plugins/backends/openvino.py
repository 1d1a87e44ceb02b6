"""OpenVINO: a ``CompiledModel`` over a family's exported score graph (``backend="openvino"``).

fp32 means fp32: OpenVINO's CPU plugin runs bf16 by default on CPUs that have it (scores then differ from PyTorch
by about 1e-3), so the precision is always chosen: the ``INFERENCE_PRECISION_HINT`` of ``ov_config``, else the one
saved in the model's ``rt_info`` (``runtime_options``, which OpenVINO itself reads), else ``f32``. The precision
in effect is written into the saved model, so a bf16 choice survives save and reload, and so does fp32.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import numpy as np
import torch

from rerank_plugins.backends.graph import ExportedFile, Runtime
from rerank_plugins.backends.options import PRECISION_HINT, BackendOptions, import_backend

RUNTIME_OPTIONS = "runtime_options"


def saved_precision(model: Any) -> str | None:
    """The precision hint saved in an OpenVINO model's ``rt_info``, or None."""
    if model.has_rt_info([RUNTIME_OPTIONS, PRECISION_HINT]):
        return str(model.get_rt_info([RUNTIME_OPTIONS, PRECISION_HINT]).astype(str))
    return None


def precision_of(model: Any, ov_config: Mapping[str, Any]) -> str:
    """The precision to run: ``ov_config``'s hint, else the saved one, else ``f32``."""
    hint = ov_config.get(PRECISION_HINT)
    if hint is not None:
        return str(hint).lower().replace("float32", "f32").replace("bfloat16", "bf16")
    return saved_precision(model) or "f32"


def save_with_precision(model: Any, path: str | Path, precision: str) -> None:
    """``openvino.save_model`` in full precision (no fp16 weight compression), the precision hint in ``rt_info``."""
    ov = import_backend("openvino")
    model.set_rt_info(precision, [RUNTIME_OPTIONS, PRECISION_HINT])
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    ov.save_model(model, str(path), compress_to_fp16=False)


def convert_onnx(onnx_path: str | Path, xml_path: str | Path, ov_config: Mapping[str, Any]) -> None:
    """An exported ONNX score graph converted to OpenVINO IR (``.xml`` + ``.bin``)."""
    ov = import_backend("openvino")
    model = ov.convert_model(str(onnx_path))
    save_with_precision(model, xml_path, precision_of(model, ov_config))


class OpenVINORuntime(Runtime):
    """An OpenVINO CPU ``CompiledModel``; one infer request per thread (a request is not shared between threads)."""

    backend = "openvino"

    def __init__(self, exported: ExportedFile, options: BackendOptions) -> None:
        super().__init__(exported, options)
        ov = import_backend("openvino")
        core = ov.Core()
        model = core.read_model(str(exported.path))
        self.precision = precision_of(model, options.ov_config)
        config = {"PERFORMANCE_HINT": "LATENCY", **options.ov_config, PRECISION_HINT: self.precision}
        self.compiled = core.compile_model(model, "CPU", config)
        # A Parameter's friendly name is the ONNX input's name (a port may carry further tensor names).
        self.input_names = tuple(port.get_node().get_friendly_name() for port in self.compiled.inputs)
        self.local = threading.local()

    def __call__(self, inputs: Mapping[str, torch.Tensor]) -> torch.Tensor:
        request = getattr(self.local, "request", None)
        if request is None:
            request = self.local.request = self.compiled.create_infer_request()
        result = request.infer(self.feeds(inputs))
        return torch.from_numpy(np.array(result[0], copy=True))

    @property
    def compiled_precision(self) -> str:
        """The precision OpenVINO really runs (``f32`` on a CPU without bf16 whatever was asked)."""
        value = self.compiled.get_property(PRECISION_HINT)
        return str(value.to_string() if hasattr(value, "to_string") else value)

    def save(self, output_path: str | Path) -> None:
        """Write the model beside a saved checkpoint with the precision in effect in its ``rt_info``."""
        ov = import_backend("openvino")
        target = Path(output_path) / self.exported.relative
        if (
            target.resolve() == self.exported.path.resolve()
            and saved_precision(ov.Core().read_model(str(target))) == self.precision
        ):
            return
        model = ov.Core().read_model(str(self.exported.path))
        staged = target.with_name(f".{target.stem}.saving.xml")  # never write over the files being read
        save_with_precision(model, staged, self.precision)
        del model
        for suffix in (".xml", ".bin"):
            os.replace(staged.with_suffix(suffix), target.with_suffix(suffix))


STATIC_INT8_OPTIONS = ("num_samples", "preset", "fast_bias_correction", "smooth_quant_alpha")
"""The keys ``quantization_config`` may hold for static int8 (NNCF's post-training quantization)."""


def quantize_static_int8(
    source: Path, target: Path, batches: Iterable[Mapping[str, torch.Tensor]], config: Mapping[str, Any] | None
) -> None:
    """NNCF's post-training int8 quantization of an OpenVINO model, its ranges calibrated on ``batches``.

    ``config``: ``num_samples`` (calibration batches used, default all), ``preset`` (``"mixed"``: symmetric weights,
    asymmetric activations, the default for transformers; or ``"performance"``), ``fast_bias_correction``
    (default True), ``smooth_quant_alpha`` (NNCF's transformer default unless given; -1 turns SmoothQuant off).
    """
    config = dict(config or {})
    unknown = sorted(set(config) - set(STATIC_INT8_OPTIONS))
    if unknown:
        raise ValueError(f"Unknown quantization_config key(s) {unknown}; known: {STATIC_INT8_OPTIONS}.")
    ov = import_backend("openvino")
    try:
        import nncf
    except ImportError as error:
        raise ImportError("Static int8 needs NNCF: pip install 'rerank-plugins[openvino]'.") from error
    model = ov.Core().read_model(str(source))
    names = [port.get_node().get_friendly_name() for port in model.inputs]
    items = [{name: batch[name].detach().cpu().numpy() for name in names} for batch in batches]
    advanced = None
    if "smooth_quant_alpha" in config:
        from nncf.quantization.advanced_parameters import AdvancedQuantizationParameters, AdvancedSmoothQuantParameters

        alpha = float(config["smooth_quant_alpha"])
        advanced = AdvancedQuantizationParameters(smooth_quant_alphas=AdvancedSmoothQuantParameters(matmul=alpha))
    quantized = nncf.quantize(
        model,
        nncf.Dataset(items),
        preset=nncf.QuantizationPreset(config.get("preset", "mixed")),
        model_type=nncf.ModelType.TRANSFORMER,
        subset_size=int(config.get("num_samples", len(items))),
        fast_bias_correction=bool(config.get("fast_bias_correction", True)),
        advanced_parameters=advanced,
    )
    save_with_precision(quantized, target, saved_precision(model) or "f32")
