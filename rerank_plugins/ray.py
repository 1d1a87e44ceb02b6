"""Re-ranking at scale on Ray Data: one model per actor, rows streamed to an actor pool.

:func:`rerank_dataset` takes a ``ray.data.Dataset`` of ``(qid, docid, query, text)`` rows and returns it with a
``score`` column. Each actor loads ``rerank_plugins.CrossEncoder`` once, in its constructor; Ray Data feeds it
batches and schedules as many actors as ``concurrency`` allows (``num_gpus`` each). Pointwise models get
batches of ``batch_size`` rows from any queries; listwise models (ListConRanker) get one whole query per call,
because a document's score depends on the rest of its list. Scores equal those of the local path
(:func:`rerank_plugins.trec.rerank_run`) up to float rounding from different batch padding.

Ray is imported lazily: ``pip install 'rerank-plugins[ray]'``. See ``docs/scale-out.md`` for clusters.
"""

from __future__ import annotations

import math
import os
import warnings
from collections.abc import Iterable, Iterator, Mapping
from typing import Any, TypedDict, Unpack

import numpy as np

from rerank_plugins.trec import Job, RunRanking, order_ranking

ROWS_PER_CALL = 256
"""Rows per actor call for a pointwise model (the model then batches them by its own policy)."""
COLUMNS = ("qid", "docid", "query", "text")
"""The columns :func:`rerank_dataset` needs; others (e.g. ``position``) are passed through."""


class ActorOptions(TypedDict, total=False):
    """What the actors load, how they are fed and scheduled: the keyword arguments both Ray functions take.

    Attributes:
        model_kwargs: ``CrossEncoder`` keyword arguments (``family``, ``preset``, ``max_length``, ``device``...).
        batch_size: rows per model forward (listwise: texts per encoder forward), and for a pointwise model rows
            per actor call; None (the default): the model's own batching policy (32 rows on a CPU, a token budget
            on an accelerator) over :data:`ROWS_PER_CALL` rows per call. A listwise model gets one query per call.
        concurrency: actors in the pool: ``n`` (1), or ``(min, max)`` to let Ray Data autoscale between them.
        num_gpus: GPUs reserved per actor (0; e.g. 1, or a fraction to pack several actors on one GPU).
        num_cpus: CPUs reserved per actor (Ray's default when None or not given).
        listwise: whether to score whole queries together; None (the default) detects it (see :func:`is_listwise`).
    """

    model_kwargs: Mapping[str, Any] | None
    batch_size: int | None
    concurrency: int | tuple[int, int]
    num_gpus: float
    num_cpus: float | None
    listwise: bool | None


def import_ray() -> Any:
    """The ``ray`` module with Ray Data, or an ImportError that says how to install it.

    Ray's usage statistics are switched off (``RAY_USAGE_STATS_ENABLED=0``, unless set otherwise): at start-up
    they probe cloud metadata addresses and report to Ray's servers, which a re-ranking job has no reason to do.
    """
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    try:
        import ray
        import ray.data  # the Data library is an extra of ray
    except ImportError as error:
        raise ImportError("scale-out needs Ray Data: pip install 'rerank-plugins[ray]'") from error
    return ray


def is_listwise(model_name_or_path: str, model_kwargs: Mapping[str, Any] | None = None) -> bool:
    """Whether a model is listwise, decided by ``resolve_family`` as ``CrossEncoder`` does, without loading it.

    The driver needs this to choose how to batch, and should not hold a copy of a model that only the actors use.
    """
    from rerank_plugins.hub import HubOptions
    from rerank_plugins.resolution import resolve_family

    kwargs = dict(model_kwargs or {})
    resolution = resolve_family(
        model_name_or_path, family=kwargs.get("family"), preset=kwargs.get("preset"), hub=HubOptions.from_kwargs(kwargs)
    )
    return resolution.listwise


def _listwise_here(model_name_or_path: str, model_kwargs: Mapping[str, Any]) -> bool:
    """:func:`is_listwise`, or False when the checkpoint cannot be read from this machine (the actors may)."""
    try:
        return is_listwise(model_name_or_path, model_kwargs)
    except OSError:
        return False


class RequestScorer:
    """A Ray Data actor: loads its own model once, and scores each batch of rows as requests, one per ``qid``.

    Rows of one qid are one request (in ``position`` order when that column exists), whatever their query text:
    two queries with the same text stay two lists. A listwise model gets all rows of one qid per call.
    """

    def __init__(
        self,
        model_name_or_path: str,
        model_kwargs: Mapping[str, Any],
        batch_size: int | None,
        rank_kwargs: Mapping[str, Any] | None = None,
    ) -> None:
        from rerank_plugins import CrossEncoder

        self.model = CrossEncoder(model_name_or_path, **dict(model_kwargs))
        self.batch_size = batch_size
        self.rank_kwargs = dict(rank_kwargs or {})

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        if "position" in batch:
            order = np.argsort(batch["position"], kind="stable")
            batch = {column: values[order] for column, values in batch.items()}
        rows: dict[str, list[int]] = {}
        for row, qid in enumerate(batch["qid"]):
            rows.setdefault(str(qid), []).append(row)
        made = []
        for qid, members in rows.items():
            queries = {str(batch["query"][row]) for row in members}
            if len(queries) != 1:
                raise ValueError(f"query {qid} has {len(queries)} different query texts")
            texts = [str(batch["text"][row]) for row in members]
            made.append(self.model.make_request(
                queries.pop(), texts, batch_size=self.batch_size, show_progress_bar=False, **self.rank_kwargs
            ))  # fmt: skip
        scores = np.empty(len(batch["qid"]), dtype=np.float64)
        if made:
            rankings = self.model.rank_requests([request for request, _ in made], made[0][1])
            for members, ranking in zip(rows.values(), rankings, strict=True):
                scores[members] = ranking.scores
        return {**batch, "score": scores}


PairScorer = ListScorer = RequestScorer
"""Deprecated names of :class:`RequestScorer` (one actor scores pointwise and listwise models alike)."""


def rerank_dataset(
    ds: Any,
    model_name_or_path: str,
    *,
    rank_kwargs: Mapping[str, Any] | None = None,
    num_partitions: int | None = None,
    **options: Unpack[ActorOptions],
) -> Any:
    """Score every row of a Ray ``Dataset`` of ``(qid, docid, query, text)`` rows; returns it with a ``score`` column.

    Args:
        ds: a ``ray.data.Dataset`` with at least the columns :data:`COLUMNS` (strings).
        model_name_or_path: what each actor loads; a hub id, or a path that every node can read.
        rank_kwargs: ``CrossEncoder.rank`` options: ``{"window": Window(...)}`` for any model, and e.g.
            ``{"iterative": True}`` for listwise models.
        num_partitions: listwise only: partitions of the shuffle that groups rows by qid (Ray's default if None).
        options: ``model_kwargs``, ``batch_size``, ``concurrency``, ``num_gpus``, ``num_cpus``, ``listwise``:
            see :class:`ActorOptions`.

    Nothing runs until the result is consumed (Ray Data is lazy); rows come back in no particular order.
    """
    ray = import_ray()
    missing = [column for column in COLUMNS if column not in ds.columns()]
    if missing:
        raise ValueError(f"the dataset lacks the column(s) {', '.join(missing)}; it needs {', '.join(COLUMNS)}")
    check_actor_options(options)
    kwargs = dict(options.get("model_kwargs") or {})
    listwise = options.get("listwise")
    if listwise is None:
        listwise = is_listwise(model_name_or_path, kwargs)
    if not listwise and set(rank_kwargs or {}) - {"window"}:
        raise ValueError(f"rank options {sorted(set(rank_kwargs or {}) - {'window'})} apply to listwise models only")
    if options.get("listwise") is False and _listwise_here(model_name_or_path, kwargs):
        raise ValueError(
            f"{model_name_or_path} is a listwise model: listwise=False would cut and merge its lists across actor "
            "calls. Leave listwise out (it is detected) or pass listwise=True."
        )
    concurrency = options.get("concurrency", 1)
    size = (concurrency, concurrency) if isinstance(concurrency, int) else concurrency
    batch_size = options.get("batch_size")
    actor: dict[str, Any] = {
        "fn_constructor_args": (model_name_or_path, kwargs, batch_size, dict(rank_kwargs or {})),
        "compute": ray.data.ActorPoolStrategy(min_size=size[0], max_size=size[1]),
        "batch_format": "numpy",
        "num_gpus": options.get("num_gpus", 0),
    }
    if options.get("num_cpus") is not None:
        actor["num_cpus"] = options["num_cpus"]
    if listwise:
        return ds.groupby("qid", num_partitions=num_partitions).map_groups(RequestScorer, **actor)
    return ds.map_batches(RequestScorer, batch_size=batch_size or ROWS_PER_CALL, **actor)


def check_actor_options(options: Mapping[str, Any]) -> None:
    """A TypeError naming any keyword that is not an :class:`ActorOptions` key (a typo would be ignored)."""
    unknown = sorted(set(options) - ActorOptions.__optional_keys__)
    if unknown:
        raise TypeError(
            f"unknown option(s) {unknown}: the actor options are {sorted(ActorOptions.__optional_keys__)}, "
            "and rank options go in rank_kwargs="
        )


def rerank_jobs(
    model_name_or_path: str,
    jobs: Iterable[Job],
    *,
    rank_kwargs: Mapping[str, Any] | None = None,
    **options: Unpack[ActorOptions],
) -> Iterator[tuple[str, RunRanking]]:
    """The Ray counterpart of :func:`rerank_plugins.trec.rerank_jobs` (the model, then the jobs, as there): yields
    ``(qid, ranking)`` per finished query.

    ``rank_kwargs`` and ``options`` are those of :func:`rerank_dataset`. Rows stream back from the actors in any
    order; a query is yielded once all its rows have come back, ordered exactly as the local path orders it, so
    that ``rerank-run --engine ray`` can save and resume query by query. (The old order, jobs first, still works
    with a DeprecationWarning.)
    """
    if isinstance(jobs, str) and not isinstance(model_name_or_path, str):
        warnings.warn("rerank_jobs(jobs, model) is deprecated: pass the model first", DeprecationWarning, stacklevel=2)
        model_name_or_path, jobs = jobs, model_name_or_path
    check_actor_options(options)  # before any row is built
    ray = import_ray()
    by_qid = {job.qid: job for job in jobs}
    rows = [
        {"qid": job.qid, "docid": docid, "query": job.query, "text": text, "position": position}
        for job in by_qid.values()
        for position, (docid, text) in enumerate(zip(job.docids, job.texts, strict=True))
    ]
    if not rows:
        return
    scored = rerank_dataset(
        ray.data.from_items(rows),
        model_name_or_path,
        rank_kwargs=rank_kwargs,
        num_partitions=min(len(by_qid), 64),  # Ray's default (200) is slow for a few queries
        **options,
    )
    scores = {qid: [math.nan] * len(job.docids) for qid, job in by_qid.items()}
    waiting = {qid: len(job.docids) for qid, job in by_qid.items()}
    for batch in scored.iter_batches(batch_size=None, batch_format="numpy"):
        for qid, position, score in zip(batch["qid"], batch["position"], batch["score"], strict=True):
            qid = str(qid)
            scores[qid][int(position)] = float(score)
            waiting[qid] -= 1
            if waiting[qid] == 0:
                yield qid, order_ranking(by_qid[qid], scores.pop(qid))
