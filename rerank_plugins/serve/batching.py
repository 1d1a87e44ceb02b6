"""Dynamic batching: concurrent requests to one pointwise model share ``predict`` calls.

Each served model has one :class:`Engine`: a bounded queue of jobs (one per request) and one worker thread.
The worker takes the oldest job, then keeps adding queued jobs until the batch holds ``max_batch_pairs``
pairs or ``max_batch_tokens`` estimated tokens, or ``max_wait_ms`` have passed since the oldest job arrived,
and scores the whole batch with a single ``CrossEncoder.predict`` call. The core guarantees that a pair's
score does not depend on the other pairs of its batch, so every request gets the scores that
``CrossEncoder.rank`` gives it alone.

A listwise model (``model.is_listwise``, ListConRanker) scores a document against the others of its list, and
its ``predict`` groups pairs by query: each request's list is scored whole, in a call of its own.

Only the worker thread touches the model and its tokenizer (a fast tokenizer used from two threads at once can
fail with "Already borrowed").
"""

from __future__ import annotations

import collections
import logging
import math
import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import Future
from dataclasses import dataclass, field, replace
from typing import Any

logger = logging.getLogger(__name__)


class QueueFull(Exception):
    """The model's queue holds ``max_queue_pairs`` pairs already: the caller should retry later."""


class EngineStopped(Exception):
    """The engine is shutting down and takes no new work."""


@dataclass(frozen=True)
class BatchingOptions:
    """How an engine batches and bounds its work."""

    batch_size: int | None = None
    """Pairs per forward pass; None: the model's own batching policy (32 on a CPU, a token budget on an
    accelerator: ``rerank_plugins.core.batching``)."""
    max_batch_pairs: int = 256
    """A batch closes once it holds this many pairs."""
    max_batch_tokens: int = 32768
    """... or this many estimated tokens (characters / 4 per pair, at most ``max_length``)."""
    max_wait_ms: float = 5.0
    """... or this long after its oldest request arrived. 0 turns dynamic batching off."""
    max_queue_pairs: int = 20000
    """Pairs queued or being scored, at most; past it, :meth:`Engine.submit` raises :class:`QueueFull`."""

    def __post_init__(self) -> None:
        for name in ("batch_size", "max_batch_pairs", "max_batch_tokens", "max_queue_pairs"):
            value = getattr(self, name)
            if name == "batch_size" and value is None:
                continue
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise ValueError(f"{name} must be a positive integer, got {value!r}.")
        if (
            not isinstance(self.max_wait_ms, (int, float))
            or not math.isfinite(self.max_wait_ms)
            or self.max_wait_ms < 0
        ):
            raise ValueError(f"max_wait_ms must be a number >= 0, got {self.max_wait_ms!r}.")


@dataclass
class Scores:
    """What a job gets back: one score per document, in the request's order, and the tokens counted."""

    scores: list[float]
    tokens: int | None = None


@dataclass
class _Job:
    query: str
    documents: list[str]
    raw: bool
    max_tokens_per_doc: int | None
    count_tokens: bool
    cost: int
    arrived: float
    future: Future[Scores] = field(default_factory=Future)


BatchObserver = Callable[[str, int, int, float], None]
"""Called after each ``predict`` call with (model name, pairs, requests, seconds)."""


class Engine:
    """The queue and worker thread of one served model.

    Args:
        name: the model's served name (for metrics and logs).
        model: a loaded ``rerank_plugins.CrossEncoder`` (anything with ``predict``, ``is_listwise``).
        options: batching and queue bounds.
        on_batch: optional observer of every ``predict`` call (metrics).
    """

    def __init__(
        self, name: str, model: Any, options: BatchingOptions | None = None, on_batch: BatchObserver | None = None
    ) -> None:
        self.name = name
        self.model = model
        self.options = options or BatchingOptions()
        self.listwise = bool(model.is_listwise)
        self._on_batch = on_batch
        self._queue: collections.deque[_Job] = collections.deque()
        self._condition = threading.Condition()
        self._pending_pairs = 0  # queued or being scored
        self._stopping = False
        self._thread: threading.Thread | None = None
        max_length = getattr(model, "max_length", None)
        self._max_pair_tokens = int(max_length) if isinstance(max_length, int) and max_length > 0 else 512

    # -- life cycle ------------------------------------------------------------------------------------------
    def start(self) -> None:
        """Start the worker thread (idempotent)."""
        with self._condition:
            if self._thread is not None or self._stopping:
                return
            self._thread = threading.Thread(target=self._run, name=f"rerank-{self.name}", daemon=True)
            self._thread.start()

    def stop(self, timeout: float | None = None) -> None:
        """Take no new jobs, finish the queued ones, then end the worker thread."""
        with self._condition:
            self._stopping = True
            self._condition.notify_all()
            thread = self._thread
        if thread is not None:
            thread.join(timeout)

    @property
    def alive(self) -> bool:
        """True while the worker can take jobs (started lazily on the first job)."""
        return not self._stopping and (self._thread is None or self._thread.is_alive())

    @property
    def pending_pairs(self) -> int:
        """Pairs queued or being scored."""
        return self._pending_pairs

    # -- submitting ------------------------------------------------------------------------------------------
    def submit(
        self,
        query: str,
        documents: Sequence[str],
        *,
        raw: bool = False,
        max_tokens_per_doc: int | None = None,
        count_tokens: bool = False,
    ) -> Future[Scores]:
        """Queue one request's documents; the future resolves to their :class:`Scores` in the given order.

        ``raw=True`` scores without the family's activation (TEI's ``raw_scores``); ``max_tokens_per_doc`` cuts
        each document to its first tokens before scoring (Cohere v2); ``count_tokens`` also counts the tokens of
        the query and documents for a response's ``usage``.
        """
        documents = list(documents)
        cost = sum(self._estimate(query, document) for document in documents)
        job = _Job(query, documents, raw, max_tokens_per_doc, count_tokens, cost, time.monotonic())
        with self._condition:
            if self._stopping:
                raise EngineStopped(f"model {self.name!r} is shutting down")
            if self._pending_pairs + len(documents) > self.options.max_queue_pairs and self._pending_pairs > 0:
                raise QueueFull(
                    f"model {self.name!r} has {self._pending_pairs} pairs waiting (at most "
                    f"{self.options.max_queue_pairs}); retry shortly"
                )
            self._pending_pairs += len(documents)
            self._queue.append(job)
            self._condition.notify()
        self.start()
        return job.future

    def _estimate(self, query: str, document: str) -> int:
        """Tokens of a pair, roughly (4 characters a token), at most the model's max_length."""
        return min(self._max_pair_tokens, (len(query) + len(document)) // 4 + 3)

    # -- the worker ------------------------------------------------------------------------------------------
    def _run(self) -> None:
        while True:
            batch = self._next_batch()
            if batch is None:
                return
            self._score(batch)

    def _next_batch(self) -> list[_Job] | None:
        """Wait for the oldest job, then gather more until a budget is full or the wait is over."""
        options = self.options
        with self._condition:
            while True:
                while not self._queue and not self._stopping:
                    self._condition.wait()
                if not self._queue:
                    return None  # stopping, and nothing left to do
                first = self._take()
                if first is not None:
                    break
            batch = [first]
            if self.listwise or options.max_wait_ms == 0:
                return batch
            pairs, tokens = len(first.documents), first.cost
            deadline = first.arrived + options.max_wait_ms / 1000
            while pairs < options.max_batch_pairs and tokens < options.max_batch_tokens:
                if self._queue:
                    following = self._queue[0]
                    if (
                        pairs + len(following.documents) > options.max_batch_pairs
                        or tokens + following.cost > options.max_batch_tokens
                    ):
                        break  # it opens the next batch
                    job = self._take()
                    if job is not None:
                        batch.append(job)
                        pairs += len(job.documents)
                        tokens += job.cost
                    continue
                remaining = deadline - time.monotonic()
                if remaining <= 0 or self._stopping:
                    break
                self._condition.wait(remaining)
            return batch

    def _take(self) -> _Job | None:
        """Pop the oldest job; None if its caller has given up on it (timeout, disconnect)."""
        job = self._queue.popleft()
        if job.future.set_running_or_notify_cancel():
            return job
        self._pending_pairs -= len(job.documents)
        return None

    def _score(self, batch: list[_Job]) -> None:
        """Score a batch, one ``predict`` call per kind of score; a failing call is retried job by job."""
        try:
            for raw in (False, True):
                group = [job for job in batch if job.raw == raw]
                if not group:
                    continue
                try:
                    self._predict(group, raw)
                except Exception:
                    if len(group) == 1:
                        raise
                    for job in group:  # one bad request must not fail the others of its batch
                        try:
                            self._predict([job], raw)
                        except Exception as error:
                            logger.exception("scoring a request for %s failed", self.name)
                            job.future.set_exception(error)
        except Exception as error:
            logger.exception("scoring a request for %s failed", self.name)
            for job in batch:
                if not job.future.done():
                    job.future.set_exception(error)
        finally:
            with self._condition:
                self._pending_pairs -= sum(len(job.documents) for job in batch)

    def _predict(self, jobs: list[_Job], raw: bool) -> None:
        import torch

        from rerank_plugins.core import Request, RequestOptions, RunOptions

        options = RequestOptions(activation=torch.nn.Identity() if raw else None)
        requests = [
            Request(job.query, tuple(job.documents), replace(options, max_tokens_per_doc=job.max_tokens_per_doc))
            for job in jobs
        ]
        started = time.perf_counter()
        rankings = self.model.rank_requests(requests, RunOptions(batch_size=self.options.batch_size))
        seconds = time.perf_counter() - started
        if self._on_batch is not None:
            self._on_batch(self.name, sum(len(job.documents) for job in jobs), len(jobs), seconds)
        for job, ranking in zip(jobs, rankings, strict=True):
            job.future.set_result(Scores(list(ranking.scores), ranking.tokens if job.count_tokens else None))
