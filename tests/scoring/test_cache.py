"""The opt-in score cache: the second time costs no model call, and never changes a score."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from support import DOCUMENTS, QUERIES

from rerank_plugins import CrossEncoder
from rerank_plugins.cache import ScoreCache


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
