"""Stage 3: what a schema cannot say. References resolve, expressions and cron
strings parse, durations make sense, and Home Assistant will accept the entities.

Runs on what the schema and registry stages found right: `check` leaves out each
sensor, command, rule or schedule holding an error from those stages (and any
other top-level section holding one), so the shapes and types each check reads
are known to be right, and no consequence of an error already shown is reported.
Names of entities left out still count as declared: a rule naming a command
with a typo in it is not also told the command does not exist.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

from pilot import expressions, patterns
from pilot.diagnostics import ERROR, WARNING, Diagnostic
from pilot.naming import did_you_mean
from pilot.profile.compiler import (
    NON_NUMERIC_DEVICE_CLASSES,
    SWITCHABLE,
    effective_defaults,
    turned_off,
    without_turned_off,
)
from pilot.profile.loader import Document
from pilot.registry import PROBES
from pilot.units import parse_duration, parse_size

ENTITY_BUDGET = 150
UNITS_BY_DEVICE_CLASS = {
    "temperature": {"°C", "°F", "K"},
    "battery": {"%"},
    "humidity": {"%"},
    "power": {"mW", "W", "kW", "MW", "GW", "TW", "BTU/h"},
    "energy": {"J", "kJ", "MJ", "GJ", "mWh", "Wh", "kWh", "MWh", "GWh", "TWh", "cal", "kcal", "Mcal", "Gcal"},
    "voltage": {"µV", "mV", "V", "kV", "MV"},
    "current": {"mA", "A"},
    "frequency": {"Hz", "kHz", "MHz", "GHz"},
    "duration": {"d", "h", "min", "s", "ms", "µs"},
    "data_size": {
        "bit",
        "kbit",
        "Mbit",
        "Gbit",
        "B",
        "kB",
        "MB",
        "GB",
        "TB",
        "PB",
        "EB",
        "ZB",
        "YB",
        "KiB",
        "MiB",
        "GiB",
        "TiB",
        "PiB",
        "EiB",
        "ZiB",
        "YiB",
    },
    "data_rate": {"bit/s", "kbit/s", "Mbit/s", "Gbit/s", "B/s", "kB/s", "MB/s", "GB/s", "KiB/s", "MiB/s", "GiB/s"},
}


ENTITY_SECTIONS = ("sensors", "commands", "rules", "schedules", "children")


class _Collector:
    def __init__(self, doc: Document, left_out: frozenset[str] = frozenset()) -> None:
        self.doc = doc
        self.out: list[Diagnostic] = []
        self.left_out = left_out  # top-level sections skipped for an earlier stage's error
        self.off = {section: frozenset(turned_off(doc.data, section)) for section in SWITCHABLE}

    def declared(self, section: str) -> list[str] | None:
        """Every id in a section as written, including entities left out of these checks but not the ones
        turned off; None when the section is there but not a map, so what it declares is unknown."""
        items = self.doc.data.get(section) if isinstance(self.doc.data, dict) else None
        if items is None:
            return []
        off = self.off.get(section, frozenset())
        return [k for k in items if k not in off] if isinstance(items, dict) else None

    def unknown(self, section: str, name: str, known: list[str]) -> str:
        """Why `name` cannot be used: turned off, or not declared (with a did-you-mean)."""
        what = section[:-1]
        if name in self.off.get(section, ()):
            return f"{what} '{name}' is turned off (`enabled: false` under `{section}`)"
        return f"no {what} '{name}' is declared under `{section}`{did_you_mean(name, known)}"

    def error(self, path: tuple, message: str, code: str, *, key: bool = False) -> None:
        self.out.append(self.doc.diag(path, message, code=code, key=key))

    def warn(self, path: tuple, message: str, code: str, *, key: bool = False) -> None:
        self.out.append(self.doc.diag(path, message, severity=WARNING, code=code, key=key))

    def expr_error(self, path: tuple, offset: int, message: str) -> None:
        pos = self.doc.column_in(path, offset)
        from pilot.diagnostics import json_path

        self.out.append(Diagnostic(pos.file, pos.line, pos.col, ERROR, json_path(path), message, "expression"))


def _steps(data: dict) -> Iterator[tuple[tuple, dict]]:
    for section in ("rules", "schedules"):
        for item_id, item in (data.get(section) or {}).items():
            for field in ("do", "on_clear"):
                for i, step in enumerate(item.get(field) or []):
                    yield (section, item_id, field, i), step


def _durations(c: _Collector, data: dict) -> None:
    def positive(path: tuple, value: Any, *, floor: float = 0.0, what: str = "") -> None:
        if value is None:
            return
        seconds = parse_duration(value)
        if seconds <= floor:
            c.error(path, f"must be longer than {floor:g}s" if floor else "must be longer than 0", "duration")

    for sid, s in (data.get("sensors") or {}).items():
        positive(("sensors", sid, "every"), s.get("every"))
        if s.get("every") is not None and 0 < parse_duration(s["every"]) < 1:  # 0 is an error above
            c.warn(
                ("sensors", sid, "every"), "reading more often than once a second costs CPU for little gain", "duration"
            )
        positive(("sensors", sid, "expire_after"), s.get("expire_after"))
        positive(("sensors", sid, "publish", "max_silence"), (s.get("publish") or {}).get("max_silence"))
        every = parse_duration(s.get("every", "30s"))
        if s.get("expire_after") and parse_duration(s["expire_after"]) <= every:
            c.warn(
                ("sensors", sid, "expire_after"),
                "expire_after is not longer than `every`: the entity will flicker to unavailable",
                "duration",
            )
    for rid, r in (data.get("rules") or {}).items():
        positive(("rules", rid, "for"), r.get("for"), floor=-1)
        positive(("rules", rid, "cooldown"), r.get("cooldown"), floor=-1)
    for sid, s in (data.get("schedules") or {}).items():
        positive(("schedules", sid, "every"), s.get("every"))
        if s.get("every") and 0 < parse_duration(s["every"]) < 1:
            c.error(("schedules", sid, "every"), "schedules run at most once a second", "duration")
    for path, step in _steps(data):
        positive(path + ("delay",), step.get("delay"))


# `<prefix>/<device>/<word>` topics of the agent itself: a child set's id is such a word too
RESERVED_TOPICS = frozenset({"availability", "audit", "capabilities", "cmd", "health", "rule", "state"})


def child_command_ids(data: dict) -> list[str]:
    """`<set>.<command>` for every command of every child set: what `policies` may name."""
    from pilot.registry import SOURCES

    out = []
    for set_id, spec in (data.get("children") or {}).items():
        entry = SOURCES.get(spec.get("source")) if isinstance(spec.get("source"), str) else None
        chosen = spec.get("commands")
        names = (
            list(chosen) if isinstance(chosen, dict) else list((entry.defaults.get("commands") or {}) if entry else ())
        )
        out += [f"{set_id}.{name}" for name in names]
    return out


def _children(c: _Collector, data: dict) -> None:
    from pilot.registry import SOURCES

    for set_id, spec in (data.get("children") or {}).items():
        if set_id in RESERVED_TOPICS:
            c.error(
                ("children", set_id),
                f"'{set_id}' is taken by the agent's own topics ({', '.join(sorted(RESERVED_TOPICS))}); "
                "choose another id",
                "reference",
                key=True,
            )
        entry = SOURCES.get(spec["source"])
        if entry is None:
            continue  # the registry stage said so
        every = parse_duration(spec["every"]) if spec.get("every") is not None else None
        if every is not None and every < 1:
            c.error(("children", set_id, "every"), "a source is read at most once a second", "duration")
        elif every is not None and every < 10:
            c.warn(
                ("children", set_id, "every"),
                "asking a source more often than every 10 seconds loads it (a Proxmox API) for little gain",
                "duration",
            )
        for section, kind in (("sensors", "fields"), ("commands", "commands")):
            known = list(entry.defaults.get(kind) or {})
            for name in spec.get(section) or {}:
                if name not in known:
                    what = "field" if kind == "fields" else "command"
                    c.error(
                        ("children", set_id, section, name),
                        f"source {entry.name} has no {what} '{name}'{did_you_mean(name, known)}",
                        "reference",
                        key=True,
                    )


def _references(c: _Collector, data: dict) -> None:
    commands = c.declared("commands")
    if commands is None:
        return
    named = commands + child_command_ids(data)  # what `policies` may name: child commands as `<set>.<id>`
    for path, step in _steps(data):
        target = step.get("command")
        if target is not None and target not in commands:
            c.error(path + ("command",), c.unknown("commands", target, commands), "reference")
    policies = data.get("policies") or {}
    for field in ("allow", "confirm"):
        for i, name in enumerate(policies.get(field) or []):
            if name not in named and name not in c.off["commands"]:  # allowing one turned off is harmless
                c.error(
                    ("policies", field, i),
                    f"no command '{name}' is declared under `commands`{did_you_mean(name, named)}",
                    "reference",
                )
    for name in policies.get("cooldowns") or {}:
        if name not in named and name not in c.off["commands"]:
            c.error(
                ("policies", "cooldowns", name),
                f"no command '{name}' is declared under `commands`{did_you_mean(name, named)}",
                "reference",
                key=True,
            )
    allow = policies.get("allow")
    if allow is not None:
        for path, step in _steps(data):
            target = step.get("command")
            if target in commands and target not in allow:
                c.warn(
                    path + ("command",),
                    f"command '{target}' is not in `policies.allow`, so this step will be refused",
                    "reference",
                )


def _expressions(c: _Collector, data: dict) -> None:
    declared = c.declared("sensors")
    if declared is None:
        return
    sensors = frozenset(declared)
    graph: dict[str, frozenset[str]] = {}
    places = [(("sensors", sid, "expr"), s.get("expr")) for sid, s in (data.get("sensors") or {}).items()]
    for rid, r in (data.get("rules") or {}).items():
        places += [(("rules", rid, "when"), r.get("when")), (("rules", rid, "clear"), r.get("clear"))]
    for path, text in places:
        if text is None:
            continue
        checked = expressions.check(text, sensors)
        for err in checked.errors:
            off = re.match(r"unknown name '([^']*)'", err.message)
            if off and off.group(1) in c.off["sensors"]:
                c.expr_error(path, err.offset, c.unknown("sensors", off.group(1), list(sensors)))
            else:
                c.expr_error(path, err.offset, err.message)
        if path[0] == "sensors":
            graph[path[1]] = checked.names
            if path[1] in checked.names:
                c.error(path, f"sensor '{path[1]}' cannot use its own value", "expression")
    # a derived sensor that depends on itself through others never gets a value
    state: dict[str, int] = {}

    def visit(node: str, trail: list[str]) -> None:
        state[node] = 1
        for nxt in sorted(graph.get(node, ())):
            if nxt == node:
                continue
            if state.get(nxt) == 1:
                cycle = trail[trail.index(nxt) :] + [nxt] if nxt in trail else [node, nxt]
                c.error(
                    ("sensors", node, "expr"),
                    "derived sensors depend on each other in a cycle: " + " -> ".join(cycle),
                    "expression",
                )
            elif state.get(nxt) is None and nxt in graph:
                visit(nxt, trail + [nxt])
        state[node] = 2

    for node in sorted(graph):
        if state.get(node) is None:
            visit(node, [node])


def _cron(c: _Collector, data: dict) -> None:
    for sid, s in (data.get("schedules") or {}).items():
        tz = s.get("timezone")
        if tz is not None:
            try:
                from zoneinfo import ZoneInfo

                ZoneInfo(tz)
            except Exception:
                c.error(
                    ("schedules", sid, "timezone"),
                    f"unknown time zone '{tz}'; use an IANA name such as Europe/Berlin",
                    "cron",
                )
        cron = s.get("cron")
        if cron is None:
            continue
        from pilot.cron import problem

        reason = problem(cron)
        if reason is not None:
            c.error(("schedules", sid, "cron"), reason, "cron")


MAX_PAYLOAD_LIMIT = 1024 * 1024  # the command parsers' ceiling, whatever a profile asks for


def _policies(c: _Collector, data: dict) -> None:
    policies = data.get("policies") or {}
    if "max_payload" in policies and parse_size(policies["max_payload"]) > MAX_PAYLOAD_LIMIT:
        c.error(
            ("policies", "max_payload"),
            "at most 1 MiB: a command is a few bytes, and every command message is read whole before it is checked",
            "policy",
        )
    signed_everywhere = policies.get("require_signed", False)
    has_keyring = bool((policies.get("hmac") or {}).get("keyring"))
    for cid, cmd in (data.get("commands") or {}).items():
        if "policies" in c.left_out:
            break  # the keyring may be there, behind the error
        if signed_everywhere and (cmd.get("policy") or {}).get("signed") is False:
            c.error(
                ("commands", cid, "policy", "signed"),
                f"command '{cid}' says `signed: false`, but `policies.require_signed` requires a signature on every "
                "command; remove one of the two",
                "policy",
            )
        if ((cmd.get("policy") or {}).get("signed") or signed_everywhere) and not has_keyring:
            path = (
                ("commands", cid, "policy", "signed")
                if (cmd.get("policy") or {}).get("signed")
                else ("policies", "require_signed")
            )
            c.error(
                path, f"command '{cid}' requires a signature but `policies.hmac.keyring` names no keyring", "policy"
            )
        pattern = cmd.get("pattern")
        if pattern is not None:
            reason = patterns.problem(pattern)  # exactly what the agent refuses: one module decides
            if reason is not None:
                c.error(("commands", cid, "pattern"), f"not a regular expression Pilot can run: {reason}", "pattern")
        if cmd.get("platform") == "number":
            low, high, step = cmd.get("min"), cmd.get("max"), cmd.get("step")
            if low is not None and high is not None and low >= high:
                c.error(("commands", cid, "max"), f"max ({high}) must be greater than min ({low})", "entity")
            elif step is not None and low is not None and high is not None and step > high - low:
                c.error(("commands", cid, "step"), f"step ({step}) is larger than the range {low}..{high}", "entity")


def _command_platforms(c: _Collector, data: dict) -> None:
    from pilot.registry import ACTIONS

    for cid, cmd in (data.get("commands") or {}).items():
        entry = ACTIONS.get(cmd["action"])
        platform = cmd.get("platform", "button")
        if entry is not None and entry.platforms and platform not in entry.platforms:
            path = ("commands", cid, "platform") if "platform" in cmd else ("commands", cid, "action")
            c.error(
                path,
                f"action '{entry.name}' is driven by a {' or '.join(entry.platforms)}, not a {platform}"
                + ("" if "platform" in cmd else f"; add `platform: {entry.platforms[0]}`"),
                "entity",
            )


def _pattern_args(c: _Collector, data: dict) -> None:
    """Action arguments marked `x-regex` (process.run's value_pattern) run through pilot.patterns too."""
    from pilot.registry import ACTIONS

    for cid, cmd in (data.get("commands") or {}).items():
        entry = ACTIONS.get(cmd["action"])
        if entry is None:
            continue
        for name, spec in (entry.params.get("properties") or {}).items():
            value = (cmd.get("args") or {}).get(name)
            if isinstance(spec, dict) and spec.get("x-regex") and isinstance(value, str):
                reason = patterns.problem(value)
                if reason is not None:
                    c.error(
                        ("commands", cid, "args", name), f"not a regular expression Pilot can run: {reason}", "pattern"
                    )


# `{name}` as pilot.agent.steps renders it is [a-z][a-z0-9_]*; this wider match also finds the
# `{CPU_Temp}` or `{cpu-temp}` that the agent would leave as written.
PLACEHOLDER = re.compile(r"\{([A-Za-z_][A-Za-z0-9_.-]*)\}")
_FILLED = re.compile(r"[a-z][a-z0-9_]*")


def _placeholders(c: _Collector, path: tuple, template: Any, names: list[str], where: str) -> None:
    """Each `{name}` in a template that nothing fills in: the agent would send it as written."""
    if not isinstance(template, str):
        return
    for match in PLACEHOLDER.finditer(template):
        name = match.group(1)
        if name in names and _FILLED.fullmatch(name):
            continue
        close = did_you_mean(name, names) or did_you_mean(name.lower().replace("-", "_"), names)
        if name == "value" and where == "steps":
            hint = ": {value} is a command's value; a step fills in sensor ids"
        elif where == "steps":
            hint = f": a step fills in sensor ids{close}" if names else "; this profile has no sensors"
        else:
            hint = f": {where} fills in only {', '.join('{' + n + '}' for n in names)}{close}"
        c.error(path, f"unknown placeholder {{{name}}}{hint}", "template")


def _templates(c: _Collector, data: dict) -> None:
    """Placeholders in step messages and payloads name sensors; in action args, what the action fills in."""
    from pilot.registry import ACTIONS

    sensors = c.declared("sensors")
    for path, step in _steps(data) if sensors is not None else ():
        note = step.get("notify")
        if isinstance(note, str):
            _placeholders(c, path + ("notify",), note, sensors, "steps")
        elif isinstance(note, dict):
            _placeholders(c, path + ("notify", "message"), note.get("message"), sensors, "steps")
            if PLACEHOLDER.search(note.get("title") or ""):
                c.warn(
                    path + ("notify", "title"),
                    "a notification's title is shown as written; put {placeholders} in its message",
                    "template",
                )
        publish = step.get("publish")
        if isinstance(publish, dict):
            _placeholders(c, path + ("publish", "payload"), publish.get("payload"), sensors, "steps")
    for cid, cmd in (data.get("commands") or {}).items():
        entry = ACTIONS.get(cmd["action"])
        if entry is None:
            continue
        for name, spec in (entry.params.get("properties") or {}).items():
            if isinstance(spec, dict) and spec.get("x-template"):
                value = (cmd.get("args") or {}).get(name)
                _placeholders(c, ("commands", cid, "args", name), value, list(spec["x-template"]), entry.name)


def _entities(c: _Collector, data: dict) -> None:
    device_name = ((data.get("device") or {}).get("name") or "").strip()
    count = 0
    for section in ("sensors", "commands"):
        for eid, ent in (data.get(section) or {}).items():
            count += 1
            name = ent.get("name")
            if device_name and isinstance(name, str) and name.lower().startswith(device_name.lower()):
                c.warn(
                    (section, eid, "name"),
                    f"entity names should not start with the device name '{device_name}': "
                    "Home Assistant adds it already",
                    "ha-lint",
                )
            suggested = ent.get("default_entity_id")
            if section == "sensors":
                entry = PROBES.get(ent["probe"]) if ent.get("probe") else None
                platform = ent.get("platform", (entry.defaults if entry else {}).get("platform", "sensor"))
            else:
                platform = ent.get("platform", "button")
            if suggested and suggested.split(".", 1)[0] != platform:
                c.error(
                    (section, eid, "default_entity_id"),
                    f"'{suggested}' must start with '{platform}.', the entity's platform",
                    "ha-lint",
                )
    for sid, s in (data.get("sensors") or {}).items():
        entry = PROBES.get(s["probe"]) if s.get("probe") else None
        defaults = effective_defaults(entry, s)
        platform = s.get("platform", defaults.get("platform", "sensor"))
        state_class = s.get("state_class", defaults.get("state_class"))
        device_class = s.get("device_class", defaults.get("device_class"))
        unit = s.get("unit", defaults.get("unit"))
        options = s.get("options", defaults.get("options"))
        if s.get("entity_category") == "config":
            c.error(
                ("sensors", sid, "entity_category"),
                "`config` is for writable entities; a sensor is `diagnostic` or nothing",
                "ha-lint",
            )
        returns_bool = (s.get("args") or {}).get("parse") == "bool"
        if (
            platform == "binary_sensor"
            and entry
            and defaults.get("platform", "sensor") != "binary_sensor"
            and not returns_bool
        ):
            c.warn(
                ("sensors", sid, "platform"),
                f"probe '{entry.name}' returns a value, not on/off; use `expr:` for a binary sensor",
                "ha-lint",
            )
        if platform != "sensor":
            continue
        if state_class and (device_class in NON_NUMERIC_DEVICE_CLASSES or options):
            c.error(
                ("sensors", sid, "state_class"),
                f"state_class applies only to numeric sensors, not to device_class '{device_class}'",
                "ha-lint",
            )
        if device_class == "enum" and not options:
            c.error(("sensors", sid), "a sensor with device_class enum needs `options:`", "ha-lint")
        if options and device_class != "enum":
            c.error(("sensors", sid, "options"), "`options` needs device_class: enum", "ha-lint")
        if device_class == "enum" and unit:
            c.error(("sensors", sid, "unit"), "an enum sensor has no unit", "ha-lint")
        allowed = UNITS_BY_DEVICE_CLASS.get(device_class or "")
        if allowed and unit and unit not in allowed:
            path = (
                ("sensors", sid, "unit")
                if "unit" in s
                else ("sensors", sid, "device_class")
                if "device_class" in s
                else ("sensors", sid)
            )
            c.warn(
                path,
                f"unit '{unit}' is not one Home Assistant accepts for device_class {device_class} "
                f"({', '.join(sorted(allowed))})",
                "ha-lint",
            )
    budget = count + len(data.get("rules") or {})
    if budget > ENTITY_BUDGET:
        c.warn(
            ("sensors",),
            f"{budget} entities on one device; Home Assistant stays usable up to about {ENTITY_BUDGET}",
            "ha-lint",
        )


PROFILE_NAME = re.compile(r"[A-Za-z0-9._-]+")
NEEDED_FILES = (
    (("mqtt", "password_file"), "the MQTT password"),
    (("mqtt", "tls", "ca_file"), "the broker's CA"),
    (("mqtt", "tls", "cert_file"), "the client certificate"),
    (("mqtt", "tls", "key_file"), "the client key"),
    (("policies", "hmac", "keyring"), "the signing keyring"),
)


def _needed_files(c: _Collector, data: dict) -> None:
    """Files the agent will open: a warning when they cannot be read here (a CI machine has no secrets;
    `--strict` makes it an error), so `pilot run` is not the first to find out."""
    for path, what in NEEDED_FILES:
        value: Any = data
        for key in path:
            value = value.get(key) if isinstance(value, dict) else None
        if not isinstance(value, str) or not value:
            continue
        try:
            with open(value, "rb") as handle:
                handle.read(1)
        except OSError as exc:
            c.warn(
                path,
                f"{what} {value} cannot be read on this machine ({exc.strerror or exc}); "
                "`pilot run` will refuse to start without it",
                "file",
            )


def _profile_name(c: _Collector, data: dict) -> None:
    """The file's name becomes the profile's name, which is written into polkit rules, units and
    topics: it must be plain, or `pilot service install` refuses it later."""
    name = Path(c.doc.file).stem
    if not PROFILE_NAME.fullmatch(name):
        c.out.append(
            Diagnostic(
                c.doc.file,
                1,
                1,
                ERROR,
                "",
                "the file name must be letters, digits, '.', '_' "
                "and '-' (it becomes the profile's name in generated files); rename the file",
                "name",
            )
        )


def usable(data: Any, skip: Iterable[tuple]) -> tuple[dict | None, frozenset[str]]:
    """`data` without what the paths in `skip` make unreliable: the entity holding each, or the
    whole top-level section outside ENTITY_SECTIONS; None when the document itself is broken.
    Also returns the top-level sections left out whole. Copies only what it changes."""
    skip = list(skip)
    if not isinstance(data, dict) or any(not p for p in skip):
        return None, frozenset()
    out = dict(data)
    left_out: set[str] = set()
    for path in skip:
        top = path[0]
        if top not in out:
            continue
        if top in ENTITY_SECTIONS and len(path) >= 2 and isinstance(out[top], dict):
            if out[top] is data[top]:
                out[top] = dict(out[top])
            out[top].pop(path[1], None)
        else:
            del out[top]
            left_out.add(top)
    for section in ENTITY_SECTIONS:  # never trust a shape the schema was not asked about
        items = out.get(section)
        if section in out and not (isinstance(items, dict) and all(isinstance(v, dict) for v in items.values())):
            out.pop(section)
            left_out.add(section)
    return out, frozenset(left_out)


def check(doc: Document, skip: Iterable[tuple] = ()) -> list[Diagnostic]:
    """Every check, on the parts of the document no earlier stage found wrong (see `usable`)."""
    data, left_out = usable(doc.data, skip)
    c = _Collector(doc, left_out)
    if data is not None:
        data = without_turned_off(data)
    if data is None:
        _profile_name(c, {})
        return c.out
    for stage in (
        _profile_name,
        _needed_files,
        _durations,
        _references,
        _expressions,
        _cron,
        _policies,
        _children,
        _command_platforms,
        _pattern_args,
        _templates,
        _entities,
    ):
        stage(c, data)
    return c.out
