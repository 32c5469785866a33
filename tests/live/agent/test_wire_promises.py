"""Promises of docs/mqtt.md and docs/security.md about the wire, against the real agent and Mosquitto:
which topics are retained, what a `_reload` message may do, and MQTT 5's Maximum Packet Size.

Actions are recorded (PILOT_SYSTEM_RECORD), never performed.
"""

from __future__ import annotations

import json
import threading
import time
import uuid
from pathlib import Path

import paho.mqtt.client as paho
from paho.mqtt.enums import CallbackAPIVersion

from testkit.agent import Signer, new_keyring
from testkit.broker import Watcher

DEVICE = "wirerig01"
BASE = f"pilot/{DEVICE}"
RELOAD = f"{BASE}/cmd/_reload"


def write_profile(path: Path, *, mqtt: str = "", policies: str = "") -> Path:
    path.write_text(
        "pilot: 1\n"
        f"device: {{id: {DEVICE}, name: Wire rig}}\n"
        f"{mqtt}"
        "sensors:\n  cpu: {probe: cpu.percent, every: 1s}\n"
        "commands:\n  ping: {action: process.run, args: {argv: [/bin/echo, ping]}, platform: button}\n"
        f"policies:\n  allow: [ping]\n{policies}"
    )
    return path


def start(run_agent, profile: Path, port: int, watcher: Watcher, tmp_path: Path, **env: str):
    since = time.monotonic()
    agent = run_agent(profile, port, env={"PILOT_SYSTEM_RECORD": str(tmp_path / "calls.jsonl"), **env})
    online = watcher.wait_for(
        lambda m: m.topic == f"{BASE}/availability" and m.payload == b"online", timeout=30, since=since
    )
    assert online, agent.tail()
    time.sleep(0.3)  # the watcher's own subscription settles; the agent subscribes before `online`
    return agent


def retained_now(port: int, topics: list[str]) -> dict[str, bytes]:
    """What a brand-new subscriber to `topics` gets as retained messages. Mosquitto sends them right
    after the SUBACK, so a marker we publish once subscribed arrives after all of them: no waiting
    for silence."""
    marker = f"test/marker/{uuid.uuid4().hex}"
    got: dict[str, bytes] = {}
    subscribed, done = threading.Event(), threading.Event()

    def on_message(client, userdata, msg) -> None:
        if msg.topic == marker:
            done.set()
        elif msg.retain and not done.is_set():
            got[msg.topic] = msg.payload

    client = paho.Client(CallbackAPIVersion.VERSION2, client_id=f"fresh-{uuid.uuid4().hex[:8]}")
    client.on_message = on_message
    client.on_subscribe = lambda *args: subscribed.set()
    client.connect("127.0.0.1", port)
    client.loop_start()
    try:
        client.subscribe([(t, 1) for t in [*topics, marker]])
        assert subscribed.wait(10)
        client.publish(marker, b"", qos=1)
        assert done.wait(10), "the marker never came back"
        return got
    finally:
        client.loop_stop()
        client.disconnect()


def test_state_capabilities_health_discovery_and_availability_are_retained_results_and_audit_are_not(
    broker, watcher, run_agent, tmp_path
):
    """docs/mqtt.md's topic table, read by a brand-new subscriber; results also arrive with QoS 1."""
    start(run_agent, write_profile(tmp_path / "wire.yaml"), broker.port, watcher, tmp_path)
    qos: dict[str, int] = {}  # the QoS a QoS 1 subscriber receives: what the agent published with, at most 1
    listener = paho.Client(CallbackAPIVersion.VERSION2, client_id=f"qos-{uuid.uuid4().hex[:8]}")
    listener.on_message = lambda client, userdata, msg: qos.setdefault(msg.topic, msg.qos)
    listener.connect("127.0.0.1", broker.port)
    listener.loop_start()
    try:
        assert listener.subscribe(f"{BASE}/cmd/ping/result", 1)[0] == paho.MQTT_ERR_SUCCESS
        time.sleep(0.3)  # the subscription settles (as for the watcher)
        since = time.monotonic()
        watcher.publish(f"{BASE}/cmd/ping/set", "PRESS")
        for topic in (f"{BASE}/cmd/ping/result", f"{BASE}/audit", f"{BASE}/state/cpu", f"{BASE}/health"):
            assert watcher.wait_for(lambda m, t=topic: m.topic == t, timeout=15), f"nothing on {topic}"
        assert json.loads(watcher.on(f"{BASE}/cmd/ping/result", since=since)[-1].payload)["status"] == "ok"
        deadline = time.monotonic() + 10
        while f"{BASE}/cmd/ping/result" not in qos and time.monotonic() < deadline:
            time.sleep(0.05)
        assert qos.get(f"{BASE}/cmd/ping/result") == 1
    finally:
        listener.loop_stop()
        listener.disconnect()

    retained = retained_now(broker.port, [f"{BASE}/#", f"homeassistant/device/{DEVICE}/config"])
    assert {
        f"{BASE}/availability",
        f"{BASE}/state/cpu",
        f"{BASE}/capabilities",
        f"{BASE}/health",
        f"homeassistant/device/{DEVICE}/config",
    } <= set(retained), sorted(retained)
    assert retained[f"{BASE}/availability"] == b"online"
    assert not {f"{BASE}/cmd/ping/result", f"{BASE}/audit"} & set(retained), sorted(retained)


def test_reload_with_require_signed_refuses_unsigned_oversized_and_retained_requests_and_asks_for_a_restart(
    fresh_broker, run_agent, tmp_path
):
    """`_reload/set` is signed like a command when `require_signed`; its size is checked first (an
    oversized request is dropped unanswered), a retained copy is ignored and counted, and a profile
    that changes the broker is refused with `restart_required`, the running plan kept."""
    keyring = new_keyring(tmp_path / "keyring")
    policies = f"  require_signed: true\n  hmac: {{keyring: {keyring}, window: 60s}}\n"
    profile = write_profile(tmp_path / "wire.yaml", policies=policies)
    signer = Signer(keyring, DEVICE, BASE)
    watcher = Watcher(fresh_broker.port).start()
    try:
        since = time.monotonic()
        # left retained on the broker, it reaches the agent's subscription (with the retain flag) at start
        watcher.publish(f"{RELOAD}/set", signer.envelope("_reload"), retain=True)
        agent = start(run_agent, profile, fresh_broker.port, watcher, tmp_path, PILOT_HEALTH_EVERY="1")
        health = watcher.wait_for(
            lambda m: m.topic == f"{BASE}/health" and json.loads(m.payload)["inbound_dropped"] >= 1,
            timeout=15,
            since=since,
        )
        assert health is not None and json.loads(health.payload)["inbound_dropped"] == 1, agent.tail()

        watcher.publish(f"{RELOAD}/set", b"x" * 5000)  # over max_payload (4096): dropped before anything
        watcher.publish(f"{RELOAD}/set", "")  # unsigned: refused (and the first answer a second to junk)
        refused = watcher.wait_for(lambda m: m.topic == f"{RELOAD}/result", timeout=15, since=since)
        assert refused is not None, agent.tail()
        assert json.loads(refused.payload)["status"] == "rejected"
        assert json.loads(refused.payload)["reason"] == "malformed"

        write_profile(profile, mqtt="mqtt: {host: broker.invalid}\n", policies=policies)
        asked = time.monotonic()
        watcher.publish(f"{RELOAD}/set", signer.envelope("_reload"))
        answer = watcher.wait_for(lambda m: m.topic == f"{RELOAD}/result", timeout=30, since=asked)
        assert answer is not None, agent.tail()
        answers = [json.loads(m.payload) for m in watcher.on(f"{RELOAD}/result", since=since)]
        assert [(a["status"], a["reason"]) for a in answers] == [
            ("rejected", "malformed"),
            ("rejected", "restart_required"),
        ], answers
        assert agent.output().count("reload requested") == 1, agent.tail()  # only the signed one ran
    finally:
        watcher.stop()


def test_mqtt5_maximum_packet_size_keeps_an_oversized_message_from_reaching_the_agent(
    broker, watcher, run_agent, tmp_path
):
    """With MQTT 5 the broker drops for the agent a message over max_payload + 64 KiB: no answer at all,
    where a message over max_payload only (it reaches the agent) is answered `too_large`."""
    profile = write_profile(tmp_path / "wire5.yaml", mqtt="mqtt: {protocol: '5'}\n")
    agent = start(run_agent, profile, broker.port, watcher, tmp_path)
    result = f"{BASE}/cmd/ping/result"
    since = time.monotonic()
    watcher.publish(f"{BASE}/cmd/ping/set", b"x" * (200 * 1024))
    watcher.publish(f"{BASE}/cmd/ping/set", "PRESS")
    assert watcher.wait_for(lambda m: m.topic == result, timeout=15, since=since), agent.tail()
    assert [json.loads(m.payload)["status"] for m in watcher.on(result, since=since)] == ["ok"]

    control = time.monotonic()
    watcher.publish(f"{BASE}/cmd/ping/set", b"x" * 5000)
    answer = watcher.wait_for(lambda m: m.topic == result, timeout=15, since=control)
    assert answer is not None and json.loads(answer.payload)["reason"] == "too_large", agent.tail()


def test_a_status_over_16_bytes_and_a_command_id_over_64_characters_are_dropped_unread_and_counted(
    broker, watcher, run_agent, tmp_path
):
    """The caps of docs/security.md's inbound table, at their edges: 16 bytes of `homeassistant/status`
    are read, 17 are dropped; a 64-character command id is answered, 65 are dropped unanswered. Each
    drop is counted in `inbound_dropped`."""
    profile = write_profile(tmp_path / "wire.yaml")
    agent = start(run_agent, profile, broker.port, watcher, tmp_path, PILOT_HEALTH_EVERY="1")
    since = time.monotonic()
    watcher.publish("homeassistant/status", b"offline" + b" " * 9)  # 16 bytes: read (and not `online`)
    watcher.publish("homeassistant/status", b"online" + b" " * 11)  # 17 bytes
    watcher.publish(f"{BASE}/cmd/{'a' * 65}/set", "PRESS")
    watcher.publish(f"{BASE}/cmd/{'a' * 64}/set", "PRESS")  # read last: its answer means all were read
    answered = watcher.wait_for(lambda m: m.topic == f"{BASE}/cmd/{'a' * 64}/result", timeout=15, since=since)
    assert answered is not None and json.loads(answered.payload)["reason"] == "not_allowed", agent.tail()
    health = watcher.wait_for(lambda m: m.topic == f"{BASE}/health", timeout=15, since=answered.at)
    assert health is not None and json.loads(health.payload)["inbound_dropped"] == 2, agent.tail()
    assert watcher.on(f"{BASE}/cmd/{'a' * 65}/result") == []
