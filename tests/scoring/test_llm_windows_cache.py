"""The LLM rerankers with windows and the score cache: each window scored as the authors score it."""

from __future__ import annotations

import numpy as np
import pytest
import reference
import torch
from support import DOCUMENTS, QUERIES

from rerank_plugins import CrossEncoder
from rerank_plugins.windows import Window, split_document

KINDS = ("qwen3-reranker", "mxbai-rerank-v2", "bge-llm-reranker")
FILLER = " ".join(["The committee met again to discuss the agenda for next year in great detail."] * 6)


@pytest.mark.parametrize("kind", KINDS)
def test_windows_score_each_window_as_the_authors_and_keep_the_best(tiny_paths, load_tiny, kind):
    model = load_tiny(kind)
    document = f"{FILLER} {DOCUMENTS[0]}"
    window = Window(size=24, stride=12, aggregate="max")
    pieces = split_document(model.tokenizer, document, window)
    assert len(pieces) > 2
    per_window = reference.llm_raw_scores(kind, tiny_paths[kind], [(QUERIES[0], piece) for piece in pieces])
    identity = torch.nn.Identity()
    got = model.predict([(QUERIES[0], document), (QUERIES[0], DOCUMENTS[1])], window=window, activation_fn=identity)
    assert got[0] == pytest.approx(max(per_window), abs=1e-5)
    assert got[1] == pytest.approx(
        reference.llm_raw_scores(kind, tiny_paths[kind], [(QUERIES[0], DOCUMENTS[1])])[0], abs=1e-5
    )


@pytest.mark.parametrize("kind", KINDS)
def test_the_score_cache_serves_the_second_call_and_keys_the_prompt(tiny_paths, kind):
    model = CrossEncoder(tiny_paths[kind], family=kind, device="cpu", score_cache=1000)
    calls: list[int] = []
    model[0].register_forward_hook(lambda *args: calls.append(1))
    pairs = [(q, d) for q in QUERIES[:2] for d in DOCUMENTS]
    first = model.predict(pairs)
    assert calls and model.score_cache.misses == len(pairs)
    calls.clear()
    np.testing.assert_array_equal(model.predict(pairs), first)
    assert not calls and model.score_cache.hits == len(pairs)
    instructed = model.predict(pairs, prompt="Find the passage that answers the question")
    assert calls  # another instruction: scored, not served from the cache
    fresh = CrossEncoder(tiny_paths[kind], family=kind, device="cpu")
    np.testing.assert_allclose(instructed, fresh.predict(pairs, prompt="Find the passage that answers the question"))
    assert not np.allclose(instructed, first, atol=1e-5)
