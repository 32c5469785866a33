"""What the console makes of each broker message: a real agent's announcements in, the fleet out.

The messages are produced by the agent's own discovery code from a compiled profile, so the console is
held to what agents really send; the hostile cases are what anyone on the broker could send instead.
Storage is a real SQLite database; the clock is injected.
"""

from __future__ import annotations

import json

import pytest

from pilot.agent import ha
from pilot.console.config import ConsoleConfig
from pilot.console.fleet import Fleet
from pilot.console.ingest import LIMITS, Ingest
from pilot.console.storage import open_storage
from tests.support.profiles import compile_text

PROFILE = """pilot: 1
device: {id: box1, name: Box one}
sensors:
  cpu_usage: {probe: cpu.percent}
  memory_usage: {probe: memory.used_percent}
  cpu_frequency: {probe: cpu.frequency}
  uptime: {probe: system.uptime}
  online_check: {expr: "uptime > 0", platform: binary_sensor}
commands:
  reboot: {action: power.reboot, args: {method: systemctl}, platform: button, policy: {confirm: 20s}}
policies:
  allow: [reboot]
"""


class Clock:
    def __init__(self, now: float = 1_800_000_000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def rig(tmp_path):
    storage = open_storage(f"sqlite:///{tmp_path / 'c.db'}")
    clock = Clock()
    fleet = Fleet()
    ingest = Ingest(ConsoleConfig(state_dir=tmp_path), fleet, storage, clock=clock)
    plan = compile_text(PROFILE)
    messages, _ = ha.discovery_messages(plan, None)
    for m in messages:
        ingest.handle(m.topic, m.payload.encode())
    yield ingest, fleet, storage, clock, plan
    storage.close()


def test_a_real_discovery_message_becomes_a_device_with_grouped_entities(rig):
    ingest, fleet, *_ = rig
    device = fleet.devices["box1"]
    assert device.name == "Box one"
    assert set(device.entities) == {
        "cpu_usage",
        "memory_usage",
        "cpu_frequency",
        "uptime",
        "online_check",
        "reboot",
        "command_audit",
    }
    assert device.entities["reboot"].group == "controls"
    assert device.entities["command_audit"].group == "diagnostic"
    assert device.entities["reboot"].command.topic == "pilot/box1/cmd/reboot/set"
    # percentages first among the usual figures: CPU usage before CPU frequency
    assert device.key_sensors == ("cpu_usage", "cpu_frequency", "memory_usage")


def test_states_update_values_and_numeric_ones_join_the_history_batch(rig):
    ingest, fleet, storage, clock, _ = rig
    ingest.handle("pilot/box1/state/cpu_usage", b"12.5")
    ingest.handle("pilot/box1/state/online_check", b"ON")
    ingest.handle("pilot/box1/state/cpu_usage", b"not a number")
    device = fleet.devices["box1"]
    assert device.entities["cpu_usage"].value == "not a number"
    batch = ingest.take_batch()
    assert [(s.entity, s.value) for s in batch] == [("cpu_usage", 12.5), ("online_check", 1.0)]
    storage.add(batch)
    series = storage.history("box1", "cpu_usage", clock.now - 60, clock.now + 1)
    assert series.values == [12.5]


def test_availability_capabilities_health_and_audit_fill_in_the_device(rig):
    ingest, fleet, *_ = rig
    ingest.handle("pilot/box1/availability", b"online")
    caps = {
        "pilot_version": "9.9.9",
        "profile": "desk",
        "dry_run": False,
        "commands": [
            {"id": "halt", "platform": "button", "signed": True, "command_topic": "pilot/box1/cmd/halt/set"},
        ],
        "rules": [{"id": "hot", "name": "Too hot"}],
    }
    ingest.handle("pilot/box1/capabilities", json.dumps(caps).encode())
    health = {"instance": "0123456789ab", "ts": 1_800_000_000, "reconnects": 3, "duplicate_agent": True}
    ingest.handle("pilot/box1/health", json.dumps(health).encode())
    ingest.handle("pilot/box1/activity", b'{"rules": {"hot": {"last": 1800000000, "count": 2}}}')
    ingest.handle("pilot/box1/audit", b'{"event_type": "ok", "command": "halt", "origin": "mqtt", "by": "alice"}')
    device = fleet.devices["box1"]
    assert device.online is True and device.sw_version == "9.9.9"
    assert device.badges == ["duplicate_agent", "reconnects"]
    detail = fleet.detail("box1")
    assert detail["rules"] == [{"id": "hot", "name": "Too hot", "last": 1_800_000_000.0, "count": 2.0}]
    assert detail["audit"][0]["by"] == "alice"
    halt = next(e for e in detail["entities"] if e["key"] == "halt")
    assert halt["command"] == {"id": "halt", "platform": "button", "signed": True, "payload_press": "PRESS"}


def test_a_command_topic_for_another_device_is_never_taken(rig):
    """A message could otherwise make the console sign a press for device B while showing device A."""
    ingest, fleet, *_ = rig
    caps = {"commands": [{"id": "halt", "platform": "button", "signed": True, "command_topic": "pilot/B/cmd/x/set"}]}
    ingest.handle("pilot/box1/capabilities", json.dumps(caps).encode())
    assert fleet.devices["box1"].commands == {}
    config = {
        "device": {"identifiers": ["pilot_box2"], "name": "b"},
        "origin": {"name": "Pilot"},
        "components": {"pilot_box2_go": {"platform": "button", "command_topic": "pilot/box1/cmd/reboot/set"}},
    }
    ingest.handle("homeassistant/device/box2/config", json.dumps(config).encode())
    assert fleet.devices["box2"].entities["go"].command is None


@pytest.mark.parametrize(
    ("topic", "payload", "reason"),
    [
        ("pilot/box1/state/cpu_usage", b"1" * (LIMITS["state"] + 1), "too_large"),
        ("pilot/box1/state/cpu_usage", b"\xff\xfe", "not_utf8"),
        ("pilot/box1/state/nothing_announced", b"1", "unannounced"),
        ("pilot/bad id/state/cpu_usage", b"1", "bad_topic"),
        ("pilot/box1/availability", b"maybe", "bad_availability"),
        ("pilot/box1/health", b'{"instance": "zz"}', "bad_health"),
        ("pilot/box1/health", b"[" * 4000, "bad_health"),
        ("pilot/box1/capabilities", b"[" * 70000, "too_large"),
        ("pilot/box1/capabilities", b"[" * 30000, "bad_capabilities"),
        ("pilot/box1/capabilities", b'{"a": NaN}', "bad_capabilities"),
        ("pilot/box1/audit", b'{"event_type": 5}', "bad_audit"),
        ("pilot/box1/audit", b"[" * 9000, "too_large"),
        ("pilot/box1/activity", b"[" * 70000, "too_large"),
        ("pilot/box1/activity", b"[" * 30000, "bad_activity"),
        ("pilot/box1/activity", b'{"rules": {"hot": {"last": 1}}, "x": NaN}', "bad_activity"),
        ("pilot/box1/activity", b"\xff\xfe", "bad_activity"),
        ("homeassistant/device/x/config", b"{" * 100000, "bad_discovery"),
        ("homeassistant/device/other/config", b'{"device": {"identifiers": ["zigbee_1"]}}', "not_pilot"),
        ("pilot/box1/whatever/else/here", b"1", "unknown_topic"),
    ],
)
def test_hostile_messages_are_counted_by_reason_and_change_nothing(rig, topic, payload, reason):
    ingest, fleet, *_ = rig
    before = fleet.detail("box1")
    ingest.handle(topic, payload)
    assert ingest.stats.dropped == {reason: 1}
    assert fleet.detail("box1") == before
    assert set(fleet.devices) == {"box1"}


def test_control_characters_and_long_names_are_bounded_and_kept_as_data(rig):
    ingest, fleet, *_ = rig
    config = {
        "device": {"identifiers": ["pilot_evil"], "name": "\x1b[31m<script>" + "x" * 1000},
        "origin": {"name": "Pilot"},
        "components": {"pilot_evil_s": {"platform": "sensor", "state_topic": "pilot/evil/state/s", "name": "\n"}},
    }
    ingest.handle("homeassistant/device/evil/config", json.dumps(config).encode())
    device = fleet.devices["evil"]
    assert device.name.startswith("\x1b[31m<script>") and len(device.name) == 128
    ingest.handle("pilot/evil/state/s", "é\x00\u202e".encode())
    assert device.entities["s"].value == "é\x00\u202e"


def test_an_empty_discovery_message_forgets_the_device(rig):
    ingest, fleet, *_ = rig
    ingest.handle("homeassistant/device/box1/config", b"")
    assert fleet.devices == {}
    assert fleet.by_state_topic == {}
    ingest.handle("pilot/box1/state/cpu_usage", b"5")
    assert ingest.stats.dropped == {"unannounced": 1}


def test_a_rediscovery_keeps_known_values(rig):
    ingest, fleet, _storage, _clock, plan = rig
    ingest.handle("pilot/box1/state/uptime", b"77")
    messages, _ = ha.discovery_messages(plan, None)
    for m in messages:
        ingest.handle(m.topic, m.payload.encode())
    assert fleet.devices["box1"].entities["uptime"].value == "77"


def test_sparklines_take_one_point_per_ten_seconds(rig):
    ingest, fleet, _storage, clock, _ = rig
    for step in range(25):
        clock.now += 1
        ingest.handle("pilot/box1/state/cpu_usage", str(step).encode())
    spark = fleet.devices["box1"].entities["cpu_usage"].spark
    assert [v for _, v in spark] == [0.0, 10.0, 20.0]


def test_a_database_that_fails_loses_that_batch_and_says_so_without_stopping(rig, tmp_path):
    ingest, *_ = rig
    ingest.handle("pilot/box1/state/cpu_usage", b"1")
    ingest.storage.close()
    ingest.flush()
    assert ingest.stats.flush_errors == 1 and ingest.stats.samples_lost == 1
    ingest.handle("pilot/box1/state/cpu_usage", b"2")
    assert ingest.take_batch()[0].value == 2.0


def test_the_agents_diagnostic_entities_take_their_values_from_the_health_report_and_audit(rig, tmp_path):
    from pilot.agent.health import entities as health_entities

    ingest, fleet, _storage, _clock, plan = rig
    extra = health_entities("box1", "box_one", "pilot/box1/health")
    messages, _ = ha.discovery_messages(plan, None, extra)
    for m in messages:
        ingest.handle(m.topic, m.payload.encode())
    report = {"instance": "0123456789ab", "ts": 1_800_000_000, "reconnects": 4, "duplicate_agent": False}
    ingest.handle("pilot/box1/health", json.dumps(report).encode())
    ingest.handle("pilot/box1/audit", b'{"event_type": "rejected", "command": "reboot", "origin": "mqtt"}')
    entities = fleet.devices["box1"].entities
    assert entities["health_reconnects"].value == "4"
    assert entities["health_duplicate_agent"].value == "OFF"
    assert entities["health_uptime_s"].value is None  # not in this report
    assert entities["command_audit"].value == "rejected"
    assert "pilot/box1/health" not in fleet.by_state_topic


def test_a_device_cannot_take_over_another_devices_state_topic(rig):
    """Device B's readings stay B's, and removing the impostor leaves B's mapping alone."""
    ingest, fleet, *_ = rig
    config = {
        "device": {"identifiers": ["pilot_imp"], "name": "Impostor"},
        "origin": {"name": "Pilot"},
        "components": {
            "pilot_imp_cpu": {
                "platform": "sensor",
                "unit_of_measurement": "%",
                "state_topic": "pilot/box1/state/cpu_usage",
            }
        },
    }
    ingest.handle("homeassistant/device/imp/config", json.dumps(config).encode())
    assert fleet.devices["imp"].entities["cpu"].state_topic is None
    ingest.handle("homeassistant/device/imp/config", b"")
    ingest.handle("pilot/box1/state/cpu_usage", b"42")
    assert fleet.devices["box1"].entities["cpu_usage"].value == "42"


def test_devices_coming_and_going_leave_a_bounded_change_log(rig):
    from pilot.console.fleet import MAX_REMOVED

    ingest, fleet, *_ = rig
    for i in range(MAX_REMOVED + 500):
        ingest.handle(f"pilot/junk{i}/availability", b"online")
        ingest.handle(f"homeassistant/device/junk{i}/config", b"")
    assert len(fleet.changes._order) <= len(fleet.changes.since(0)) <= 20 + MAX_REMOVED
    assert fleet.changes.floor > 0


@pytest.mark.parametrize("commands", [5, True, "x", {"a": 1}])
def test_capabilities_whose_commands_are_not_a_list_are_taken_without_commands(rig, commands):
    ingest, fleet, *_ = rig
    ingest.handle("pilot/box1/capabilities", json.dumps({"pilot_version": "1", "commands": commands}).encode())
    assert ingest.stats.dropped == {}
    assert fleet.devices["box1"].commands == {} and fleet.devices["box1"].sw_version == "1"


def test_maintenance_purges_sessions_past_their_end(rig):
    from pilot.console.storage import SessionRecord

    ingest, _fleet, storage, clock, _ = rig
    for name, expires in (("old", clock.now - 1), ("live", clock.now + 3600)):
        storage.put_session(SessionRecord(name * 8, name, "viewer", "c" * 43, 0.0, expires, clock.now - 10))
    ingest.maintain()
    assert storage.get_session("old" * 8) is None
    assert storage.get_session("live" * 8).user == "live"
