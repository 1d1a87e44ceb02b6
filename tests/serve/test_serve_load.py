"""Load and fuzz: 32 concurrent clients x 20 requests all answered as ``CrossEncoder.rank`` answers them one at a
time; a schemathesis fuzz of the OpenAPI schema finds no 5xx."""

from __future__ import annotations

import asyncio
import itertools
import random
from collections.abc import Callable
from typing import Any

import httpx
import pytest
from support import DOCUMENTS, QUERIES

from rerank_plugins.serve import ServeSettings, create_app
from rerank_plugins.serve.testing import serve_in_thread
from rerank_plugins.testing import CORPUS

CLIENTS, REQUESTS = 32, 20
TEXTS = [*DOCUMENTS, *CORPUS]


def test_32_clients_x_20_requests_match_the_sequential_scores(load_tiny: Callable) -> None:
    models = {"pointwise": load_tiny("sequence-classification"), "listwise": load_tiny("listconranker")}
    generator = random.Random(0)
    shapes = []  # 24 distinct requests of 1 to 12 documents, over both models and all three endpoints
    for i in range(24):
        size = generator.choice([1, 2, 3, 5, 8, 12])
        shapes.append(
            (
                "listwise" if i % 4 == 3 else "pointwise",
                QUERIES[i % 3],
                [generator.choice(TEXTS) for _ in range(size)],
                ("/v1/rerank", "/v2/rerank", "/rerank")[i % 3],
            )
        )
    # the sequential reference: each request's documents ranked alone
    expected = [[(r["corpus_id"], r["score"]) for r in models[m].rank(q, docs)] for m, q, docs, _ in shapes]

    def body(shape: tuple[str, str, list[str], str]) -> dict[str, Any]:
        model, query, documents, path = shape
        if path == "/rerank":
            return {"query": query, "texts": documents}
        return {"model": model, "query": query, "documents": documents}

    async def client(http: httpx.AsyncClient, number: int) -> list[tuple[int, list[tuple[int, float]]]]:
        answers = []
        for j in range(REQUESTS):
            k = (number * 7 + j) % len(shapes)
            if shapes[k][3] == "/rerank" and shapes[k][0] == "listwise":
                k = (k + 1) % len(shapes)  # TEI's /rerank serves the first (pointwise) model
            path = shapes[k][3] if shapes[k][3] != "/rerank" else "/models/pointwise/rerank"
            response = await http.post(path, json=body(shapes[k]))
            assert response.status_code == 200, response.text
            payload = response.json()
            rows = payload if isinstance(payload, list) else payload["results"]
            answers.append((k, [(r["index"], r.get("relevance_score", r.get("score"))) for r in rows]))
        return answers

    async def run(url: str) -> list[list[tuple[int, list[tuple[int, float]]]]]:
        limits = httpx.Limits(max_connections=CLIENTS)
        async with httpx.AsyncClient(base_url=url, limits=limits, timeout=60) as http:
            return await asyncio.gather(*(client(http, n) for n in range(CLIENTS)))

    app = create_app(models, ServeSettings(request_timeout=600))  # a slow, shared machine must not 504
    with serve_in_thread(app) as url:
        results = asyncio.run(run(url))
        metrics = httpx.get(f"{url}/metrics").text
    answered = [answer for per_client in results for answer in per_client]
    assert len(answered) == CLIENTS * REQUESTS
    for k, got in answered:
        # Scores by index equal the sequential ones to 1e-6 and come best first, so the order is rank's up to
        # scores within 1e-6 (a duplicate document's score can move by a float32 rounding with its batch).
        assert dict(got) == pytest.approx(dict(expected[k]), abs=1e-6)
        assert all(a[1] >= b[1] for a, b in itertools.pairwise(got))
        assert [index for index, _ in got] == [index for index, _ in expected[k]] or _near_ties(got, expected[k])
    # requests did share predict calls: fewer calls than pointwise requests
    requests = sum(1 for k, _ in answered if shapes[k][0] == "pointwise")
    calls = next(
        float(line.split()[-1])
        for line in metrics.splitlines()
        if line.startswith('rerank_plugins_batch_requests_count{model="pointwise"}')
    )
    assert calls < requests


def _near_ties(got: list[tuple[int, float]], expected: list[tuple[int, float]]) -> bool:
    """Orders that differ only where the expected scores are within 1e-6 of each other."""
    return all(
        g == e or abs(dict(expected)[g] - score) <= 1e-6 for (g, _), (e, score) in zip(got, expected, strict=True)
    )


def test_fuzzed_requests_never_get_a_5xx(load_tiny: Callable) -> None:
    """Schemathesis draws requests from the OpenAPI schema (valid and not); every answer is below 500."""
    schemathesis = pytest.importorskip("schemathesis", reason='pip install "rerank-plugins[test-clients]"')
    from hypothesis import HealthCheck, given, settings, strategies

    app = create_app({"m": load_tiny("sequence-classification")}, ServeSettings(max_documents=50))
    schema = schemathesis.openapi.from_asgi("/openapi.json", app)
    operations = [result.ok() for result in schema.get_all_operations()]
    assert len(operations) == 7  # the three rerank APIs, TEI by name, models, health, metrics
    seen: set[int] = set()

    @given(case=strategies.one_of([operation.as_strategy() for operation in operations]))
    @settings(max_examples=60, deadline=None, suppress_health_check=list(HealthCheck), database=None)
    def check(case: Any) -> None:
        response = case.call()
        seen.add(response.status_code)
        assert response.status_code < 500, (case.path, case.body, response.status_code, response.text)
        if response.status_code >= 400:
            assert response.json()["message"]

    check()
    assert 200 in seen and any(400 <= status < 500 for status in seen)
