"""Deprecated: the limits of ``create_app(models, settings)`` before :class:`~rerank_plugins.serve.ServeConfig`.

``ServeSettings`` and ``BatchingOptions`` still work, and become a :class:`ServeConfig`
(:meth:`ServeSettings.to_config`); new code passes a ``ServeConfig`` (``create_app(config, models=...)``).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from rerank_plugins.core.queue import QueueOptions
from rerank_plugins.core.requests import RunOptions
from rerank_plugins.serve.config import ServeConfig


@dataclass(frozen=True)
class BatchingOptions:
    """Deprecated: ``ServeConfig.queue`` (:class:`~rerank_plugins.core.queue.QueueOptions`).

    ``max_batch_pairs`` is now ``max_call_pairs`` (pairs of concurrent requests that share one scoring call);
    ``max_batch_tokens`` the padded tokens per forward pass on an accelerator (``RunOptions.batch_tokens``).
    """

    batch_size: int | None = None
    max_batch_pairs: int = 256
    max_batch_tokens: int = 32768
    max_wait_ms: float = 5.0
    max_queue_pairs: int = 20000

    def __post_init__(self) -> None:
        self.to_queue_options()  # the same checks

    def to_queue_options(self) -> QueueOptions:
        run = RunOptions(batch_size=self.batch_size, batch_tokens=self.max_batch_tokens)
        return QueueOptions(
            max_call_pairs=self.max_batch_pairs,
            max_wait_ms=self.max_wait_ms,
            max_queue_pairs=self.max_queue_pairs,
            run=run,
        )


@dataclass(frozen=True)
class ServeSettings:
    """Deprecated: the same fields are :class:`~rerank_plugins.serve.ServeConfig`'s."""

    batching: BatchingOptions = field(default_factory=BatchingOptions)
    max_documents: int = 1000
    max_body_bytes: int = 8 * 1024 * 1024
    max_pair_chars: int = 64 * 1024 * 1024
    request_timeout: float = 60.0
    api_key: str | None = None
    retry_after: int = 1

    def __post_init__(self) -> None:
        self.to_config()  # the same checks

    def to_config(self, **more: Any) -> ServeConfig:
        """The :class:`ServeConfig` with these settings (and ``more`` of its fields)."""
        return ServeConfig(
            queue=self.batching.to_queue_options(),
            max_documents=self.max_documents,
            max_body_bytes=self.max_body_bytes,
            max_pair_chars=self.max_pair_chars,
            request_timeout=self.request_timeout,
            api_key=self.api_key,
            retry_after=self.retry_after,
            **more,
        )
