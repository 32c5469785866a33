"""The agent's own health, published retained on `pilot/<id>/health` and as diagnostic entities.

Peers are known for agents that "stop reporting but keep running"; these
counters make every degraded state visible in Home Assistant: reconnects,
telemetry dropped while the broker was away, rejected commands by reason,
probe errors, state files that could not be written, a wall clock that jumped,
and a second agent running with the same device id.
"""

from __future__ import annotations

import json
import logging
import os
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

log = logging.getLogger("pilot.health")

CLOCK_JUMP = 60.0  # seconds the wall clock may drift from the monotonic one between two checks


@dataclass
class Health:
    started_mono: float = field(default_factory=time.monotonic)
    started_wall: float = field(default_factory=time.time)
    instance: str = field(default_factory=lambda: os.urandom(6).hex())
    state_write_failures: int = 0
    clock_jumps: int = 0
    duplicate_since: float | None = None
    other_instance: str | None = None
    _last_wall: float = field(default_factory=time.time)
    _last_mono: float = field(default_factory=time.monotonic)

    def check_clock(self, wall: Callable[[], float] = time.time, mono: Callable[[], float] = time.monotonic) -> bool:
        """True when the wall clock jumped relative to the monotonic clock since the last check."""
        now_wall, now_mono = wall(), mono()
        drift = (now_wall - self._last_wall) - (now_mono - self._last_mono)
        self._last_wall, self._last_mono = now_wall, now_mono
        if abs(drift) > CLOCK_JUMP:
            self.clock_jumps += 1
            log.warning(
                "the wall clock jumped by %+.0f s; signed commands are judged by the new time, "
                "cooldowns are unaffected",
                drift,
            )
            return True
        return False

    def saw_instance(self, instance: str | None) -> None:
        """Another agent published health for our device id: two agents share an identity."""
        if instance and instance != self.instance and self.other_instance != instance:
            self.other_instance = instance
            self.duplicate_since = time.monotonic()
            log.error(
                "another Pilot agent (instance %s) publishes as this device; give each machine its own "
                "device id (`device.id`) or stop one of them",
                instance,
            )

    def report(self, *, session_stats: Any, command_stats: Any, probe_errors: int, rule_errors: int) -> dict:
        rejected = dict(command_stats.rejected) if command_stats else {}
        return {
            "instance": self.instance,
            "ts": int(time.time()),
            "uptime_s": int(time.monotonic() - self.started_mono),
            "connected": session_stats.connected_since is not None,
            "reconnects": max(0, session_stats.connects - 1),
            "dropped_telemetry": session_stats.dropped_telemetry,
            "callback_errors": session_stats.callback_errors,
            "commands_executed": command_stats.executed if command_stats else 0,
            "commands_rejected": sum(rejected.values()),
            "rejected_by_reason": rejected,
            "probe_errors": probe_errors,
            "rule_errors": rule_errors,
            "state_write_failures": self.state_write_failures,
            "clock_jumps": self.clock_jumps,
            "duplicate_agent": self.other_instance is not None,
        }


def entities(device_id: str, device_slug: str, topic: str) -> dict[str, dict[str, Any]]:
    """Diagnostic entities reading fields of the health JSON."""

    def sensor(key: str, name: str, **extra: Any) -> tuple[str, dict[str, Any]]:
        uid = f"pilot_{device_id}_health_{key}"
        platform = extra.pop("platform", "sensor")
        config = {
            "platform": platform,
            "unique_id": uid,
            "name": name,
            "state_topic": topic,
            "default_entity_id": f"{platform}.{device_slug}_{key}",
            "entity_category": "diagnostic",
            "value_template": "{{ value_json." + key + " }}",
            **extra,
        }
        return uid, config

    items = [
        sensor(
            "uptime_s",
            "Agent uptime",
            device_class="duration",
            unit_of_measurement="s",
            state_class="total_increasing",
            icon="mdi:timer-outline",
        ),
        sensor("reconnects", "MQTT reconnects", state_class="total_increasing", icon="mdi:lan-disconnect"),
        sensor(
            "dropped_telemetry",
            "Dropped telemetry",
            state_class="total_increasing",
            icon="mdi:delete-clock",
            enabled_by_default=False,
        ),
        sensor("commands_rejected", "Rejected commands", state_class="total_increasing", icon="mdi:shield-alert"),
        sensor(
            "probe_errors",
            "Probe errors",
            state_class="total_increasing",
            icon="mdi:alert-circle-outline",
            enabled_by_default=False,
        ),
        sensor(
            "duplicate_agent",
            "Duplicate agent",
            platform="binary_sensor",
            device_class="problem",
            payload_on="True",
            payload_off="False",
        ),
    ]
    return dict(items)


def encode(report: dict) -> str:
    return json.dumps(report, separators=(",", ":"), sort_keys=True)
