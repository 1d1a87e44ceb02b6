"""Token-budget batching: on an accelerator, a predict() without batch_size cuts batches by tokens, not pairs.

There is no GPU in CI, so the accelerator is simulated by forcing ``_uses_token_budget``; what is checked is the
batching itself (the shapes each forward sees) and that the scores do not change.
"""

from __future__ import annotations

import numpy as np
import pytest
from support import DOCUMENTS, QUERIES

from rerank_plugins import CrossEncoder
from rerank_plugins.scoring.token_budget import estimated_tokens, token_budget_groups

PASSAGES = [d * (1 + i % 4) for i, d in enumerate(DOCUMENTS * 3)]  # 24 passages of mixed lengths


def test_groups_are_length_sorted_and_within_the_budget():
    pairs = [(QUERIES[0], passage) for passage in PASSAGES] + [(QUERIES[0], "x" * 5000)]
    groups = token_budget_groups(pairs, max_length=512, batch_tokens=400)
    assert sorted(i for group in groups for i in group) == list(range(len(pairs)))  # each pair exactly once
    lengths = [estimated_tokens(pair, 512) for pair in pairs]
    flat = [lengths[i] for group in groups for i in group]
    assert flat == sorted(flat, reverse=True)  # longest first: little padding
    for group in groups:
        assert len(group) == 1 or len(group) * lengths[group[0]] <= 400
    assert [len(pairs) - 1] in groups  # a pair over the budget is a group of its own


def _forward_shapes(model: CrossEncoder) -> list[tuple[int, ...]]:
    shapes: list[tuple[int, ...]] = []
    model[0].register_forward_pre_hook(lambda module, args: shapes.append(tuple(args[0]["input_ids"].shape)))
    return shapes


@pytest.mark.parametrize("kind", ["monot5", "sequence-classification"])
def test_no_batch_size_on_an_accelerator_batches_by_tokens(tiny_paths, monkeypatch, kind):
    pairs = [(QUERIES[1], passage) for passage in PASSAGES]
    expected = CrossEncoder(tiny_paths[kind], device="cpu").predict(pairs, batch_size=32)
    model = CrossEncoder(tiny_paths[kind], device="cpu")
    monkeypatch.setattr(CrossEncoder, "_uses_token_budget", lambda self, device: True)
    shapes = _forward_shapes(model)
    np.testing.assert_allclose(model.predict(pairs, batch_tokens=300), expected, atol=1e-5)
    groups = token_budget_groups(pairs, model.max_seq_length, 300)
    assert len(shapes) == len(groups) > 1
    assert sorted(rows for rows, _ in shapes) == sorted(len(group) for group in groups)
    shapes.clear()
    model.predict(pairs, batch_size=5)  # an explicit batch_size keeps its sentence-transformers meaning
    assert [rows for rows, _ in shapes] == [5, 5, 5, 5, 4]


def test_listwise_lists_stay_whole_and_encode_by_tokens(tiny_paths, monkeypatch):
    pairs = [(QUERIES[0], passage) for passage in PASSAGES]
    expected = CrossEncoder(tiny_paths["listconranker"], device="cpu").predict(pairs)
    model = CrossEncoder(tiny_paths["listconranker"], device="cpu")
    monkeypatch.setattr(CrossEncoder, "_uses_token_budget", lambda self, device: True)
    encoder_shapes: list[tuple[int, ...]] = []
    model[0].model.register_forward_pre_hook(
        lambda module, args, kwargs: encoder_shapes.append(tuple(kwargs["input_ids"].shape)), with_kwargs=True
    )
    np.testing.assert_allclose(model.predict(pairs, batch_tokens=256), expected, atol=1e-5)
    assert len(encoder_shapes) > 1
    assert all(rows == 1 or rows * width <= 256 for rows, width in encoder_shapes)
