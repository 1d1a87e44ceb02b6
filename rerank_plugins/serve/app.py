"""The FastAPI application: Cohere v1/Jina, Cohere v2 and TEI rerank endpoints over served CrossEncoders.

Scores come only from ``CrossEncoder.predict`` (through :mod:`rerank_plugins.serve.batching`); the endpoints
only translate requests and responses, sort by score (ties in document order, as ``CrossEncoder.rank``) and
enforce the limits in :class:`ServeSettings`.
"""

from __future__ import annotations

import asyncio
import hmac
import math
import time
import uuid
from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager
from typing import Any

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from rerank_plugins.serve.batching import Engine, EngineStopped, QueueFull, Scores
from rerank_plugins.serve.errors import ApiError, error_body, install_handlers
from rerank_plugins.serve.metrics import Metrics
from rerank_plugins.serve.schemas import (
    ApiVersion,
    BilledUnits,
    ErrorResponse,
    Health,
    Meta,
    ModelCard,
    ModelList,
    Rank,
    RerankRequest,
    RerankResponse,
    RerankResult,
    RerankResultDocument,
    RerankV2Request,
    RerankV2Response,
    RerankV2Result,
    TEIRerankRequest,
    Tokens,
    Usage,
)
from rerank_plugins.serve.settings import ServeSettings

OPEN_PATHS = frozenset({"/health", "/docs", "/docs/oauth2-redirect", "/redoc", "/openapi.json"})
"""Paths answered without the API key."""


class _Guard:
    """ASGI middleware run before any parsing: the API key, then the body size (read whole, then replayed)."""

    def __init__(self, app: ASGIApp, settings: ServeSettings) -> None:
        self.app = app
        self.settings = settings

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = {key.decode("latin-1").lower(): value.decode("latin-1") for key, value in scope["headers"]}
        key = self.settings.api_key
        if key is not None and scope["path"] not in OPEN_PATHS:
            given = headers.get("authorization", "")
            scheme, _, token = given.partition(" ")
            if scheme.lower() != "bearer" or not hmac.compare_digest(token.strip().encode(), key.encode()):
                reason = "missing" if not given else "wrong"
                await _send_error(
                    send,
                    401,
                    f"{reason} API key: send the header 'Authorization: Bearer <key>'",
                    "authentication",
                    "Authorization",
                    {"www-authenticate": "Bearer"},
                )
                return
        if scope["method"] not in ("POST", "PUT", "PATCH"):
            await self.app(scope, receive, send)
            return
        limit = self.settings.max_body_bytes
        declared = headers.get("content-length", "")
        if declared.isdigit() and int(declared) > limit:
            await _send_error(send, 413, f"the request body has {declared} bytes; at most {limit}", "payload_too_large")
            return
        chunks, size = [], 0
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                return  # the client left before sending its body
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > limit:
                await _send_error(send, 413, f"the request body has more than {limit} bytes", "payload_too_large")
                return
            chunks.append(chunk)
            if not message.get("more_body", False):
                break
        replayed = False

        async def replay() -> Message:
            nonlocal replayed
            if not replayed:
                replayed = True
                return {"type": "http.request", "body": b"".join(chunks), "more_body": False}
            return await receive()  # after the body: the disconnect, when it comes

        await self.app(scope, replay, send)


async def _send_error(
    send: Send, status: int, message: str, kind: str, field: str | None = None, headers: dict[str, str] | None = None
) -> None:
    response = JSONResponse(error_body(message, kind, field), status_code=status, headers=headers)
    await response({"type": "http"}, _nothing, send)


async def _nothing() -> Message:
    return {"type": "http.disconnect"}


def _max_length(model: Any) -> int | None:
    value = getattr(model, "max_length", None)
    return int(value) if isinstance(value, int) else None


_ERRORS: dict[int | str, dict[str, Any]] = {
    code: {"model": ErrorResponse, "description": text}
    for code, text in {
        400: "Malformed JSON or invalid UTF-8",
        401: "Missing or wrong API key",
        404: "Unknown model",
        413: "Too many documents or too large a body",
        422: "A field is missing or has a wrong type or value",
        503: "Queue full or shutting down (see Retry-After)",
        504: "The request timed out",
    }.items()
}


def create_app(models: Mapping[str, Any], settings: ServeSettings | None = None) -> FastAPI:
    """The application serving ``models`` (served name -> loaded ``rerank_plugins.CrossEncoder``).

    The first model is the default: it answers requests without ``model`` and TEI's ``/rerank``.
    """
    if not models:
        raise ValueError("create_app needs at least one model.")
    settings = settings or ServeSettings()
    metrics = Metrics()
    engines = {
        name: Engine(name, model, settings.batching, on_batch=metrics.observe_batch) for name, model in models.items()
    }
    default = next(iter(engines))
    created = int(time.time())

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        for engine in engines.values():
            engine.start()
        yield
        for engine in engines.values():  # uvicorn has drained the requests in flight; now the workers
            await asyncio.to_thread(engine.stop, settings.request_timeout)

    app = FastAPI(
        title="rerank-plugins",
        description="Published rerankers with their authors' exact scores, behind Cohere-, Jina- and TEI-style "
        "rerank APIs.",
        version=_version(),
        lifespan=lifespan,
    )
    app.state.engines = engines
    app.state.metrics = metrics
    app.state.settings = settings
    install_handlers(app)
    app.add_middleware(_Guard, settings=settings)

    def engine_for(name: str | None) -> Engine:
        if name is None:
            return engines[default]
        if name not in engines:
            raise ApiError(
                404,
                f"model {name!r} is not served here; served: {sorted(engines)}",
                field="model",
                error_type="not_found",
            )
        return engines[name]

    def check_size(query: str, texts: list[str], field_name: str) -> None:
        if len(texts) > settings.max_documents:
            raise ApiError(
                413,
                f"{field_name}: {len(texts)} documents; at most {settings.max_documents} per request",
                field=field_name,
                error_type="payload_too_large",
            )
        # Every pair repeats the query: bound the text to tokenize, or a long query x many documents ties up a model.
        total = len(query) * len(texts) + sum(len(text) for text in texts)
        if total > settings.max_pair_chars:
            raise ApiError(
                413,
                f"query: {len(query)} characters repeated for {len(texts)} documents make {total} characters to "
                f"score; at most {settings.max_pair_chars} per request",
                field="query",
                error_type="payload_too_large",
            )

    async def score(
        request: Request, endpoint: str, engine: Engine, query: str, documents: list[str], **options: Any
    ) -> Scores:
        """Queue the documents, wait for their scores; give up on timeout or when the client leaves."""
        started = time.perf_counter()
        status = "200"
        metrics.in_flight.inc()
        try:
            try:
                future = engine.submit(query, documents, **options)
            except QueueFull as error:
                status = "503"
                raise ApiError(
                    503, str(error), error_type="overloaded", headers={"Retry-After": str(settings.retry_after)}
                ) from None
            except EngineStopped as error:
                status = "503"
                raise ApiError(
                    503, str(error), error_type="unavailable", headers={"Retry-After": str(settings.retry_after)}
                ) from None
            waiting = asyncio.wrap_future(future)
            deadline = time.monotonic() + settings.request_timeout
            while True:
                remaining = deadline - time.monotonic()
                done, _ = await asyncio.wait({waiting}, timeout=max(0.0, min(0.25, remaining)))
                if done:
                    return waiting.result()
                if await request.is_disconnected():
                    status = "499"
                    waiting.cancel()  # also cancels the queued job, unless it is being scored
                    raise ApiError(499, "the client closed the connection", error_type="disconnected")
                if time.monotonic() >= deadline:
                    status = "504"
                    waiting.cancel()  # also cancels the queued job, unless it is being scored
                    raise ApiError(
                        504,
                        f"no answer within {settings.request_timeout:g} s; retry with fewer documents",
                        error_type="timeout",
                    )
        except BaseException:
            if status == "200":
                status = "500"
            raise
        finally:
            metrics.in_flight.dec()
            metrics.requests.labels(endpoint, engine.name, status).inc()
            metrics.latency.labels(endpoint, engine.name).observe(time.perf_counter() - started)

    def ranked(scores: list[float], top_n: int | None) -> list[tuple[int, float]]:
        order = sorted(enumerate(scores), key=lambda item: item[1], reverse=True)  # stable: ties by index
        return order if top_n is None else order[:top_n]

    def meta(version: str, documents: int, tokens: int | None) -> Meta:
        return Meta(
            api_version=ApiVersion(version=version),
            billed_units=BilledUnits(search_units=max(1, math.ceil(documents / 100))),
            tokens=Tokens(input_tokens=tokens) if tokens is not None else None,
        )

    @app.post(
        "/v1/rerank",
        response_model=RerankResponse,
        response_model_exclude_none=True,
        responses=_ERRORS,
        summary="Cohere v1 / Jina rerank",
    )
    async def rerank_v1(body: RerankRequest, request: Request) -> RerankResponse:
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
        engine = engine_for(body.model)
        texts = [d if isinstance(d, str) else d.text for d in body.documents]
        check_size(body.query, texts, "documents")
        result = await score(request, "/v1/rerank", engine, body.query, texts, count_tokens=True)
        results = []
        for index, value in ranked(result.scores, body.top_n):
            document = None
            if body.return_documents:
                given = body.documents[index]
                document = (
                    RerankResultDocument(text=given)
                    if isinstance(given, str)
                    else RerankResultDocument(**given.model_dump())
                )
            results.append(RerankResult(index=index, relevance_score=value, document=document))
        return RerankResponse(
            id=str(uuid.uuid4()),
            results=results,
            meta=meta("1", len(texts), result.tokens),
            model=engine.name,
            usage=Usage(total_tokens=result.tokens) if result.tokens is not None else None,
        )

    @app.post(
        "/v2/rerank",
        response_model=RerankV2Response,
        response_model_exclude_none=True,
        responses=_ERRORS,
        summary="Cohere v2 rerank",
    )
    async def rerank_v2(body: RerankV2Request, request: Request) -> RerankV2Response:
        """Rank `documents` for `query`; `max_tokens_per_doc` cuts each document to its first tokens first."""
        engine = engine_for(body.model)
        check_size(body.query, list(body.documents), "documents")
        result = await score(
            request,
            "/v2/rerank",
            engine,
            body.query,
            list(body.documents),
            count_tokens=True,
            max_tokens_per_doc=body.max_tokens_per_doc,
        )
        results = [RerankV2Result(index=i, relevance_score=s) for i, s in ranked(result.scores, body.top_n)]
        return RerankV2Response(
            id=str(uuid.uuid4()), results=results, meta=meta("2", len(body.documents), result.tokens)
        )

    @app.post(
        "/rerank",
        response_model=list[Rank],
        response_model_exclude_none=True,
        responses=_ERRORS,
        summary="text-embeddings-inference rerank",
    )
    async def rerank_tei(body: TEIRerankRequest, request: Request) -> list[Rank]:
        """Rank `texts` for `query` with the first served model; a list of `{index, score, text?}`, best first."""
        return await tei(body, request, engine_for(None), "/rerank")

    @app.post(
        "/models/{name}/rerank",
        response_model=list[Rank],
        response_model_exclude_none=True,
        responses=_ERRORS,
        summary="text-embeddings-inference rerank with a named model",
    )
    async def rerank_tei_named(name: str, body: TEIRerankRequest, request: Request) -> list[Rank]:
        """TEI's `/rerank` for the model served as `name`: give TEI clients `http://HOST:PORT/models/NAME`."""
        return await tei(body, request, engine_for(name), "/models/{name}/rerank")

    async def tei(body: TEIRerankRequest, request: Request, engine: Engine, endpoint: str) -> list[Rank]:
        if body.truncation_direction.lower() != "right":
            raise ApiError(422, "truncation_direction: only 'right' is supported", field="truncation_direction")
        check_size(body.query, list(body.texts), "texts")
        result = await score(request, endpoint, engine, body.query, list(body.texts), raw=body.raw_scores)
        return [
            Rank(index=i, score=s, text=body.texts[i] if body.return_text else None)
            for i, s in ranked(result.scores, None)
        ]

    @app.get("/v1/models", response_model=ModelList, summary="Served models")
    async def list_models() -> ModelList:
        """The served names to pass as `model`, with each model's family."""
        cards = [
            ModelCard(
                id=name,
                created=created,
                family=str(getattr(engine.model, "family", "unknown")),
                listwise=engine.listwise,
                max_length=_max_length(engine.model),
            )
            for name, engine in engines.items()
        ]
        return ModelList(data=cards)

    @app.get("/health", response_model=Health, responses={503: {"model": Health}}, summary="Liveness")
    async def health() -> Response:
        """200 while every model's worker can take requests, else 503."""
        down = [name for name, engine in engines.items() if not engine.alive]
        body = Health(
            status="unhealthy" if down else "ok", models=list(engines), details={"down": down} if down else {}
        )
        return JSONResponse(body.model_dump(), status_code=503 if down else 200)

    @app.get(
        "/metrics",
        summary="Prometheus metrics",
        response_class=Response,
        responses={200: {"content": {"text/plain": {}}}},
    )
    async def prometheus() -> Response:
        """Requests, pairs, latency and batch-size histograms, queue depth (Prometheus text format)."""
        return Response(metrics.render(engines), media_type=metrics.content_type)

    return app


def _version() -> str:
    from rerank_plugins import __version__

    return __version__
