"""The LLM rerankers through every path the request core serves: windows, the score cache, an adapter, the CLI,
``rerank-run``, Ray and the server over real HTTP. Each result is checked against the authors' scores
(tests/reference.py) or against ``CrossEncoder.rank`` (itself checked against them in test_llm_scores.py).
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import httpx
import numpy as np
import pytest
import reference
import torch
from conftest import DOCUMENTS, QUERIES
from langchain_core.documents import Document

from rerank_plugins import CrossEncoder
from rerank_plugins.cli import main
from rerank_plugins.langchain import RerankCompressor
from rerank_plugins.serve import ServeSettings, create_app
from rerank_plugins.serve.testing import serve_in_thread
from rerank_plugins.windows import Window, split_document

KINDS = ("qwen3-reranker", "mxbai-rerank-v2", "bge-llm-reranker")
PRESETS = {"qwen3-reranker": "Qwen/Qwen3-Reranker-0.6B", "mxbai-rerank-v2": "mixedbread-ai/mxbai-rerank-base-v2",
           "bge-llm-reranker": "BAAI/bge-reranker-v2-gemma"}  # fmt: skip
FILLER = " ".join(["The committee met again to discuss the agenda for next year in great detail."] * 6)


def raw_reference(kind: str, path: str, pairs: list[tuple[str, str]]) -> list[float]:
    if kind == "qwen3-reranker":
        return reference.qwen3_reranker_scores(path, pairs, raw=True)
    if kind == "mxbai-rerank-v2":
        return reference.mxbai_rerank_v2_scores(path, pairs)
    return reference.bge_llm_reranker_scores(path, pairs)


@pytest.mark.parametrize("kind", KINDS)
def test_windows_score_each_window_as_the_authors_and_keep_the_best(tiny_paths, load_tiny, kind):
    model = load_tiny(kind)
    document = f"{FILLER} {DOCUMENTS[0]}"
    window = Window(size=24, stride=12, aggregate="max")
    pieces = split_document(model.tokenizer, document, window)
    assert len(pieces) > 2
    per_window = raw_reference(kind, tiny_paths[kind], [(QUERIES[0], piece) for piece in pieces])
    identity = torch.nn.Identity()
    got = model.predict([(QUERIES[0], document), (QUERIES[0], DOCUMENTS[1])], window=window, activation_fn=identity)
    assert got[0] == pytest.approx(max(per_window), abs=1e-5)
    assert got[1] == pytest.approx(raw_reference(kind, tiny_paths[kind], [(QUERIES[0], DOCUMENTS[1])])[0], abs=1e-5)


@pytest.mark.parametrize("kind", KINDS)
def test_the_score_cache_serves_the_second_call_and_keys_the_prompt(tiny_paths, kind):
    model = CrossEncoder(tiny_paths[kind], family=kind, device="cpu", score_cache=1000)
    calls: list[int] = []
    model[0].register_forward_hook(lambda *args: calls.append(1))
    pairs = [(q, d) for q in QUERIES[:2] for d in DOCUMENTS]
    first = model.predict(pairs)
    assert calls and model.score_cache.misses == len(pairs)
    calls.clear()
    np.testing.assert_array_equal(model.predict(pairs), first)
    assert not calls and model.score_cache.hits == len(pairs)
    instructed = model.predict(pairs, prompt="Find the passage that answers the question")
    assert calls  # another instruction: scored, not served from the cache
    fresh = CrossEncoder(tiny_paths[kind], family=kind, device="cpu")
    np.testing.assert_allclose(instructed, fresh.predict(pairs, prompt="Find the passage that answers the question"))
    assert not np.allclose(instructed, first, atol=1e-5)


@pytest.mark.parametrize("kind", KINDS)
def test_langchain_compressor_ranks_as_the_model(load_tiny, kind):
    model = load_tiny(kind)
    documents = [Document(page_content=text, metadata={"i": i}) for i, text in enumerate(DOCUMENTS)]
    compressed = RerankCompressor(model=model, top_n=4).compress_documents(documents, QUERIES[2])
    expected = model.rank(QUERIES[2], DOCUMENTS, top_k=4)
    assert [d.metadata["i"] for d in compressed] == [hit["corpus_id"] for hit in expected]
    scores = [d.metadata["relevance_score"] for d in compressed]
    np.testing.assert_allclose(scores, [hit["score"] for hit in expected], atol=1e-6, rtol=0)


@pytest.mark.parametrize("kind", KINDS)
def test_cli_rank_with_a_preset(tiny_paths, load_tiny, kind, capsys):
    argv = ["rank", "--model", tiny_paths[kind], "--preset", PRESETS[kind], "--query", QUERIES[0], "--json"]
    assert main([*argv, *[d for d in DOCUMENTS if d]]) == 0
    got = json.loads(capsys.readouterr().out)["results"]
    expected = load_tiny(kind).rank(QUERIES[0], [d for d in DOCUMENTS if d])
    assert [row["index"] for row in got] == [hit["corpus_id"] for hit in expected]
    np.testing.assert_allclose([row["score"] for row in got], [hit["score"] for hit in expected], atol=1e-6)


def test_rerank_run_scores_a_trec_run(tiny_paths, load_tiny, tmp_path: Path):
    kind = "qwen3-reranker"
    topics = tmp_path / "topics.tsv"
    topics.write_text("q1\twhat is the capital of france\n", encoding="utf-8")
    corpus = tmp_path / "corpus.jsonl"
    texts = [d for d in DOCUMENTS if d]
    corpus.write_text("".join(json.dumps({"docid": f"d{i}", "text": t}) + "\n" for i, t in enumerate(texts)))
    run = tmp_path / "bm25.trec"
    run.write_text("".join(f"q1 Q0 d{i} {i + 1} {10 - i} bm25\n" for i in range(len(texts))), encoding="utf-8")
    out = tmp_path / "reranked.trec"
    argv = ["rerank-run", "--model", tiny_paths[kind], "--family", kind, "--run", str(run), "--topics", str(topics),
            "--corpus", str(corpus), "--output", str(out)]  # fmt: skip
    assert main(argv) == 0
    rows = [line.split() for line in out.read_text().splitlines()]
    expected = load_tiny(kind).rank(QUERIES[0], texts)
    assert [row[2] for row in rows] == [f"d{hit['corpus_id']}" for hit in expected]
    np.testing.assert_allclose([float(row[4]) for row in rows], [hit["score"] for hit in expected], atol=1e-5)


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
