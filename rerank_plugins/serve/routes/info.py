"""What the server serves and how it is: ``GET /v1/models``, ``/health``, ``/metrics``."""

from __future__ import annotations

from fastapi import Request as HttpRequest
from fastapi.responses import JSONResponse, Response

from rerank_plugins.serve.schemas import Health, ModelCard, ModelList
from rerank_plugins.serve.service import RerankService


async def models(request: HttpRequest) -> ModelList:
    """The served names to pass as `model`, with each model's family."""
    service = RerankService.of(request)
    cards = [
        ModelCard(
            id=name,
            created=service.created,
            family=str(getattr(model, "family", "unknown")),
            listwise=bool(getattr(model, "is_listwise", False)),
            max_length=_max_length(model),
        )
        for name, model in service.models.items()
    ]
    return ModelList(data=cards)


async def health(request: HttpRequest) -> Response:
    """200 while every model's queue takes requests, else 503."""
    service = RerankService.of(request)
    down = [name for name, queue in service.queues.items() if not queue.alive]
    body = Health(
        status="unhealthy" if down else "ok", models=list(service.queues), details={"down": down} if down else {}
    )
    return JSONResponse(body.model_dump(), status_code=503 if down else 200)


async def metrics(request: HttpRequest) -> Response:
    """Requests, pairs, latency and scoring-call histograms, queue depth (Prometheus text format)."""
    service = RerankService.of(request)
    return Response(service.metrics.render(service.queues), media_type=service.metrics.content_type)


def _max_length(model: object) -> int | None:
    """Tokens per input, as the model truncates (sentence-transformers' ``max_seq_length``)."""
    value = getattr(model, "max_seq_length", None)
    return value if isinstance(value, int) and not isinstance(value, bool) else None
