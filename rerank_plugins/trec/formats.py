"""Reading the files of the IR workflow: TREC runs and qrels, topics, corpora and rank_llm-style JSON.

Every reader checks every line and names the file and line of the first bad one, because a run that is read
wrongly is evaluated wrongly without any error. The formats are described in :mod:`rerank_plugins.trec`.
"""

from __future__ import annotations

import gzip
import io
import json
import logging
import math
import os
import re
from collections.abc import Collection, Iterator
from typing import Any, BinaryIO

logger = logging.getLogger(__name__)

RunRanking = list[tuple[str, float]]
"""One query's documents in a run, as ``(docid, score)``, best first."""
Ranking = RunRanking
"""Deprecated name of :data:`RunRanking` (``rerank_plugins.core.Ranking`` is the request core's answer type)."""
Run = dict[str, RunRanking]
"""qid -> ranking; the dict keeps the order in which queries first appear."""
Qrels = dict[str, dict[str, int]]
"""qid -> docid -> relevance grade."""

LAYOUTS = {"run": "qid Q0 docid rank score tag", "qrels": "qid iteration docid relevance"}
"""The columns of each whitespace-separated TREC format."""


class InputError(ValueError):
    """A malformed input file, or inputs that do not fit together; the message says where."""


def _open_binary(path: str | os.PathLike[str]) -> BinaryIO:
    """Open a file for reading bytes, gunzipping ``*.gz``."""
    if str(path).endswith(".gz"):
        return gzip.open(path, "rb")  # type: ignore[return-value]
    return open(path, "rb")


def _not_utf8(where: str, data: bytes, start: int) -> InputError:
    """The error for the byte at ``data[start]``, the first that is not UTF-8, with its column on its line."""
    column = start - data.rfind(b"\n", 0, start)
    return InputError(f"{where}: not UTF-8 text (byte {data[start]:#04x} at column {column}); convert it to UTF-8")


def _lines(path: str | os.PathLike[str]) -> Iterator[tuple[int, str]]:
    """``(line number, line without its newline)`` for every non-blank line; a line that is not UTF-8 is an error."""
    with _open_binary(path) as handle:
        for number, raw in enumerate(handle, start=1):
            try:
                line = raw.decode("utf-8").rstrip("\r\n")
            except UnicodeDecodeError as error:
                raise _not_utf8(f"{path}:{number}", raw, error.start) from None
            if line.strip():
                yield number, line


def read_text(path: str | os.PathLike[str]) -> str:
    """A whole file as UTF-8 text; a byte that is not UTF-8 is an :class:`InputError` naming its line."""
    with _open_binary(path) as handle:
        data = handle.read()
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as error:
        line = data.count(b"\n", 0, error.start) + 1
        raise _not_utf8(f"{path}:{line}", data, error.start) from None


def parse_number(text: str, kind: type[int] | type[float], what: str, where: str) -> Any:
    try:
        value = kind(text)
    except ValueError:
        raise InputError(f"{where}: the {what} {text!r} is not a{'n integer' if kind is int else ' number'}") from None
    if kind is float and not math.isfinite(value):
        raise InputError(f"{where}: the {what} {text!r} is not a finite number")
    return value


def split_columns(line: str, kind: str, where: str) -> list[str]:
    """The whitespace-separated fields of a ``kind`` line (see :data:`LAYOUTS`), which must be as many as it has."""
    parts, layout = line.split(), LAYOUTS[kind]
    if len(parts) != len(layout.split()):
        raise InputError(
            f"{where}: a {kind} line has {len(layout.split())} columns ({layout}), this one has {len(parts)}: "
            f"{line[:80]!r}"
        )
    return parts


def check_id(value: str, what: str, where: str) -> str:
    """An id written into a TREC run must be one non-empty token: whitespace would add columns to its line."""
    if not value or re.search(r"\s", value):
        raise InputError(f"{where}: the {what} {value!r} is empty or contains whitespace, which a TREC run cannot hold")
    return value


def read_run(path: str | os.PathLike[str]) -> Run:
    """Read a TREC run: qid -> ``[(docid, score), ...]`` by descending score (ties: the rank column, then file order).

    Raises :class:`InputError` naming ``file:line`` for a line without 6 columns, a rank that is not an integer,
    a score that is not a finite number, a docid listed twice for one query, or text that is not UTF-8.
    """
    rows: dict[str, list[tuple[float, int, int, str]]] = {}
    first_seen: dict[tuple[str, str], int] = {}
    for number, line in _lines(path):
        where = f"{path}:{number}"
        qid, _, docid, rank, score, _ = split_columns(line, "run", where)
        rank_value = parse_number(rank, int, "rank", where)
        score_value = parse_number(score, float, "score", where)
        if (qid, docid) in first_seen:
            raise InputError(
                f"{where}: docid {docid} is listed twice for query {qid} (first on line {first_seen[qid, docid]})"
            )
        first_seen[qid, docid] = number
        rows.setdefault(qid, []).append((-score_value, rank_value, number, docid))
    return {qid: [(docid, -neg) for neg, _, _, docid in sorted(entries)] for qid, entries in rows.items()}


def read_qrels(path: str | os.PathLike[str]) -> Qrels:
    """Read TREC qrels: qid -> docid -> relevance. A pair judged twice with different grades is an error."""
    qrels: Qrels = {}
    for number, line in _lines(path):
        where = f"{path}:{number}"
        qid, _, docid, grade = split_columns(line, "qrels", where)
        relevance = parse_number(grade, int, "relevance", where)
        judged = qrels.setdefault(qid, {})
        if judged.get(docid, relevance) != relevance:
            raise InputError(f"{where}: docid {docid} of query {qid} is judged twice, {judged[docid]} and {relevance}")
        judged[docid] = relevance
    return qrels


def read_topics(path: str | os.PathLike[str]) -> dict[str, str]:
    """Read ``qid<TAB>query`` lines: qid -> query text."""
    topics: dict[str, str] = {}
    for number, line in _lines(path):
        where = f"{path}:{number}"
        qid, tab, query = line.partition("\t")
        qid, query = qid.strip(), query.strip()
        if not tab or not qid or not query:
            raise InputError(f"{where}: a topics line is 'qid<TAB>query', got {line[:80]!r}")
        if qid in topics:
            raise InputError(f"{where}: query {qid} is listed twice")
        topics[qid] = query
    return topics


def run_format(path: str | os.PathLike[str]) -> str:
    """``"rank_llm"`` for a JSON file (by extension, or a first character ``[``), else ``"trec"``."""
    if str(path).removesuffix(".gz").lower().endswith(".json"):
        return "rank_llm"
    with _open_binary(path) as handle:
        start = handle.read(256).decode("utf-8", errors="replace").lstrip()
    return "rank_llm" if start.startswith("[") else "trec"


def corpus_format(path: str | os.PathLike[str]) -> str:
    """``"jsonl"`` or ``"tsv"``: from the extension, else from whether the first line looks like a JSON object."""
    name = str(path).removesuffix(".gz").lower()
    if name.endswith((".jsonl", ".json", ".ndjson")):
        return "jsonl"
    if name.endswith(".tsv"):
        return "tsv"
    for _, line in _lines(path):
        return "jsonl" if line.lstrip().startswith("{") else "tsv"
    return "tsv"


def _jsonl_document(line: str, where: str) -> tuple[str, str]:
    try:
        record = json.loads(line)
    except json.JSONDecodeError as error:
        raise InputError(f"{where}: not a JSON object ({error.msg}): {line[:80]!r}") from None
    if not isinstance(record, dict):
        raise InputError(f"{where}: expected a JSON object with 'docid' and 'text', got {line[:80]!r}")
    docid = record.get("docid", record.get("_id"))
    text = record.get("text")
    if not isinstance(docid, (str, int)) or isinstance(docid, bool):
        raise InputError(f"{where}: the object has no 'docid' (or '_id') string: {line[:80]!r}")
    if not isinstance(text, str):
        raise InputError(f"{where}: the object has no 'text' string: {line[:80]!r}")
    title = record.get("title")
    if isinstance(title, str) and title.strip():
        text = f"{title.strip()} {text}"
    return str(docid), text


def _tsv_document(line: str, where: str) -> tuple[str, str]:
    docid, tab, text = line.partition("\t")
    if not tab or not docid.strip():
        raise InputError(f"{where}: a corpus line is 'docid<TAB>text', got {line[:80]!r}")
    return docid.strip(), text


def read_corpus(path: str | os.PathLike[str], wanted: Collection[str] | None = None) -> dict[str, str]:
    """Read a corpus (JSONL or TSV, see :mod:`rerank_plugins.trec`): docid -> text.

    ``wanted`` keeps only those docids, so that re-ranking a run does not hold a whole collection in memory;
    every line is still checked. A docid given twice with different texts is an error.
    """
    parse = _jsonl_document if corpus_format(path) == "jsonl" else _tsv_document
    corpus: dict[str, str] = {}
    for number, line in _lines(path):
        where = f"{path}:{number}"
        docid, text = parse(line, where)
        if wanted is not None and docid not in wanted:
            continue
        if corpus.get(docid, text) != text:
            raise InputError(f"{where}: docid {docid} is given twice with different texts")
        corpus[docid] = text
    return corpus


def read_rank_llm_json(path: str | os.PathLike[str]) -> tuple[dict[str, str], Run, dict[str, str]]:
    """Read a rank_llm-style file of queries with their hits and texts: ``(topics, run, corpus)``.

    Hits keep their order in the file (rank_llm writes them best first); a missing score becomes minus the rank.
    A qid or docid that is empty or holds whitespace is an error, since the TREC run written from it could not
    be read back.
    """
    try:
        data = json.load(io.StringIO(read_text(path)))
    except json.JSONDecodeError as error:
        raise InputError(f"{path}:{error.lineno}: not valid JSON ({error.msg})") from None
    if not isinstance(data, list):
        raise InputError(f"{path}: expected a JSON list of {{'query', 'hits'}} objects")
    topics: dict[str, str] = {}
    run: Run = {}
    corpus: dict[str, str] = {}
    for index, entry in enumerate(data):
        where = f"{path}: entry {index}"
        if (
            not isinstance(entry, dict)
            or not isinstance(entry.get("query"), str)
            or not isinstance(entry.get("hits"), list)
        ):
            raise InputError(f"{where}: expected an object with a 'query' string and a 'hits' list")
        if not entry["hits"]:
            logger.warning("%s: query %r has no hits; it is left out.", where, entry["query"][:60])
            continue
        ranking: RunRanking = []
        qid = None
        for position, hit in enumerate(entry["hits"]):
            here = f"{where}, hit {position}"
            if not isinstance(hit, dict) or not all(key in hit for key in ("qid", "docid", "content")):
                raise InputError(f"{here}: a hit needs 'qid', 'docid' and 'content'")
            if not isinstance(hit["content"], str):
                raise InputError(f"{here}: 'content' is not a string")
            hit_qid, docid = check_id(str(hit["qid"]), "qid", here), check_id(str(hit["docid"]), "docid", here)
            if qid is None:
                qid = hit_qid
            elif hit_qid != qid:
                raise InputError(f"{here}: qid {hit_qid} differs from this entry's first hit ({qid})")
            if any(docid == seen for seen, _ in ranking):
                raise InputError(f"{here}: docid {docid} is listed twice for query {qid}")
            score = hit.get("score", -float(hit.get("rank", position + 1)))
            if isinstance(score, bool) or not isinstance(score, (int, float)) or not math.isfinite(score):
                raise InputError(f"{here}: 'score' is not a finite number")
            ranking.append((docid, float(score)))
            corpus.setdefault(docid, hit["content"])
        assert qid is not None
        if qid in run:
            raise InputError(f"{where}: query {qid} appears twice")
        topics[qid] = entry["query"]
        run[qid] = ranking
    return topics, run, corpus
