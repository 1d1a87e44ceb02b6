"""Issue 22 (items 1-8, and 29's empty query): what a client sends is never a 5xx or a wrong answer, a 500 closes
its connection, a gone client's work stops counting and stops, and errors say what is wrong."""

from __future__ import annotations

import json
import socket
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import httpx
import pytest
import torch
from fastapi.testclient import TestClient
from support import DOCUMENTS, QUERIES

from rerank_plugins.core import RunOptions
from rerank_plugins.serve import QueueOptions, ServeConfig, create_app
from rerank_plugins.serve.testing import serve_in_thread

QUERY = QUERIES[0]


def scores_by_index(results: list[dict[str, Any]], key: str = "relevance_score") -> dict[int, float]:
    return {r["index"]: r[key] for r in results}


def expected_by_index(model: Any, query: str, documents: list[str]) -> dict[int, float]:
    return {r["corpus_id"]: r["score"] for r in model.rank(query, documents)}


def wait_until(condition: Callable[[], bool], timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "timed out waiting"
        time.sleep(0.01)


@pytest.fixture(scope="module")
def client(load_tiny: Callable) -> Iterator[TestClient]:
    models = {"sc": load_tiny("sequence-classification"), "ql": load_tiny("query-likelihood")}
    with TestClient(create_app(ServeConfig(), models=models)) as test_client:
        yield test_client


# -- 1: every echoed field is valid Unicode --------------------------------------------------------------------
@pytest.mark.parametrize(
    ("document", "where"),
    [
        ('{"text": "ok", "title": "\\ud800"}', "title"),
        ('{"text": "ok", "meta": {"tags": ["fine", "\\udfff"]}}', "meta.tags[1]"),
        ('{"text": "ok", "\\ud800": 1}', "a field name or value"),
    ],
)
def test_a_lone_surrogate_in_an_echoed_field_is_a_422(client: TestClient, document: str, where: str) -> None:
    body = '{"query": "q", "return_documents": true, "documents": [' + document + "]}"
    response = client.post("/v1/rerank", content=body.encode(), headers={"content-type": "application/json"})
    assert response.status_code == 422, response.text
    error = response.json()
    assert error["field"] == "documents[0]" and where in error["message"] and "lone surrogate" in error["message"]
    assert error["message"].startswith("documents[0]: ")


# -- 2: the core's input errors are 4xx, naming the field ------------------------------------------------------
def test_a_query_too_long_for_query_likelihood_is_a_422_naming_query(client: TestClient, load_tiny: Callable) -> None:
    response = client.post("/v2/rerank", json={"model": "ql", "query": "capital " * 600, "documents": ["a", "b"]})
    assert response.status_code == 422, response.text
    error = response.json()
    assert error["field"] == "query" and error["error_type"] == "validation"
    assert "603 tokens" in error["message"] and "max_length=512" in error["message"]
    fine = client.post("/v2/rerank", json={"model": "ql", "query": QUERY, "documents": DOCUMENTS})  # still serving
    assert scores_by_index(fine.json()["results"]) == pytest.approx(
        expected_by_index(load_tiny("query-likelihood"), QUERY, DOCUMENTS), abs=1e-6
    )


# -- 29: an empty query ------------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("path", "body", "field"),
    [
        ("/v1/rerank", {"query": "", "documents": ["a"]}, "query"),
        ("/v2/rerank", {"query": "", "documents": ["a"]}, "query"),
        ("/rerank", {"query": "", "texts": ["a"]}, "query"),
        ("/score", {"text_1": "", "text_2": ["a"]}, "text_1"),
    ],
)
def test_an_empty_query_is_a_422(client: TestClient, path: str, body: dict[str, Any], field: str) -> None:
    response = client.post(path, json=body)
    assert response.status_code == 422, response.text
    assert response.json()["field"] == field and "must not be empty" in response.json()["message"]


# -- 3 and 8: a 500 closes the connection; a non-finite score is a 500 naming the model -----------------------
def test_non_finite_scores_are_a_500_that_closes_the_connection(load_tiny: Callable) -> None:
    broken = load_tiny("sequence-classification", max_length=512)  # a fresh instance, spoilt below
    with torch.no_grad():
        dict(broken.named_parameters())["0.model.classifier.bias"].fill_(float("nan"))
    app = create_app(ServeConfig(), models={"broken": broken, "fine": load_tiny("sequence-classification")})
    with serve_in_thread(app) as url, httpx.Client(base_url=url, timeout=30) as http:
        failed = http.post("/v1/rerank", json={"model": "broken", "query": QUERY, "documents": DOCUMENTS})
        assert failed.status_code == 500 and failed.headers["connection"] == "close"
        error = failed.json()
        assert error["error_type"] == "backend" and "model 'broken'" in error["message"]
        assert f"{len(DOCUMENTS)} non-finite score(s) (nan for document 0" in error["message"]
        # The same client's next request is answered, on a new connection.
        again = http.post("/v1/rerank", json={"model": "fine", "query": QUERY, "documents": DOCUMENTS})
        assert again.status_code == 200
    expected = expected_by_index(load_tiny("sequence-classification"), QUERY, DOCUMENTS)
    assert scores_by_index(again.json()["results"]) == pytest.approx(expected, abs=1e-6)


class HeldCalls:
    """Holds the model's calls of the request core until released."""

    def __init__(self, model: Any, monkeypatch: pytest.MonkeyPatch) -> None:
        self.entered = threading.Event()
        self.release = threading.Event()
        real = model.rank_requests

        def rank_requests(requests: list, *args: Any) -> Any:
            self.entered.set()
            assert self.release.wait(60), "the test never released the call"
            return real(requests, *args)

        monkeypatch.setattr(model, "rank_requests", rank_requests)


def send_and_leave(url: str, body: dict[str, Any]) -> socket.socket:
    """A raw connection that sends ``body`` to /v1/rerank; the caller closes it to leave."""
    host, port = url.removeprefix("http://").split(":")
    data = json.dumps(body).encode()
    raw = socket.create_connection((host, int(port)), timeout=30)
    raw.sendall(
        b"POST /v1/rerank HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
        b"Content-Length: %d\r\n\r\n%s" % (len(data), data)
    )
    return raw


def gone_clients(url: str) -> float:
    line = 'rerank_plugins_requests_total{endpoint="/v1/rerank",model="m",status="499"}'
    found = [row for row in httpx.get(f"{url}/metrics").text.splitlines() if row.startswith(line)]
    return float(found[0].split()[-1]) if found else 0.0


# -- 4: only live work counts against the queue bound ------------------------------------------------------------
def test_pairs_of_clients_that_left_do_not_count(load_tiny: Callable, monkeypatch: pytest.MonkeyPatch) -> None:
    model = load_tiny("sequence-classification", max_length=512)
    held = HeldCalls(model, monkeypatch)
    config = ServeConfig(queue=QueueOptions(max_queue_pairs=30, max_call_pairs=10), max_documents=10)
    app = create_app(config, models={"m": model})
    documents = [f"{DOCUMENTS[i % len(DOCUMENTS)]} {i}" for i in range(10)]
    with serve_in_thread(app) as url:
        queue = app.state.service.queues["m"]
        first = send_and_leave(url, {"query": QUERY, "documents": documents})  # being scored
        assert held.entered.wait(30)
        queued = [send_and_leave(url, {"query": q, "documents": documents}) for q in QUERIES[1:]]
        wait_until(lambda: queue.pending_pairs == 30)
        for raw in [first, *queued]:
            raw.close()
        wait_until(lambda: gone_clients(url) == 3)
        assert (
            queue.pending_pairs == 0 and 'rerank_plugins_queue_pairs{model="m"} 0.0' in httpx.get(f"{url}/metrics").text
        )
        answers: list[httpx.Response] = []
        body = {"query": QUERY, "documents": documents}
        thread = threading.Thread(target=lambda: answers.append(httpx.post(f"{url}/v1/rerank", json=body, timeout=60)))
        thread.start()
        wait_until(lambda: queue.pending_pairs == 10)  # accepted: 10 live pairs, not 40
        held.release.set()
        thread.join(60)
    monkeypatch.undo()
    assert answers[0].status_code == 200, answers[0].text
    assert scores_by_index(answers[0].json()["results"]) == pytest.approx(
        expected_by_index(model, QUERY, documents), abs=1e-6
    )


# -- 5: abandoned work stops at the next forward batch -----------------------------------------------------------
def test_a_timed_out_request_stops_at_the_next_forward_batch(load_tiny: Callable) -> None:
    model = load_tiny("sequence-classification", max_length=512)  # a fresh instance: its forward is counted
    forwards: list[int] = []
    started, release = threading.Event(), threading.Event()
    real = model.forward

    def forward(features: Any, **kwargs: Any) -> Any:
        forwards.append(len(features["input_ids"]))
        if len(forwards) == 1:
            started.set()
            assert release.wait(60)
        return real(features, **kwargs)

    model.forward = forward  # type: ignore[method-assign]
    config = ServeConfig(request_timeout=0.5, queue=QueueOptions(run=RunOptions(batch_size=1)))
    documents = [f"{DOCUMENTS[i % len(DOCUMENTS)]} {i}" for i in range(40)]  # 40 forward batches of one pair
    app = create_app(config, models={"m": model})
    with serve_in_thread(app) as url:
        timed_out = httpx.post(f"{url}/v1/rerank", json={"query": QUERY, "documents": documents}, timeout=60)
        assert started.is_set() and timed_out.status_code == 504
        assert app.state.service.queues["m"].pending_pairs == 0
        release.set()
        next_one = httpx.post(f"{url}/v1/rerank", json={"query": QUERY, "documents": DOCUMENTS[:1]}, timeout=60)
    assert next_one.status_code == 200, next_one.text
    assert forwards == [1, 1]  # the abandoned call's first forward, then the next request's: 39 were never run
    del model.forward
    assert scores_by_index(next_one.json()["results"]) == pytest.approx(
        expected_by_index(model, QUERY, DOCUMENTS[:1]), abs=1e-6
    )


# -- 7: TEI's named route for names with a slash -----------------------------------------------------------------
def test_tei_named_route_takes_a_hub_id_with_a_slash(load_tiny: Callable) -> None:
    model = load_tiny("sequence-classification")
    app = create_app(ServeConfig(), models={"unicamp-dl/InRanker-base": model, "other": load_tiny("monot5")})
    with TestClient(app) as tei:
        response = tei.post("/models/unicamp-dl/InRanker-base/rerank", json={"query": QUERY, "texts": DOCUMENTS})
        assert response.status_code == 200, response.text
        unknown = tei.post("/models/org/nope/rerank", json={"query": QUERY, "texts": DOCUMENTS})
    assert scores_by_index(response.json(), "score") == pytest.approx(
        expected_by_index(model, QUERY, DOCUMENTS), abs=1e-6
    )
    assert unknown.status_code == 404 and "'org/nope' is not served" in unknown.json()["message"]


# -- 8: errors that say what is wrong -------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("body", "headers", "status", "says"),
    [
        (b'{"query": "q", "documents": ["a"]}', {}, 415, "'Content-Type: application/json' (got no Content-Type)"),
        (
            b'{"query": "q", "documents": ["a"]}',
            {"content-type": "application/x-www-form-urlencoded"},
            415,
            "got 'Content-Type: application/x-www-form-urlencoded'",
        ),
        (b"[" * 2000 + b"]" * 2000, {"content-type": "application/json"}, 400, "nested too deeply"),
        (
            b'{"query": "q", "top_n": ' + b"9" * 4301 + b"}",
            {"content-type": "application/json"},
            400,
            "number too long",
        ),
    ],
)
def test_bodies_that_cannot_be_read_say_why(
    client: TestClient, body: bytes, headers: dict[str, str], status: int, says: str
) -> None:
    response = client.post("/v1/rerank", content=body, headers=headers)
    assert response.status_code == status, response.text
    assert says in response.json()["message"]


def test_a_non_ascii_api_key_sent_as_utf8_matches(load_tiny: Callable) -> None:
    key = "clé-секрет"
    app = create_app(ServeConfig(api_key=key), models={"m": load_tiny("sequence-classification")})
    with TestClient(app) as keyed:
        utf8 = {"Authorization": b"Bearer " + key.encode("utf-8")}
        right = keyed.post("/v1/rerank", json={"query": QUERY, "documents": DOCUMENTS}, headers=utf8)
        wrong = keyed.post(
            "/v1/rerank", json={"query": QUERY, "documents": DOCUMENTS}, headers={"Authorization": b"Bearer cl\xc3\xa9"}
        )
    assert right.status_code == 200, right.text
    assert wrong.status_code == 401
