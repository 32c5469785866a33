"""The fleet as the broker shows it: every Pilot device, its entities and their latest values, in memory.

One writer (the ingest thread) and many readers (the web server's requests and event streams) share it
under one lock. Every change is stamped with a sequence number in `Changes`, which keeps only the latest
stamp per thing that changed: a reader that falls behind gets each changed value once, never a queue.
Everything here came from anyone on the broker, so it is bounded (entities per device, text lengths,
audit entries) and kept as data: nothing in it is ever interpreted.
"""

from __future__ import annotations

import math
import threading
from collections import OrderedDict, deque
from dataclasses import dataclass, field
from typing import Any

MAX_ENTITIES = 512  # per device: a real profile has a few dozen
MAX_DEVICES = 20_000
MAX_ENTITIES_TOTAL = 200_000  # the whole fleet: 1,000 real devices have about 30,000
MAX_REMOVED = 1_000  # devices that left, remembered for the pages' event streams
MAX_TEXT = 255  # a state shown as text
MAX_NAME = 128
AUDIT_KEEP = 50
SPARK_POINTS = 60
SPARK_EVERY_S = 10.0
KEY_SENSORS = 3

# Which entities a fleet row shows first: the usual load figures, by the words in their key.
_KEY_ORDER = ("cpu", "mem", "disk", "load", "temp", "gpu")
# Home Assistant groups entities by category: controls (commands), sensors, diagnostic, configuration
_COMMAND_PLATFORMS = frozenset({"button", "switch", "number", "select", "text"})
HEALTH_BADGES = {
    "duplicate_agent": lambda h: h.get("duplicate_agent") is True,
    "reconnects": lambda h: _count(h, "reconnects") > 0,
    "rejected_commands": lambda h: _count(h, "commands_rejected") > 0,
    "dropped_telemetry": lambda h: _count(h, "dropped_telemetry") > 0,
}


def _count(health: dict[str, Any], key: str) -> float:
    value = health.get(key)
    return value if isinstance(value, (int, float)) and not isinstance(value, bool) else 0


def clip(text: Any, size: int = MAX_NAME) -> str | None:
    """Text from the broker as the pages may show it: a string, at most `size` characters, or None."""
    if not isinstance(text, str):
        return None
    return text[:size]


@dataclass(frozen=True, slots=True)
class CommandInfo:
    """What the console needs to press a command: from capabilities (signed ones too) or discovery."""

    id: str
    platform: str
    topic: str
    signed: bool = False
    confirm_within: float | None = None
    payload_press: str = "PRESS"
    options: tuple[str, ...] = ()
    min: float | None = None
    max: float | None = None
    step: float | None = None
    min_length: int | None = None
    max_length: int | None = None

    def as_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {"id": self.id, "platform": self.platform, "signed": self.signed}
        if self.confirm_within is not None:
            out["confirm_within"] = self.confirm_within
        if self.platform == "button":
            out["payload_press"] = self.payload_press
        if self.options:
            out["options"] = list(self.options)
        for key in ("min", "max", "step", "min_length", "max_length"):
            value = getattr(self, key)
            if value is not None:
                out[key] = value
        return out


@dataclass(slots=True)
class Entity:
    key: str
    unique_id: str
    platform: str
    name: str
    unit: str | None = None
    device_class: str | None = None
    state_class: str | None = None
    entity_category: str | None = None
    icon: str | None = None
    state_topic: str | None = None
    command: CommandInfo | None = None
    json_key: str | None = None  # `{{ value_json.KEY }}`: the value is that field of a JSON state (health)
    value: str | None = None
    updated: float | None = None
    spark: deque | None = None

    @property
    def group(self) -> str:
        if self.entity_category == "diagnostic":
            return "diagnostic"
        if self.entity_category == "config":
            return "configuration"
        return "controls" if self.platform in _COMMAND_PLATFORMS else "sensors"

    @property
    def numeric(self) -> bool:
        return self.platform in ("sensor", "binary_sensor") and (self.unit is not None or self.state_class is not None)

    def as_json(self) -> dict[str, Any]:
        return {
            "key": self.key,
            "unique_id": self.unique_id,
            "platform": self.platform,
            "name": self.name,
            "unit": self.unit,
            "device_class": self.device_class,
            "state_class": self.state_class,
            "entity_category": self.entity_category,
            "icon": self.icon,
            "value": self.value,
            "updated": self.updated,
            "group": self.group,
            # history is kept of `<prefix>/<id>/state/<key>` readings, not of fields of the health report
            "history": self.json_key is None and (self.platform == "binary_sensor" or self.numeric),
            "command": self.command.as_json() if self.command else None,
        }


@dataclass(slots=True)
class Device:
    id: str
    name: str
    manufacturer: str | None = None
    model: str | None = None
    sw_version: str | None = None
    parent: str | None = None
    online: bool | None = None
    last_seen: float | None = None
    profile: str | None = None
    dry_run: bool | None = None
    capabilities_seen: bool = False
    health: dict[str, Any] = field(default_factory=dict)
    entities: dict[str, Entity] = field(default_factory=dict)
    commands: dict[str, CommandInfo] = field(default_factory=dict)
    rules: list[dict[str, Any]] = field(default_factory=list)
    schedules: list[dict[str, Any]] = field(default_factory=list)
    activity: dict[str, Any] = field(default_factory=dict)
    audit: deque = field(default_factory=lambda: deque(maxlen=AUDIT_KEEP))
    key_sensors: tuple[str, ...] = ()
    deploy: dict[str, Any] | None = None  # the rollout state of the last profile deploy (deploy.py, ingest.py)

    @property
    def badges(self) -> list[str]:
        return [name for name, test in HEALTH_BADGES.items() if test(self.health)]

    def summary(self) -> dict[str, Any]:
        key = []
        for k in self.key_sensors:
            entity = self.entities.get(k)
            if entity is not None:
                key.append(
                    {
                        "entity": k,
                        "name": entity.name,
                        "unit": entity.unit,
                        "value": entity.value,
                        "spark": list(entity.spark or ()),
                    }
                )
        return {
            "id": self.id,
            "name": self.name,
            "online": self.online,
            "last_seen": self.last_seen,
            "version": self.sw_version,
            "profile": self.profile,
            "model": self.model,
            "manufacturer": self.manufacturer,
            "dry_run": self.dry_run,
            "health": dict(self.health),
            "badges": self.badges,
            "key": key,
            "parent": self.parent,
            "deploy": dict(self.deploy) if self.deploy else None,
        }

    def choose_key_sensors(self) -> None:
        def rank(entity: Entity) -> tuple[int, bool, str]:
            # a percentage first (CPU usage before CPU frequency), then the usual load figures in order
            for i, word in enumerate(_KEY_ORDER):
                if word in entity.key:
                    return i, entity.unit != "%", entity.key
            return len(_KEY_ORDER), entity.unit != "%", entity.key

        numeric = [e for e in self.entities.values() if e.platform == "sensor" and e.numeric and e.group == "sensors"]
        numeric.sort(key=rank)
        self.key_sensors = tuple(e.key for e in numeric[:KEY_SENSORS])
        for e in numeric[:KEY_SENSORS]:
            if e.spark is None:
                e.spark = deque(maxlen=SPARK_POINTS)


class Changes:
    """The latest sequence number of everything that changed, newest last: a reader asks for what changed
    after its own cursor and gets each thing once, however often it changed in between.

    Bounded by the fleet: a device's entries go with it, an entity's with the entity, and of the devices that
    left only the last MAX_REMOVED are remembered; a reader whose cursor is older than what was forgotten
    (`floor`) must fetch the whole fleet again."""

    def __init__(self) -> None:
        self.seq = 0
        self.floor = 0
        self._order: OrderedDict[tuple[str, str, str], int] = OrderedDict()
        self._by_device: dict[str, set[tuple[str, str, str]]] = {}
        self._removed: OrderedDict[str, int] = OrderedDict()

    def mark(self, kind: str, device: str, key: str = "") -> None:
        self.seq += 1
        k = (kind, device, key)
        order = self._order
        if k in order:
            order.move_to_end(k)
        else:
            self._by_device.setdefault(device, set()).add(k)
        order[k] = self.seq

    def since(self, cursor: int) -> list[tuple[str, str, str]]:
        out = []
        for k, seq in reversed(self._order.items()):
            if seq <= cursor:
                break
            out.append(k)
        return out

    def forget(self, device: str) -> None:
        """A device left: its entries go, and one `removed` entry says so."""
        self._drop(self._by_device.pop(device, ()))
        self._removed.pop(device, None)
        self.mark("removed", device)
        self._removed[device] = self.seq
        while len(self._removed) > MAX_REMOVED:
            gone, seq = self._removed.popitem(last=False)
            self._drop([("removed", gone, "")])
            self._by_device.pop(gone, None)
            self.floor = max(self.floor, seq)

    def returned(self, device: str) -> None:
        """A device that had left is back: its `removed` entry is no longer news."""
        if self._removed.pop(device, None) is not None:
            self._drop([("removed", device, "")])
            self._by_device.get(device, set()).discard(("removed", device, ""))

    def forget_keys(self, device: str, keys: set[str]) -> None:
        """Entities a device no longer has."""
        entries = self._by_device.get(device)
        if entries:
            gone = [k for k in entries if k[0] == "state" and k[2] in keys]
            self._drop(gone)
            entries.difference_update(gone)

    def _drop(self, entries) -> None:
        for k in entries:
            self._order.pop(k, None)


def number(value: str, platform: str) -> float | None:
    """A state as a number for history: binary sensors are 1/0; text that is not a finite number is None."""
    if platform == "binary_sensor":
        return 1.0 if value == "ON" else 0.0 if value == "OFF" else None
    try:
        result = float(value)
    except ValueError:
        return None
    return result if math.isfinite(result) else None


class Fleet:
    """All devices seen on the broker, indexed by id and by state topic."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.devices: dict[str, Device] = {}
        self.by_state_topic: dict[str, tuple[Device, Entity]] = {}
        self.entity_count = 0
        self.changes = Changes()
        self.broker_connected = False
        self.broker_ready = False  # connected and every subscription's retained messages are in
        self.broker_since: float | None = None

    # -------------------------------------------------------------- writers (ingest thread, under lock)
    def device(self, device_id: str) -> Device | None:
        existing = self.devices.get(device_id)
        if existing is not None or len(self.devices) >= MAX_DEVICES:
            return existing
        created = Device(id=device_id, name=device_id)
        self.devices[device_id] = created
        return created

    def set_entities(self, device: Device, entities: list[Entity]) -> None:
        """Replace a device's entities from its discovery message, keeping the values already known."""
        for entity in device.entities.values():
            if entity.state_topic and self.by_state_topic.get(entity.state_topic, (None,))[0] is device:
                del self.by_state_topic[entity.state_topic]
        old = device.entities
        self.entity_count -= len(old)
        room = max(0, min(MAX_ENTITIES, MAX_ENTITIES_TOTAL - self.entity_count))
        device.entities = {}
        for entity in entities[:room]:
            previous = old.get(entity.key)
            if previous is not None:
                entity.value, entity.updated, entity.spark = previous.value, previous.updated, previous.spark
            command = device.commands.get(entity.key)
            if command is not None:
                entity.command = command
            device.entities[entity.key] = entity
            if entity.state_topic and entity.json_key is None and entity.state_topic not in self.by_state_topic:
                self.by_state_topic[entity.state_topic] = (device, entity)
        self.entity_count += len(device.entities)
        self.changes.forget_keys(device.id, set(old) - set(device.entities))
        device.choose_key_sensors()
        self.changes.returned(device.id)
        self.changes.mark("device", device.id)

    def remove(self, device_id: str) -> None:
        device = self.devices.pop(device_id, None)
        if device is None:
            return
        for entity in device.entities.values():
            if entity.state_topic and self.by_state_topic.get(entity.state_topic, (None,))[0] is device:
                del self.by_state_topic[entity.state_topic]
        self.entity_count -= len(device.entities)
        self.changes.forget(device_id)

    def set_deploy(
        self, device_id: str, state: str, reason: str | None, ts: float, by: str | None, sha256: str | None
    ) -> None:
        """A device's rollout state: from the console's own sends and from its retained `<base>/deploy`."""
        with self.lock:
            device = self.devices.get(device_id)
            if device is None:
                return
            device.deploy = {"state": state, "reason": reason, "ts": ts, "by": by, "sha256": sha256}
            self.changes.mark("device", device_id)

    def clear_deploy(self, device_id: str) -> None:
        with self.lock:
            device = self.devices.get(device_id)
            if device is not None and device.deploy is not None:
                device.deploy = None
                self.changes.mark("device", device_id)

    # -------------------------------------------------------------- readers
    def summaries(self) -> list[dict[str, Any]]:
        with self.lock:
            return [d.summary() for d in self.devices.values()]

    def detail(self, device_id: str) -> dict[str, Any] | None:
        with self.lock:
            device = self.devices.get(device_id)
            if device is None:
                return None
            out = device.summary()
            out["entities"] = [e.as_json() for e in device.entities.values()]
            entity_commands = {e.key for e in device.entities.values() if e.command}
            # signed commands have no Home Assistant entity: shown from capabilities alone
            for cid, command in device.commands.items():
                if cid not in entity_commands:
                    out["entities"].append(
                        Entity(key=cid, unique_id="", platform=command.platform, name=cid, command=command).as_json()
                    )
            out["rules"] = [dict(r, **device.activity.get("rules", {}).get(r["id"], {})) for r in device.rules]
            out["schedules"] = [
                dict(s, **device.activity.get("schedules", {}).get(s["id"], {})) for s in device.schedules
            ]
            out["audit"] = list(reversed(device.audit))
            out["children"] = [d.id for d in self.devices.values() if d.parent == device_id]
            return out

    def command(self, device_id: str, command_id: str) -> CommandInfo | None:
        with self.lock:
            device = self.devices.get(device_id)
            return device.commands.get(command_id) if device else None

    def entity(self, device_id: str, key: str) -> Entity | None:
        with self.lock:
            device = self.devices.get(device_id)
            return device.entities.get(key) if device else None
