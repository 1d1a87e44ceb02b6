"""LlamaIndex: ``RerankPostprocessor``, a node postprocessor for query engines and retrievers.

Unlike LlamaIndex's own ``SentenceTransformerRerank`` it returns copies of the nodes with ``score`` a Python
float, so the caller's nodes and their metadata mappings never change, and it emits the instrumentation events
``ReRankStartEvent`` / ``ReRankEndEvent``. It needs only ``llama-index-core``
(``pip install "rerank-plugins[llama-index]"``).

    >>> from rerank_plugins.llama_index import RerankPostprocessor
    >>> reranker = RerankPostprocessor(model="unicamp-dl/InRanker-small", top_n=3)  # doctest: +SKIP
    >>> index.as_query_engine(similarity_top_k=20, node_postprocessors=[reranker])  # doctest: +SKIP
"""

from __future__ import annotations

import asyncio
from typing import Any

from sentence_transformers import CrossEncoder as STCrossEncoder

from rerank_plugins.adapters import ModelLike, RerankOptions, check_texts, model_name
from rerank_plugins.core.requests import RankedDocument

try:
    from llama_index.core.bridge.pydantic import Field, PrivateAttr
    from llama_index.core.callbacks import CBEventType, EventPayload
    from llama_index.core.instrumentation import get_dispatcher
    from llama_index.core.instrumentation.events.rerank import ReRankEndEvent, ReRankStartEvent
    from llama_index.core.postprocessor.types import BaseNodePostprocessor
    from llama_index.core.schema import BaseNode, MetadataMode, NodeWithScore, QueryBundle
except ImportError as error:  # pragma: no cover - depends on the environment
    raise ImportError(
        'RerankPostprocessor needs llama-index-core: pip install "rerank-plugins[llama-index]"'
    ) from error

__all__ = ["RerankPostprocessor"]

dispatcher = get_dispatcher(__name__)

RETRIEVAL_SCORE_KEY = "retrieval_score"


class RerankPostprocessor(RerankOptions, BaseNodePostprocessor):
    """Rerank LlamaIndex nodes with a cross-encoder; each query's nodes are scored in one ``rank`` call.

    Args:
        model, top_n, score_threshold, batch_size, iterative, rank_kwargs: see ``adapters.RerankOptions``.
        keep_retrieval_score: also keep each node's retrieval score, as ``metadata["retrieval_score"]``.
        metadata_mode: which text of a node is scored; ``EMBED`` (LlamaIndex's rerankers' choice) includes the
            metadata the embedder sees, ``NONE`` scores the bare text.

    Returns new ``NodeWithScore`` objects, best first, with ``score`` the reranker's, holding copies of the
    nodes. A copy's metadata (and its lists of excluded keys) are new; the metadata values, relationships and
    embedding are the original's own objects (never deep-copied: a lock or a client cannot be).
    """

    model: str = Field(description="The id or path the cross-encoder was loaded from, or its name.")
    keep_retrieval_score: bool = Field(
        default=False, description="Keep the retrieval score in the returned copies' metadata['retrieval_score']."
    )
    metadata_mode: MetadataMode = Field(default=MetadataMode.EMBED, description="Which node text to score.")
    _model: STCrossEncoder = PrivateAttr()

    def __init__(self, model: ModelLike, **kwargs: Any) -> None:
        fields, loaded = self.load(model, kwargs)
        super().__init__(**{**fields, "model": model_name(loaded, model)})
        self._model = loaded
        self.check_model(loaded)

    @classmethod
    def class_name(cls) -> str:
        return "RerankPostprocessor"

    @property
    def cross_encoder(self) -> STCrossEncoder:
        """The loaded cross-encoder."""
        return self._model

    def _postprocess_nodes(
        self, nodes: list[NodeWithScore], query_bundle: QueryBundle | None = None
    ) -> list[NodeWithScore]:
        query, texts = self._texts(nodes, query_bundle)
        if not nodes:
            return []
        event_id = self._start(nodes, query_bundle)
        return self._end(nodes, self.rank_texts(self._model, query, texts), event_id)

    async def _apostprocess_nodes(
        self, nodes: list[NodeWithScore], query_bundle: QueryBundle | None = None
    ) -> list[NodeWithScore]:
        """:meth:`_postprocess_nodes` in a worker thread, so that the event loop stays free."""
        return await asyncio.to_thread(self._postprocess_nodes, nodes, query_bundle)

    # -- framework objects to texts and back -------------------------------------------------------------------
    def _texts(self, nodes: list[NodeWithScore], query_bundle: QueryBundle | None) -> tuple[str, list[str]]:
        if query_bundle is None:
            raise ValueError("RerankPostprocessor needs the query: pass query_bundle= or query_str=.")
        for index, item in enumerate(nodes):
            if not isinstance(item, NodeWithScore):
                raise TypeError(f"Node {index} is a {type(item).__name__}, not a NodeWithScore.")
        texts = [item.node.get_content(metadata_mode=self.metadata_mode) for item in nodes]
        check_texts(texts, "Node")
        return query_bundle.query_str, texts

    def _start(self, nodes: list[NodeWithScore], query_bundle: QueryBundle | None) -> str:
        """Announce the reranking to the instrumentation dispatcher and to the legacy callback manager."""
        top_n = self.top_n if self.top_n is not None else len(nodes)
        dispatcher.event(ReRankStartEvent(query=query_bundle, nodes=nodes, top_n=top_n, model_name=self.model))
        return self.callback_manager.on_event_start(
            CBEventType.RERANKING,
            payload={
                EventPayload.NODES: nodes,
                EventPayload.MODEL_NAME: self.model,
                EventPayload.QUERY_STR: query_bundle.query_str if query_bundle else None,
                EventPayload.TOP_K: top_n,
            },
        )

    def _end(self, nodes: list[NodeWithScore], ranked: list[RankedDocument], event_id: str) -> list[NodeWithScore]:
        """The kept nodes, best first, as copies with the reranker's score; then the end events."""
        reranked = [NodeWithScore(node=self._copy(nodes[hit.index]), score=hit.score) for hit in ranked]
        self.callback_manager.on_event_end(
            CBEventType.RERANKING, payload={EventPayload.NODES: reranked}, event_id=event_id
        )
        dispatcher.event(ReRankEndEvent(nodes=reranked))
        return reranked

    def _copy(self, item: NodeWithScore) -> BaseNode:
        """A copy of ``item.node`` with a new metadata dict and new lists of excluded keys; the values are shared."""
        node = item.node
        metadata = dict(node.metadata)
        excluded = {
            key: list(getattr(node, key)) for key in ("excluded_embed_metadata_keys", "excluded_llm_metadata_keys")
        }
        if self.keep_retrieval_score:
            metadata[RETRIEVAL_SCORE_KEY] = item.score
            for keys in excluded.values():  # bookkeeping, not content for an LLM or embedder
                if RETRIEVAL_SCORE_KEY not in keys:
                    keys.append(RETRIEVAL_SCORE_KEY)
        return node.model_copy(update={"metadata": metadata, **excluded})
