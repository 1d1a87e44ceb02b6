"""The drop-in contract: family choice, sentence-transformers behaviour, save/load, bad input, truncation, threads."""

from __future__ import annotations

import logging
import shutil
import threading
from pathlib import Path

import numpy as np
import pytest
import sentence_transformers
import torch
from sentence_transformers.cross_encoder.evaluation import CrossEncoderRerankingEvaluator
from support import DOCUMENTS, KIND_FAMILY, QUERIES
from transformers import AutoConfig, AutoTokenizer, BertModel

from rerank_plugins import CrossEncoder
from rerank_plugins.registry import FAMILIES, REGISTRY

ALL_KINDS = list(KIND_FAMILY)
LONG = " ".join(f"word{i} passage text about paris france and vaccines" for i in range(60))


# -- choosing the family --------------------------------------------------------------------------------------
def test_family_detected_from_the_checkpoint(load_tiny):
    assert load_tiny("monot5").family == "monot5"  # a T5 config
    assert load_tiny("listconranker").family == "listconranker"  # the ListConRanker files
    assert load_tiny("listconranker").is_listwise
    assert load_tiny("sequence-classification").family == "sequence-classification"  # ST's own default


def test_causal_lm_without_family_is_read_as_query_likelihood(tiny_paths):
    # Not sentence-transformers' default (a random classification head): a causal LM is query likelihood.
    for kind in ("query-likelihood", "llama"):
        model = CrossEncoder(tiny_paths[kind], device="cpu")
        assert model.family == "query-likelihood"
        assert isinstance(model.activation_fn, torch.nn.Identity)


def test_preset_applies_registry_settings_to_a_local_copy(tiny_paths, pairs):
    model = CrossEncoder(tiny_paths["query-likelihood"], preset="zyznull/RankingGPT-bloom-560m", device="cpu")
    assert model.family == "query-likelihood"
    assert isinstance(model.activation_fn, torch.nn.Identity)
    assert (model.predict(pairs) < 0).all()  # mean log-probabilities


def test_unknown_family_or_preset_lists_the_valid_ones(tiny_paths):
    with pytest.raises(ValueError, match="Valid families: " + ", ".join(FAMILIES)):
        CrossEncoder(tiny_paths["monot5"], family="pairwise")
    with pytest.raises(ValueError, match="unicamp-dl/InRanker-base"):
        CrossEncoder(tiny_paths["monot5"], preset="no/such-model")


def test_remote_code_models_need_explicit_trust(tiny_paths):
    with pytest.raises(ValueError, match="trust_remote_code=True"):
        CrossEncoder("zyznull/RankingGPT-qwen-7b")
    assert REGISTRY["zyznull/RankingGPT-qwen-7b"].needs_remote_code


def test_sentence_transformers_arguments_keep_working(tiny_paths, pairs):
    model = CrossEncoder(tiny_paths["monot5"], device="cpu", max_length=16, activation_fn=torch.nn.Identity())
    assert model.max_seq_length == 16
    assert isinstance(model.activation_fn, torch.nn.Identity)
    raw = model.predict(pairs)
    assert raw.min() < 0 or raw.max() > 1 or not np.allclose(raw, 1 / (1 + np.exp(-raw)))  # no sigmoid applied
    assert isinstance(model, sentence_transformers.CrossEncoder)


# -- inherited behaviour, every family --------------------------------------------------------------------------
@pytest.mark.parametrize("kind", ALL_KINDS)
def test_predict_return_shapes(load_tiny, kind):
    model = load_tiny(kind)
    pairs = [(QUERIES[0], d) for d in DOCUMENTS]
    scores = model.predict(pairs)
    assert isinstance(scores, np.ndarray) and scores.shape == (len(pairs),) and scores.dtype == np.float32
    single = model.predict(pairs[0])
    assert np.ndim(single) == 0
    tensor = model.predict(pairs, convert_to_tensor=True)
    assert isinstance(tensor, torch.Tensor) and tensor.shape == (len(pairs),)
    as_list = model.predict(pairs, convert_to_numpy=False)
    assert isinstance(as_list, list) and len(as_list) == len(pairs)
    np.testing.assert_allclose(tensor.numpy(), scores, atol=1e-6)
    assert len(model.predict([])) == 0


@pytest.mark.parametrize("kind", ALL_KINDS)
def test_rank_top_k_and_documents(load_tiny, kind):
    model = load_tiny(kind)
    scores = model.predict([(QUERIES[1], d) for d in DOCUMENTS])
    ranking = model.rank(QUERIES[1], DOCUMENTS, top_k=3, return_documents=True)
    assert [r["corpus_id"] for r in ranking] == list(np.argsort(-scores, kind="stable")[:3])
    for r in ranking:
        assert r["text"] == DOCUMENTS[r["corpus_id"]]
        assert r["score"] == pytest.approx(float(scores[r["corpus_id"]]), abs=1e-6)


@pytest.mark.parametrize("kind", ["monot5", "deberta", "query-likelihood", "listconranker"])
def test_reranking_evaluator(load_tiny, kind):
    model = load_tiny(kind)
    samples = [
        {"query": QUERIES[0], "positive": [DOCUMENTS[0]], "negative": DOCUMENTS[1:5]},
        {"query": QUERIES[1], "positive": [DOCUMENTS[2]], "negative": [DOCUMENTS[0], *DOCUMENTS[3:6]]},
    ]
    evaluator = CrossEncoderRerankingEvaluator(samples, at_k=5, name="tiny")
    metrics = model.evaluate(evaluator)
    # Recompute MRR@5 by hand from predict() to prove the evaluator ran on our scores.
    reciprocal = []
    for sample in samples:
        docs = sample["positive"] + sample["negative"]
        scores = model.predict([(sample["query"], d) for d in docs])
        rank = 1 + int((scores > scores[0]).sum())
        reciprocal.append(1 / rank if rank <= 5 else 0.0)
    assert metrics["tiny_mrr@5"] == pytest.approx(np.mean(reciprocal), abs=1e-6)


@pytest.mark.parametrize("kind", ALL_KINDS)
def test_save_and_reload(load_tiny, tmp_path, kind):
    model = load_tiny(kind)
    pairs = [(q, d) for q in QUERIES[:2] for d in DOCUMENTS]
    expected = model.predict(pairs)
    model.save(str(tmp_path / "saved"))
    again = CrossEncoder(str(tmp_path / "saved"), device="cpu")
    assert again.family == model.family
    np.testing.assert_array_equal(again.predict(pairs), expected)
    plain = sentence_transformers.CrossEncoder(str(tmp_path / "saved"), trust_remote_code=True, device="cpu")
    # Plain sentence-transformers batches by length: a listwise model is exact only with whole lists per batch.
    batch = len(pairs) if model.is_listwise else 32
    np.testing.assert_allclose(plain.predict(pairs, batch_size=batch), expected, atol=1e-5, rtol=0)


def test_saved_listconranker_uses_safetensors(load_tiny, tmp_path):
    load_tiny("listconranker").save(str(tmp_path))
    assert (tmp_path / "list_transformer.safetensors").exists()
    assert not (tmp_path / "list_transformer.pt").exists()


# -- bad input, truncation, dtype --------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("bad", "error", "match"),
    [
        ([("q", "d"), ("q", None)], TypeError, "Input 1: the document must be a str, got NoneType"),
        ([("q", "d"), ("q", "d"), (3, "d")], TypeError, "Input 2: the query must be a str, got int"),
        ([("q", "d"), ("q", "d", "e")], ValueError, "Input 1 is not a \\(query, document\\) pair"),
        ([("q", "d"), "just text"], ValueError, "Input 1 is not a \\(query, document\\) pair"),
    ],
)
@pytest.mark.parametrize("kind", ["monot5", "sequence-classification", "listconranker"])
def test_bad_input_names_the_offending_pair(load_tiny, kind, bad, error, match):
    with pytest.raises(error, match=match):
        load_tiny(kind).predict(bad)


def test_rank_rejects_bad_documents(load_tiny):
    with pytest.raises(TypeError, match="Input 2: the document"):
        load_tiny("monot5").rank("q", ["a", "b", None])
    with pytest.raises(TypeError, match="query must be a str"):
        load_tiny("monot5").rank(None, ["a"])


@pytest.mark.parametrize(
    ("arguments", "error", "match"),
    [
        ({"documents": "a single string"}, TypeError, "documents must be a list of str, got one str"),
        ({"documents": {"a": 1, "b": 2}}, TypeError, "documents must be a list of str, got dict"),
        ({"documents": ["a", 3]}, TypeError, "Input 1: the document must be a str"),
        ({"top_k": -1}, ValueError, "top_k must be a positive int"),
        ({"top_k": 0}, ValueError, "top_k must be a positive int"),
        ({"top_k": True}, TypeError, "top_k must be a positive int"),
        ({"top_k": 2.5}, TypeError, "top_k must be a positive int"),
        ({"batch_size": 0}, ValueError, "batch_size must be a positive int"),
    ],
)
def test_rank_refuses_what_only_looks_right(load_tiny, arguments, error, match):
    call = {"documents": DOCUMENTS[:3], **arguments}
    with pytest.raises(error, match=match):
        load_tiny("monot5").rank(QUERIES[0], **call)


def test_rank_keeps_its_sentence_transformers_signature_and_passes_kwargs(load_tiny):
    model = load_tiny("monot5")
    raw = model.rank(QUERIES[0], DOCUMENTS, activation_fn=torch.nn.Identity(), top_k=2, return_documents=True)
    logits = model.predict([(QUERIES[0], d) for d in DOCUMENTS], activation_fn=torch.nn.Identity())
    assert [r["score"] for r in raw] == pytest.approx(sorted(logits, reverse=True)[:2], abs=1e-6)
    assert raw[0]["text"] == DOCUMENTS[raw[0]["corpus_id"]]
    assert model.rank(QUERIES[0], iter(DOCUMENTS[:2]))  # any iterable of str, e.g. a generator


@pytest.mark.parametrize("kind", ALL_KINDS)
def test_empty_strings_are_scored(load_tiny, kind):
    scores = load_tiny(kind).predict([("", ""), (QUERIES[0], ""), ("", DOCUMENTS[0])])
    assert np.isfinite(scores).all() and len(scores) == 3


@pytest.mark.parametrize("kind", ["monot5", "sequence-classification", "query-likelihood", "listconranker"])
def test_truncation_logs_one_warning_per_call(load_tiny, caplog, kind):
    # Query likelihood needs room for the query itself (test_a_query_that_leaves_no_room_for_the_document_is_an_error):
    # 48 tokens leave the documents some.
    model = load_tiny(kind, max_length=48 if kind == "query-likelihood" else 32)
    long = " ".join(DOCUMENTS * 10)
    pairs = [(QUERIES[0], long), (QUERIES[1], long), (QUERIES[0], "short"), (QUERIES[2], long)]
    with caplog.at_level(logging.WARNING, logger="rerank_plugins"):
        model.predict(pairs, batch_size=1)
    warnings = [r for r in caplog.records if "truncated" in r.getMessage()]
    assert len(warnings) == 1
    assert "3 of 4 inputs" in warnings[0].getMessage()
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="rerank_plugins"):
        model.predict([(QUERIES[0], "short")])
    assert not [r for r in caplog.records if "truncated" in r.getMessage()]


def test_max_length_is_bounded_by_the_models_positions(tiny_paths, tmp_path):
    path = Path(shutil.copytree(tiny_paths["listconranker"], tmp_path / "lcr-128"))
    config = AutoConfig.from_pretrained(path)
    config.max_position_embeddings = 128
    BertModel.from_pretrained(path, config=config, ignore_mismatched_sizes=True).save_pretrained(path)
    model = CrossEncoder(str(path), device="cpu")
    assert model.max_seq_length == 128
    scores = model.predict([(QUERIES[0], LONG), (QUERIES[0], DOCUMENTS[0])])  # crashed with 512 > 128
    assert np.isfinite(scores).all()


def test_a_query_that_leaves_no_room_for_the_document_is_an_error(load_tiny):
    model = load_tiny("query-likelihood")
    with pytest.raises(ValueError, match="leaves no room for the document"):
        model.predict([(LONG * 3, DOCUMENTS[0])])


def test_bfloat16_predict_on_cpu(tiny_paths, pairs):
    fp32 = CrossEncoder(tiny_paths["monot5"], device="cpu").predict(pairs)
    bf16 = CrossEncoder(tiny_paths["monot5"], device="cpu", model_kwargs={"dtype": torch.bfloat16})
    assert bf16.dtype == torch.bfloat16
    scores = bf16.predict(pairs)
    assert scores.dtype == np.float32
    assert np.corrcoef(scores, fp32)[0, 1] > 0.9


def test_a_checkpoint_missing_weights_is_an_error_not_a_random_init(tiny_paths, tmp_path):
    import shutil

    from safetensors.torch import load_file, save_file

    broken = tmp_path / "broken"
    shutil.copytree(tiny_paths["monot5"], broken)
    weights = load_file(broken / "model.safetensors")
    dropped = next(name for name in weights if "encoder.block.1" in name)
    save_file({k: v for k, v in weights.items() if k != dropped}, broken / "model.safetensors")
    with pytest.raises(ValueError, match="lacks 1 weight"):
        CrossEncoder(str(broken), device="cpu")


def test_a_bare_encoder_is_refused_with_the_family_to_pass(tiny_paths, tmp_path):
    path = tmp_path / "bare-bert"
    config = AutoConfig.from_pretrained(tiny_paths["sequence-classification"])
    config.architectures = ["BertModel"]
    BertModel(config).save_pretrained(path)
    AutoTokenizer.from_pretrained(tiny_paths["sequence-classification"]).save_pretrained(path)
    with pytest.raises(ValueError, match=r"BertModel.*no scoring head.*family="):
        CrossEncoder(str(path), device="cpu")


def test_listconranker_encoder_has_no_unused_pooler(load_tiny):
    assert load_tiny("listconranker")[0].model.pooler is None


# -- threads ---------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("kind", ["monot5", "sequence-classification", "query-likelihood", "listconranker"])
def test_threads_sharing_one_model_get_the_sequential_scores(tiny_paths, kind):
    family = "query-likelihood" if kind == "query-likelihood" else None
    model = CrossEncoder(tiny_paths[kind], family=family, device="cpu", max_length=48)
    # Long and short documents: the truncation count re-tokenizes the long ones without truncation.
    work = [[(q, d if i % 2 else LONG[: 40 * (i + 1)] + d) for i, d in enumerate(DOCUMENTS)] for q in QUERIES] * 3
    expected = [model.predict(pairs) for pairs in work]
    results: dict[int, np.ndarray] = {}
    errors: list[BaseException] = []

    def score(index: int) -> None:
        try:
            for _ in range(3):
                results[index] = model.predict(work[index], batch_size=3)
        except BaseException as error:  # reported below
            errors.append(error)

    threads = [threading.Thread(target=score, args=(i,)) for i in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert not errors, errors
    for index in range(8):
        np.testing.assert_allclose(results[index], expected[index], atol=1e-5)
