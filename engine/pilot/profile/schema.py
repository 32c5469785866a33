"""The profile language v1 as JSON Schema (draft 2020-12).

The base schema is what the validator checks in stage 1. `published_schema()`
adds the registries (probe and action names with their docs and argument
schemas) so editors complete `probe:` names; that is what `pilot schema`
prints and what `schemas/` holds. Every property carries a description
because editors show it, and objects are closed so a typo never passes.
`x-error` is our own keyword: the plain-English message used when that
subschema fails, instead of the validator's generic one.
"""

from __future__ import annotations

import copy
import json
from typing import Any

from pilot.units import DURATION_PATTERN, SIZE_PATTERN

SCHEMA_BASE_URI = "https://pilot-agent.dev/schemas"
PROFILE_ID = f"{SCHEMA_BASE_URI}/profile.v1.schema.json"
PACK_ID = f"{SCHEMA_BASE_URI}/pack.v1.schema.json"

SENSOR_DEVICE_CLASSES = sorted(
    """
absolute_humidity apparent_power aqi area atmospheric_pressure battery blood_glucose_concentration
carbon_dioxide carbon_monoxide conductivity current data_rate data_size date distance duration energy
energy_distance energy_storage enum frequency gas humidity illuminance irradiance moisture monetary
nitrogen_dioxide nitrogen_monoxide nitrous_oxide ozone ph pm1 pm10 pm25 pm4 power power_factor
precipitation precipitation_intensity pressure reactive_energy reactive_power signal_strength
sound_pressure speed sulphur_dioxide temperature timestamp volatile_organic_compounds
volatile_organic_compounds_parts voltage volume volume_flow_rate volume_storage water weight
wind_direction wind_speed""".split()
)
BINARY_SENSOR_DEVICE_CLASSES = sorted(
    """
battery battery_charging carbon_monoxide cold connectivity door garage_door gas heat light lock
moisture motion moving occupancy opening plug power presence problem running safety smoke sound
tamper update vibration window""".split()
)
BUTTON_DEVICE_CLASSES = ["identify", "restart", "update"]
SWITCH_DEVICE_CLASSES = ["outlet", "switch"]
STATE_CLASSES = ["measurement", "measurement_angle", "total", "total_increasing"]
SENSOR_PLATFORMS = ["sensor", "binary_sensor"]
COMMAND_PLATFORMS = ["button", "switch", "number", "select", "text"]
HOST_FEATURES = ["backlight", "battery", "cpufreq", "hwmon", "nvidia_gpu", "proxmox", "raspberry_pi", "thermal_zone"]
ID_PATTERN = r"^[a-z][a-z0-9_]{0,63}$"
ID_ERROR = "ids are lower-case letters, digits and underscores, starting with a letter (at most 64)"


def _s(type_: str | list[str], description: str, **extra: Any) -> dict[str, Any]:
    return {"type": type_, "description": description, **extra}


def duration(description: str) -> dict[str, Any]:
    return {
        "type": "string",
        "pattern": DURATION_PATTERN,
        "maxLength": 64,  # 400 nines are a float's infinity: an interval that would never end
        "description": description + " A duration such as `10s`, `5m` or `1h30m`.",
        "x-error": "expected a duration such as 10s, 5m or 1h30m",
    }


def _closed(description: str, properties: dict[str, Any], **extra: Any) -> dict[str, Any]:
    return {
        "type": "object",
        "description": description,
        "properties": properties,
        "additionalProperties": False,
        **extra,
    }


def _id_map(description: str, item_ref: str) -> dict[str, Any]:
    return {
        "type": "object",
        "description": description,
        "propertyNames": {"pattern": ID_PATTERN, "x-error": ID_ERROR},
        "additionalProperties": {"$ref": item_ref},
    }


def _entity_common() -> dict[str, Any]:
    return {
        "name": _s(
            ["string", "null"],
            "Name shown in Home Assistant. Defaults to the id in words; "
            "null uses the device's name alone. Do not repeat the device name.",
        ),
        "icon": _s(
            "string",
            "Material Design icon, e.g. `mdi:thermometer`.",
            pattern=r"^mdi:[a-z0-9-]+$",
            **{"x-error": "icons look like mdi:thermometer"},
        ),
        "entity_category": _s(
            "string",
            "`diagnostic` for read-only details, `config` for settings (only on writable entities).",
            enum=["diagnostic", "config"],
        ),
        "enabled_by_default": _s("boolean", "Whether Home Assistant enables the entity when it first appears."),
        "default_entity_id": _s(
            "string",
            "Suggested entity id in Home Assistant, e.g. `sensor.office_cpu`.",
            pattern=r"^[a-z_]+\.[a-z0-9_]+$",
        ),
    }


def _sensor() -> dict[str, Any]:
    props = {
        "probe": _s("string", "Built-in reader that produces the value (see `pilot probes`)."),
        "args": _s("object", "Arguments for the probe; each probe documents its own."),
        "expr": _s(
            "string",
            "Expression over other sensors' latest values instead of a probe, e.g. `cpu_temp > 85`.",
            minLength=1,
            maxLength=256,
        ),
        "every": duration("How often to read the value."),
        "platform": _s("string", "Home Assistant entity platform.", enum=SENSOR_PLATFORMS, default="sensor"),
        "unit": _s("string", "Unit of measurement shown in Home Assistant; defaults to the probe's."),
        "device_class": _s("string", "Home Assistant device class; defaults to the probe's."),
        "state_class": _s(
            "string", "Home Assistant state class, for long-term statistics of numbers.", enum=STATE_CLASSES
        ),
        "precision": _s("integer", "Decimal places to round numbers to before publishing.", minimum=0, maximum=10),
        "options": _s(
            "array", "Possible values of an `enum` sensor.", items={"type": "string"}, minItems=1, uniqueItems=True
        ),
        "publish": _closed(
            "When a new reading is published.",
            {
                "min_change": _s(
                    "number", "Publish only when the value moved at least this much (deadband).", minimum=0
                ),
                "max_silence": duration("Publish at least this often even without change (heartbeat)."),
            },
        ),
        "expire_after": duration("Home Assistant marks the value unavailable when no update came for this long."),
        "optional": _s(
            "boolean",
            "Skip this sensor quietly where its probe is unavailable "
            "(no battery, no GPU) instead of reporting an error.",
        ),
        "enabled": _s(
            "boolean",
            "`false` turns the sensor off without deleting it (one a pack declares too): it is still checked, "
            "but never read or announced, and no expression may use it.",
        ),
        **_entity_common(),
    }
    return {
        **_closed("A value read from this machine and published as a Home Assistant entity.", props),
        "allOf": [
            {
                "if": {"required": ["probe"]},
                "then": {
                    "not": {"required": ["expr"]},
                    "x-error": "a sensor takes either `probe:` or `expr:`, not both",
                },
                "else": {
                    "required": ["expr"],
                    "x-error": "a sensor needs `probe:` (a built-in reader, see `pilot probes`) "
                    "or `expr:` (an expression over other sensors)",
                },
            },
            {
                "if": {"properties": {"platform": {"const": "binary_sensor"}}, "required": ["platform"]},
                "then": {
                    "properties": {
                        "device_class": {"enum": BINARY_SENSOR_DEVICE_CLASSES},
                        "unit": False,
                        "state_class": False,
                        "precision": False,
                        "options": False,
                    }
                },
                "else": {"properties": {"device_class": {"enum": SENSOR_DEVICE_CLASSES}}},
            },
        ],
    }


def _command() -> dict[str, Any]:
    props = {
        "action": _s("string", "Built-in platform operation to run (see `pilot actions`)."),
        "args": _s("object", "Fixed arguments for the action; each action documents its own."),
        "platform": _s(
            "string",
            "Home Assistant entity platform that triggers the command.",
            enum=COMMAND_PLATFORMS,
            default="button",
        ),
        "device_class": _s("string", "Home Assistant device class for the entity."),
        "min": _s("number", "Smallest value a `number` accepts."),
        "max": _s("number", "Largest value a `number` accepts."),
        "step": _s("number", "Step between values of a `number`.", exclusiveMinimum=0),
        "mode": _s(
            "string",
            "How Home Assistant draws a `number` or `text`.",
            enum=["auto", "box", "slider", "text", "password"],
        ),
        "unit": _s("string", "Unit of a `number`."),
        "options": _s("array", "Choices of a `select`.", items={"type": "string"}, minItems=1, uniqueItems=True),
        "pattern": _s(
            "string",
            "Regular expression (RE2 syntax: no backreferences or lookaround) a whole `text` value must match; "
            "matched in linear time.",
        ),
        "max_length": _s("integer", "Longest `text` value accepted.", minimum=1, maximum=255),
        "min_length": _s("integer", "Shortest `text` value accepted.", minimum=0, maximum=255),
        "enabled": _s(
            "boolean",
            "`false` turns the command off without deleting it (one a pack declares too): it is still checked, "
            "but never announced or run, and no rule or schedule may use it.",
        ),
        "optional": _s(
            "boolean",
            "Leave this command out quietly where its action cannot work on this host (no media player, no "
            "audio server) instead of announcing a button that always fails.",
        ),
        "policy": _closed(
            "Guards for this command, on top of `policies`.",
            {
                "signed": _s("boolean", "Require a `pilot-cmd-v1` HMAC signature (see docs/security.md)."),
                "cooldown": duration("Refuse the command again within this time."),
                "confirm": duration("Require a second press within this time."),
            },
        ),
        **_entity_common(),
    }
    return {
        **_closed("An operation Home Assistant can trigger, guarded by the policies.", props),
        "required": ["action"],
        "x-error": "a command needs `action:` (see `pilot actions`)",
        "allOf": [
            {
                "if": {"properties": {"platform": {"const": "number"}}, "required": ["platform"]},
                "then": {"required": ["min", "max"], "x-error": "a `number` command needs `min:` and `max:`"},
            },
            {
                "if": {"properties": {"platform": {"const": "select"}}, "required": ["platform"]},
                "then": {"required": ["options"], "x-error": "a `select` command needs `options:`"},
            },
            {
                "if": {"properties": {"platform": {"const": "button"}}},
                "then": {"properties": {"device_class": {"enum": BUTTON_DEVICE_CLASSES}}},
            },
            {
                "if": {"properties": {"platform": {"const": "switch"}}, "required": ["platform"]},
                "then": {"properties": {"device_class": {"enum": SWITCH_DEVICE_CLASSES}}},
            },
        ],
    }


def _child_set() -> dict[str, Any]:
    sensor = _closed(
        "One field of every instance, as an entity of each child device; the source says what it means.",
        {
            "name": _entity_common()["name"],
            "icon": _entity_common()["icon"],
            "enabled_by_default": _entity_common()["enabled_by_default"],
            "precision": _s("integer", "Decimal places to round the value to.", minimum=0, maximum=10),
            "min_change": _s(
                "number",
                "Publish an instance's state only when this field moved at least this much (or another changed).",
                minimum=0,
            ),
        },
    )
    command = _closed(
        "An action on one instance, as a button of each child device, under the same guards as any command.",
        {
            "name": _entity_common()["name"],
            "icon": _entity_common()["icon"],
            "policy": _closed(
                "Guards for this command, on top of `policies` (cooldowns and confirmations are per instance).",
                {
                    "signed": _s("boolean", "Require a `pilot-cmd-v1` HMAC signature (see docs/security.md)."),
                    "cooldown": duration("Refuse the command again on the same instance within this time."),
                    "confirm": {
                        "description": "Require a second press within this time (a duration), or `false` to "
                        "drop a confirmation the source asks for by default.",
                        "anyOf": [{"const": False}, duration("")],
                    },
                },
            ),
        },
    )
    return {
        **_closed(
            "Things found at run time (Proxmox guests...), each announced as its own device under this one.",
            {
                "source": _s("string", "Where the instances come from (see `pilot sources`)."),
                "args": _s("object", "Arguments for the source; each source documents its own."),
                "every": duration("How often to look at the source (default 30s)."),
                "max_silence": duration("Publish each instance's state at least this often (default 10m)."),
                "optional": _s(
                    "boolean",
                    "Skip the set quietly where its source is absent (no token file yet, not a Proxmox host) "
                    "instead of reporting an error; packs use it.",
                ),
                "sensors": {
                    **_id_map(
                        "Which fields to announce, by the source's field name (default: the source's usual set).",
                        "#/$defs/child_sensor",
                    ),
                },
                "commands": {
                    **_id_map(
                        "Which actions to offer on each instance (default: the source's usual set).",
                        "#/$defs/child_command",
                    ),
                },
            },
        ),
        "required": ["source"],
        "x-error": "a child set needs `source:` (see `pilot sources`)",
        "$defs_inline": {"child_sensor": sensor, "child_command": command},
    }


def _step() -> dict[str, Any]:
    kinds = {
        "command": _closed(
            "Run a declared command.",
            {
                "command": _s("string", "Id of a command declared under `commands`."),
                "value": _s(["string", "number", "boolean"], "Value for a switch, number, select or text command."),
            },
            required=["command"],
        ),
        "publish": _closed(
            "Publish an MQTT message.",
            {
                "publish": _closed(
                    "The message.",
                    {
                        "topic": _s(
                            "string",
                            "Topic; `~/name` is relative to this device's topics (`pilot/<id>/name`).",
                            minLength=1,
                            pattern=r"^[^#+]+$",
                            **{"x-error": "a publish topic cannot hold # or +"},
                        ),
                        "payload": _s("string", "Payload template; `{sensor_id}` is replaced by that sensor's value."),
                        "retain": _s("boolean", "Retain the message."),
                        "qos": _s("integer", "MQTT QoS.", enum=[0, 1, 2]),
                    },
                    required=["topic"],
                ),
            },
            required=["publish"],
        ),
        "notify": _closed(
            "Send a desktop notification.",
            {
                "notify": {
                    "description": "Message text, or title and message.",
                    "anyOf": [
                        {"type": "string", "minLength": 1},
                        _closed(
                            "Notification.",
                            {"title": _s("string", "Title."), "message": _s("string", "Body text.")},
                            required=["message"],
                        ),
                    ],
                },
            },
            required=["notify"],
        ),
        "delay": _closed(
            "Wait before the next step.",
            {
                "delay": duration("How long to wait."),
            },
            required=["delay"],
        ),
    }
    return {
        "type": "object",
        "description": "One step: `command`, `publish`, `notify` or `delay`.",
        "x-error": "a step is one of {command: id}, {publish: {topic: ...}}, {notify: text} or {delay: 10s}",
        "allOf": [{"if": {"required": [k]}, "then": schema} for k, schema in kinds.items()]
        + [
            {
                "anyOf": [{"required": [k]} for k in kinds],
                "x-error": "a step is one of {command: id}, {publish: {topic: ...}}, {notify: text} or {delay: 10s}",
            }
        ],
    }


def _steps(description: str) -> dict[str, Any]:
    return {"type": "array", "description": description, "items": {"$ref": "#/$defs/step"}, "minItems": 1}


def _rule() -> dict[str, Any]:
    return _closed(
        "Do something on this machine when a condition over sensors holds.",
        {
            "when": _s("string", "Condition expression, e.g. `cpu_temp > 95`.", minLength=1, maxLength=256),
            "for": duration("The condition must hold continuously this long before the rule fires."),
            "clear": _s(
                "string",
                "Condition that resets the rule (hysteresis); defaults to `not when`.",
                minLength=1,
                maxLength=256,
            ),
            "cooldown": duration("Minimum time between two firings."),
            "do": _steps("Steps run when the rule fires."),
            "on_clear": _steps("Steps run when the rule clears."),
            "expose": {
                "description": "Publish the rule's state as a Home Assistant binary_sensor.",
                "anyOf": [{"type": "boolean"}, _closed("Entity settings.", _entity_common())],
            },
        },
        required=["when", "do"],
        **{"x-error": "a rule needs `when:` and `do:`"},
    )


def _schedule() -> dict[str, Any]:
    return {
        **_closed(
            "Run steps at fixed times.",
            {
                # no minLength: semantics says what is wrong with a short one ("got 4 fields")
                "cron": _s("string", "Five-field cron expression: minute hour day-of-month month day-of-week."),
                "timezone": _s("string", "IANA time zone for `cron`, e.g. `Europe/Berlin`; defaults to the machine's."),
                "every": duration("Run at this interval instead of a cron expression."),
                "jitter": duration("Random delay added to each run, to spread load."),
                "do": _steps("Steps to run."),
            },
            required=["do"],
        ),
        "allOf": [
            {
                "if": {"required": ["cron"]},
                "then": {"not": {"required": ["every"]}, "x-error": "a schedule takes `cron:` or `every:`, not both"},
                "else": {"required": ["every"], "x-error": "a schedule needs `cron:` or `every:`"},
            }
        ],
    }


def _policies() -> dict[str, Any]:
    return _closed(
        "Who may run which command, and how often.",
        {
            "allow": _s(
                "array",
                "Commands that may run; anything else is rejected. Omit to allow every declared command.",
                items={"type": "string"},
                uniqueItems=True,
            ),
            "cooldown": duration("Default minimum time between two runs of the same command."),
            "cooldowns": {
                "type": "object",
                "description": "Per-command cooldowns, by command id.",
                "additionalProperties": duration("Cooldown for this command."),
            },
            "confirm": _s(
                "array",
                "Commands that need a second press within `confirm_window`.",
                items={"type": "string"},
                uniqueItems=True,
            ),
            "confirm_window": duration("Time allowed for the confirming second press."),
            "require_signed": _s("boolean", "Require a `pilot-cmd-v1` signature on every command."),
            "hmac": _closed(
                "Signed commands (`pilot-cmd-v1`).",
                {
                    "keyring": _s("string", "Path of the 0600 keyring file with key ids and secrets."),
                    "window": duration("Largest accepted difference between the signer's clock and ours."),
                },
                required=["keyring"],
            ),
            "rate_limit": _closed(
                "Global command rate limit.",
                {
                    "max": _s("integer", "Commands accepted per period.", minimum=1),
                    "per": duration("The period."),
                },
                required=["max", "per"],
            ),
            "max_payload": {
                "description": "Largest command payload accepted, in bytes or as `4KiB`.",
                "anyOf": [{"type": "integer", "minimum": 1}, {"type": "string", "pattern": SIZE_PATTERN}],
                "x-error": "expected a size such as 4096, 4KiB or 1MB",
            },
        },
    )


def _mqtt() -> dict[str, Any]:
    return _closed(
        "How to reach the MQTT broker.",
        {
            "host": _s("string", "Broker host name or address. Omit for a local trial broker.", minLength=1),
            "port": _s("integer", "Broker port; 1883 plain, 8883 TLS by default.", minimum=1, maximum=65535),
            "client_id": _s("string", "MQTT client id; defaults to `pilot-<device id>`.", minLength=1, maxLength=128),
            "username": _s("string", "Broker user name."),
            "password_file": _s(
                "string", "File whose first line is the broker password (keeps secrets out of profiles)."
            ),
            "keepalive": _s(
                "integer",
                "Seconds between keepalive pings; the broker declares us gone after 1.5×.",
                minimum=5,
                maximum=3600,
            ),
            "protocol": _s("string", "MQTT protocol version.", enum=["3.1.1", "5"]),
            "tls": _closed(
                "TLS settings; present means TLS is on.",
                {
                    "ca_file": _s("string", "CA certificate(s) to verify the broker with; omit for the system store."),
                    "cert_file": _s("string", "Client certificate for mutual TLS."),
                    "key_file": _s("string", "Private key of the client certificate."),
                    "insecure": _s(
                        "boolean",
                        "Skip certificate and host name checks (logged as a warning). "
                        "Only for a broker you cannot fix.",
                    ),
                },
            ),
            "topic_prefix": _s(
                "string",
                "Prefix of this agent's topics: `<prefix>/<device id>/...`.",
                pattern=r"^[^#+\s]+$",
                **{"x-error": "topic prefixes cannot hold #, + or spaces"},
            ),
            "discovery_prefix": _s(
                "string",
                "Home Assistant discovery prefix.",
                pattern=r"^[^#+\s]+$",
                **{"x-error": "topic prefixes cannot hold #, + or spaces"},
            ),
            "discovery": _s(
                "string",
                "`device`: one discovery message per device (Home Assistant 2024.11+); "
                "`entity`: one per entity (older Home Assistant); `none`: no discovery.",
                enum=["device", "entity", "none"],
            ),
        },
    )


def _service() -> dict[str, Any]:
    return _closed(
        "How Pilot runs as a system service (`pilot service install`).",
        {
            "allow_root": _s(
                "boolean",
                "Let `pilot run` start as root. Off by default: every command would then run "
                "with full privileges; `pilot service install` runs Pilot as a dedicated user instead.",
                default=False,
            ),
            "user": _s(
                "string",
                "The user the system service runs as (default `pilot`); `pilot service install` "
                "creates it when missing and grants it exactly the privileges the profile's commands need.",
                pattern=r"^[a-z_][a-z0-9_-]{0,31}$",
                default="pilot",
                **{"x-error": "a user name is lower-case letters, digits, '_' and '-' (at most 32)"},
            ),
        },
    )


def _device() -> dict[str, Any]:
    return _closed(
        "How this machine appears in Home Assistant.",
        {
            "id": _s(
                "string",
                "Stable device id; defaults to a hash of /etc/machine-id (never the host name).",
                pattern=r"^[a-zA-Z0-9_-]{1,64}$",
                **{"x-error": "device ids are letters, digits, '_' and '-' (at most 64)"},
            ),
            "name": _s("string", "Device name in Home Assistant; defaults to the host name.", minLength=1),
            "manufacturer": _s("string", "Manufacturer; defaults to the DMI vendor."),
            "model": _s("string", "Model; defaults to the DMI product name."),
            "suggested_area": _s("string", "Area Home Assistant suggests for the device."),
        },
    )


def base_profile_schema() -> dict[str, Any]:
    return {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "$id": PROFILE_ID,
        "title": "Pilot profile v1",
        "description": "What Pilot publishes, which commands it accepts and under which policies.",
        "type": "object",
        "required": ["pilot"],
        "x-error": "a profile is a map that starts with `pilot: 1`",
        "additionalProperties": False,
        "properties": {
            "$schema": _s("string", "Schema of this file, for editors."),
            "pilot": {
                "description": "Profile language version; this is version 1.",
                "const": 1,
                "x-error": "this Pilot reads profile language version 1 (`pilot: 1`)",
            },
            "extends": {
                "description": "Base profiles merged under this one, in order: `base/linux`, "
                "`pack:nvidia-workstation/gpu` or a relative file.",
                "anyOf": [{"type": "string"}, {"type": "array", "items": {"type": "string"}}],
            },
            "description": _s("string", "What this profile is for."),
            "device": _device(),
            "mqtt": _mqtt(),
            "sensors": _id_map("Values read from this machine, by id.", "#/$defs/sensor"),
            "commands": _id_map("Operations Home Assistant can trigger, by id.", "#/$defs/command"),
            "rules": _id_map("Conditions over sensors and what to do when they hold, by id.", "#/$defs/rule"),
            "schedules": _id_map("Steps run at fixed times, by id.", "#/$defs/schedule"),
            "children": _id_map(
                "Sets of things found at run time, each instance its own Home Assistant device, by id.",
                "#/$defs/child_set",
            ),
            "policies": _policies(),
            "service": _service(),
        },
        "$defs": {
            "sensor": _sensor(),
            "command": _command(),
            "rule": _rule(),
            "schedule": _schedule(),
            "step": _step(),
            **_child_defs(),
        },
    }


def _child_defs() -> dict[str, Any]:
    child_set = _child_set()
    inline = child_set.pop("$defs_inline")
    return {"child_set": child_set, **inline}


def pack_schema() -> dict[str, Any]:
    return {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "$id": PACK_ID,
        "title": "Pilot profile pack v1",
        "description": "A folder of profiles for one kind of machine; `pilot detect` matches it to the host.",
        "type": "object",
        "required": ["pack", "name", "version", "description"],
        "additionalProperties": False,
        "properties": {
            "$schema": _s("string", "Schema of this file, for editors."),
            "pack": {
                "const": 1,
                "description": "Pack manifest version; this is version 1.",
                "x-error": "this Pilot reads pack manifest version 1 (`pack: 1`)",
            },
            "name": _s("string", "Pack name, the same as its folder.", pattern=r"^[a-z0-9][a-z0-9-]*$"),
            "version": _s(
                "string",
                "Semantic version of the pack.",
                pattern=r"^\d+\.\d+\.\d+(-[0-9A-Za-z.-]+)?$",
                **{"x-error": "versions are semantic versions such as 1.2.0"},
            ),
            "description": _s("string", "What machines the pack is for.", minLength=1),
            "default": _s("string", "Profile (file name without .yaml) used when the pack matches."),
            "priority": _s("integer", "Higher wins when several packs match; more specific packs rank higher."),
            "match": _closed(
                "Host facts that must all hold for the pack to apply (see `pilot detect`).",
                {
                    "os": _s("string", "Operating system.", enum=["linux", "windows", "darwin"]),
                    "arch": _s(
                        "array",
                        "Any of these CPU architectures (as `pilot detect` prints them).",
                        items={
                            "type": "string",
                            "enum": ["x86_64", "aarch64", "armv7l", "armv6l", "i686", "riscv64", "amd64", "arm64"],
                        },
                    ),
                    "cpu.vendor": _s(
                        "array",
                        "Any of these CPU vendors.",
                        items={"type": "string", "enum": ["intel", "amd", "arm", "other"]},
                    ),
                    "dmi.sys_vendor": _s(
                        "array",
                        "Any of these DMI vendors (substring match, case-insensitive).",
                        items={"type": "string"},
                    ),
                    "dmi.product_name": _s(
                        "array", "Any of these DMI products (substring, case-insensitive).", items={"type": "string"}
                    ),
                    "has": _s("array", "All of these features.", items={"type": "string", "enum": HOST_FEATURES}),
                    "lacks": _s("array", "None of these features.", items={"type": "string", "enum": HOST_FEATURES}),
                },
            ),
        },
    }


def _registry_choices(registry: Any, description: str) -> dict[str, Any]:
    return {
        "type": "string",
        "description": description,
        "anyOf": [{"const": e.name, "description": e.summary} for e in registry],
    }


def _args_by_name(registry: Any, key: str) -> list[dict[str, Any]]:
    return [
        {
            "if": {"properties": {key: {"const": e.name}}, "required": [key]},
            "then": {"properties": {"args": {**copy.deepcopy(dict(e.params)), "description": e.summary}}},
        }
        for e in registry
    ]


def published_schema() -> dict[str, Any]:
    """The base schema plus registry names and per-name argument schemas, for editors."""
    from pilot.registry import ACTIONS, PROBES, SOURCES

    schema = base_profile_schema()
    sensor = schema["$defs"]["sensor"]
    sensor["properties"]["probe"] = _registry_choices(PROBES, sensor["properties"]["probe"]["description"])
    sensor["allOf"] += _args_by_name(PROBES, "probe")
    child_set = schema["$defs"]["child_set"]
    child_set["properties"]["source"] = _registry_choices(SOURCES, child_set["properties"]["source"]["description"])
    child_set["allOf"] = _args_by_name(SOURCES, "source")
    command = schema["$defs"]["command"]
    if list(ACTIONS):
        command["properties"]["action"] = _registry_choices(ACTIONS, command["properties"]["action"]["description"])
        command["allOf"] += _args_by_name(ACTIONS, "action")
    return schema


def dumps(schema: dict[str, Any]) -> str:
    return json.dumps(schema, indent=2, ensure_ascii=False) + "\n"
