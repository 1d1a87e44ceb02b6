"""sentence-transformers' backend options and file layout: file_name, export, provider, ov_config; fp32 on OpenVINO.

A sequence classifier exported the way Optimum exports one (the Hugging Face model, inputs ``input_ids``,
``attention_mask``, ``token_type_ids``, output ``logits``, at ``onnx/model.onnx``) loads as it is.
"""

from __future__ import annotations

import builtins
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from transformers import AutoModelForSequenceClassification, AutoTokenizer

from rerank_plugins import CrossEncoder
from rerank_plugins.backends import runtime
from rerank_plugins.backends.options import split_backend_options

PAIRS = [
    ("what is the capital of france", "Paris is the capital and largest city of France."),
    ("how do vaccines work", "The stock market fell sharply on Monday."),
    ("who wrote to kill a mockingbird", "Harper Lee wrote the novel in 1960; it won the Pulitzer Prize for Fiction."),
    ("what causes rain", ""),
]


def raw(model: CrossEncoder) -> np.ndarray:
    return np.asarray(model.predict(PAIRS, activation_fn=torch.nn.Identity()), dtype=np.float64)


@pytest.fixture
def classifier_copy(tiny_paths, tmp_path) -> Path:
    path = tmp_path / "classifier"
    shutil.copytree(tiny_paths["sequence-classification"], path)
    return path


def export_as_optimum(path: Path) -> None:
    """The Hugging Face classifier exported directly, with Optimum's names and dynamic axes (not our exporter)."""
    model = AutoModelForSequenceClassification.from_pretrained(path).eval()
    tokenizer = AutoTokenizer.from_pretrained(path)
    encoded = tokenizer(["a query", "b"], ["a passage here", "c"], padding=True, return_tensors="pt")
    names = ["input_ids", "attention_mask", "token_type_ids"]
    (path / "onnx").mkdir()
    with torch.no_grad():
        torch.onnx.export(
            model, (), str(path / "onnx" / "model.onnx"), kwargs={name: encoded[name] for name in names},
            input_names=names, output_names=["logits"], opset_version=17, dynamo=False,
            dynamic_axes={**{name: {0: "batch", 1: "length"} for name in names}, "logits": {0: "batch"}},
        )  # fmt: skip


def test_a_file_exported_as_optimum_does_loads_as_is(classifier_copy, load_tiny, monkeypatch) -> None:
    export_as_optimum(classifier_copy)
    monkeypatch.setattr(runtime, "export_backend", lambda *a, **k: pytest.fail("exported instead of loading the file"))
    model = CrossEncoder(str(classifier_copy), backend="onnx", model_kwargs={"export": False})
    np.testing.assert_allclose(raw(model), raw(load_tiny("sequence-classification")), rtol=0, atol=1e-5)


def test_file_name_picks_the_file_and_a_missing_one_is_an_error(classifier_copy) -> None:
    export_as_optimum(classifier_copy)
    shutil.move(classifier_copy / "onnx" / "model.onnx", classifier_copy / "onnx" / "model_other.onnx")
    model = CrossEncoder(str(classifier_copy), backend="onnx", model_kwargs={"file_name": "onnx/model_other.onnx"})
    assert model[0].runtime.exported.relative == "onnx/model_other.onnx"
    model = CrossEncoder(str(classifier_copy), backend="onnx", model_kwargs={"file_name": "model_other.onnx"})
    assert model[0].runtime.exported.relative == "onnx/model_other.onnx"  # the backend's folder is tried too
    with pytest.raises(FileNotFoundError, match=r"model_missing\.onnx"):
        CrossEncoder(str(classifier_copy), backend="onnx", model_kwargs={"file_name": "model_missing.onnx"})
    with pytest.raises(FileNotFoundError, match="export=False"):
        CrossEncoder(str(classifier_copy), backend="onnx", model_kwargs={"export": False})


def test_export_true_exports_even_when_a_file_exists(classifier_copy, monkeypatch) -> None:
    export_as_optimum(classifier_copy)
    calls: list[str] = []
    real = runtime.export_backend

    def counted(module: Any, options: Any) -> Any:
        calls.append("export")
        return real(module, options)

    monkeypatch.setattr(runtime, "export_backend", counted)
    CrossEncoder(str(classifier_copy), backend="onnx", model_kwargs={"export": True})
    assert calls == ["export"]


def test_openvino_runs_fp32_unless_bf16_is_asked_and_keeps_the_choice(tiny_paths, tmp_path) -> None:
    import openvino as ov

    from rerank_plugins.backends.openvino import saved_precision

    fp32 = CrossEncoder(tiny_paths["sequence-classification"], backend="openvino")
    assert fp32[0].runtime.precision == "f32" and fp32[0].runtime.compiled_precision == "f32"
    bf16 = CrossEncoder(
        tiny_paths["sequence-classification"], backend="openvino",
        model_kwargs={"ov_config": {"INFERENCE_PRECISION_HINT": "bf16"}},
    )  # fmt: skip
    assert bf16[0].runtime.precision == "bf16"
    for model, precision in ((fp32, "f32"), (bf16, "bf16")):
        saved = tmp_path / precision
        model.save_pretrained(str(saved))
        assert saved_precision(ov.Core().read_model(str(saved / "openvino" / "openvino_model.xml"))) == precision
        assert CrossEncoder(str(saved), backend="openvino")[0].runtime.precision == precision


def test_onnx_runs_on_torchs_threads_which_stop_spinning_when_a_run_returns(tiny_paths) -> None:
    # Spinning workers would take the cores from the PyTorch work between runs (ListConRanker's ListTransformer).
    model = CrossEncoder(tiny_paths["listconranker"], family="listconranker", backend="onnx")
    options = model[0].runtime.session.get_session_options()
    assert options.intra_op_num_threads == torch.get_num_threads()
    assert options.get_session_config_entry("session.force_spinning_stop") == "1"


def test_options_a_backend_cannot_honour_are_errors() -> None:
    with pytest.raises(ValueError, match="ov_config is an OpenVINO option"):
        split_backend_options("onnx", {"ov_config": {}})
    with pytest.raises(ValueError, match="provider is an ONNX Runtime option"):
        split_backend_options("openvino", {"provider": "CPUExecutionProvider"})
    with pytest.raises(ValueError, match="options of backend='onnx' / 'openvino', not of 'torch'"):
        split_backend_options("torch", {"file_name": "onnx/model.onnx"})
    with pytest.raises(ValueError, match="fp32"):
        split_backend_options("onnx", {"dtype": torch.bfloat16})
    kwargs = {"file_name": "x.onnx", "subfolder": "sub", "attn_implementation": "eager"}
    options, rest = split_backend_options("onnx", kwargs)
    assert (options.file_name, options.subfolder, rest) == (
        "x.onnx",
        "sub",
        {"subfolder": "sub", "attn_implementation": "eager"},
    )


@pytest.mark.parametrize(("backend", "package"), [("onnx", "onnxruntime"), ("openvino", "openvino")])
def test_a_missing_runtime_is_an_import_error_naming_the_extra(tiny_paths, monkeypatch, backend, package) -> None:
    real_import = builtins.__import__

    def without(name: str, *args: Any, **kwargs: Any) -> Any:
        if name == package or name.startswith(package + "."):
            raise ImportError(f"No module named {name!r}")
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", without)
    monkeypatch.delitem(__import__("sys").modules, package, raising=False)
    with pytest.raises(ImportError, match=rf"pip install 'rerank-plugins\[{backend}\]'"):
        CrossEncoder(tiny_paths["sequence-classification"], backend=backend)


def test_int8_weights_are_signed_only_where_the_cpu_sums_them_without_saturating(monkeypatch) -> None:
    import platform

    from rerank_plugins.backends.options import cpu_int8_config, dynamic_int8_file

    monkeypatch.setattr(platform, "machine", lambda: "x86_64")
    assert cpu_int8_config(["avx2", "avx512f", "avx512_vnni"]) == "avx512_vnni"
    assert cpu_int8_config(["avx2", "avx512f", "avx512bw"]) == "avx2_7bit"  # vpmaddubsw saturates: 7-bit weights
    assert cpu_int8_config(["avx2"]) == "avx2_7bit"
    assert dynamic_int8_file("avx2") == "onnx/model_quint8_avx2.onnx"
    assert dynamic_int8_file("avx2_7bit") == "onnx/model_qint8_avx2_7bit.onnx"
    assert dynamic_int8_file("avx512_vnni") == "onnx/model_qint8_avx512_vnni.onnx"
    monkeypatch.setattr(platform, "machine", lambda: "aarch64")
    assert cpu_int8_config([]) == "arm64"
