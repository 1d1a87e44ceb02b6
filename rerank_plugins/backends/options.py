"""What ``backend=`` and ``model_kwargs`` ask of a backend, and where its exported file lies.

sentence-transformers' option names and file layout, so that a model exported by either loads in both:
``model_kwargs={"file_name": ..., "subfolder": ..., "export": ..., "provider": ..., "ov_config": ...}``;
``onnx/model.onnx`` and ``openvino/openvino_model.xml`` (+ ``.bin``) beside the checkpoint. This module imports
neither torch nor a runtime.
"""

from __future__ import annotations

import importlib
import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from types import ModuleType
from typing import Any, NamedTuple

from rerank_plugins.hub import NO_HUB_OPTIONS, HubOptions

DEFAULT_FILES = {"onnx": "model.onnx", "openvino": "openvino_model.xml"}
"""The file each backend loads unless ``file_name`` says otherwise (sentence-transformers' and Optimum's names)."""
EXTRAS = {"onnx": ("onnxruntime", "onnx"), "openvino": ("openvino", "openvino")}
"""backend -> (the module it imports, the ``rerank-plugins`` extra that installs it)."""
BACKEND_KEYS = ("file_name", "export", "provider", "ov_config", "int8")
"""``model_kwargs`` keys that belong to the backend, not to ``from_pretrained`` (``subfolder`` serves both)."""
PRECISION_HINT = "INFERENCE_PRECISION_HINT"


@dataclass(frozen=True)
class BackendOptions:
    """One model's backend settings, parsed from sentence-transformers' ``model_kwargs``.

    Attributes:
        backend: ``"torch"``, ``"onnx"`` or ``"openvino"``.
        file_name: the exported file to load, relative to the checkpoint (``subfolder`` and then the backend's
            folder are tried), e.g. ``"onnx/model_qint8_avx512_vnni.onnx"``; default ``model.onnx`` /
            ``openvino_model.xml``.
        subfolder: the checkpoint's subfolder that holds the files.
        export: True: export even if a file exists; False: never export (a missing file is an error);
            None: export when no file is found.
        provider: ONNX Runtime's execution provider (default ``CPUExecutionProvider``).
        ov_config: OpenVINO compile options (a dict, or a path to a JSON file). Without
            ``INFERENCE_PRECISION_HINT`` the model runs in the precision saved with it, else fp32: never a
            lower precision unasked (OpenVINO's own default is bf16 on CPUs that have it).
        int8: rerank-plugins' own option: load the int8 file the export helpers write for this machine
            (:func:`int8_file`), quantizing the model at load when it has none (ONNX: dynamic int8; OpenVINO:
            static int8 calibrated on the built-in pairs). ``file_name`` names another file.
    """

    backend: str = "torch"
    file_name: str | None = None
    subfolder: str | None = None
    export: bool | None = None
    provider: str | None = None
    ov_config: dict[str, Any] = field(default_factory=dict)
    int8: bool = False

    @property
    def default_file(self) -> str:
        return DEFAULT_FILES[self.backend]


def split_backend_options(backend: str, model_kwargs: dict[str, Any] | None) -> tuple[BackendOptions, dict[str, Any]]:
    """``(backend options, the model_kwargs left for from_pretrained)``; options a backend cannot honour are errors."""
    rest = dict(model_kwargs or {})
    if backend == "torch":
        given = sorted(key for key in BACKEND_KEYS if key in rest)
        if given:
            raise ValueError(f"model_kwargs {given} are options of backend='onnx' / 'openvino', not of 'torch'.")
        return BackendOptions(), rest
    values = {key: rest.pop(key) for key in BACKEND_KEYS if key in rest}
    if backend == "onnx" and "ov_config" in values:
        raise ValueError("ov_config is an OpenVINO option; backend='onnx' takes provider=.")
    if backend == "openvino" and "provider" in values:
        raise ValueError("provider is an ONNX Runtime option; backend='openvino' takes ov_config=.")
    dtype = rest.pop("dtype", rest.pop("torch_dtype", None))
    if dtype not in (None, "float32", "auto") and str(dtype) not in ("torch.float32",):
        raise ValueError(
            f"backend={backend!r} exports and runs the model in fp32 (dtype={dtype!r} was asked): for lower "
            "precision use an int8 export, or OpenVINO's ov_config={'INFERENCE_PRECISION_HINT': 'bf16'}."
        )
    export = values.get("export")
    if export is not None and not isinstance(export, bool):
        raise TypeError(f"model_kwargs['export'] must be True, False or None, got {export!r}.")
    ov_config = values.get("ov_config") or {}
    if isinstance(ov_config, (str, Path)):
        with open(ov_config, encoding="utf-8") as handle:
            ov_config = json.load(handle)
    if not isinstance(ov_config, dict):
        raise TypeError(f"ov_config must be a dict or a path to a JSON file, got {type(ov_config).__name__}.")
    options = BackendOptions(
        backend=backend,
        file_name=values.get("file_name"),
        subfolder=rest.get("subfolder") or None,
        export=export,
        provider=values.get("provider"),
        ov_config=dict(ov_config),
        int8=bool(values.get("int8", False)),
    )
    return options, rest


class Int8Weights(NamedTuple):
    """How a dynamic int8 configuration stores the weights: ONNX Runtime's ``QuantType`` name, and whether they keep
    to ONNX Runtime's 7-bit ``reduce_range`` (-64..64 for int8)."""

    type: str
    reduce_range: bool = False


DYNAMIC_INT8_WEIGHTS = {
    "arm64": Int8Weights("QInt8"),
    "avx2": Int8Weights("QUInt8"),
    "avx2_7bit": Int8Weights("QInt8", reduce_range=True),
    "avx512": Int8Weights("QInt8"),
    "avx512_vnni": Int8Weights("QInt8"),
}
"""Dynamic int8 configurations -> their weights. Every one: per-channel symmetric weights, asymmetric uint8
activations quantized per call, every operator ONNX Runtime can quantize dynamically. ``arm64``, ``avx2``,
``avx512`` and ``avx512_vnni`` are sentence-transformers' (Optimum's) names and settings. ``avx2_7bit`` is Optimum's
``avx512`` with ``reduce_range=True``, the remedy Optimum's docstring gives for ``vpmaddubsw``: on a CPU without VNNI,
ONNX Runtime multiplies uint8 activations by int8 weights with that instruction, whose sum of two products is a
saturating int16; 7-bit weights keep it in range (255 x 64 x 2 < 32767), at the speed of signed weights."""


def cpu_int8_config(flags: Sequence[str] | None = None) -> str:
    """The dynamic int8 settings ``int8=True`` uses on this CPU: ``avx512_vnni`` or ``arm64`` (8-bit signed
    weights) where the CPU sums int8 products without saturating, else ``avx2_7bit`` (7-bit signed weights; Optimum's
    ``avx512`` saturates there and its ``avx2`` is slower, docs/performance.md measures both). ``flags``: this CPU's,
    by default."""
    import platform

    if platform.machine().lower() in ("arm64", "aarch64"):
        return "arm64"
    if flags is None:
        try:
            with open("/proc/cpuinfo", encoding="utf-8") as handle:
                flags = next((line.split(":", 1)[1].split() for line in handle if line.startswith("flags")), [])
        except OSError:
            flags = []
    return "avx512_vnni" if "avx512_vnni" in flags else "avx2_7bit"


def dynamic_int8_weights(config: str) -> Int8Weights:
    """The weights of a dynamic int8 configuration, or a ``ValueError`` naming the configurations there are."""
    if config not in DYNAMIC_INT8_WEIGHTS:
        raise ValueError(f"quantization_config must be one of {sorted(DYNAMIC_INT8_WEIGHTS)}, got {config!r}.")
    return DYNAMIC_INT8_WEIGHTS[config]


def dynamic_int8_file(config: str) -> str:
    """Where ``export_dynamic_quantized_onnx_model(model, config, path)`` writes its file: Optimum's pattern,
    ``onnx/model_<weight type>_<config>.onnx``."""
    return f"onnx/model_{dynamic_int8_weights(config).type.lower()}_{config}.onnx"


def int8_file(backend: str) -> str:
    """Where the export helpers put the default int8 file of ``backend`` (for this CPU, for ONNX)."""
    if backend == "onnx":
        return dynamic_int8_file(cpu_int8_config())
    return "openvino/openvino_model_qint8_quantized.xml"


def import_backend(backend: str) -> ModuleType:
    """The runtime package of ``backend``, or an ``ImportError`` that names the extra to install."""
    module, extra = EXTRAS[backend]
    try:
        return importlib.import_module(module)
    except ImportError as error:
        raise ImportError(
            f"backend={backend!r} needs the package {module!r}: pip install 'rerank-plugins[{extra}]'."
        ) from error


def candidate_files(options: BackendOptions) -> list[str]:
    """Where the exported file may lie in a checkpoint, in the order sentence-transformers tries them."""
    name = PurePosixPath(options.file_name or options.default_file)
    base = PurePosixPath(options.subfolder) if options.subfolder else PurePosixPath()
    found = [str(base / name)]
    if len(name.parts) == 1:
        found.append(str(base / options.backend / name))
    return found


def companion_files(backend: str, relative: str) -> list[str]:
    """Files that travel with an exported file: OpenVINO's weights (``.bin``), an ONNX model's external data."""
    if backend == "openvino":
        return [str(PurePosixPath(relative).with_suffix(".bin"))]
    return [f"{relative}_data", f"{relative}.data"]


def find_exported(
    name_or_path: str, options: BackendOptions, hub: HubOptions = NO_HUB_OPTIONS
) -> tuple[str, str] | None:
    """``(local path, path relative to the checkpoint)`` of the exported file, with its companions fetched; None
    when the checkpoint has none."""
    from sentence_transformers.util import load_file_path

    for relative in candidate_files(options):
        path = load_file_path(name_or_path, relative, **hub.file_kwargs())
        if path is None:
            continue
        for companion in companion_files(options.backend, relative):
            load_file_path(name_or_path, companion, **hub.file_kwargs())  # fetched beside it when the hub has it
        return str(path), relative
    return None
