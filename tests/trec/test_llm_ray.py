"""An LLM reranker scoring a Ray dataset: the scores of ``predict``."""

from __future__ import annotations

import numpy as np
import pytest
from support import DOCUMENTS, QUERIES


def test_ray_scores_as_the_model(tiny_paths, load_tiny):
    ray = pytest.importorskip("ray")
    from rerank_plugins.ray import rerank_dataset

    kind = "mxbai-rerank-v2"
    rows = [{"qid": "1", "docid": str(i), "query": QUERIES[0], "text": d} for i, d in enumerate(DOCUMENTS)]
    ray.init(num_cpus=1, include_dashboard=False, ignore_reinit_error=True)
    try:
        dataset = rerank_dataset(
            ray.data.from_items(rows), tiny_paths[kind], model_kwargs={"family": kind, "device": "cpu"}, batch_size=4
        )
        got = {row["docid"]: row["score"] for row in dataset.take_all()}
    finally:
        ray.shutdown()
    expected = load_tiny(kind).predict([(QUERIES[0], d) for d in DOCUMENTS])
    np.testing.assert_allclose([got[str(i)] for i in range(len(DOCUMENTS))], expected, atol=1e-5)
