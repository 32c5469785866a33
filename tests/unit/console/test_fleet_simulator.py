"""The fleet simulator (testkit/fleet.py) speaks MQTT by hand; these pin its encoding against literal bytes and
its messages against a real Mosquitto, so the console's benchmark measures a fleet that looks like real agents."""

from __future__ import annotations

import json
import socket
import threading

import pytest

from pilot.agent.health import parse_report
from testkit.broker import Mosquitto, Watcher
from testkit.fleet import (
    PINGREQ,
    FleetSimulator,
    MQTTError,
    RawConnection,
    connect_packet,
    publish_packet,
    remaining_length,
)


@pytest.fixture(scope="module")
def broker():
    b = Mosquitto().start()
    yield b
    b.cleanup()


def watch(broker: Mosquitto, sim: FleetSimulator, *, states_only: bool = False) -> Watcher:
    """A subscriber to this simulator's devices only: the module's broker keeps other tests' retained messages."""
    topics: tuple[str, ...] = ()
    for dev in sim.devices:
        topics += (
            (f"pilot/{dev.id}/state/#",)
            if states_only
            else (f"pilot/{dev.id}/#", f"homeassistant/device/{dev.id}/config")
        )
    return Watcher(broker.port, topics=topics).start()


# ------------------------------------------------------------------ encoding


@pytest.mark.parametrize(
    ("n", "encoded"),
    [
        (0, b"\x00"),
        (127, b"\x7f"),
        (128, b"\x80\x01"),
        (16383, b"\xff\x7f"),
        (16384, b"\x80\x80\x01"),
        (2097151, b"\xff\xff\x7f"),
        (2097152, b"\x80\x80\x80\x01"),
        (268435455, b"\xff\xff\xff\x7f"),
    ],
)
def test_remaining_length_matches_the_mqtt_spec_examples(n, encoded):
    assert remaining_length(n) == encoded


@pytest.mark.parametrize("n", [-1, 268435456])
def test_remaining_length_refuses_what_four_bytes_cannot_hold(n):
    with pytest.raises(ValueError, match="out of range"):
        remaining_length(n)


def test_publish_packet_is_qos0_with_the_retain_bit_and_no_packet_id():
    assert publish_packet("a/b", b"hi") == b"\x30\x07\x00\x03a/bhi"
    assert publish_packet("a/b", b"hi", retain=True) == b"\x31\x07\x00\x03a/bhi"


def test_publish_packet_past_16383_bytes_uses_a_three_byte_length():
    packet = publish_packet("t", b"x" * 16381)  # 2 + 1 + 16381 = 16384
    assert packet[:6] == b"\x30\x80\x80\x01\x00\x01"
    assert len(packet) == 4 + 16384


def test_connect_packet_is_mqtt_311_clean_session_with_the_keepalive():
    assert connect_packet("c1", keepalive=60) == b"\x10\x0e\x00\x04MQTT\x04\x02\x00\x3c\x00\x02c1"


# ------------------------------------------------------------------ the handshake, against a scripted peer


class ScriptedBroker:
    """A listening socket that answers CONNECT with a chosen CONNACK and records every byte after it."""

    def __init__(self, connack: bytes) -> None:
        self.server = socket.create_server(("127.0.0.1", 0))
        self.port = self.server.getsockname()[1]
        self.connack = connack
        self.received = bytearray()
        self.first = b""
        self.cond = threading.Condition()
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    def _serve(self) -> None:
        conn, _ = self.server.accept()
        with conn:
            self.first = conn.recv(4096)
            conn.sendall(self.connack)
            while chunk := conn.recv(4096):
                with self.cond:
                    self.received += chunk
                    self.cond.notify_all()

    def wait_bytes(self, n: int, timeout: float = 10.0) -> bytes:
        with self.cond:
            self.cond.wait_for(lambda: len(self.received) >= n, timeout)
            return bytes(self.received)

    def close(self) -> None:
        self.server.close()


def test_a_connection_sends_connect_then_pings_only_once_half_the_keepalive_has_passed():
    peer = ScriptedBroker(b"\x20\x02\x00\x00")
    conn = RawConnection("127.0.0.1", peer.port, "sim-1", keepalive=20).connect()
    try:
        conn.ping_if_due(conn.last_send + 9.9)  # not yet due: nothing written
        conn.send(b"\x30\x03\x00\x01tX")
        conn.ping_if_due(conn.last_send + 10.0)
        assert peer.wait_bytes(7) == b"\x30\x03\x00\x01tX" + PINGREQ
        assert peer.first == connect_packet("sim-1", 20)
    finally:
        conn.close()
        peer.close()


def test_a_refused_connack_is_an_error_naming_the_answer():
    peer = ScriptedBroker(b"\x20\x02\x00\x05")  # 5: not authorised
    try:
        with pytest.raises(MQTTError, match="20020005"):
            RawConnection("127.0.0.1", peer.port, "sim-2").connect()
    finally:
        peer.close()


# ------------------------------------------------------------------ against a real Mosquitto


def test_announce_delivers_exactly_what_an_agent_publishes_retained(broker):
    sim = FleetSimulator("127.0.0.1", broker.port, devices=3, sensors=5, seed=7, connections=2)
    sim.announce()
    watcher = watch(broker, sim)  # subscribes after: sees only retained copies
    try:
        expected = {(t, p) for dev in sim.devices for t, p, _ in sim.messages(dev)}
        # 5 announcement messages (discovery, capabilities, availability, health, activity) + 5 states per device
        assert len(expected) == 3 * 10
        got = watcher.wait_for(lambda m: len(watcher.messages) >= 30, timeout=10)
        assert got is not None
        received = {(m.topic, m.payload) for m in watcher.messages}
        # health carries the announce time; compare its shape separately
        health = {(t, p) for t, p in expected if t.endswith("/health")}
        assert {(t, p) for t, p in received if not t.endswith("/health")} == expected - health
        assert all(m.retain for m in watcher.messages)
        dev = sim.devices[0]
        assert f"homeassistant/device/{dev.id}/config" in {t for t, _ in received}
        assert len(dev.id) == 12 and all(c in "0123456789abcdef" for c in dev.id)
    finally:
        watcher.stop()
        sim.stop(offline=False)


def test_discovery_looks_like_a_pilot_device_with_its_states_on_the_announced_topics(broker):
    sim = FleetSimulator("127.0.0.1", broker.port, devices=1, sensors=20, seed=3)
    watcher = watch(broker, sim)
    try:
        sim.announce()
        dev = sim.devices[0]
        config = watcher.wait_for(lambda m: m.topic == f"homeassistant/device/{dev.id}/config")
        assert config is not None
        body = json.loads(config.payload)
        assert body["device"]["identifiers"] == [f"pilot_{dev.id}"]
        assert body["origin"]["name"] == "Pilot"
        assert body["availability"][0]["topic"] == f"pilot/{dev.id}/availability"
        components = body["components"]
        # 20 state entities, 2 buttons, the audit event, 6 health entities
        assert len(components) == 29
        assert all(uid == f"pilot_{dev.id}_" + uid.removeprefix(f"pilot_{dev.id}_") for uid in components)
        assert all(c["unique_id"] == uid for uid, c in components.items())
        state_topics = {c["state_topic"] for c in components.values() if "/state/" in c.get("state_topic", "")}
        assert len(state_topics) == 20
        assert watcher.wait_for(lambda m: len({x.topic for x in watcher.messages} & state_topics) == 20) is not None
        buttons = [c for c in components.values() if c["platform"] == "button"]
        assert {b["command_topic"] for b in buttons} == {
            f"pilot/{dev.id}/cmd/lock/set",
            f"pilot/{dev.id}/cmd/reboot/set",
        }
        caps = json.loads(watcher.wait_for(lambda m: m.topic == f"pilot/{dev.id}/capabilities").payload)
        assert [c["id"] for c in caps["commands"]] == ["lock", "reboot"]
        assert caps["dry_run"] is True
        health = watcher.wait_for(lambda m: m.topic == f"pilot/{dev.id}/health")
        assert parse_report(health.payload) is not None  # the agent's own reader accepts it
        binary = watcher.wait_for(lambda m: m.topic == f"pilot/{dev.id}/state/cpu_overheating")
        assert binary.payload in (b"ON", b"OFF")
        cpu = watcher.wait_for(lambda m: m.topic == f"pilot/{dev.id}/state/cpu_usage")
        assert 0 <= float(cpu.payload) <= 100
    finally:
        watcher.stop()
        sim.stop(offline=False)


def test_states_walk_within_their_ranges_over_many_periods(broker):
    sim = FleetSimulator("127.0.0.1", broker.port, devices=2, sensors=20, seed=11)
    dev = sim.devices[0]
    for _ in range(500):
        sim._advance(dev, 10.0)
        for kind, value in zip(dev.kinds, dev.values):
            if kind.motion == "walk":
                assert kind.low <= value <= kind.high, kind.key
    uptime = dev.kinds.index(next(k for k in dev.kinds if k.key == "uptime"))
    before = dev.values[uptime]
    sim._advance(dev, 10.0)
    assert dev.values[uptime] == before + 10.0


def test_a_marker_arrives_with_its_unique_value_and_stop_sends_offline(broker):
    sim = FleetSimulator("127.0.0.1", broker.port, devices=4, sensors=3, seed=5, connections=2)
    watcher = watch(broker, sim)
    try:
        sim.announce()
        first, second = sim.mark(2), sim.mark(2)
        assert first.payload != second.payload
        assert first.topic == f"pilot/{sim.devices[2].id}/state/cpu_usage"
        for marker in (first, second):
            got = watcher.wait_for(lambda m, mk=marker: m.topic == mk.topic and m.payload == mk.payload.encode())
            assert got is not None and float(got.payload) == marker.value
        sim.stop()
        for dev in sim.devices:
            assert watcher.wait_for(
                lambda m, d=dev: m.topic == f"pilot/{d.id}/availability" and m.payload == b"offline"
            )
    finally:
        watcher.stop()
        sim.stop(offline=False)


def test_run_publishes_every_device_in_turn_and_counts_what_it_wrote(broker):
    sim = FleetSimulator("127.0.0.1", broker.port, devices=5, sensors=2, period=0.05, seed=9, tick=0.01)
    watcher = watch(broker, sim, states_only=True)
    try:
        sim.announce()  # health is then fresh: the short run sends states only
        published, states = sim.counters.published, sim.counters.states
        assert watcher.wait_for(lambda m: len(watcher.messages) >= 10) is not None
        announced = len(watcher.messages)
        sim.start()
        done = watcher.wait_for(lambda m: len({x.topic for x in watcher.messages[announced:]}) == 10, timeout=15)
        sim.stop(offline=False)
        assert done is not None
        assert sim.counters.published - published == sim.counters.states - states > 0
        assert not sim.counters.errors
    finally:
        watcher.stop()
