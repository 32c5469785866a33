"""What a console reads from a real agent on a real broker: capabilities that list every command
(signed ones too), rules and schedules; the retained activity topic; and, for a signed press that
names who pressed (`pilot send --by`), an audit event with the key and the name.

Actions are recorded (PILOT_SYSTEM_RECORD), never performed; the rule's input is a file under a
private sysfs root, so the test decides when it fires.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

import pytest

from pilot.agent import signing
from testkit.agent import pilot_env
from tests.support.harness import ready_watcher

BASE = "pilot/feedrig"

PROFILE = """pilot: 1
device: {{id: feedrig, name: Feed rig}}
sensors:
  level: {{probe: sysfs.read, args: {{path: /sys/class/test/value, parse: int}}, every: 1s}}
commands:
  shutdown: {{action: power.shutdown, args: {{method: systemctl}}, platform: button, policy: {{signed: true}}}}
  backup: {{action: process.run, args: {{argv: [/bin/echo, backup]}}, platform: button}}
rules:
  hot: {{when: "level > 50", clear: "level < 30", do: [{{publish: {{topic: "~/note", payload: "hot"}}}}]}}
schedules:
  tick: {{every: 1s, do: [{{publish: {{topic: "~/tick", payload: "t"}}}}]}}
policies:
  allow: [shutdown, backup]
  hmac: {{keyring: {keyring}, window: 60s}}
"""


def write_value(root: Path, value: int) -> None:
    path = root / "class" / "test" / "value"
    tmp = path.with_suffix(".tmp")
    tmp.write_text(f"{value}\n")
    tmp.replace(path)


@pytest.fixture
def rig(tmp_path, broker, watcher, run_agent):
    ring = tmp_path / "keyring"
    ring.write_text(signing.new_key_line("k1") + "\n")
    ring.chmod(0o600)
    sysroot = tmp_path / "sys"
    (sysroot / "class" / "test").mkdir(parents=True)
    write_value(sysroot, 10)
    profile = tmp_path / "feed.yaml"
    profile.write_text(PROFILE.format(keyring=ring))
    state = tmp_path / "state"
    started = time.monotonic()
    agent = run_agent(
        profile,
        broker.port,
        state_dir=state,
        env={"PILOT_SYSFS_ROOT": str(sysroot), "PILOT_SYSTEM_RECORD": str(tmp_path / "calls.jsonl")},
    )
    assert watcher.wait_for(
        lambda m: m.topic == f"{BASE}/availability" and m.payload == b"online", timeout=20, since=started
    ), agent.output()
    return profile, state, sysroot, agent


def pilot(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "pilot", *args], capture_output=True, text=True, env=pilot_env(), timeout=60
    )


def test_capabilities_list_the_signed_command_the_rule_and_the_schedule(rig, broker):
    fresh = ready_watcher(broker.port, topics=(f"{BASE}/capabilities",))
    try:
        caps = fresh.wait_for(lambda m: m.retain, timeout=10)
    finally:
        fresh.stop()
    assert caps is not None
    body = json.loads(caps.payload)
    assert [(c["id"], c["platform"], c["signed"], c["command_topic"]) for c in body["commands"]] == [
        ("shutdown", "button", True, f"{BASE}/cmd/shutdown/set"),
        ("backup", "button", False, f"{BASE}/cmd/backup/set"),
    ]
    assert body["rules"] == [{"id": "hot", "name": "Hot"}]
    assert body["schedules"] == [{"id": "tick", "name": "Tick", "cron": None, "every": 1.0}]


def test_activity_counts_firings_coalesced_retained_and_pilot_forget_clears_it(rig, broker, watcher):
    profile, state, sysroot, agent = rig
    since = time.monotonic()
    write_value(sysroot, 80)
    topic = f"{BASE}/activity"

    def body(m):
        return json.loads(m.payload) if m.topic == topic else None

    fired = watcher.wait_for(
        lambda m: m.topic == topic and "hot" in body(m)["rules"] and body(m)["schedules"]["tick"]["count"] >= 8,
        timeout=30,
        since=since,
    )
    assert fired is not None, agent.output()
    last = body(fired)
    assert last["rules"]["hot"]["count"] == 1 and set(last) == {"rules", "schedules"}
    assert time.time() - 60 < last["schedules"]["tick"]["last"] <= time.time() + 1
    # a schedule every second, published at most once per 5 s: far fewer messages than firings
    published = len(watcher.on(topic, since=since))
    assert 1 <= published <= last["schedules"]["tick"]["count"] // 2, (published, last)

    fresh = ready_watcher(broker.port, topics=(topic,))
    try:
        retained = fresh.wait_for(lambda m: m.retain, timeout=10)
    finally:
        fresh.stop()
    assert retained is not None and json.loads(retained.payload)["rules"]["hot"]["count"] == 1

    agent.stop()
    done = pilot("forget", str(profile), "--broker", f"127.0.0.1:{broker.port}", "--state-dir", str(state))
    assert done.returncode == 0, done.stderr + done.stdout
    assert topic in done.stdout
    fresh = ready_watcher(broker.port, topics=(topic,))
    try:
        assert fresh.on(topic) == []  # nothing retained any more
    finally:
        fresh.stop()


def test_a_signed_press_by_a_named_user_is_audited_with_its_key_and_name(rig, broker, watcher):
    profile, state, _, agent = rig
    since = time.monotonic()
    sent = pilot(
        "send",
        str(profile),
        "shutdown",
        "--by",
        "alice@example.org",
        "--broker",
        f"127.0.0.1:{broker.port}",
        "--state-dir",
        str(state.parent / "send-state"),
    )
    assert sent.returncode == 0, sent.stderr
    assert json.loads(sent.stdout)["status"] == "ok"
    audit = watcher.wait_for(lambda m: m.topic == f"{BASE}/audit", timeout=10, since=since)
    assert audit is not None
    assert json.loads(audit.payload) == {
        "event_type": "ok",
        "command": "shutdown",
        "origin": "mqtt",
        "kid": "k1",
        "by": "alice@example.org",
    }
    assert "executed shutdown (mqtt, kid k1, by alice@example.org)" in agent.output()

    refused = pilot("send", str(profile), "shutdown", "--by", "alice\nbob", "--broker", f"127.0.0.1:{broker.port}")
    assert refused.returncode == 2 and "NAME must be" in refused.stderr
    unsigned = pilot("send", str(profile), "backup", "--by", "alice", "--broker", f"127.0.0.1:{broker.port}")
    assert unsigned.returncode == 2 and "not a signed command" in unsigned.stderr


def test_pilot_send_by_names_nobody_when_not_given(rig, broker, watcher):
    profile, state, _, _ = rig
    since = time.monotonic()
    sent = pilot(
        "send",
        str(profile),
        "shutdown",
        "--broker",
        f"127.0.0.1:{broker.port}",
        "--state-dir",
        str(state.parent / "send-state"),
    )
    assert sent.returncode == 0, sent.stderr
    audit = watcher.wait_for(lambda m: m.topic == f"{BASE}/audit", timeout=10, since=since)
    assert audit is not None and json.loads(audit.payload) == {
        "event_type": "ok",
        "command": "shutdown",
        "origin": "mqtt",
        "kid": "k1",
    }
