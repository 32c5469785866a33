"""Promises of docs/mqtt.md that hold inside the process: the in-flight cap, the result queue's bound,
the health report's identity and the retained copy judged once, no password in a profile.

The MQTT session runs without a broker here: its paho client's `publish` is replaced by a recorder that
never acknowledges, so what the session hands to paho, and when, is read directly.
"""

from __future__ import annotations

import json
import re
import time
from types import SimpleNamespace

from pilot.agent.health import Health
from pilot.agent.mqtt import Session, Will
from pilot.plan import Mqtt
from pilot.profile.validate import validate_file

IN_FLIGHT = 200  # docs/mqtt.md: telemetry is handed to paho only while fewer than 200 messages are in flight
RESULTS_KEPT = 10_000  # docs/mqtt.md: results and announcements waiting for the broker, in order


class Paho:
    """Stands in for paho's `publish`: records each message and acknowledges none."""

    def __init__(self) -> None:
        self.sent: list[tuple[str, str, int, bool]] = []

    def publish(self, topic, payload, qos=0, retain=False):
        self.sent.append((topic, payload, qos, retain))
        return SimpleNamespace(rc=0, mid=len(self.sent))


def session_with(paho: Paho, *, connected: bool) -> Session:
    session = Session(settings=Mqtt(client_id="unit"), will=Will("t/availability"), host="127.0.0.1", port=1)
    session._client.publish = paho.publish
    if connected:
        session._connected.set()
    return session


def acknowledge(session: Session, mid: int) -> None:
    """What paho calls when a message has been written (QoS 0) or acknowledged (QoS 1)."""
    session._client.on_publish(session._client, None, mid, SimpleNamespace(is_failure=False), None)


def test_telemetry_is_handed_to_paho_only_while_fewer_than_200_messages_are_in_flight():
    paho = Paho()
    session = session_with(paho, connected=True)
    for i in range(IN_FLIGHT + 50):
        session.publish_telemetry(f"pilot/x/state/s{i}", str(i))
    assert len(paho.sent) == IN_FLIGHT
    assert session.pending() == 50  # the rest waits in the latest-value buffer, not in paho's queue
    session.publish_result("pilot/x/cmd/c/result", "{}")
    assert paho.sent[-1] == ("pilot/x/cmd/c/result", "{}", 1, False)  # results never wait for the cap
    acknowledge(session, 1)
    assert len(paho.sent) == IN_FLIGHT + 1  # 200 still in flight (the result counts): nothing more yet
    acknowledge(session, 2)
    assert len(paho.sent) == IN_FLIGHT + 2 and paho.sent[-1][0] == f"pilot/x/state/s{IN_FLIGHT}"
    assert session.pending() == 49


def test_results_wait_in_order_and_past_10000_only_the_oldest_is_dropped():
    paho = Paho()
    session = session_with(paho, connected=False)
    for i in range(RESULTS_KEPT + 1):
        session.publish_result("pilot/x/cmd/c/result", str(i))
    assert session.pending() == RESULTS_KEPT
    session._connected.set()
    session.publish_telemetry("pilot/x/state/s", "1")  # any publish drains the queue once connected
    results = [payload for topic, payload, _, _ in paho.sent if topic == "pilot/x/cmd/c/result"]
    assert results == [str(i) for i in range(1, RESULTS_KEPT + 1)]


def test_health_instance_is_six_random_bytes_in_hex_new_at_each_start():
    before = time.time()
    reports = [
        Health().report(
            session_stats=SimpleNamespace(connected_since=None, connects=0, dropped_telemetry=0, callback_errors=0),
            command_stats=None,
            probe_errors=0,
            rule_errors=0,
        )
        for _ in range(2)
    ]
    assert all(re.fullmatch(r"[0-9a-f]{12}", r["instance"]) for r in reports)
    assert reports[0]["instance"] != reports[1]["instance"]
    assert all(int(before) <= r["ts"] <= time.time() + 1 for r in reports)  # Unix time, in seconds


def test_the_brokers_retained_health_copy_is_judged_once_and_live_ones_each_time():
    health = Health()
    junk = b'{"instance": "not-hex"}'
    for _ in range(3):
        health.on_report(junk, retained=True)  # handed back after every reconnect
    assert health.health_rejected == 1
    for _ in range(3):
        health.on_report(junk)
    assert health.health_rejected == 4


def test_a_report_of_another_instance_after_our_start_flags_a_duplicate_and_an_older_one_does_not():
    health = Health()
    old = {"instance": "0123456789ab", "ts": int(health.started_wall) - 60, "uptime_s": 5}
    health.on_report(json.dumps(old).encode(), retained=True)
    assert health.other_instance is None  # our own previous run's retained report
    new = {**old, "instance": "ba9876543210", "ts": int(health.started_wall) + 1}
    health.on_report(json.dumps(new).encode())
    assert health.other_instance == "ba9876543210"


def test_a_password_written_in_the_profile_is_refused(tmp_path):
    profile = tmp_path / "p.yaml"
    profile.write_text("pilot: 1\nmqtt: {host: broker.lan, username: u, password: hunter2}\n")
    _doc, diags = validate_file(profile)
    errors = [d.text() for d in diags if d.severity == "error"]
    assert any("$.mqtt.password: unknown key 'password'" in e for e in errors), errors


def test_health_is_reported_every_30_seconds_unless_the_environment_says_otherwise():
    from pilot.agent.supervise import options_from_env

    assert options_from_env({}, state_dir=None).health_every == 30.0
    assert options_from_env({"PILOT_HEALTH_EVERY": "1"}, state_dir=None).health_every == 1.0


def test_mqtt_3_1_1_is_the_default_protocol_and_5_is_chosen_in_the_profile(tmp_path):
    from tests.support.profiles import compile_text

    assert compile_text("pilot: 1\n", folder=tmp_path).mqtt.protocol == "3.1.1"
    assert compile_text("pilot: 1\nmqtt: {protocol: '5'}\n", folder=tmp_path).mqtt.protocol == "5"


def test_home_assistants_birth_is_answered_after_a_random_1_to_4_seconds_by_default():
    from pilot.agent.supervise import options_from_env

    assert options_from_env({}, state_dir=None).ha_delay == (1.0, 4.0)
