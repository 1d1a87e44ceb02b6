"""sentence-transformers' export helpers on our models: the files land beside the model and load by file_name.

Optimised ONNX must keep the fp32 scores; int8 files must hold int8 operators and rank like fp32 (their quality on
a trained reranker is measured by ``benchmarks/int8_quality.py``, see docs/performance.md).
"""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import onnx
import pytest
import torch
from scipy.stats import spearmanr

import rerank_plugins
from rerank_plugins import (
    CrossEncoder,
    export_dynamic_quantized_onnx_model,
    export_optimized_onnx_model,
    export_static_quantized_openvino_model,
)

PAIRS = [
    (query, document)
    for query in ("what is the capital of france", "how do vaccines work", "who wrote to kill a mockingbird")
    for document in (
        "Paris is the capital and largest city of France.",
        "The stock market fell sharply on Monday.",
        "Vaccines train the immune system to recognise a pathogen.",
        "Harper Lee wrote the novel in 1960; it won the Pulitzer Prize for Fiction.",
        "Rain forms when water vapour condenses into droplets heavy enough to fall.",
    )
]
FAMILY = {"sequence-classification": None, "monot5": None}


def raw(model: CrossEncoder) -> np.ndarray:
    return np.asarray(model.predict(PAIRS, activation_fn=torch.nn.Identity()), dtype=np.float64)


@pytest.fixture
def copy_of(tiny_paths, tmp_path):
    def copy(kind: str) -> str:
        target = tmp_path / kind
        shutil.copytree(tiny_paths[kind], target)
        return str(target)

    return copy


def test_the_helpers_are_importable_from_the_package() -> None:
    for name in rerank_plugins.EXPORT_HELPERS:
        assert callable(getattr(rerank_plugins, name)) and name in rerank_plugins.__all__


def onnxruntime_fuses_t5_for_gpu_only() -> bool:
    """onnxruntime 1.19.2 (the floor) fuses T5's attention at O2 into ``RelativePositionBias``, which has no CPU
    kernel there; 1.32.0 writes a graph the CPU runs (both measured: the two versions CI tests)."""
    import onnxruntime as ort
    from packaging.version import Version

    return Version(ort.__version__) <= Version("1.19.2")


@pytest.mark.parametrize("kind", list(FAMILY))
def test_onnx_helpers_write_beside_the_model_and_load_by_file_name(copy_of, load_tiny, kind) -> None:
    path = copy_of(kind)
    model = CrossEncoder(path, family=FAMILY[kind], backend="onnx")
    fp32 = raw(load_tiny(kind))
    if kind == "monot5" and onnxruntime_fuses_t5_for_gpu_only():
        # T5's O2 fusions need a kernel this onnxruntime lacks on a CPU (1.19): a clear error, and no file.
        with pytest.raises(ValueError, match=r"cannot run on a CPU.*O1"):
            export_optimized_onnx_model(model, "O2", path)
        optimized_files = []
    else:
        export_optimized_onnx_model(model, "O2", path)
        optimized_files = ["model_O2.onnx"]
        optimized = CrossEncoder(
            path, family=FAMILY[kind], backend="onnx", model_kwargs={"file_name": "onnx/model_O2.onnx"}
        )
        np.testing.assert_allclose(raw(optimized), fp32, rtol=0, atol=1e-5)
    export_dynamic_quantized_onnx_model(model, "avx512_vnni", path)
    assert sorted(p.name for p in (Path(path) / "onnx").iterdir()) == [*optimized_files, "model_qint8_avx512_vnni.onnx"]

    int8_file = "onnx/model_qint8_avx512_vnni.onnx"
    operators = {node.op_type for node in onnx.load(str(Path(path) / int8_file)).graph.node}
    assert {"DynamicQuantizeLinear", "MatMulInteger"} <= operators
    int8 = raw(CrossEncoder(path, family=FAMILY[kind], backend="onnx", model_kwargs={"file_name": int8_file}))
    assert not np.allclose(int8, fp32, atol=1e-6)  # really int8
    assert spearmanr(int8, fp32).statistic > 0.5  # (tiny random weights quantize far worse than trained ones)

    # Optimum's avx512_vnni settings applied by hand to the same fp32 graph give the same scores.
    from onnxruntime.quantization import QuantType, quantize_dynamic

    reference = Path(path) / "onnx" / "model_reference.onnx"
    quantize_dynamic(
        model[0].runtime.exported.path, reference, per_channel=True, reduce_range=False, weight_type=QuantType.QInt8,
        extra_options={"WeightSymmetric": True, "ActivationSymmetric": False},
    )  # fmt: skip
    by_hand = CrossEncoder(path, family=FAMILY[kind], backend="onnx", model_kwargs={"file_name": reference.name})
    np.testing.assert_allclose(raw(by_hand), int8, rtol=0, atol=1e-6)


def test_7bit_int8_weights_leave_the_int16_pair_sums_room(copy_of, load_tiny) -> None:
    # Without VNNI, ONNX Runtime sums two uint8 x int8 products in a saturating int16: |w| <= 64 keeps them exact.
    path = copy_of("sequence-classification")
    export_dynamic_quantized_onnx_model(CrossEncoder(path, backend="onnx"), "avx2_7bit", path)
    graph = onnx.load(str(Path(path) / "onnx" / "model_qint8_avx2_7bit.onnx")).graph
    weights = [onnx.numpy_helper.to_array(t) for t in graph.initializer if t.data_type == onnx.TensorProto.INT8]
    assert weights and max(int(np.abs(w.astype(np.int32)).max()) for w in weights) == 64
    int8 = raw(CrossEncoder(path, backend="onnx", model_kwargs={"file_name": "onnx/model_qint8_avx2_7bit.onnx"}))
    fp32 = raw(load_tiny("sequence-classification"))
    assert not np.allclose(int8, fp32, atol=1e-6) and spearmanr(int8, fp32).statistic > 0.9


def test_static_int8_openvino_calibrates_on_the_users_pairs(copy_of, load_tiny) -> None:
    import openvino as ov

    path = copy_of("sequence-classification")
    model = CrossEncoder(path, backend="openvino")
    export_static_quantized_openvino_model(model, {"num_samples": 2}, path, calibration_pairs=PAIRS, file_suffix="mine")
    export_static_quantized_openvino_model(model, None, path)  # the built-in calibration pairs
    for suffix in ("mine", "qint8_quantized"):
        xml = Path(path) / "openvino" / f"openvino_model_{suffix}.xml"
        assert xml.is_file() and xml.with_suffix(".bin").is_file()
        assert "FakeQuantize" in {op.get_type_name() for op in ov.Core().read_model(str(xml)).get_ops()}
    int8 = CrossEncoder(path, backend="openvino", model_kwargs={"file_name": "openvino_model_mine.xml"})
    assert int8[0].runtime.precision == "f32"  # int8 where quantized, fp32 elsewhere: never bf16 unasked
    scores, fp32 = raw(int8), raw(load_tiny("sequence-classification"))
    assert not np.allclose(scores, fp32, atol=1e-6) and spearmanr(scores, fp32).statistic > 0.5


def test_the_helpers_refuse_what_they_cannot_do(copy_of, load_tiny) -> None:
    torch_model = load_tiny("sequence-classification")
    with pytest.raises(ValueError, match='loaded with backend="onnx"'):
        export_dynamic_quantized_onnx_model(torch_model, "avx2", "unused")
    path = copy_of("sequence-classification")
    onnx_model = CrossEncoder(path, backend="onnx")
    with pytest.raises(ValueError, match="GPU"):
        export_optimized_onnx_model(onnx_model, "O4", path)
    with pytest.raises(ValueError, match="quantization_config must be one of"):
        export_dynamic_quantized_onnx_model(onnx_model, "vnni", path)
    with pytest.raises(ValueError, match="calibration_pairs"):
        export_static_quantized_openvino_model(
            CrossEncoder(path, backend="openvino"), None, path, "glue", "sst2", "train", "sentence"
        )


def test_an_optimised_graph_quantizes(copy_of, load_tiny) -> None:
    path = copy_of("sequence-classification")
    export_optimized_onnx_model(CrossEncoder(path, backend="onnx"), "O2", path)
    optimized = CrossEncoder(path, backend="onnx", model_kwargs={"file_name": "onnx/model_O2.onnx"})
    # the fused operators (SkipLayerNormalization, ...) have no ONNX type inference: the outputs are taken as fp32
    export_dynamic_quantized_onnx_model(optimized, "avx2", path, file_suffix="O2_quint8")
    int8 = raw(CrossEncoder(path, backend="onnx", model_kwargs={"file_name": "onnx/model_O2_quint8.onnx"}))
    fp32 = raw(load_tiny("sequence-classification"))
    assert not np.allclose(int8, fp32, atol=1e-6) and spearmanr(int8, fp32).statistic > 0.5


def test_the_export_writes_eager_attention_and_leaves_the_model_as_it_was(copy_of) -> None:
    model = CrossEncoder(copy_of("sequence-classification"), backend="onnx")  # exported at load
    operators = {node.op_type for node in onnx.load(str(model[0].runtime.exported.path)).graph.node}
    assert "IsNaN" not in operators and "Softmax" in operators  # not sdpa's boolean-mask guard
    assert model[0].model.config._attn_implementation == "sdpa"  # as loaded
