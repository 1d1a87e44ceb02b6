"""The one batching policy: rows by real token counts, longest first; on an accelerator, a padded-token budget.

There is no GPU in CI: the decision itself is tested on devices that need not exist (``torch.device`` only names
them), and the accelerator's batching is simulated by forcing that decision; what is checked is the batching (the
shapes each forward sees) and that the scores do not change.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from support import DOCUMENTS, QUERIES

from rerank_plugins import CrossEncoder
from rerank_plugins.core import batching
from rerank_plugins.core.batching import on_accelerator, plan_batches

PASSAGES = [d * (1 + i % 4) for i, d in enumerate(DOCUMENTS * 3)]  # 24 passages of mixed lengths


@pytest.mark.parametrize(
    ("device", "expected"), [("cpu", False), ("cuda", True), ("cuda:1", True), ("mps", True), ("xpu", True)]
)
def test_the_token_budget_applies_on_every_device_but_a_cpu(device, expected):
    assert on_accelerator(torch.device(device)) is expected


def test_batches_are_length_sorted_and_within_the_budget():
    tokens = [12, 300, 45, 45, 7, 1000, 90, 30, 45, 2]
    batches = plan_batches(tokens, accelerator=True, batch_tokens=200)
    assert sorted(i for batch in batches for i in batch) == list(range(len(tokens)))  # each row exactly once
    flat = [tokens[i] for batch in batches for i in batch]
    assert flat == sorted(flat, reverse=True)  # longest first: little padding
    for batch in batches:
        assert len(batch) == 1 or len(batch) * tokens[batch[0]] <= 200
    assert [5] in batches and [1] in batches  # a row over the budget is a batch of its own
    # On a CPU, or with a batch_size: that many rows per batch, longest first, whatever their length.
    assert [len(b) for b in plan_batches(tokens, accelerator=False, batch_size=4)] == [4, 4, 2]
    assert [len(b) for b in plan_batches(tokens * 10, accelerator=False)] == [32, 32, 32, 4]
    assert [len(b) for b in plan_batches(tokens, accelerator=True, batch_size=3)] == [3, 3, 3, 1]


def _forward_shapes(model: CrossEncoder) -> list[tuple[int, ...]]:
    shapes: list[tuple[int, ...]] = []
    model[0].register_forward_pre_hook(lambda module, args: shapes.append(tuple(args[0]["input_ids"].shape)))
    return shapes


@pytest.mark.parametrize("kind", ["monot5", "sequence-classification"])
def test_no_batch_size_on_an_accelerator_batches_by_tokens(tiny_paths, monkeypatch, kind):
    pairs = [(QUERIES[1], passage) for passage in PASSAGES]
    expected = CrossEncoder(tiny_paths[kind], device="cpu").predict(pairs, batch_size=32)
    model = CrossEncoder(tiny_paths[kind], device="cpu")
    tokens = [row.tokens for row in model[0].encode(pairs)]  # the real token counts the policy sees
    monkeypatch.setattr(batching, "on_accelerator", lambda device: True)
    shapes = _forward_shapes(model)
    np.testing.assert_allclose(model.predict(pairs, batch_tokens=300), expected, atol=1e-5)
    batches = plan_batches(tokens, accelerator=True, batch_tokens=300)
    assert len(shapes) == len(batches) > 1
    assert sorted(rows for rows, _ in shapes) == sorted(len(batch) for batch in batches)
    assert all(rows * width <= 300 or rows == 1 for rows, width in shapes)  # padded tokens within the budget
    shapes.clear()
    model.predict(pairs, batch_size=5)  # an explicit batch_size keeps its sentence-transformers meaning
    assert [rows for rows, _ in shapes] == [5, 5, 5, 5, 4]


def test_listwise_lists_stay_whole_and_encode_by_tokens(tiny_paths, monkeypatch):
    pairs = [(QUERIES[0], passage) for passage in PASSAGES]
    expected = CrossEncoder(tiny_paths["listconranker"], device="cpu").predict(pairs)
    model = CrossEncoder(tiny_paths["listconranker"], device="cpu")
    monkeypatch.setattr(batching, "on_accelerator", lambda device: True)
    encoder_shapes: list[tuple[int, ...]] = []
    model[0].model.register_forward_pre_hook(
        lambda module, args, kwargs: encoder_shapes.append(tuple(kwargs["input_ids"].shape)), with_kwargs=True
    )
    np.testing.assert_allclose(model.predict(pairs, batch_tokens=256), expected, atol=1e-5)
    assert len(encoder_shapes) > 1
    assert all(rows == 1 or rows * width <= 256 for rows, width in encoder_shapes)
