"""The LLM rerankers through the LangChain compressor: the ranking of ``CrossEncoder.rank``."""

from __future__ import annotations

import numpy as np
import pytest
from langchain_core.documents import Document
from support import DOCUMENTS, QUERIES

from rerank_plugins.langchain import RerankCompressor

KINDS = ("qwen3-reranker", "mxbai-rerank-v2", "bge-llm-reranker")


@pytest.mark.parametrize("kind", KINDS)
def test_langchain_compressor_ranks_as_the_model(load_tiny, kind):
    model = load_tiny(kind)
    documents = [Document(page_content=text, metadata={"i": i}) for i, text in enumerate(DOCUMENTS)]
    compressed = RerankCompressor(model=model, top_n=4).compress_documents(documents, QUERIES[2])
    expected = model.rank(QUERIES[2], DOCUMENTS, top_k=4)
    assert [d.metadata["i"] for d in compressed] == [hit["corpus_id"] for hit in expected]
    scores = [d.metadata["relevance_score"] for d in compressed]
    np.testing.assert_allclose(scores, [hit["score"] for hit in expected], atol=1e-6, rtol=0)
