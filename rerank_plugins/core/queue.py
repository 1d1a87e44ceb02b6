"""A queue of requests for one model: concurrent callers' requests share calls of the request core.

Each :class:`RequestQueue` has one worker thread. The worker takes the oldest request, then adds queued ones
until they hold :attr:`QueueOptions.max_call_pairs` pairs or :attr:`QueueOptions.max_wait_ms` have passed since
the oldest arrived, and ranks them with one ``model.rank_requests`` call (the core then batches their rows for
the forward passes, by its one batching policy, and keeps every request's list whole, for a listwise model too).
A pair's score does not depend on the rest of its call, so every request gets the ranking it would get alone.

A caller that gives up (a timeout, a client gone) calls :meth:`RequestQueue.abandon`: its pairs stop counting
against :attr:`QueueOptions.max_queue_pairs` at once, a queued request is dropped, and a call whose requests
have all been abandoned stops before its next forward batch (``RunOptions.cancelled``).

Nothing here knows HTTP: the server (``rerank_plugins.serve``) is one caller.
"""

from __future__ import annotations

import collections
import logging
import math
import threading
import time
from collections.abc import Callable
from concurrent.futures import Future
from dataclasses import dataclass, field, replace
from typing import Any

from rerank_plugins.core.requests import Cancelled, Ranking, Request, RunOptions

logger = logging.getLogger(__name__)


class QueueFull(Exception):
    """The queue holds :attr:`QueueOptions.max_queue_pairs` live pairs already: retry later."""


class QueueStopped(Exception):
    """The queue is stopping and takes no new requests."""


@dataclass(frozen=True)
class QueueOptions:
    """How a :class:`RequestQueue` gathers requests into core calls, and bounds its work.

    Attributes:
        max_call_pairs: a call is closed once its requests hold this many pairs (a request with more is a call of
            its own: a request is never split).
        max_wait_ms: ... or this long after its oldest request arrived; 0: every request is a call of its own.
        max_queue_pairs: pairs queued or being scored for callers that still wait, at most; past it,
            :meth:`RequestQueue.submit` raises :class:`QueueFull`.
        run: how every call computes (``batch_size``, ``batch_tokens``, ``device``; ``core.batching`` decides the
            forward batches from them).
    """

    max_call_pairs: int = 256
    max_wait_ms: float = 5.0
    max_queue_pairs: int = 20_000
    run: RunOptions = field(default_factory=RunOptions)

    def __post_init__(self) -> None:
        for name in ("max_call_pairs", "max_queue_pairs"):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise ValueError(f"{name} must be a positive integer, got {value!r}.")
        wait = self.max_wait_ms
        if isinstance(wait, bool) or not isinstance(wait, (int, float)) or not math.isfinite(wait) or wait < 0:
            raise ValueError(f"max_wait_ms must be a number >= 0, got {wait!r}.")
        if not isinstance(self.run, RunOptions):
            raise TypeError(f"run must be RunOptions, got {type(self.run).__name__}.")


CallObserver = Callable[[str, int, int, float], None]
"""Called after each core call with (queue name, pairs, requests, seconds)."""


@dataclass(eq=False)
class _Entry:
    """One submitted request; ``live`` while its caller waits for it and its pairs count."""

    request: Request
    pairs: int
    arrived: float
    future: Future[Ranking] = field(default_factory=Future)
    live: bool = True


class RequestQueue:
    """The queue and worker thread of one model.

    Args:
        model: a loaded ``rerank_plugins.CrossEncoder`` (anything with ``rank_requests(requests, run)``).
        options: how requests are gathered and bounded.
        name: the model's name in errors, logs and :data:`CallObserver` calls.
        on_call: observer of every core call (metrics).
    """

    def __init__(
        self,
        model: Any,
        options: QueueOptions | None = None,
        *,
        name: str = "model",
        on_call: CallObserver | None = None,
    ) -> None:
        self.model = model
        self.options = options or QueueOptions()
        self.name = name
        self._on_call = on_call
        self._queue: collections.deque[_Entry] = collections.deque()
        self._entries: dict[Future[Ranking], _Entry] = {}
        self._condition = threading.Condition()
        self._live_pairs = 0
        self._stopping = False
        self._thread: threading.Thread | None = None

    # -- life cycle ------------------------------------------------------------------------------------------
    def start(self) -> None:
        """Start the worker thread (idempotent; :meth:`submit` starts it too)."""
        with self._condition:
            if self._thread is not None or self._stopping:
                return
            self._thread = threading.Thread(target=self._run, name=f"rerank-queue-{self.name}", daemon=True)
            self._thread.start()

    def stop(self, timeout: float | None = None) -> None:
        """Take no new requests, finish the queued ones, then end the worker thread (waiting ``timeout`` s)."""
        with self._condition:
            self._stopping = True
            self._condition.notify_all()
            thread = self._thread
        if thread is not None:
            thread.join(timeout)

    @property
    def alive(self) -> bool:
        """True while the queue takes requests (its worker starts with the first one)."""
        return not self._stopping and (self._thread is None or self._thread.is_alive())

    @property
    def pending_pairs(self) -> int:
        """Pairs queued or being scored for callers that still wait (abandoned requests do not count)."""
        return self._live_pairs

    # -- callers ---------------------------------------------------------------------------------------------
    def submit(self, request: Request) -> Future[Ranking]:
        """Queue ``request``; the future resolves to its :class:`~rerank_plugins.core.requests.Ranking` (or the
        error the core raised for it)."""
        entry = _Entry(request, len(request.documents), time.monotonic())
        with self._condition:
            if self._stopping:
                raise QueueStopped(f"model {self.name!r} is shutting down")
            limit = self.options.max_queue_pairs
            if self._live_pairs > 0 and self._live_pairs + entry.pairs > limit:
                waiting = f"model {self.name!r} has {self._live_pairs} pairs waiting (at most {limit})"
                raise QueueFull(f"{waiting}; retry shortly")
            self._live_pairs += entry.pairs
            self._entries[entry.future] = entry
            self._queue.append(entry)
            self._condition.notify()
        self.start()
        return entry.future

    def abandon(self, future: Future[Ranking]) -> None:
        """The caller of ``future`` no longer waits: its pairs stop counting, a queued request is dropped, and a
        call whose requests are all abandoned stops before its next forward batch."""
        with self._condition:
            entry = self._entries.get(future)
            if entry is not None and entry.live:
                self._release(entry)
            future.cancel()  # succeeds while the request is still queued

    # -- the worker ------------------------------------------------------------------------------------------
    def _release(self, entry: _Entry) -> None:
        """Stop counting ``entry`` (under the lock)."""
        entry.live = False
        self._live_pairs -= entry.pairs
        self._entries.pop(entry.future, None)

    def _run(self) -> None:
        while True:
            call = self._next_call()
            if call is None:
                return
            self._rank(call)

    def _next_call(self) -> list[_Entry] | None:
        """Wait for the oldest live request, then gather more until the call is full or the wait is over."""
        options = self.options
        with self._condition:
            first = None
            while first is None:
                while not self._queue and not self._stopping:
                    self._condition.wait()
                if not self._queue:
                    return None  # stopping, and nothing left to do
                first = self._take()
            call, pairs = [first], first.pairs
            deadline = first.arrived + options.max_wait_ms / 1000
            while pairs < options.max_call_pairs and options.max_wait_ms > 0:
                if self._queue:
                    if pairs + self._queue[0].pairs > options.max_call_pairs:
                        break  # it opens the next call
                    entry = self._take()
                    if entry is not None:
                        call.append(entry)
                        pairs += entry.pairs
                    continue
                remaining = deadline - time.monotonic()
                if remaining <= 0 or self._stopping:
                    break
                self._condition.wait(remaining)
            return call

    def _take(self) -> _Entry | None:
        """Pop the oldest request; None if its caller has abandoned it."""
        entry = self._queue.popleft()
        if entry.future.set_running_or_notify_cancel():
            return entry
        if entry.live:  # cancelled through the future itself, not abandon()
            self._release(entry)
        return None

    def _rank(self, call: list[_Entry]) -> None:
        """Rank a call's requests with one core call; if it fails, each request alone (one bad request must not
        fail the others of its call)."""
        try:
            try:
                self._core_call(call)
            except Cancelled:
                pass  # nobody waits for these any more
            except Exception as error:
                if len(call) == 1:
                    self._fail(call[0], error)
                    return
                for entry in call:
                    if not entry.live:
                        continue
                    try:
                        self._core_call([entry])
                    except Cancelled:
                        pass
                    except Exception as alone:
                        self._fail(entry, alone)
        finally:
            with self._condition:
                for entry in call:
                    if entry.live:
                        self._release(entry)
                    if not entry.future.done():
                        entry.future.set_exception(Cancelled(f"the request to {self.name!r} was abandoned"))

    def _fail(self, entry: _Entry, error: Exception) -> None:
        if not isinstance(error, (ValueError, TypeError)):  # a request's own mistake is the caller's to report
            logger.error("scoring a request for %s failed", self.name, exc_info=error)
        if not entry.future.done():
            entry.future.set_exception(error)

    def _core_call(self, call: list[_Entry]) -> None:
        run = replace(self.options.run, cancelled=lambda: not any(entry.live for entry in call))
        started = time.perf_counter()
        rankings = self.model.rank_requests([entry.request for entry in call], run)
        seconds = time.perf_counter() - started
        if self._on_call is not None:
            self._on_call(self.name, sum(entry.pairs for entry in call), len(call), seconds)
        for entry, ranking in zip(call, rankings, strict=True):
            if not entry.future.done():
                entry.future.set_result(ranking)
