"""text-embeddings-inference's rerank API: ``POST /rerank`` (the default model) and ``/models/NAME/rerank``."""

from __future__ import annotations

from fastapi import Request as HttpRequest

from rerank_plugins.core.queue import RequestQueue
from rerank_plugins.core.requests import Request, RequestOptions
from rerank_plugins.serve.errors import ApiError
from rerank_plugins.serve.schemas import Rank, TEIRerankRequest
from rerank_plugins.serve.service import RerankService, raw_scores


async def rerank(body: TEIRerankRequest, request: HttpRequest) -> list[Rank]:
    """Rank `texts` for `query` with the first served model; a list of `{index, score, text?}`, best first."""
    service = RerankService.of(request)
    return await _ranked(service, service.queue(None), body, request, "/rerank")


async def rerank_named(name: str, body: TEIRerankRequest, request: HttpRequest) -> list[Rank]:
    """TEI's `/rerank` for the model served as `name` (which may hold `/`, as hub ids do): give TEI clients
    `http://HOST:PORT/models/NAME`."""
    service = RerankService.of(request)
    return await _ranked(service, service.queue(name), body, request, "/models/{name}/rerank")


async def _ranked(
    service: RerankService, queue: RequestQueue, body: TEIRerankRequest, request: HttpRequest, endpoint: str
) -> list[Rank]:
    if body.truncation_direction.lower() != "right":
        raise ApiError(422, "truncation_direction: only 'right' is supported", field="truncation_direction")
    service.check_size(body.query, list(body.texts), "texts")
    options = raw_scores() if body.raw_scores else RequestOptions()
    ranking = await service.rank(request, endpoint, queue, Request(body.query, tuple(body.texts), options))
    return [Rank(index=d.index, score=d.score, text=d.text if body.return_text else None) for d in ranking.documents]
