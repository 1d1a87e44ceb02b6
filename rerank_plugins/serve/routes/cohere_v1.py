"""Cohere's v1 rerank API, which Jina's shares: ``POST /v1/rerank``."""

from __future__ import annotations

import uuid

from fastapi import Request as HttpRequest

from rerank_plugins.core.requests import Request
from rerank_plugins.serve.errors import ApiError
from rerank_plugins.serve.schemas import (
    Meta,
    RerankRequest,
    RerankResponse,
    RerankResult,
    RerankResultDocument,
    Usage,
)
from rerank_plugins.serve.service import RerankService


async def rerank(body: RerankRequest, request: HttpRequest) -> RerankResponse:
    """Rank `documents` for `query`; `results` best first, each with its `index` in `documents`."""
    if body.rank_fields is not None and list(body.rank_fields) != ["text"]:
        raise ApiError(
            422, 'rank_fields: only ["text"] is supported; send the text to rank as `text`', field="rank_fields"
        )
    if body.max_chunks_per_doc not in (None, 1):
        raise ApiError(
            422,
            "max_chunks_per_doc: only 1 is supported; long documents are truncated as the model's family does",
            field="max_chunks_per_doc",
        )
    service = RerankService.of(request)
    queue = service.queue(body.model)
    texts = [d if isinstance(d, str) else d.text for d in body.documents]
    service.check_size(body.query, texts, "documents")
    ranking = await service.rank(request, "/v1/rerank", queue, Request(body.query, tuple(texts)))
    results = []
    for ranked in ranking.top(body.top_n):
        document = None
        if body.return_documents:
            given = body.documents[ranked.index]
            fields = {"text": given} if isinstance(given, str) else given.model_dump()
            document = RerankResultDocument(**fields)
        results.append(RerankResult(index=ranked.index, relevance_score=ranked.score, document=document))
    return RerankResponse(
        id=str(uuid.uuid4()),
        results=results,
        meta=Meta.of("1", len(texts), ranking.tokens),
        model=queue.name,
        usage=Usage(total_tokens=ranking.tokens),
    )
