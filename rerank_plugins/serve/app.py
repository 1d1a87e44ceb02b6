"""The FastAPI application: the one route table over the API shapes' handlers (``rerank_plugins.serve.routes``).

Every rerank route scores through :meth:`~rerank_plugins.serve.service.RerankService.rank` (each model's queue,
then the request core); the handlers only translate requests and answers. The :class:`~rerank_plugins.serve.
guard.Guard` runs before any parsing.
"""

from __future__ import annotations

import asyncio
import threading
import warnings
from collections.abc import AsyncIterator, Callable, Mapping
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any

from fastapi import FastAPI
from fastapi.responses import JSONResponse, Response

from rerank_plugins.loading import ModelSourceError
from rerank_plugins.serve.config import ServeConfig
from rerank_plugins.serve.errors import install_handlers
from rerank_plugins.serve.guard import Guard
from rerank_plugins.serve.metrics import Metrics
from rerank_plugins.serve.routes import cohere_v1, cohere_v2, info, tei, vllm_score
from rerank_plugins.serve.schemas import (
    ErrorResponse,
    Health,
    ModelList,
    Rank,
    RerankResponse,
    RerankV2Response,
    ScoreResponse,
)
from rerank_plugins.serve.service import RerankService
from rerank_plugins.serve.settings import ServeSettings

_ERRORS: dict[int | str, dict[str, Any]] = {
    code: {"model": ErrorResponse, "description": text}
    for code, text in {
        400: "Malformed JSON or invalid UTF-8",
        401: "Missing or wrong API key",
        404: "Unknown model",
        408: "The request body did not arrive in time",
        413: "Too many documents or too large a body",
        415: "The body is not sent as JSON",
        422: "A field is missing or has a wrong type or value",
        500: "The model failed, or gave a non-finite score",
        503: "Queue full or shutting down (see Retry-After)",
        504: "The request timed out",
    }.items()
}


@dataclass(frozen=True)
class Route:
    """One row of the route table."""

    method: str
    path: str
    handler: Callable[..., Any]
    summary: str
    response_model: Any = None
    responses: dict[int | str, dict[str, Any]] = field(default_factory=lambda: dict(_ERRORS))
    response_class: type[Response] = JSONResponse


ROUTES: tuple[Route, ...] = (
    Route("POST", "/v1/rerank", cohere_v1.rerank, "Cohere v1 / Jina rerank", RerankResponse),
    Route("POST", "/v2/rerank", cohere_v2.rerank, "Cohere v2 rerank", RerankV2Response),
    Route("POST", "/rerank", tei.rerank, "text-embeddings-inference rerank", list[Rank]),
    Route(
        "POST",
        "/models/{name:path}/rerank",
        tei.rerank_named,
        "text-embeddings-inference rerank, named model",
        list[Rank],
    ),
    Route("POST", "/score", vllm_score.score, "vLLM score", ScoreResponse),
    Route("POST", "/v1/score", vllm_score.score, "vLLM score (OpenAI-style path)", ScoreResponse),
    Route("GET", "/v1/models", info.models, "Served models", ModelList, {}),
    Route("GET", "/health", info.health, "Liveness", Health, {503: {"model": Health}}),
    Route(
        "GET", "/metrics", info.metrics, "Prometheus metrics", None, {200: {"content": {"text/plain": {}}}}, Response
    ),
)
"""Every route of the application."""


def create_app(
    config: ServeConfig | Mapping[str, Any] | None = None,
    settings: ServeSettings | ServeConfig | None = None,
    *,
    models: Mapping[str, Any] | None = None,
) -> FastAPI:
    """The application for ``config``: it loads ``config.models``, or serves ``models`` (served name -> loaded
    ``rerank_plugins.CrossEncoder``) when given. The first model is the default (requests without ``model``,
    TEI's ``/rerank``).

    ``create_app(models, settings)`` (a mapping of models first, :class:`ServeSettings` second) is the older form,
    deprecated.
    """
    if isinstance(config, Mapping):
        warnings.warn(
            "create_app(models, settings) is deprecated: use create_app(ServeConfig(...), models=models)",
            DeprecationWarning,
            stacklevel=2,
        )
        if models is not None:
            raise TypeError("create_app(models, settings): models are given twice")
        models = config
        config = settings.to_config() if isinstance(settings, ServeSettings) else settings
    elif settings is not None:
        raise TypeError("create_app(config): settings belong in the ServeConfig")
    config = config if config is not None else ServeConfig()
    if not isinstance(config, ServeConfig):
        raise TypeError(f"create_app takes a ServeConfig, got {type(config).__name__}.")
    if models is not None and config.models:
        raise ValueError("create_app: give the models either in config.models or as models=, not both")
    if models is None:
        models = _load(config)
    if not models:
        raise ValueError("create_app needs at least one model (config.models, or models=).")
    for name, model in models.items():
        if getattr(model, "num_labels", 1) != 1:
            raise ValueError(f"model {name!r} has {model.num_labels} labels; a reranker gives one score per pair.")
    service = RerankService(models, config, Metrics())

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        for queue in service.queues.values():
            queue.start()
        yield
        for queue in service.queues.values():  # the server has drained the requests in flight; now the workers
            await asyncio.to_thread(queue.stop, config.request_timeout)

    app = FastAPI(
        title="rerank-plugins",
        description="Published rerankers with their authors' exact scores, behind Cohere-, Jina-, TEI- and "
        "vLLM-style rerank and score APIs.",
        version=_version(),
        lifespan=lifespan,
    )
    app.state.service = service
    app.state.config = config
    app.state.draining = threading.Event()  # set by the server when it starts shutting down
    install_handlers(app)
    app.add_middleware(Guard, config=config, draining=app.state.draining)
    for route in ROUTES:
        app.add_api_route(
            route.path,
            route.handler,
            methods=[route.method],
            summary=route.summary,
            response_model=route.response_model,
            response_model_exclude_none=True,
            responses=route.responses,
            response_class=route.response_class,
        )
    return app


def _load(config: ServeConfig) -> dict[str, Any]:
    """Every model of ``config``, loaded; with several, an error says which one failed."""
    models = {}
    for spec in config.models:
        try:
            models[spec.name] = spec.load(verbose=config.log_level == "debug")
        except ModelSourceError as error:
            if len(config.models) == 1:
                raise
            raise ModelSourceError(f"model {spec.name!r} ({spec.source}): {error}") from error
    return models


def _version() -> str:
    from rerank_plugins import __version__

    return __version__
