"""Blocking editor work off the event loop, bounded in time and in number.

Validation and YAML round trips are CPU work on text from a browser: they run on a pool of their own (not
Starlette's, which serves sign-in and the database), at most `workers` at once and `queue` more waiting,
each awaited for at most `timeout` seconds. A thread cannot be killed, so a text that somehow runs long
keeps its slot until it ends: at most `workers + queue` of them, never the whole console. Broker tests are
limited per user (at most one in flight and `per_minute` a minute), since each opens a connection from the
console's host to wherever the form says.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections import deque
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any, TypeVar

from pilot.console.editor import EditorError

T = TypeVar("T")


class Runner:
    def __init__(self, *, workers: int = 2, queue: int = 4, timeout: float = 10.0) -> None:
        self.timeout = timeout
        self._pool = ThreadPoolExecutor(workers, thread_name_prefix="console-editor")
        self._slots = threading.BoundedSemaphore(workers + queue)

    async def run(self, fn: Callable[..., T], *args: Any) -> T:
        if not self._slots.acquire(blocking=False):
            raise EditorError(503, "the editor is busy; try again in a moment")
        try:
            future = self._pool.submit(fn, *args)
        except BaseException:
            self._slots.release()
            raise
        future.add_done_callback(lambda _f: self._slots.release())
        try:
            return await asyncio.wait_for(asyncio.shield(asyncio.wrap_future(future)), self.timeout)
        except TimeoutError:
            raise EditorError(503, f"the check took longer than {self.timeout:g} s and was abandoned") from None

    def shutdown(self) -> None:
        self._pool.shutdown(wait=False, cancel_futures=True)


class RateLimit:
    """Per user: at most `in_flight` at once and `per_minute` started in any 60 seconds."""

    def __init__(self, *, in_flight: int = 1, per_minute: int = 10, clock: Callable[[], float] = time.monotonic):
        self.in_flight, self.per_minute, self.clock = in_flight, per_minute, clock
        self._running: dict[str, int] = {}
        self._started: dict[str, deque[float]] = {}
        self._lock = threading.Lock()

    def begin(self, user: str) -> None:
        now = self.clock()
        with self._lock:
            if self._running.get(user, 0) >= self.in_flight:
                raise EditorError(429, "a broker test is already running for you; wait for its answer")
            started = self._started.setdefault(user, deque())
            while started and now - started[0] >= 60.0:
                started.popleft()
            if len(started) >= self.per_minute:
                wait = max(1, int(60.0 - (now - started[0]) + 0.999))
                raise EditorError(429, f"at most {self.per_minute} broker tests a minute; wait {wait} s")
            started.append(now)
            self._running[user] = self._running.get(user, 0) + 1
            if len(self._started) > 10_000:  # users who stopped testing long ago
                for name in [u for u, q in self._started.items() if not q or now - q[-1] >= 60.0][:5_000]:
                    del self._started[name]

    def end(self, user: str) -> None:
        with self._lock:
            left = self._running.get(user, 1) - 1
            if left > 0:
                self._running[user] = left
            else:
                self._running.pop(user, None)
