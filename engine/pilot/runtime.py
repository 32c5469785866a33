"""The agent: a Plan, an MQTT session, scheduler jobs and the announcements that tie them.

One ticker job per distinct sensor interval, so the process wakes only as
often as its sensors need. Everything Home Assistant must know (discovery,
availability, capabilities, current states) is republished on every connect
and after Home Assistant's own birth message, because a broker restarted with
SIGKILL or a restarted Home Assistant has forgotten it.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import os
import random
import threading
import time
from collections import defaultdict
from dataclasses import dataclass, field
from typing import Any

from pilot import __version__, ha, telemetry
from pilot.evaluator import Evaluator, History, Missing
from pilot.mqtt import Session, Will
from pilot.plan import Plan
from pilot.probes import ProbeContext
from pilot.registry import PROBES
from pilot.state import StateDir
from pilot.telemetry import SensorState
from pilot.ticker import Ticker

log = logging.getLogger("pilot.agent")

HA_DEBOUNCE = 10.0  # at most one re-announcement burst per this many seconds
HA_DELAY = (1.0, 4.0)  # random delay after Home Assistant's birth message


@dataclass
class AgentOptions:
    host: str
    port: int
    state_dir: StateDir
    dry_run: bool = False
    ha_delay: tuple[float, float] = HA_DELAY
    ctx: ProbeContext = field(default_factory=ProbeContext)


class Agent:
    def __init__(self, plan: Plan, options: AgentOptions) -> None:
        self.plan = plan
        self.options = options
        self.started = time.monotonic()
        self._lock = threading.RLock()
        self._announce_timer: threading.Timer | None = None
        self._last_announce = 0.0
        self._states: dict[str, SensorState] = {}
        self._derived_by_input: dict[str, list[str]] = defaultdict(list)
        self._evaluator = Evaluator()
        self._probe_status: dict[str, str] = {}
        self.ticker = Ticker()
        self.session = Session(
            settings=plan.mqtt, will=Will(plan.topics.availability), host=options.host, port=options.port,
            on_connected=self._on_connected, on_message=self._on_message,
            subscriptions=[(f"{plan.mqtt.discovery_prefix}/status", 1)], birth=False,
        )
        self.commands = None
        if plan.commands:
            from pilot.actions._base import system_from_env
            from pilot.commands import CommandService

            publish = self.session.publish_result
            system = system_from_env(lambda topic, payload, retain: publish(topic, payload, 1, retain))
            if type(system).__name__ == "RecordingSystem":
                log.warning("PILOT_SYSTEM_RECORD is set: actions are recorded to %s, not performed",
                            os.environ.get("PILOT_SYSTEM_RECORD"))
            self.commands = CommandService(plan, publish, system, options.state_dir.path, dry_run=options.dry_run)
            self.session.subscriptions.append((self.commands.subscription, 1))
        self._command_prefix = f"{plan.topics.base}/cmd/"
        self._bind_sensors()
        # optional sensors whose probe cannot work here are not announced at all
        self.announced = dataclasses.replace(plan, sensors=tuple(
            s for s in plan.sensors if s.id in self._states or not s.optional))

    # ---------------------------------------------------------------- setup
    def _bind_sensors(self) -> None:
        spans: dict[str, float] = {}
        for sensor in self.plan.sensors:
            state = SensorState(sensor)
            if sensor.probe:
                reader, reason = telemetry.bind(sensor, self.options.ctx)
                self._probe_status[sensor.probe] = reason or "ok"
                if reader is None:
                    if sensor.optional:
                        log.info("sensor %s skipped: %s", sensor.id, reason)
                    else:
                        log.warning("sensor %s unavailable: %s", sensor.id, reason)
                    continue
                state.reader = reader
            else:
                from pilot.expressions import check

                for name in sensor.inputs:
                    self._derived_by_input[name].append(sensor.id)
                for _func, source, seconds in check(sensor.expr or "", frozenset(sensor.inputs)).windows:
                    spans[source] = max(spans.get(source, 0.0), seconds)
            self._states[sensor.id] = state
        self._evaluator = Evaluator(History(spans))

    def intervals(self) -> dict[float, list[str]]:
        groups: dict[float, list[str]] = defaultdict(list)
        for sid, state in self._states.items():
            if state.reader is not None:
                groups[state.sensor.every].append(sid)
        return dict(groups)

    # ---------------------------------------------------------------- telemetry
    def read_group(self, sensor_ids: list[str]) -> None:
        now = time.monotonic()
        changed: list[str] = []
        for sid in sensor_ids:
            state = self._states[sid]
            value = telemetry.read(state)
            state.value = value
            if value is None:
                continue
            self._evaluator.history.add(sid, value, self._evaluator.clock())
            changed.append(sid)
            self._maybe_publish(state, value, now)
        self._update_derived(changed, now)

    def _maybe_publish(self, state: SensorState, value: Any, now: float) -> None:
        if telemetry.due(state, value, now):
            payload = telemetry.render(state, value)
            self.session.publish_telemetry(state.sensor.state_topic, payload, retain=True)
            telemetry.mark_published(state, value, payload, now)
            if log.isEnabledFor(logging.DEBUG):
                unit = state.sensor.entity.unit_of_measurement or ""
                log.debug("%s = %s%s", state.sensor.id, payload, f" {unit}" if unit else "")

    def _update_derived(self, changed: list[str], now: float) -> None:
        pending = {d for sid in changed for d in self._derived_by_input.get(sid, ())}
        seen: set[str] = set()
        while pending:
            sid = pending.pop()
            if sid in seen:
                continue
            seen.add(sid)
            state = self._states[sid]
            values = {k: s.value for k, s in self._states.items()}
            try:
                value = telemetry.round_value(self._evaluator.evaluate(state.sensor.expr or "", values),
                                              state.sensor.precision)
            except Missing:
                continue
            except Exception as exc:
                state.note_error(f"{type(exc).__name__}: {exc}")
                continue
            state.value = value
            self._maybe_publish(state, value, now)
            pending |= set(self._derived_by_input.get(sid, ()))

    def read_all(self) -> None:
        for every, ids in sorted(self.intervals().items()):
            self.read_group(ids)

    # ---------------------------------------------------------------- announcements
    def capabilities(self) -> dict[str, Any]:
        return {
            "pilot_version": __version__,
            "profile": self.plan.profile,
            "profile_hash": self.plan.profile_hash,
            "probes": dict(sorted(self._probe_status.items())),
            "registry": {"probes": PROBES.names()},
            "dry_run": self.options.dry_run,
        }

    def announce(self) -> None:
        """Discovery (with removals), capabilities, availability, and every current state."""
        with self._lock:
            self._last_announce = time.monotonic()
            previous = self.options.state_dir.read_json("discovery.json", {})
            messages, record = ha.discovery_messages(self.announced, previous)
            for message in messages:
                self.session.publish_result(message.topic, message.payload, qos=message.qos, retain=message.retain)
            if record != previous:
                try:
                    self.options.state_dir.write_json("discovery.json", record)
                except OSError as exc:
                    log.error("cannot remember published discovery in %s: %s", self.options.state_dir.path, exc)
            self.session.publish_result(self.plan.topics.capabilities, json.dumps(self.capabilities()), retain=True)
            log.info("announced %d entities (%s discovery on %s); states under %s/state/",
                     len(ha.components(self.announced)), self.plan.mqtt.discovery, self.plan.topics.discovery,
                     self.plan.topics.base)
            self.session.publish_result(self.plan.topics.availability, "online", retain=True)
            for state in self._states.values():
                if state.published is not None:
                    self.session.publish_telemetry(state.sensor.state_topic, state.published, retain=True)
            if self.commands is not None:
                for command in self.plan.commands:
                    value = self.commands.read_state(command) if command.state_topic else None
                    if value is not None:
                        self.session.publish_telemetry(command.state_topic, str(value), retain=True)

    def _on_connected(self) -> None:
        self.announce()

    def _on_message(self, topic: str, payload: bytes, retained: bool) -> None:
        if self.commands is not None and topic.startswith(self._command_prefix):
            self.commands.handle(topic, payload, retained)
        elif topic == f"{self.plan.mqtt.discovery_prefix}/status" and payload.strip() == b"online":
            self._schedule_announce()

    def _schedule_announce(self) -> None:
        """After Home Assistant's birth: a random few seconds, and never twice within HA_DEBOUNCE."""
        with self._lock:
            if self._announce_timer is not None and self._announce_timer.is_alive():
                return
            low, high = self.options.ha_delay
            delay = random.uniform(low, high)
            earliest = self._last_announce + HA_DEBOUNCE - time.monotonic()
            delay = max(delay, earliest)
            self._announce_timer = threading.Timer(delay, self.announce)
            self._announce_timer.daemon = True
            self._announce_timer.start()

    # ---------------------------------------------------------------- lifecycle
    def start(self) -> None:
        self.options.state_dir.ensure()
        self.session.start()
        for every, ids in self.intervals().items():
            # one second in, so rate and usage probes have a first interval to measure
            self.ticker.every(every, self.read_group, ids, first_delay=min(every, 1.0))
        self.ticker.start()
        log.info("agent started: %d sensors in %d interval group(s), device %s, profile %s",
                 len(self._states), len(self.intervals()), self.plan.device.id, self.plan.profile)

    def stop(self) -> None:
        self.ticker.stop()
        if self.commands is not None:
            self.commands.stop()
        if self._announce_timer is not None:
            self._announce_timer.cancel()
        self.session.stop()

    def healthy(self) -> bool:
        return self.session.alive() and self.ticker.alive()
