"""Requests stay whole through every frontend: two requests with the same query text and different documents,
sent together, are never merged or split, for a listwise model included; each equals ``rank`` on its own list.

(The server's and Ray's versions of this live with their units: tests/serve/ and tests/trec/test_ray.py.)
"""

from __future__ import annotations

import asyncio
import json
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from support import DOCUMENTS

from rerank_plugins import CrossEncoder
from rerank_plugins.cli import main

QUERY = "what is the capital of france"
FIRST = [d for d in DOCUMENTS if d][:4]
SECOND = [*[d for d in DOCUMENTS if d][3:], "Paris hosted the Olympic Games in 1924 and 2024."]


def alone(model: CrossEncoder, documents: list[str]) -> list[float]:
    """The scores of ``documents`` as their own request, by index."""
    scores = [0.0] * len(documents)
    for hit in model.rank(QUERY, documents):
        scores[hit["corpus_id"]] = hit["score"]
    return scores


@pytest.mark.parametrize("kind", ["listconranker", "monot5"])
def test_predict_pairs_of_one_query_are_one_list_but_rank_calls_are_separate(load_tiny: Any, kind: str) -> None:
    model = load_tiny(kind)
    first, second = alone(model, FIRST), alone(model, SECOND)
    if model.is_listwise:  # the documented meaning of predict: the pairs that share a query are one list
        merged = model.predict([(QUERY, d) for d in FIRST + SECOND])
        assert not np.allclose(merged[: len(FIRST)], first, atol=1e-4)
    with ThreadPoolExecutor(max_workers=4) as pool:
        results = list(pool.map(lambda docs: alone(model, docs), [FIRST, SECOND] * 3))
    for got, want in zip(results, [first, second] * 3, strict=True):
        assert got == pytest.approx(want, abs=1e-6)


@pytest.mark.parametrize("kind", ["listconranker", "monot5"])
def test_the_adapters_send_each_call_as_its_own_request(load_tiny: Any, kind: str) -> None:
    from langchain_core.documents import Document
    from llama_index.core.schema import NodeWithScore, QueryBundle, TextNode

    from rerank_plugins.langchain import RerankCompressor
    from rerank_plugins.llama_index import RerankPostprocessor

    model = load_tiny(kind)
    expected = {tuple(FIRST): alone(model, FIRST), tuple(SECOND): alone(model, SECOND)}
    compressor, postprocessor = RerankCompressor(model=model), RerankPostprocessor(model=model)

    async def langchain_both() -> list[Any]:
        return list(
            await asyncio.gather(
                *(compressor.acompress_documents([Document(page_content=d) for d in docs], QUERY)
                  for docs in (FIRST, SECOND))
            )
        )  # fmt: skip

    async def llama_index_both() -> list[Any]:
        return list(
            await asyncio.gather(
                *(postprocessor.apostprocess_nodes(
                    [NodeWithScore(node=TextNode(text=d), score=0.0) for d in docs], QueryBundle(QUERY))
                  for docs in (FIRST, SECOND))
            )
        )  # fmt: skip

    for docs, result in zip((FIRST, SECOND), asyncio.run(langchain_both()), strict=True):
        got = {d.page_content: d.metadata["relevance_score"] for d in result}
        assert [got[d] for d in docs] == pytest.approx(expected[tuple(docs)], abs=1e-6)
    for docs, result in zip((FIRST, SECOND), asyncio.run(llama_index_both()), strict=True):
        got = {item.node.get_content(): item.score for item in result}
        assert [got[d] for d in docs] == pytest.approx(expected[tuple(docs)], abs=1e-6)


def test_rerank_run_keeps_two_qids_with_the_same_text_apart(tmp_path: Path, tiny_paths: dict[str, str]) -> None:
    model = CrossEncoder(tiny_paths["listconranker"], device="cpu")
    hits = {
        "q1": [{"qid": "q1", "docid": f"a{i}", "rank": i + 1, "score": 10.0 - i, "content": d} for i, d in
               enumerate(FIRST)],
        "q2": [{"qid": "q2", "docid": f"b{i}", "rank": i + 1, "score": 10.0 - i, "content": d} for i, d in
               enumerate(SECOND)],
    }  # fmt: skip
    run = tmp_path / "run.json"
    run.write_text(json.dumps([{"query": QUERY, "hits": hits[qid]} for qid in ("q1", "q2")]))
    output = tmp_path / "out.trec"
    argv = ["rerank-run", "--model", tiny_paths["listconranker"], "--run", str(run), "--output", str(output)]
    assert main([*argv, "--quiet"]) == 0
    scores: dict[str, float] = {}
    for line in output.read_text().splitlines():
        _, _, docid, _, score, _ = line.split()
        scores[docid] = float(score)
    assert [scores[f"a{i}"] for i in range(len(FIRST))] == pytest.approx(alone(model, FIRST), abs=1e-5)
    assert [scores[f"b{i}"] for i in range(len(SECOND))] == pytest.approx(alone(model, SECOND), abs=1e-5)
