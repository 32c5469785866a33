"""Fixed-interval jobs on one thread: the agent's telemetry clock.

APScheduler 3 does this too, but importing it costs about 5 MB of RSS (108
modules, importlib.metadata among them) in a process whose steady state is
otherwise ~25 MB; the agent loads it only for cron schedules. This loop sleeps
until the next job is due, so the process wakes exactly as often as its
sensors need. A job that falls behind (a suspended laptop waking up) runs once
and is rescheduled from now: no backlog storm.
"""

from __future__ import annotations

import heapq
import itertools
import logging
import threading
import time
from collections.abc import Callable
from typing import Any

log = logging.getLogger("pilot.ticker")


class Ticker:
    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self._heap: list[tuple[float, int, float, Callable[..., Any], tuple]] = []
        self._seq = itertools.count()
        self._wake = threading.Condition()
        self._stopped = False
        self._thread: threading.Thread | None = None
        self.runs = 0
        self.catch_ups = 0
        self.running_since: float | None = None  # a job that never returns shows here

    def every(self, seconds: float, func: Callable[..., Any], *args: Any, first_delay: float = 0.0) -> None:
        if seconds <= 0:
            raise ValueError("interval must be positive")
        with self._wake:
            heapq.heappush(self._heap, (self._clock() + first_delay, next(self._seq), seconds, func, args))
            self._wake.notify()

    def after(self, delay: float, func: Callable[..., Any], *args: Any) -> None:
        """Run func once, `delay` seconds from now."""
        with self._wake:
            heapq.heappush(self._heap, (self._clock() + max(0.0, delay), next(self._seq), 0.0, func, args))
            self._wake.notify()

    def clear(self) -> None:
        with self._wake:
            self._heap.clear()
            self._wake.notify()

    def _next(self) -> tuple[float, int, float, Callable[..., Any], tuple] | None:
        with self._wake:
            while not self._stopped:
                if not self._heap:
                    self._wake.wait()
                    continue
                due = self._heap[0][0]
                now = self._clock()
                if due <= now:
                    job = heapq.heappop(self._heap)
                    _, seq, seconds, func, args = job
                    if seconds == 0.0:
                        return job  # a one-shot
                    following = due + seconds
                    if following <= now:  # fell behind: one run now, then on the beat from now
                        self.catch_ups += 1
                        following = now + seconds
                    heapq.heappush(self._heap, (following, seq, seconds, func, args))
                    return job
                self._wake.wait(due - now)
        return None

    def _run(self) -> None:
        while True:
            job = self._next()
            if job is None:
                return
            _, _, _, func, args = job
            self.running_since = self._clock()
            try:
                func(*args)
            except Exception:
                log.exception("job %s failed", getattr(func, "__name__", func))
            finally:
                self.running_since = None
            self.runs += 1

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="pilot-ticker", daemon=True)
        self._thread.start()

    def stop(self, timeout: float = 2.0) -> None:
        with self._wake:
            self._stopped = True
            self._wake.notify()
        if self._thread is not None and self._thread is not threading.current_thread():
            self._thread.join(timeout)

    def alive(self, stuck_after: float = 120.0) -> bool:
        """Running, and not stuck in one job (a probe blocked in a dead NFS mount, say)."""
        started = self.running_since
        if started is not None and self._clock() - started > stuck_after:
            return False
        return self._thread is not None and self._thread.is_alive()
