"""Shared pieces of the probe families: the reader guard, reasons, counter rates."""

from __future__ import annotations

import functools
import time
from collections.abc import Callable, Mapping

import psutil

Reading = int | float | str | bool | None
Reader = Callable[[], Reading]

# What a reader may legitimately run into at read time: a file vanished, a
# device went away, a counter held junk. These mean "no reading right now".
EXPECTED_ERRORS: tuple[type[BaseException], ...] = (
    OSError,
    ValueError,
    ArithmeticError,
    LookupError,
    psutil.Error,
)


def guarded(reader: Callable[[], Reading]) -> Reader:
    """Wrap a reader so expected read-time failures become None instead of exceptions."""

    @functools.wraps(reader)
    def safe() -> Reading:
        try:
            return reader()
        except EXPECTED_ERRORS:
            return None

    return safe


def reason_of(check: Callable[[], str | None]) -> str | None:
    """Run an availability check; an unexpected OS error is itself the reason."""
    try:
        return check()
    except EXPECTED_ERRORS as exc:
        return f"cannot be read here ({exc.__class__.__name__}: {exc})"


class CounterRate:
    """Per-second rate of a set of named, ever-growing counters, private to one reader.

    The first sample is taken when the reader is bound, so the first read is the
    rate since binding. Counters present in only one sample (an interface came
    or went) and counters that went backwards (reset, wrap) are left out of that
    interval rather than producing a negative or absurd spike.
    """

    def __init__(
        self,
        sample: Callable[[], Mapping[str, int] | None],
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._sample = sample
        self._clock = clock
        self._prev: Mapping[str, int] | None = None
        self._prev_t = 0.0
        try:
            self._take()
        except EXPECTED_ERRORS:
            self._prev = None

    def _take(self) -> tuple[Mapping[str, int] | None, Mapping[str, int] | None, float]:
        now = self._clock()
        current = self._sample()
        prev, prev_t = self._prev, self._prev_t
        if current is not None:
            self._prev, self._prev_t = dict(current), now
        return prev, current, now - prev_t

    def __call__(self) -> float | None:
        prev, current, elapsed = self._take()
        if prev is None or current is None or elapsed <= 0:
            return None
        delta = 0
        for key in current.keys() & prev.keys():
            step = current[key] - prev[key]
            if step >= 0:
                delta += step
        return delta / elapsed
