"""The one way every route scores: queue a :class:`~rerank_plugins.core.Request`, await its Ranking.

:class:`RerankService` holds what the routes share (each served model's :class:`~rerank_plugins.core.queue.
RequestQueue`, the limits, the metrics); :meth:`RerankService.rank` is the scoring function of every API shape:
it bounds the request's size, queues it, waits for its ranking (giving up on a timeout or when the client
leaves, which abandons the work), maps the core's errors to HTTP ones and refuses a non-finite score.
"""

from __future__ import annotations

import asyncio
import math
import time
from collections.abc import Mapping
from typing import Any

import torch
from fastapi import Request as HttpRequest

from rerank_plugins.checks import InputError
from rerank_plugins.core.queue import QueueFull, QueueStopped, RequestQueue
from rerank_plugins.core.requests import Ranking, Request, RequestOptions
from rerank_plugins.serve.config import ServeConfig
from rerank_plugins.serve.errors import ApiError
from rerank_plugins.serve.metrics import Metrics

POLL_SECONDS = 0.25
"""How often a waiting request checks whether its client is still there."""


def raw_scores() -> RequestOptions:
    """A request's options for the scores before the family's activation (TEI's ``raw_scores``, vLLM's
    ``use_activation: false``): the value ``rank(..., activation_fn=torch.nn.Identity())`` gives."""
    return RequestOptions(activation=torch.nn.Identity())


class RerankService:
    """The served models' queues, the limits and the metrics of one application."""

    def __init__(self, models: Mapping[str, Any], config: ServeConfig, metrics: Metrics) -> None:
        self.config = config
        self.metrics = metrics
        self.models = dict(models)
        self.queues = {
            name: RequestQueue(model, config.queue, name=name, on_call=metrics.observe_call)
            for name, model in models.items()
        }
        self.default = next(iter(self.queues))
        self.created = int(time.time())

    @staticmethod
    def of(request: HttpRequest) -> RerankService:
        """The service of the application that received ``request``."""
        service: RerankService = request.app.state.service
        return service

    def queue(self, name: str | None) -> RequestQueue:
        """The queue of the model served as ``name`` (None: the default); else a 404 naming ``model``."""
        if name is None:
            return self.queues[self.default]
        if name not in self.queues:
            raise ApiError(
                404, f"model {name!r} is not served here; served: {sorted(self.queues)}", field="model",
                error_type="not_found",
            )  # fmt: skip
        return self.queues[name]

    def check_size(self, query: str, texts: list[str], field: str) -> None:
        """413 for more documents than allowed, or more text to score than allowed (the query counts per pair)."""
        limit = self.config.max_documents
        if len(texts) > limit:
            raise ApiError(
                413, f"{field}: {len(texts)} documents; at most {limit} per request", field=field,
                error_type="payload_too_large",
            )  # fmt: skip
        # Every pair repeats the query: bound the text to tokenize, or a long query x many documents ties up a model.
        total = len(query) * len(texts) + sum(len(text) for text in texts)
        if total > self.config.max_pair_chars:
            raise ApiError(
                413,
                f"query: {len(query)} characters repeated for {len(texts)} documents make {total} characters to "
                f"score; at most {self.config.max_pair_chars} per request",
                field="query",
                error_type="payload_too_large",
            )

    async def rank(self, http: HttpRequest, endpoint: str, queue: RequestQueue, request: Request) -> Ranking:
        """``request``'s ranking by ``queue``'s model; every failure is an :class:`ApiError` (and counted)."""
        started = time.perf_counter()
        status = "200"
        self.metrics.in_flight.inc()
        try:
            return await self._ranked(http, queue, request)
        except ApiError as error:
            status = str(error.status)
            raise
        except BaseException:
            status = "500"
            raise
        finally:
            self.metrics.in_flight.dec()
            self.metrics.requests.labels(endpoint, queue.name, status).inc()
            self.metrics.latency.labels(endpoint, queue.name).observe(time.perf_counter() - started)

    async def _ranked(self, http: HttpRequest, queue: RequestQueue, request: Request) -> Ranking:
        retry = {"Retry-After": str(self.config.retry_after)}
        try:
            future = queue.submit(request)
        except QueueFull as error:
            raise ApiError(503, str(error), error_type="overloaded", headers=retry) from None
        except QueueStopped as error:
            raise ApiError(503, str(error), error_type="unavailable", headers=retry) from None
        waiting = asyncio.wrap_future(future)
        timeout = self.config.request_timeout
        deadline = time.monotonic() + timeout
        while True:
            remaining = deadline - time.monotonic()
            done, _ = await asyncio.wait({waiting}, timeout=max(0.0, min(POLL_SECONDS, remaining)))
            if done:
                break
            gone = await http.is_disconnected()
            if gone or time.monotonic() >= deadline:
                queue.abandon(future)  # its pairs stop counting; its work stops at the next forward batch
                waiting.cancel()
                if gone:
                    raise ApiError(499, "the client closed the connection", error_type="disconnected")
                raise ApiError(504, f"no answer within {timeout:g} s; retry with fewer documents", error_type="timeout")
        try:
            ranking = waiting.result()
        except InputError as error:  # a part of the request the model cannot score (e.g. too long a query)
            raise ApiError(422, str(error), field=error.field) from None
        except (ValueError, TypeError) as error:  # the core's checks of a request
            raise ApiError(422, str(error)) from None
        except Exception as error:  # the model failed: the traceback is in the server's log
            raise ApiError(500, f"scoring failed: {type(error).__name__}: {error}", error_type="backend") from None
        bad = [index for index, score in enumerate(ranking.scores) if not math.isfinite(score)]
        if bad:
            shown = ", ".join(f"{ranking.scores[i]} for document {i}" for i in bad[:3]) + (
                ", ..." if len(bad) > 3 else ""
            )
            raise ApiError(
                500,
                f"model {queue.name!r} produced {len(bad)} non-finite score(s) ({shown}); its weights or its dtype "
                "cannot score these inputs (try --dtype fp32)",
                error_type="backend",
            )
        return ranking
