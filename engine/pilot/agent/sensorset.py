"""The sensors of one plan at run time: bound probes, derived values, history, publishing.

Derived sensors and rules are re-evaluated only when one of their inputs
changed; window functions keep only the history some expression needs.
"""

from __future__ import annotations

import logging
import time
from collections import defaultdict
from collections.abc import Callable
from typing import Any

from pilot.agent import telemetry
from pilot.agent.evaluator import Evaluator, History, Missing
from pilot.agent.telemetry import SensorState
from pilot.plan import Plan
from pilot.probes import ProbeContext

log = logging.getLogger("pilot.agent")


class SensorSet:
    def __init__(
        self,
        plan: Plan,
        ctx: ProbeContext,
        publish: Callable[[str, str], None],
        on_change: Callable[[list[str]], None] = lambda changed: None,
    ) -> None:
        self.plan = plan
        self.publish = publish
        self.on_change = on_change
        self.states: dict[str, SensorState] = {}
        self.probe_status: dict[str, str] = {}
        self._derived_by_input: dict[str, list[str]] = defaultdict(list)
        spans: dict[str, float] = {}  # sensor id -> the longest window any expression reads of it
        for window in [w for s in plan.sensors for w in s.windows] + [w for r in plan.rules for w in r.windows]:
            spans[window.source] = max(spans.get(window.source, 0.0), window.seconds)
        for sensor in plan.sensors:
            state = SensorState(sensor)
            if sensor.probe:
                reader, reason = telemetry.bind(sensor, ctx)
                self.probe_status[sensor.probe] = reason or "ok"
                if reader is None:
                    if sensor.optional:
                        log.info("sensor %s skipped: %s", sensor.id, reason)
                    else:
                        log.warning("sensor %s unavailable: %s", sensor.id, reason)
                    continue
                state.reader = reader
            else:
                for name in sensor.inputs:
                    self._derived_by_input[name].append(sensor.id)
            self.states[sensor.id] = state
        self.evaluator = Evaluator(History(spans))
        self._order = self._dependency_order()

    def _dependency_order(self) -> list[str]:
        """Derived sensors sorted so each comes after every derived sensor it reads (validation
        refuses cycles), so one pass computes a chain like a = x*2, b = a + x consistently."""
        derived = [sid for sid, s in self.states.items() if s.sensor.expr]
        order: list[str] = []
        placed: set[str] = set()

        def place(sid: str, trail: frozenset[str]) -> None:
            if sid in placed or sid in trail:
                return
            for name in self.states[sid].sensor.inputs:
                if name in self.states and self.states[name].sensor.expr:
                    place(name, trail | {sid})
            placed.add(sid)
            order.append(sid)

        for sid in derived:
            place(sid, frozenset())
        return order

    def intervals(self) -> dict[float, list[str]]:
        groups: dict[float, list[str]] = defaultdict(list)
        for sid, state in self.states.items():
            if state.reader is not None:
                groups[state.sensor.every].append(sid)
        return dict(groups)

    def values(self) -> dict[str, Any]:
        return {k: s.value for k, s in self.states.items()}

    def read_group(self, sensor_ids: list[str]) -> None:
        now = time.monotonic()
        changed: list[str] = []
        for sid in sensor_ids:
            state = self.states[sid]
            value = telemetry.read(state)
            previous, state.value = state.value, value
            if value is None:
                continue
            self.evaluator.history.add(sid, value, self.evaluator.clock())
            if value != previous:
                changed.append(sid)
            self._maybe_publish(state, value, now)
        changed += self._update_derived(changed, now)
        if changed:
            self.on_change(changed)

    def read_all(self) -> None:
        for _every, ids in sorted(self.intervals().items()):
            self.read_group(ids)

    def _maybe_publish(self, state: SensorState, value: Any, now: float) -> None:
        if telemetry.due(state, value, now):
            payload = telemetry.render(state, value)
            self.publish(state.sensor.state_topic, payload)
            telemetry.mark_published(state, value, payload, now)
            if log.isEnabledFor(logging.DEBUG):
                unit = state.sensor.entity.unit_of_measurement or ""
                log.debug("%s = %s%s", state.sensor.id, payload, f" {unit}" if unit else "")

    def _update_derived(self, changed: list[str], now: float) -> list[str]:
        affected: set[str] = set()
        frontier = list(changed)
        while frontier:  # every derived sensor downstream of a change
            for dependent in self._derived_by_input.get(frontier.pop(), ()):
                if dependent not in affected:
                    affected.add(dependent)
                    frontier.append(dependent)
        updated: list[str] = []
        for sid in self._order:
            if sid not in affected:
                continue
            state = self.states[sid]
            try:
                value = telemetry.round_value(
                    self.evaluator.evaluate(state.sensor.expr or "", self.values()), state.sensor.precision
                )
            except Missing:
                continue
            except Exception as exc:
                state.note_error(f"{type(exc).__name__}: {exc}")
                continue
            if value != state.value:
                updated.append(sid)
            state.value = value
            self._maybe_publish(state, value, now)
        return updated

    def republish(self) -> None:
        for state in self.states.values():
            if state.published is not None:
                self.publish(state.sensor.state_topic, state.published)
