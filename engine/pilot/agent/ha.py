"""Plan -> Home Assistant MQTT discovery messages (full key names, never abbreviations).

Device-based discovery (one retained message per device, Home Assistant
2024.11+) is the default; per-entity discovery remains for older installs.
What was announced is remembered so an entity dropped from the profile is
removed from Home Assistant instead of lingering as "unavailable".
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from pilot import __version__
from pilot.plan import Entity, Plan

SUPPORT_URL = "https://github.com/pilot-agent/pilot"
ON, OFF = "ON", "OFF"


@dataclass(frozen=True)
class Message:
    topic: str
    payload: str
    retain: bool = True
    qos: int = 1


def device_block(plan: Plan) -> dict[str, Any]:
    d = plan.device
    block = {"identifiers": [f"pilot_{d.id}"], "name": d.name, "sw_version": d.sw_version}
    for key in ("manufacturer", "model", "suggested_area"):
        value = getattr(d, key)
        if value:
            block[key] = value
    return block


def entity_config(entity: Entity) -> dict[str, Any]:
    config: dict[str, Any] = {
        "platform": entity.platform,
        "unique_id": entity.unique_id,
        "name": entity.name,
        "default_entity_id": entity.default_entity_id,
    }
    for key in ("icon", "device_class", "unit_of_measurement", "state_class", "entity_category", "expire_after"):
        value = getattr(entity, key)
        if value is not None:
            config[key] = value
    if entity.options:
        config["options"] = list(entity.options)
    if not entity.enabled_by_default:
        config["enabled_by_default"] = False
    config.update(entity.extra)
    return config


def components(plan: Plan) -> dict[str, dict[str, Any]]:
    """Every entity of the plan keyed by its unique id, with its topics."""
    out: dict[str, dict[str, Any]] = {}
    for sensor in plan.sensors:
        config = entity_config(sensor.entity)
        config["state_topic"] = sensor.state_topic
        if sensor.entity.platform == "binary_sensor":
            config.update(payload_on=ON, payload_off=OFF)
        out[sensor.entity.unique_id] = config
    for command in plan.commands:
        if command.signed:
            continue  # Home Assistant cannot sign: these are driven by `pilot send`, not UI entities
        config = entity_config(command.entity)
        config["command_topic"] = command.command_topic
        config["qos"] = 1
        if command.state_topic:
            config["state_topic"] = command.state_topic
        if command.entity.platform == "button":
            config["payload_press"] = "PRESS"
        elif command.entity.platform == "switch":
            config.update(payload_on=ON, payload_off=OFF)
        elif command.entity.platform == "text":
            for ours, theirs in (("min_length", "min"), ("max_length", "max")):
                if ours in config:
                    config[theirs] = config.pop(ours)
        out[command.entity.unique_id] = config
    if plan.commands:
        uid = f"pilot_{plan.device.id}_command_audit"
        out[uid] = {
            "platform": "event",
            "unique_id": uid,
            "name": "Command audit",
            "default_entity_id": f"event.{_slug(plan.device.name)}_command_audit",
            "state_topic": f"{plan.topics.base}/audit",
            "entity_category": "diagnostic",
            "icon": "mdi:shield-check",
            "event_types": ["ok", "dry_run", "failed", "rejected", "armed", "interrupted"],
        }
    for rule in plan.rules:
        if rule.entity is not None:
            config = entity_config(rule.entity)
            config.update(state_topic=rule.state_topic, payload_on=ON, payload_off=OFF)
            out[rule.entity.unique_id] = config
    return out


def _slug(text: str) -> str:
    from pilot.naming import slug

    return slug(text)


def origin() -> dict[str, str]:
    return {"name": "Pilot", "sw_version": __version__, "support_url": SUPPORT_URL}


def _availability(plan: Plan) -> list[dict[str, str]]:
    return [{"topic": plan.topics.availability, "payload_available": "online", "payload_not_available": "offline"}]


def entity_topic(plan: Plan, platform: str, unique_id: str) -> str:
    object_id = unique_id.removeprefix(f"pilot_{plan.device.id}_")
    return f"{plan.mqtt.discovery_prefix}/{platform}/{plan.device.id}/{object_id}/config"


def discovery_messages(
    plan: Plan, previous: dict[str, Any] | None, extra: dict[str, dict[str, Any]] | None = None
) -> tuple[list[Message], dict[str, Any]]:
    """Messages announcing the plan (and removing what the previous announcement had
    that the plan no longer has), plus the record to remember for next time.
    `extra` adds components that are not in the plan (the agent's own health entities)."""
    previous = previous or {}
    current = {**components(plan), **(extra or {})}
    mode = plan.mqtt.discovery
    messages: list[Message] = []
    old_components: dict[str, str] = previous.get("components", {})
    removed = {uid: platform for uid, platform in old_components.items() if uid not in current}

    # Leftovers of another discovery mode or another prefix are cleared first.
    if previous.get("device_topic") and (mode != "device" or previous["device_topic"] != plan.topics.discovery):
        messages.append(Message(previous["device_topic"], ""))
    if previous.get("mode") == "entity" and mode != "entity":
        for topic in previous.get("entity_topics", {}).values():
            messages.append(Message(topic, ""))

    record: dict[str, Any] = {"mode": mode, "components": {u: c["platform"] for u, c in current.items()}}
    if mode == "device":
        payload_components = dict(current)
        for uid, platform in removed.items():
            payload_components[uid] = {"platform": platform}  # the removal form
        payload = {
            "device": device_block(plan),
            "origin": origin(),
            "availability": _availability(plan),
            "components": payload_components,
            "qos": 1,
        }
        messages.append(Message(plan.topics.discovery, json.dumps(payload, separators=(",", ":"))))
        record["device_topic"] = plan.topics.discovery
    elif mode == "entity":
        topics = {}
        for uid, config in current.items():
            body = {k: v for k, v in config.items() if k != "platform"}
            body.update(device=device_block(plan), origin=origin(), availability=_availability(plan))
            topic = entity_topic(plan, config["platform"], uid)
            topics[uid] = topic
            messages.append(Message(topic, json.dumps(body, separators=(",", ":"))))
        for uid, topic in previous.get("entity_topics", {}).items():
            if uid not in current or topics.get(uid) != topic:
                messages.append(Message(topic, ""))
        record["entity_topics"] = topics
    return messages, record


def format_state(value: Any, platform: str) -> str:
    if platform == "binary_sensor":
        return ON if value else OFF
    if isinstance(value, bool):
        return ON if value else OFF
    if isinstance(value, float):
        text = repr(value)
        return text[:-2] if text.endswith(".0") else text
    return str(value)
