"""``rerank_plugins.core.queue.RequestQueue`` on its own, with a stand-in model whose calls the test holds: what
shares a call, what counts against the bound, what an abandoned request does, and that each caller gets its own
request's ranking."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Sequence

import pytest

from rerank_plugins.core import Cancelled, Ranking, Request, RunOptions
from rerank_plugins.core.queue import QueueFull, QueueOptions, QueueStopped, RequestQueue


class StandIn:
    """A model whose ``rank_requests`` scores a document by its length, after the test lets each call through;
    it records every call's requests and asks ``run.cancelled`` before each of its (one-document) "batches"."""

    def __init__(self) -> None:
        self.calls: list[list[Request]] = []
        self.entered = threading.Semaphore(0)
        self.go = threading.Semaphore(0)
        self.batches = 0

    def rank_requests(self, requests: Sequence[Request], run: RunOptions) -> list[Ranking]:
        self.calls.append(list(requests))
        self.entered.release()
        assert self.go.acquire(timeout=30), "the test never let the call through"
        for request in requests:
            for _ in request.documents:
                if run.cancelled is not None and run.cancelled():
                    raise Cancelled("stopped")
                self.batches += 1
        return [Ranking.of(r, [float(len(d)) for d in r.documents]) for r in requests]


def wait_until(condition: Callable[[], bool]) -> None:
    deadline = time.monotonic() + 30
    while not condition():
        assert time.monotonic() < deadline, "timed out waiting"
        time.sleep(0.005)


def request(query: str, *documents: str) -> Request:
    return Request(query, documents)


@pytest.fixture
def model() -> StandIn:
    return StandIn()


def test_queued_requests_share_one_call_and_each_gets_its_own_ranking(model: StandIn) -> None:
    queue = RequestQueue(model, QueueOptions(max_wait_ms=50), name="m")
    held = queue.submit(request("q", "a"))
    assert model.entered.acquire(timeout=30)  # the first call is held; the next three queue behind it
    futures = [queue.submit(request("q", *docs)) for docs in (["bb", "c"], ["dddd"], ["ee", "f", "ggg"])]
    wait_until(lambda: queue.pending_pairs == 1 + 2 + 1 + 3)
    model.go.release(2)
    assert held.result(30).scores == (1.0,)
    assert [f.result(30).scores for f in futures] == [(2.0, 1.0), (4.0,), (2.0, 1.0, 3.0)]
    assert [len(call) for call in model.calls] == [1, 3]  # same query, three requests, one call, never merged
    assert [len(r.documents) for r in model.calls[1]] == [2, 1, 3]
    wait_until(lambda: queue.pending_pairs == 0)
    queue.stop(30)


def test_a_call_closes_at_max_call_pairs_and_a_request_is_never_split(model: StandIn) -> None:
    queue = RequestQueue(model, QueueOptions(max_wait_ms=50, max_call_pairs=3), name="m")
    queue.submit(request("q", "a"))
    assert model.entered.acquire(timeout=30)
    futures = [queue.submit(request("q", *["x"] * size)) for size in (2, 1, 5)]
    wait_until(lambda: queue.pending_pairs == 9)
    model.go.release(4)
    for future in futures:
        future.result(30)
    assert [[len(r.documents) for r in call] for call in model.calls] == [[1], [2, 1], [5]]
    queue.stop(30)


def test_only_live_pairs_count_and_an_abandoned_queued_request_is_dropped(model: StandIn) -> None:
    queue = RequestQueue(model, QueueOptions(max_queue_pairs=4, max_wait_ms=0), name="m")
    first = queue.submit(request("q", "a", "b"))
    assert model.entered.acquire(timeout=30)
    queued = queue.submit(request("q", "c", "d"))
    with pytest.raises(QueueFull, match="4 pairs waiting"):
        queue.submit(request("q", "e"))
    queue.abandon(queued)  # its caller left: its pairs stop counting at once, and it is never scored
    assert queue.pending_pairs == 2 and queued.cancelled()
    accepted = queue.submit(request("q", "eee"))
    model.go.release(2)
    assert first.result(30).scores == (1.0, 1.0) and accepted.result(30).scores == (3.0,)
    assert [[r.documents for r in call] for call in model.calls] == [[("a", "b")], [("eee",)]]
    queue.stop(30)


def test_a_call_whose_callers_all_left_stops_before_its_next_batch(model: StandIn) -> None:
    queue = RequestQueue(model, QueueOptions(max_wait_ms=0), name="m")
    gone = queue.submit(request("q", *["x"] * 10))
    assert model.entered.acquire(timeout=30)
    queue.abandon(gone)
    assert queue.pending_pairs == 0
    model.go.release()
    later = queue.submit(request("q", "yy"))
    assert model.entered.acquire(timeout=30)
    model.go.release()
    assert later.result(30).scores == (2.0,)
    assert model.batches == 1  # the abandoned call ran none of its 10 batches; the later request its one
    assert isinstance(gone.exception(30), Cancelled)  # nobody waits for it; it says why it has no ranking
    queue.stop(30)


def test_one_bad_request_fails_alone(model: StandIn) -> None:
    class Picky(StandIn):
        def rank_requests(self, requests: Sequence[Request], run: RunOptions) -> list[Ranking]:
            if any("bad" in r.documents for r in requests):
                raise ValueError("cannot score 'bad'")
            return super().rank_requests(requests, run)

    picky = Picky()
    queue = RequestQueue(picky, QueueOptions(max_wait_ms=50), name="m")
    queue.submit(request("q", "a"))
    assert picky.entered.acquire(timeout=30)
    good, bad = queue.submit(request("q", "aa")), queue.submit(request("q", "bad"))
    wait_until(lambda: queue.pending_pairs == 3)
    picky.go.release(3)
    assert good.result(30).scores == (2.0,)
    with pytest.raises(ValueError, match="cannot score 'bad'"):
        bad.result(30)
    queue.stop(30)


def test_a_stopped_queue_takes_nothing_new(model: StandIn) -> None:
    queue = RequestQueue(model, name="m")
    queue.stop(5)
    assert not queue.alive
    with pytest.raises(QueueStopped, match="'m' is shutting down"):
        queue.submit(request("q", "a"))


def test_options_are_checked() -> None:
    with pytest.raises(ValueError, match="max_call_pairs"):
        QueueOptions(max_call_pairs=0)
    with pytest.raises(ValueError, match="max_wait_ms"):
        QueueOptions(max_wait_ms=float("nan"))
    with pytest.raises(TypeError, match="run must be RunOptions"):
        QueueOptions(run={"batch_size": 2})  # type: ignore[arg-type]
