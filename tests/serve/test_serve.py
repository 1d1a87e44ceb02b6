"""`rerank-plugins serve` in process: every endpoint scores as `CrossEncoder.rank`; limits, errors, batching."""

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
from support import DOCUMENTS, KIND_FAMILY, QUERIES

from rerank_plugins.serve import BatchingOptions, ServeSettings, create_app
from rerank_plugins.serve.testing import serve_in_thread
from rerank_plugins.windows import first_tokens

KINDS = list(KIND_FAMILY)
QUERY = QUERIES[0]


def assert_ranked_like(results: list[dict[str, Any]], expected: list[dict[str, Any]], score_key: str) -> None:
    """Same order (by index) and the same scores to 1e-6 as ``CrossEncoder.rank``'s results."""
    assert [r["index"] for r in results] == [e["corpus_id"] for e in expected]
    assert [r[score_key] for r in results] == pytest.approx([e["score"] for e in expected], abs=1e-6)


@pytest.fixture(scope="module")
def client(load_tiny: Callable) -> Iterator[TestClient]:
    """One app serving a tiny model of every kind, under the kind's name (the first is the default)."""
    with TestClient(create_app({kind: load_tiny(kind) for kind in KINDS})) as test_client:
        yield test_client


@pytest.mark.parametrize("kind", KINDS)
def test_every_endpoint_scores_as_rank(client: TestClient, load_tiny: Callable, kind: str) -> None:
    model = load_tiny(kind)
    expected = model.rank(QUERY, DOCUMENTS)
    documents: list[Any] = [d if i % 2 else {"text": d, "id": f"doc-{i}"} for i, d in enumerate(DOCUMENTS)]
    v1 = client.post(
        "/v1/rerank", json={"model": kind, "query": QUERY, "documents": documents, "return_documents": True}
    )
    assert v1.status_code == 200, v1.text
    body = v1.json()
    assert_ranked_like(body["results"], expected, "relevance_score")
    assert body["model"] == kind and body["meta"]["api_version"]["version"] == "1" and body["usage"]["total_tokens"] > 0
    assert [r["document"] for r in body["results"]] == [
        {"text": DOCUMENTS[r["index"]]}
        if r["index"] % 2
        else {"text": DOCUMENTS[r["index"]], "id": f"doc-{r['index']}"}
        for r in body["results"]
    ]
    v2 = client.post("/v2/rerank", json={"model": kind, "query": QUERY, "documents": DOCUMENTS, "top_n": 3})
    assert v2.status_code == 200, v2.text
    assert_ranked_like(v2.json()["results"], expected[:3], "relevance_score")
    tei = client.post(f"/models/{kind}/rerank", json={"query": QUERY, "texts": DOCUMENTS, "return_text": True})
    assert tei.status_code == 200, tei.text
    assert_ranked_like(tei.json(), expected, "score")
    assert [r["text"] for r in tei.json()] == [DOCUMENTS[e["corpus_id"]] for e in expected]
    raw = client.post(f"/models/{kind}/rerank", json={"query": QUERY, "texts": DOCUMENTS, "raw_scores": True})
    assert_ranked_like(raw.json(), model.rank(QUERY, DOCUMENTS, activation_fn=torch.nn.Identity()), "score")
    assert "text" not in raw.json()[0]


def test_default_model_answers_requests_without_a_model_and_tei_root(client: TestClient, load_tiny: Callable) -> None:
    expected = load_tiny(KINDS[0]).rank(QUERIES[1], DOCUMENTS)
    assert_ranked_like(client.post("/rerank", json={"query": QUERIES[1], "texts": DOCUMENTS}).json(), expected, "score")
    v1 = client.post("/v1/rerank", json={"query": QUERIES[1], "documents": DOCUMENTS})
    assert v1.json()["model"] == KINDS[0] and "document" not in v1.json()["results"][0]
    assert_ranked_like(v1.json()["results"], expected, "relevance_score")


def test_max_tokens_per_doc_scores_the_first_tokens(client: TestClient, load_tiny: Callable) -> None:
    model = load_tiny("sequence-classification")
    cut = [first_tokens(model.tokenizer, d, 3) for d in DOCUMENTS]
    assert cut != DOCUMENTS
    response = client.post(
        "/v2/rerank",
        json={"model": "sequence-classification", "query": QUERY, "documents": DOCUMENTS, "max_tokens_per_doc": 3},
    )
    assert_ranked_like(response.json()["results"], model.rank(QUERY, cut), "relevance_score")


def test_top_n_larger_than_the_documents_returns_them_all(client: TestClient) -> None:
    for top_n in (len(DOCUMENTS), 10**30):
        results = client.post("/v2/rerank", json={"query": QUERY, "documents": DOCUMENTS, "top_n": top_n}).json()
        assert sorted(r["index"] for r in results["results"]) == list(range(len(DOCUMENTS)))


def _json(value: Any) -> bytes:
    return json.dumps(value).encode()


GOOD = {"query": "q", "documents": ["a", "b"]}
BAD_REQUESTS = [  # (path, body, status, field or None, what the message says)
    ("/v1/rerank", b'{"query": "q", "documents": [', 400, None, "not valid JSON"),
    ("/v1/rerank", b'{"query": "\xff\xfe", "documents": ["a"]}', 400, None, "not valid JSON"),
    ("/v1/rerank", b"", 422, None, "required"),
    ("/v1/rerank", _json([1, 2]), 422, None, "valid dictionary"),
    ("/v1/rerank", _json({"documents": ["a"]}), 422, "query", "missing"),
    ("/v1/rerank", _json({"query": "q"}), 422, "documents", "missing"),
    ("/v1/rerank", _json({"query": 3, "documents": ["a"]}), 422, "query", "string"),
    ("/v1/rerank", _json({"query": "q", "documents": "a"}), 422, "documents", "list"),
    ("/v1/rerank", _json({"query": "q", "documents": [1]}), 422, "documents[0]", ""),
    ("/v1/rerank", _json({"query": "q", "documents": ["a", {"txt": "b"}]}), 422, "documents[1].text", "missing"),
    ("/v1/rerank", _json({"query": "q", "documents": []}), 422, "documents", "at least 1"),
    ("/v1/rerank", _json({**GOOD, "top_n": 0}), 422, "top_n", "greater than or equal to 1"),
    ("/v1/rerank", _json({**GOOD, "top_n": -5}), 422, "top_n", "greater than or equal to 1"),
    ("/v1/rerank", _json({**GOOD, "top_n": "2"}), 422, "top_n", "integer"),
    ("/v1/rerank", _json({**GOOD, "top_n": 1.5}), 422, "top_n", "integer"),
    ("/v1/rerank", _json({**GOOD, "return_documents": "yes"}), 422, "return_documents", "boolean"),
    ("/v1/rerank", _json({**GOOD, "model": "no-such-model"}), 404, "model", "not served here"),
    ("/v1/rerank", _json({**GOOD, "rank_fields": ["title"]}), 422, "rank_fields", "only"),
    ("/v1/rerank", _json({**GOOD, "max_chunks_per_doc": 4}), 422, "max_chunks_per_doc", "only 1"),
    ("/v1/rerank", b'{"query": "\\ud800", "documents": ["a"]}', 422, "query", "lone surrogate"),
    ("/v2/rerank", _json({"query": "q", "documents": [{"text": "a"}]}), 422, "documents[0]", "string"),
    ("/v2/rerank", _json({**GOOD, "max_tokens_per_doc": 0}), 422, "max_tokens_per_doc", "greater than"),
    ("/rerank", _json({"query": "q", "texts": []}), 422, "texts", "at least 1"),
    ("/rerank", _json({"query": "q", "texts": ["a"], "raw_scores": 1}), 422, "raw_scores", "boolean"),
    (
        "/rerank",
        _json({"query": "q", "texts": ["a"], "truncation_direction": "left"}),
        422,
        "truncation_direction",
        "only",
    ),
    ("/models/nope/rerank", _json({"query": "q", "texts": ["a"]}), 404, "model", "not served"),
]


@pytest.mark.parametrize(("path", "body", "status", "field", "says"), BAD_REQUESTS)
def test_bad_requests_are_4xx_json_naming_the_field(
    client: TestClient, path: str, body: bytes, status: int, field: str | None, says: str
) -> None:
    response = client.post(path, content=body, headers={"content-type": "application/json"})
    assert response.status_code == status, response.text
    error = response.json()
    assert error["field"] == field and says in error["message"] and error["error"] == error["message"]
    if field:
        assert error["message"].startswith(f"{field}: ") or field in error["message"]


def test_unknown_paths_and_methods_are_json(client: TestClient) -> None:
    assert client.get("/v3/rerank").json()["error_type"] == "not_found"
    assert client.get("/v1/rerank").status_code == 405 and client.get("/v1/rerank").json()["error_type"] == "method"


def test_ten_thousand_documents_and_oversized_bodies_are_413(load_tiny: Callable) -> None:
    app = create_app(
        {"m": load_tiny("sequence-classification")}, ServeSettings(max_body_bytes=100_000, max_pair_chars=50_000)
    )
    with TestClient(app) as small:
        many = small.post("/v1/rerank", json={"query": "q", "documents": ["d"] * 10_000})
        assert many.status_code == 413 and many.json()["field"] == "documents" and "10000" in many.json()["message"]
        big = small.post("/v1/rerank", json={"query": "q", "documents": ["x" * 200_000]})
        assert big.status_code == 413 and big.json()["error_type"] == "payload_too_large"

        def chunks() -> Iterator[bytes]:  # no Content-Length: the limit is counted while reading
            yield b'{"query": "q", "documents": ["'
            for _ in range(30):
                yield b"x" * 5000
            yield b'"]}'

        streamed = small.post("/v1/rerank", content=chunks(), headers={"content-type": "application/json"})
        assert streamed.status_code == 413
        assert small.post("/v1/rerank", json={"query": "q", "documents": ["d"] * 1000}).status_code == 200
        repeated = small.post("/rerank", json={"query": "q" * 2000, "texts": ["d"] * 30})  # 60,030 characters
        assert repeated.status_code == 413 and repeated.json()["field"] == "query"
        assert "repeated for 30 documents" in repeated.json()["message"]


def test_api_key(load_tiny: Callable) -> None:
    app = create_app({"m": load_tiny("sequence-classification")}, ServeSettings(api_key="s3cret"))
    with TestClient(app) as keyed:
        missing = keyed.post("/v1/rerank", json=GOOD)
        assert missing.status_code == 401 and missing.headers["www-authenticate"] == "Bearer"
        assert missing.json()["field"] == "Authorization" and missing.json()["message"].startswith("missing API key")
        wrong = keyed.post("/v1/rerank", json=GOOD, headers={"Authorization": "Bearer nope"})
        assert wrong.status_code == 401 and wrong.json()["message"].startswith("wrong API key")
        assert keyed.post("/v1/rerank", json=GOOD, headers={"Authorization": "Basic s3cret"}).status_code == 401
        assert keyed.get("/metrics").status_code == 401 and keyed.get("/v1/models").status_code == 401
        assert keyed.get("/health").status_code == 200 and keyed.get("/openapi.json").status_code == 200
        right = keyed.post("/v1/rerank", json=GOOD, headers={"Authorization": "Bearer s3cret"})
        assert right.status_code == 200


def test_models_health_metrics_openapi(client: TestClient) -> None:
    cards = client.get("/v1/models").json()["data"]
    assert [c["id"] for c in cards] == KINDS
    assert {c["id"]: c["listwise"] for c in cards}["listconranker"] is True and cards[0]["family"] == "monot5"
    assert client.get("/health").json() == {"status": "ok", "models": KINDS, "details": {}}
    client.post("/v1/rerank", json={"model": "deberta", "query": "q", "documents": ["a", "b", "c"]})
    metrics = client.get("/metrics")
    assert metrics.headers["content-type"].startswith("text/plain")
    text = metrics.text
    assert 'rerank_plugins_requests_total{endpoint="/v1/rerank",model="deberta",status="200"}' in text
    assert 'rerank_plugins_pairs_total{model="deberta"}' in text and "rerank_plugins_batch_pairs_bucket" in text
    assert 'rerank_plugins_queue_pairs{model="deberta"} 0.0' in text and "rerank_plugins_requests_in_flight 0.0" in text
    paths = client.get("/openapi.json").json()["paths"]
    assert {"/v1/rerank", "/v2/rerank", "/rerank", "/v1/models", "/health", "/metrics"} <= set(paths)


class Gate:
    """Holds a model's calls to the request core until opened, and records how many pairs each call got."""

    def __init__(self, model: Any, monkeypatch: pytest.MonkeyPatch) -> None:
        self.calls: list[int] = []
        self.entered = threading.Event()
        self.open = threading.Event()
        real = model.rank_requests

        def rank_requests(requests: list, *args: Any) -> Any:
            self.calls.append(sum(len(request.documents) for request in requests))
            self.entered.set()
            assert self.open.wait(20), "the test never opened the gate"
            return real(requests, *args)

        monkeypatch.setattr(model, "rank_requests", rank_requests)


def _post_in_thread(url: str, body: dict[str, Any], into: list[httpx.Response]) -> threading.Thread:
    thread = threading.Thread(target=lambda: into.append(httpx.post(url, json=body, timeout=30)))
    thread.start()
    return thread


def _wait_until(condition: Callable[[], bool], timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "timed out waiting"
        time.sleep(0.01)


def test_concurrent_requests_share_one_core_call(load_tiny: Callable, monkeypatch: pytest.MonkeyPatch) -> None:
    model = load_tiny("sequence-classification", max_length=512)  # a fresh instance: its core calls are gated
    gate = Gate(model, monkeypatch)
    app = create_app({"m": model}, ServeSettings(batching=BatchingOptions(max_wait_ms=20)))
    sizes = [3, 1, 5, 2, 8]
    with serve_in_thread(app) as url:
        first: list[httpx.Response] = []
        threads = [_post_in_thread(f"{url}/v1/rerank", {"query": QUERY, "documents": DOCUMENTS[:2]}, first)]
        assert gate.entered.wait(10)
        answers: list[list[httpx.Response]] = [[] for _ in sizes]
        for i, size in enumerate(sizes):  # queued behind the held batch
            body = {"query": QUERIES[i % 3], "documents": DOCUMENTS[:size]}
            threads.append(_post_in_thread(f"{url}/v1/rerank", body, answers[i]))
        engine = app.state.engines["m"]
        _wait_until(lambda: engine.pending_pairs == 2 + sum(sizes))
        gate.open.set()
        for thread in threads:
            thread.join(30)
    assert gate.calls == [2, sum(sizes)]  # one call of the request core for the five queued requests
    monkeypatch.undo()
    for i, size in enumerate(sizes):
        expected = model.rank(QUERIES[i % 3], DOCUMENTS[:size])
        assert_ranked_like(answers[i][0].json()["results"], expected, "relevance_score")
    assert_ranked_like(first[0].json()["results"], model.rank(QUERY, DOCUMENTS[:2]), "relevance_score")


def test_listwise_requests_are_scored_one_list_at_a_time(load_tiny: Callable, monkeypatch: pytest.MonkeyPatch) -> None:
    model = load_tiny("listconranker", max_length=512)
    gate = Gate(model, monkeypatch)
    app = create_app({"m": model}, ServeSettings(batching=BatchingOptions(max_wait_ms=20)))
    with serve_in_thread(app) as url:
        answers: list[list[httpx.Response]] = [[], [], []]
        threads = [
            _post_in_thread(f"{url}/v2/rerank", {"query": QUERY, "documents": DOCUMENTS[: 3 + i]}, answers[i])
            for i in range(3)
        ]
        _wait_until(lambda: app.state.engines["m"].pending_pairs == 3 + 4 + 5)
        gate.open.set()
        for thread in threads:
            thread.join(30)
    assert sorted(gate.calls) == [3, 4, 5]  # same query, three lists: never merged into one
    monkeypatch.undo()
    for i in range(3):
        assert_ranked_like(answers[i][0].json()["results"], model.rank(QUERY, DOCUMENTS[: 3 + i]), "relevance_score")


def test_full_queue_is_503_with_retry_after(load_tiny: Callable, monkeypatch: pytest.MonkeyPatch) -> None:
    model = load_tiny("sequence-classification", max_length=512)
    gate = Gate(model, monkeypatch)
    settings = ServeSettings(batching=BatchingOptions(max_queue_pairs=4), max_documents=4)
    with serve_in_thread(create_app({"m": model}, settings)) as url:
        held: list[httpx.Response] = []
        thread = _post_in_thread(f"{url}/v1/rerank", {"query": "q", "documents": ["a", "b", "c", "d"]}, held)
        assert gate.entered.wait(10)
        refused = httpx.post(f"{url}/v1/rerank", json={"query": "q", "documents": ["e"]})
        assert refused.status_code == 503 and refused.headers["retry-after"] == "1"
        assert refused.json()["error_type"] == "overloaded"
        gate.open.set()
        thread.join(30)
        assert held[0].status_code == 200
        assert httpx.post(f"{url}/v1/rerank", json={"query": "q", "documents": ["e"]}).status_code == 200


def test_request_timeout_is_504(load_tiny: Callable, monkeypatch: pytest.MonkeyPatch) -> None:
    model = load_tiny("sequence-classification", max_length=512)
    gate = Gate(model, monkeypatch)
    with TestClient(create_app({"m": model}, ServeSettings(request_timeout=0.3))) as timed:
        response = timed.post("/v1/rerank", json=GOOD)
        gate.open.set()
        assert response.status_code == 504 and response.json()["error_type"] == "timeout"
        engine = timed.app.state.engines["m"]
        _wait_until(lambda: engine.pending_pairs == 0)  # the held batch finished; the worker goes on
        assert engine.alive and timed.get("/health").json()["status"] == "ok"
        metrics = timed.get("/metrics").text
        assert 'rerank_plugins_requests_total{endpoint="/v1/rerank",model="m",status="504"} 1.0' in metrics


def test_a_client_that_disconnects_does_not_stop_the_others(
    load_tiny: Callable, monkeypatch: pytest.MonkeyPatch
) -> None:
    model = load_tiny("sequence-classification", max_length=512)
    gate = Gate(model, monkeypatch)
    app = create_app({"m": model})
    with serve_in_thread(app) as url:
        host, port = url.removeprefix("http://").split(":")
        body = _json({"query": "q", "documents": ["a", "b"]})
        with socket.create_connection((host, int(port)), timeout=10) as raw:
            raw.sendall(
                b"POST /v1/rerank HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                b"Content-Length: %d\r\n\r\n%s" % (len(body), body)
            )
            assert gate.entered.wait(10)
        # the client is gone; the server notices, counts it, and keeps serving
        status = 'rerank_plugins_requests_total{endpoint="/v1/rerank",model="m",status="499"} 1.0'
        _wait_until(lambda: status in httpx.get(f"{url}/metrics").text)
        gate.open.set()
        answer = httpx.post(f"{url}/v1/rerank", json={"query": QUERY, "documents": DOCUMENTS})
        assert answer.status_code == 200
    monkeypatch.undo()
    assert_ranked_like(answer.json()["results"], model.rank(QUERY, DOCUMENTS), "relevance_score")


def test_settings_are_checked() -> None:
    with pytest.raises(ValueError, match="max_queue_pairs"):
        ServeSettings(batching=BatchingOptions(max_queue_pairs=10), max_documents=100)
    with pytest.raises(ValueError, match="max_wait_ms"):
        BatchingOptions(max_wait_ms=-1)
    with pytest.raises(ValueError, match="batch_size"):
        BatchingOptions(batch_size=0)
    with pytest.raises(ValueError, match="request_timeout"):
        ServeSettings(request_timeout=0)
    with pytest.raises(ValueError, match="api_key"):
        ServeSettings(api_key=" ")


def test_a_failing_request_does_not_fail_the_others_of_its_batch(
    load_tiny: Callable, monkeypatch: pytest.MonkeyPatch
) -> None:
    model = load_tiny("sequence-classification", max_length=512)
    gate = Gate(model, monkeypatch)
    gated = model.rank_requests

    def rank_requests(requests: list, *args: Any) -> Any:  # a model that cannot score one document
        result = gated(requests, *args)
        if any("boom" in request.documents for request in requests):
            raise RuntimeError("cannot score 'boom'")
        return result

    monkeypatch.setattr(model, "rank_requests", rank_requests)
    app = create_app({"m": model}, ServeSettings(batching=BatchingOptions(max_wait_ms=20)))
    with serve_in_thread(app) as url:
        first: list[httpx.Response] = []
        threads = [_post_in_thread(f"{url}/v1/rerank", {"query": "q", "documents": ["a"]}, first)]
        assert gate.entered.wait(10)
        good: list[httpx.Response] = []
        bad: list[httpx.Response] = []
        threads.append(_post_in_thread(f"{url}/v1/rerank", {"query": QUERY, "documents": DOCUMENTS}, good))
        threads.append(_post_in_thread(f"{url}/v1/rerank", {"query": "q", "documents": ["x", "boom"]}, bad))
        _wait_until(lambda: app.state.engines["m"].pending_pairs == 1 + len(DOCUMENTS) + 2)
        gate.open.set()
        for thread in threads:
            thread.join(30)
    assert gate.calls[:2] == [1, len(DOCUMENTS) + 2]  # the two queued requests were batched, then retried alone
    assert bad[0].status_code == 500 and bad[0].json()["error_type"] == "backend"
    assert "cannot score 'boom'" in bad[0].json()["message"]
    monkeypatch.undo()
    assert_ranked_like(good[0].json()["results"], model.rank(QUERY, DOCUMENTS), "relevance_score")
