"""The opt-in score cache: the second time costs no model call, and never changes a score."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from support import DOCUMENTS, QUERIES

from rerank_plugins import CrossEncoder
from rerank_plugins.cache import ScoreCache
from rerank_plugins.quantization import quantize_int8


def _count_forwards(model: CrossEncoder) -> list[int]:
    calls: list[int] = []
    model[0].register_forward_hook(lambda module, args, out: calls.append(1))
    return calls


@pytest.mark.parametrize("kind", ["monot5", "sequence-classification", "listconranker"])
def test_second_call_is_served_from_the_cache(tiny_paths, kind):
    family = "sequence-classification" if kind.startswith("sequence") else None
    model = CrossEncoder(tiny_paths[kind], family=family, device="cpu", score_cache=1000)
    plain = CrossEncoder(tiny_paths[kind], family=family, device="cpu")
    pairs = [(q, d) for q in QUERIES for d in DOCUMENTS]
    calls = _count_forwards(model)
    first = model.predict(pairs)
    assert calls and model.score_cache.misses == len(pairs)
    calls.clear()
    second = model.predict(pairs)
    assert not calls  # no model forward at all
    assert model.score_cache.hits == len(pairs)
    np.testing.assert_array_equal(first, second)
    np.testing.assert_allclose(first, plain.predict(pairs), atol=1e-6)


def test_keys_hold_activation_window_and_list(tiny_paths):
    model = CrossEncoder(tiny_paths["monot5"], device="cpu", score_cache=ScoreCache(100))
    pairs = [(QUERIES[0], d) for d in DOCUMENTS]
    probability = model.predict(pairs)
    log_probability = model.predict(pairs, activation_fn=torch.nn.LogSigmoid())
    np.testing.assert_allclose(np.log(probability), log_probability, atol=1e-5)

    listwise = CrossEncoder(tiny_paths["listconranker"], device="cpu", score_cache=100)
    whole = listwise.predict(pairs)
    part = listwise.predict(pairs[:3])  # another list: other scores, not the cached ones
    np.testing.assert_allclose(
        part, CrossEncoder(tiny_paths["listconranker"], device="cpu").predict(pairs[:3]), atol=1e-6
    )
    assert not np.allclose(whole[:3], part, atol=1e-4)


def test_cache_keys_family_options(tiny_paths):
    shared = ScoreCache(1000)
    pairs = [(QUERIES[0], d) for d in DOCUMENTS]
    template = {"template": "Question: {query} Passage: {document} Relevant:"}
    default = CrossEncoder(tiny_paths["monot5"], device="cpu", score_cache=shared)
    other = CrossEncoder(tiny_paths["monot5"], device="cpu", score_cache=shared, family_options=template)
    default.predict(pairs)
    uncached = CrossEncoder(tiny_paths["monot5"], device="cpu", family_options=template).predict(pairs)
    np.testing.assert_allclose(other.predict(pairs), uncached, atol=1e-6)
    assert not np.allclose(uncached, default.predict(pairs), atol=1e-4)


def test_cache_keys_activation_parameters(tiny_paths):
    model = CrossEncoder(tiny_paths["monot5"], device="cpu", score_cache=1000)
    plain = CrossEncoder(tiny_paths["monot5"], device="cpu")
    pairs = [(QUERIES[1], d) for d in DOCUMENTS]
    for activation in (torch.nn.Softplus(beta=1.0), torch.nn.Softplus(beta=3.0), lambda x: x * 2, lambda x: x - 5):
        np.testing.assert_allclose(
            model.predict(pairs, activation_fn=activation), plain.predict(pairs, activation_fn=activation), atol=1e-6
        )


def test_cache_is_invalidated_by_training_and_int8(tiny_paths):
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


def test_an_activation_that_cannot_be_keyed_is_refused(tiny_paths):
    class Unhashable:
        __hash__ = None  # type: ignore[assignment]

        def __call__(self, x):
            return x

    model = CrossEncoder(tiny_paths["monot5"], device="cpu", score_cache=10)
    with pytest.raises(ValueError, match="cannot key activation_fn"):
        model.predict([(QUERIES[0], DOCUMENTS[0])], activation_fn=Unhashable())


def test_cache_is_bounded_and_least_recently_used_goes_first():
    cache = ScoreCache(max_entries=2)
    cache.put("a", 1.0)
    cache.put("b", 2.0)
    assert cache.get("a") == 1.0
    cache.put("c", 3.0)  # evicts "b", the least recently used
    assert cache.get("b") is None and cache.get("a") == 1.0 and cache.get("c") == 3.0
    assert len(cache) == 2
    with pytest.raises(ValueError):
        ScoreCache(0)


def test_cache_is_off_by_default(load_tiny):
    assert load_tiny("monot5").score_cache is None
