"""LangChain: ``RerankCompressor``, a document compressor for ``ContextualCompressionRetriever`` and LCEL chains.

Unlike LangChain's own ``CrossEncoderReranker`` it keeps the scores, as ``metadata["relevance_score"]`` (a
Python float) on copies of the documents: the caller's documents and their metadata are never changed. It
needs only ``langchain-core`` (``pip install "rerank-plugins[langchain]"``).

    >>> from rerank_plugins.langchain import RerankCompressor
    >>> compressor = RerankCompressor(model="unicamp-dl/InRanker-small", top_n=3)  # doctest: +SKIP
    >>> compressor.compress_documents(documents, "what is the capital of france")  # doctest: +SKIP
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from pydantic import ConfigDict, Field
from sentence_transformers import CrossEncoder as STCrossEncoder

from rerank_plugins.adapters import (
    ModelLike,
    RerankOptions,
    arerank,
    check_options,
    check_texts,
    load_model,
    rerank,
    split_kwargs,
)

try:
    from langchain_core.callbacks import Callbacks
    from langchain_core.documents import BaseDocumentCompressor, Document
except ImportError as error:  # pragma: no cover - depends on the environment
    raise ImportError('RerankCompressor needs langchain-core: pip install "rerank-plugins[langchain]"') from error

__all__ = ["RerankCompressor"]


class RerankCompressor(RerankOptions, BaseDocumentCompressor):
    """Rerank LangChain documents with a cross-encoder; each query's documents are scored in one ``rank`` call.

    Args:
        model: a ``CrossEncoder`` (``rerank_plugins`` or plain sentence-transformers), or a hub id / local path
            that ``rerank_plugins.CrossEncoder`` loads, with any of its keyword arguments (``device=``,
            ``family=``, ``max_length=``, ...) passed alongside.
        top_n, score_threshold, batch_size, iterative, rank_kwargs: see ``rerank_plugins.adapters.RerankOptions``.

    Returns copies of the documents, best first, each with ``metadata["relevance_score"]``.
    """

    model_config = ConfigDict(arbitrary_types_allowed=True)

    model: STCrossEncoder = Field(exclude=True, repr=False, description="The loaded cross-encoder.")

    def __init__(self, model: ModelLike, **kwargs: Any) -> None:
        fields, model_kwargs = split_kwargs(type(self).model_fields, kwargs)
        super().__init__(**{**fields, "model": load_model(model, **model_kwargs)})
        check_options(self.model, self.iterative, self.rank_kwargs)

    def compress_documents(
        self,
        documents: Sequence[Document],
        query: str,
        callbacks: Callbacks | None = None,
    ) -> Sequence[Document]:
        """Score ``documents`` against ``query`` and return the kept ones as scored copies, best first."""
        documents = list(documents)
        texts = _texts(documents)
        return _scored_copies(documents, rerank(self.model, query, texts, **self.rank_options()))

    async def acompress_documents(
        self,
        documents: Sequence[Document],
        query: str,
        callbacks: Callbacks | None = None,
    ) -> Sequence[Document]:
        """:meth:`compress_documents`, scoring in a worker thread so the event loop stays free."""
        documents = list(documents)
        texts = _texts(documents)
        return _scored_copies(documents, await arerank(self.model, query, texts, **self.rank_options()))


def _texts(documents: list[Document]) -> list[str]:
    for index, document in enumerate(documents):
        if not isinstance(document, Document):
            raise TypeError(f"Document {index} is a {type(document).__name__}, not a langchain_core Document.")
    texts = [document.page_content for document in documents]
    check_texts(texts, "Document")
    return texts


def _scored_copies(documents: list[Document], ranked: list[tuple[int, float]]) -> list[Document]:
    """Deep copies of the kept documents, in ranked order, with their score in ``metadata``."""
    copies = []
    for index, score in ranked:
        copy = documents[index].model_copy(deep=True)
        copy.metadata["relevance_score"] = score
        copies.append(copy)
    return copies
