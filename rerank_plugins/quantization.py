"""Opt-in int8 inference on CPU: dynamic quantization of a model's Linear layers.

``quantize_int8(model)`` converts the ``nn.Linear`` layers of the transformer body to int8 weights with int8
activations quantized on the fly (``torch.ao.quantization.quantize_dynamic``, fbgemm/x86 kernels). Scores move:
check the agreement on your own data (``python -m benchmarks.run --int8`` reports Spearman correlation and top-10
overlap per query against fp32). What stays in float, and why:

- monoT5: the LM head and the shared embedding. The monoT5 module reads two rows of
  ``get_output_embeddings().weight`` directly; a quantized head would have no such tensor.
- sequence classification: the classification head (one output: quantizing it saves nothing and costs accuracy).

Only those two families are supported: the query-likelihood cost is dominated by the vocabulary-wide LM head,
which must stay in float for the log-softmax, and ListConRanker's list head runs through PyTorch's fused
``TransformerEncoder`` path, which has no dynamic int8 form. A quantized model is for inference: reload the fp32
checkpoint to train or save.

``torch.ao.quantization`` is deprecated in favour of ``torchao``'s ``quantize_`` (not a dependency here, and
aimed at ``torch.compile``); it still ships in PyTorch 2.13 and its eager CPU kernels are what this uses.
"""

from __future__ import annotations

import warnings
from typing import TYPE_CHECKING

import torch
from torch import nn

if TYPE_CHECKING:
    from rerank_plugins.cross_encoder import CrossEncoder


def int8_targets(model: CrossEncoder) -> list[nn.Module]:
    """The sub-modules whose Linear layers are quantized (the body), as the family says; ``ValueError`` otherwise."""
    from rerank_plugins.families import family_names, get_family

    spec = model.family_spec
    if spec.int8_targets is None:
        supported = [name for name in family_names() if get_family(name).int8_targets is not None]
        raise ValueError(
            f"int8 quantization supports the {' and '.join(supported)} families; this model is {model.family!r}."
        )
    return spec.int8_targets(model)


def quantize_int8(model: CrossEncoder) -> CrossEncoder:
    """Quantize ``model``'s body to dynamic int8, in place, and return it (CPU and fp32 models only).

    Raises:
        ValueError: the family is not supported, the model is not on the CPU, or its weights are not fp32.
        RuntimeError: this PyTorch build has no x86/fbgemm quantized engine.
    """
    targets = int8_targets(model)
    if model.device.type != "cpu":
        raise ValueError(f"int8 dynamic quantization runs on the CPU; this model is on {model.device}.")
    dtype = next(model.parameters()).dtype
    if dtype != torch.float32:
        raise ValueError(f"quantize an fp32 model; this one is {dtype}.")
    engines = torch.backends.quantized.supported_engines
    engine = next((name for name in ("x86", "fbgemm", "qnnpack") if name in engines), None)
    if engine is None:
        raise RuntimeError(f"This PyTorch build has no quantized CPU engine (supported: {engines}).")
    torch.backends.quantized.engine = engine
    model.eval()
    with warnings.catch_warnings():
        # torch.ao.quantization warns that it is deprecated (see the module docstring) and that quantized tensors
        # are; both are still the supported eager path in this PyTorch release.
        warnings.simplefilter("ignore", DeprecationWarning)
        warnings.simplefilter("ignore", UserWarning)
        from torch.ao.quantization import quantize_dynamic

        for target in targets:
            quantize_dynamic(target, {nn.Linear}, dtype=torch.qint8, inplace=True)
    model.weights_changed()  # other weights: the score cache must not serve fp32 scores
    return model


def is_quantized(model: nn.Module) -> bool:
    """True when any layer of ``model`` is a dynamically quantized Linear."""
    from torch.ao.nn.quantized.dynamic import Linear as DynamicLinear

    return any(isinstance(module, DynamicLinear) for module in model.modules())
