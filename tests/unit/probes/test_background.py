"""The shared background worker: readers never block, each key is queued once, one thread for all."""

from __future__ import annotations

import logging
import threading

import pytest

from pilot.probes import _background
from pilot.probes._background import MAX_QUEUE, RETRY_AFTER, Worker, background_reader, every_seconds
from pilot.probes._context import ProbeUnavailable


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


class Counter:
    """Work that returns 1, 2, 3... and counts its runs."""

    def __init__(self) -> None:
        self.runs = 0

    def __call__(self) -> int:
        self.runs += 1
        return self.runs


def test_unavailable_until_the_first_result_which_is_queued_at_once() -> None:
    worker, clock, work = Worker(start=False), Clock(), Counter()
    read = background_reader("k", work, every=10, clock=clock, worker=worker)
    assert worker.pending() == ["k"]
    assert read() is None
    assert work.runs == 0
    assert worker.run_pending() == 1
    assert read() == 1


def test_refreshed_only_when_older_than_every_and_queued_once_however_often_read() -> None:
    worker, clock, work = Worker(start=False), Clock(), Counter()
    read = background_reader("k", work, every=10, clock=clock, worker=worker)
    worker.run_pending()
    clock.now += 9.9
    assert read() == 1
    assert worker.pending() == []
    clock.now += 0.1
    for _ in range(50):
        assert read() == 1  # the old value meanwhile, never a wait
    assert worker.pending() == ["k"]
    worker.run_pending()
    assert read() == 2
    assert work.runs == 2


def test_work_that_raises_reads_as_unavailable_logs_once_and_is_retried_sooner(
    caplog: pytest.LogCaptureFixture,
) -> None:
    worker, clock = Worker(start=False), Clock()
    outcomes: list[object] = [RuntimeError("disk on fire"), RuntimeError("disk on fire"), 7]

    def work() -> object:
        outcome = outcomes.pop(0)
        if isinstance(outcome, Exception):
            raise outcome
        return outcome

    read = background_reader("disk.health:/dev/sda", work, every=3600, clock=clock, worker=worker)
    with caplog.at_level(logging.WARNING, logger="pilot.probes"):
        worker.run_pending()
        assert read() is None
        clock.now += RETRY_AFTER
        read()
        worker.run_pending()
        assert read() is None
    lines = [r.getMessage() for r in caplog.records]
    assert lines == ["probe disk.health:/dev/sda: no reading: RuntimeError: disk on fire"]
    clock.now += RETRY_AFTER
    read()
    worker.run_pending()
    assert read() == 7
    clock.now += RETRY_AFTER  # a success waits the whole `every` again
    read()
    assert worker.pending() == []


def test_a_value_older_than_stale_after_reads_as_unavailable() -> None:
    worker, clock, work = Worker(start=False), Clock(), Counter()
    read = background_reader("k", work, every=10, stale_after=30, clock=clock, worker=worker)
    worker.run_pending()
    clock.now += 30
    assert read() == 1
    clock.now += 1  # the worker never got to it (stuck behind something slow)
    assert read() is None


def test_readers_of_the_same_key_share_one_run() -> None:
    worker, clock, work = Worker(start=False), Clock(), Counter()
    first = background_reader("same", work, every=10, clock=clock, worker=worker)
    second = background_reader("same", work, every=10, clock=clock, worker=worker)
    assert worker.run_pending() == 1
    assert first() == second() == 1


def test_the_queue_is_bounded() -> None:
    worker, clock = Worker(start=False), Clock()
    readers = [
        background_reader(f"k{i}", Counter(), every=10, clock=clock, worker=worker) for i in range(MAX_QUEUE + 5)
    ]
    assert len(worker.pending()) == MAX_QUEUE
    assert worker.run_pending() == MAX_QUEUE
    for read in readers:
        read()  # the five left out get their turn now
    assert worker.pending() == [f"k{i}" for i in range(MAX_QUEUE, MAX_QUEUE + 5)]


def test_every_must_be_positive() -> None:
    with pytest.raises(ValueError):
        background_reader("k", Counter(), every=0, worker=Worker(start=False))


def test_one_real_thread_serves_every_reader_and_a_busy_worker_never_blocks_a_read() -> None:
    worker = Worker(name="pilot-background-under-test")
    release, started, all_fast = threading.Event(), threading.Event(), threading.Event()
    fast_runs: list[int] = []

    def slow() -> str:
        started.set()
        release.wait(30)
        return "slow done"

    def fast() -> str:
        fast_runs.append(1)
        if len(fast_runs) == 10:
            all_fast.set()
        return "fast done"

    read_slow = background_reader("slow", slow, every=3600, worker=worker)
    readers = [background_reader(f"fast{i}", fast, every=3600, worker=worker) for i in range(10)]
    assert started.wait(30)
    assert read_slow() is None  # the worker is inside slow(): the read returns at once
    assert all(read() is None for read in readers)
    threads = [t for t in threading.enumerate() if t.name == "pilot-background-under-test"]
    assert len(threads) == 1 and threads[0].daemon
    release.set()
    assert all_fast.wait(30)  # the fast ones ran after the slow one, on the same thread
    assert read_slow() == "slow done"
    assert worker.pending() == []


def test_the_agent_has_one_shared_worker_named_pilot_background() -> None:
    worker = _background.shared_worker()
    assert _background.shared_worker() is worker
    assert worker._name == "pilot-background"


def test_without_every_each_read_asks_for_the_next_result() -> None:
    worker, clock, work = Worker(start=False), Clock(), Counter()
    read = background_reader("k", work, every=None, clock=clock, worker=worker)
    worker.run_pending()
    assert read() == 1  # the answer the creation asked for; this read asks for the next
    assert read() == 1 and worker.pending() == ["k"]  # asked once, however often read meanwhile
    worker.run_pending()
    assert read() == 2
    assert work.runs == 2


def test_wait_idle_returns_once_everything_asked_was_answered() -> None:
    worker = Worker(name="pilot-background-idle-test")
    release = threading.Event()
    background_reader("gated", lambda: release.wait(30) and "done", every=60, worker=worker)
    assert worker.wait_idle(0.05) is False  # the work is held: not idle within the time given
    release.set()
    assert worker.wait_idle(30) is True
    assert Worker(start=False).wait_idle(30) is True  # nothing asked: idle at once
    idle_test = Worker(start=False)
    background_reader("k", Counter(), every=10, worker=idle_test)
    assert idle_test.wait_idle(30) is False  # no thread will ever run it: says so at once


def test_every_takes_a_duration_at_or_above_the_probes_floor() -> None:
    assert every_seconds("1s") == 1.0
    assert every_seconds("10m", 60, "too short") == 600.0
    assert every_seconds(60, 60, "too short") == 60.0


@pytest.mark.parametrize("every", ["999ms", 0, -5, "0s"])
def test_every_under_the_floor_is_unavailable_with_the_probes_reason(every: object) -> None:
    with pytest.raises(ProbeUnavailable, match="^every must be at least 1s$"):
        every_seconds(every)  # type: ignore[arg-type]


@pytest.mark.parametrize("every", ["soon", "1x", "", "1s\x00", "\udcff"])
def test_every_that_is_no_duration_is_unavailable_not_a_traceback(every: str) -> None:
    with pytest.raises(ProbeUnavailable):
        every_seconds(every)
