"""One shared worker thread for slow reads, so a probe that runs a program never holds the telemetry loop.

A reader made by `background_reader` never blocks: it returns the last value the work gave
(None, "unavailable", until the first result) and, when that value is older than `every`,
asks the worker to refresh it; without `every`, each read asks for the next one, so the work
runs as often as its sensor is read and each read returns the answer the previous one asked
for. There is ONE worker thread for the whole agent ("pilot-background", started on first
use, daemon): twenty program sensors add no thread each, and slow reads run one after another
instead of piling up. The queue is bounded and holds each key at most once, so a reader asked
every second for a read that takes a minute queues it once. Work that raises gives None and
one log line per key every few minutes.

Tests build their own `Worker(start=False)`, inject a clock, and call `run_pending()`.
"""

from __future__ import annotations

import collections
import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from pilot.probes._context import ProbeUnavailable
from pilot.units import parse_duration

log = logging.getLogger("pilot.probes")

MAX_QUEUE = 64
MAX_SLOTS = 1024
RETRY_AFTER = 60.0  # a failed read is tried again this soon, even when `every` is an hour
LOG_EVERY = 600.0


@dataclass
class _Slot:
    work: Callable[[], Any]
    clock: Callable[[], float]
    value: Any = None
    done_at: float | None = None  # when the last result (or failure) came, on `clock`
    failed: bool = False
    queued: bool = False
    logged_at: float | None = None


class Worker:
    """A bounded queue of keys and the one thread that runs their work."""

    def __init__(self, *, start: bool = True, name: str = "pilot-background") -> None:
        self._start = start
        self._name = name
        self._lock = threading.Condition()
        self._queue: collections.deque[tuple[str, _Slot]] = collections.deque()
        self._slots: dict[str, _Slot] = {}
        self._thread: threading.Thread | None = None
        self._busy = 0  # work running now (queued work is in _queue)

    # ---------------------------------------------------------------- slots

    def slot(self, key: str, work: Callable[[], Any], clock: Callable[[], float]) -> _Slot:
        """The slot of `key`; a key names one piece of work, so a second reader shares its result."""
        with self._lock:
            slot = self._slots.get(key)
            if slot is None:
                if len(self._slots) >= MAX_SLOTS:  # old keys of a profile reloaded many times
                    for old in [k for k, s in self._slots.items() if not s.queued][: MAX_SLOTS // 4]:
                        del self._slots[old]
                slot = self._slots[key] = _Slot(work=work, clock=clock)
            return slot

    def request(self, key: str, slot: _Slot) -> bool:
        """Queue `key` unless it is already queued or the queue is full; True if it was queued."""
        with self._lock:
            self._slots.setdefault(key, slot)  # back in, should it have been evicted
            if slot.queued or len(self._queue) >= MAX_QUEUE:
                return False
            slot.queued = True
            self._queue.append((key, slot))
            self._lock.notify()
            if self._start and self._thread is None:
                self._thread = threading.Thread(target=self._loop, name=self._name, daemon=True)
                self._thread.start()
            return True

    def pending(self) -> list[str]:
        with self._lock:
            return [key for key, _ in self._queue]

    # ---------------------------------------------------------------- running

    def run_pending(self) -> int:
        """Run everything queued now, in this thread (tests); returns how many ran."""
        count = 0
        while True:
            with self._lock:
                if not self._queue:
                    return count
                key, slot = self._queue.popleft()
            self._run(key, slot)
            count += 1

    def _loop(self) -> None:
        while True:
            with self._lock:
                while not self._queue:
                    self._lock.wait()
                key, slot = self._queue.popleft()
                self._busy += 1
            try:
                self._run(key, slot)
            finally:
                with self._lock:
                    self._busy -= 1
                    self._lock.notify_all()

    def wait_idle(self, timeout: float) -> bool:
        """Wait until nothing is queued or running (at most `timeout` seconds); True if it got there.
        For `pilot run --once`, whose single round would otherwise find no first answers yet."""
        deadline = time.monotonic() + timeout
        with self._lock:
            while self._queue or self._busy:
                remaining = deadline - time.monotonic()
                if remaining <= 0 or (self._thread is None and not self._start):
                    return False
                self._lock.wait(remaining)
            return True

    def _run(self, key: str, slot: _Slot) -> None:
        try:
            value, failed = slot.work(), False
        except Exception as exc:  # noqa: BLE001 - any failure of one probe's work is "unavailable"
            value, failed = None, True
            now = slot.clock()
            if slot.logged_at is None or now - slot.logged_at >= LOG_EVERY:
                slot.logged_at = now
                why = str(exc)[:300] if isinstance(exc, ProbeUnavailable) else f"{type(exc).__name__}: {str(exc)[:200]}"
                log.warning("probe %s: no reading: %s", key, why)
        with self._lock:
            slot.value, slot.failed, slot.done_at, slot.queued = value, failed, slot.clock(), False


_shared: Worker | None = None
_shared_lock = threading.Lock()


def shared_worker() -> Worker:
    """The agent's one worker (its thread starts on the first request, not on import)."""
    global _shared
    with _shared_lock:
        if _shared is None:
            _shared = Worker()
        return _shared


def settle(timeout: float) -> bool:
    """Wait (at most `timeout` s) until the agent's worker has answered everything asked of it."""
    with _shared_lock:
        worker = _shared
    return True if worker is None else worker.wait_idle(timeout)


def every_seconds(every: str | float, minimum: float = 1.0, too_short: str = "every must be at least 1s") -> float:
    """A probe's `every` parameter in seconds, or ProbeUnavailable (a bad duration, or one under
    `minimum`, which the probe sets by what one run costs)."""
    try:
        interval = parse_duration(every)
    except ValueError as exc:
        raise ProbeUnavailable(str(exc)) from None
    if interval < minimum:
        raise ProbeUnavailable(too_short)
    return interval


def background_reader(
    key: str,
    work: Callable[[], Any],
    *,
    every: float | None,
    stale_after: float | None = None,
    clock: Callable[[], float] = time.monotonic,
    worker: Worker | None = None,
    due: Callable[[], bool] | None = None,
) -> Callable[[], Any]:
    """A reader that returns the last value of `work` at once and refreshes it on the worker.

    `every`: a value older than this is refreshed (a failure after RETRY_AFTER at most); None:
    refreshed after each read (the sensor's own interval sets the pace).
    `stale_after`: a value older than this reads as None (the worker is stuck behind
    something slow; better unavailable than an old number shown as current).
    `due`: asked at each read (it must not block); True asks for a refresh at once, whatever
    `every` says. With `due` and no `every`, only `due` asks (something that announces changes).
    """
    if every is not None and every <= 0:
        raise ValueError("every must be longer than zero")
    pool = worker if worker is not None else shared_worker()
    slot = pool.slot(key, work, clock)
    if slot.done_at is None:
        pool.request(key, slot)  # the first result is on its way before the first read

    def read() -> Any:
        now = clock()
        done_at = slot.done_at
        if done_at is None:
            pool.request(key, slot)
            return None
        age = now - done_at
        if every is None:
            wanted = due is None or slot.failed or due()
        else:
            wanted = age >= (min(every, RETRY_AFTER) if slot.failed else every) or (due is not None and due())
        if wanted:
            pool.request(key, slot)
        if stale_after is not None and age > stale_after:
            return None
        return slot.value

    return read
