"""TREC files in and out, re-ranking a run, and resuming an interrupted one (``rerank_plugins.trec``, rerank-run)."""

from __future__ import annotations

import gzip
import itertools
import json
import logging
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from support import DATA

from rerank_plugins import CrossEncoder, trec
from rerank_plugins.cli import main

SAMPLE = DATA / "dl19-sample.json"


def write(path: Path, text: str) -> Path:
    path.write_text(text, encoding="utf-8")
    return path


@pytest.fixture(scope="module")
def sample() -> tuple[dict[str, str], trec.Run, dict[str, str]]:
    """3 DL19 queries with their BM25 top 20 and passage texts."""
    return trec.read_rank_llm_json(SAMPLE)


@pytest.fixture
def trec_inputs(tmp_path: Path, sample: tuple[dict[str, str], trec.Run, dict[str, str]]) -> dict[str, Path]:
    """The sample as separate files: a TREC run (from the real BM25 file), topics TSV and a JSONL corpus."""
    topics, run, corpus = sample
    lines = [line for line in (DATA / "bm25-top100.trec").read_text().splitlines() if line.split()[0] in run]
    kept = [line for line in lines if int(line.split()[3]) <= 20]
    paths = {
        "run": write(tmp_path / "bm25.trec", "\n".join(kept) + "\n"),
        "topics": write(tmp_path / "topics.tsv", "".join(f"{qid}\t{query}\n" for qid, query in topics.items())),
        "corpus": write(
            tmp_path / "corpus.jsonl", "".join(json.dumps({"docid": d, "text": t}) + "\n" for d, t in corpus.items())
        ),
    }
    return paths


# -- readers ----------------------------------------------------------------------------------------------------
def test_read_run_orders_by_score_then_rank(tmp_path: Path) -> None:
    path = write(tmp_path / "run", "q1 Q0 a 3 1.0 t\n\nq1 Q0 b 1 2.5 t\nq1 Q0 c 2 1.0 t\nq2 Q0 a 1 -1 t\n")
    assert trec.read_run(path) == {"q1": [("b", 2.5), ("c", 1.0), ("a", 1.0)], "q2": [("a", -1.0)]}


def test_real_run_reads_as_written() -> None:
    run = trec.read_run(DATA / "bm25-top100.trec")
    assert len(run) == 43 and all(len(ranking) == 100 for ranking in run.values())
    assert run["264014"][0] == ("5611210", 15.780599594116211)


@pytest.mark.parametrize(
    ("line", "message"),
    [
        ("q1 Q0 b 2 0.5\n", "has 6 columns"),
        ("q1 Q0 b two 0.5 t\n", "rank 'two' is not an integer"),
        ("q1 Q0 b 2 high t\n", "score 'high' is not a number"),
        ("q1 Q0 b 2 nan t\n", "not a finite number"),
        ("q1 Q0 a 2 0.5 t\n", "docid a is listed twice for query q1 (first on line 1)"),
    ],
)
def test_malformed_run_line_names_file_and_line(tmp_path: Path, line: str, message: str) -> None:
    path = write(tmp_path / "run.trec", "q1 Q0 a 1 1.0 t\n\n" + line)
    with pytest.raises(trec.InputError, match=f"^{path}:3: ") as caught:
        trec.read_run(path)
    assert message in str(caught.value)


def test_qrels(tmp_path: Path) -> None:
    qrels = trec.read_qrels(DATA / "qrels.txt")
    assert len(qrels) == 43 and qrels["19335"]["1017759"] == 0
    with pytest.raises(trec.InputError, match=r":2: a qrels line has 4 columns"):
        trec.read_qrels(write(tmp_path / "q1", "1 0 a 1\n1 0 b\n"))
    with pytest.raises(trec.InputError, match=r":1: the relevance 'high' is not an integer"):
        trec.read_qrels(write(tmp_path / "q2", "1 0 a high\n"))
    with pytest.raises(trec.InputError, match=r":2: docid a of query 1 is judged twice, 1 and 2"):
        trec.read_qrels(write(tmp_path / "q3", "1 0 a 1\n1 0 a 2\n"))


def test_topics(tmp_path: Path) -> None:
    assert trec.read_topics(DATA / "topics.tsv")["130510"] == "definition declaratory judgment"
    with pytest.raises(trec.InputError, match=r"t.tsv:2: a topics line is 'qid<TAB>query'"):
        trec.read_topics(write(tmp_path / "t.tsv", "1\tfirst\n2 second\n"))
    with pytest.raises(trec.InputError, match=r"t2.tsv:2: query 1 is listed twice"):
        trec.read_topics(write(tmp_path / "t2.tsv", "1\tfirst\n1\tagain\n"))


def test_corpus_formats(tmp_path: Path) -> None:
    jsonl = write(tmp_path / "c.jsonl", '{"docid": "a", "text": "alpha"}\n\n{"docid": 7, "text": "seven"}\n')
    assert trec.read_corpus(jsonl) == {"a": "alpha", "7": "seven"}
    tsv = write(tmp_path / "c.tsv", "a\talpha\tmore\nb\tbeta\n")
    assert trec.read_corpus(tsv) == {"a": "alpha\tmore", "b": "beta"}
    sniffed = write(tmp_path / "c.txt", '{"_id": "d1", "title": "Title", "text": "body"}\n')
    assert trec.read_corpus(sniffed) == {"d1": "Title body"}  # BEIR layout: title before text
    zipped = tmp_path / "c.jsonl.gz"
    with gzip.open(zipped, "wt", encoding="utf-8") as handle:
        handle.write('{"docid": "a", "text": "alpha"}\n{"docid": "b", "text": "beta"}\n')
    assert trec.read_corpus(zipped, wanted={"b"}) == {"b": "beta"}


@pytest.mark.parametrize(
    ("name", "text", "message"),
    [
        ("bad.jsonl", '{"docid": "a", "text": "x"}\n{"docid": "b", "text": \n', "not a JSON object"),
        ("bad.jsonl", '{"docid": "a", "text": "x"}\n{"docid": "b"}\n', "no 'text' string"),
        ("bad.jsonl", '{"docid": "a", "text": "x"}\n{"text": "y"}\n', "no 'docid'"),
        ("bad.tsv", "a\tx\nno tab here\n", "a corpus line is 'docid<TAB>text'"),
        ("bad.tsv", "a\tx\na\ty\n", "docid a is given twice with different texts"),
    ],
)
def test_malformed_corpus_line_names_file_and_line(tmp_path: Path, name: str, text: str, message: str) -> None:
    path = write(tmp_path / name, text)
    with pytest.raises(trec.InputError, match=f"^{path}:2: ") as caught:
        trec.read_corpus(path)
    assert message in str(caught.value)


def test_rank_llm_json(sample: tuple[dict[str, str], trec.Run, dict[str, str]], tmp_path: Path) -> None:
    topics, run, corpus = sample
    assert list(run) == ["264014", "104861", "130510"]
    assert all(len(ranking) == 20 for ranking in run.values())
    reference = trec.read_topics(DATA / "topics.tsv")
    assert all(reference[qid] == query for qid, query in topics.items())
    assert run["264014"][0] == ("5611210", 15.780599594116211)
    assert corpus["5611210"].startswith("5. Cancel. A flea can live up to a year")
    with pytest.raises(trec.InputError, match=r"broken.json:3: not valid JSON"):
        trec.read_rank_llm_json(write(tmp_path / "broken.json", '[\n {"query": "q",\n  "hits": [}\n'))
    with pytest.raises(trec.InputError, match=r"entry 0, hit 0: a hit needs 'qid', 'docid' and 'content'"):
        trec.read_rank_llm_json(write(tmp_path / "nohit.json", '[{"query": "q", "hits": [{"qid": 1, "docid": "a"}]}]'))


# -- planning: missing texts, depth and tail --------------------------------------------------------------------
def test_missing_docid_is_reported_not_skipped(sample: tuple[dict[str, str], trec.Run, dict[str, str]]) -> None:
    topics, run, corpus = sample
    partial = {docid: text for docid, text in corpus.items() if docid not in {"6641238", "96852"}}
    with pytest.raises(
        trec.InputError, match=r"^2 candidates of the run are not in my.jsonl: 6641238 \(query 264014\)"
    ):
        trec.plan(run, topics, partial, depth=20, corpus_name="my.jsonl")
    # Below the depth, text is not needed: 6641238 is rank 2 and 96852 rank 4.
    with pytest.raises(trec.InputError, match=r"^1 candidates"):
        trec.plan(run, topics, partial, depth=3)
    with pytest.raises(trec.InputError, match=r"^1 of the run's 3 queries are not in the topics: 104861"):
        trec.plan(run, {q: t for q, t in topics.items() if q != "104861"}, corpus)


def test_skip_missing_warns_with_counts(
    sample: tuple[dict[str, str], trec.Run, dict[str, str]], caplog: pytest.LogCaptureFixture
) -> None:
    topics, run, corpus = sample
    partial = {docid: text for docid, text in corpus.items() if docid != "6641238"}
    with caplog.at_level(logging.WARNING, logger="rerank_plugins.trec"):
        jobs = trec.plan(run, {q: t for q, t in topics.items() if q != "104861"}, partial, skip_missing=True)
    assert [job.qid for job in jobs] == ["264014", "130510"]
    assert "6641238" not in jobs[0].docids and len(jobs[0].docids) == 19
    assert "Skipped 1 queries that are not in the topics and 1 candidates that are not in the corpus" in caplog.text


def test_depth_and_tail(sample: tuple[dict[str, str], trec.Run, dict[str, str]], load_tiny: Callable) -> None:
    topics, run, corpus = sample
    model = load_tiny("sequence-classification")
    dropped = dict(trec.rerank_run(model, run, topics, corpus, depth=5))
    kept = dict(trec.rerank_run(model, run, topics, corpus, depth=5, keep_tail=True))
    for qid, ranking in run.items():
        assert sorted(docid for docid, _ in dropped[qid]) == sorted(docid for docid, _ in ranking[:5])
        assert kept[qid][:5] == dropped[qid]
        assert [docid for docid, _ in kept[qid][5:]] == [docid for docid, _ in ranking[5:]]  # original order
        scores = [score for _, score in kept[qid]]
        assert all(a > b for a, b in itertools.pairwise(scores[4:]))


def test_reranked_scores_are_the_models(
    sample: tuple[dict[str, str], trec.Run, dict[str, str]], load_tiny: Callable
) -> None:
    topics, run, corpus = sample
    model: CrossEncoder = load_tiny("sequence-classification")
    reranked = dict(trec.rerank_run(model, run, topics, corpus, depth=20, batch_size=7))
    for qid, ranking in reranked.items():
        predicted = model.predict([(topics[qid], corpus[docid]) for docid, _ in ranking])
        assert [score for _, score in ranking] == pytest.approx(predicted.tolist(), abs=1e-6)
        assert [score for _, score in ranking] == sorted((score for _, score in ranking), reverse=True)


def test_ties_keep_the_original_order() -> None:
    job = trec.Job("q", "query", ["a", "b", "c", "d"], ["", "", "", ""], ["e"])
    assert trec.order_ranking(job, [0.5, 0.9, 0.5, 0.9]) == [
        ("b", 0.9),
        ("d", 0.9),
        ("a", 0.5),
        ("c", 0.5),
        ("e", -0.5),
    ]
    with pytest.raises(ValueError, match="finite"):
        trec.order_ranking(job, [0.5, float("nan"), 0.5, 0.9])


# -- writing ----------------------------------------------------------------------------------------------------
def test_written_run_reads_back_exactly(tmp_path: Path) -> None:
    run = {"q2": [("d1", 0.1 + 0.2), ("d2", -3e-9)], "q1": [("d3", 12.0)]}
    trec.write_run(tmp_path / "out.trec", run, "tag")
    assert (tmp_path / "out.trec").read_text() == (
        "q2 Q0 d1 1 0.30000000000000004 tag\nq2 Q0 d2 2 -3e-09 tag\nq1 Q0 d3 1 12.0 tag\n"
    )
    assert trec.read_run(tmp_path / "out.trec") == run
    with pytest.raises(trec.InputError, match="one word"):
        trec.write_run(tmp_path / "out.trec", run, "my tag")


def test_atomic_write_keeps_the_old_file_on_failure(tmp_path: Path) -> None:
    target = write(tmp_path / "out.trec", "old\n")

    def chunks():
        yield "new line 1\n"
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        trec.atomic_write(target, chunks())
    assert target.read_text() == "old\n"
    assert [path.name for path in tmp_path.iterdir()] == ["out.trec"]  # no temporary file left behind


# -- rerank-run end to end: inputs, resume ----------------------------------------------------------------------
def test_trec_inputs_and_rank_llm_json_give_the_same_run(
    tmp_path: Path, tiny_paths: dict[str, str], trec_inputs: dict[str, Path]
) -> None:
    from_json, from_trec = tmp_path / "a.trec", tmp_path / "b.trec"
    common = ["rerank-run", "--model", tiny_paths["sequence-classification"], "--quiet", "--depth", "10"]
    assert main([*common, "--run", str(SAMPLE), "--output", str(from_json)]) == 0
    files = ["--run", str(trec_inputs["run"]), "--topics", str(trec_inputs["topics"])]
    assert main([*common, *files, "--corpus", str(trec_inputs["corpus"]), "--output", str(from_trec)]) == 0
    assert from_json.read_text() == from_trec.read_text()
    lines = from_json.read_text().splitlines()
    assert len(lines) == 30 and lines[0].split()[3] == "1" and lines[0].endswith(" sequence-classification")


def test_missing_docid_via_cli_is_one_line(
    tmp_path: Path, tiny_paths: dict[str, str], trec_inputs: dict[str, Path], capsys: pytest.CaptureFixture[str]
) -> None:
    corpus = trec_inputs["corpus"]
    corpus.write_text("".join(line + "\n" for line in corpus.read_text().splitlines() if '"5611210"' not in line))
    argv = ["rerank-run", "--model", tiny_paths["sequence-classification"], "--depth", "5",
            "--run", str(trec_inputs["run"]), "--topics", str(trec_inputs["topics"]), "--corpus", str(corpus),
            "--output", str(tmp_path / "o.trec")]  # fmt: skip
    assert main(argv) == 2
    error = capsys.readouterr().err
    assert error == f"rerank-plugins: error: 1 candidates of the run are not in {corpus}: 5611210 (query 264014)\n"
    assert not (tmp_path / "o.trec").exists()
    assert main([*argv, "--skip-missing", "--quiet"]) == 0
    assert "5611210" not in (tmp_path / "o.trec").read_text()


def test_resume_after_an_interruption_loses_nothing(
    tmp_path: Path, tiny_paths: dict[str, str], monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """Interrupt after 2 queries, tear the 3rd as a kill mid-write would, resume: the file of an uninterrupted run."""
    common = ["rerank-run", "--model", tiny_paths["sequence-classification"], "--run", str(SAMPLE), "--quiet"]
    # One query per request-core call, in every run: the reference then computes each score exactly as the
    # interrupted and resumed runs do (shared batches would move the last bits of a float score).
    monkeypatch.setattr(trec.jobs, "QUERIES_TOGETHER_PAIRS", 1)
    reference = tmp_path / "reference.trec"
    assert main([*common, "--output", str(reference)]) == 0

    output = tmp_path / "out.trec"
    partial = tmp_path / "out.trec.partial"
    scored: list[str] = []
    real_rank_requests = CrossEncoder.rank_requests

    def interrupted(model: CrossEncoder, requests: list[Any], *args: Any) -> list[Any]:
        if len(scored) == 2:
            raise KeyboardInterrupt
        scored.extend(request.query for request in requests)
        return real_rank_requests(model, requests, *args)

    def recorded(model: CrossEncoder, requests: list[Any], *args: Any) -> list[Any]:
        scored.extend(request.query for request in requests)
        return real_rank_requests(model, requests, *args)

    monkeypatch.setattr(CrossEncoder, "rank_requests", interrupted)
    assert main([*common, "--output", str(output)]) == 130
    assert "2 of 3 queries are saved" in capsys.readouterr().err
    assert not output.exists()
    finished = partial.read_text()
    assert finished == "".join(reference.read_text().splitlines(keepends=True)[:40])
    third = reference.read_text().splitlines(keepends=True)[40:]
    partial.write_text(finished + "".join(third[:7]) + third[7][:12])  # a kill in the middle of query 3

    assert main([*common, "--output", str(output)]) == 2  # forgetting --resume must not throw the work away
    assert "pass --resume" in capsys.readouterr().err

    scored.clear()
    monkeypatch.setattr(CrossEncoder, "rank_requests", recorded)
    assert main([*common, "--output", str(output), "--resume"]) == 0
    assert scored == ["definition declaratory judgment"]  # only the unfinished query was scored again
    assert output.read_bytes() == reference.read_bytes()
    assert not partial.exists()

    scored.clear()  # resuming a finished run scores nothing and rewrites the same file
    assert main([*common, "--output", str(output), "--resume"]) == 0
    assert scored == [] and output.read_bytes() == reference.read_bytes()


def test_an_error_mid_run_keeps_the_finished_queries(
    tmp_path: Path, tiny_paths: dict[str, str], monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    real_rank_requests = CrossEncoder.rank_requests
    calls: list[str] = []
    monkeypatch.setattr(trec.jobs, "QUERIES_TOGETHER_PAIRS", 1)  # one query per request-core call

    def failing(*args: Any, **kwargs: Any) -> list[Any]:
        calls.append("x")
        if len(calls) == 2:
            raise RuntimeError("CUDA out of memory")
        return real_rank_requests(*args, **kwargs)

    monkeypatch.setattr(CrossEncoder, "rank_requests", failing)
    output = tmp_path / "out.trec"
    argv = ["rerank-run", "--model", tiny_paths["sequence-classification"], "--run", str(SAMPLE), "--quiet"]
    with pytest.raises(RuntimeError, match="CUDA out of memory"):
        main([*argv, "--depth", "4", "--output", str(output)])
    assert "1 of 3 queries are saved" in capsys.readouterr().err and not output.exists()
    assert len((tmp_path / "out.trec.partial").read_text().splitlines()) == 4


# -- ids a run cannot hold, text that is not UTF-8, stale temporary files, the shipped samples -------------------
@pytest.mark.parametrize(
    ("field", "value", "message"),
    [
        ("docid", "doc 0", "hit 2: the docid 'doc 0' is empty or contains whitespace"),
        ("docid", "", "hit 2: the docid '' is empty or contains whitespace"),
        ("docid", "a\tb", "hit 2: the docid 'a\\tb' is empty or contains whitespace"),
        ("qid", "q 1", "hit 0: the qid 'q 1' is empty or contains whitespace"),
    ],
)
def test_rank_llm_ids_that_a_trec_run_cannot_hold(tmp_path: Path, field: str, value: str, message: str) -> None:
    hits = [{"qid": "q1", "docid": f"d{i}", "score": 1.0 - i, "content": f"text {i}"} for i in range(4)]
    hits[0 if field == "qid" else 2][field] = value
    if field == "qid":
        for hit in hits:
            hit["qid"] = value
    path = write(tmp_path / "ids.json", json.dumps([{"query": "q", "hits": hits}]))
    with pytest.raises(trec.InputError, match=f"^{path}: entry 0, ") as caught:
        trec.read_rank_llm_json(path)
    assert message in str(caught.value)


def test_text_that_is_not_utf8_names_file_and_line(tmp_path: Path) -> None:
    run = tmp_path / "run.trec"
    run.write_bytes(b"1 Q0 a 1 2.0 t\n\n1 Q0 b\xff 2 1.0 t\n")
    with pytest.raises(trec.InputError, match=rf"^{run}:3: not UTF-8 text \(byte 0xff at column 7\)"):
        trec.read_run(run)
    topics = tmp_path / "topics.tsv"
    topics.write_bytes("1\tcaf\xe9\n".encode("cp1252"))
    with pytest.raises(trec.InputError, match=rf"^{topics}:1: not UTF-8 text \(byte 0xe9 at column 6\)"):
        trec.read_topics(topics)
    corpus = tmp_path / "corpus.jsonl.gz"
    with gzip.open(corpus, "wb") as handle:
        handle.write(b'{"docid": "a", "text": "x"}\n{"docid": "b", "text": "\xc3"}\n')
    with pytest.raises(trec.InputError, match=rf"^{corpus}:2: not UTF-8 text"):
        trec.read_corpus(corpus)
    qrels = tmp_path / "qrels.txt"
    qrels.write_bytes(b"1 0 a 1\n1 0 \x80 0\n")
    with pytest.raises(trec.InputError, match=rf"^{qrels}:2: not UTF-8 text"):
        trec.read_qrels(qrels)
    data = tmp_path / "hits.json"
    data.write_bytes(b'[{"query": "q",\n "hits": [{"qid": "1", "docid": "a", "content": "\xe9t\xe9"}]}]\n')
    with pytest.raises(trec.InputError, match=rf"^{data}:2: not UTF-8 text \(byte 0xe9 at column 50\)"):
        trec.read_rank_llm_json(data)
    assert trec.run_format(data) == "rank_llm"


def test_resume_removes_what_a_kill_during_the_final_write_left(tmp_path: Path, tiny_paths: dict[str, str]) -> None:
    """Killed while OUT was being written: the journal is complete and a ``.OUT.<random>.tmp`` is left behind."""
    common = ["rerank-run", "--model", tiny_paths["sequence-classification"], "--run", str(SAMPLE), "--quiet"]
    output = tmp_path / "out.trec"
    assert main([*common, "--depth", "4", "--output", str(output)]) == 0
    finished = output.read_text()
    output.rename(tmp_path / "out.trec.partial")
    stale = [tmp_path / ".out.trec.k2x_9q0z.tmp", tmp_path / ".out.trec.partial.abc12345.tmp"]
    stale[0].write_text(finished[:100])
    stale[1].write_text(finished[:10])
    unrelated = write(tmp_path / ".other.trec.abcdefgh.tmp", "not ours")
    assert trec.stale_temporary_files(output) == [stale[0]]
    assert main([*common, "--depth", "4", "--output", str(output), "--resume"]) == 0
    assert output.read_text() == finished
    assert sorted(path.name for path in tmp_path.iterdir()) == [unrelated.name, "out.trec"]


def test_output_checks_come_before_reading(tmp_path: Path) -> None:
    with pytest.raises(trec.InputError, match="the output is a directory"):
        trec.RunWriter(tmp_path, "tag", {})
    with pytest.raises(trec.InputError, match="no such directory for the output"):
        trec.check_writable(tmp_path / "missing" / "out.trec")
    assert trec.check_writable(tmp_path / "out.trec") == tmp_path / "out.trec"
    assert list(tmp_path.iterdir()) == []  # the probe leaves nothing behind


def test_the_shipped_trec_sample_holds_the_json_sample(
    sample: tuple[dict[str, str], trec.Run, dict[str, str]],
) -> None:
    """``dl19-sample.trec`` + ``topics.tsv`` + ``dl19-sample-corpus.jsonl`` = ``dl19-sample.json`` (docs/trec.md)."""
    topics, run, corpus = sample
    assert trec.read_run(DATA / "dl19-sample.trec") == run
    assert trec.read_corpus(DATA / "dl19-sample-corpus.jsonl") == corpus
    assert {qid: query for qid, query in trec.read_topics(DATA / "topics.tsv").items() if qid in run} == topics


def test_every_public_name_of_the_old_module_is_still_importable() -> None:
    """``trec.py`` became a package; ``from rerank_plugins.trec import X`` must keep working for every old name."""
    old_names = {
        "DEFAULT_METRICS", "InputError", "Job", "MAX_LISTED", "Qrels", "Ranking", "Run", "RunWriter", "atomic_write",
        "check_tag", "corpus_format", "default_tag", "evaluate", "format_ranking", "ir_measures_module",
        "order_ranking", "plan", "read_corpus", "read_qrels", "read_rank_llm_json", "read_run", "read_topics",
        "rerank_jobs", "rerank_run", "run_format", "score_query", "write_run",
    }  # fmt: skip
    assert old_names <= set(trec.__all__)
    assert all(getattr(trec, name) is not None for name in trec.__all__)
