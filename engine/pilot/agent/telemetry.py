"""Reading sensors and deciding what to publish: probes bound once, deadband and heartbeat.

A probe that raises is counted and logged once per distinct error; it never
kills the job that reads it, and the other sensors of that job still publish.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from pilot.agent.ha import format_state
from pilot.plan import Sensor
from pilot.probes import ProbeContext, ProbeUnavailable
from pilot.registry import PROBES

log = logging.getLogger("pilot.telemetry")


@dataclass
class SensorState:
    sensor: Sensor
    reader: Callable[[], Any] | None = None
    value: Any = None
    published: str | None = None
    published_value: Any = None
    published_at: float = 0.0
    errors: int = 0
    error_kinds: set[str] = field(default_factory=set)

    def note_error(self, message: str) -> None:
        self.errors += 1
        if first_time(self.error_kinds, message):
            log.warning("sensor %s: %s", self.sensor.id, message)


def first_time(seen: set[str], message: str, limit: int = 20) -> bool:
    """Log each distinct error once (and remember at most `limit` of them): a failing probe read
    every second must not flood the journal, and a new kind of failure must still show."""
    if message in seen or len(seen) >= limit:
        return False
    seen.add(message)
    return True


def round_value(value: Any, precision: int | None) -> Any:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return value
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if precision is None:
        return value
    rounded = round(float(value), precision)
    return int(rounded) if precision == 0 else rounded


def due(state: SensorState, value: Any, now: float) -> bool:
    """Deadband (min_change) plus heartbeat (max_silence)."""
    s = state.sensor
    if state.published is None:
        return True
    # ticks wake a millisecond early or late; half an interval of slack keeps a heartbeat equal
    # to the interval from skipping every other beat
    if s.max_silence is not None and now - state.published_at + s.every / 2 >= s.max_silence:
        return True
    if value == state.published_value:
        return False
    if (
        s.min_change is not None
        and isinstance(value, (int, float))
        and not isinstance(value, bool)
        and isinstance(state.published_value, (int, float))
    ):
        return abs(value - state.published_value) >= s.min_change
    return True


def bind(sensor: Sensor, ctx: ProbeContext) -> tuple[Callable[[], Any] | None, str | None]:
    """A reader for the sensor's probe, or the reason it cannot have one here."""
    entry = PROBES.get(sensor.probe or "")
    if entry is None:
        broken = f" ({'; '.join(PROBES.problems[:3])})" if PROBES.problems else ""  # a plugin that failed to load
        return None, f"unknown probe {sensor.probe!r}{broken}"
    try:
        if entry.available is not None:
            reason = entry.available(ctx, **sensor.args)
            if reason:
                return None, reason
        return entry.factory(ctx, **sensor.args), None
    except ProbeUnavailable as exc:
        return None, str(exc) or "unavailable here"
    except Exception as exc:
        return None, f"{type(exc).__name__}: {exc}"


def read(state: SensorState) -> Any:
    if state.reader is None:
        return None
    try:
        return round_value(state.reader(), state.sensor.precision)
    except ProbeUnavailable as exc:
        state.note_error(str(exc) or "unavailable")
    except Exception as exc:
        state.note_error(f"{type(exc).__name__}: {exc}")
    return None


def render(state: SensorState, value: Any) -> str:
    return format_state(value, state.sensor.entity.platform)


def mark_published(state: SensorState, value: Any, payload: str, now: float | None = None) -> None:
    state.published = payload
    state.published_value = value
    state.published_at = time.monotonic() if now is None else now
