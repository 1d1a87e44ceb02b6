"""Cohere's v2 rerank API: ``POST /v2/rerank``."""

from __future__ import annotations

import uuid

from fastapi import Request as HttpRequest

from rerank_plugins.core.requests import Request, RequestOptions
from rerank_plugins.serve.schemas import Meta, RerankV2Request, RerankV2Response, RerankV2Result
from rerank_plugins.serve.service import RerankService


async def rerank(body: RerankV2Request, request: HttpRequest) -> RerankV2Response:
    """Rank `documents` for `query`; `max_tokens_per_doc` cuts each document to its first tokens first."""
    service = RerankService.of(request)
    queue = service.queue(body.model)
    service.check_size(body.query, list(body.documents), "documents")
    options = RequestOptions(max_tokens_per_doc=body.max_tokens_per_doc)  # the core cuts, with the model's tokenizer
    ranking = await service.rank(request, "/v2/rerank", queue, Request(body.query, tuple(body.documents), options))
    results = [RerankV2Result(index=d.index, relevance_score=d.score) for d in ranking.top(body.top_n)]
    return RerankV2Response(
        id=str(uuid.uuid4()), results=results, meta=Meta.of("2", len(body.documents), ranking.tokens)
    )
