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
from collections.abc import Iterable, Iterator, Mapping
from typing import Any

import numpy as np

from rerank_plugins.trec import Job, Ranking, order_ranking, score_query

COLUMNS = ("qid", "docid", "query", "text")
"""The columns :func:`rerank_dataset` needs; others (e.g. ``position``) are passed through."""


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
    """Whether a model is listwise, decided from its name and files as ``CrossEncoder`` does, without loading it.

    The driver needs this to choose how to batch, and should not hold a copy of a model that only the actors use.
    """
    from rerank_plugins.cross_encoder import detect_family
    from rerank_plugins.registry import check_preset, lookup

    kwargs = dict(model_kwargs or {})
    family = kwargs.get("family")
    if family is None and kwargs.get("preset"):
        family = check_preset(kwargs["preset"]).family
    if family is None:
        entry = lookup(model_name_or_path)
        family = entry.family if entry is not None else None
    if family is None:
        hub = {key: kwargs.get(key) for key in ("token", "revision", "cache_folder", "local_files_only")}
        hub["trust_remote_code"] = kwargs.get("trust_remote_code")
        family = detect_family(model_name_or_path, hub)
    return family == "listconranker"


class PairScorer:
    """A Ray Data actor for pointwise models: scores a batch of rows pair by pair with its own model."""

    def __init__(
        self,
        model_name_or_path: str,
        model_kwargs: Mapping[str, Any],
        batch_size: int,
        rank_kwargs: Mapping[str, Any] | None = None,
    ) -> None:
        from rerank_plugins import CrossEncoder

        self.model = CrossEncoder(model_name_or_path, **dict(model_kwargs))
        self.batch_size = batch_size
        self.rank_kwargs = dict(rank_kwargs or {})  # pointwise: only window=, passed to predict

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        pairs = [(str(query), str(text)) for query, text in zip(batch["query"], batch["text"], strict=True)]
        scores = self.model.predict(
            pairs, batch_size=self.batch_size, show_progress_bar=False, convert_to_numpy=True, **self.rank_kwargs
        )
        return {**batch, "score": np.asarray(scores, dtype=np.float64).reshape(-1)}


class ListScorer(PairScorer):
    """A Ray Data actor for listwise models: each call gets all rows of one query and scores them as one list.

    Rows are put back in ``position`` order (when that column exists) so that the list is the one the local
    path scores.
    """

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        if "position" in batch:
            order = np.argsort(batch["position"], kind="stable")
            batch = {column: values[order] for column, values in batch.items()}
        queries = {str(query) for query in batch["query"]}
        if len(queries) != 1:
            raise ValueError(f"query {batch['qid'][0]} has {len(queries)} different query texts")
        texts = [str(text) for text in batch["text"]]
        scores = score_query(self.model, queries.pop(), texts, batch_size=self.batch_size, **self.rank_kwargs)
        return {**batch, "score": np.asarray(scores, dtype=np.float64)}


def rerank_dataset(
    ds: Any,
    model_name_or_path: str,
    *,
    model_kwargs: Mapping[str, Any] | None = None,
    batch_size: int = 32,
    concurrency: int | tuple[int, int] = 1,
    num_gpus: float = 0,
    num_cpus: float | None = None,
    listwise: bool | None = None,
    rank_kwargs: Mapping[str, Any] | None = None,
    num_partitions: int | None = None,
) -> Any:
    """Score every row of a Ray ``Dataset`` of ``(qid, docid, query, text)`` rows; returns it with a ``score`` column.

    Args:
        ds: a ``ray.data.Dataset`` with at least the columns :data:`COLUMNS` (strings).
        model_name_or_path: what each actor loads; a hub id, or a path that every node can read.
        model_kwargs: ``CrossEncoder`` keyword arguments (``family``, ``preset``, ``max_length``, ``device``...).
        batch_size: rows per actor call and per model forward (listwise: texts per encoder forward).
        concurrency: actors in the pool: ``n``, or ``(min, max)`` to let Ray Data autoscale between them.
        num_gpus: GPUs reserved per actor (e.g. 1; a fraction packs several actors on one GPU).
        num_cpus: CPUs reserved per actor (Ray's default when None).
        listwise: whether to score whole queries together; None detects it (see :func:`is_listwise`).
        rank_kwargs: ``CrossEncoder.rank`` options: ``{"window": Window(...)}`` for any model, and e.g.
            ``{"iterative": True}`` for listwise models.
        num_partitions: listwise only: partitions of the shuffle that groups rows by qid (Ray's default if None).

    Nothing runs until the result is consumed (Ray Data is lazy); rows come back in no particular order.
    """
    ray = import_ray()
    missing = [column for column in COLUMNS if column not in ds.columns()]
    if missing:
        raise ValueError(f"the dataset lacks the column(s) {', '.join(missing)}; it needs {', '.join(COLUMNS)}")
    kwargs = dict(model_kwargs or {})
    if listwise is None:
        listwise = is_listwise(model_name_or_path, kwargs)
    if not listwise and set(rank_kwargs or {}) - {"window"}:
        raise ValueError(f"rank options {sorted(set(rank_kwargs or {}) - {'window'})} apply to listwise models only")
    size = (concurrency, concurrency) if isinstance(concurrency, int) else concurrency
    options: dict[str, Any] = {
        "compute": ray.data.ActorPoolStrategy(min_size=size[0], max_size=size[1]),
        "batch_format": "numpy",
        "num_gpus": num_gpus,
    }
    if num_cpus is not None:
        options["num_cpus"] = num_cpus
    if listwise:
        return ds.groupby("qid", num_partitions=num_partitions).map_groups(
            ListScorer,
            fn_constructor_args=(model_name_or_path, kwargs, batch_size, dict(rank_kwargs or {})),
            **options,
        )
    return ds.map_batches(
        PairScorer,
        batch_size=batch_size,
        fn_constructor_args=(model_name_or_path, kwargs, batch_size, dict(rank_kwargs or {})),
        **options,
    )


def rerank_jobs(
    jobs: Iterable[Job],
    model_name_or_path: str,
    *,
    model_kwargs: Mapping[str, Any] | None = None,
    batch_size: int = 32,
    concurrency: int | tuple[int, int] = 1,
    num_gpus: float = 0,
    num_cpus: float | None = None,
    listwise: bool | None = None,
    **rank_kwargs: Any,
) -> Iterator[tuple[str, Ranking]]:
    """The Ray counterpart of :func:`rerank_plugins.trec.rerank_jobs`: yields ``(qid, ranking)`` per finished query.

    Rows stream back from the actors in any order; a query is yielded once all its rows have come back, ordered
    exactly as the local path orders it, so that ``rerank-run --engine ray`` can save and resume query by query.
    """
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
        model_kwargs=model_kwargs,
        batch_size=batch_size,
        concurrency=concurrency,
        num_gpus=num_gpus,
        num_cpus=num_cpus,
        listwise=listwise,
        rank_kwargs=rank_kwargs,
        num_partitions=min(len(by_qid), 64),  # Ray's default (200) is slow for a few queries
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
