"""systemd.unit: the state of one named unit (active, failed...), from `systemctl show`.

systemctl is run through `run_program` on the background worker (it asks PID 1 over D-Bus,
which can stall while systemd is busy), with the unit name checked against a strict pattern
first, so it is always one argv element that cannot read as an option. The reading is the
unit's ActiveState; SubState and Result go to the log when a unit fails to load.
"""

from __future__ import annotations

import os
import re
import time
from collections.abc import Callable
from typing import Any

from pilot.params import params, prop
from pilot.probes._background import background_reader
from pilot.probes._context import ProbeContext, ProbeUnavailable
from pilot.probes._programs import ProgramResult, resolve, run_program
from pilot.registry import PROBES
from pilot.units import DURATION_PATTERN, parse_duration

# A full unit name: letters, digits and :_.@\- (systemd's own set), not starting with '-' or '.',
# with its type suffix (systemctl would otherwise add .service, and polkit sees the full name).
# `(?!\n)$`: Python's `$` (jsonschema uses re.search) would also match before a final newline.
UNIT_TYPES = ("service", "socket", "timer", "target", "path", "mount", "automount", "swap", "slice", "scope", "device")
UNIT_PATTERN = r"^[A-Za-z0-9:_\\][A-Za-z0-9:_.@\\-]{0,240}\.(?:" + "|".join(UNIT_TYPES) + r")(?!\n)$"
UNIT_ERROR = "a unit is a full unit name such as backup.service or fstrim.timer (letters, digits, : _ . @ \\ -)"
ACTIVE_STATES = ["active", "reloading", "inactive", "failed", "activating", "deactivating", "maintenance", "refreshing"]
SYSTEMD_RUNTIME = "/run/systemd/system"  # exists exactly when systemd is PID 1 (sd_booted)
PROPERTIES = ("LoadState", "ActiveState", "SubState", "Result")

UNIT = prop("string", "Full unit name, with its type (backup.service, fstrim.timer).", pattern=UNIT_PATTERN)
UNIT["x-error"] = UNIT_ERROR


def check_unit(unit: Any) -> str:
    """The unit name if it matches UNIT_PATTERN; ValueError saying why otherwise."""
    if not isinstance(unit, str) or not re.fullmatch(UNIT_PATTERN, unit):
        raise ValueError(f"{str(unit)[:80]!r} is not a unit name: {UNIT_ERROR}")
    return unit


def systemd_reason() -> str | None:
    """Why systemd units cannot be asked about here, or None."""
    if resolve("systemctl")[0] is None:
        return "systemctl is not installed"
    if not os.path.isdir(SYSTEMD_RUNTIME):
        return "systemd is not running here (this system was not booted with systemd)"
    return None


def parse_show(text: str) -> dict[str, str]:
    """`systemctl show` output (KEY=VALUE lines) as a dict of the properties asked for."""
    out: dict[str, str] = {}
    for line in text.splitlines():
        key, sep, value = line.partition("=")
        if sep and key in PROPERTIES:
            out[key] = value.strip()
    return out


def unit_state(unit: str, runner: Callable[..., ProgramResult] = run_program) -> str:
    """The unit's ActiveState; ProbeUnavailable when systemctl fails or the unit is not loaded."""
    result = runner(["systemctl", "show", "--property=" + ",".join(PROPERTIES), "--", unit], timeout=10)
    if not result.ok:
        raise ProbeUnavailable(f"systemctl show {unit} {result.problem(65536)}")
    props = parse_show(result.text())
    load = props.get("LoadState")
    if load in ("not-found", "bad-setting", "error", "masked"):
        raise ProbeUnavailable(f"unit {unit} is {load}")
    state = props.get("ActiveState")
    if state not in ACTIVE_STATES:
        raise ProbeUnavailable(f"systemctl show {unit} gave no known ActiveState ({str(state)[:40]!r})")
    return state


def _available(ctx: ProbeContext, unit: Any = None, every: Any = "30s", **_: Any) -> str | None:
    try:
        check_unit(unit)
        parse_duration(every)
    except ValueError as exc:
        return str(exc)
    return systemd_reason()


@PROBES.register(
    "systemd.unit",
    params=params(
        {
            "unit": UNIT,
            "every": prop(
                "string", "How often systemctl is asked (at least 1s).", pattern=DURATION_PATTERN, default="30s"
            ),
        },
        required=("unit",),
        examples=[{"unit": "backup.service"}, {"unit": "fstrim.timer", "every": "5m"}],
    ),
    defaults={"device_class": "enum", "options": ACTIVE_STATES, "platform": "sensor", "icon": "mdi:cog"},
    available=_available,
)
def systemd_unit(
    ctx: ProbeContext,
    unit: str,
    every: str | float = "30s",
    *,
    runner: Callable[..., ProgramResult] = run_program,
    clock: Callable[[], float] = time.monotonic,
    worker: Any = None,
) -> Callable[[], str | None]:
    """State of a systemd unit: active, inactive, failed, activating, deactivating, reloading.

    Read with `systemctl show --property=LoadState,ActiveState,SubState,Result` on Pilot's one
    background thread. A unit that does not exist (LoadState not-found) or is masked gives no
    reading and a log line. Alert on `failed` with a rule, or an expression sensor such as
    `expr: "backup_state == 'failed'"` for a binary sensor.
    """
    try:
        name, interval = check_unit(unit), parse_duration(every)
    except ValueError as exc:
        raise ProbeUnavailable(str(exc)) from None
    if interval < 1:
        raise ProbeUnavailable("every must be at least 1s")
    return background_reader(
        f"systemd.unit {name}",
        lambda: unit_state(name, runner),
        every=interval,
        stale_after=3 * interval + 10,
        clock=clock,
        worker=worker,
    )
