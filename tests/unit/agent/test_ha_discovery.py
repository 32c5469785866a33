"""Discovery payloads from a compiled plan: full key names, removals, per-entity mode."""

from __future__ import annotations

import dataclasses
import json

import pytest

from pilot.agent import ha
from tests.support.profiles import compile_text

PROFILE = b"""pilot: 1
device: {id: box1, name: Box}
sensors:
  cpu: {probe: cpu.percent, every: 10s, name: CPU usage}
  hot: {expr: "cpu > 90", platform: binary_sensor, device_class: heat}
  state: {probe: battery.state, every: 30s, optional: true}
"""


@pytest.fixture
def plan():
    return compile_text(PROFILE, facts={"hostname": "box"}, device_id="unused")


def test_device_payload_has_full_keys_and_components(plan):
    messages, record = ha.discovery_messages(plan, None)
    assert [m.topic for m in messages] == ["homeassistant/device/box1/config"]
    payload = json.loads(messages[0].payload)
    assert messages[0].retain and messages[0].qos == 1
    assert payload["device"] == {"identifiers": ["pilot_box1"], "name": "Box", "sw_version": plan.device.sw_version}
    assert set(payload["origin"]) == {"name", "sw_version", "support_url"}
    cpu = payload["components"]["pilot_box1_cpu"]
    assert cpu == {
        "platform": "sensor",
        "unique_id": "pilot_box1_cpu",
        "name": "CPU usage",
        "default_entity_id": "sensor.box_cpu",
        "icon": "mdi:cpu-64-bit",
        "unit_of_measurement": "%",
        "state_class": "measurement",
        "state_topic": "pilot/box1/state/cpu",
    }
    hot = payload["components"]["pilot_box1_hot"]
    assert hot["payload_on"] == "ON" and hot["platform"] == "binary_sensor" and "unit_of_measurement" not in hot
    state = payload["components"]["pilot_box1_state"]
    assert state["device_class"] == "enum" and state["options"][0] == "charging"
    assert record == {
        "mode": "device",
        "device_topic": "homeassistant/device/box1/config",
        "components": {"pilot_box1_cpu": "sensor", "pilot_box1_hot": "binary_sensor", "pilot_box1_state": "sensor"},
    }
    assert not any(len(k) <= 3 and k not in ("qos",) for k in payload)  # no abbreviations at the top


def test_removed_entity_is_sent_in_removal_form_once(plan):
    _, record = ha.discovery_messages(plan, None)
    smaller = dataclasses.replace(plan, sensors=plan.sensors[:1])
    messages, record2 = ha.discovery_messages(smaller, record)
    components = json.loads(messages[0].payload)["components"]
    assert components["pilot_box1_hot"] == {"platform": "binary_sensor"}
    assert components["pilot_box1_state"] == {"platform": "sensor"}
    messages3, _ = ha.discovery_messages(smaller, record2)
    assert set(json.loads(messages3[0].payload)["components"]) == {"pilot_box1_cpu"}


def test_switching_to_entity_mode_clears_the_device_message(plan):
    _, record = ha.discovery_messages(plan, None)
    entity_plan = dataclasses.replace(plan, mqtt=dataclasses.replace(plan.mqtt, discovery="entity"))
    messages, record2 = ha.discovery_messages(entity_plan, record)
    assert messages[0].topic == "homeassistant/device/box1/config" and messages[0].payload == ""
    topics = {m.topic for m in messages[1:]}
    assert topics == {
        "homeassistant/sensor/box1/cpu/config",
        "homeassistant/binary_sensor/box1/hot/config",
        "homeassistant/sensor/box1/state/config",
    }
    # and back: the per-entity topics are emptied
    messages3, _ = ha.discovery_messages(plan, record2)
    assert {m.topic for m in messages3 if m.payload == ""} == topics


def test_discovery_none_publishes_nothing(plan):
    off = dataclasses.replace(plan, mqtt=dataclasses.replace(plan.mqtt, discovery="none"))
    messages, record = ha.discovery_messages(off, None)
    assert messages == [] and record["mode"] == "none"


@pytest.mark.parametrize(
    "value, platform, text",
    [
        (True, "binary_sensor", "ON"),
        (0, "binary_sensor", "OFF"),
        (12.0, "sensor", "12"),
        (12.5, "sensor", "12.5"),
        (3, "sensor", "3"),
        ("idle", "sensor", "idle"),
    ],
)
def test_state_formatting(value, platform, text):
    assert ha.format_state(value, platform) == text


def test_a_sensor_made_enum_drops_the_probes_numeric_defaults():
    entity = (
        compile_text(
            "pilot: 1\ndevice: {id: box1, name: Box}\nsensors:\n"
            "  level: {probe: cpu.load, device_class: enum, options: [low, high]}\n"
        )
        .sensors[0]
        .entity
    )
    assert entity.state_class is None and entity.unit_of_measurement is None
    assert entity.device_class == "enum" and entity.options == ("low", "high")
