"""The interval loop, driven by a fake clock: no sleeps, no timing assertions."""

from __future__ import annotations

import threading

from pilot.agent.ticker import Ticker


class FakeClock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def step(ticker: Ticker) -> tuple | None:
    """Run one due job synchronously (the loop's own selection logic)."""
    ticker._stopped = False
    with ticker._wake:
        if not ticker._heap or ticker._heap[0][0] > ticker._clock():
            return None
    job = ticker._next()
    job[3](*job[4])
    return job


def test_jobs_run_on_their_own_intervals():
    clock = FakeClock()
    ticker = Ticker(clock)
    calls: list[tuple[str, float]] = []
    ticker.every(1.0, lambda: calls.append(("fast", clock.now)))
    ticker.every(5.0, lambda: calls.append(("slow", clock.now)))
    for t in range(0, 11):
        clock.now = float(t)
        while step(ticker):
            pass
    assert [c for c in calls if c[0] == "slow"] == [("slow", 0.0), ("slow", 5.0), ("slow", 10.0)]
    assert len([c for c in calls if c[0] == "fast"]) == 11


def test_falling_behind_gives_one_catch_up_run_not_a_storm():
    clock = FakeClock()
    ticker = Ticker(clock)
    calls: list[float] = []
    ticker.every(10.0, lambda: calls.append(clock.now))
    step(ticker)
    clock.now = 3600.0  # the laptop slept for an hour
    while step(ticker):
        pass
    assert calls == [0.0, 3600.0] and ticker.catch_ups == 1
    clock.now = 3610.0
    step(ticker)
    assert calls[-1] == 3610.0


def test_a_failing_job_does_not_stop_the_loop():
    ticker = Ticker()
    done = threading.Event()
    ticker.every(0.01, lambda: 1 / 0)
    ticker.every(0.01, done.set)
    ticker.start()
    try:
        assert done.wait(5)
        assert ticker.alive()
    finally:
        ticker.stop()
    assert not ticker.alive()


def test_a_job_stuck_for_minutes_makes_the_ticker_unhealthy():
    clock = FakeClock()
    ticker = Ticker(clock)
    ticker._thread = threading.current_thread()  # stands in for a running loop
    assert ticker.alive()
    ticker.running_since = clock.now
    clock.now += 119
    assert ticker.alive()
    clock.now += 2
    assert not ticker.alive()
