"""``RerankCompressor`` in a real LangChain ``ContextualCompressionRetriever``, for every family's tiny model.

The retriever's results must be ``CrossEncoder.rank`` on the same candidate list: same order, same scores.
"""

from __future__ import annotations

import asyncio
import copy
import threading
from collections.abc import Callable
from typing import Any

import pytest
import sentence_transformers
import torch
from langchain_classic.retrievers import ContextualCompressionRetriever
from langchain_core.documents import Document
from langchain_core.embeddings import DeterministicFakeEmbedding
from langchain_core.vectorstores import InMemoryVectorStore
from support import (
    BAD_IDS,
    BAD_OPTIONS,
    CASE_IDS,
    CASES,
    CORPUS,
    QUERIES,
    Client,
    assert_same_ranking,
    expected_ranking,
    with_numpy_scores,
)

from rerank_plugins import CrossEncoder
from rerank_plugins.langchain import RerankCompressor


def corpus_documents() -> list[Document]:
    return [Document(page_content=text, metadata={"source": i, "tags": ["tiny"]}) for i, text in enumerate(CORPUS)]


def scored(documents: list[Document]) -> list[tuple[str, float]]:
    return [(document.page_content, document.metadata["relevance_score"]) for document in documents]


@pytest.fixture(scope="module")
def base_retriever() -> Any:
    store = InMemoryVectorStore(DeterministicFakeEmbedding(size=16))
    store.add_documents(corpus_documents())
    return store.as_retriever(search_kwargs={"k": len(CORPUS)})


@pytest.mark.parametrize(("kind", "iterative"), CASES, ids=CASE_IDS)
def test_retriever_ranks_as_cross_encoder(
    kind: str, iterative: bool, load_tiny: Callable[..., CrossEncoder], base_retriever: Any
) -> None:
    model = load_tiny(kind)
    retriever = ContextualCompressionRetriever(
        base_compressor=RerankCompressor(model=model, top_n=5, iterative=iterative), base_retriever=base_retriever
    )
    expected = {}
    for query in QUERIES:
        candidates = base_retriever.invoke(query)
        assert len(candidates) == len(CORPUS)
        expected[query] = expected_ranking(model, query, [d.page_content for d in candidates], iterative)[:5]
        if iterative:  # the option reached rank: two rounds, so the survivors' scores are shifted by one
            assert expected[query] != expected_ranking(model, query, [d.page_content for d in candidates])[:5]

    for query in QUERIES:
        documents = retriever.invoke(query)
        assert_same_ranking(scored(documents), expected[query])
        assert all(CORPUS[d.metadata["source"]] == d.page_content and d.metadata["tags"] == ["tiny"] for d in documents)
    for query, documents in zip(QUERIES, asyncio.run(_ainvoke_all(retriever)), strict=True):
        assert_same_ranking(scored(documents), expected[query])
    for query, documents in zip(QUERIES, retriever.batch(QUERIES), strict=True):
        assert_same_ranking(scored(documents), expected[query])


async def _ainvoke_all(retriever: ContextualCompressionRetriever) -> list[list[Document]]:
    return [await retriever.ainvoke(query) for query in QUERIES]


def test_listwise_model_scores_the_whole_list(load_tiny: Callable[..., CrossEncoder]) -> None:
    model = load_tiny("listconranker")
    query, documents = QUERIES[0], corpus_documents()
    got = RerankCompressor(model=model).compress_documents(documents, query)
    assert_same_ranking(scored(list(got)), expected_ranking(model, query, CORPUS))
    # One document at a time would score differently, so the parity above does check whole-list scoring.
    alone = model.rank(query, [got[0].page_content])[0]["score"]
    assert alone != pytest.approx(got[0].metadata["relevance_score"], abs=1e-6)


def test_documents_are_copied_never_mutated(load_tiny: Callable[..., CrossEncoder]) -> None:
    documents = corpus_documents()
    documents[3].metadata["relevance_score"] = "from an earlier stage"
    before = copy.deepcopy(documents)
    got = RerankCompressor(model=load_tiny("monot5"), top_n=4).compress_documents(documents, QUERIES[1])
    assert documents == before
    assert len(got) == 4
    for document in got:
        original = documents[document.metadata["source"]]
        assert document is not original and document.metadata is not original.metadata
        assert set(document.metadata) == set(original.metadata) | {"relevance_score"}
        assert type(document.metadata["relevance_score"]) is float
        document.metadata["added downstream"] = True
        assert document.metadata["tags"] is original.metadata["tags"]  # values are shared, never deep-copied
    assert documents == before


def test_metadata_that_cannot_be_deep_copied(load_tiny: Callable[..., CrossEncoder]) -> None:
    lock, client = threading.Lock(), Client()
    documents = [
        Document(page_content=text, metadata={"lock": lock, "client": client, "i": i}) for i, text in enumerate(CORPUS)
    ]
    with pytest.raises(TypeError, match="pickle"):
        copy.deepcopy(documents[0])  # what the copies must not need
    compressor = RerankCompressor(model=load_tiny("monot5"), top_n=3)
    sync = compressor.compress_documents(documents, QUERIES[0])
    for got in (sync, asyncio.run(compressor.acompress_documents(documents, QUERIES[0]))):
        assert len(got) == 3
        for document in got:
            assert document.metadata["lock"] is lock and document.metadata["client"] is client
            assert type(document.metadata["relevance_score"]) is float
    assert all(set(document.metadata) == {"lock", "client", "i"} for document in documents)
    assert [d.page_content for d in sync] == [CORPUS[d.metadata["i"]] for d in sync]


def test_scores_are_python_floats(load_tiny: Callable[..., CrossEncoder], monkeypatch: pytest.MonkeyPatch) -> None:
    model = load_tiny("sequence-classification")
    with_numpy_scores(model, monkeypatch)
    got = RerankCompressor(model=model).compress_documents(corpus_documents(), QUERIES[0])
    assert len(got) == len(CORPUS)
    assert all(type(document.metadata["relevance_score"]) is float for document in got)


def test_threshold_then_top_n(load_tiny: Callable[..., CrossEncoder]) -> None:
    model = load_tiny("query-likelihood")
    query, documents = QUERIES[2], corpus_documents()
    full = expected_ranking(model, query, CORPUS)
    threshold = full[5][1]

    def run(**options: Any) -> list[tuple[str, float]]:
        return scored(list(RerankCompressor(model=model, **options).compress_documents(documents, query)))

    assert_same_ranking(run(score_threshold=threshold), [p for p in full if p[1] >= threshold])
    assert_same_ranking(run(score_threshold=threshold, top_n=10), full[:6])
    assert_same_ranking(run(score_threshold=threshold, top_n=2), full[:2])
    assert_same_ranking(run(score_threshold=float("-inf")), full)  # infinite thresholds are valid
    assert run(score_threshold=full[0][1] + 1.0, top_n=2) == []


def test_empty_input_and_empty_text(load_tiny: Callable[..., CrossEncoder]) -> None:
    model = load_tiny("monot5")
    compressor = RerankCompressor(model=model)
    assert list(compressor.compress_documents([], "q")) == []
    assert list(asyncio.run(compressor.acompress_documents([], "q"))) == []
    got = compressor.compress_documents(corpus_documents(), QUERIES[0])
    empty = [d for d in got if d.page_content == ""]
    assert len(empty) == 1
    assert empty[0].metadata["relevance_score"] == pytest.approx(dict(expected_ranking(model, QUERIES[0], CORPUS))[""])


@pytest.mark.parametrize("kind", ["monot5", "listconranker"])
def test_concurrent_calls_equal_sequential_calls(kind: str, load_tiny: Callable[..., CrossEncoder]) -> None:
    compressor = RerankCompressor(model=load_tiny(kind), top_n=6)
    documents = corpus_documents()
    calls = [query for query in QUERIES for _ in range(2)]
    sequential = [scored(list(compressor.compress_documents(documents, query))) for query in calls]

    async def concurrently() -> list[Any]:
        return await asyncio.gather(*(compressor.acompress_documents(documents, query) for query in calls))

    concurrent = [scored(list(documents)) for documents in asyncio.run(concurrently())]
    for got, expected in zip(concurrent, sequential, strict=True):
        assert_same_ranking(got, expected)


def test_async_scoring_leaves_the_event_loop_free(
    load_tiny: Callable[..., CrossEncoder], monkeypatch: pytest.MonkeyPatch
) -> None:
    model = load_tiny("monot5")
    loop_ran = threading.Event()
    original = model.rank

    def rank(*args: Any, **kwargs: Any) -> Any:  # finishes only once the event loop has run another task
        assert loop_ran.wait(timeout=10), "the event loop was blocked while scoring"
        return original(*args, **kwargs)

    monkeypatch.setattr(model, "rank", rank)

    async def main() -> list[Document]:
        task = asyncio.ensure_future(RerankCompressor(model=model).acompress_documents(corpus_documents(), "q"))
        await asyncio.sleep(0.05)
        loop_ran.set()
        return list(await task)

    assert len(asyncio.run(main())) == len(CORPUS)


def test_bad_documents_are_named(load_tiny: Callable[..., CrossEncoder]) -> None:
    compressor = RerankCompressor(model=load_tiny("monot5"))
    with pytest.raises(TypeError, match="Document 1"):
        compressor.compress_documents([Document(page_content="a"), "b"], "q")  # type: ignore[list-item]
    broken = Document.model_construct(page_content=None, metadata={})
    with pytest.raises(TypeError, match="Document 2"):
        asyncio.run(
            compressor.acompress_documents([Document(page_content="a"), Document(page_content=""), broken], "q")
        )


def test_plain_sentence_transformers_cross_encoder(tiny_paths: dict[str, str]) -> None:
    plain = sentence_transformers.CrossEncoder(tiny_paths["sequence-classification"], device="cpu")
    query, documents = QUERIES[0], corpus_documents()
    got = RerankCompressor(model=plain, top_n=3).compress_documents(documents, query)
    assert_same_ranking(scored(list(got)), expected_ranking(plain, query, CORPUS)[:3])
    with pytest.raises(ValueError, match="listwise"):
        RerankCompressor(model=plain, iterative=True)


def test_model_loaded_from_a_path(tiny_paths: dict[str, str], load_tiny: Callable[..., CrossEncoder]) -> None:
    compressor = RerankCompressor(model=tiny_paths["monot5"], device="cpu", max_length=256, top_n=2)
    assert isinstance(compressor.model, CrossEncoder) and compressor.model.max_length == 256
    assert compressor.top_n == 2 and "model" not in compressor.model_dump()
    got = compressor.compress_documents(corpus_documents(), QUERIES[0])
    assert_same_ranking(scored(list(got)), expected_ranking(load_tiny("monot5"), QUERIES[0], CORPUS)[:2])
    with pytest.raises(ValueError, match="listwise"):
        RerankCompressor(model=load_tiny("monot5"), iterative=True)


def test_rank_kwargs_are_forwarded(load_tiny: Callable[..., CrossEncoder]) -> None:
    model = load_tiny("monot5")
    identity = torch.nn.Identity()
    got = RerankCompressor(model=model, rank_kwargs={"activation_fn": identity}).compress_documents(
        corpus_documents(), QUERIES[0]
    )
    logits = [(CORPUS[r["corpus_id"]], r["score"]) for r in model.rank(QUERIES[0], CORPUS, activation_fn=identity)]
    assert_same_ranking(scored(list(got)), logits)
    assert logits != expected_ranking(model, QUERIES[0], CORPUS)
    with pytest.raises(ValueError, match="top_k"):
        RerankCompressor(model=model, rank_kwargs={"top_k": 3})


@pytest.mark.parametrize(("name", "value", "error"), BAD_OPTIONS, ids=BAD_IDS)
def test_mistaken_options_are_named(
    name: str, value: Any, error: type[Exception], load_tiny: Callable[..., CrossEncoder]
) -> None:
    with pytest.raises(error, match=name):  # e.g. top_n=True would keep one, a NaN threshold none
        RerankCompressor(model=load_tiny("monot5"), **{name: value})
