"""Re-ranking a run query by query: :func:`plan` matches a run with its texts, :func:`rerank_jobs` scores it.

All inputs are checked before the first query is scored, and each query is yielded as soon as it is done, so
that the caller (``rerank-run``, or :mod:`rerank_plugins.ray`) can save it at once.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from rerank_plugins.trec.formats import InputError, RunRanking

if TYPE_CHECKING:
    from rerank_plugins.cross_encoder import CrossEncoder

logger = logging.getLogger(__name__)

MAX_LISTED = 5  # missing ids listed in an error message


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
    run: Mapping[str, RunRanking],
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


QUERIES_TOGETHER_PAIRS = 512
"""Queries are scored together until they hold this many pairs: their rows share batches (fuller forwards on an
accelerator); each query is still yielded, and saved, as soon as its group is done."""


def score_query(
    model: CrossEncoder, query: str, texts: Sequence[str], *, batch_size: int | None = None, **rank_kwargs: Any
) -> list[float]:
    """One score per text, by index: one request to the request core (a listwise model sees the whole list)."""
    request, run = model.make_request(query, texts, batch_size=batch_size, show_progress_bar=False, **rank_kwargs)
    return list(model.rank_request(request, run).scores)


def order_ranking(job: Job, scores: Sequence[float]) -> RunRanking:
    """The job's candidates by descending score (ties: original rank), then its tail below the lowest score."""
    if len(scores) != len(job.docids) or not all(math.isfinite(score) for score in scores):
        raise ValueError(f"query {job.qid}: expected {len(job.docids)} finite scores, got {list(scores)[:5]}...")
    order = sorted(range(len(scores)), key=lambda i: (-scores[i], i))
    ranking = [(job.docids[i], float(scores[i])) for i in order]
    floor = ranking[-1][1] if ranking else 0.0
    return ranking + [(docid, floor - step) for step, docid in enumerate(job.tail, start=1)]


def rerank_jobs(
    model: CrossEncoder, jobs: Iterable[Job], *, batch_size: int | None = None, **rank_kwargs: Any
) -> Iterator[tuple[str, RunRanking]]:
    """Re-rank each job with ``model``, yielding ``(qid, ranking)`` as each query finishes.

    Each query is one request (two queries with the same text stay two lists); queries are scored together in
    groups of about :data:`QUERIES_TOGETHER_PAIRS` pairs, so that their rows share batches.
    """
    group: list[Job] = []
    for job in jobs:
        group.append(job)
        if sum(len(member.texts) for member in group) >= QUERIES_TOGETHER_PAIRS:
            yield from _rerank_group(model, group, batch_size, rank_kwargs)
            group = []
    if group:
        yield from _rerank_group(model, group, batch_size, rank_kwargs)


def _rerank_group(
    model: CrossEncoder, jobs: list[Job], batch_size: int | None, rank_kwargs: Mapping[str, Any]
) -> Iterator[tuple[str, RunRanking]]:
    made = [
        model.make_request(job.query, job.texts, batch_size=batch_size, show_progress_bar=False, **rank_kwargs)
        for job in jobs
    ]
    rankings = model.rank_requests([request for request, _ in made], made[0][1])
    for job, ranking in zip(jobs, rankings, strict=True):
        yield job.qid, order_ranking(job, ranking.scores)


def rerank_run(
    model: CrossEncoder,
    run: Mapping[str, RunRanking],
    topics: Mapping[str, str],
    corpus: Mapping[str, str],
    *,
    depth: int = 100,
    batch_size: int | None = None,
    keep_tail: bool = False,
    skip_missing: bool = False,
    **rank_kwargs: Any,
) -> Iterator[tuple[str, RunRanking]]:
    """Re-rank the top ``depth`` candidates of every query of ``run``, yielding ``(qid, ranking)`` per query.

    The inputs are all checked (see :func:`plan`) before the first query is scored. ``rank_kwargs`` go to
    ``model.rank`` (e.g. ``iterative=True`` for ListConRanker).
    """
    jobs = plan(run, topics, corpus, depth=depth, keep_tail=keep_tail, skip_missing=skip_missing)
    return rerank_jobs(model, jobs, batch_size=batch_size, **rank_kwargs)
