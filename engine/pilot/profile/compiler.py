"""Validated document -> frozen Plan. Defaults, topics and ids are decided here, once.

The compiler trusts the validator: it is only ever called on a document that
produced no errors, so it reads fields without re-checking them.
"""

from __future__ import annotations

import hashlib
import json
import socket
from pathlib import Path
from typing import Any

from pilot import __version__, expressions
from pilot.naming import slug, words
from pilot.plan import (
    ChildCommand,
    ChildSensor,
    ChildSet,
    Command,
    Device,
    Entity,
    Mqtt,
    Plan,
    Policy,
    Rule,
    Schedule,
    Sensor,
    Service,
    Step,
    Tls,
    Topics,
    Window,
)
from pilot.profile.loader import Document
from pilot.registry import PROBES, SOURCES
from pilot.units import parse_duration, parse_size

DEFAULT_EVERY = 30.0
ENTITY_FIELDS = ("min", "max", "step", "mode", "pattern", "max_length", "min_length")


NON_NUMERIC_DEVICE_CLASSES = frozenset({"enum", "timestamp", "date"})


def effective_defaults(entry: Any, spec: dict) -> dict[str, Any]:
    """A probe's suggested Home Assistant fields, minus those the sensor's own choices contradict:
    a sensor made an `enum`, `timestamp` or `date` keeps no inherited unit or state_class."""
    defaults = dict(entry.defaults) if entry else {}
    if spec.get("device_class") in NON_NUMERIC_DEVICE_CLASSES or spec.get("options"):
        for key in ("unit", "state_class", "precision"):
            defaults.pop(key, None)
    return defaults


def profile_hash(data: Any) -> str:
    canonical = json.dumps(data, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256(canonical.encode()).hexdigest()[:16]


def _device(data: dict, facts: dict[str, Any], device_id: str) -> Device:
    spec = data.get("device") or {}
    return Device(
        id=spec.get("id") or device_id,
        name=spec.get("name") or facts.get("hostname") or socket.gethostname(),
        manufacturer=spec.get("manufacturer") or facts.get("dmi.sys_vendor"),
        model=spec.get("model") or facts.get("dmi.product_name"),
        sw_version=f"Pilot {__version__}",
        suggested_area=spec.get("suggested_area"),
    )


def _mqtt(data: dict, device: Device) -> Mqtt:
    spec = data.get("mqtt") or {}
    tls = spec.get("tls")
    return Mqtt(
        host=spec.get("host"),
        port=spec.get("port") or (8883 if tls is not None else 1883),
        client_id=spec.get("client_id") or f"pilot-{device.id}",
        username=spec.get("username"),
        password_file=spec.get("password_file"),
        keepalive=spec.get("keepalive", 30),
        protocol=spec.get("protocol", "3.1.1"),
        tls=Tls(**tls) if tls is not None else None,
        topic_prefix=spec.get("topic_prefix", "pilot"),
        discovery_prefix=spec.get("discovery_prefix", "homeassistant"),
        discovery=spec.get("discovery", "device"),
    )


def _entity(platform: str, eid: str, spec: dict, device: Device, defaults: dict) -> Entity:
    def pick(key: str, default_key: str | None = None) -> Any:
        return spec[key] if key in spec else defaults.get(default_key or key)

    options = pick("options")
    expire = spec.get("expire_after")
    return Entity(
        platform=platform,
        unique_id=f"pilot_{device.id}_{eid}",
        name=spec["name"] if "name" in spec else words(eid),
        default_entity_id=spec.get("default_entity_id") or f"{platform}.{slug(device.name)}_{eid}",
        icon=pick("icon"),
        device_class=pick("device_class"),
        unit_of_measurement=pick("unit") if platform in ("sensor", "number") else None,
        state_class=pick("state_class") if platform == "sensor" else None,
        entity_category=pick("entity_category"),
        enabled_by_default=spec.get("enabled_by_default", defaults.get("enabled_by_default", True)),
        options=tuple(options) if options else None,
        expire_after=int(parse_duration(expire)) if expire else None,
        extra={k: spec[k] for k in ENTITY_FIELDS if k in spec},
    )


def _steps(specs: list[dict] | None) -> tuple[Step, ...]:
    out = []
    for spec in specs or []:
        if "command" in spec:
            out.append(Step("command", command=spec["command"], value=spec.get("value")))
        elif "publish" in spec:
            p = spec["publish"]
            out.append(
                Step(
                    "publish",
                    topic=p["topic"],
                    payload=p.get("payload", ""),
                    retain=p.get("retain", False),
                    qos=p.get("qos", 0),
                )
            )
        elif "notify" in spec:
            n = spec["notify"]
            title, message = (None, n) if isinstance(n, str) else (n.get("title"), n["message"])
            out.append(Step("notify", title=title, message=message))
        elif "delay" in spec:
            out.append(Step("delay", seconds=parse_duration(spec["delay"])))
    return tuple(out)


def _windows(texts: list[str], sensor_ids: frozenset[str]) -> tuple[Window, ...]:
    """The history each expression needs, decided here so the agent never parses an expression twice."""
    seen: dict[str, float] = {}
    for text in texts:
        for _func, source, seconds in expressions.check(text, sensor_ids).windows:
            seen[source] = max(seen.get(source, 0.0), seconds)
    return tuple(Window(source, seconds) for source, seconds in seen.items())


def _topics(mqtt: Mqtt, device: Device) -> Topics:
    base = f"{mqtt.topic_prefix}/{device.id}"
    return Topics(
        base=base,
        availability=f"{base}/availability",
        capabilities=f"{base}/capabilities",
        health=f"{base}/health",
        discovery=f"{mqtt.discovery_prefix}/device/{device.id}/config",
    )


SWITCHABLE = ("sensors", "commands")  # sections whose entries `enabled: false` turns off


def turned_off(data: Any, section: str) -> list[str]:
    """The ids in `section` that say `enabled: false`."""
    items = data.get(section) if isinstance(data, dict) else None
    if not isinstance(items, dict):
        return []
    return [k for k, v in items.items() if isinstance(v, dict) and v.get("enabled") is False]


def without_turned_off(data: dict) -> dict:
    """`data` as if the sensors and commands that say `enabled: false` were not written (they are checked
    like the others, then left out of everything that uses them). Copies only what it changes."""
    out = data
    for section in SWITCHABLE:
        off = turned_off(data, section)
        if off:
            out = dict(out) if out is data else out
            out[section] = {k: v for k, v in data[section].items() if k not in off}
    return out


def _sensors(data: dict, device: Device, base: str, sensor_ids: frozenset[str]) -> tuple[Sensor, ...]:
    sensors = []
    for sid, spec in (data.get("sensors") or {}).items():
        entry = PROBES.get(spec["probe"]) if spec.get("probe") else None
        defaults = effective_defaults(entry, spec)
        platform = spec.get("platform", defaults.get("platform", "sensor"))
        publish = spec.get("publish") or {}
        expr = spec.get("expr")
        sensors.append(
            Sensor(
                id=sid,
                entity=_entity(platform, sid, spec, device, defaults),
                state_topic=f"{base}/state/{sid}",
                every=parse_duration(spec["every"]) if "every" in spec else float(defaults.get("every", DEFAULT_EVERY)),
                probe=spec.get("probe"),
                args=dict(spec.get("args", {})),
                expr=expr,
                inputs=tuple(sorted(expressions.check(expr, sensor_ids).names)) if expr else (),
                precision=spec.get("precision", defaults.get("precision")),
                min_change=publish.get("min_change"),
                max_silence=parse_duration(publish["max_silence"]) if "max_silence" in publish else None,
                optional=spec.get("optional", False),
                windows=_windows([expr], sensor_ids) if expr else (),
            )
        )
    return tuple(sensors)


def _commands(data: dict, device: Device, base: str, confirm_window: float) -> tuple[Command, ...]:
    policies = data.get("policies") or {}
    cooldowns = policies.get("cooldowns") or {}
    confirm_list = set(policies.get("confirm") or [])
    commands = []
    for cid, spec in (data.get("commands") or {}).items():
        own = spec.get("policy") or {}
        platform = spec.get("platform", "button")
        stateful = platform in ("switch", "number", "select", "text")
        cooldown = own.get("cooldown", cooldowns.get(cid, policies.get("cooldown")))
        confirm = own.get("confirm")
        commands.append(
            Command(
                id=cid,
                action=spec["action"],
                entity=_entity(platform, cid, spec, device, {}),
                command_topic=f"{base}/cmd/{cid}/set",
                result_topic=f"{base}/cmd/{cid}/result",
                state_topic=f"{base}/cmd/{cid}/state" if stateful else None,
                args=spec.get("args", {}),
                signed=bool(own.get("signed")) or bool(policies.get("require_signed")),  # never weaker than the policy
                cooldown=parse_duration(cooldown) if cooldown else 0.0,
                confirm=parse_duration(confirm) if confirm else (confirm_window if cid in confirm_list else None),
                optional=spec.get("optional", False),
            )
        )
    return tuple(commands)


CHILD_EVERY = 30.0
CHILD_MAX_SILENCE = 600.0


def _children(data: dict, device: Device, base: str) -> tuple[ChildSet, ...]:
    """Child sets: the source's field and command descriptions, narrowed and overridden by the profile.
    Entity ids hold `{key}`, which the agent fills in per instance."""
    policies = data.get("policies") or {}
    require_signed = bool(policies.get("require_signed"))
    cooldowns = policies.get("cooldowns") or {}
    confirm_list = set(policies.get("confirm") or [])
    confirm_window = parse_duration(policies.get("confirm_window", "10s"))
    out = []
    for set_id, spec in (data.get("children") or {}).items():
        entry = SOURCES.get(spec["source"])
        fields: dict = entry.defaults.get("fields") or {}
        offered: dict = entry.defaults.get("commands") or {}
        chosen_sensors = spec.get("sensors")
        if chosen_sensors is None:
            chosen_sensors = {name: {} for name in entry.defaults.get("sensors") or fields}
        sensors = []
        for fid, own in chosen_sensors.items():
            own = own or {}
            meta = dict(fields[fid])
            platform = meta.pop("platform", "sensor")
            merged = {**{k: v for k, v in meta.items() if k != "precision"}, **own}
            sensors.append(
                ChildSensor(
                    id=fid,
                    field=fid,
                    entity=_entity(platform, f"{set_id}_{{key}}_{fid}", merged, device, {}),
                    precision=own.get("precision", meta.get("precision")),
                    min_change=own.get("min_change"),
                )
            )
        chosen_commands = spec.get("commands")
        if chosen_commands is None:
            chosen_commands = {name: {} for name in offered}
        commands = []
        for cid, own in chosen_commands.items():
            own = own or {}
            meta = dict(offered[cid])
            guard = own.get("policy") or {}
            policy_id = f"{set_id}.{cid}"
            # as for any command: its own policy, then `policies` naming it `<set>.<command>`, then defaults
            confirm = guard.get("confirm", meta.get("confirm"))  # a duration, or false to drop a default
            if confirm:
                confirm_s = parse_duration(confirm)
            else:
                confirm_s = confirm_window if confirm is None and policy_id in confirm_list else None
            cooldown = guard.get("cooldown", cooldowns.get(policy_id, policies.get("cooldown")))
            commands.append(
                ChildCommand(
                    id=cid,
                    policy_id=policy_id,
                    action=meta["action"],
                    entity=_entity(
                        "button",
                        f"{set_id}_{{key}}_{cid}",
                        {
                            "name": own.get("name", meta.get("name", words(cid))),
                            **{k: own[k] for k in ("icon",) if k in own},
                        },
                        device,
                        {"icon": meta.get("icon"), "device_class": meta.get("device_class")},
                    ),
                    args=dict(meta.get("args") or {}),
                    signed=bool(guard.get("signed")) or require_signed,
                    cooldown=parse_duration(cooldown) if cooldown else 0.0,
                    confirm=confirm_s,
                )
            )
        out.append(
            ChildSet(
                id=set_id,
                source=spec["source"],
                topic=f"{base}/{set_id}",
                every=parse_duration(spec["every"]) if "every" in spec else CHILD_EVERY,
                max_silence=parse_duration(spec["max_silence"]) if "max_silence" in spec else CHILD_MAX_SILENCE,
                model=entry.defaults.get("model"),
                args=dict(spec.get("args") or {}),
                optional=bool(spec.get("optional", False)),
                sensors=tuple(sensors),
                commands=tuple(commands),
            )
        )
    return tuple(out)


def _rules(data: dict, device: Device, base: str, sensor_ids: frozenset[str]) -> tuple[Rule, ...]:
    rules = []
    for rid, spec in (data.get("rules") or {}).items():
        texts = [spec["when"]] + ([spec["clear"]] if spec.get("clear") else [])
        names: set[str] = set()
        for text in texts:
            names |= expressions.check(text, sensor_ids).names
        expose = spec.get("expose")
        entity = None
        if expose:
            extra = expose if isinstance(expose, dict) else {}
            entity = _entity("binary_sensor", f"rule_{rid}", {"name": words(rid), **extra}, device, {})
        rules.append(
            Rule(
                id=rid,
                when=spec["when"],
                do=_steps(spec["do"]),
                inputs=tuple(sorted(names)),
                clear=spec.get("clear"),
                hold=parse_duration(spec.get("for", 0)),
                cooldown=parse_duration(spec.get("cooldown", 0)),
                on_clear=_steps(spec.get("on_clear")),
                entity=entity,
                state_topic=f"{base}/rule/{rid}/state" if entity else None,
                windows=_windows(texts, sensor_ids),
            )
        )
    return tuple(rules)


def _schedules(data: dict) -> tuple[Schedule, ...]:
    return tuple(
        Schedule(
            id=sid,
            do=_steps(spec["do"]),
            cron=spec.get("cron"),
            timezone=spec.get("timezone"),
            every=parse_duration(spec["every"]) if "every" in spec else None,
            jitter=parse_duration(spec.get("jitter", 0)),
        )
        for sid, spec in (data.get("schedules") or {}).items()
    )


def _policy(data: dict, confirm_window: float) -> Policy:
    policies = data.get("policies") or {}
    hmac = policies.get("hmac") or {}
    rate = policies.get("rate_limit") or {}
    return Policy(
        allow=tuple(policies["allow"]) if "allow" in policies else None,
        cooldown=parse_duration(policies.get("cooldown", 0)),
        confirm_window=confirm_window,
        require_signed=policies.get("require_signed", False),
        keyring=hmac.get("keyring"),
        window=parse_duration(hmac.get("window", "60s")),
        rate_max=rate.get("max"),
        rate_per=parse_duration(rate["per"]) if "per" in rate else None,
        max_payload=parse_size(policies.get("max_payload", 4096)),
    )


def _service(data: dict) -> Service:
    spec = data.get("service") or {}
    return Service(user=spec.get("user", Service.user), allow_root=bool(spec.get("allow_root", False)))


def compile_document(
    doc: Document, *, facts: dict[str, Any] | None = None, device_id: str | None = None, profile_name: str | None = None
) -> Plan:
    """The Plan of a document that validated without errors (see pilot.profile.pipeline)."""
    from pilot import facts as host

    written = doc.data
    data = without_turned_off(written)  # a sensor or command with `enabled: false` is checked, never compiled
    facts = facts if facts is not None else host.host_facts()
    device = _device(data, facts, device_id or host.device_id())
    mqtt = _mqtt(data, device)
    topics = _topics(mqtt, device)
    sensor_ids = frozenset(data.get("sensors") or {})
    confirm_window = parse_duration((data.get("policies") or {}).get("confirm_window", "10s"))
    return Plan(
        profile=profile_name or Path(doc.file).stem,
        profile_hash=profile_hash(written),
        sources=tuple(doc.sources),
        device=device,
        mqtt=mqtt,
        topics=topics,
        policy=_policy(data, confirm_window),
        service=_service(data),
        sensors=_sensors(data, device, topics.base, sensor_ids),
        commands=_commands(data, device, topics.base, confirm_window),
        rules=_rules(data, device, topics.base, sensor_ids),
        schedules=_schedules(data),
        children=_children(data, device, topics.base),
    )
