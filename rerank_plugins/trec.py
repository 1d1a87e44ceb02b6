"""TREC files in and out, and re-ranking a whole run query by query.

The readers check every line and name the file and line of the first bad one, because a run that is read
wrongly is evaluated wrongly without any error. Formats:

* run: ``qid Q0 docid rank score tag`` (whitespace-separated, 6 columns); candidates are ordered by score,
  best first, ties by the rank column, as evaluation tools read them.
* qrels: ``qid iteration docid relevance`` (4 columns, integer relevance).
* topics: ``qid<TAB>query``.
* corpus: JSONL ``{"docid": ..., "text": ...}`` (BEIR's ``_id`` and ``title`` are accepted too) or TSV
  ``docid<TAB>text``; either may be gzipped.
* rank_llm-style JSON: ``[{"query": str, "hits": [{"qid", "docid", "rank", "score", "content"}]}]``.

:func:`rerank_run` re-ranks the top ``depth`` candidates of every query and yields each query as soon as it is
done; :class:`RunWriter` saves each finished query durably so that an interrupted run resumes without losing or
repeating work.
"""

from __future__ import annotations

import gzip
import json
import logging
import math
import os
import re
import tempfile
from collections.abc import Collection, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, TextIO

if TYPE_CHECKING:
    from rerank_plugins.cross_encoder import CrossEncoder

logger = logging.getLogger(__name__)

Ranking = list[tuple[str, float]]
"""One query's documents as ``(docid, score)``, best first."""
Run = dict[str, Ranking]
"""qid -> ranking; the dict keeps the order in which queries first appear."""
Qrels = dict[str, dict[str, int]]
"""qid -> docid -> relevance grade."""

MAX_LISTED = 5  # missing ids listed in an error message


class InputError(ValueError):
    """A malformed input file, or inputs that do not fit together; the message says where."""


# -- reading ----------------------------------------------------------------------------------------------------
def _open(path: str | os.PathLike[str]) -> TextIO:
    """Open a text file for reading, gunzipping ``*.gz``."""
    if str(path).endswith(".gz"):
        return gzip.open(path, "rt", encoding="utf-8")
    return open(path, encoding="utf-8")


def _lines(path: str | os.PathLike[str]) -> Iterator[tuple[int, str]]:
    """``(line number, line without its newline)`` for every non-blank line."""
    with _open(path) as handle:
        for number, line in enumerate(handle, start=1):
            line = line.rstrip("\r\n")
            if line.strip():
                yield number, line


def _number(text: str, kind: type[int] | type[float], what: str, where: str) -> Any:
    try:
        value = kind(text)
    except ValueError:
        raise InputError(f"{where}: the {what} {text!r} is not a{'n integer' if kind is int else ' number'}") from None
    if kind is float and not math.isfinite(value):
        raise InputError(f"{where}: the {what} {text!r} is not a finite number")
    return value


def read_run(path: str | os.PathLike[str]) -> Run:
    """Read a TREC run: qid -> ``[(docid, score), ...]`` by descending score (ties: the rank column, then file order).

    Raises :class:`InputError` naming ``file:line`` for a line without 6 columns, a rank that is not an integer,
    a score that is not a finite number, or a docid listed twice for one query.
    """
    rows: dict[str, list[tuple[float, int, int, str]]] = {}
    first_seen: dict[tuple[str, str], int] = {}
    for number, line in _lines(path):
        where = f"{path}:{number}"
        parts = line.split()
        if len(parts) != 6:
            raise InputError(
                f"{where}: a run line has 6 columns (qid Q0 docid rank score tag), this one has {len(parts)}: "
                f"{line[:80]!r}"
            )
        qid, _, docid, rank, score, _ = parts
        rank_value = _number(rank, int, "rank", where)
        score_value = _number(score, float, "score", where)
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
        parts = line.split()
        if len(parts) != 4:
            raise InputError(
                f"{where}: a qrels line has 4 columns (qid iteration docid relevance), this one has {len(parts)}: "
                f"{line[:80]!r}"
            )
        qid, _, docid, grade = parts
        relevance = _number(grade, int, "relevance", where)
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
    with _open(path) as handle:
        start = handle.read(256).lstrip()
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
    """Read a corpus (JSONL or TSV, see the module docstring): docid -> text.

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
    """
    try:
        with _open(path) as handle:
            data = json.load(handle)
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
        ranking: Ranking = []
        qid = None
        for position, hit in enumerate(entry["hits"]):
            here = f"{where}, hit {position}"
            if not isinstance(hit, dict) or not all(key in hit for key in ("qid", "docid", "content")):
                raise InputError(f"{here}: a hit needs 'qid', 'docid' and 'content'")
            if not isinstance(hit["content"], str):
                raise InputError(f"{here}: 'content' is not a string")
            hit_qid, docid = str(hit["qid"]), str(hit["docid"])
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


# -- writing ----------------------------------------------------------------------------------------------------
def format_ranking(qid: str, ranking: Ranking, tag: str) -> str:
    """TREC run lines for one query; scores as ``repr`` so that they read back to the same float."""
    return "".join(f"{qid} Q0 {docid} {rank} {score!r} {tag}\n" for rank, (docid, score) in enumerate(ranking, 1))


def check_tag(tag: str) -> str:
    """A run tag is one non-empty token: whitespace would add columns."""
    if not tag or re.search(r"\s", tag):
        raise InputError(f"the run tag must be one word without whitespace, got {tag!r}")
    return tag


def default_tag(model_name: str) -> str:
    """A run tag from a model name or path: its last component, whitespace replaced."""
    name = re.sub(r"\s+", "_", Path(model_name.rstrip("/\\")).name)
    return name or "rerank-plugins"


def _fsync_directory(directory: Path) -> None:
    """Make a rename in ``directory`` durable (POSIX only; a no-op where directories cannot be opened)."""
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def atomic_write(path: str | os.PathLike[str], chunks: Iterable[str]) -> None:
    """Write ``chunks`` to ``path`` so that readers see the old file or the whole new one, never a part.

    The text goes to a temporary file in the same directory, is flushed to disk, then renamed over ``path``.
    """
    target = Path(path)
    mode = target.stat().st_mode & 0o777 if target.exists() else 0o644  # mkstemp's 0600 would hide the run
    fd, temporary = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            for chunk in chunks:
                handle.write(chunk)
            handle.flush()
            os.fsync(handle.fileno())
        os.chmod(temporary, mode)
        os.replace(temporary, target)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise
    _fsync_directory(target.parent)


def write_run(path: str | os.PathLike[str], run: Mapping[str, Ranking], tag: str) -> None:
    """Write a whole run atomically (see :func:`atomic_write`), queries in the mapping's order."""
    check_tag(tag)
    atomic_write(path, (format_ranking(qid, ranking, tag) for qid, ranking in run.items()))


class RunWriter:
    """Saves a re-ranked run query by query so that an interruption loses nothing.

    Each finished query is appended to ``OUT.partial`` and flushed to disk before the next one starts;
    :meth:`finish` writes ``OUT`` atomically from all of them and removes the partial file. ``OUT`` is therefore
    never half-written. With ``resume=True`` the queries already in ``OUT`` and the complete queries of
    ``OUT.partial`` are kept (:attr:`done`) and need not be re-ranked. A query in the partial file counts as
    complete when it has as many lines as ``expected`` says; only the query being written when the process
    stopped can fall short, and it is re-ranked.

    Args:
        path: the output run file.
        tag: the run tag written in the last column.
        expected: qid -> number of documents each query of this job will have.
        resume: keep the work of an earlier, interrupted or finished, invocation.
    """

    def __init__(self, path: str | os.PathLike[str], tag: str, expected: Mapping[str, int], *, resume: bool = False):
        self.path = Path(path)
        self.partial = self.path.with_name(self.path.name + ".partial")
        self.tag = check_tag(tag)
        self.expected = dict(expected)
        self.done: Run = {}
        self.resumed = 0
        if not self.path.parent.is_dir():
            raise InputError(f"{self.path.parent}: no such directory for the output")
        if not resume:
            if self.partial.exists():
                raise InputError(
                    f"{self.partial} holds the finished queries of an interrupted run: pass --resume to continue "
                    "it, or delete the file to start over"
                )
            return
        if self.path.exists():
            self.done.update(read_run(self.path))
        kept = self._complete_partial_queries()
        self.done.update(kept)
        self.resumed = len(self.done)
        if self.partial.exists():  # drop a torn last query before appending after it
            atomic_write(self.partial, (format_ranking(qid, ranking, self.tag) for qid, ranking in kept.items()))

    def _complete_partial_queries(self) -> Run:
        """The queries of ``OUT.partial`` that were written completely."""
        if not self.partial.exists():
            return {}
        with open(self.partial, encoding="utf-8") as handle:
            text = handle.read()
        text = text[: text.rfind("\n") + 1]  # a last line without its newline was cut off mid-write
        blocks: list[tuple[str, Ranking]] = []
        for number, line in enumerate(text.splitlines(), start=1):
            where = f"{self.partial}:{number}"
            parts = line.split()
            if len(parts) != 6:
                raise InputError(f"{where}: not a run line: {line[:80]!r}")
            qid, docid, score = parts[0], parts[2], _number(parts[4], float, "score", where)
            if not blocks or blocks[-1][0] != qid:
                blocks.append((qid, []))
            blocks[-1][1].append((docid, score))
        kept: Run = {}
        for index, (qid, ranking) in enumerate(blocks):
            last = index == len(blocks) - 1
            if (qid in self.expected and len(ranking) == self.expected[qid]) or (qid not in self.expected and not last):
                kept[qid] = ranking
            elif not last:
                logger.warning("%s: query %s has %d of %d documents; it is re-ranked.", self.partial, qid,
                               len(ranking), self.expected[qid])  # fmt: skip
        return kept

    def add(self, qid: str, ranking: Ranking) -> None:
        """Append one finished query to the partial file and flush it to disk."""
        with open(self.partial, "a", encoding="utf-8") as handle:
            handle.write(format_ranking(qid, ranking, self.tag))
            handle.flush()
            os.fsync(handle.fileno())
        self.done[qid] = ranking

    def finish(self, order: Sequence[str] = ()) -> None:
        """Write ``OUT`` atomically, queries of ``order`` first and in that order, then remove the partial file."""
        first = {qid: self.done[qid] for qid in order if qid in self.done}
        rest = {qid: ranking for qid, ranking in self.done.items() if qid not in first}
        write_run(self.path, first | rest, self.tag)
        self.partial.unlink(missing_ok=True)


# -- re-ranking -------------------------------------------------------------------------------------------------
@dataclass
class Job:
    """One query to re-rank: its text, the candidates to score (best first) and those kept below them."""

    qid: str
    query: str
    docids: list[str]
    texts: list[str]
    tail: list[str]

    @property
    def size(self) -> int:
        """How many documents this query has in the output."""
        return len(self.docids) + len(self.tail)


def _listing(ids: Sequence[str]) -> str:
    shown = ", ".join(ids[:MAX_LISTED])
    return shown + (f", ... ({len(ids) - MAX_LISTED} more)" if len(ids) > MAX_LISTED else "")


def plan(
    run: Mapping[str, Ranking],
    topics: Mapping[str, str],
    corpus: Mapping[str, str],
    *,
    depth: int = 100,
    keep_tail: bool = False,
    skip_missing: bool = False,
    topics_name: str = "the topics",
    corpus_name: str = "the corpus",
) -> list[Job]:
    """Match a run with its texts: one :class:`Job` per query, the top ``depth`` candidates to re-rank.

    A query without text, or a candidate (within ``depth``) without text, is an error listing the first few;
    with ``skip_missing`` it is left out and counted in a warning instead. Candidates below ``depth`` need no text:
    with ``keep_tail`` they follow the re-ranked ones in their original order, otherwise they are dropped.
    """
    if depth < 1:
        raise InputError(f"the depth must be at least 1, got {depth}")
    no_topic = [qid for qid in run if qid not in topics]
    no_text = [f"{docid} (query {qid})" for qid, ranking in run.items() for docid, _ in ranking[:depth]
               if docid not in corpus]  # fmt: skip
    if not skip_missing:
        if no_topic:
            raise InputError(
                f"{len(no_topic)} of the run's {len(run)} queries are not in {topics_name}: {_listing(no_topic)}"
            )
        if no_text:
            raise InputError(f"{len(no_text)} candidates of the run are not in {corpus_name}: {_listing(no_text)}")
    jobs: list[Job] = []
    for qid, ranking in run.items():
        if qid not in topics:
            continue
        head = [docid for docid, _ in ranking[:depth] if docid in corpus]
        tail = [docid for docid, _ in ranking[depth:]] if keep_tail else []
        if head:
            jobs.append(Job(qid, topics[qid], head, [corpus[docid] for docid in head], tail))
    if no_topic or no_text:
        logger.warning(
            "Skipped %d queries that are not in %s and %d candidates that are not in %s.",
            len(no_topic), topics_name, len(no_text), corpus_name,
        )  # fmt: skip
    return jobs


def score_query(
    model: CrossEncoder, query: str, texts: Sequence[str], *, batch_size: int = 32, **rank_kwargs: Any
) -> list[float]:
    """One score per text, by index, from ``model.rank`` (so listwise models see the whole list)."""
    results = model.rank(query, list(texts), batch_size=batch_size, show_progress_bar=False, **rank_kwargs)
    scores = [math.nan] * len(texts)
    for result in results:
        scores[result["corpus_id"]] = float(result["score"])
    return scores


def order_ranking(job: Job, scores: Sequence[float]) -> Ranking:
    """The job's candidates by descending score (ties: original rank), then its tail below the lowest score."""
    if len(scores) != len(job.docids) or not all(math.isfinite(score) for score in scores):
        raise ValueError(f"query {job.qid}: expected {len(job.docids)} finite scores, got {list(scores)[:5]}...")
    order = sorted(range(len(scores)), key=lambda i: (-scores[i], i))
    ranking = [(job.docids[i], float(scores[i])) for i in order]
    floor = ranking[-1][1] if ranking else 0.0
    return ranking + [(docid, floor - step) for step, docid in enumerate(job.tail, start=1)]


def rerank_jobs(
    model: CrossEncoder, jobs: Iterable[Job], *, batch_size: int = 32, **rank_kwargs: Any
) -> Iterator[tuple[str, Ranking]]:
    """Re-rank each job with ``model``, yielding ``(qid, ranking)`` as each query finishes."""
    for job in jobs:
        yield (
            job.qid,
            order_ranking(job, score_query(model, job.query, job.texts, batch_size=batch_size, **rank_kwargs)),
        )


def rerank_run(
    model: CrossEncoder,
    run: Mapping[str, Ranking],
    topics: Mapping[str, str],
    corpus: Mapping[str, str],
    *,
    depth: int = 100,
    batch_size: int = 32,
    keep_tail: bool = False,
    skip_missing: bool = False,
    **rank_kwargs: Any,
) -> Iterator[tuple[str, Ranking]]:
    """Re-rank the top ``depth`` candidates of every query of ``run``, yielding ``(qid, ranking)`` per query.

    The inputs are all checked (see :func:`plan`) before the first query is scored. ``rank_kwargs`` go to
    ``model.rank`` (e.g. ``iterative=True`` for ListConRanker).
    """
    jobs = plan(run, topics, corpus, depth=depth, keep_tail=keep_tail, skip_missing=skip_missing)
    return rerank_jobs(model, jobs, batch_size=batch_size, **rank_kwargs)


# -- evaluation -------------------------------------------------------------------------------------------------
DEFAULT_METRICS = ("nDCG@10", "RR@10", "R@100")


def ir_measures_module() -> Any:
    """The ``ir_measures`` module, or an ImportError that says how to install it."""
    try:
        import ir_measures
    except ImportError as error:
        raise ImportError("evaluation needs ir-measures: pip install 'rerank-plugins[eval]'") from error
    return ir_measures


def evaluate(
    qrels: Qrels,
    run: Mapping[str, Ranking],
    metrics: Sequence[str] = DEFAULT_METRICS,
    *,
    run_queries_only: bool = False,
) -> dict[str, float]:
    """Each metric's mean over the queries of the qrels, per-query values computed by ir-measures.

    A judged query that the run lacks counts as 0 (``trec_eval -c``), so that a run cannot gain by dropping
    hard queries; ``run_queries_only=True`` averages over the judged queries the run has instead (``trec_eval``
    without ``-c``). The query set is fixed here, not left to the installed ir-measures version. Queries of the
    run without judgements are ignored. Metric names are ir-measures' (``nDCG@10``, ``RR(rel=2)@10``, ``R@1000``,
    ``AP``); a bad name raises ``ValueError``.
    """
    ir_measures = ir_measures_module()
    measures = []
    for name in metrics:
        try:
            measures.append(ir_measures.parse_measure(name))
        except (NameError, ValueError, TypeError) as error:
            raise ValueError(f"unknown metric {name!r} ({error}); see https://ir-measur.es/ for the names") from None
    queries = [qid for qid in qrels if qid in run] if run_queries_only else list(qrels)
    if not queries:
        return dict.fromkeys(metrics, math.nan)
    judgements = (ir_measures.Qrel(qid, docid, grade) for qid in queries for docid, grade in qrels[qid].items())
    scored = (ir_measures.ScoredDoc(qid, docid, score) for qid in queries for docid, score in run.get(qid, ()))
    values: dict[Any, dict[str, float]] = {measure: {} for measure in measures}
    for metric in ir_measures.iter_calc(measures, judgements, scored):
        values[metric.measure][metric.query_id] = float(metric.value)
    return {
        name: sum(values[measure].get(qid, 0.0) for qid in queries) / len(queries)
        for name, measure in zip(metrics, measures, strict=True)
    }
