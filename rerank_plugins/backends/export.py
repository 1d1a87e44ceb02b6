"""sentence-transformers' export helpers, for every family: optimised ONNX, dynamic int8 ONNX, static int8 OpenVINO.

Same names, arguments and file layout as ``sentence_transformers.backend``: each takes a model loaded with the
matching backend, writes ``<model_name_or_path>/onnx/model_<suffix>.onnx`` or
``<model_name_or_path>/openvino/openvino_model_<suffix>.xml`` (+ ``.bin``) beside the model (or opens a pull request
on the hub with ``push_to_hub=True``), and the file loads with ``model_kwargs={"file_name": ...}``::

    model = CrossEncoder("path/to/model", backend="onnx")
    export_dynamic_quantized_onnx_model(model, "avx512_vnni", "path/to/model")
    int8 = CrossEncoder("path/to/model", backend="onnx",
                        model_kwargs={"file_name": "onnx/model_qint8_avx512_vnni.onnx"})

They work on our exported score graphs with ONNX Runtime's and NNCF's own tools (Optimum is not needed).
"""

from __future__ import annotations

import logging
import shutil
import tempfile
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from rerank_plugins.backends.calibration import DEFAULT_CALIBRATION_PAIRS, calibration_batches
from rerank_plugins.backends.graph import Runtime

logger = logging.getLogger(__name__)


def _runtime(model: Any, backend: str) -> Runtime:
    """The runtime of ``model``'s family module, which must run ``backend`` (as sentence-transformers requires)."""
    runtime = getattr(model[0], "runtime", None) if len(model) else None
    if runtime is None or runtime.backend != backend:
        raise ValueError(f'The model must be a rerank_plugins CrossEncoder loaded with backend="{backend}".')
    return runtime


def _model_type(model: Any) -> str:
    """ONNX Runtime's fusion patterns to apply: ``bert`` (BERT-like encoders; T5, BLOOM and others match parts)."""
    config = model[0].model.config
    return "t5" if getattr(config, "model_type", "") in ("t5", "mt5") else "bert"


def _publish(directory: Path, backend: str, model_name_or_path: str, push_to_hub: bool, create_pr: bool) -> None:
    """Copy ``directory/<backend>/*`` beside the model, or upload it to the hub repository ``model_name_or_path``."""
    if push_to_hub:
        import huggingface_hub

        files = sorted(path.name for path in (directory / backend).iterdir())
        huggingface_hub.upload_folder(
            folder_path=str(directory / backend), path_in_repo=backend, repo_id=model_name_or_path,
            repo_type="model", commit_message=f"Add exported {backend} model {files[0]!r}", create_pr=create_pr,
        )  # fmt: skip
        return
    target = Path(model_name_or_path) / backend
    target.mkdir(parents=True, exist_ok=True)
    for path in (directory / backend).iterdir():
        shutil.copyfile(path, target / path.name)
        logger.info("Wrote %s", target / path.name)


def export_optimized_onnx_model(
    model: Any,
    optimization_config: str,
    model_name_or_path: str,
    push_to_hub: bool = False,
    create_pr: bool = False,
    file_suffix: str | None = None,
) -> None:
    """An optimised ONNX graph (``"O1"``, ``"O2"``, ``"O3"``; ``"O4"`` is GPU fp16) as ``onnx/model_<suffix>.onnx``.

    ONNX Runtime applies O1/O2-level optimisations to every session anyway; a saved optimised file loads faster,
    and O3 also approximates GELU (scores then move by about 1e-4).
    """
    runtime = _runtime(model, "onnx")
    from rerank_plugins.backends.onnx import optimize_onnx

    suffix = file_suffix or optimization_config
    with tempfile.TemporaryDirectory() as scratch:
        optimize_onnx(runtime.exported.path, Path(scratch) / "onnx" / f"model_{suffix}.onnx", optimization_config,
                      _model_type(model))  # fmt: skip
        _publish(Path(scratch), "onnx", model_name_or_path, push_to_hub, create_pr)


def export_dynamic_quantized_onnx_model(
    model: Any,
    quantization_config: str,
    model_name_or_path: str,
    push_to_hub: bool = False,
    create_pr: bool = False,
    file_suffix: str | None = None,
) -> None:
    """Dynamic int8 (weights int8 ahead of time, activations per call) as ``onnx/model_<suffix>.onnx``.

    ``quantization_config``: ``"arm64"``, ``"avx2"``, ``"avx512"`` or ``"avx512_vnni"`` (Optimum's settings; the
    default suffix is e.g. ``qint8_avx512_vnni``), or ``"avx2_7bit"`` (7-bit signed weights, for x86 CPUs without
    VNNI: what ``int8=True`` uses there). No calibration data is needed.
    """
    runtime = _runtime(model, "onnx")
    from rerank_plugins.backends.onnx import quantize_dynamic_int8
    from rerank_plugins.backends.options import dynamic_int8_file

    relative = f"onnx/model_{file_suffix}.onnx" if file_suffix else dynamic_int8_file(quantization_config)
    with tempfile.TemporaryDirectory() as scratch:
        quantize_dynamic_int8(runtime.exported.path, Path(scratch) / relative, quantization_config)
        _publish(Path(scratch), "onnx", model_name_or_path, push_to_hub, create_pr)


def export_static_quantized_openvino_model(
    model: Any,
    quantization_config: Mapping[str, Any] | None,
    model_name_or_path: str,
    dataset_name: str | None = None,
    dataset_config_name: str | None = None,
    dataset_split: str | None = None,
    column_name: str | None = None,
    push_to_hub: bool = False,
    create_pr: bool = False,
    file_suffix: str = "qint8_quantized",
    *,
    calibration_pairs: Sequence[tuple[str, str]] | None = None,
) -> None:
    """Static int8 (NNCF post-training quantization) as ``openvino/openvino_model_<suffix>.xml``.

    The activation ranges are calibrated on ``calibration_pairs`` (query, document): pass a sample of your own
    (a few hundred pairs of your queries and candidates); by default a small built-in set of search-like pairs
    (:data:`~rerank_plugins.backends.calibration.DEFAULT_CALIBRATION_PAIRS`). ``quantization_config``: None or
    a dict of :data:`~rerank_plugins.backends.openvino.STATIC_INT8_OPTIONS`. sentence-transformers'
    ``dataset_name`` / ``dataset_config_name`` / ``dataset_split`` / ``column_name`` calibrate on single sentences of a
    hub data set; a reranker reads pairs, so they are refused here: pass ``calibration_pairs``.
    """
    runtime = _runtime(model, "openvino")
    if any(value is not None for value in (dataset_name, dataset_config_name, dataset_split, column_name)):
        raise ValueError(
            "dataset_name/dataset_config_name/dataset_split/column_name calibrate on single sentences; a reranker "
            "scores (query, document) pairs: pass calibration_pairs=[(query, document), ...] instead."
        )
    from rerank_plugins.backends.openvino import quantize_static_int8

    pairs = list(calibration_pairs) if calibration_pairs is not None else list(DEFAULT_CALIBRATION_PAIRS)
    if not pairs:
        raise ValueError("calibration_pairs is empty.")
    batches = list(calibration_batches(model[0], pairs))
    with tempfile.TemporaryDirectory() as scratch:
        target = Path(scratch) / "openvino" / f"openvino_model_{file_suffix}.xml"
        quantize_static_int8(runtime.exported.path, target, batches, quantization_config)
        _publish(Path(scratch), "openvino", model_name_or_path, push_to_hub, create_pr)
