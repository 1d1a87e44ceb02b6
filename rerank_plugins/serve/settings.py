"""Limits and batching of a server, checked when they are made."""

from __future__ import annotations

import math
from dataclasses import dataclass, field

from rerank_plugins.serve.batching import BatchingOptions


@dataclass(frozen=True)
class ServeSettings:
    """Limits of the server, and its batching (see :class:`~rerank_plugins.serve.batching.BatchingOptions`)."""

    batching: BatchingOptions = field(default_factory=BatchingOptions)
    max_documents: int = 1000
    """Documents per request, at most (Cohere recommends at most 1,000)."""
    max_body_bytes: int = 8 * 1024 * 1024
    """Bytes of a request body, at most."""
    max_pair_chars: int = 64 * 1024 * 1024
    """Characters of all (query, document) pairs of a request together, at most (the query counts once a pair)."""
    request_timeout: float = 60.0
    """Seconds a request may wait for its scores; then 504."""
    api_key: str | None = None
    """When set, every request but /health and the OpenAPI pages needs ``Authorization: Bearer <key>``."""
    retry_after: int = 1
    """Seconds to wait, said in ``Retry-After`` of a 503."""

    def __post_init__(self) -> None:
        for name in ("max_documents", "max_body_bytes", "max_pair_chars", "retry_after"):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise ValueError(f"{name} must be a positive integer, got {value!r}.")
        if not (isinstance(self.request_timeout, (int, float)) and 0 < self.request_timeout < math.inf):
            raise ValueError(f"request_timeout must be a positive number of seconds, got {self.request_timeout!r}.")
        if self.api_key is not None and not self.api_key.strip():
            raise ValueError("api_key must not be empty.")
        if self.batching.max_queue_pairs < self.max_documents:
            raise ValueError(
                f"max_queue_pairs ({self.batching.max_queue_pairs}) must be at least max_documents "
                f"({self.max_documents}), or a full-size request could never be queued."
            )
