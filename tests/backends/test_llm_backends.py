"""The LLM yes/no rerankers on ONNX Runtime and OpenVINO: only the answer rows are exported, Gemma-2's final
softcap is in the graph, int8 works at load, and ``logit-score`` (sentence-transformers' own modules) is refused.

test_backend_parity.py checks the fp32 scores of every family's tiny model and the save/reload; this file checks
what is particular to the answer-token graph.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import onnx
import pytest
import torch
from scipy.stats import spearmanr

from rerank_plugins import CrossEncoder
from rerank_plugins.backends.options import int8_file

LLM_FAMILIES = ("qwen3-reranker", "mxbai-rerank-v2", "bge-llm-reranker")
PAIRS = [
    (query, document)
    for query in ("what is the capital of france", "how do vaccines work")
    for document in (
        "Paris is the capital and largest city of France, on the Seine. " * 3,
        "The stock market fell sharply on Monday.",
        "Vaccines train the immune system to recognise a pathogen.",
        "Rain forms when water vapour condenses into droplets heavy enough to fall.",
    )
]


def raw(model: CrossEncoder) -> np.ndarray:
    return np.asarray(model.predict(PAIRS, activation_fn=torch.nn.Identity(), batch_size=3), dtype=np.float64)


@pytest.mark.parametrize("kind", LLM_FAMILIES)
def test_the_exported_graph_holds_only_the_answer_rows_of_the_lm_head(tiny_paths, kind) -> None:
    """No full-vocabulary logits: the vocabulary-sized matrix is read only by the embedding lookup."""
    model = CrossEncoder(tiny_paths[kind], family=kind, backend="onnx", device="cpu")
    module = model[0]
    vocab, hidden = module.model.get_output_embeddings().weight.shape
    graph = onnx.load(str(module.runtime.exported.path)).graph
    shapes = {tensor.name: tuple(tensor.dims) for tensor in graph.initializer}
    products = [node for node in graph.node if node.op_type in ("MatMul", "Gemm")]
    weights = [shapes[name] for node in products for name in node.input if name in shapes]
    assert weights and not any(vocab in shape for shape in weights)
    assert (hidden, len(module.answer_ids)) in weights  # the head: the answer rows only (one or two)
    readers = {node.op_type for node in graph.node for name in node.input if shapes.get(name, ())[:1] == (vocab,)}
    assert readers == {"Gather"}


@pytest.fixture(scope="module")
def gemma2_path(tiny_paths, tmp_path_factory) -> str:
    """A tiny Gemma-2 (final logit softcap 2, attention softcap, a sliding window shorter than the rows) with the
    tiny Gemma tokenizer, loaded as bge-llm-reranker: the cap changes every score, so a graph without it fails."""
    from transformers import AutoTokenizer, Gemma2Config, Gemma2ForCausalLM

    tokenizer = AutoTokenizer.from_pretrained(tiny_paths["bge-llm-reranker"])
    config = Gemma2Config(
        vocab_size=len(tokenizer), hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=4,
        num_key_value_heads=1, head_dim=8, max_position_embeddings=8192, sliding_window=16, initializer_range=0.5,
        final_logit_softcapping=2.0, attn_logit_softcapping=5.0, tie_word_embeddings=True,
        pad_token_id=tokenizer.pad_token_id, bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id,
    )  # fmt: skip
    torch.manual_seed(0)
    path = str(tmp_path_factory.mktemp("gemma2"))
    Gemma2ForCausalLM(config).save_pretrained(path)
    tokenizer.save_pretrained(path)
    return path


@pytest.mark.parametrize("backend", ["onnx", "openvino"])
def test_gemma2_final_softcap_is_in_the_graph(gemma2_path, backend) -> None:
    torch_model = CrossEncoder(gemma2_path, family="bge-llm-reranker", device="cpu")
    expected = raw(torch_model)
    module = torch_model[0]
    features = module.collate(module.encode(PAIRS))
    with torch.no_grad():
        hidden = module.last_hidden(features["input_ids"], features["attention_mask"])
        uncapped = (hidden @ module.model.get_output_embeddings().weight[module.answer_ids].T)[:, 0].double()
    assert np.all(np.abs(expected) < 2.0) and np.abs(uncapped.numpy() - expected).max() > 0.1  # the cap is active
    exported = CrossEncoder(gemma2_path, family="bge-llm-reranker", backend=backend, device="cpu")
    np.testing.assert_allclose(raw(exported), expected, rtol=0, atol=1e-5)


@pytest.mark.parametrize(
    ("kind", "backend"),
    [(kind, "onnx") for kind in LLM_FAMILIES] + [("qwen3-reranker", "openvino")],
)
def test_int8_at_load_quantizes_the_llm_graph(tiny_paths, load_tiny, tmp_path, kind, backend) -> None:
    """ONNX: dynamic int8; OpenVINO: static int8 calibrated on the built-in pairs; saved and reloaded as is."""
    path = tmp_path / kind
    shutil.copytree(tiny_paths[kind], path)
    model = CrossEncoder(str(path), family=kind, backend=backend, model_kwargs={"int8": True}, device="cpu")
    assert model[0].runtime.exported.relative == int8_file(backend)
    scores, fp32 = raw(model), raw(load_tiny(kind))
    # really int8, and still ranking like fp32 (tiny random weights quantize far worse than trained ones)
    assert not np.allclose(scores, fp32, atol=1e-4) and spearmanr(scores, fp32).statistic > 0.5
    model.save_pretrained(str(path))
    assert (Path(path) / int8_file(backend)).is_file()
    reloaded = CrossEncoder(str(path), backend=backend, model_kwargs={"int8": True}, device="cpu")
    assert reloaded[0].runtime.exported.root == path  # the saved file, not a new quantization
    np.testing.assert_allclose(raw(reloaded), scores, rtol=0, atol=1e-6)


@pytest.mark.parametrize("backend", ["onnx", "openvino"])
def test_logit_score_is_refused_on_the_backends(tiny_paths, backend) -> None:
    """An unrecognised causal LM (sentence-transformers' modules) runs on PyTorch only; its family says so at load."""
    with pytest.raises(ValueError, match=rf"logit-score family cannot run on backend='{backend}'"):
        CrossEncoder(tiny_paths["logit-score"], backend=backend)


def test_weights_over_2gb_are_gathered_into_one_data_file(tmp_path) -> None:
    """``torch.onnx.export`` writes the weights of a graph over 2 GB (Qwen3-Reranker-0.6B is 2.4 GB in fp32) one
    file per tensor; they are gathered into ``model.onnx_data``, the companion file that save and load carry."""
    import onnxruntime as ort

    from rerank_plugins.backends.graph import ScoreGraph, export_onnx, gather_external_data
    from rerank_plugins.backends.options import companion_files

    torch.manual_seed(0)
    module = torch.nn.Sequential(torch.nn.Linear(8, 64), torch.nn.Tanh(), torch.nn.Linear(64, 1))
    path = tmp_path / "onnx" / "model.onnx"
    export_onnx(ScoreGraph(module, ("x",), "scores", {"x": {0: "batch"}}), {"x": torch.randn(2, 8)}, path)
    assert sorted(p.name for p in path.parent.iterdir()) == ["model.onnx"]  # small: one file, as before
    # the layout of the exporter over 2 GB: each weight in its own file, named after the tensor
    onnx.save_model(onnx.load(str(path)), str(path), save_as_external_data=True, all_tensors_to_one_file=False,
                    size_threshold=0)  # fmt: skip
    assert len(list(path.parent.iterdir())) > 2
    gather_external_data(path)
    assert sorted(p.name for p in path.parent.iterdir()) == ["model.onnx", "model.onnx_data"]
    assert "onnx/model.onnx_data" in companion_files("onnx", "onnx/model.onnx")
    x = torch.randn(5, 8)
    (got,) = ort.InferenceSession(str(path)).run(None, {"x": x.numpy()})
    np.testing.assert_allclose(got, module(x).detach().numpy(), rtol=0, atol=1e-6)
