"""vLLM's score API: ``POST /score`` and ``POST /v1/score``.

``text_1`` is the query and ``text_2`` one text or a list; ``data[i].score`` is the score of ``text_2[i]``, in
input order (vLLM's shape). What this server does not take (a list of several queries, vLLM's truncation and
multimodal options) is a 422 that names the field; see ``docs/serving.md``.
"""

from __future__ import annotations

import time
import uuid

from fastapi import Request as HttpRequest

from rerank_plugins.core.requests import Request, RequestOptions
from rerank_plugins.serve.errors import ApiError
from rerank_plugins.serve.schemas import ScoreData, ScoreRequest, ScoreResponse, ScoreUsage
from rerank_plugins.serve.service import RerankService, raw_scores


async def score(body: ScoreRequest, request: HttpRequest) -> ScoreResponse:
    """Score `text_2` (one text or a list) against the query `text_1`; `data[i]` is `text_2[i]`'s score."""
    query = _query(body)
    if body.truncate_prompt_tokens is not None:
        raise ApiError(
            422,
            "truncate_prompt_tokens: not supported; inputs longer than the model's max_length are truncated as "
            "its family does",
            field="truncate_prompt_tokens",
        )
    if body.mm_processor_kwargs is not None:
        raise ApiError(422, "mm_processor_kwargs: not supported (texts only)", field="mm_processor_kwargs")
    if body.priority != 0:
        raise ApiError(422, "priority: only 0; requests are served in arrival order", field="priority")
    texts = [body.text_2] if isinstance(body.text_2, str) else list(body.text_2)
    if not texts:
        raise ApiError(422, "text_2: give at least one text to score", field="text_2")
    activation = [value for value in (body.use_activation, body.activation, body.softmax) if value is not None]
    if len(set(activation)) > 1:
        raise ApiError(422, "use_activation: activation and softmax (its older names) disagree", field="use_activation")
    options = raw_scores() if activation and not activation[0] else RequestOptions()
    service = RerankService.of(request)
    queue = service.queue(body.model)
    service.check_size(query, texts, "text_2")
    ranking = await service.rank(request, request.url.path, queue, Request(query, tuple(texts), options))
    data = [ScoreData(index=index, score=value) for index, value in enumerate(ranking.scores)]
    usage = ScoreUsage(prompt_tokens=ranking.tokens, total_tokens=ranking.tokens)
    return ScoreResponse(
        id=f"score-{uuid.uuid4().hex}", created=int(time.time()), model=queue.name, data=data, usage=usage
    )


def _query(body: ScoreRequest) -> str:
    if isinstance(body.text_1, str):
        return body.text_1
    if len(body.text_1) == 1:
        return body.text_1[0]
    raise ApiError(
        422,
        f"text_1: one query, got a list of {len(body.text_1)}; pairs of several queries (vLLM's N:N scoring) are not "
        "supported: send one request per query",
        field="text_1",
    )
