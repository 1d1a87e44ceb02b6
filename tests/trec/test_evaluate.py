"""Evaluation on ir-measures: the known DL19 BM25 figures, the command's table and JSON, and bad input."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest
from support import DATA

from rerank_plugins import trec
from rerank_plugins.cli import main

QRELS, BM25 = DATA / "qrels.txt", DATA / "bm25-top100.trec"


def test_bm25_on_dl19_gives_the_known_figures() -> None:
    """The BM25 top-100 of TREC DL19 passages: nDCG@10 = 0.5058, RR@10 (rel >= 2) = 0.7024 (trec_eval's figures)."""
    scores = trec.evaluate(trec.read_qrels(QRELS), trec.read_run(BM25), ["nDCG@10", "RR(rel=2)@10"])
    assert round(scores["nDCG@10"], 4) == 0.5058
    assert round(scores["RR(rel=2)@10"], 4) == 0.7024


def test_evaluate_command_table_and_json(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["evaluate", "--qrels", str(QRELS), str(BM25), "--metrics", "nDCG@10", "RR(rel=2)@10"]) == 0
    header, row = capsys.readouterr().out.splitlines()
    assert header.split() == ["run", "nDCG@10", "RR(rel=2)@10", "queries"]
    assert row.split() == [str(BM25), "0.5058", "0.7024", "43/43"]

    assert main(["evaluate", "--qrels", str(QRELS), str(BM25), str(BM25), "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["judged_queries"] == 43
    assert set(report["runs"][str(BM25)]) == {"nDCG@10", "RR@10", "R@100", "judged_queries"}
    assert report["runs"][str(BM25)]["nDCG@10"] == pytest.approx(0.5058, abs=5e-5)


def test_judged_queries_missing_from_a_run_count_as_zero(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    qrels, run = trec.read_qrels(QRELS), trec.read_run(BM25)
    two = {qid: run[qid] for qid in list(run)[:2]}
    each = [trec.evaluate({qid: qrels[qid]}, two, ["nDCG@10"])["nDCG@10"] for qid in two]
    assert trec.evaluate(qrels, two, ["nDCG@10"])["nDCG@10"] == pytest.approx(sum(each) / 43)  # trec_eval -c
    only = trec.evaluate(qrels, two, ["nDCG@10"], run_queries_only=True)["nDCG@10"]
    assert only == pytest.approx(sum(each) / 2)  # trec_eval without -c

    trec.write_run(tmp_path / "two.trec", two, "bm25")
    assert main(["evaluate", "--qrels", str(QRELS), str(tmp_path / "two.trec"), "--metrics", "nDCG@10"]) == 0
    assert capsys.readouterr().out.splitlines()[1].split()[1:] == [f"{sum(each) / 43:.4f}", "2/43"]
    argv = ["evaluate", "--qrels", str(QRELS), str(tmp_path / "two.trec"), "--metrics", "nDCG@10", "--run-queries-only"]
    assert main(argv) == 0
    assert capsys.readouterr().out.splitlines()[1].split()[1:] == [f"{only:.4f}", "2/43"]


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--metrics", "nDCG@ten"], "unknown metric 'nDCG@ten'"),
        (["--metrics", "Bogus@10"], "unknown metric 'Bogus@10'"),
    ],
)
def test_bad_metric_is_one_line(argv: list[str], message: str, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["evaluate", "--qrels", str(QRELS), str(BM25), *argv]) == 2
    error = capsys.readouterr().err
    assert error.startswith(f"rerank-plugins: error: {message}") and error.count("\n") == 1


def test_malformed_files_name_file_and_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    qrels = tmp_path / "qrels.txt"
    qrels.write_text("1 0 a 1\n1 0 b one\n")
    assert main(["evaluate", "--qrels", str(qrels), str(BM25)]) == 2
    assert capsys.readouterr().err == f"rerank-plugins: error: {qrels}:2: the relevance 'one' is not an integer\n"
    run = tmp_path / "run.trec"
    run.write_text("1 Q0 a 1 0.5 t\n1 Q0 b 2 0.4\n")
    assert main(["evaluate", "--qrels", str(QRELS), str(run)]) == 2
    assert capsys.readouterr().err.startswith(f"rerank-plugins: error: {run}:2: a run line has 6 columns")
    assert main(["evaluate", "--qrels", str(tmp_path / "nowhere.txt"), str(BM25)]) == 2
    assert "nowhere.txt: No such file or directory" in capsys.readouterr().err


def test_without_ir_measures_says_what_to_install(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setitem(sys.modules, "ir_measures", None)  # makes `import ir_measures` fail
    assert main(["evaluate", "--qrels", str(QRELS), str(BM25)]) == 2
    assert capsys.readouterr().err == (
        "rerank-plugins: error: evaluation needs ir-measures: pip install 'rerank-plugins[eval]'\n"
    )
