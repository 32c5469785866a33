"""Publish policy (deadband + heartbeat), rounding, and the MQTT session's bounded buffer."""

from __future__ import annotations

import itertools

from pilot.agent.mqtt import BACKOFF_CAP, Session, Will, backoff_delays
from pilot.agent.telemetry import SensorState, due, mark_published, round_value
from pilot.plan import Entity, Mqtt, Sensor


def sensor(**kw) -> Sensor:
    entity = Entity(platform="sensor", unique_id="u", name="n", default_entity_id="sensor.n")
    return Sensor(id="s", entity=entity, state_topic="t", every=1.0, **kw)


def test_first_value_is_always_published_then_only_changes():
    state = SensorState(sensor())
    assert due(state, 5, now=0)
    mark_published(state, 5, "5", now=0)
    assert not due(state, 5, now=100)
    assert due(state, 6, now=101)


def test_min_change_is_a_deadband_and_max_silence_a_heartbeat():
    state = SensorState(sensor(min_change=2.0, max_silence=60.0))
    mark_published(state, 10.0, "10", now=0)
    assert not due(state, 11.9, now=1)
    assert due(state, 12.0, now=2)
    assert due(state, 8.0, now=3)
    assert not due(state, 10.5, now=59.4)  # interval 1 s: the beat is due half an interval early
    assert due(state, 10.5, now=59.5)


def test_a_heartbeat_equal_to_the_interval_survives_early_wakeups():
    s = sensor(max_silence=5.0)
    state = SensorState(Sensor(id=s.id, entity=s.entity, state_topic=s.state_topic, every=5.0, max_silence=5.0))
    mark_published(state, 1, "1", now=100.0)
    assert due(state, 1, now=104.999)  # the next tick woke a millisecond early
    assert not due(state, 1, now=102.0)


def test_text_values_change_without_a_deadband():
    state = SensorState(sensor(min_change=5.0))
    mark_published(state, "eth0", "eth0", now=0)
    assert due(state, "wlan0", now=1)


def test_rounding():
    assert round_value(3.14159, 2) == 3.14
    assert round_value(41.6, 0) == 42 and isinstance(round_value(41.6, 0), int)
    assert round_value(float("nan"), 1) is None
    assert round_value(True, 1) is True
    assert round_value("x", 1) == "x"


def test_backoff_is_jittered_exponential_and_capped():
    delays = list(itertools.islice(backoff_delays(), 12))
    assert 0.25 <= delays[0] <= 0.5
    assert all(d <= BACKOFF_CAP for d in delays)
    assert max(delays[6:]) > 5  # reaches the cap region
    assert len(set(round(d, 6) for d in delays[6:])) > 1  # jittered, not a fixed cadence


def test_telemetry_buffer_keeps_latest_value_per_topic_while_disconnected():
    session = Session(settings=Mqtt(client_id="t"), will=Will("a/availability"), host="127.0.0.1", port=1)
    for i in range(1000):
        session.publish_telemetry(f"state/{i % 10}", str(i))
    assert session.pending() == 10  # bounded by the number of topics, not by time offline
    assert session.stats.dropped_telemetry == 990
    session.publish_result("cmd/x/result", "{}")
    session.publish_result("cmd/x/result", "{}")
    assert session.pending() == 12  # results are never replaced
