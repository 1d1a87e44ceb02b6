"""Real clients against a real server on a loopback port: the Cohere SDK (v2 and v1), LangChain's and
LlamaIndex's CohereRerank, LlamaIndex's TEI postprocessor and curl get ``CrossEncoder.rank``'s order and scores."""

from __future__ import annotations

import json
import shutil
import subprocess
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from support import DOCUMENTS, KIND_FAMILY, QUERIES

from rerank_plugins.serve import ServeSettings, create_app
from rerank_plugins.serve.testing import serve_in_thread

cohere = pytest.importorskip(
    "cohere", reason='the HTTP clients are not installed: pip install "rerank-plugins[test-clients]"'
)

KINDS = list(KIND_FAMILY)
QUERY = QUERIES[1]
KEY = "test-key"


@pytest.fixture(scope="module")
def url(load_tiny: Callable) -> Iterator[str]:
    """A server with a tiny model of every kind, under the kind's name, behind an API key."""
    app = create_app({kind: load_tiny(kind) for kind in KINDS}, ServeSettings(api_key=KEY))
    with serve_in_thread(app) as base_url:
        yield base_url


def ranked(load_tiny: Callable, kind: str, documents: list[str], top_n: int | None = None) -> list[tuple[str, float]]:
    """(text, score) best first, as ``CrossEncoder.rank`` gives them."""
    return [(documents[r["corpus_id"]], r["score"]) for r in load_tiny(kind).rank(QUERY, documents, top_k=top_n)]


def assert_same(got: list[tuple[str, float]], expected: list[tuple[str, float]]) -> None:
    assert [text for text, _ in got] == [text for text, _ in expected]
    assert [score for _, score in got] == pytest.approx([score for _, score in expected], abs=1e-6)


@pytest.mark.parametrize("kind", KINDS)
def test_cohere_sdk_v2_and_v1(url: str, load_tiny: Callable, kind: str) -> None:
    v2 = cohere.ClientV2(api_key=KEY, base_url=url).rerank(model=kind, query=QUERY, documents=DOCUMENTS, top_n=4)
    assert_same([(DOCUMENTS[r.index], r.relevance_score) for r in v2.results], ranked(load_tiny, kind, DOCUMENTS, 4))
    v1 = cohere.Client(api_key=KEY, base_url=url).rerank(
        model=kind, query=QUERY, documents=DOCUMENTS, return_documents=True
    )
    assert_same([(r.document.text, r.relevance_score) for r in v1.results], ranked(load_tiny, kind, DOCUMENTS))
    assert v1.meta.api_version.version == "1" and v1.meta.billed_units.search_units == 1


def test_cohere_sdk_reports_a_wrong_key(url: str) -> None:
    with pytest.raises(cohere.core.api_error.ApiError) as error:
        cohere.ClientV2(api_key="wrong", base_url=url).rerank(model=KINDS[0], query="q", documents=["a"])
    assert error.value.status_code == 401


@pytest.mark.parametrize("kind", KINDS)
def test_langchain_cohere_rerank_in_a_compression_retriever(url: str, load_tiny: Callable, kind: str) -> None:
    pytest.importorskip("langchain_cohere")
    from langchain_classic.retrievers import ContextualCompressionRetriever
    from langchain_cohere import CohereRerank
    from langchain_core.documents import Document
    from langchain_core.embeddings import DeterministicFakeEmbedding
    from langchain_core.vectorstores import InMemoryVectorStore

    store = InMemoryVectorStore(DeterministicFakeEmbedding(size=16))
    store.add_documents([Document(page_content=d, metadata={"i": i}) for i, d in enumerate(DOCUMENTS) if d])
    base = store.as_retriever(search_kwargs={"k": len(DOCUMENTS)})
    retrieved = [d.page_content for d in base.invoke(QUERY)]
    compressor = CohereRerank(model=kind, base_url=url, cohere_api_key=KEY, top_n=3)
    found = ContextualCompressionRetriever(base_compressor=compressor, base_retriever=base).invoke(QUERY)
    assert_same([(d.page_content, d.metadata["relevance_score"]) for d in found], ranked(load_tiny, kind, retrieved, 3))
    assert all(DOCUMENTS[d.metadata["i"]] == d.page_content for d in found)


@pytest.mark.parametrize("kind", KINDS)
def test_llama_index_cohere_and_tei_postprocessors(url: str, load_tiny: Callable, kind: str) -> None:
    pytest.importorskip("llama_index.postprocessor.cohere_rerank")
    from llama_index.core.schema import NodeWithScore, TextNode
    from llama_index.postprocessor.cohere_rerank import CohereRerank
    from llama_index.postprocessor.tei_rerank import TextEmbeddingInference

    def nodes() -> list[NodeWithScore]:
        return [NodeWithScore(node=TextNode(text=d), score=0.5) for d in DOCUMENTS]

    cohere_rerank = CohereRerank(api_key=KEY, model=kind, base_url=url, top_n=3)
    got = cohere_rerank.postprocess_nodes(nodes(), query_str=QUERY)
    assert_same([(n.node.get_content(), n.score) for n in got], ranked(load_tiny, kind, DOCUMENTS, 3))
    tei = TextEmbeddingInference(base_url=f"{url}/models/{kind}", top_n=len(DOCUMENTS), auth_token=f"Bearer {KEY}")
    got = tei.postprocess_nodes(nodes(), query_str=QUERY)
    assert_same([(n.node.get_content(), n.score) for n in got], ranked(load_tiny, kind, DOCUMENTS))


@pytest.mark.skipif(shutil.which("curl") is None, reason="needs curl")
@pytest.mark.parametrize("kind", KINDS)
def test_curl(url: str, load_tiny: Callable, kind: str) -> None:
    def post(path: str, body: dict[str, Any]) -> Any:
        command = [
            "curl",
            "-sS",
            "--max-time",
            "30",
            "-X",
            "POST",
            f"{url}{path}",
            "-H",
            f"Authorization: Bearer {KEY}",
            "-H",
            "Content-Type: application/json",
            "-d",
            json.dumps(body),
        ]
        return json.loads(subprocess.run(command, capture_output=True, check=True, text=True, timeout=60).stdout)

    v1 = post("/v1/rerank", {"model": kind, "query": QUERY, "documents": DOCUMENTS, "return_documents": True})
    assert_same(
        [(r["document"]["text"], r["relevance_score"]) for r in v1["results"]], ranked(load_tiny, kind, DOCUMENTS)
    )
    tei = post(f"/models/{kind}/rerank", {"query": QUERY, "texts": DOCUMENTS, "return_text": True})
    assert_same([(r["text"], r["score"]) for r in tei], ranked(load_tiny, kind, DOCUMENTS))
