"""The request core: every frontend hands whole requests to one scoring loop.

``rank_requests(model, [Request(query, documents, RequestOptions(...))], RunOptions(...))`` returns one
:class:`Ranking` per request; ``score_requests`` returns the score tensors (for ``predict``). The
:class:`RequestQueue` gathers concurrent requests into shared calls (the server). See ``docs/architecture.md``.

The request types and the queue import no torch; the scoring loop (``core.ranking``) is imported on first use, so
that a frontend can build and check requests (the server's options, the command line) without loading torch.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from rerank_plugins.core.requests import Cancelled, RankedDocument, Ranking, Request, RequestOptions, RunOptions

if TYPE_CHECKING:
    from rerank_plugins.core.queue import QueueFull, QueueOptions, QueueStopped, RequestQueue
    from rerank_plugins.core.ranking import Scored, rank_requests, score_requests

__all__ = [
    "Cancelled",
    "QueueFull",
    "QueueOptions",
    "QueueStopped",
    "RankedDocument",
    "Ranking",
    "Request",
    "RequestOptions",
    "RequestQueue",
    "RunOptions",
    "Scored",
    "rank_requests",
    "score_requests",
]


def __getattr__(name: str) -> Any:
    if name in ("Scored", "rank_requests", "score_requests"):
        from rerank_plugins.core import ranking

        return getattr(ranking, name)
    if name in ("QueueFull", "QueueOptions", "QueueStopped", "RequestQueue"):
        from rerank_plugins.core import queue

        return getattr(queue, name)
    raise AttributeError(f"module 'rerank_plugins.core' has no attribute {name!r}")
