"""sentence-transformers' flat ``(query, document)`` pairs as the request core's whole requests, and back.

``predict`` takes pairs; the core takes requests. :func:`requests_of_pairs` groups pairs by query (a listwise
model's pairs that share a query are one list, as ``predict`` documents), :func:`requests_of_lists` cuts them into
given lists (the reranking evaluator's samples), and :func:`gather` puts the scores back in the pairs' order.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import torch

from rerank_plugins.core.ranking import Scored
from rerank_plugins.core.requests import Request, RequestOptions

Place = tuple[int, int]
"""Where one of ``predict``'s pairs went: (its request, its document in that request)."""


def requests_of_pairs(pairs: Sequence[Sequence[str]], options: RequestOptions) -> tuple[list[Request], list[Place]]:
    """``predict``'s pairs as one request per query (in order of first appearance), and where each pair went."""
    documents: dict[str, list[str]] = {}
    order: dict[str, int] = {}
    places: list[Place] = []
    for query, document in pairs:
        members = documents.setdefault(query, [])
        places.append((order.setdefault(query, len(order)), len(members)))
        members.append(document)
    return [Request(query, tuple(members), options) for query, members in documents.items()], places


def requests_of_lists(
    pairs: Sequence[Sequence[str]], sizes: Sequence[int], options: RequestOptions
) -> tuple[list[Request], list[Place]]:
    """``pairs`` cut into consecutive lists of ``sizes`` (one request each, whatever their query texts)."""
    requests, places, start = [], [], 0
    for number, size in enumerate(sizes):
        members = pairs[start : start + size]
        requests.append(Request(members[0][0], tuple(document for _, document in members), options))
        places += [(number, slot) for slot in range(size)]
        start += size
    return requests, places


def sorted_by_index(results: Sequence[Mapping[str, Any]], count: int) -> list[float]:
    """``rank``'s results back as one score per document index."""
    scores = [0.0] * count
    for result in results:
        scores[result["corpus_id"]] = float(result["score"])
    return scores


def gather(scored: Sequence[Scored], places: Sequence[Place], device: torch.device) -> torch.Tensor:
    """The requests' scores back in the order of the pairs they came from."""
    if not places:
        return torch.tensor([], device=device)
    return torch.stack([scored[request].scores[slot] for request, slot in places])
