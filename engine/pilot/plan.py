"""The contract between the two programs: the compiler writes a Plan, the agent reads it.

Frozen dataclasses, the only form the runtime ever sees. A plan round-trips
through plain JSON (`to_dict` / `from_dict`), so the agent can compile in a
short-lived process or load a cached plan and never keep the validation
machinery (jsonschema, ruamel) in its long-running memory. `CompileResult`
is what crosses that process boundary: a plan, or the diagnostics that say
why there is none.
"""

from __future__ import annotations

import dataclasses
import types
import typing
from dataclasses import dataclass, field
from typing import Any, Union

from pilot.diagnostics import ERROR, Diagnostic


@dataclass(frozen=True)
class Device:
    id: str
    name: str
    manufacturer: str | None = None
    model: str | None = None
    sw_version: str | None = None
    suggested_area: str | None = None


@dataclass(frozen=True)
class Tls:
    ca_file: str | None = None
    cert_file: str | None = None
    key_file: str | None = None
    insecure: bool = False


@dataclass(frozen=True)
class Mqtt:
    host: str | None = None  # None: a local trial broker
    port: int | None = None
    client_id: str = ""
    username: str | None = None
    password_file: str | None = None
    keepalive: int = 30
    protocol: str = "3.1.1"
    tls: Tls | None = None
    topic_prefix: str = "pilot"
    discovery_prefix: str = "homeassistant"
    discovery: str = "device"


@dataclass(frozen=True)
class Entity:
    """What Home Assistant is told about one entity (discovery fields, full key names)."""

    platform: str
    unique_id: str
    name: str | None
    default_entity_id: str
    icon: str | None = None
    device_class: str | None = None
    unit_of_measurement: str | None = None
    state_class: str | None = None
    entity_category: str | None = None
    enabled_by_default: bool = True
    options: tuple[str, ...] | None = None
    expire_after: int | None = None
    extra: dict[str, Any] = field(default_factory=dict)  # platform fields: min, max, step, mode, pattern...


@dataclass(frozen=True)
class Window:
    """An expression's look back at one sensor (`avg(cpu, 5m)`): history the agent must keep."""

    source: str  # sensor id
    seconds: float


@dataclass(frozen=True)
class Sensor:
    id: str
    entity: Entity
    state_topic: str
    every: float
    probe: str | None = None
    args: dict[str, Any] = field(default_factory=dict)
    expr: str | None = None
    inputs: tuple[str, ...] = ()
    precision: int | None = None
    min_change: float | None = None
    max_silence: float | None = None
    optional: bool = False
    windows: tuple[Window, ...] = ()  # of `expr`


@dataclass(frozen=True)
class Command:
    id: str
    action: str
    entity: Entity
    command_topic: str
    result_topic: str
    state_topic: str | None
    args: dict[str, Any] = field(default_factory=dict)
    signed: bool = False
    cooldown: float = 0.0
    confirm: float | None = None
    policy_id: str | None = None  # what `policies.allow` names, when not `id` (a child's `<set>.<command>`)
    optional: bool = False  # left out where its action is unavailable on this host (pilot.agent.runtime)


@dataclass(frozen=True)
class Step:
    kind: str  # command | publish | notify | delay
    command: str | None = None
    value: Any = None
    topic: str | None = None
    payload: str | None = None
    retain: bool = False
    qos: int = 0
    title: str | None = None
    message: str | None = None
    seconds: float = 0.0


@dataclass(frozen=True)
class Rule:
    id: str
    when: str
    do: tuple[Step, ...]
    inputs: tuple[str, ...] = ()
    clear: str | None = None
    hold: float = 0.0
    cooldown: float = 0.0
    on_clear: tuple[Step, ...] = ()
    entity: Entity | None = None
    state_topic: str | None = None
    windows: tuple[Window, ...] = ()  # of `when` and `clear`


@dataclass(frozen=True)
class Schedule:
    id: str
    do: tuple[Step, ...]
    cron: str | None = None
    timezone: str | None = None
    every: float | None = None
    jitter: float = 0.0


@dataclass(frozen=True)
class ChildSensor:
    """One field of every instance of a child set, as a Home Assistant entity of each child device.
    `entity.unique_id` and `default_entity_id` are templates: `{key}` becomes the instance's key."""

    id: str
    field: str  # the source's field
    entity: Entity
    precision: int | None = None
    min_change: float | None = None


@dataclass(frozen=True)
class ChildCommand:
    """An action on one instance. `policy_id` (`<set>.<id>`) is what `policies.allow` names and the
    audit reports; cooldowns, confirmations and `busy` are per instance."""

    id: str
    policy_id: str
    action: str
    entity: Entity
    args: dict[str, Any] = field(default_factory=dict)
    signed: bool = False
    cooldown: float = 0.0
    confirm: float | None = None


@dataclass(frozen=True)
class ChildSet:
    """Instances of a source found at run time (`children:` in a profile), each its own device in
    Home Assistant under this one (`via_device`). Topics: `<base>/<id>/<key>/state` (one JSON object
    of the fields), `.../availability`, `.../cmd/<command>/set` and `/result`."""

    id: str
    source: str
    topic: str  # `<base>/<id>`
    every: float
    max_silence: float
    model: str | None
    args: dict[str, Any] = field(default_factory=dict)
    optional: bool = False  # skipped quietly where the source is absent (no token configured, another OS)
    sensors: tuple[ChildSensor, ...] = ()
    commands: tuple[ChildCommand, ...] = ()


@dataclass(frozen=True)
class Policy:
    allow: tuple[str, ...] | None = None
    cooldown: float = 0.0
    confirm_window: float = 10.0
    require_signed: bool = False
    keyring: str | None = None
    window: float = 60.0
    rate_max: int | None = None
    rate_per: float | None = None
    max_payload: int = 4096


@dataclass(frozen=True)
class Service:
    """The profile's `service:` section: who runs the agent."""

    user: str = "pilot"  # the system service's user
    allow_root: bool = False  # `pilot run` may start as root


@dataclass(frozen=True)
class Topics:
    base: str
    availability: str
    capabilities: str
    health: str
    discovery: str  # device-based discovery topic


@dataclass(frozen=True)
class Plan:
    profile: str
    profile_hash: str
    sources: tuple[str, ...]
    device: Device
    mqtt: Mqtt
    topics: Topics
    policy: Policy
    service: Service = Service()
    sensors: tuple[Sensor, ...] = ()
    commands: tuple[Command, ...] = ()
    rules: tuple[Rule, ...] = ()
    schedules: tuple[Schedule, ...] = ()
    children: tuple[ChildSet, ...] = ()

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Plan:
        return _build(cls, data)


@dataclass(frozen=True)
class CompileResult:
    """A plan, or why there is none. `diagnostics` holds the errors when there is no plan,
    the warnings when there is one."""

    plan: Plan | None
    diagnostics: tuple[Diagnostic, ...] = ()

    @property
    def ok(self) -> bool:
        return self.plan is not None

    @property
    def errors(self) -> tuple[Diagnostic, ...]:
        return tuple(d for d in self.diagnostics if d.severity == ERROR)

    def to_dict(self) -> dict[str, Any]:
        return {
            "plan": self.plan.to_dict() if self.plan else None,
            "diagnostics": [dataclasses.asdict(d) for d in self.diagnostics],
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> CompileResult:
        plan = data.get("plan")
        return cls(
            Plan.from_dict(plan) if plan else None, tuple(Diagnostic(**d) for d in data.get("diagnostics") or ())
        )


def _build(tp: Any, value: Any) -> Any:
    if value is None:
        return None
    origin = typing.get_origin(tp)
    if origin in (Union, types.UnionType):
        inner = [a for a in typing.get_args(tp) if a is not type(None)]
        return _build(inner[0], value) if len(inner) == 1 else value
    if origin is tuple:
        (item, *_rest) = typing.get_args(tp)
        return tuple(_build(item, v) for v in value)
    if dataclasses.is_dataclass(tp):
        hints = typing.get_type_hints(tp)
        return tp(**{f.name: _build(hints[f.name], value[f.name]) for f in dataclasses.fields(tp) if f.name in value})
    return value
