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
    """Requests, pairs, latency, batch sizes and queue depth, as ``rerank_plugins_*`` series."""

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
        self.batch_pairs = Histogram(
            "rerank_plugins_batch_pairs", "Pairs per predict call.", ["model"], buckets=_SIZES, registry=r
        )
        self.batch_requests = Histogram(
            "rerank_plugins_batch_requests", "Requests sharing one predict call.", ["model"], buckets=_SIZES, registry=r
        )
        self.batch_seconds = Histogram(
            "rerank_plugins_batch_seconds", "Time of one predict call.", ["model"], buckets=_LATENCY, registry=r
        )
        self.queue_pairs = Gauge("rerank_plugins_queue_pairs", "Pairs queued or being scored.", ["model"], registry=r)
        self.in_flight = Gauge("rerank_plugins_requests_in_flight", "Rerank requests being answered.", registry=r)

    def observe_batch(self, model: str, pairs: int, requests: int, seconds: float) -> None:
        self.pairs.labels(model).inc(pairs)
        self.batch_pairs.labels(model).observe(pairs)
        self.batch_requests.labels(model).observe(requests)
        self.batch_seconds.labels(model).observe(seconds)

    def render(self, engines: dict[str, Any]) -> bytes:
        for name, engine in engines.items():
            self.queue_pairs.labels(name).set(engine.pending_pairs)
        return generate_latest(self.registry)
