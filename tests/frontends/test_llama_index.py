"""``RerankPostprocessor`` in a real LlamaIndex query engine, for every family's tiny model.

``response.source_nodes`` must be ``CrossEncoder.rank`` on the same candidate texts: same order, same scores.
"""

from __future__ import annotations

import asyncio
import copy
import threading
from collections.abc import Callable, Iterator
from typing import Any

import pytest
import sentence_transformers
from llama_index.core import Settings, VectorStoreIndex
from llama_index.core.embeddings import MockEmbedding
from llama_index.core.instrumentation import get_dispatcher
from llama_index.core.instrumentation.event_handlers import BaseEventHandler
from llama_index.core.instrumentation.events import BaseEvent
from llama_index.core.instrumentation.events.rerank import ReRankEndEvent, ReRankStartEvent
from llama_index.core.llms import MockLLM
from llama_index.core.schema import MetadataMode, NodeWithScore, QueryBundle, TextNode
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
from rerank_plugins.llama_index import RerankPostprocessor


def corpus_nodes() -> list[NodeWithScore]:
    """The corpus as retrieved nodes, with metadata (which the EMBED text includes) and retrieval scores."""
    return [
        NodeWithScore(node=TextNode(id_=f"doc-{i}", text=text, metadata={"source": i}), score=1.0 - i / 100)
        for i, text in enumerate(CORPUS)
    ]


def embed_texts(nodes: list[NodeWithScore]) -> list[str]:
    return [item.node.get_content(metadata_mode=MetadataMode.EMBED) for item in nodes]


def scored(nodes: list[NodeWithScore], mode: MetadataMode = MetadataMode.EMBED) -> list[tuple[str, float]]:
    return [(item.node.get_content(metadata_mode=mode), item.score) for item in nodes]  # type: ignore[misc]


@pytest.fixture
def mock_settings() -> Iterator[None]:
    """Offline LLM and embeddings for the query engine; the global Settings are restored afterwards."""
    saved = (Settings._llm, Settings._embed_model)
    Settings.llm = MockLLM()
    Settings.embed_model = MockEmbedding(embed_dim=8)
    try:
        yield
    finally:
        Settings._llm, Settings._embed_model = saved


class Recorder(BaseEventHandler):
    """Keeps the rerank events it sees."""

    events: list[BaseEvent] = []

    @classmethod
    def class_name(cls) -> str:
        return "Recorder"

    def handle(self, event: BaseEvent, **kwargs: Any) -> None:
        if isinstance(event, (ReRankStartEvent, ReRankEndEvent)):
            self.events.append(event)


@pytest.fixture
def recorder() -> Iterator[Recorder]:
    root = get_dispatcher()
    handler = Recorder(events=[])
    root.add_event_handler(handler)
    try:
        yield handler
    finally:
        root.event_handlers.remove(handler)


@pytest.mark.parametrize(("kind", "iterative"), CASES, ids=CASE_IDS)
def test_query_engine_ranks_as_cross_encoder(
    kind: str, iterative: bool, load_tiny: Callable[..., CrossEncoder], mock_settings: None, recorder: Recorder
) -> None:
    model = load_tiny(kind)
    index = VectorStoreIndex([item.node for item in corpus_nodes()])
    reranker = RerankPostprocessor(model=model, top_n=5, iterative=iterative)
    engine = index.as_query_engine(similarity_top_k=len(CORPUS), node_postprocessors=[reranker])
    expected = {}
    for query in QUERIES:
        candidates = index.as_retriever(similarity_top_k=len(CORPUS)).retrieve(query)
        assert len(candidates) == len(CORPUS)
        expected[query] = expected_ranking(model, query, embed_texts(candidates), iterative)[:5]

    for query in QUERIES:
        assert_same_ranking(scored(engine.query(query).source_nodes), expected[query])
        assert_same_ranking(scored(asyncio.run(engine.aquery(query)).source_nodes), expected[query])

    starts = [e for e in recorder.events if isinstance(e, ReRankStartEvent)]
    ends = [e for e in recorder.events if isinstance(e, ReRankEndEvent)]
    assert len(starts) == len(ends) == 2 * len(QUERIES)
    assert [e.query.query_str for e in starts] == [q for q in QUERIES for _ in range(2)]  # type: ignore[union-attr]
    assert all(len(e.nodes) == len(CORPUS) and e.top_n == 5 and e.model_name == reranker.model for e in starts)
    for end, query in zip(ends, [q for q in QUERIES for _ in range(2)], strict=True):
        assert_same_ranking(scored(end.nodes), expected[query])


def test_listwise_model_scores_the_whole_list(load_tiny: Callable[..., CrossEncoder]) -> None:
    model = load_tiny("listconranker")
    nodes, query = corpus_nodes(), QUERIES[0]
    got = RerankPostprocessor(model=model).postprocess_nodes(nodes, query_str=query)
    assert_same_ranking(scored(got), expected_ranking(model, query, embed_texts(nodes)))
    alone = model.rank(query, embed_texts(got[:1]))[0]["score"]
    assert alone != pytest.approx(got[0].score, abs=1e-6)


def test_nodes_are_copied_never_mutated(load_tiny: Callable[..., CrossEncoder]) -> None:
    nodes = corpus_nodes()
    before = [item.model_dump() for item in nodes]
    reranker = RerankPostprocessor(model=load_tiny("monot5"), top_n=4, keep_retrieval_score=True)
    got = reranker.postprocess_nodes(nodes, query_str=QUERIES[1])
    assert [item.model_dump() for item in nodes] == before
    assert len(got) == 4
    for item in got:
        original = nodes[item.node.metadata["source"]]
        assert item is not original and item.node is not original.node
        assert item.node.metadata == {"source": original.node.metadata["source"], "retrieval_score": original.score}
        assert type(item.score) is float
        # The kept retrieval score is bookkeeping: neither the LLM nor an embedder sees it.
        assert item.node.get_content(MetadataMode.LLM) == original.node.get_content(MetadataMode.LLM)
    scores = [item.score for item in got]
    assert_same_ranking(scored(got), expected_ranking(reranker.cross_encoder, QUERIES[1], embed_texts(nodes))[:4])
    assert scores == sorted(scores, reverse=True)
    without = RerankPostprocessor(model=load_tiny("monot5")).postprocess_nodes(nodes, query_str=QUERIES[1])
    assert all("retrieval_score" not in item.node.metadata for item in without)
    assert [item.model_dump() for item in nodes] == before


def test_metadata_that_cannot_be_deep_copied(load_tiny: Callable[..., CrossEncoder]) -> None:
    lock, client = threading.Lock(), Client()
    nodes = [
        NodeWithScore(node=TextNode(text=text, metadata={"lock": lock, "client": client, "i": i}), score=0.5)
        for i, text in enumerate(CORPUS)
    ]
    with pytest.raises(TypeError, match="pickle"):
        copy.deepcopy(nodes[0])  # what the copies must not need
    reranker = RerankPostprocessor(model=load_tiny("monot5"), top_n=3, keep_retrieval_score=True)
    sync = reranker.postprocess_nodes(nodes, query_str=QUERIES[0])
    for got in (sync, asyncio.run(reranker.apostprocess_nodes(nodes, query_str=QUERIES[0]))):
        assert len(got) == 3
        for item in got:
            assert item.node.metadata["lock"] is lock and item.node.metadata["client"] is client
            assert item.node.metadata["retrieval_score"] == 0.5 and type(item.score) is float
            assert "retrieval_score" in item.node.excluded_llm_metadata_keys
    for item in nodes:  # the originals: no new key, no new excluded key
        assert set(item.node.metadata) == {"lock", "client", "i"}
        assert item.node.excluded_llm_metadata_keys == item.node.excluded_embed_metadata_keys == []
    assert [item.node.node_id for item in sync] == [nodes[item.node.metadata["i"]].node.node_id for item in sync]


def test_scores_are_python_floats(load_tiny: Callable[..., CrossEncoder], monkeypatch: pytest.MonkeyPatch) -> None:
    model = load_tiny("sequence-classification")
    with_numpy_scores(model, monkeypatch)
    got = RerankPostprocessor(model=model).postprocess_nodes(corpus_nodes(), query_str=QUERIES[0])
    assert len(got) == len(CORPUS) and all(type(item.score) is float for item in got)


def test_threshold_then_top_n(load_tiny: Callable[..., CrossEncoder]) -> None:
    model = load_tiny("query-likelihood")
    nodes, query = corpus_nodes(), QUERIES[2]
    full = expected_ranking(model, query, embed_texts(nodes))
    threshold = full[5][1]

    def run(**options: Any) -> list[tuple[str, float]]:
        return scored(RerankPostprocessor(model=model, **options).postprocess_nodes(nodes, query_str=query))

    assert_same_ranking(run(score_threshold=threshold), [p for p in full if p[1] >= threshold])
    assert_same_ranking(run(score_threshold=threshold, top_n=10), full[:6])
    assert_same_ranking(run(score_threshold=threshold, top_n=2), full[:2])
    assert_same_ranking(run(score_threshold=float("-inf")), full)  # infinite thresholds are valid
    assert run(score_threshold=full[0][1] + 1.0) == []


def test_empty_input_empty_text_and_metadata_mode(load_tiny: Callable[..., CrossEncoder], recorder: Recorder) -> None:
    model = load_tiny("monot5")
    reranker = RerankPostprocessor(model=model)
    assert reranker.postprocess_nodes([], query_str="q") == []
    assert asyncio.run(reranker.apostprocess_nodes([], query_str="q")) == []
    assert recorder.events == []
    bare = RerankPostprocessor(model=model, metadata_mode=MetadataMode.NONE)
    got = bare.postprocess_nodes(corpus_nodes(), query_str=QUERIES[0])
    assert_same_ranking(scored(got, MetadataMode.NONE), expected_ranking(model, QUERIES[0], CORPUS))
    assert "" in [item.node.get_content(MetadataMode.NONE) for item in got]


def test_events_and_missing_query(load_tiny: Callable[..., CrossEncoder], recorder: Recorder) -> None:
    reranker = RerankPostprocessor(model=load_tiny("monot5"))
    nodes = corpus_nodes()[:3]
    got = asyncio.run(reranker.apostprocess_nodes(nodes, QueryBundle("q")))
    start, end = recorder.events
    assert isinstance(start, ReRankStartEvent) and isinstance(end, ReRankEndEvent)
    assert start.nodes == nodes and start.top_n == 3 and start.query.query_str == "q"  # type: ignore[union-attr]
    assert end.nodes == got
    with pytest.raises(ValueError, match="query"):
        reranker.postprocess_nodes(nodes)


@pytest.mark.parametrize("kind", ["monot5", "listconranker"])
def test_concurrent_calls_equal_sequential_calls(kind: str, load_tiny: Callable[..., CrossEncoder]) -> None:
    reranker = RerankPostprocessor(model=load_tiny(kind), top_n=6)
    nodes = corpus_nodes()
    calls = [query for query in QUERIES for _ in range(2)]
    sequential = [scored(reranker.postprocess_nodes(nodes, query_str=query)) for query in calls]

    async def concurrently() -> list[list[NodeWithScore]]:
        return await asyncio.gather(*(reranker.apostprocess_nodes(nodes, query_str=query) for query in calls))

    for got, expected in zip(asyncio.run(concurrently()), sequential, strict=True):
        assert_same_ranking(scored(got), expected)


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

    async def main() -> list[NodeWithScore]:
        task = asyncio.ensure_future(RerankPostprocessor(model=model).apostprocess_nodes(corpus_nodes(), query_str="q"))
        await asyncio.sleep(0.05)
        loop_ran.set()
        return await task

    assert len(asyncio.run(main())) == len(CORPUS)


def test_bad_nodes_are_named(load_tiny: Callable[..., CrossEncoder]) -> None:
    reranker = RerankPostprocessor(model=load_tiny("monot5"))
    good = corpus_nodes()[:2]
    with pytest.raises(TypeError, match="Node 2"):
        reranker.postprocess_nodes([*good, "text"], query_str="q")  # type: ignore[list-item]
    broken = NodeWithScore(node=TextNode.model_construct(text=None, metadata={}), score=0.5)
    with pytest.raises(TypeError, match="Node 1"):
        asyncio.run(reranker.apostprocess_nodes([good[0], broken], query_str="q"))


def test_plain_sentence_transformers_cross_encoder(tiny_paths: dict[str, str]) -> None:
    plain = sentence_transformers.CrossEncoder(tiny_paths["sequence-classification"], device="cpu")
    nodes, query = corpus_nodes(), QUERIES[0]
    got = RerankPostprocessor(model=plain, top_n=3).postprocess_nodes(nodes, query_str=query)
    assert_same_ranking(scored(got), expected_ranking(plain, query, embed_texts(nodes))[:3])
    with pytest.raises(ValueError, match="listwise"):
        RerankPostprocessor(model=plain, iterative=True)


def test_model_loaded_from_a_path(tiny_paths: dict[str, str], load_tiny: Callable[..., CrossEncoder]) -> None:
    reranker = RerankPostprocessor(model=tiny_paths["monot5"], device="cpu", top_n=2)
    assert isinstance(reranker.cross_encoder, CrossEncoder)
    assert reranker.model == tiny_paths["monot5"] and reranker.class_name() == "RerankPostprocessor"
    assert reranker.to_dict()["top_n"] == 2
    got = reranker.postprocess_nodes(corpus_nodes(), query_str=QUERIES[0])
    expected = expected_ranking(load_tiny("monot5"), QUERIES[0], embed_texts(corpus_nodes()))[:2]
    assert_same_ranking(scored(got), expected)
    with pytest.raises(ValueError, match="listwise"):
        RerankPostprocessor(model=load_tiny("monot5"), iterative=True)


@pytest.mark.parametrize(("name", "value", "error"), BAD_OPTIONS, ids=BAD_IDS)
def test_mistaken_options_are_named(
    name: str, value: Any, error: type[Exception], load_tiny: Callable[..., CrossEncoder]
) -> None:
    with pytest.raises(error, match=name):  # e.g. top_n=True would keep one, a NaN threshold none
        RerankPostprocessor(model=load_tiny("monot5"), **{name: value})
