"""vLLM's score API (issue 20, item 4), through a real HTTP client (``requests``) against a running server:
``data[i].score`` is ``text_2[i]``'s score, exactly ``CrossEncoder.rank``'s, in input order."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import pytest
import requests
import torch
from support import DOCUMENTS, QUERIES

from rerank_plugins.core import Request
from rerank_plugins.serve import ServeConfig, create_app
from rerank_plugins.serve.testing import serve_in_thread

KEY = "vllm-key"
KINDS = ["monot5", "listconranker", "query-likelihood"]


@pytest.fixture(scope="module")
def url(load_tiny: Callable) -> Iterator[str]:
    app = create_app(ServeConfig(api_key=KEY), models={kind: load_tiny(kind) for kind in KINDS})
    with serve_in_thread(app) as base_url:
        yield base_url


def score(url: str, path: str, body: dict[str, Any]) -> requests.Response:
    return requests.post(f"{url}{path}", json=body, headers={"Authorization": f"Bearer {KEY}"}, timeout=60)


def by_index(model: Any, query: str, documents: list[str], **kwargs: Any) -> list[float]:
    scores = {r["corpus_id"]: r["score"] for r in model.rank(query, documents, **kwargs)}
    return [scores[i] for i in range(len(documents))]


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("path", ["/score", "/v1/score"])
def test_scores_in_input_order_equal_rank(url: str, load_tiny: Callable, kind: str, path: str) -> None:
    model = load_tiny(kind)
    response = score(url, path, {"model": kind, "text_1": QUERIES[1], "text_2": DOCUMENTS})
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["object"] == "list" and body["model"] == kind and body["id"].startswith("score-")
    assert isinstance(body["created"], int)
    assert [item["index"] for item in body["data"]] == list(range(len(DOCUMENTS)))
    assert all(item["object"] == "score" for item in body["data"])
    expected = by_index(model, QUERIES[1], DOCUMENTS)
    assert [item["score"] for item in body["data"]] == pytest.approx(expected, abs=1e-6)
    (ranking,) = model.rank_requests([Request(QUERIES[1], tuple(DOCUMENTS))])
    assert body["usage"] == {"prompt_tokens": ranking.tokens, "total_tokens": ranking.tokens, "completion_tokens": 0}


def test_one_text_a_list_of_one_query_and_raw_scores(url: str, load_tiny: Callable) -> None:
    model = load_tiny("monot5")
    one = score(url, "/score", {"text_1": [QUERIES[0]], "text_2": DOCUMENTS[0]}).json()  # the default model
    assert [item["score"] for item in one["data"]] == pytest.approx(by_index(model, QUERIES[0], DOCUMENTS[:1]))
    raw = score(url, "/v1/score", {"text_1": QUERIES[0], "text_2": DOCUMENTS, "use_activation": False}).json()
    expected = by_index(model, QUERIES[0], DOCUMENTS, activation_fn=torch.nn.Identity())
    assert [item["score"] for item in raw["data"]] == pytest.approx(expected, abs=1e-6)
    assert expected != pytest.approx(by_index(model, QUERIES[0], DOCUMENTS), abs=1e-3)  # raw is not the default


@pytest.mark.parametrize(
    ("body", "status", "field", "says"),
    [
        ({"text_1": ["q1", "q2"], "text_2": ["a", "b"]}, 422, "text_1", "one query, got a list of 2"),
        ({"text_1": "q", "text_2": []}, 422, "text_2", "at least one text"),
        ({"text_1": "q", "text_2": ["a"], "truncate_prompt_tokens": 5}, 422, "truncate_prompt_tokens", "not supported"),
        ({"text_1": "q", "text_2": ["a"], "priority": 3}, 422, "priority", "only 0"),
        ({"text_1": "q", "text_2": ["a"], "use_activation": True, "softmax": False}, 422, "use_activation", "disagree"),
        ({"text_1": "q", "text_2": ["a"], "model": "nope"}, 404, "model", "not served"),
        ({"text_1": 3, "text_2": ["a"]}, 422, "text_1", ""),
    ],
)
def test_what_is_left_out_is_a_4xx_naming_the_field(
    url: str, body: dict[str, Any], status: int, field: str, says: str
) -> None:
    response = score(url, "/score", body)
    assert response.status_code == status, response.text
    error = response.json()
    assert error["field"] == field and says in error["message"]


def test_the_api_key_holds(url: str) -> None:
    response = requests.post(f"{url}/score", json={"text_1": "q", "text_2": ["a"]}, timeout=60)
    assert response.status_code == 401
