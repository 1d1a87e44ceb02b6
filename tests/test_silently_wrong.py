"""Issue 13's core items: each was a wrong answer with no error, or a crash where an answer was due.

Every test here failed on the code before the fix (items 1 and 3: on sentence-transformers 6.0, or with a score
cache shared between two configurations) and names the item it covers.
"""

from __future__ import annotations

import shutil
import threading
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import DOCUMENTS, QUERIES
from reference import listconranker_scores
from transformers import AutoConfig, AutoTokenizer, BertModel

from rerank_plugins import CrossEncoder
from rerank_plugins.cache import ScoreCache
from rerank_plugins.quantization import quantize_int8

LONG = " ".join(f"word{i} passage text about paris france and vaccines" for i in range(60))


# -- 1: a listwise list is never split --------------------------------------------------------------------------
def test_1_a_list_longer_than_batch_size_is_scored_whole(tiny_paths, load_tiny):
    model = load_tiny("listconranker")
    passages = [f"{DOCUMENTS[i % len(DOCUMENTS)]} number {i}" for i in range(50)]
    pairs = [(QUERIES[0], passage) for passage in passages]
    expected = listconranker_scores(tiny_paths["listconranker"], QUERIES[0], passages)
    np.testing.assert_allclose(model.predict(pairs, batch_size=32), expected, atol=1e-5)
    np.testing.assert_allclose(model.predict(pairs, batch_size=4), expected, atol=1e-5)
    ranked = model.rank(QUERIES[0], passages, batch_size=4)
    assert [r["score"] for r in ranked] == pytest.approx(sorted(expected, reverse=True), abs=1e-5)


def test_1_multi_process_predict_never_cuts_a_list(load_tiny):
    model = load_tiny("listconranker")
    pairs = [(QUERIES[0], d) for d in DOCUMENTS]
    with pytest.raises(ValueError, match="split lists across workers"):
        model.predict(pairs, device=["cpu", "cpu"])
    with pytest.raises(ValueError, match="split lists across workers"):
        model.rank(QUERIES[0], DOCUMENTS, pool={"input": None, "output": None, "processes": []})


# -- 2: no random heads -------------------------------------------------------------------------------------------
def test_2_a_bare_encoder_is_refused_with_the_family_to_pass(tiny_paths, tmp_path):
    path = tmp_path / "bare-bert"
    config = AutoConfig.from_pretrained(tiny_paths["sequence-classification"])
    config.architectures = ["BertModel"]
    BertModel(config).save_pretrained(path)
    AutoTokenizer.from_pretrained(tiny_paths["sequence-classification"]).save_pretrained(path)
    with pytest.raises(ValueError, match=r"BertModel.*no scoring head.*family="):
        CrossEncoder(str(path), device="cpu")


# -- 3: the score cache keys on everything that changes a score ---------------------------------------------------
def test_3_cache_keys_family_options(tiny_paths):
    shared = ScoreCache(1000)
    pairs = [(QUERIES[0], d) for d in DOCUMENTS]
    template = {"template": "Question: {query} Passage: {document} Relevant:"}
    default = CrossEncoder(tiny_paths["monot5"], device="cpu", score_cache=shared)
    other = CrossEncoder(tiny_paths["monot5"], device="cpu", score_cache=shared, family_options=template)
    default.predict(pairs)
    uncached = CrossEncoder(tiny_paths["monot5"], device="cpu", family_options=template).predict(pairs)
    np.testing.assert_allclose(other.predict(pairs), uncached, atol=1e-6)
    assert not np.allclose(uncached, default.predict(pairs), atol=1e-4)


def test_3_cache_keys_activation_parameters(tiny_paths):
    model = CrossEncoder(tiny_paths["monot5"], device="cpu", score_cache=1000)
    plain = CrossEncoder(tiny_paths["monot5"], device="cpu")
    pairs = [(QUERIES[1], d) for d in DOCUMENTS]
    for activation in (torch.nn.Softplus(beta=1.0), torch.nn.Softplus(beta=3.0), lambda x: x * 2, lambda x: x - 5):
        np.testing.assert_allclose(
            model.predict(pairs, activation_fn=activation), plain.predict(pairs, activation_fn=activation), atol=1e-6
        )


def test_3_cache_is_invalidated_by_training_and_int8(tiny_paths):
    model = CrossEncoder(tiny_paths["sequence-classification"], device="cpu", score_cache=1000)
    pairs = [(QUERIES[2], d) for d in DOCUMENTS]
    before = model.predict(pairs)
    model.train()  # what CrossEncoderTrainer does; then an optimizer step changes the weights
    with torch.no_grad():
        for parameter in model.parameters():
            parameter.add_(0.05 * torch.randn_like(parameter))
    model.eval()
    fresh = CrossEncoder(tiny_paths["sequence-classification"], device="cpu")
    fresh.load_state_dict(model.state_dict())
    after = model.predict(pairs)
    np.testing.assert_allclose(after, fresh.predict(pairs), atol=1e-6)
    assert not np.allclose(before, after, atol=1e-4)
    quantize_int8(model)
    np.testing.assert_allclose(model.predict(pairs), quantize_int8(fresh).predict(pairs), atol=1e-6)


def test_3_an_activation_that_cannot_be_keyed_is_refused(tiny_paths):
    class Unhashable:
        __hash__ = None  # type: ignore[assignment]

        def __call__(self, x):
            return x

    model = CrossEncoder(tiny_paths["monot5"], device="cpu", score_cache=10)
    with pytest.raises(ValueError, match="cannot key activation_fn"):
        model.predict([(QUERIES[0], DOCUMENTS[0])], activation_fn=Unhashable())


# -- 4: inputs that are not what they look like --------------------------------------------------------------------
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
def test_4_rank_refuses_what_only_looks_right(load_tiny, arguments, error, match):
    call = {"documents": DOCUMENTS[:3], **arguments}
    with pytest.raises(error, match=match):
        load_tiny("monot5").rank(QUERIES[0], **call)


def test_4_rank_keeps_its_sentence_transformers_signature_and_passes_kwargs(load_tiny):
    model = load_tiny("monot5")
    raw = model.rank(QUERIES[0], DOCUMENTS, activation_fn=torch.nn.Identity(), top_k=2, return_documents=True)
    logits = model.predict([(QUERIES[0], d) for d in DOCUMENTS], activation_fn=torch.nn.Identity())
    assert [r["score"] for r in raw] == pytest.approx(sorted(logits, reverse=True)[:2], abs=1e-6)
    assert raw[0]["text"] == DOCUMENTS[raw[0]["corpus_id"]]
    assert model.rank(QUERIES[0], iter(DOCUMENTS[:2]))  # any iterable of str, e.g. a generator


# -- 5: threads -----------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("kind", ["monot5", "sequence-classification", "query-likelihood", "listconranker"])
def test_5_threads_sharing_one_model_get_the_sequential_scores(tiny_paths, kind):
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


# -- 6: the model's own length limit ----------------------------------------------------------------------------------
def test_6_max_length_is_bounded_by_the_models_positions(tiny_paths, tmp_path):
    path = Path(shutil.copytree(tiny_paths["listconranker"], tmp_path / "lcr-128"))
    config = AutoConfig.from_pretrained(path)
    config.max_position_embeddings = 128
    BertModel.from_pretrained(path, config=config, ignore_mismatched_sizes=True).save_pretrained(path)
    model = CrossEncoder(str(path), device="cpu")
    assert model.max_seq_length == 128
    scores = model.predict([(QUERIES[0], LONG), (QUERIES[0], DOCUMENTS[0])])  # crashed with 512 > 128
    assert np.isfinite(scores).all()


def test_6d_a_query_that_leaves_no_room_for_the_document_is_an_error(load_tiny):
    model = load_tiny("query-likelihood")
    with pytest.raises(ValueError, match="leaves no room for the document"):
        model.predict([(LONG * 3, DOCUMENTS[0])])
