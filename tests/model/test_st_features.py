"""sentence-transformers' features through the drop-in: honoured where a family gives them a meaning, else refused.

Prompts, evaluators and ``compile()`` reach every family through the request core; none is silently ignored.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
import sentence_transformers
import torch
from sentence_transformers.cross_encoder.evaluation import CrossEncoderRerankingEvaluator
from support import DOCUMENTS, QUERIES

from rerank_plugins import CrossEncoder

LONG_QUERY = " ".join(["what is the capital of france and its history"] * 60)


# -- prompts ---------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("kind", ["monot5", "query-likelihood", "listconranker"])
def test_a_family_without_a_prompt_refuses_one(tiny_paths, kind):
    family = "query-likelihood" if kind == "query-likelihood" else None
    pairs = [(QUERIES[0], d) for d in DOCUMENTS[:3]]
    model = CrossEncoder(tiny_paths[kind], family=family, device="cpu", prompts={"query": "Query: "})
    for call in (
        lambda: model.predict(pairs, prompt="Instruct: "),
        lambda: model.predict(pairs, prompt_name="query"),
        lambda: model.rank(QUERIES[0], DOCUMENTS[:3], prompt="Instruct: "),
    ):
        with pytest.raises(ValueError, match="has no prompt"):
            call()
    default = CrossEncoder(
        tiny_paths[kind], family=family, device="cpu", prompts={"query": "Query: "}, default_prompt_name="query"
    )
    with pytest.raises(ValueError, match="has no prompt"):
        default.predict(pairs)


def test_an_unknown_prompt_name_is_an_error(load_tiny):
    with pytest.raises(ValueError, match="'nope' is not one of this model's prompts"):
        load_tiny("sequence-classification").predict([("q", "d")], prompt_name="nope")


def test_a_sequence_classifier_prepends_the_prompt_as_sentence_transformers_does(tiny_paths):
    pairs = [(q, d) for q in QUERIES for d in DOCUMENTS[:4]]
    prompts = {"query": "Instruct: find the answer. Query: "}
    ours = CrossEncoder(tiny_paths["sequence-classification"], device="cpu", prompts=prompts)
    plain = sentence_transformers.CrossEncoder(tiny_paths["sequence-classification"], device="cpu", prompts=prompts)
    with_prompt = ours.predict(pairs, prompt_name="query")
    np.testing.assert_allclose(with_prompt, plain.predict(pairs, prompt_name="query"), atol=1e-6)
    np.testing.assert_allclose(ours.predict(pairs, prompt=prompts["query"]), with_prompt, atol=1e-6)
    assert not np.allclose(with_prompt, ours.predict(pairs), atol=1e-4)  # the prompt reached the model
    default = CrossEncoder(
        tiny_paths["sequence-classification"], device="cpu", prompts=prompts, default_prompt_name="query"
    )
    np.testing.assert_allclose(default.predict(pairs), with_prompt, atol=1e-6)


def test_only_second_truncation_with_a_prompt_and_a_long_query(tiny_paths, caplog):
    """xpmir's query cap applies with a prompt too: no tokenizer crash, the cut is reported."""
    model = CrossEncoder(
        tiny_paths["deberta"],
        family="sequence-classification",
        device="cpu",
        max_length=64,
        family_options={"truncation": "only_second"},
    )
    pairs = [(LONG_QUERY, d) for d in DOCUMENTS[:3]]
    for prompt in ("", "Instruct: "):
        with caplog.at_level("WARNING"):
            scores = model.predict(pairs, prompt=prompt)
        assert np.isfinite(scores).all()
        assert any("3 of 3 inputs were longer" in r.getMessage() for r in caplog.records)
        caplog.clear()
        features = model[0].preprocess(pairs, prompt=prompt)
        assert features["input_ids"].shape[1] <= 64
        first_segment = ((features["token_type_ids"][0] == 0) & (features["attention_mask"][0] == 1)).sum()
        assert first_segment <= 32 + 2  # [CLS] + the capped query (half of max_length) + [SEP]


# -- evaluators: a listwise model scores each sample's list alone ----------------------------------------------
def test_the_reranking_evaluator_scores_each_sample_alone(load_tiny):
    model = load_tiny("listconranker")
    query = QUERIES[0]
    texts = [d for d in DOCUMENTS if d] + [f"{d} again" for d in DOCUMENTS if d]

    def average_precisions(lists: list[list[str]], merged: bool) -> list[float]:
        """AP of each list (its first document is the positive), scored alone or all lists as one."""
        if merged:
            flat = model.predict([(query, d) for docs in lists for d in docs])
            parts = np.split(flat, np.cumsum([len(docs) for docs in lists])[:-1])
        else:
            parts = [model.predict([(query, d) for d in docs]) for docs in lists]
        return [1.0 / (1 + int((scores[1:] > scores[0]).sum())) for scores in parts]

    # One sample per positive, the same query and negatives (sentence-transformers' usual layout), chosen so that
    # scoring the samples as one merged list would change the metric.
    for start in range(len(texts) - 6):
        positives, negatives = texts[start : start + 2], texts[start + 2 : start + 7]
        lists = [[positive, *negatives] for positive in positives]
        alone, merged = average_precisions(lists, False), average_precisions(lists, True)
        if not np.isclose(np.mean(alone), np.mean(merged)):
            break
    else:
        pytest.fail("no sample set where merging changes the metric: the test cannot tell the two apart")
    samples = [{"query": query, "positive": [positive], "negative": negatives} for positive in positives]
    metrics = CrossEncoderRerankingEvaluator(samples, name="dup", at_k=10, batch_size=4)(model)
    assert metrics["dup_map"] == pytest.approx(np.mean(alone), abs=1e-9)


def test_the_reranking_evaluator_with_documents_and_skipped_samples(load_tiny):
    model = load_tiny("listconranker")
    samples = [
        {"query": QUERIES[1], "positive": [DOCUMENTS[2]], "documents": DOCUMENTS[:6]},
        {"query": QUERIES[1], "positive": ["not in the documents"], "documents": DOCUMENTS[:4]},  # skipped
        {"query": QUERIES[1], "positive": [DOCUMENTS[0]], "documents": DOCUMENTS[1:8]},  # positive put first
    ]
    for always in (True, False):
        evaluator = CrossEncoderRerankingEvaluator(samples, name="d", always_rerank_positives=always)
        assert np.isfinite(evaluator(model)["d_map"])


# -- compile ---------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("kind", ["monot5", "listconranker"])
def test_compile_reaches_the_forward_of_every_family(tiny_paths, kind, monkeypatch):
    """``model.compile()`` compiles the model's forward; the request core calls the model, so it is used."""
    model = CrossEncoder(tiny_paths[kind], device="cpu")
    pairs = [(QUERIES[0], d) for d in DOCUMENTS]
    expected = model.predict(pairs)
    calls: list[int] = []

    def fake_compile(call: Any, *args: object, **kwargs: object) -> object:  # what nn.Module.compile hands over
        def compiled(*inner: object, **inner_kwargs: object) -> object:
            calls.append(1)
            return call(*inner, **inner_kwargs)

        return compiled

    monkeypatch.setattr(torch, "compile", fake_compile)
    model.compile()
    np.testing.assert_allclose(model.predict(pairs), expected, atol=1e-6)
    assert calls  # the compiled forward ran
