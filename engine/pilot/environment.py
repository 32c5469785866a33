"""Every PILOT_* environment variable Pilot reads, in one table.

Each is read when a command starts (never at import), through `get()`, which
refuses a name that is not in the table: a new variable is one new entry here,
and docs/configuration.md lists the same entries (a test compares them).
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass


@dataclass(frozen=True)
class Variable:
    name: str
    meaning: str
    audience: str  # "users": set it in production; "tests": for tests, benchmarks and packaging checks


VARIABLES = (
    Variable("PILOT_ALLOW_ROOT", "`1`: let `pilot run` start as root (like `service: {allow_root: true}`)", "users"),
    Variable(
        "PILOT_PACKS_PATH",
        "extra folders of profile packs, separated by `:` (searched before the shipped packs)",
        "users",
    ),
    Variable("PILOT_SYSFS_ROOT", "read and write sysfs under this folder instead of `/sys`", "tests"),
    Variable(
        "PILOT_TRIAL_BROKER",
        "the trial broker to start when none is configured: `mosquitto` or `amqtt` (default: the first found)",
        "users",
    ),
    Variable(
        "PILOT_SYSTEM_RECORD", "append every action's calls to this JSON-lines file instead of performing them", "tests"
    ),
    Variable("PILOT_SYSTEM_RECORD_DELAY", "with PILOT_SYSTEM_RECORD: seconds each recorded call takes", "tests"),
    Variable(
        "PILOT_SERVICE_RECORD",
        "`pilot service`: append the commands it would run (systemctl, useradd) to this file instead of running them",
        "tests",
    ),
    Variable(
        "PILOT_HA_DELAY",
        "seconds (`low,high`) to wait after Home Assistant's birth message before announcing again (default 1,4)",
        "tests",
    ),
    Variable("PILOT_HEALTH_EVERY", "seconds between health reports (default 30)", "tests"),
)
_NAMES = frozenset(v.name for v in VARIABLES)


def get(name: str, environ: Mapping[str, str] | None = None) -> str | None:
    """The variable's value, or None when unset or empty."""
    if name not in _NAMES:
        raise KeyError(f"{name} is not in pilot.environment.VARIABLES")
    value = (os.environ if environ is None else environ).get(name)
    return value or None
