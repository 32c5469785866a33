"""The MQTT session in-process against a real broker: guarded callbacks, TCP_NODELAY, ordering."""

from __future__ import annotations

import socket
import time

from pilot.agent.mqtt import Session, Will
from pilot.plan import Mqtt


def make_session(port: int, **kw) -> Session:
    return Session(
        settings=Mqtt(client_id=f"session-test-{time.monotonic_ns()}", keepalive=10),
        will=Will("test/session/availability"),
        host="127.0.0.1",
        port=port,
        **kw,
    )


def test_exception_in_on_message_does_not_kill_the_network_thread(broker, watcher):
    seen: list[bytes] = []

    def handler(topic: str, payload: bytes, retained: bool) -> None:
        seen.append(payload)
        if payload == b"boom":
            raise RuntimeError("handler bug")

    session = make_session(broker.port, on_message=handler, subscriptions=[("test/session/in", 1)])
    session.start()
    try:
        assert session.wait_connected(10)
        time.sleep(0.2)
        watcher.publish("test/session/in", "boom")
        watcher.publish("test/session/in", "after")
        deadline = time.monotonic() + 5
        while b"after" not in seen and time.monotonic() < deadline:
            time.sleep(0.02)
        assert seen == [b"boom", b"after"]
        assert session.alive() and session.stats.callback_errors == 1
    finally:
        session.stop()


def test_socket_has_tcp_nodelay(broker):
    session = make_session(broker.port)
    session.start()
    try:
        assert session.wait_connected(10)
        sock = session._client.socket()
        assert sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY) != 0
    finally:
        session.stop()


def test_results_keep_their_order_and_telemetry_is_latest_value(broker, watcher):
    session = make_session(broker.port)
    for i in range(50):
        session.publish_result("test/session/results", str(i))
        session.publish_telemetry("test/session/tele", str(i))
    start = time.monotonic()
    session.start()
    try:
        assert session.wait_connected(10)
        assert watcher.wait_for(lambda m: m.topic == "test/session/results" and m.payload == b"49", timeout=5)
        time.sleep(0.3)
        results = [int(m.payload) for m in watcher.on("test/session/results", since=start)]
        assert results == list(range(50))
        tele = [m.payload for m in watcher.on("test/session/tele", since=start)]
        assert tele == [b"49"]
        assert session.stats.dropped_telemetry == 49
    finally:
        session.stop()


def test_clean_stop_publishes_offline(broker, watcher):
    session = make_session(broker.port)
    session.start()
    assert session.wait_connected(10)
    assert watcher.wait_for(lambda m: m.topic == "test/session/availability" and m.payload == b"online", timeout=5)
    t = time.monotonic()
    session.stop()
    assert watcher.wait_for(
        lambda m: m.topic == "test/session/availability" and m.payload == b"offline", timeout=5, since=t
    )
    assert not session.alive()
