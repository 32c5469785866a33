"""systemd.unit: the state of one named unit (active, failed...), from systemd over D-Bus or `systemctl show`.

Where the system bus is reachable, the unit's LoadState and ActiveState are two property reads
on systemd's object for the unit (`/org/freedesktop/systemd1/unit/<escaped name>`, which systemd
loads on demand, as `systemctl show` does), through the shared jeepney connection: well under a
millisecond, against about 6 ms of CPU for a systemctl process. Otherwise `systemctl show` runs
through `run_program`. Either way on the background worker (systemd can stall while busy), with
the unit name checked against a strict pattern first, so it is always one argv element that
cannot read as an option.
"""

from __future__ import annotations

import os
import re
import time
from collections.abc import Callable
from typing import Any

from pilot.params import params, prop
from pilot.probes._background import background_reader, every_seconds
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
SYSTEMD_BUS_NAME = "org.freedesktop.systemd1"
UNIT_INTERFACE = "org.freedesktop.systemd1.Unit"
VIAS = ("auto", "dbus", "systemctl")

UNIT = prop("string", "Full unit name, with its type (backup.service, fstrim.timer).", pattern=UNIT_PATTERN)
UNIT["x-error"] = UNIT_ERROR


def check_unit(unit: Any) -> str:
    """The unit name if it matches UNIT_PATTERN; ValueError saying why otherwise."""
    if not isinstance(unit, str) or not re.fullmatch(UNIT_PATTERN, unit):
        raise ValueError(f"{str(unit)[:80]!r} is not a unit name: {UNIT_ERROR}")
    return unit


def parse_show(text: str) -> dict[str, str]:
    """`systemctl show` output (KEY=VALUE lines) as a dict of the properties asked for."""
    out: dict[str, str] = {}
    for line in text.splitlines():
        key, sep, value = line.partition("=")
        if sep and key in PROPERTIES:
            out[key] = value.strip()
    return out


def unit_path(unit: str) -> str:
    """systemd's object path for a unit: sd-bus escaping (a leading digit and every character but
    A-Z a-z 0-9 become _XX)."""
    out = []
    for i, ch in enumerate(unit):
        keep = ch.isascii() and (ch.isalpha() or (ch.isdigit() and i > 0))
        out.append(ch if keep else f"_{ord(ch):02x}")
    return "/org/freedesktop/systemd1/unit/" + "".join(out)


def unit_state(unit: str, runner: Callable[..., ProgramResult] = run_program) -> str:
    """The unit's ActiveState from `systemctl show`; ProbeUnavailable when it fails or the unit is not loaded."""
    result = runner(["systemctl", "show", "--property=" + ",".join(PROPERTIES), "--", unit], timeout=10)
    if not result.ok:
        raise ProbeUnavailable(f"systemctl show {unit} {result.problem(65536)}")
    return _state(unit, parse_show(result.text()))


def unit_state_dbus(unit: str, environ: Any = None) -> str:
    """The unit's ActiveState from systemd's D-Bus object; ProbeUnavailable when the bus or systemd fails."""
    from pilot.probes import _dbus

    path = unit_path(unit)
    try:
        bus = _dbus.system_bus(environ)
        props = {
            name: _dbus.get_property(bus, SYSTEMD_BUS_NAME, path, UNIT_INTERFACE, name, timeout=2.0)
            for name in ("LoadState", "ActiveState")
        }
    except (_dbus.DBusError, OSError, TimeoutError) as exc:
        raise ProbeUnavailable(f"systemd over D-Bus: {str(exc)[:200]}") from None
    return _state(unit, {k: v for k, v in props.items() if isinstance(v, str)})


def bus_reason(environ: Any = None) -> str | None:
    """Why systemd cannot be asked over the system bus here, or None."""
    from pilot.probes import _dbus

    try:
        import jeepney  # noqa: F401
    except ImportError:
        return "the jeepney D-Bus library is not installed"
    return _dbus.unreachable(_dbus.system_address(environ), "system bus")


def _state(unit: str, props: dict[str, str]) -> str:
    load = props.get("LoadState")
    if load in ("not-found", "bad-setting", "error", "masked"):
        raise ProbeUnavailable(f"unit {unit} is {load}")
    state = props.get("ActiveState")
    if state not in ACTIVE_STATES:
        raise ProbeUnavailable(f"systemd gave no known ActiveState for {unit} ({str(state)[:40]!r})")
    return state


def choose_via(via: str, environ: Any = None) -> tuple[str | None, str | None]:
    """("dbus" or "systemctl", None), or (None, why systemd cannot be asked here)."""
    if via not in VIAS:
        return None, f"via must be one of {', '.join(VIAS)}"
    if not os.path.isdir(SYSTEMD_RUNTIME):
        return None, "systemd is not running here (this system was not booted with systemd)"
    bus = bus_reason(environ) if via in ("auto", "dbus") else "not asked"
    if bus is None:
        return "dbus", None
    if via == "dbus":
        return None, bus
    if resolve("systemctl")[0] is None:
        return None, "systemctl is not installed"
    return "systemctl", None


def _available(ctx: ProbeContext, unit: Any = None, every: Any = None, via: str = "auto", **_: Any) -> str | None:
    try:
        check_unit(unit)
        if every is not None:
            parse_duration(every)
    except ValueError as exc:
        return str(exc)
    return choose_via(via)[1]


@PROBES.register(
    "systemd.unit",
    params=params(
        {
            "unit": UNIT,
            "every": prop(
                "string",
                "How often systemd is asked (at least 1s), when less often than the sensor is read; by default "
                "once per reading.",
                pattern=DURATION_PATTERN,
            ),
            "via": prop(
                "string",
                "How: auto (D-Bus where the system bus is reachable, else systemctl), dbus or systemctl.",
                enum=list(VIAS),
                default="auto",
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
    every: str | float | None = None,
    via: str = "auto",
    *,
    runner: Callable[..., ProgramResult] = run_program,
    clock: Callable[[], float] = time.monotonic,
    worker: Any = None,
    environ: Any = None,
) -> Callable[[], str | None]:
    """State of a systemd unit: active, inactive, failed, activating, deactivating, reloading.

    Read from systemd's D-Bus object for the unit (LoadState, ActiveState), or with `systemctl
    show` where the system bus cannot be reached, on Pilot's one background thread. A unit that
    does not exist (LoadState not-found) or is masked gives no reading and a log line. Alert on
    `failed` with a rule, or an expression sensor such as `expr: "backup_state == 'failed'"` for
    a binary sensor.
    """
    try:
        name = check_unit(unit)
    except ValueError as exc:
        raise ProbeUnavailable(str(exc)) from None
    interval = None if every is None else every_seconds(every)
    chosen, why = choose_via(via, environ)
    if chosen is None:
        raise ProbeUnavailable(why or "systemd cannot be asked here")
    if chosen == "dbus":
        work = lambda: unit_state_dbus(name, environ)
    else:
        work = lambda: unit_state(name, runner)
    return background_reader(
        f"systemd.unit {name}" + (" (systemctl)" if chosen == "systemctl" else ""),
        work,
        every=interval,
        stale_after=None if interval is None else 3 * interval + 10,
        clock=clock,
        worker=worker,
    )
