"""LangChain: ``RerankCompressor``, a document compressor for ``ContextualCompressionRetriever`` and LCEL chains.

Unlike LangChain's own ``CrossEncoderReranker`` it keeps the scores, as ``metadata["relevance_score"]`` (a
Python float) on copies of the documents: the caller's documents and their metadata mappings are never changed.
It needs only ``langchain-core`` (``pip install "rerank-plugins[langchain]"``).

    >>> from rerank_plugins.langchain import RerankCompressor
    >>> compressor = RerankCompressor(model="unicamp-dl/InRanker-small", top_n=3)  # doctest: +SKIP
    >>> compressor.compress_documents(documents, "what is the capital of france")  # doctest: +SKIP
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from typing import Any

from pydantic import ConfigDict, Field
from sentence_transformers import CrossEncoder as STCrossEncoder

from rerank_plugins.adapters import ModelLike, RerankOptions, check_texts

try:
    from langchain_core.callbacks import Callbacks
    from langchain_core.documents import BaseDocumentCompressor, Document
except ImportError as error:  # pragma: no cover - depends on the environment
    raise ImportError('RerankCompressor needs langchain-core: pip install "rerank-plugins[langchain]"') from error

__all__ = ["RerankCompressor"]


class RerankCompressor(RerankOptions, BaseDocumentCompressor):
    """Rerank LangChain documents with a cross-encoder; each query's documents are scored in one ``rank`` call.

    Args:
        model, top_n, score_threshold, batch_size, iterative, rank_kwargs: see ``adapters.RerankOptions``.

    Returns copies of the documents, best first, each with ``metadata["relevance_score"]``. A copy's metadata is
    a new dict; the values in it are the original's own objects (never deep-copied: a lock or a client cannot be).
    """

    model_config = ConfigDict(arbitrary_types_allowed=True)

    model: STCrossEncoder = Field(exclude=True, repr=False, description="The loaded cross-encoder.")

    def __init__(self, model: ModelLike, **kwargs: Any) -> None:
        fields, loaded = self.load(model, kwargs)
        super().__init__(**{**fields, "model": loaded})
        self.check_model(loaded)

    def compress_documents(
        self, documents: Sequence[Document], query: str, callbacks: Callbacks | None = None
    ) -> Sequence[Document]:
        """Score ``documents`` against ``query`` and return the kept ones as scored copies, best first."""
        documents = list(documents)
        ranked = self.rank_texts(self.model, query, _texts(documents))
        return [_scored_copy(documents[hit.index], hit.score) for hit in ranked]

    async def acompress_documents(
        self, documents: Sequence[Document], query: str, callbacks: Callbacks | None = None
    ) -> Sequence[Document]:
        """:meth:`compress_documents` in a worker thread, so that the event loop stays free."""
        return await asyncio.to_thread(self.compress_documents, documents, query, callbacks)


def _texts(documents: list[Document]) -> list[str]:
    for index, document in enumerate(documents):
        if not isinstance(document, Document):
            raise TypeError(f"Document {index} is a {type(document).__name__}, not a langchain_core Document.")
    texts = [document.page_content for document in documents]
    check_texts(texts, "Document")
    return texts


def _scored_copy(document: Document, score: float) -> Document:
    """A copy of ``document`` whose metadata is a new dict: the original's entries plus ``relevance_score``."""
    return document.model_copy(update={"metadata": {**document.metadata, "relevance_score": score}})
