"""Commands end to end: the real agent, a real broker, actions recorded at the lowest layer.

PILOT_SYSTEM_RECORD makes the agent's System append every call it would perform to a file;
the tests compare those lines with what the action itself plans, so they prove the exact
arguments reached the bottom, and nothing here can power the machine off.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from pilot.agent import signing
from tests.live.agent.conftest import REPO

BASE = "pilot/cmdrig"


@pytest.fixture
def keyring(tmp_path):
    ring = tmp_path / "keyring"
    ring.write_text(signing.new_key_line("k1") + "\n" + signing.new_key_line("old").replace("active", "revoked") + "\n")
    ring.chmod(0o600)
    return ring


def profile_text(keyring: Path) -> str:
    return f"""pilot: 1
device: {{id: cmdrig, name: Cmd rig}}
sensors:
  cpu: {{probe: cpu.percent, every: 30s}}
commands:
  shutdown: {{action: power.shutdown, args: {{method: systemctl}}, platform: button, policy: {{signed: true}}}}
  reboot: {{action: power.reboot, args: {{method: systemctl}}, platform: button, policy: {{confirm: 20s}}}}
  lock: {{action: session.lock, platform: button, policy: {{cooldown: 1h}}}}
  backup: {{action: process.run, args: {{argv: [/bin/echo, backup]}}, platform: button}}
  brightness: {{action: display.brightness, platform: number, min: 0, max: 100, step: 1, unit: "%"}}
  notify:
    action: mqtt.publish
    args: {{topic: pilot/cmdrig/note, payload: "hello {{value}}"}}
    platform: text
    max_length: 20
policies:
  allow: [shutdown, reboot, lock, backup, brightness, notify]
  hmac: {{keyring: {keyring}, window: 60s}}
"""


@pytest.fixture
def rig(tmp_path, keyring, broker, watcher, run_agent):
    """Start the agent with a recorder; returns helpers to send commands and read results."""
    profile = tmp_path / "cmd.yaml"
    profile.write_text(profile_text(keyring))
    record = tmp_path / "calls.jsonl"
    backlight = tmp_path / "sys" / "class" / "backlight" / "intel_backlight"  # made-up values, /sys layout
    backlight.mkdir(parents=True)
    (backlight / "max_brightness").write_text("1000\n")
    (backlight / "brightness").write_text("500\n")

    class Rig:
        def __init__(self) -> None:
            self.profile, self.record, self.keyring = profile, record, keyring
            self.env = {
                "PILOT_SYSTEM_RECORD": str(record),
                "PILOT_SYSFS_ROOT": str(tmp_path / "sys"),
                "LANG": "C.UTF-8",  # passed through to process.run's program (its default env_allow)
            }
            self.agent = None
            self.state_dir = tmp_path / "state"

        def start(self, *extra: str, env: dict | None = None):
            started = time.monotonic()
            self.agent = run_agent(
                profile, broker.port, *extra, state_dir=self.state_dir, env={**self.env, **(env or {})}
            )
            assert watcher.wait_for(
                lambda m: m.topic == f"{BASE}/availability" and m.payload == b"online", timeout=20, since=started
            ), self.agent.output()
            time.sleep(0.3)  # subscriptions are made before `online`; a little slack for the watcher
            return self

        def send(self, command: str, payload, *, retain: bool = False):
            sent = time.monotonic()
            watcher.publish(f"{BASE}/cmd/{command}/set", payload, retain=retain)
            return sent

        def result(self, command: str, since: float, timeout: float = 10.0) -> dict:
            msg = watcher.wait_for(lambda m: m.topic == f"{BASE}/cmd/{command}/result", timeout=timeout, since=since)
            assert msg is not None, f"no result for {command}\n{self.agent.output()}"
            return json.loads(msg.payload)

        def signed(
            self,
            command: str,
            value: str = "PRESS",
            *,
            kid: str = "k1",
            ts: int | None = None,
            device: str = "cmdrig",
            topic: str | None = None,
        ) -> str:
            keys = signing.load_keyring(keyring)
            env = signing.sign(keys[kid], device, topic or f"{BASE}/cmd/{command}/set", value, ts=ts)
            return json.dumps(env)

        def calls(self) -> list[dict]:
            if not record.exists():
                return []
            return [json.loads(line) for line in record.read_text().splitlines()]

    return Rig()


# The calls each command must make, written out by hand (never asked of the actions themselves):
# process.run gives the program only PATH and LANG from the agent's environment; the power
# commands name `method: systemctl`, so the call does not depend on whether this host runs systemd.
BACKUP = [
    {
        "kind": "exec",
        "argv": ["/bin/echo", "backup"],
        "timeout": 30.0,
        "env": [["LANG", "C.UTF-8"], ["PATH", os.environ["PATH"]]],
    }
]
SHUTDOWN = [{"kind": "exec", "argv": ["systemctl", "poweroff"], "timeout": 30.0}]
REBOOT = [{"kind": "exec", "argv": ["systemctl", "reboot"], "timeout": 30.0}]
LOCK = [{"kind": "exec", "argv": ["loginctl", "lock-sessions"], "timeout": 30.0}]


def test_button_runs_the_action_with_exactly_the_planned_call(rig):
    rig.start()
    body = rig.result("backup", rig.send("backup", "PRESS"))
    assert body["status"] == "ok" and "nonce" not in body
    assert rig.calls() == BACKUP


def test_number_writes_sysfs_and_publishes_state(rig, watcher, tmp_path):
    rig.start()
    sent = rig.send("brightness", "40")
    body = rig.result("brightness", sent)
    assert body["status"] == "ok"
    # 40 % of max_brightness 1000, written where the kernel would read it
    path = tmp_path / "sys" / "class" / "backlight" / "intel_backlight" / "brightness"
    assert rig.calls() == [{"kind": "write", "path": str(path), "data": "400"}]
    # the state is read back from the device, not assumed: the recorder wrote nothing, so it still says 500/1000
    state = watcher.wait_for(lambda m: m.topic == f"{BASE}/cmd/brightness/state", timeout=10, since=sent)
    assert state is not None and state.payload == b"50.0"


def test_signed_command_runs_once_and_replays_are_refused(rig):
    rig.start()
    envelope = rig.signed("shutdown")
    first = rig.result("shutdown", rig.send("shutdown", envelope))
    assert first["status"] == "ok" and first["nonce"] == json.loads(envelope)["nonce"]
    again = rig.result("shutdown", rig.send("shutdown", envelope))
    assert again == {**again, "status": "rejected", "reason": "replayed"}
    assert rig.calls() == SHUTDOWN


def test_replay_after_an_agent_restart_is_refused(rig):
    rig.start()
    envelope = rig.signed("shutdown")
    assert rig.result("shutdown", rig.send("shutdown", envelope))["status"] == "ok"
    rig.agent.stop()
    rig.start()
    assert rig.result("shutdown", rig.send("shutdown", envelope))["reason"] == "replayed"
    assert rig.calls() == SHUTDOWN


def test_the_same_envelope_delivered_twice_executes_once(rig, watcher):
    rig.start()
    envelope = rig.signed("shutdown")
    since = time.monotonic()
    watcher.client.publish(f"{BASE}/cmd/shutdown/set", envelope, qos=1)
    watcher.client.publish(f"{BASE}/cmd/shutdown/set", envelope, qos=1)
    statuses = lambda: sorted(
        json.loads(m.payload).get("reason", json.loads(m.payload)["status"])
        for m in watcher.on(f"{BASE}/cmd/shutdown/result", since=since)
    )
    deadline = time.monotonic() + 15
    while len(statuses()) < 2 and time.monotonic() < deadline:
        time.sleep(0.05)
    assert statuses() == ["ok", "replayed"]
    assert rig.calls() == SHUTDOWN


@pytest.mark.parametrize(
    "case, expected",
    [
        ("unsigned", "malformed"),
        ("wrong_key", "unauthorized"),
        ("revoked_key", "unauthorized"),
        ("flipped_sig", "unauthorized"),
        ("flipped_payload", "unauthorized"),
        ("other_topic", "unauthorized"),
        ("other_device", "unauthorized"),
        ("expired", "expired"),
        ("future", "expired"),
    ],
)
def test_bad_signatures_are_rejected_with_zero_executions(rig, case, expected):
    rig.start()
    now = int(time.time())
    if case == "unsigned":
        payload = "PRESS"
    elif case == "wrong_key":
        env = json.loads(rig.signed("shutdown"))
        other = signing.Key("k1", b"z" * 32)
        payload = json.dumps(signing.sign(other, "cmdrig", f"{BASE}/cmd/shutdown/set", "PRESS"))
    elif case == "revoked_key":
        payload = rig.signed("shutdown", kid="old")
    elif case == "flipped_sig":
        env = json.loads(rig.signed("shutdown"))
        env["sig"] = ("A" if env["sig"][0] != "A" else "B") + env["sig"][1:]
        payload = json.dumps(env)
    elif case == "flipped_payload":
        env = json.loads(rig.signed("shutdown"))
        env["cmd"] = "PRESS!"
        payload = json.dumps(env)
    elif case == "other_topic":
        payload = rig.signed("shutdown", topic=f"{BASE}/cmd/reboot/set")
    elif case == "other_device":
        payload = rig.signed("shutdown", device="otherbox")
    elif case == "expired":
        payload = rig.signed("shutdown", ts=now - 90)
    else:
        payload = rig.signed("shutdown", ts=now + 90)
    body = rig.result("shutdown", rig.send("shutdown", payload))
    assert body["status"] == "rejected" and body["reason"] == expected
    assert "nonce" not in body  # never echoed before the signature verified
    assert rig.calls() == []


def test_timestamps_inside_the_window_are_accepted(rig):
    rig.start()
    now = int(time.time())
    assert rig.result("shutdown", rig.send("shutdown", rig.signed("shutdown", ts=now - 55)))["status"] == "ok"
    time.sleep(1.1)
    assert rig.result("shutdown", rig.send("shutdown", rig.signed("shutdown", ts=now + 55)))["status"] == "ok"


@pytest.mark.parametrize(
    "payload, expected",
    [
        (b"x" * (1024 * 1024), "too_large"),
        (b"\xff\xfePRESS", "malformed"),
        (b"PR\x00ESS", "malformed"),
        (b"[" * 3000 + b"]" * 3000, "too_large"),
        (b"press", "bad_value"),
    ],
)
def test_malformed_and_oversized_payloads(rig, payload, expected):
    rig.start()
    body = rig.result("backup", rig.send("backup", payload))
    assert body == {**body, "status": "rejected", "reason": expected}
    assert rig.calls() == []


def test_deeply_nested_json_in_a_signed_command_is_malformed(rig):
    rig.start()
    body = rig.result("shutdown", rig.send("shutdown", b"[" * 1000 + b"]" * 1000))
    assert body["reason"] == "malformed" and rig.calls() == []


def test_retained_commands_are_refused(rig, watcher):
    # a command left retained on the broker reaches every new subscription: "ghost switching"
    since = rig.send("backup", "PRESS", retain=True)
    try:
        rig.start()
        assert rig.result("backup", since)["reason"] == "retained"
        assert rig.calls() == []
    finally:
        watcher.publish(f"{BASE}/cmd/backup/set", b"", retain=True)  # clear it


def test_values_out_of_range_and_not_on_step(rig):
    rig.start()
    for value in ("101", "-1", "40.5", "abc"):
        body = rig.result("brightness", rig.send("brightness", value))
        assert body["reason"] == "bad_value", value
        time.sleep(1.1)  # rejections are answered at most once a second: space them out so each gets one
    assert rig.calls() == []


def test_cooldown(rig):
    rig.start()
    assert rig.result("lock", rig.send("lock", "PRESS"))["status"] == "ok"
    assert rig.result("lock", rig.send("lock", "PRESS"))["reason"] == "cooldown"
    assert rig.calls() == LOCK


def test_confirm_needs_a_second_press(rig):
    rig.start()
    assert rig.result("reboot", rig.send("reboot", "PRESS"))["status"] == "armed"
    assert rig.calls() == []
    assert rig.result("reboot", rig.send("reboot", "PRESS"))["status"] == "ok"
    assert rig.calls() == REBOOT


def test_not_allowed_and_unknown_commands(rig):
    rig.start()
    body = rig.result("nonexistent", rig.send("nonexistent", "PRESS"))
    assert body["reason"] == "not_allowed"


def test_busy_while_the_action_runs(rig, watcher):
    rig.start(env={"PILOT_SYSTEM_RECORD_DELAY": "2"})
    first = rig.send("backup", "PRESS")
    time.sleep(0.3)
    assert rig.result("backup", rig.send("backup", "PRESS"))["reason"] == "busy"
    done = watcher.wait_for(
        lambda m: m.topic == f"{BASE}/cmd/backup/result" and b'"ok"' in m.payload, timeout=10, since=first
    )
    assert done is not None and rig.calls() == BACKUP


def test_dry_run_reports_the_exact_calls_and_performs_nothing(rig):
    rig.start("--dry-run")
    body = rig.result("backup", rig.send("backup", "PRESS"))
    assert body["status"] == "dry_run"
    # environment values are redacted on the broker, names kept
    assert body["calls"] == [{**BACKUP[0], "env": [["LANG", "<redacted>"], ["PATH", "<redacted>"]]}]
    assert rig.calls() == []


def test_audit_events_for_executed_and_rejected_commands(rig, watcher):
    rig.start()
    since = rig.send("backup", "PRESS")
    rig.result("backup", since)
    rig.result("backup", rig.send("backup", "nope"))
    for expected in (
        {"event_type": "ok", "command": "backup", "origin": "mqtt"},
        {"event_type": "rejected", "command": "backup", "origin": "mqtt", "reason": "bad_value"},
    ):
        assert watcher.wait_for(
            lambda m, e=expected: m.topic == f"{BASE}/audit" and json.loads(m.payload) == e, timeout=5, since=since
        ), expected


def test_discovery_offers_unsigned_commands_and_the_audit_event(rig, watcher):
    rig.start()
    msg = watcher.wait_for(lambda m: m.topic == "homeassistant/device/cmdrig/config", timeout=10)
    components = json.loads(msg.payload)["components"]
    assert components["pilot_cmdrig_backup"]["command_topic"] == f"{BASE}/cmd/backup/set"
    assert components["pilot_cmdrig_brightness"]["min"] == 0 and components["pilot_cmdrig_brightness"]["max"] == 100
    assert components["pilot_cmdrig_notify"]["platform"] == "text" and components["pilot_cmdrig_notify"]["max"] == 20
    assert "pilot_cmdrig_shutdown" not in components  # signed: driven by `pilot send`, not a UI button
    assert components["pilot_cmdrig_command_audit"]["platform"] == "event"


def test_junk_flood_is_survived_and_answered_at_most_once_a_second(rig, watcher):
    rig.start()
    pid = rig.agent.proc.pid
    rss = lambda: int(next(line for line in open(f"/proc/{pid}/status") if line.startswith("VmRSS")).split()[1])
    before = rss()
    since = time.monotonic()
    for i in range(1000):
        watcher.client.publish(f"{BASE}/cmd/shutdown/set", os.urandom(32 + i % 200), qos=0)
    time.sleep(2.0)
    replies = watcher.on(f"{BASE}/cmd/shutdown/result", since=since)
    elapsed = time.monotonic() - since
    assert len(replies) <= elapsed + 1
    body = rig.result("backup", rig.send("backup", "PRESS"))
    assert body["status"] == "ok"
    assert rss() - before < 5 * 1024, f"RSS grew by {rss() - before} kB"


def test_a_keyring_others_can_read_is_refused(rig):
    envelope = rig.signed("shutdown")
    rig.keyring.chmod(0o644)
    rig.start()
    assert rig.result("shutdown", rig.send("shutdown", envelope))["reason"] == "unavailable"
    assert "readable by others" in rig.agent.output()
    assert rig.calls() == []


def test_pilot_send_signs_waits_and_reports(rig, broker):
    rig.start()
    run = lambda *args: subprocess.run(
        [
            sys.executable,
            "-m",
            "pilot",
            "send",
            str(rig.profile),
            *args,
            "--broker",
            f"127.0.0.1:{broker.port}",
            "--state-dir",
            str(rig.state_dir.parent / "send-state"),
        ],
        env={**os.environ, "PYTHONPATH": str(REPO / "engine")},
        capture_output=True,
        text=True,
        timeout=30,
    )
    ok = run("shutdown")
    assert ok.returncode == 0, ok.stderr
    assert json.loads(ok.stdout)["status"] == "ok"
    confirm = run("reboot")  # presses twice within the window by itself
    assert confirm.returncode == 0 and json.loads(confirm.stdout)["status"] == "ok"
    refused = run("brightness", "101")
    assert refused.returncode == 1 and json.loads(refused.stdout)["reason"] == "bad_value"
    assert rig.calls() == SHUTDOWN + REBOOT
