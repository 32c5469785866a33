"""Rules, schedules and reload in the real agent against a real broker.

The rule's input is a sysfs.read sensor over a file the test writes (laid out as /sys would
be, under a private root), so the test decides exactly when the threshold is crossed.
"""

from __future__ import annotations

import json
import signal
import time
from pathlib import Path

import pytest

BASE = "pilot/rulerig"


def write_value(root: Path, value: int) -> None:
    path = root / "class" / "test" / "value"
    tmp = path.with_suffix(".tmp")
    tmp.write_text(f"{value}\n")
    tmp.replace(path)


PROFILE = """pilot: 1
device: {{id: rulerig, name: Rule rig}}
sensors:
  level: {{probe: sysfs.read, args: {{path: /sys/class/test/value, parse: int}}, every: 1s}}
{extra_sensors}commands:
  cool_down: {{action: process.run, args: {{argv: [/bin/echo, cooling]}}}}
  tock: {{action: process.run, args: {{argv: [/bin/echo, tock]}}}}
rules:
  hot:
    when: "level > 50"
    for: 2s
    clear: "level < 30"
    do: [{{command: cool_down}}, {{publish: {{topic: "~/note", payload: "hot at {{level}}"}}}}]
    on_clear: [{{publish: {{topic: "~/note", payload: "calm at {{level}}"}}}}]
    expose: true
schedules:
  tick: {{every: 1s, do: [{{publish: {{topic: "~/tick", payload: "t"}}}}, {{command: tock}}]}}
"""


@pytest.fixture
def sysroot(tmp_path):
    root = tmp_path / "sys"
    (root / "class" / "test").mkdir(parents=True)
    write_value(root, 10)
    return root


def start(run_agent, broker, watcher, tmp_path, sysroot, extra_sensors: str = ""):
    profile = tmp_path / "rules.yaml"
    profile.write_text(PROFILE.format(extra_sensors=extra_sensors))
    record = tmp_path / "calls.jsonl"
    started = time.monotonic()
    agent = run_agent(profile, broker.port, env={"PILOT_SYSFS_ROOT": str(sysroot), "PILOT_SYSTEM_RECORD": str(record)})
    assert watcher.wait_for(
        lambda m: m.topic == f"{BASE}/availability" and m.payload == b"online", timeout=20, since=started
    ), agent.output()
    return agent, profile, record


def test_rule_fires_once_after_its_hold_clears_with_hysteresis_and_is_audited(
    run_agent, broker, watcher, tmp_path, sysroot
):
    agent, _, record = start(run_agent, broker, watcher, tmp_path, sysroot)
    time.sleep(1.5)
    crossed = time.monotonic()
    write_value(sysroot, 80)
    fired = watcher.wait_for(lambda m: m.topic == f"{BASE}/note", timeout=10, since=crossed)
    assert fired is not None and fired.payload == b"hot at 80", agent.output()
    assert fired.at - crossed >= 1.9  # not before the 2 s hold
    assert watcher.wait_for(lambda m: m.topic == f"{BASE}/rule/hot/state" and m.payload == b"ON", timeout=5)
    audit = watcher.wait_for(
        lambda m: m.topic == f"{BASE}/audit" and json.loads(m.payload).get("origin") == "rule:hot",
        timeout=5,
        since=crossed,
    )
    assert json.loads(audit.payload) == {"event_type": "ok", "command": "cool_down", "origin": "rule:hot"}
    write_value(sysroot, 40)  # below `when`, above `clear`: still active
    time.sleep(2.5)
    write_value(sysroot, 70)
    time.sleep(3.0)
    assert [m.payload for m in watcher.on(f"{BASE}/note", since=crossed)] == [b"hot at 80"]
    assert (
        len(
            [
                c
                for c in (json.loads(line) for line in record.read_text().splitlines())
                if c.get("argv") == ["/bin/echo", "cooling"]
            ]
        )
        == 1
    )  # exactly once
    cooled = time.monotonic()
    write_value(sysroot, 20)
    calm = watcher.wait_for(lambda m: m.topic == f"{BASE}/note", timeout=10, since=cooled)
    assert calm is not None and calm.payload == b"calm at 20"
    assert watcher.wait_for(
        lambda m: m.topic == f"{BASE}/rule/hot/state" and m.payload == b"OFF", timeout=5, since=cooled
    )


def test_every_schedule_runs_its_steps_again_and_again_audited_as_the_schedule(
    run_agent, broker, watcher, tmp_path, sysroot
):
    agent, _, record = start(run_agent, broker, watcher, tmp_path, sysroot)
    since = time.monotonic()
    deadline = since + 20
    while len(watcher.on(f"{BASE}/tick", since=since)) < 3 and time.monotonic() < deadline:
        time.sleep(0.1)
    assert len(watcher.on(f"{BASE}/tick", since=since)) >= 3, agent.output()
    audit = watcher.wait_for(
        lambda m: m.topic == f"{BASE}/audit" and json.loads(m.payload).get("command") == "tock", timeout=10
    )
    assert json.loads(audit.payload) == {"event_type": "ok", "command": "tock", "origin": "schedule:tick"}
    assert ["/bin/echo", "tock"] in [json.loads(line).get("argv") for line in record.read_text().splitlines()]


def test_sighup_with_a_broken_profile_keeps_the_old_plan_and_reports_where(
    run_agent, broker, watcher, tmp_path, sysroot
):
    agent, profile, _ = start(run_agent, broker, watcher, tmp_path, sysroot)
    profile.write_text(profile.read_text().replace('when: "level > 50"', 'when: "levle > 50"'))
    since = time.monotonic()
    agent.signal(signal.SIGHUP)
    result = watcher.wait_for(lambda m: m.topic == f"{BASE}/cmd/_reload/result", timeout=15, since=since)
    assert result is not None, agent.output()
    body = json.loads(result.payload)
    assert body["status"] == "rejected" and body["reason"] == "invalid_profile"
    assert any(f"{profile}:10:12: error: $.rules.hot.when: unknown name 'levle'" in e for e in body["errors"])
    assert f"{profile}:10:12" in agent.output()
    # the old plan keeps running: the level sensor is still published, the rule still works
    again = time.monotonic()
    write_value(sysroot, 77)
    assert watcher.wait_for(lambda m: m.topic == f"{BASE}/state/level" and m.payload == b"77", timeout=5, since=again)
    assert watcher.wait_for(lambda m: m.topic == f"{BASE}/note" and m.payload == b"hot at 77", timeout=10, since=again)
    assert agent.proc.poll() is None


def test_reload_swaps_the_plan_without_dropping_the_connection(run_agent, broker, watcher, tmp_path, sysroot):
    agent, profile, _ = start(run_agent, broker, watcher, tmp_path, sysroot)
    first = watcher.wait_for(lambda m: m.topic == "homeassistant/device/rulerig/config", timeout=10)
    assert "pilot_rulerig_cpu" not in json.loads(first.payload)["components"]
    profile.write_text(PROFILE.format(extra_sensors="  cpu: {probe: cpu.percent, every: 1s}\n"))
    since = time.monotonic()
    watcher.publish(f"{BASE}/cmd/_reload/set", "")
    result = watcher.wait_for(lambda m: m.topic == f"{BASE}/cmd/_reload/result", timeout=15, since=since)
    assert json.loads(result.payload)["status"] == "ok", agent.output()
    again = watcher.wait_for(lambda m: m.topic == "homeassistant/device/rulerig/config", timeout=10, since=since)
    assert "pilot_rulerig_cpu" in json.loads(again.payload)["components"]
    assert watcher.wait_for(lambda m: m.topic == f"{BASE}/state/cpu", timeout=10, since=since)
    offline = [m for m in watcher.on(f"{BASE}/availability", since=since) if m.payload == b"offline"]
    assert offline == []
    assert agent.output().count("connected to 127.0.0.1") == 1
