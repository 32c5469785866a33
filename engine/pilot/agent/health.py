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
import math
import os
import re
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

log = logging.getLogger("pilot.health")

CLOCK_JUMP = 60.0  # seconds the wall clock may drift from the monotonic one between two checks

# ---------------------------------------------------------------- what a health report may look like
# Anyone who may publish on the broker can write on `pilot/<id>/health`, so a report is read as hostile
# input: its size is checked before anything else, its nesting by a scan that allocates nothing, and
# only then is it parsed (a few kilobytes of JSON cost a bounded amount of memory and time) and held
# against the schema below. Anything else is ignored and counted (`health_rejected`), never logged.
MAX_REPORT_BYTES = 4096  # a real report is ~450 bytes
MAX_DEPTH = 2  # the report object, and `rejected_by_reason` inside it
MAX_REASONS = 32  # entries in `rejected_by_reason`
MAX_EXTRA_KEYS = 16  # unknown keys (a newer Pilot's counters): numbers and booleans only
MAX_COUNTER = 2**53
INSTANCE_RE = re.compile(r"[0-9a-f]{12}\Z")
KEY_RE = re.compile(r"[a-z][a-z0-9_]{0,31}\Z")
COUNTERS = frozenset(
    {
        "uptime_s",
        "reconnects",
        "dropped_telemetry",
        "callback_errors",
        "commands_executed",
        "commands_rejected",
        "probe_errors",
        "rule_errors",
        "state_write_failures",
        "clock_jumps",
        "health_rejected",
        "inbound_dropped",
    }
)
FLAGS = frozenset({"connected", "duplicate_agent"})


def _depth_ok(payload: bytes, limit: int = MAX_DEPTH) -> bool:
    """True when no array or object nests deeper than `limit` (brackets inside strings do not count).
    One pass over at most MAX_REPORT_BYTES bytes, no allocation: json.loads never sees deep input."""
    depth = 0
    in_string = escaped = False
    for byte in payload:
        if in_string:
            if escaped:
                escaped = False
            elif byte == 0x5C:  # backslash
                escaped = True
            elif byte == 0x22:  # quote
                in_string = False
        elif byte == 0x22:
            in_string = True
        elif byte in (0x5B, 0x7B):  # [ {
            depth += 1
            if depth > limit:
                return False
        elif byte in (0x5D, 0x7D):  # ] }
            depth -= 1
    return True


def _counter(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and 0 <= value < MAX_COUNTER


def _no_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    out = dict(pairs)
    if len(out) != len(pairs):
        raise ValueError("duplicate key")
    return out


def _no_constant(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")


def parse_report(payload: bytes) -> dict[str, Any] | None:
    """The health report in `payload` if it is one, else None. Never raises, never reads more than
    MAX_REPORT_BYTES, never recurses: the cost of a hostile message is bounded whatever it holds."""
    if not isinstance(payload, (bytes, bytearray)) or not 2 <= len(payload) <= MAX_REPORT_BYTES:
        return None
    if payload[:1] != b"{" or not _depth_ok(payload):
        return None
    try:
        report = json.loads(payload.decode("utf-8"), object_pairs_hook=_no_duplicates, parse_constant=_no_constant)
    except (ValueError, RecursionError, MemoryError):  # UnicodeDecodeError is a ValueError
        return None
    if not isinstance(report, dict):
        return None
    instance, ts = report.get("instance"), report.get("ts")
    if not (isinstance(instance, str) and INSTANCE_RE.match(instance)):
        return None
    if not (isinstance(ts, (int, float)) and not isinstance(ts, bool) and math.isfinite(ts) and 0 < ts < 2**40):
        return None
    extra = 0
    for key, value in report.items():
        if key in ("instance", "ts"):
            continue
        if key in COUNTERS:
            if not _counter(value):
                return None
        elif key in FLAGS:
            if not isinstance(value, bool):
                return None
        elif key == "rejected_by_reason":
            if not (
                isinstance(value, dict)
                and len(value) <= MAX_REASONS
                and all(KEY_RE.match(k) and _counter(v) for k, v in value.items())
            ):
                return None
        else:
            # forward compatibility: a newer agent's extra counters, but nothing that could hold text
            extra += 1
            if extra > MAX_EXTRA_KEYS or not KEY_RE.match(key):
                return None
            if not (isinstance(value, (int, float)) and (not isinstance(value, float) or math.isfinite(value))):
                return None
    return report


@dataclass
class Health:
    started_mono: float = field(default_factory=time.monotonic)
    started_wall: float = field(default_factory=time.time)
    instance: str = field(default_factory=lambda: os.urandom(6).hex())
    state_write_failures: int = 0
    clock_jumps: int = 0
    duplicate_since: float | None = None
    other_instance: str | None = None
    health_rejected: int = 0  # messages on our health topic that were not a well-formed report
    inbound_dropped: int = 0  # inbound messages dropped before parsing: too large, bad topic, retained
    _last_retained: bytes = b""
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

    def on_report(self, payload: bytes, retained: bool = False) -> None:
        """A message on our own health topic: ours, a duplicate agent's, or junk (counted, not logged).

        The broker hands its retained copy back after every reconnect; the same copy is judged once
        (two agents sharing a client id kick each other off, so that copy is how they see each other)."""
        if retained:
            if payload == self._last_retained:
                return
            self._last_retained = bytes(payload[: MAX_REPORT_BYTES + 1])
        report = parse_report(payload)
        if report is None:
            self.health_rejected += 1
            return
        # a report written after we started, by another instance: two agents share this id
        # (our own previous instance's retained report predates our start)
        if report["ts"] > self.started_wall:
            self.saw_instance(report["instance"])

    def saw_instance(self, instance: str | None) -> None:
        """Another agent published health for our device id: two agents share an identity.
        Only a well-formed instance id (12 hex digits) is believed, so what reaches the log is bounded."""
        if not (isinstance(instance, str) and INSTANCE_RE.match(instance)):
            self.health_rejected += 1
            return
        if instance != self.instance and self.other_instance != instance:
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
            "health_rejected": self.health_rejected,
            "inbound_dropped": self.inbound_dropped,
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
