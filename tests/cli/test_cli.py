"""The ``rerank-plugins`` command: rank, tiny-model, the one-line errors, and ``python -m rerank_plugins``."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest
from support import DATA

from rerank_plugins.cli import main

DOCS = ["Paris is the capital of France.", "The stock market fell on Monday.", "Berlin has many museums."]


def test_rank_prints_a_table_in_the_models_order(
    tiny_paths: dict[str, str], load_tiny: Callable, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["rank", "--model", tiny_paths["sequence-classification"], "--query", "capital of france", *DOCS]) == 0
    header, *rows = capsys.readouterr().out.splitlines()
    assert header.split() == ["rank", "index", "score", "text"]
    expected = load_tiny("sequence-classification").rank("capital of france", DOCS)
    assert [int(row.split()[1]) for row in rows] == [result["corpus_id"] for result in expected]
    assert [float(row.split()[2]) for row in rows] == pytest.approx([r["score"] for r in expected], abs=1e-6)


def test_rank_json_with_top_k(tiny_paths: dict[str, str], capsys: pytest.CaptureFixture[str]) -> None:
    argv = ["rank", "--model", tiny_paths["monot5"], "--query", "capital of france", "--top-k", "2", "--json", *DOCS]
    assert main(argv) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["query"] == "capital of france" and len(report["results"]) == 2
    first, second = report["results"]
    assert first["rank"] == 1 and first["text"] == DOCS[first["index"]] and first["score"] >= second["score"]


def test_tiny_model_builds_a_loadable_model(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["tiny-model", "--family", "sequence-classification", str(tmp_path / "tiny")]) == 0
    assert capsys.readouterr().out.strip() == str(tmp_path / "tiny")
    assert main(["rank", "--model", str(tmp_path / "tiny"), "--query", "q", "a", "b"]) == 0


def test_unreachable_hub_id_is_one_line_without_traceback(capsys: pytest.CaptureFixture[str]) -> None:
    assert os.environ["HF_HUB_OFFLINE"] == "1"
    assert main(["rank", "--model", "acme-labs/no-such-reranker", "--query", "q", "a document"]) == 2
    error = capsys.readouterr().err
    assert error.startswith("rerank-plugins: error: could not load model 'acme-labs/no-such-reranker': ")
    assert error.count("\n") == 1 and "Traceback" not in error and ".." not in error


def test_rerank_run_needs_texts_for_a_trec_run(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    run = DATA / "bm25-top100.trec"
    assert main(["rerank-run", "--model", "m", "--run", str(run), "--output", str(tmp_path / "o")]) == 2
    assert "a TREC run needs --topics (qid<TAB>query) and --corpus" in capsys.readouterr().err
    sample = DATA / "dl19-sample.json"
    argv = ["rerank-run", "--model", "m", "--run", str(sample), "--topics", "t.tsv", "--output", str(tmp_path / "o")]
    assert main(argv) == 2
    assert "rank_llm-style JSON file with its own texts" in capsys.readouterr().err


def test_rerank_run_with_a_bad_tag_or_missing_file(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    sample = DATA / "dl19-sample.json"
    assert main(["rerank-run", "--model", "m", "--run", str(sample), "--output", "o", "--tag", "a b"]) == 2
    assert "the run tag must be one word" in capsys.readouterr().err
    assert main(["rerank-run", "--model", "m", "--run", str(tmp_path / "nothing.trec"), "--output", "o"]) == 2
    assert capsys.readouterr().err == f"rerank-plugins: error: {tmp_path / 'nothing.trec'}: No such file or directory\n"


def test_iterative_needs_a_listwise_model(
    tmp_path: Path, tiny_paths: dict[str, str], capsys: pytest.CaptureFixture[str]
) -> None:
    sample = DATA / "dl19-sample.json"
    argv = ["rerank-run", "--model", tiny_paths["sequence-classification"], "--run", str(sample), "--iterative"]
    assert main([*argv, "--output", str(tmp_path / "o.trec")]) == 2
    assert "--iterative is ListConRanker's inference" in capsys.readouterr().err


def test_ray_engine_without_ray_says_what_to_install(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setitem(sys.modules, "ray", None)
    sample = DATA / "dl19-sample.json"
    argv = ["rerank-run", "--model", "m", "--run", str(sample), "--output", str(tmp_path / "o"), "--engine", "ray"]
    assert main(argv) == 2
    assert (
        capsys.readouterr().err
        == "rerank-plugins: error: scale-out needs Ray Data: pip install 'rerank-plugins[ray]'\n"
    )


def test_python_dash_m_help_lists_the_commands() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "rerank_plugins", "--help"], capture_output=True, text=True, check=True, timeout=120
    )
    for command in ("rank", "rerank-run", "evaluate", "tiny-model"):
        assert command in result.stdout


def test_demo_with_a_tiny_model_offline(capsys: pytest.CaptureFixture[str]) -> None:
    from benchmarks import demo

    assert demo.main(["--tiny", "--queries", "2", "--depth", "3"]) == 0
    out = capsys.readouterr().out
    assert "scores are meaningless" in out and "2 queries, BM25 top 3 re-ranked by a tiny random monoT5" in out
    assert "nDCG@10  BM25 " in out


def test_demo_with_an_unreachable_hub_is_one_line(capsys: pytest.CaptureFixture[str]) -> None:
    from benchmarks import demo

    assert demo.main(["--model", "acme-labs/no-such-reranker", "--queries", "1"]) == 2
    error = capsys.readouterr().err
    assert error.count("\n") == 1 and "--model PATH" in error and "--tiny" in error


def test_rank_with_windows_scores_long_documents_in_windows(
    tiny_paths: dict[str, str], load_tiny: Callable, capsys: pytest.CaptureFixture[str]
) -> None:
    from rerank_plugins.windows import Window

    long = " ".join(DOCS * 30)
    argv = ["rank", "--model", tiny_paths["monot5"], "--query", "capital of france", "--json"]
    assert main([*argv, "--window-size", "24", "--window-stride", "12", "--aggregate", "mean", long, DOCS[0]]) == 0
    got = {row["index"]: row["score"] for row in json.loads(capsys.readouterr().out)["results"]}
    expected = load_tiny("monot5").rank("capital of france", [long, DOCS[0]], window=Window(24, 12, "mean"))
    assert got == {r["corpus_id"]: pytest.approx(r["score"], abs=1e-6) for r in expected}
    assert main([*argv, "--window-size", "24", "--window-stride", "30", long]) == 2
    assert "stride" in capsys.readouterr().err
