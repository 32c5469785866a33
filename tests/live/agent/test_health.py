"""The agent's health topic and diagnostic entities, and two agents that share a device id."""

from __future__ import annotations

import json
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
BASIC = HERE / "profiles" / "basic.yaml"


def test_health_is_published_retained_with_counters(broker, watcher, run_agent):
    """Retained: see tests/live/agent/test_wire_promises.py (a fresh subscriber); here, the exact fields."""
    run_agent(BASIC, broker.port, env={"PILOT_HEALTH_EVERY": "1"})
    msg = watcher.wait_for(lambda m: m.topic == "pilot/testrig01/health", timeout=15)
    report = json.loads(msg.payload)
    assert set(report) == {
        "instance",
        "ts",
        "uptime_s",
        "connected",
        "reconnects",
        "dropped_telemetry",
        "callback_errors",
        "commands_executed",
        "commands_rejected",
        "rejected_by_reason",
        "probe_errors",
        "rule_errors",
        "state_write_failures",
        "clock_jumps",
        "duplicate_agent",
        "health_rejected",
        "inbound_dropped",
    }
    assert report["duplicate_agent"] is False and report["reconnects"] == 0 and report["connected"] is True
    assert report["rule_errors"] == 0 and report["rejected_by_reason"] == {}
    later = watcher.wait_for(
        lambda m: m.topic == "pilot/testrig01/health" and json.loads(m.payload)["uptime_s"] >= 2, timeout=10
    )
    assert later is not None  # reported again as time passes, not only once at connect


def test_health_fields_are_diagnostic_entities_in_home_assistant(broker, watcher, run_agent):
    """Six fields of the health report become diagnostic entities reading the retained health topic."""
    run_agent(BASIC, broker.port)
    want = {"uptime_s", "reconnects", "dropped_telemetry", "commands_rejected", "probe_errors", "duplicate_agent"}

    def configs() -> dict[str, dict]:
        found = {}
        for m in watcher.messages:
            if m.topic.startswith("homeassistant/") and m.topic.endswith("/config") and m.payload:
                doc = json.loads(m.payload)
                for uid, cmp in (doc.get("components") or {"": doc}).items():
                    key = (uid or cmp.get("unique_id", "")).removeprefix("pilot_testrig01_health_")
                    if key in want:
                        found[key] = cmp
        return found

    watcher.wait_for(lambda m: len(configs()) == len(want), timeout=15)
    found = configs()
    assert set(found) == want
    for key, cmp in found.items():
        assert cmp["entity_category"] == "diagnostic", key
        assert cmp["value_template"] == "{{ value_json." + key + " }}", key
        assert cmp["state_topic"] == "pilot/testrig01/health", key
    assert found["duplicate_agent"]["platform"] == "binary_sensor"
    assert found["duplicate_agent"]["device_class"] == "problem"


def test_two_agents_with_one_device_id_are_detected_without_a_fast_takeover_loop(broker, watcher, run_agent, tmp_path):
    env = {"PILOT_HEALTH_EVERY": "1"}
    first = run_agent(BASIC, broker.port, env=env, state_dir=tmp_path / "a")
    assert watcher.wait_for(lambda m: m.topic == "pilot/testrig01/availability" and m.payload == b"online", timeout=15)
    time.sleep(1.5)
    second = run_agent(BASIC, broker.port, env=env, state_dir=tmp_path / "b")
    deadline = time.monotonic() + 25
    while time.monotonic() < deadline:
        if "another Pilot agent" in first.output() + second.output():
            break
        time.sleep(0.5)
    out = first.output() + second.output()
    assert "another Pilot agent" in out, out[-3000:]
    flagged = watcher.wait_for(
        lambda m: m.topic == "pilot/testrig01/health" and json.loads(m.payload)["duplicate_agent"] is True, timeout=15
    )
    assert flagged is not None
    # the broker hands the client id back and forth; backoff keeps that slower than once a second
    connects = out.count("connected to 127.0.0.1")
    assert connects <= 30, connects
