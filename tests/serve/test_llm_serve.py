"""The LLM rerankers served over real HTTP: ``/v2/rerank`` scores as ``rank``; ``/v1/models`` says the family."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import httpx
import numpy as np
import pytest
from support import DOCUMENTS, QUERIES

from rerank_plugins import CrossEncoder
from rerank_plugins.serve import ServeSettings, create_app
from rerank_plugins.serve.testing import serve_in_thread

KINDS = ("qwen3-reranker", "mxbai-rerank-v2", "bge-llm-reranker")


@pytest.mark.parametrize("kind", KINDS)
def test_server_v2_rerank_over_real_http(load_tiny, kind):
    model = load_tiny(kind)
    expected = model.rank(QUERIES[1], DOCUMENTS)
    with serve_in_thread(create_app({kind: model}, ServeSettings())) as url:
        response = httpx.post(
            f"{url}/v2/rerank", json={"model": kind, "query": QUERIES[1], "documents": DOCUMENTS}, timeout=60
        )
        models = httpx.get(f"{url}/v1/models", timeout=60).json()
    assert response.status_code == 200, response.text
    results = response.json()["results"]
    assert [r["index"] for r in results] == [hit["corpus_id"] for hit in expected]
    np.testing.assert_allclose([r["relevance_score"] for r in results], [h["score"] for h in expected], atol=1e-6)
    assert [entry["family"] for entry in models["data"]] == [kind]


def test_server_reports_what_a_saved_causal_lm_is(tiny_paths, tmp_path: Path, load_tiny: Callable):
    """A causal LM saved in sentence-transformers' format is a logit-score model, in /v1/models too."""
    import sentence_transformers

    sentence_transformers.CrossEncoder(tiny_paths["qwen3-reranker"], device="cpu").save(str(tmp_path / "st"))
    model = CrossEncoder(str(tmp_path / "st"), device="cpu")
    with serve_in_thread(create_app({"saved": model}, ServeSettings())) as url:
        models = httpx.get(f"{url}/v1/models", timeout=60).json()
    assert [entry["family"] for entry in models["data"]] == ["logit-score"]
