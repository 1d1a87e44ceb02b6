"""Every family's scores equal an independent reference formula (tests/reference.py) on the same weights."""

from __future__ import annotations

import random

import numpy as np
import pytest
import reference
import torch
from support import DOCUMENTS, QUERIES, import_inranker

from rerank_plugins import CrossEncoder

LONG_DOCUMENT = " ".join(["Paris is the capital and largest city of France, known for its museums."] * 80)


def _pairs_with_long() -> list[tuple[str, str]]:
    return [(q, d) for q in QUERIES for d in DOCUMENTS] + [(QUERIES[0], LONG_DOCUMENT)]


def test_monot5_equals_reference(tiny_paths, load_tiny):
    pairs = _pairs_with_long()
    expected = reference.monot5_scores(tiny_paths["monot5"], pairs)
    np.testing.assert_allclose(load_tiny("monot5").predict(pairs), expected, atol=1e-5, rtol=0)


def test_monot5_log_probability_on_request(tiny_paths, load_tiny):
    pairs = _pairs_with_long()
    expected = np.log(reference.monot5_scores(tiny_paths["monot5"], pairs))
    got = load_tiny("monot5").predict(pairs, activation_fn=torch.nn.LogSigmoid())
    np.testing.assert_allclose(got, expected, atol=1e-5, rtol=0)


def test_monot5_equals_inranker_package(tiny_paths, load_tiny):
    inranker = import_inranker()  # skips where inranker cannot run (transformers < 5.3)
    ranker = inranker.T5Ranker(tiny_paths["monot5"], batch_size=4, device="cpu")
    model = load_tiny("monot5")
    for query in QUERIES:
        documents = [*DOCUMENTS, LONG_DOCUMENT]
        expected = ranker.get_scores(query, documents)
        got = model.predict([(query, d) for d in documents])
        np.testing.assert_allclose(got, expected, atol=1e-5, rtol=0)


def test_monot5_configurable_pieces(tiny_paths, pairs):
    model = CrossEncoder(
        tiny_paths["monot5"], family_options={"true_token": "▁yes", "false_token": "▁no"}, device="cpu"
    )
    module = model[0]
    vocab = module.tokenizer.get_vocab()
    assert module.token_ids.tolist() == [vocab["▁no"], vocab["▁yes"]]
    default = CrossEncoder(tiny_paths["monot5"], device="cpu")
    assert not np.allclose(model.predict(pairs), default.predict(pairs))
    with pytest.raises(ValueError, match="▁maybe"):
        CrossEncoder(tiny_paths["monot5"], family_options={"true_token": "▁maybe"}, device="cpu")
    with pytest.raises(ValueError, match="Unknown family_options"):
        CrossEncoder(tiny_paths["deberta"], family="sequence-classification", family_options={"template": "x"})


@pytest.mark.parametrize(
    ("kind", "preset", "activation"),
    [
        ("sequence-classification", "jaspercatapang/R-star", "sigmoid"),
        ("sequence-classification-2", "jaspercatapang/R-star", "softmax1"),
        ("deberta", "xpmir/cross-encoder-DeBERTav3-DistillRankNET", "identity"),
    ],
)
def test_sequence_classification_equals_reference(tiny_paths, kind, preset, activation):
    pairs = _pairs_with_long()
    model = CrossEncoder(tiny_paths[kind], preset=preset, device="cpu")
    assert model.family == "sequence-classification"
    assert model.num_labels == 1
    expected = reference.sequence_classification_scores(tiny_paths[kind], pairs, activation)
    np.testing.assert_allclose(model.predict(pairs), expected, atol=1e-5, rtol=0)


@pytest.mark.parametrize("kind", ["query-likelihood", "llama"])
def test_query_likelihood_equals_reference(tiny_paths, load_tiny, kind):
    pairs = [(q, d) for q in QUERIES for d in DOCUMENTS] + [(QUERIES[1], LONG_DOCUMENT)]
    expected = reference.query_likelihood_scores(tiny_paths[kind], pairs)
    np.testing.assert_allclose(load_tiny(kind).predict(pairs), expected, atol=1e-5, rtol=0)


def test_query_likelihood_never_builds_full_vocabulary_logits(load_tiny, pairs):
    """The LM head sees only the query positions: (batch, query tokens, hidden), never the document length."""
    model = load_tiny("query-likelihood")
    seen: list[tuple[int, ...]] = []
    head = model[0].model.get_output_embeddings()
    handle = head.register_forward_hook(lambda module, args, out: seen.append(tuple(args[0].shape)))
    try:
        model.predict([(QUERIES[0], LONG_DOCUMENT)], batch_size=1)
    finally:
        handle.remove()
    query_tokens = len(model.tokenizer.encode(QUERIES[0], add_special_tokens=False))
    assert seen == [(1, query_tokens, model[0].model.config.hidden_size)]


def test_listconranker_equals_reference(tiny_paths, load_tiny):
    model = load_tiny("listconranker")
    for query in QUERIES:
        documents = [*DOCUMENTS, LONG_DOCUMENT]
        expected = reference.listconranker_scores(tiny_paths["listconranker"], query, documents)
        np.testing.assert_allclose(model.predict([(query, d) for d in documents]), expected, atol=1e-5, rtol=0)


def test_listconranker_scores_depend_on_the_list(load_tiny):
    model = load_tiny("listconranker")
    whole = model.predict([(QUERIES[0], d) for d in DOCUMENTS])
    part = model.predict([(QUERIES[0], d) for d in DOCUMENTS[:3]])
    assert not np.allclose(whole[:3], part, atol=1e-4)  # listwise by design


@pytest.mark.parametrize("kind", ["monot5", "sequence-classification", "deberta", "query-likelihood", "listconranker"])
def test_scores_do_not_depend_on_batch_size_or_order(load_tiny, kind):
    model = load_tiny(kind)
    pairs = [(q, d) for q in QUERIES for d in DOCUMENTS]
    base = model.predict(pairs, batch_size=32)
    for batch_size in (1, 3):
        np.testing.assert_allclose(model.predict(pairs, batch_size=batch_size), base, atol=1e-5, rtol=0)
    order = list(range(len(pairs)))
    random.Random(7).shuffle(order)
    shuffled = model.predict([pairs[i] for i in order], batch_size=3)
    np.testing.assert_allclose(shuffled, base[order], atol=1e-5, rtol=0)


def test_listconranker_shuffled_list_gives_same_scores(load_tiny):
    model = load_tiny("listconranker")
    documents = [*DOCUMENTS, LONG_DOCUMENT]
    base = model.predict([(QUERIES[2], d) for d in documents])
    order = list(range(len(documents)))
    random.Random(3).shuffle(order)
    shuffled = model.predict([(QUERIES[2], documents[i]) for i in order])
    np.testing.assert_allclose(shuffled, base[order], atol=1e-5, rtol=0)


def test_a_list_longer_than_batch_size_is_scored_whole(tiny_paths, load_tiny):
    model = load_tiny("listconranker")
    passages = [f"{DOCUMENTS[i % len(DOCUMENTS)]} number {i}" for i in range(50)]
    pairs = [(QUERIES[0], passage) for passage in passages]
    expected = reference.listconranker_scores(tiny_paths["listconranker"], QUERIES[0], passages)
    np.testing.assert_allclose(model.predict(pairs, batch_size=32), expected, atol=1e-5)
    np.testing.assert_allclose(model.predict(pairs, batch_size=4), expected, atol=1e-5)
    ranked = model.rank(QUERIES[0], passages, batch_size=4)
    assert [r["score"] for r in ranked] == pytest.approx(sorted(expected, reverse=True), abs=1e-5)


def test_multi_process_predict_never_cuts_a_list(load_tiny):
    model = load_tiny("listconranker")
    pairs = [(QUERIES[0], d) for d in DOCUMENTS]
    with pytest.raises(ValueError, match="split lists across workers"):
        model.predict(pairs, device=["cpu", "cpu"])
    with pytest.raises(ValueError, match="split lists across workers"):
        model.rank(QUERIES[0], DOCUMENTS, pool={"input": None, "output": None, "processes": []})


def test_iterative_inference_follows_the_authors(tiny_paths, load_tiny):
    model = load_tiny("listconranker")
    rng = random.Random(11)
    words = " ".join(DOCUMENTS).split()
    passages = [" ".join(rng.choice(words) for _ in range(rng.randint(3, 25))) for _ in range(57)]
    query = QUERIES[0]

    def score_list(texts: list[str]) -> list[float]:
        return model.predict([(query, t) for t in texts]).tolist()

    expected, removed = reference.iterative_reference(score_list, passages)
    assert removed == [12, 10, 10, 10]  # 57 -> 45 -> 35 -> 25 -> 15: four filtering rounds, then the last 15
    got = model.iterative_scores(query, passages)
    np.testing.assert_allclose(got, expected, atol=1e-5, rtol=0)
    rounds = np.floor(np.asarray(got)).astype(int)  # sigmoid in (0, 1) + round number
    assert sorted(np.bincount(rounds).tolist()) == sorted([12, 10, 10, 10, 15])
    ranking = model.rank(query, passages, iterative=True, return_documents=True)
    assert [r["corpus_id"] for r in ranking] == sorted(range(57), key=lambda i: -got[i])
    assert all(r["text"] == passages[r["corpus_id"]] for r in ranking)


def test_iterative_keys_by_index_not_text(load_tiny):
    model = load_tiny("listconranker")
    passages = ["same text"] * 3 + DOCUMENTS * 3
    scores = model.iterative_scores(QUERIES[0], passages)
    assert len(scores) == len(passages)
    assert len({round(s, 6) for s in scores[:3]}) == 1  # duplicates get one score each, none lost


def test_iterative_rejected_for_pointwise(load_tiny):
    with pytest.raises(ValueError, match="ListConRanker"):
        load_tiny("monot5").rank("q", ["a", "b"], iterative=True)


def test_distillranknet_cuts_the_document_first_as_xpmir(tiny_paths):
    """Below max_length this is plain pair tokenization; above it, the document is cut, not the query."""
    model = CrossEncoder(
        tiny_paths["deberta"], preset="xpmir/cross-encoder-DeBERTav3-DistillRankNET", max_length=32, device="cpu"
    )
    long_query = "what is the capital and largest city of france known for its museums and its river"
    pairs = [
        (QUERIES[0], DOCUMENTS[0]),  # fits
        (QUERIES[0], LONG_DOCUMENT),  # the document is cut
        (long_query, LONG_DOCUMENT),  # the query is capped at 16 tokens, the document fills the rest
        (long_query, ""),
    ]
    expected = reference.xpmir_cross_encoder_scores(tiny_paths["deberta"], pairs, max_length=32)
    np.testing.assert_allclose(model.predict(pairs), expected, atol=1e-5, rtol=0)
    longest_first = CrossEncoder(tiny_paths["deberta"], family="sequence-classification", max_length=32, device="cpu")
    assert not np.isclose(longest_first.predict(pairs[2:3]), expected[2:3], atol=1e-4).all()
