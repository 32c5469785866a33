"""`pilot forget` against a real Mosquitto with a password: an agent announces itself (`--once`), forget
empties everything it left, and a brand-new subscriber to `#` finds nothing retained for the device."""

from __future__ import annotations

import subprocess
import sys
import time

import pytest

from testkit.agent import pilot_env, pilot_run
from tests.live.newcomer.conftest import write_password
from tests.support.harness import ready_watcher


def profile(tmp_path, device: str, discovery: str):
    secret = write_password(tmp_path)
    path = tmp_path / f"{device}.yaml"
    path.write_text(
        f"pilot: 1\ndevice: {{id: {device}, name: Forget rig}}\n"
        f"mqtt: {{username: pilot, password_file: {secret}, discovery: {discovery}}}\n"
        "sensors:\n  cpu: {probe: cpu.percent, every: 1s}\n  mem: {probe: memory.used_percent, every: 1s}\n"
        "commands:\n  lock: {action: session.lock}\n"
        "rules:\n  busy: {when: 'cpu > 1000', do: [{command: lock}], expose: true}\n"
    )
    return path


def retained_for(port: int, device: str) -> list[str]:
    """The retained topics of the device that a brand-new subscriber to `#` is sent."""
    import threading

    import paho.mqtt.client as paho
    from paho.mqtt.enums import CallbackAPIVersion

    marker, topics, done, subscribed = (
        f"newcomer/marker/{time.monotonic_ns()}",
        [],
        threading.Event(),
        threading.Event(),
    )
    client = paho.Client(CallbackAPIVersion.VERSION2)
    client.on_connect = lambda c, *_: c.subscribe("#", 1)
    client.on_subscribe = lambda *_: subscribed.set()

    def on_message(c, userdata, msg):
        if msg.topic == marker:
            done.set()  # the broker sends every retained message of `#` before this one
        elif msg.retain and device in msg.topic:
            topics.append(msg.topic)

    client.on_message = on_message
    client.connect("127.0.0.1", port)
    client.loop_start()
    try:
        assert subscribed.wait(10)
        client.publish(marker, b"1", qos=1)
        assert done.wait(10)
        return sorted(topics)
    finally:
        client.loop_stop()
        client.disconnect()


def forget(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "pilot", "forget", *args], capture_output=True, text=True, env=pilot_env(), timeout=60
    )


@pytest.mark.parametrize("discovery", ["device", "entity"])
def test_forget_leaves_nothing_retained(auth_broker, tmp_path, discovery):
    broker, auth_port = auth_broker
    device = f"forget{discovery}"
    path = profile(tmp_path, device, discovery)
    state = tmp_path / "state"
    agent = pilot_run(path, auth_port, state, "--once", "--dry-run").start()
    assert agent.proc.wait(60) == 0, agent.output()
    before = retained_for(broker.port, device)
    assert f"pilot/{device}/availability" in before and any(t.startswith("homeassistant/") for t in before), before
    assert (state / "discovery.json").exists()

    watcher = ready_watcher(broker.port)
    try:
        done = forget(str(path), "--broker", f"127.0.0.1:{auth_port}", "--state-dir", str(state))
        assert done.returncode == 0, done.stderr + done.stdout
        assert watcher.wait_for(lambda m: m.topic == f"pilot/{device}/availability" and m.payload == b"offline")
    finally:
        watcher.stop()
    assert retained_for(broker.port, device) == []
    for topic in before:
        assert topic in done.stdout, (topic, done.stdout)
    assert str(state / "discovery.json") in done.stdout and not (state / "discovery.json").exists()


def test_forget_without_a_record_uses_the_profile_and_dry_run_publishes_nothing(auth_broker, tmp_path):
    broker, auth_port = auth_broker
    device = "forgetnorecord"
    path = profile(tmp_path, device, "device")
    state = tmp_path / "state"
    agent = pilot_run(path, auth_port, state, "--once", "--dry-run").start()
    assert agent.proc.wait(60) == 0, agent.output()
    (state / "discovery.json").unlink()
    before = retained_for(broker.port, device)

    dry = forget(str(path), "--broker", f"127.0.0.1:{auth_port}", "--state-dir", str(state), "--dry-run")
    assert dry.returncode == 0, dry.stderr
    assert "would clear" in dry.stdout and "the profile (no discovery record" in dry.stdout
    assert retained_for(broker.port, device) == before

    done = forget(str(path), "--broker", f"127.0.0.1:{auth_port}", "--state-dir", str(state))
    assert done.returncode == 0, done.stderr
    assert f"homeassistant/device/{device}/config" in done.stdout
    assert retained_for(broker.port, device) == []


def test_forget_explains_a_wrong_password_and_clears_nothing(auth_broker, tmp_path):
    broker, auth_port = auth_broker
    device = "forgetwrongpw"
    path = profile(tmp_path, device, "device")
    state = tmp_path / "state"
    agent = pilot_run(path, auth_port, state, "--once", "--dry-run").start()
    assert agent.proc.wait(60) == 0, agent.output()
    write_password(tmp_path, "not the password")
    done = forget(str(path), "--broker", f"127.0.0.1:{auth_port}", "--state-dir", str(state))
    assert done.returncode == 1
    assert "user name or password is wrong" in done.stderr and "nothing was cleared" in done.stderr
    assert f"pilot/{device}/availability" in retained_for(broker.port, device)


def test_service_uninstall_purge_takes_the_device_out_of_home_assistant(auth_broker, tmp_path, monkeypatch):
    """`pilot service uninstall --purge` clears the device's retained messages while the installed
    profile and the state directory still say what was announced (files under --root, a real broker)."""
    from pilot.cli import main

    monkeypatch.setenv("PILOT_SERVICE_RECORD", str(tmp_path / "service-commands.jsonl"))
    broker, auth_port = auth_broker
    device = "forgetpurge"
    path = profile(tmp_path, device, "device")
    path.write_text(path.read_text().replace("mqtt: {", f"mqtt: {{host: 127.0.0.1, port: {auth_port}, "))
    root = tmp_path / "root"
    assert main(["service", "install", "--system", "--root", str(root), "--exec", "/usr/bin/pilot", str(path)]) == 0
    state = root / "var/lib/pilot"
    agent = pilot_run(root / "etc/pilot" / path.name, None, state, "--once", "--dry-run").start()
    assert agent.proc.wait(60) == 0, agent.output()
    assert f"pilot/{device}/availability" in retained_for(broker.port, device)
    assert main(["service", "uninstall", "--system", "--purge", "--root", str(root)]) == 0
    assert retained_for(broker.port, device) == []
    assert not (root / "etc/pilot").exists() and not state.exists()
