"""The agent itself is killed, stopped mid-action, or reloaded with a broken profile."""

from __future__ import annotations

import json
import re
import signal
import time
from pathlib import Path

from testkit.agent import Signer, alive, children, new_keyring, recorded_calls
from tests.support.harness import figure, offline, online


def _signed_profile(tmp_path: Path, device: str, keyring: Path, commands: str, allow: str) -> Path:
    p = tmp_path / f"{device}.yaml"
    p.write_text(
        f"pilot: 1\ndevice: {{id: {device}, name: {device}}}\nmqtt: {{keepalive: 5}}\n"
        "sensors:\n  cpu: {probe: cpu.percent, every: 1s}\n"
        f"commands:\n{commands}"
        f"policies:\n  allow: [{allow}]\n  hmac: {{keyring: {keyring}, window: 60s}}\n"
    )
    return p


def _result(w, topic: str, since: float, timeout: float = 10.0, where=lambda body: True) -> dict | None:
    msg = w.wait_for(lambda m: m.topic == topic and where(json.loads(m.payload)), timeout=timeout, since=since)
    return json.loads(msg.payload) if msg else None


def test_kill_9_mid_command_runs_it_exactly_once(tmp_path, brokers, watchers, agents):
    case = "kill -9 mid-command"
    device, base = "k9rig", "pilot/k9rig"
    keyring = new_keyring(tmp_path / "keyring")
    profile = _signed_profile(
        tmp_path,
        device,
        keyring,
        "  shutdown: {action: power.shutdown, platform: button, policy: {signed: true}}\n",
        "shutdown",
    )
    record = tmp_path / "calls.jsonl"
    env = {"PILOT_SYSTEM_RECORD": str(record), "PILOT_SYSTEM_RECORD_DELAY": "3"}
    state = tmp_path / "state"
    broker = brokers()
    w = watchers(broker.port)
    agent = agents(profile, broker.port, state_dir=state, env=env)
    assert w.wait_for(online(f"{base}/availability"), timeout=20), agent.tail()
    time.sleep(0.3)
    envelope = Signer(keyring, device, base).envelope("shutdown")
    sent = time.monotonic()
    w.publish(f"{base}/cmd/shutdown/set", envelope)
    time.sleep(max(0.0, sent + 1.0 - time.monotonic()))
    assert len(recorded_calls(record)) == 1, "the action should be running (recorded, sleeping 3 s)"
    agent.signal(signal.SIGKILL)
    killed = time.monotonic()
    lwt = w.wait_for(offline(f"{base}/availability"), timeout=5, since=killed)
    assert lwt is not None
    figure(case, "LWT offline after SIGKILL (s, <= 1)", lwt.at - killed)
    assert lwt.at - killed <= 1.0
    assert _result(w, f"{base}/cmd/shutdown/result", sent, timeout=0.1) is None, "killed before it could answer"

    restarted = time.monotonic()
    again = agents(profile, broker.port, state_dir=state, env=env)
    assert w.wait_for(online(f"{base}/availability"), timeout=20, since=restarted), again.tail()
    time.sleep(0.3)
    resent = time.monotonic()
    w.publish(f"{base}/cmd/shutdown/set", envelope)  # what a QoS 1 redelivery would bring
    body = _result(w, f"{base}/cmd/shutdown/result", resent)
    assert body is not None, again.tail()
    figure(case, "redelivered envelope after restart", body.get("reason", body["status"]))
    time.sleep(3.5)  # had it run again, the recorder would have written by now
    executions = len(recorded_calls(record))
    figure(case, "executions of the command (== 1)", executions)
    assert body["status"] == "rejected" and body["reason"] == "replayed"
    assert executions == 1


def test_sigterm_during_a_long_action(tmp_path, brokers, watchers, agents):
    case = "SIGTERM during a long action"
    device, base = "termrig", "pilot/termrig"
    keyring = new_keyring(tmp_path / "keyring")
    profile = _signed_profile(
        tmp_path,
        device,
        keyring,
        '  longjob: {action: process.run, args: {argv: [/bin/sleep, "30"], timeout: 1m}, platform: button}\n'
        "  stamp: {action: process.run, args: {argv: [/bin/true]}, platform: button, policy: {signed: true}}\n",
        "longjob, stamp",
    )
    state = tmp_path / "state"
    broker = brokers()
    w = watchers(broker.port)
    agent = agents(profile, broker.port, state_dir=state)  # no recorder: /bin/sleep really runs
    assert w.wait_for(online(f"{base}/availability"), timeout=20), agent.tail()
    time.sleep(0.3)
    signer = Signer(keyring, device, base)
    since = time.monotonic()
    w.publish(f"{base}/cmd/stamp/set", signer.envelope("stamp"))
    assert (_result(w, f"{base}/cmd/stamp/result", since) or {}).get("status") == "ok", agent.tail()
    discovery_before = (state / "discovery.json").read_bytes()
    nonces_before = (state / "nonces.log").read_bytes()

    since = time.monotonic()
    w.publish(f"{base}/cmd/longjob/set", "PRESS")
    sleeper = None
    deadline = time.monotonic() + 5
    while sleeper is None and time.monotonic() < deadline:
        for pid in children(agent.pid):
            try:
                if open(f"/proc/{pid}/cmdline", "rb").read().split(b"\0")[:2] == [b"/bin/sleep", b"30"]:
                    sleeper = pid
            except OSError:
                pass
        time.sleep(0.05)
    assert sleeper is not None, "the long action never started"
    time.sleep(0.5)
    agent.signal(signal.SIGTERM)
    termed = time.monotonic()
    code = agent.wait(10)
    exit_after = time.monotonic() - termed
    body = _result(w, f"{base}/cmd/longjob/result", since, timeout=3)
    off = w.wait_for(offline(f"{base}/availability"), timeout=3, since=termed)
    figure(case, "exit code (== 0)", code)
    figure(case, "exit after SIGTERM (s, <= 5)", exit_after)
    figure(case, "result of the long action", body.get("status") if body else "none")
    figure(case, "offline published", off is not None)
    assert code == 0 and exit_after <= 5.0
    assert body is not None and body["status"] == "interrupted", agent.tail()
    assert off is not None
    assert not alive(sleeper), "the action's process outlived the agent"
    assert (state / "discovery.json").read_bytes() == discovery_before
    json.loads(discovery_before)
    nonces = (state / "nonces.log").read_bytes()
    assert nonces.startswith(nonces_before)
    assert all(re.fullmatch(r"[A-Za-z0-9_-]{22} \d+", line) for line in nonces.decode().splitlines())


def test_reload_of_a_broken_profile_keeps_the_old_plan(tmp_path, brokers, watchers, agents):
    case = "reload of a broken profile"
    device, base = "rlrig", "pilot/rlrig"
    profile = tmp_path / "reload.yaml"
    good = (
        f"pilot: 1\ndevice: {{id: {device}, name: Reload rig}}\nmqtt: {{keepalive: 5}}\nsensors:\n"
        "  cpu: {probe: cpu.percent, every: 1s}\n"
        "commands:\n  backup: {action: process.run, args: {argv: [/bin/echo, backup]}, platform: button}\n"
        "policies:\n  allow: [backup]\n"
    )
    profile.write_text(good)
    record = tmp_path / "calls.jsonl"
    broker = brokers()
    w = watchers(broker.port)
    agent = agents(profile, broker.port, env={"PILOT_SYSTEM_RECORD": str(record)})
    assert w.wait_for(online(f"{base}/availability"), timeout=20), agent.tail()
    caps = json.loads(w.wait_for(lambda m: m.topic == f"{base}/capabilities", timeout=5).payload)

    time.sleep(0.05)  # a new mtime for the compile cache
    profile.write_text(good.replace("cpu.percent", "cpu.precent"))  # line 5, column 16
    since = time.monotonic()
    agent.signal(signal.SIGHUP)
    body = _result(w, f"{base}/cmd/_reload/result", since, timeout=15)
    assert body is not None, agent.tail()
    figure(case, "SIGHUP reload result", f"{body.get('status')}/{body.get('reason')}")
    figure(case, "first error", (body.get("errors") or ["none"])[0])
    assert body["status"] == "rejected" and body["reason"] == "invalid_profile"
    assert any(f"{profile}:5:16" in e for e in body["errors"]), body

    after = time.monotonic()
    assert w.wait_for(lambda m: m.topic == f"{base}/state/cpu", timeout=5, since=after), "old plan stopped"
    w.publish(f"{base}/cmd/backup/set", "PRESS")
    assert (_result(w, f"{base}/cmd/backup/result", after) or {}).get("status") == "ok"
    assert [c["argv"] for c in recorded_calls(record)] == [["/bin/echo", "backup"]]

    since = time.monotonic()
    w.publish(f"{base}/cmd/_reload/set", "")  # the MQTT path gives the same answer
    body = _result(w, f"{base}/cmd/_reload/result", since, timeout=15)
    assert (
        body is not None and body["reason"] == "invalid_profile" and any(f"{profile}:5:16" in e for e in body["errors"])
    )
    assert agent.running()
    figure(case, "log names file:line", f"{profile.name}:5:16" in agent.output())
    assert f"{profile}:5:16" in agent.output()

    profile.write_text(good.replace("sensors:\n", "sensors:\n  mem: {probe: memory.used_percent, every: 1s}\n"))
    since = time.monotonic()
    agent.signal(signal.SIGHUP)
    body = _result(w, f"{base}/cmd/_reload/result", since, timeout=15)
    assert body is not None and body["status"] == "ok", body
    assert body["profile_hash"] != caps["profile_hash"]
    assert w.wait_for(lambda m: m.topic == f"{base}/state/mem", timeout=5, since=since)
