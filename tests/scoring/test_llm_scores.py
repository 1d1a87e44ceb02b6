"""The causal-LM rerankers (Qwen3-Reranker, mxbai-rerank-v2, bge-reranker-v2-gemma) equal their authors' code.

The references (tests/reference.py) follow the authors' code one pair at a time with full-vocabulary logits;
``predict`` batches, pads and reads two LM-head rows: the scores must agree to 1e-5 in fp32, whatever the batch,
the padding side, the prompt and the truncation.
"""

from __future__ import annotations

import logging

import numpy as np
import pytest
import reference
import torch
from support import DOCUMENTS, QUERIES

from rerank_plugins import CrossEncoder
from rerank_plugins.scoring.base import pad_rows
from rerank_plugins.scoring.mxbai_rerank import MxbaiNormalize
from rerank_plugins.testing import build_model

LONG_DOCUMENT = " ".join(["Paris is the capital and largest city of France, known for its museums."] * 30)
LONG_QUERY = " ".join(["what is the capital and the largest city of france"] * 12)
FAMILIES = ("qwen3-reranker", "mxbai-rerank-v2", "bge-llm-reranker")
# Budgets small enough that the tiny corpus's texts get cut: every truncation rule of the authors runs.
SHORT = {"qwen3-reranker": 180, "mxbai-rerank-v2": 48, "bge-llm-reranker": 24}


pytestmark = pytest.mark.usefixtures("one_thread")  # tests/conftest.py


def all_pairs() -> list[tuple[str, str]]:
    return [(q, d) for q in QUERIES for d in DOCUMENTS] + [(QUERIES[0], LONG_DOCUMENT), (LONG_QUERY, DOCUMENTS[0])]


def expected_raw(kind: str, path: str, pairs: list[tuple[str, str]], **options: object) -> list[float]:
    """The authors' raw score (before any activation) from the independent reference."""
    return reference.llm_raw_scores(kind, path, pairs, **options)


@pytest.mark.parametrize("kind", FAMILIES)
@pytest.mark.parametrize("batch_size", [None, 5])
def test_raw_scores_equal_the_authors_code(tiny_paths, kind, batch_size):
    pairs = all_pairs()
    model = CrossEncoder(tiny_paths[kind], family=kind, device="cpu", activation_fn=torch.nn.Identity())
    got = model.predict(pairs, batch_size=batch_size)
    np.testing.assert_allclose(got, expected_raw(kind, tiny_paths[kind], pairs), atol=1e-5, rtol=0)
    assert np.ptp(got) > 0.5  # the tiny weights spread the scores: a wrong formula could not pass


def test_qwen3_reranker_returns_the_cards_probability(tiny_paths, load_tiny):
    pairs = all_pairs()
    expected = reference.qwen3_reranker_scores(tiny_paths["qwen3-reranker"], pairs)
    np.testing.assert_allclose(load_tiny("qwen3-reranker").predict(pairs), expected, atol=1e-5, rtol=0)


@pytest.mark.parametrize("kind", ["mxbai-rerank-v2", "bge-llm-reranker"])
def test_raw_by_default_as_the_authors_return_it(tiny_paths, load_tiny, kind):
    pairs = all_pairs()[:6]
    np.testing.assert_allclose(
        load_tiny(kind).predict(pairs), expected_raw(kind, tiny_paths[kind], pairs), atol=1e-5, rtol=0
    )


@pytest.mark.parametrize("kind", FAMILIES)
def test_truncation_as_the_authors_cut(tiny_paths, kind, caplog):
    pairs = all_pairs()
    model = CrossEncoder(
        tiny_paths[kind], family=kind, device="cpu", max_length=SHORT[kind], activation_fn=torch.nn.Identity()
    )
    with caplog.at_level(logging.WARNING, logger="rerank_plugins"):
        got = model.predict(pairs)
    expected = expected_raw(kind, tiny_paths[kind], pairs, max_length=SHORT[kind])
    np.testing.assert_allclose(got, expected, atol=1e-5, rtol=0)
    warnings = [r.getMessage() for r in caplog.records if "truncated" in r.getMessage()]
    assert len(warnings) == 1 and f"max_length={SHORT[kind]}" in warnings[0]
    cut = int(warnings[0].split(" of ")[0])
    assert 2 <= cut < len(pairs)  # the long document and the long query at least; not the short pairs


@pytest.mark.parametrize("kind", FAMILIES)
def test_instruction_per_model_and_per_call(tiny_paths, kind):
    pairs = all_pairs()[:8]
    instruction = "Given a question, find the passage that answers it"
    expected = expected_raw(kind, tiny_paths[kind], pairs, instruction=instruction)
    identity = torch.nn.Identity()
    per_model = CrossEncoder(
        tiny_paths[kind], family=kind, device="cpu", family_options={"instruction": instruction}, activation_fn=identity
    )
    np.testing.assert_allclose(per_model.predict(pairs), expected, atol=1e-5, rtol=0)
    plain = CrossEncoder(
        tiny_paths[kind], family=kind, device="cpu", prompts={"qa": instruction}, activation_fn=identity
    )
    np.testing.assert_allclose(plain.predict(pairs, prompt=instruction), expected, atol=1e-5, rtol=0)
    np.testing.assert_allclose(plain.predict(pairs, prompt_name="qa"), expected, atol=1e-5, rtol=0)
    assert not np.allclose(plain.predict(pairs), expected, atol=1e-4)  # the default instruction differs
    named = CrossEncoder(
        tiny_paths[kind], family=kind, device="cpu", prompts={"qa": instruction}, default_prompt_name="qa",
        activation_fn=identity,
    )  # fmt: skip
    np.testing.assert_allclose(named.predict(pairs), expected, atol=1e-5, rtol=0)
    ranked = plain.rank(QUERIES[0], DOCUMENTS, prompt=instruction)
    by_index = {hit["corpus_id"]: hit["score"] for hit in ranked}
    np.testing.assert_allclose([by_index[i] for i in range(8)], expected, atol=1e-5, rtol=0)


@pytest.mark.parametrize("kind", FAMILIES)
def test_a_score_is_the_same_alone_in_any_batch_and_padded_on_either_side(load_tiny, kind):
    model = load_tiny(kind)
    module = model[0]
    pairs = all_pairs()
    alone = np.array([model.predict([pair], activation_fn=torch.nn.Identity())[0] for pair in pairs])
    shuffled = list(reversed(pairs))
    together = model.predict(shuffled, batch_size=7, activation_fn=torch.nn.Identity())[::-1]
    np.testing.assert_allclose(together, alone, atol=1e-5, rtol=0)
    encoded = module.encode(pairs)
    with torch.inference_mode():
        for side in ("left", "right"):
            input_ids, mask = pad_rows([row.data for row in encoded], module.pad_id(), side)
            raw = module({"input_ids": input_ids, "attention_mask": mask})["scores"].squeeze(-1)
            np.testing.assert_allclose(raw.numpy(), alone, atol=1e-5, rtol=0)


@pytest.mark.parametrize("kind", FAMILIES)
def test_no_vocabulary_wide_logits(load_tiny, kind, pairs):
    """The LM head never runs: the score reads its answer rows directly."""
    model = load_tiny(kind)
    head = model[0].model.get_output_embeddings()
    calls = []
    handle = head.register_forward_hook(lambda *args: calls.append(args))
    try:
        model.predict(pairs)
    finally:
        handle.remove()
    assert calls == []


def test_the_answer_tokens_are_the_authors(load_tiny):
    qwen3, mxbai, bge = (load_tiny(kind)[0] for kind in FAMILIES)
    vocab = qwen3.tokenizer.get_vocab()
    assert qwen3.answer_ids.tolist() == [vocab["yes"], vocab["no"]]
    first = mxbai.tokenizer.get_vocab()
    assert mxbai.answer_ids.tolist() == [first["1"], first["0"]]
    assert bge.answer_ids.tolist() == [bge.tokenizer.get_vocab()["Yes"]]
    assert bge.bos_ids == [bge.tokenizer.bos_token_id]  # Gemma's <bos> leads every input, as FlagEmbedding's


@pytest.mark.parametrize(("preset", "estimated_max"), [("mixedbread-ai/mxbai-rerank-base-v2", 9.0),
                                                        ("mixedbread-ai/mxbai-rerank-large-v2", 12.0)])  # fmt: skip
def test_mxbai_normalize_as_the_package(tiny_paths, preset, estimated_max):
    path = tiny_paths["mxbai-rerank-v2"]
    pairs = all_pairs()[:6]
    raw = np.array(reference.mxbai_rerank_v2_scores(path, pairs))
    normalized = 1 / (1 + np.exp(-(raw - estimated_max / 2)))  # mxbai_rerank.utils.sigmoid_normalize
    model = CrossEncoder(path, preset=preset, device="cpu", family_options={"normalize": True})
    assert isinstance(model.activation_fn, MxbaiNormalize)
    np.testing.assert_allclose(model.predict(pairs), normalized, atol=1e-6, rtol=0)
    plain = CrossEncoder(path, preset=preset, device="cpu")
    np.testing.assert_allclose(plain.predict(pairs), raw, atol=1e-5, rtol=0)
    per_call = plain.predict(pairs, activation_fn=MxbaiNormalize(estimated_max))
    np.testing.assert_allclose(per_call, normalized, atol=1e-6, rtol=0)


def test_bge_normalize_is_the_sigmoid(tiny_paths):
    path = tiny_paths["bge-llm-reranker"]
    pairs = all_pairs()[:6]
    raw = np.array(reference.bge_llm_reranker_scores(path, pairs))
    model = CrossEncoder(path, preset="BAAI/bge-reranker-v2-gemma", device="cpu", family_options={"normalize": True})
    np.testing.assert_allclose(model.predict(pairs), 1 / (1 + np.exp(-raw)), atol=1e-6, rtol=0)


@pytest.mark.parametrize(
    ("hub_id", "family"),
    [("Qwen/Qwen3-Reranker-0.6B", "qwen3-reranker"), ("Qwen/Qwen3-Reranker-4B", "qwen3-reranker"),
     ("Qwen/Qwen3-Reranker-8B", "qwen3-reranker"), ("mixedbread-ai/mxbai-rerank-base-v2", "mxbai-rerank-v2"),
     ("mixedbread-ai/mxbai-rerank-large-v2", "mxbai-rerank-v2"), ("BAAI/bge-reranker-v2-gemma", "bge-llm-reranker")],
)  # fmt: skip
def test_every_hub_id_is_a_preset(tiny_paths, hub_id, family):
    model = CrossEncoder(tiny_paths[family], preset=hub_id, device="cpu")
    assert model.family == family
    pairs = all_pairs()[:4]
    raw = expected_raw(family, tiny_paths[family], pairs)
    scores = model.predict(pairs, activation_fn=torch.nn.Identity())
    np.testing.assert_allclose(scores, raw, atol=1e-5, rtol=0)


@pytest.mark.parametrize(
    "hub_id", ["BAAI/bge-reranker-v2-minicpm-layerwise", "BAAI/bge-reranker-v2.5-gemma2-lightweight"]
)
def test_layerwise_models_are_refused_with_the_reason(tiny_paths, hub_id):
    for kwargs in ({}, {"trust_remote_code": True}):
        with pytest.raises(ValueError, match=r"FlagEmbedding's own model code.*bge-reranker-v2-gemma"):
            CrossEncoder(hub_id, **kwargs)
    with pytest.raises(ValueError, match="cannot be scored as its authors score it"):
        CrossEncoder(tiny_paths["bge-llm-reranker"], preset=hub_id)


def test_options_are_checked(tiny_paths):
    path = tiny_paths["mxbai-rerank-v2"]
    with pytest.raises(TypeError, match="normalize must be True or False"):
        CrossEncoder(path, family="mxbai-rerank-v2", family_options={"normalize": "yes"})
    with pytest.raises(TypeError, match="Unknown option"):
        CrossEncoder(path, family="mxbai-rerank-v2", family_options={"template": "x"})
    with pytest.raises(ValueError, match="query_max_length"):
        CrossEncoder(tiny_paths["bge-llm-reranker"], family="bge-llm-reranker", family_options={"query_max_length": 0})
    with pytest.raises(ValueError, match="no token 'yes'"):  # a BLOOM-like vocabulary has no whole "yes"
        CrossEncoder(tiny_paths["llama"], family="qwen3-reranker")


@pytest.mark.parametrize("kind", FAMILIES)
def test_bfloat16_on_cpu_agrees_with_fp32(tmp_path, kind, pairs):
    """bf16 weights and activations, the answer rows' product and the score in fp32 (tests/test_gpu.py: CUDA)."""
    path = build_model(kind, tmp_path / kind, std=None, seed=3)  # fan-in weights: activations of order one
    fp32 = CrossEncoder(path, family=kind, device="cpu").predict(pairs)
    bf16 = CrossEncoder(path, family=kind, device="cpu", model_kwargs={"dtype": torch.bfloat16})
    assert bf16.dtype == torch.bfloat16
    scores = bf16.predict(pairs)
    assert scores.dtype == np.float32 and np.isfinite(scores).all()
    assert np.all(np.abs(scores - fp32) <= 5e-2 * np.maximum(1.0, np.abs(fp32)))
