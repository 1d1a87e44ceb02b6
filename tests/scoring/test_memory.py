"""Bounded memory on long lists: what each forward sees is bounded by the batch, never by the list.

No timings and no memory readings here (those are ``python -m benchmarks.run --long-list``): these tests assert
the structure that bounds memory, with forward hooks counting what reaches the model.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch.nn import functional as F

from rerank_plugins.scoring import padding
from rerank_plugins.scoring.padding import length_chunks

QUERY = "how do vaccines work"
WORDS = [
    "vaccines", "train", "the", "immune", "system", "to", "recognise", "a", "pathogen",
    "and", "the", "stock", "market", "fell", "sharply", "on", "monday",
]  # fmt: skip


def documents(count: int) -> list[str]:
    """``count`` distinct documents of varied lengths (3 to 40 words)."""
    rng = np.random.default_rng(0)
    return [f"{i} " + " ".join(rng.choice(WORDS, size=int(rng.integers(3, 40)))) for i in range(count)]


class RowCounter:
    """A forward pre-hook that records ``(rows, width)`` of every ``input_ids`` a module receives."""

    def __init__(self, module: torch.nn.Module) -> None:
        self.shapes: list[tuple[int, int]] = []
        self.handle = module.register_forward_pre_hook(self.hook, with_kwargs=True)

    def hook(self, module: torch.nn.Module, args: tuple, kwargs: dict) -> None:
        ids = kwargs.get("input_ids", args[0] if args else None)
        self.shapes.append(tuple(ids.shape))

    def __enter__(self) -> RowCounter:
        return self

    def __exit__(self, *exc: object) -> None:
        self.handle.remove()


def test_length_chunks_cover_every_row_once_with_its_tokens():
    mask = torch.zeros(9, 20, dtype=torch.long)
    for row, length in enumerate([20, 3, 7, 19, 4, 4, 12, 1, 18]):
        mask[row, :length] = 1
    chunks = length_chunks(mask, overhead=4)
    rows = torch.cat([r for r, _ in chunks]).sort().values
    assert rows.tolist() == list(range(9))
    for chunk, width in chunks:
        assert width == int(mask[chunk].sum(dim=1).max())  # trimmed to its own longest row
    assert len(chunks) > 1  # lengths 1..20 are worth splitting at 4 slots per chunk


def test_length_chunks_respect_max_tokens_and_keep_one_chunk_when_splitting_costs_more():
    mask = torch.ones(10, 50, dtype=torch.long)
    assert all(len(r) * w <= 120 for r, w in length_chunks(mask, max_tokens=120))
    assert len(length_chunks(mask, overhead=1e9)) == 1
    lonely = torch.ones(1, 50, dtype=torch.long)
    assert [(len(r), w) for r, w in length_chunks(lonely, max_tokens=10)] == [(1, 50)]  # one row always allowed


def test_length_chunks_keep_left_padded_rows_whole():
    mask = torch.tensor([[0, 0, 1, 1], [1, 1, 1, 1], [0, 1, 1, 1]])
    for _, width in length_chunks(mask, overhead=0):
        assert width == 4  # the last attended column, not the length: left padding is never cut off


def test_listconranker_encoder_sees_at_most_batch_size_texts(load_tiny):
    model = load_tiny("listconranker")
    docs = documents(200)
    with RowCounter(model[0].model) as counter:
        model.predict([(QUERY, d) for d in docs], batch_size=16)
    assert max(rows for rows, _ in counter.shapes) <= 16
    assert sum(rows for rows, _ in counter.shapes) == len(docs) + 1  # the query once, every document once


@pytest.mark.parametrize("batch_size", [16, 120])
def test_monot5_encoder_sees_at_most_batch_size_rows_packed(load_tiny, batch_size):
    model = load_tiny("monot5")
    docs = documents(120)
    with RowCounter(model[0].model.get_encoder()) as counter:
        model.predict([(QUERY, d) for d in docs], batch_size=batch_size)
    assert max(rows for rows, _ in counter.shapes) <= batch_size
    if batch_size == 120:  # lengths 3 to 40 words in one batch: short rows share the bins of long ones
        assert sum(rows for rows, _ in counter.shapes) < len(docs)


def test_monot5_unpacked_chunks_see_every_row_once(load_tiny, monkeypatch):
    from rerank_plugins.scoring import monot5

    monkeypatch.setattr(monot5, "PACKED_TYPES", ())
    model = load_tiny("monot5")
    docs = documents(120)
    with RowCounter(model[0].model.get_encoder()) as counter:
        model.predict([(QUERY, d) for d in docs], batch_size=16)
    assert max(rows for rows, _ in counter.shapes) <= 16
    assert sum(rows for rows, _ in counter.shapes) == len(docs)


def test_monot5_packed_chunked_and_padded_batches_give_the_same_scores(load_tiny, monkeypatch):
    from rerank_plugins.scoring import monot5

    model = load_tiny("monot5")
    pairs = [(QUERY, d) for d in documents(40)]
    packed = model.predict(pairs, batch_size=40)
    monkeypatch.setattr(monot5, "PACKED_TYPES", ())
    chunked = model.predict(pairs, batch_size=40)
    monkeypatch.setattr(padding, "CPU_CHUNK_OVERHEAD", 1e12)  # never split: one padded batch
    whole = model.predict(pairs, batch_size=40)
    np.testing.assert_allclose(chunked, whole, atol=1e-6, rtol=0)
    np.testing.assert_allclose(packed, whole, atol=1e-6, rtol=0)


@pytest.mark.parametrize("kind", ["sequence-classification", "deberta"])
def test_a_classifier_scores_in_trimmed_length_chunks_with_the_scores_of_one_padded_batch(load_tiny, monkeypatch, kind):
    model = load_tiny(kind)
    pairs = [(QUERY, d) for d in documents(40)]
    with RowCounter(model[0].model.base_model) as counter:  # sentence-transformers calls the head's forward itself
        chunked = model.predict(pairs, batch_size=40)
    assert len(counter.shapes) > 1 and sum(rows for rows, _ in counter.shapes) == len(pairs)  # each pair once
    widths = [width for _, width in counter.shapes]
    assert min(widths) < max(widths)  # each chunk trimmed to its own longest pair
    monkeypatch.setattr(padding, "CPU_CHUNK_OVERHEAD", 1e12)  # never split: sentence-transformers' one forward
    with RowCounter(model[0].model.base_model) as counter:
        whole = model.predict(pairs, batch_size=40)
    assert [rows for rows, _ in counter.shapes] == [len(pairs)]
    np.testing.assert_allclose(chunked, whole, atol=1e-6, rtol=0)


def test_a_classifier_trains_on_the_whole_padded_batch(load_tiny):
    model = load_tiny("sequence-classification")
    module = model[0]
    features = module.preprocess([(QUERY, d) for d in documents(12)])
    module.train()
    try:
        with RowCounter(module.model.base_model) as counter:
            scores = module(features)["scores"]
    finally:
        module.eval()
    assert counter.shapes == [tuple(features["input_ids"].shape)]
    assert scores.requires_grad


def test_pack_rows_puts_every_token_once_and_hides_the_other_rows():
    from rerank_plugins.scoring.padding import pack_rows

    lengths = [9, 2, 5, 4, 9, 1, 3]
    ids = torch.zeros(len(lengths), 9, dtype=torch.long)
    mask = torch.zeros_like(ids)
    for row, length in enumerate(lengths):
        ids[row, :length] = torch.arange(1, length + 1) + 100 * row
        mask[row, :length] = 1
    packing = pack_rows(ids, mask)
    bins, capacity = packing.input_ids.shape
    assert capacity == 9 and bins == 4  # 9 | 9 | 5+4 | 2+1+3 (first fit, longest first)
    for row, length in enumerate(lengths):
        columns = packing.row_columns[row].nonzero().flatten()
        assert packing.input_ids[packing.row_bin[row], columns].tolist() == ids[row, :length].tolist()
        visible = packing.attention_mask[packing.row_bin[row], 0, columns[0]] == 0
        assert visible.nonzero().flatten().tolist() == columns.tolist()  # its own tokens, nothing else


def test_query_likelihood_body_chunks_are_capped_in_tokens(load_tiny, monkeypatch):
    model = load_tiny("query-likelihood")
    module = model[0]
    monkeypatch.setattr(type(module), "max_chunk_tokens", 256)
    body = module.model.get_decoder() if hasattr(module.model, "get_decoder") else module.model.base_model
    with RowCounter(body) as counter:
        model.predict([(QUERY, d) for d in documents(30)], batch_size=30)
    assert all(rows * width <= 256 for rows, width in counter.shapes if rows > 1)


def test_query_likelihood_blocked_vocabulary_equals_one_full_softmax(load_tiny, monkeypatch):
    model = load_tiny("query-likelihood")
    pairs = [(QUERY, d) for d in documents(12)]
    full = model.predict(pairs, batch_size=12)
    vocab = model[0].model.get_output_embeddings().weight.shape[0]
    monkeypatch.setattr(type(model[0]), "head_block_elements", vocab // 3)  # several blocks per query position
    blocked = model.predict(pairs, batch_size=12)
    np.testing.assert_allclose(blocked, full, atol=1e-5, rtol=0)


@pytest.mark.parametrize("size", [1, 3])
def test_query_likelihood_tiny_blocks_still_score(load_tiny, monkeypatch, size):
    model = load_tiny("query-likelihood")
    pairs = [(QUERY, d) for d in documents(size)]
    full = model.predict(pairs)
    monkeypatch.setattr(type(model[0]), "head_block_elements", 7)  # blocks far smaller than one row
    np.testing.assert_allclose(model.predict(pairs), full, atol=1e-5, rtol=0)


def test_list_attention_layer_equals_a_masked_transformer_layer():
    from rerank_plugins.scoring.listconranker import list_attention_layer

    torch.manual_seed(0)
    layer = torch.nn.TransformerEncoderLayer(24, 4, dim_feedforward=40, batch_first=True, activation=F.gelu).eval()
    rows = torch.randn(7, 24)
    blocked = torch.zeros(7, 7, dtype=torch.bool)
    blocked[0, 1:] = True  # the query row attends only to itself
    with torch.no_grad():
        expected = layer(rows.unsqueeze(0), src_mask=blocked)[0]
        got = list_attention_layer(layer, rows)
    torch.testing.assert_close(got, expected, atol=1e-5, rtol=0)


@pytest.mark.parametrize("feed_forward", ["relu", "gated-gelu"])  # T5 v1.0 / v1.1 and mT5
def test_folded_first_decoder_step_equals_the_library_decoder(feed_forward):
    from transformers import T5Config, T5ForConditionalGeneration

    from rerank_plugins.scoring.monot5 import first_decoder_step

    torch.manual_seed(0)
    config = T5Config(vocab_size=50, d_model=32, d_kv=8, d_ff=48, num_layers=2, num_decoder_layers=3, num_heads=4,
                      feed_forward_proj=feed_forward, decoder_start_token_id=0)  # fmt: skip
    model = T5ForConditionalGeneration(config).eval()
    with torch.no_grad():
        for parameter in model.parameters():
            parameter.normal_(0.0, 0.3)
        mask = torch.ones(3, 9, dtype=torch.long)
        mask[1, 5:] = 0
        mask[2, 2:] = 0
        encoded = torch.randn(3, 9, 32)
        expected = model.get_decoder()(
            input_ids=torch.zeros(3, 1, dtype=torch.long), encoder_hidden_states=encoded,
            encoder_attention_mask=mask, use_cache=False,
        ).last_hidden_state[:, 0]  # fmt: skip
        got = first_decoder_step(model.get_decoder(), encoded, mask, start_id=0)
    torch.testing.assert_close(got, expected, atol=1e-5, rtol=1e-5)
