"""Prometheus metrics of one server (own registry, so that several apps in one process do not clash)."""

from __future__ import annotations

from typing import Any

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    disable_created_metrics,
    generate_latest,
)

disable_created_metrics()  # the *_created series only double the output

_LATENCY = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0)
_SIZES = (1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024, 2048, 4096)


class Metrics:
    """Requests, pairs, latency, scoring calls and queue depth, as ``rerank_plugins_*`` series."""

    content_type = CONTENT_TYPE_LATEST

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        r = self.registry
        self.requests = Counter(
            "rerank_plugins_requests",
            "Rerank requests sent to a model, by outcome.",
            ["endpoint", "model", "status"],
            registry=r,
        )
        self.pairs = Counter("rerank_plugins_pairs", "Query-document pairs scored.", ["model"], registry=r)
        self.latency = Histogram(
            "rerank_plugins_request_seconds",
            "Time to answer a rerank request.",
            ["endpoint", "model"],
            buckets=_LATENCY,
            registry=r,
        )
        self.call_pairs = Histogram(
            "rerank_plugins_call_pairs", "Pairs per scoring call.", ["model"], buckets=_SIZES, registry=r
        )
        self.call_requests = Histogram(
            "rerank_plugins_call_requests", "Requests sharing one scoring call.", ["model"], buckets=_SIZES, registry=r
        )
        self.call_seconds = Histogram(
            "rerank_plugins_call_seconds", "Time of one scoring call.", ["model"], buckets=_LATENCY, registry=r
        )
        self.queue_pairs = Gauge(
            "rerank_plugins_queue_pairs", "Pairs queued or being scored for clients that wait.", ["model"], registry=r
        )
        self.in_flight = Gauge("rerank_plugins_requests_in_flight", "Rerank requests being answered.", registry=r)

    def observe_call(self, model: str, pairs: int, requests: int, seconds: float) -> None:
        """One scoring call of a model's queue (``rerank_plugins.core.queue.CallObserver``)."""
        self.pairs.labels(model).inc(pairs)
        self.call_pairs.labels(model).observe(pairs)
        self.call_requests.labels(model).observe(requests)
        self.call_seconds.labels(model).observe(seconds)

    def render(self, queues: dict[str, Any]) -> bytes:
        """The text format, with each queue's live pairs read now."""
        for name, queue in queues.items():
            self.queue_pairs.labels(name).set(queue.pending_pairs)
        return generate_latest(self.registry)
