"""Where a family module's runtime comes from: :class:`CompiledScoring`, the mixin that starts it at load.

:func:`load_runtime` finds the exported file beside the checkpoint (or exports the score graph of
:mod:`rerank_plugins.backends.graph` once, and quantizes it when int8 is asked) and opens an ONNX Runtime or
OpenVINO session over it (:mod:`rerank_plugins.backends.onnx`, :mod:`rerank_plugins.backends.openvino`).
"""

from __future__ import annotations

import logging
import os
import tempfile
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

from rerank_plugins.backends.graph import EXAMPLE_PAIRS, ExportedFile, Runtime, ScoreGraph, export_onnx
from rerank_plugins.backends.options import BackendOptions, find_exported, import_backend, int8_file
from rerank_plugins.hub import NO_HUB_OPTIONS, HubOptions

logger = logging.getLogger(__name__)


class CompiledScoring:
    """Mixin of a family module that can run on ONNX Runtime and OpenVINO.

    The module implements :meth:`score_graph`; its ``forward`` calls ``self.runtime`` when it is set. The
    runtime is created once, at load (:meth:`start_backend`), never lazily in a scoring thread.
    """

    runtime: Runtime | None = None

    def score_graph(self) -> ScoreGraph:
        """The module's score computation as an exportable :class:`ScoreGraph`."""
        raise NotImplementedError

    def example_rows(self) -> Sequence[Any]:
        """Rows that trace the score graph (``encode`` takes them)."""
        return EXAMPLE_PAIRS

    def example_features(self) -> dict[str, Any]:
        return self.collate(self.encode(self.example_rows()))  # type: ignore[attr-defined]

    def start_backend(self, name_or_path: str, options: BackendOptions, hub: HubOptions = NO_HUB_OPTIONS) -> None:
        """Load the exported score graph (or export it now) and run it in place of PyTorch."""
        if options.backend != "torch":
            self.runtime = load_runtime(self, name_or_path, options, hub)

    def save_backend(self, output_path: str) -> None:
        """Save the exported file beside the model (a no-op for PyTorch)."""
        if self.runtime is not None:
            self.runtime.save(output_path)

    @property
    def backend_name(self) -> str:
        return self.runtime.backend if self.runtime is not None else "torch"


def load_runtime(
    module: CompiledScoring, name_or_path: str, options: BackendOptions, hub: HubOptions = NO_HUB_OPTIONS
) -> Runtime:
    """The backend's runtime for ``module``: the exported file found beside the checkpoint, or a fresh export."""
    import_backend(options.backend)  # an ImportError naming the extra, before any work
    if options.int8 and options.file_name is None:
        int8_options = replace(options, file_name=int8_file(options.backend))
        found = None if options.export else find_exported(name_or_path, int8_options, hub)
        if found is None:  # quantize now, from the fp32 file (found or exported)
            fp32 = locate_or_export(module, name_or_path, replace(options, int8=False), hub)
            exported = quantize_at_load(module, fp32, int8_options)
            logger.warning(
                "Quantized %s to int8 for %s at load. Save the model to keep %s, or write it with the export "
                "helpers (export_dynamic_quantized_onnx_model / export_static_quantized_openvino_model with your "
                "own calibration pairs).", name_or_path, options.backend, exported.relative,
            )  # fmt: skip
            return open_runtime(exported, int8_options)
        options = int8_options
    return open_runtime(locate_or_export(module, name_or_path, options, hub), options)


def locate_or_export(
    module: CompiledScoring, name_or_path: str, options: BackendOptions, hub: HubOptions = NO_HUB_OPTIONS
) -> ExportedFile:
    """The exported file beside the checkpoint (``file_name``, ``subfolder``, the backend's folder), else a new
    export into a temporary folder (unless ``export=False`` or a ``file_name`` was asked for)."""
    found = None if options.export else find_exported(name_or_path, options, hub)
    if found is not None:
        path, relative = found
        root = Path(path)
        for _ in Path(relative).parts:
            root = root.parent
        return ExportedFile(root, relative)
    if options.export is False:
        raise FileNotFoundError(
            f"{name_or_path!r} has no {options.file_name or options.default_file} for backend={options.backend!r} "
            "and export=False was given."
        )
    if options.file_name:
        raise FileNotFoundError(
            f"{name_or_path!r} has no {options.file_name!r} (file_name= names an exported file to load; leave "
            "it out to export the model now)."
        )
    exported = export_backend(module, options)
    logger.warning(
        "Exported %s to %s. Save the model (model.save_pretrained(path)) to keep %s and skip this export "
        "next time.", name_or_path, options.backend, exported.relative,
    )  # fmt: skip
    return exported


def export_backend(
    module: CompiledScoring, options: BackendOptions, directory: str | Path | None = None
) -> ExportedFile:
    """Export ``module``'s score graph for ``options.backend`` into ``directory`` (a temporary one by default)."""
    keep = None
    if directory is None:
        keep = tempfile.TemporaryDirectory(prefix="rerank-plugins-export-")
        directory = keep.name
    root = Path(directory)
    graph = module.score_graph()
    example = module.example_features()
    onnx_relative = os.path.join("onnx", "model.onnx")
    export_onnx(graph, example, root / onnx_relative)
    if options.backend == "onnx":
        return ExportedFile(root, onnx_relative, keep)
    from rerank_plugins.backends.openvino import convert_onnx

    relative = os.path.join("openvino", "openvino_model.xml")
    convert_onnx(root / onnx_relative, root / relative, options.ov_config)
    return ExportedFile(root, relative, keep)


def quantize_at_load(module: CompiledScoring, fp32: ExportedFile, options: BackendOptions) -> ExportedFile:
    """``options.file_name`` written into a temporary folder: ONNX dynamic int8, or OpenVINO static int8 calibrated
    on the built-in pairs, from the fp32 runtime's file."""
    keep = tempfile.TemporaryDirectory(prefix="rerank-plugins-int8-")
    relative = options.file_name or int8_file(options.backend)
    target = Path(keep.name) / relative
    if options.backend == "onnx":
        from rerank_plugins.backends.onnx import quantize_dynamic_int8
        from rerank_plugins.backends.options import cpu_int8_config

        quantize_dynamic_int8(fp32.path, target, cpu_int8_config())
    else:
        from rerank_plugins.backends.calibration import DEFAULT_CALIBRATION_PAIRS, calibration_batches
        from rerank_plugins.backends.openvino import quantize_static_int8

        batches = list(calibration_batches(module, DEFAULT_CALIBRATION_PAIRS))
        quantize_static_int8(fp32.path, target, batches, None)
    return ExportedFile(Path(keep.name), relative, keep)


def open_runtime(exported: ExportedFile, options: BackendOptions) -> Runtime:
    """A session of ``options.backend`` over an exported file."""
    if options.backend == "onnx":
        from rerank_plugins.backends.onnx import OnnxRuntime

        return OnnxRuntime(exported, options)
    from rerank_plugins.backends.openvino import OpenVINORuntime

    return OpenVINORuntime(exported, options)
