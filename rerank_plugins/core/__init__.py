"""The request core: every frontend hands whole requests to one scoring loop.

``rank_requests(model, [Request(query, documents, RequestOptions(...))], RunOptions(...))`` returns one
:class:`Ranking` per request; ``score_requests`` returns the score tensors (for ``predict``). The
:class:`RequestQueue` batches concurrent requests (the server). See ``docs/architecture.md``.
"""

from rerank_plugins.core.ranking import Scored, rank_requests, score_requests
from rerank_plugins.core.requests import RankedDocument, Ranking, Request, RequestOptions, RunOptions

__all__ = [
    "RankedDocument",
    "Ranking",
    "Request",
    "RequestOptions",
    "RunOptions",
    "Scored",
    "rank_requests",
    "score_requests",
]
