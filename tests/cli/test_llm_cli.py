"""The LLM rerankers through the command line: ``rank`` with a preset, ``rerank-run``."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from support import DOCUMENTS, QUERIES

from rerank_plugins.cli import main

KINDS = ("qwen3-reranker", "mxbai-rerank-v2", "bge-llm-reranker")
PRESETS = {"qwen3-reranker": "Qwen/Qwen3-Reranker-0.6B", "mxbai-rerank-v2": "mixedbread-ai/mxbai-rerank-base-v2",
           "bge-llm-reranker": "BAAI/bge-reranker-v2-gemma"}  # fmt: skip


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
