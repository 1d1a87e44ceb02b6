"""A causal LM that no family recognises is scored as sentence-transformers scores it, and says so once.

sentence-transformers 6 scores any ``*ForCausalLM`` with its ``Transformer`` + ``LogitScore(yes, no)`` and a
sigmoid; the drop-in must agree with it. Saved models keep their modules and report what they are; a causal LM
never gets a random classification head.
"""

from __future__ import annotations

import json
import logging

import numpy as np
import pytest
import sentence_transformers
import torch
from support import DOCUMENTS, QUERIES

from rerank_plugins import CrossEncoder
from rerank_plugins.resolution import resolve_family


def test_an_unknown_causal_lm_is_scored_as_sentence_transformers_scores_it(tiny_paths, pairs, caplog):
    path = tiny_paths["logit-score"]  # a bare Qwen3ForCausalLM: nothing says it is a Qwen3-Reranker
    with caplog.at_level(logging.WARNING, logger="rerank_plugins"):
        model = CrossEncoder(path, device="cpu")
    notes = [r.getMessage() for r in caplog.records if "no family recognises" in r.getMessage()]
    assert len(notes) == 1
    assert "Qwen3ForCausalLM" in notes[0] and "logit-score" in notes[0]
    assert "preset=" in notes[0] and "family='query-likelihood'" in notes[0]
    assert model.family == "logit-score" and model.num_labels == 1
    plain = sentence_transformers.CrossEncoder(path, device="cpu")
    np.testing.assert_allclose(model.predict(pairs), plain.predict(pairs), atol=1e-6, rtol=0)
    expected = plain.rank(QUERIES[1], DOCUMENTS)
    got = model.rank(QUERIES[1], DOCUMENTS)
    assert [hit["corpus_id"] for hit in got] == [hit["corpus_id"] for hit in expected]
    np.testing.assert_allclose([h["score"] for h in got], [h["score"] for h in expected], atol=1e-6, rtol=0)
    raw = model.predict(pairs, activation_fn=torch.nn.Identity())
    np.testing.assert_allclose(1 / (1 + np.exp(-raw)), plain.predict(pairs), atol=1e-6, rtol=0)  # ST's sigmoid


def test_the_note_names_the_scoring_only_when_detection_chose_it(tiny_paths, caplog):
    with caplog.at_level(logging.WARNING, logger="rerank_plugins"):
        CrossEncoder(tiny_paths["qwen3-reranker"], family="logit-score", device="cpu")
        CrossEncoder(tiny_paths["qwen3-reranker"], preset="Qwen/Qwen3-Reranker-0.6B", device="cpu")
    assert not [r for r in caplog.records if "no family recognises" in r.getMessage()]
    # Deciding a family without loading (Ray's listwise check) logs nothing either.
    assert resolve_family(tiny_paths["qwen3-reranker"]).family == "logit-score"


def test_every_llm_family_beats_the_guess_when_named(tiny_paths, pairs):
    """The same checkpoint: sentence-transformers' guess and the card's prompt are two different scorings."""
    path = tiny_paths["qwen3-reranker"]
    guess = CrossEncoder(path, device="cpu").predict(pairs)
    card = CrossEncoder(path, preset="Qwen/Qwen3-Reranker-8B", device="cpu").predict(pairs)
    assert np.abs(guess - card).max() > 1e-2


def test_a_causal_lm_is_never_given_a_random_classification_head(tiny_paths):
    for kind in ("qwen3-reranker", "bge-llm-reranker", "query-likelihood"):
        with pytest.raises(ValueError, match="without a trained sequence-classification head") as error:
            CrossEncoder(tiny_paths[kind], family="sequence-classification", device="cpu")
        for family in ("logit-score", "qwen3-reranker", "mxbai-rerank-v2", "bge-llm-reranker", "query-likelihood"):
            assert family in str(error.value)


def test_a_saved_sentence_transformers_causal_lm_keeps_its_modules_and_says_what_it_is(tiny_paths, tmp_path, pairs):
    path = tiny_paths["mxbai-rerank-v2"]
    plain = sentence_transformers.CrossEncoder(path, device="cpu")
    # A model card of its own: another answer token pair than the default.
    vocab = plain.tokenizer.get_vocab()
    plain[1].true_token_id, plain[1].false_token_id = vocab["1"], vocab["0"]
    plain.save(str(tmp_path / "saved"))
    types = [m["type"] for m in json.loads((tmp_path / "saved" / "modules.json").read_text())]
    assert types[-1].endswith("LogitScore")
    expected = plain.predict(pairs)
    again = CrossEncoder(str(tmp_path / "saved"), device="cpu")
    assert again.family == "logit-score"  # not sequence-classification
    assert resolve_family(str(tmp_path / "saved")).family == "logit-score"
    np.testing.assert_allclose(again.predict(pairs), expected, atol=1e-6, rtol=0)
    ours = CrossEncoder(path, device="cpu")
    ours.save(str(tmp_path / "ours"))
    assert CrossEncoder(str(tmp_path / "ours"), device="cpu").family == "logit-score"


def test_a_causal_lm_without_the_answer_tokens_is_refused_with_the_choices(tiny_paths):
    with pytest.raises(ValueError, match=r"no token 'yes'.*family= \(e.g. 'query-likelihood'\) or preset="):
        CrossEncoder(tiny_paths["llama"], device="cpu")


def test_other_answer_tokens_for_the_sentence_transformers_scoring(tiny_paths, pairs):
    path = tiny_paths["mxbai-rerank-v2"]
    model = CrossEncoder(path, family="logit-score", family_options={"true_token": "1", "false_token": "0"})
    vocab = model.tokenizer.get_vocab()
    assert (model[1].true_token_id, model[1].false_token_id) == (vocab["1"], vocab["0"])
    with pytest.raises(ValueError, match="Unknown family_options"):
        CrossEncoder(path, family="logit-score", family_options={"template": "x"})


def test_an_empty_pair_is_a_clear_error(tiny_paths):
    """A bare Qwen tokenizer adds no token: ("", "") has nothing to read (plain sentence-transformers fails on it
    with an IndexError, or a message about the padding side); a ValueError naming the pair instead."""
    model = CrossEncoder(tiny_paths["logit-score"], device="cpu")
    with pytest.raises(ValueError, match=r"The pair \('', ''\) has no token"):
        model.predict([(QUERIES[0], DOCUMENTS[0]), ("", "")])
