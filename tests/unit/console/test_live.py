"""Event streams coalesce: a reader gets each changed thing once, with its latest value, however late."""

from __future__ import annotations

import json

from pilot.console.fleet import Changes, Device, Entity, Fleet
from pilot.console.live import Stream


def body(event: str) -> dict:
    kind, data = event.rstrip("\n").split("\n")
    assert kind == "event: update"
    return json.loads(data.removeprefix("data: "))


def fleet_with(n_devices: int = 2) -> Fleet:
    fleet = Fleet()
    for i in range(n_devices):
        device = Device(id=f"d{i}", name=f"D{i}")
        entities = [
            Entity(key="cpu_usage", unique_id="u1", platform="sensor", name="CPU", unit="%", state_topic=f"t/{i}/c"),
            Entity(key="uptime", unique_id="u2", platform="sensor", name="Up", state_class="total", state_topic="x"),
            Entity(key="note", unique_id="u3", platform="sensor", name="Note", state_topic=f"t/{i}/n"),
        ]
        fleet.devices[device.id] = device
        fleet.set_entities(device, entities)
    return fleet


def set_value(fleet: Fleet, device: str, key: str, value: str) -> None:
    entity = fleet.devices[device].entities[key]
    entity.value, entity.updated = value, 1.0
    fleet.changes.mark("state", device, key)


def test_changes_since_a_cursor_are_each_thing_once_newest_first():
    changes = Changes()
    for key in ("a", "b", "a", "c", "a"):
        changes.mark("state", "d", key)
    assert changes.since(0) == [("state", "d", "a"), ("state", "d", "c"), ("state", "d", "b")]
    assert changes.since(4) == [("state", "d", "a")]
    assert changes.since(5) == []


def test_a_slow_reader_gets_only_the_latest_value_of_each_key():
    fleet = fleet_with()
    stream = Stream(fleet, "d0", fleet.changes.seq)
    for value in range(1000):
        set_value(fleet, "d0", "cpu_usage", str(value))
    event = body(stream.next_event())
    assert event["states"] == [["d0", "cpu_usage", "999", 1.0]]
    assert stream.next_event() is None


def test_the_fleet_stream_carries_key_sensors_and_summaries_not_every_value():
    fleet = fleet_with()
    stream = Stream(fleet, None, fleet.changes.seq)
    set_value(fleet, "d1", "cpu_usage", "5")
    set_value(fleet, "d1", "note", "hello")
    fleet.changes.mark("device", "d0")
    event = body(stream.next_event())
    assert event["states"] == [["d1", "cpu_usage", "5", 1.0]]
    assert list(event["devices"]) == ["d0"]


def test_a_device_stream_ignores_other_devices_but_hears_the_broker():
    fleet = fleet_with()
    stream = Stream(fleet, "d0", fleet.changes.seq)
    set_value(fleet, "d1", "cpu_usage", "5")
    assert stream.next_event() is None
    fleet.broker_connected = False
    fleet.changes.mark("broker", "")
    assert body(stream.next_event())["broker"] == {"connected": False, "ready": False, "since": None}


def test_a_cursor_from_the_future_means_the_console_restarted_and_the_page_must_refetch():
    fleet = fleet_with()
    stream = Stream(fleet, None, fleet.changes.seq + 100)
    assert stream.next_event() == "event: resync\ndata: {}\n\n"
    assert stream.next_event() is None


def test_a_removed_device_is_announced_as_removed():
    fleet = fleet_with()
    stream = Stream(fleet, None, fleet.changes.seq)
    fleet.remove("d1")
    assert body(stream.next_event())["removed"] == ["d1"]


def test_the_change_log_is_bounded_by_the_fleet_not_by_time():
    fleet = fleet_with(3)
    for round_ in range(500):
        for d in ("d0", "d1", "d2"):
            set_value(fleet, d, "cpu_usage", str(round_))
    assert len(fleet.changes._order) == 3 + 3  # three devices, three keys that changed
