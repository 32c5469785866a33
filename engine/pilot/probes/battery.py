"""Battery and AC adapter probes from /sys/class/power_supply (Linux).

Each supply is a folder of attribute files; some drivers (and some recordings)
only have a `uevent` file of POWER_SUPPLY_X=v lines, so every attribute is read
from its file first and from the uevent key second. Supplies with present=0
are ignored; batteries of peripherals (scope=Device: mice, headsets) are not
the machine's battery and are left out.

Without `name:`, the battery probes aggregate over all present batteries:
  level     weighted by each battery's full energy when every battery reports
            one, else the plain mean; one battery reports its own `capacity`.
  state     charging if any battery charges, else discharging if any discharges,
            else not_charging if any, else full if any, else unknown.
  time_left remaining (or missing, when charging) energy of all batteries over
            the summed power of the batteries in that state, so an idle second
            battery still counts toward the time to empty.
  power     sum of the known battery powers (a magnitude; the state gives the direction).
  health    sum of full energies over sum of design energies (not clamped: a new
            pack can exceed 100 %).
Units from the kernel: µWh (energy_*), µAh (charge_*), µW, µA, µV. Charge is
turned into energy with voltage_min_design (else voltage_now) only when batteries
have to be added together; a single battery uses its own ratio.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pilot.params import params, prop
from pilot.probes._common import Reader, guarded, reason_of
from pilot.probes._context import ProbeContext, ProbeUnavailable
from pilot.probes._sysfs import list_dir, parse_int, read_text, read_uevent
from pilot.registry import PROBES

STATES = ["charging", "discharging", "full", "not_charging", "unknown"]
_STATE_PRIORITY = ["charging", "discharging", "not_charging", "full", "unknown"]
_AC_NAME = re.compile(r"(AC\w*|ADP\d*)")
_AC_PREFIXES = ("ucsi-source-psy", "tcpm-source-psy")


class Supply:
    """One power_supply folder; attributes come from their file, else from `uevent`."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.name = folder.name
        self._uevent: dict[str, str] | None = None

    def get(self, attr: str) -> str | None:
        text = read_text(self.folder / attr)
        if text is None:
            if self._uevent is None:
                self._uevent = read_uevent(self.folder / "uevent")
            text = self._uevent.get("POWER_SUPPLY_" + attr.upper())
        return None if text is None else text.strip()

    def num(self, attr: str) -> int | None:
        return parse_int(self.get(attr))

    @property
    def present(self) -> bool:
        return self.num("present") != 0

    @property
    def is_battery(self) -> bool:
        kind = self.get("type")
        if kind is None:
            return self.name.startswith("BAT")
        return kind == "Battery" and self.get("scope") != "Device"

    @property
    def is_external_power(self) -> bool:
        """A mains adapter or a USB-C/USB supply feeding the machine (not a battery)."""
        kind = self.get("type")
        if kind == "Battery" or self.get("scope") == "Device":
            return False
        if kind == "Mains" or (kind or "").startswith("USB"):
            return True
        return bool(_AC_NAME.fullmatch(self.name)) or self.name.startswith(_AC_PREFIXES)


def supplies(ctx: ProbeContext) -> list[Supply]:
    base = ctx.sys("class", "power_supply")
    return [Supply(base / n) for n in list_dir(base)]


def batteries(ctx: ProbeContext) -> list[Supply]:
    """Present batteries of the machine itself, in name order."""
    return [s for s in supplies(ctx) if s.is_battery and s.present]


@dataclass
class _Battery:
    """One battery's numbers, normalised so several batteries can be added up."""

    state: str
    capacity: float | None
    now: float | None  # energy-like units: µWh, or µAh × volts when scale came from a voltage
    full: float | None
    design: float | None
    flow: float | None  # power-like units matching `now`, magnitude
    watts: float | None  # measured power in W, magnitude
    scaled: bool  # True when charge was converted with a voltage (comparable across batteries)


def _state(status: str | None) -> str:
    key = (status or "").strip().lower().replace(" ", "_")
    return key if key in STATES else "unknown"


def _read(s: Supply) -> _Battery:
    num = s.num
    volts_now = num("voltage_now")
    current = num("current_now")
    power_now = num("power_now")
    watts = None
    if power_now is not None:
        watts = abs(power_now) / 1e6
    elif current is not None and volts_now is not None:
        watts = abs(current) * volts_now / 1e12
    if num("energy_now") is not None or num("energy_full") is not None:
        now, full, design = num("energy_now"), num("energy_full"), num("energy_full_design")
        flow = abs(power_now) if power_now is not None else (watts * 1e6 if watts is not None else None)
        scale, scaled = 1.0, True
    else:
        now, full, design = num("charge_now"), num("charge_full"), num("charge_full_design")
        flow = abs(current) if current is not None else None
        volts = num("voltage_min_design") or volts_now
        scale, scaled = (volts / 1e6, True) if volts else (1.0, False)
    capacity = parse_int(s.get("capacity"))

    def sc(v: int | float | None) -> float | None:
        return None if v is None else v * scale

    return _Battery(
        _state(s.get("status")),
        None if capacity is None else float(capacity),
        sc(now),
        sc(full),
        sc(design),
        sc(flow),
        watts,
        scaled,
    )


def _combinable(bats: list[_Battery], *fields: str) -> bool:
    """All batteries know the fields, and (for several) share one unit."""
    if not bats or any(getattr(b, f) is None for b in bats for f in fields):
        return False
    return len(bats) == 1 or all(b.scaled for b in bats)


def aggregate_state(states: list[str]) -> str:
    for state in _STATE_PRIORITY:
        if state in states:
            return state
    return "unknown"


def _level(bats: list[_Battery]) -> float | None:
    levels = []
    for b in bats:
        if b.capacity is not None:
            levels.append(b.capacity)
        elif b.now is not None and b.full:
            levels.append(b.now / b.full * 100.0)
        else:
            levels.append(None)
    if not bats or any(v is None for v in levels):
        known = [v for v in levels if v is not None]
        return round(sum(known) / len(known), 1) if known else None
    if len(bats) > 1 and _combinable(bats, "full"):
        total = sum(b.full for b in bats)  # type: ignore[misc]
        if total > 0:
            return round(sum(v * b.full for v, b in zip(levels, bats)) / total, 1)  # type: ignore[operator]
    return round(min(100.0, sum(levels) / len(levels)), 1)  # type: ignore[arg-type]


def _time_left(bats: list[_Battery]) -> int | None:
    state = aggregate_state([b.state for b in bats])
    if state not in ("charging", "discharging") or not _combinable(bats, "now", "full"):
        return None
    moving = [b for b in bats if b.state == state]
    if any(b.flow is None for b in moving):
        return None
    rate = sum(b.flow for b in moving)  # type: ignore[misc]
    if rate <= 0:
        return None
    if state == "discharging":
        need = sum(b.now for b in bats)  # type: ignore[misc]
    else:
        need = sum(max(0.0, b.full - b.now) for b in bats)  # type: ignore[operator]
    return int(round(need / rate * 3600))


def _power(bats: list[_Battery]) -> float | None:
    known = [b.watts for b in bats if b.watts is not None]
    return round(sum(known), 3) if known else None


def _health(bats: list[_Battery]) -> float | None:
    if not _combinable(bats, "full", "design"):
        return None
    design = sum(b.design for b in bats)  # type: ignore[misc]
    return round(sum(b.full for b in bats) / design * 100.0, 2) if design else None  # type: ignore[misc]


def _selected(ctx: ProbeContext, name: str | None) -> list[Supply]:
    if name is None:
        return batteries(ctx)
    supply = Supply(ctx.sys("class", "power_supply", name))
    return [supply] if supply.present and (supply.folder.is_dir()) else []


def _battery_reason(ctx: ProbeContext, name: str | None = None, **_: Any) -> str | None:
    def check() -> str | None:
        base = ctx.sys("class", "power_supply")
        found = [s.name for s in supplies(ctx) if s.is_battery]
        if name is None:
            return None if batteries(ctx) else f"no battery under {base}"
        if name not in list_dir(base):
            return f"no battery named {name!r} under {base} (batteries: {', '.join(found) or 'none'})"
        if not Supply(base / name).is_battery:
            return f"{name!r} under {base} is not a battery (batteries: {', '.join(found) or 'none'})"
        return None

    return reason_of(check)


_NAME = {
    "name": prop(
        "string",
        "Battery folder name under /sys/class/power_supply (e.g. BAT0, BAT1); leave out to combine all batteries.",
        minLength=1,
    )
}


def _register(name: str, compute: Callable[[list[_Battery]], Any], defaults: dict[str, Any], doc: str) -> None:
    def factory(ctx: ProbeContext, name: str | None = None) -> Reader:
        reason = _battery_reason(ctx, name)
        if reason:
            raise ProbeUnavailable(reason)

        def read() -> Any:
            bats = [_read(s) for s in _selected(ctx, name)]
            return compute(bats) if bats else None

        return guarded(read)

    factory.__doc__ = doc
    factory.__name__ = name.replace(".", "_")
    PROBES.register(name, params=params(_NAME), defaults=defaults, available=_battery_reason)(factory)


_register(
    "battery.level",
    _level,
    {"unit": "%", "device_class": "battery", "state_class": "measurement", "platform": "sensor", "precision": 0},
    "Battery charge in percent.\n\nOne battery: its own `capacity` (what the desktop shows). "
    "All batteries: weighted by their full energy when known, else the mean.",
)
_register(
    "battery.state",
    lambda bats: aggregate_state([b.state for b in bats]),
    {"device_class": "enum", "options": STATES, "platform": "sensor", "icon": "mdi:battery-charging"},
    "Battery state: charging, discharging, full, not_charging or unknown.\n\n"
    "From `status` (Charging, Discharging, Full, Not charging, Unknown). Combined: charging if any "
    "battery charges, else discharging, else not_charging, else full, else unknown.",
)
_register(
    "battery.time_left",
    _time_left,
    {
        "unit": "s",
        "device_class": "duration",
        "state_class": "measurement",
        "platform": "sensor",
        "icon": "mdi:battery-clock",
        "precision": 0,
    },
    "Seconds until empty while discharging, or until full while charging.\n\n"
    "From energy_now/power_now (or charge_now/current_now); None when neither charging nor "
    "discharging or when the power is 0 or unknown.",
)
_register(
    "battery.power",
    _power,
    {
        "unit": "W",
        "device_class": "power",
        "state_class": "measurement",
        "platform": "sensor",
        "icon": "mdi:flash",
        "precision": 1,
    },
    "Power flowing in or out of the battery, in W (power_now, else current_now × voltage_now).",
)
_register(
    "battery.health",
    _health,
    {
        "unit": "%",
        "state_class": "measurement",
        "platform": "sensor",
        "icon": "mdi:battery-heart-variant",
        "precision": 1,
    },
    "Battery wear: full capacity now in percent of the design capacity (energy_full / energy_full_design).",
)


# ------------------------------------------------------------------ AC


def external_power(ctx: ProbeContext) -> list[Supply]:
    return [s for s in supplies(ctx) if s.is_external_power]


def _ac_reason(ctx: ProbeContext, **_: Any) -> str | None:
    return reason_of(
        lambda: (
            None
            if external_power(ctx)
            else f"no AC adapter (Mains, AC*, ADP*, USB-C source) under {ctx.sys('class', 'power_supply')}"
        )
    )


@PROBES.register(
    "battery.ac_online",
    params=params(),
    defaults={"device_class": "plug", "platform": "binary_sensor", "icon": "mdi:power-plug"},
    available=_ac_reason,
)
def battery_ac_online(ctx: ProbeContext) -> Reader:
    """Whether the machine runs on external power (any AC adapter or USB-C source has online=1).

    Adapters are supplies of type Mains or USB, or, where the type is unknown, named
    AC, AC0, ACAD, ADP1 or ucsi-/tcpm-source-psy-* (names may contain ':').
    """

    def read() -> bool | None:
        values = [s.num("online") for s in external_power(ctx)]
        known = [v for v in values if v is not None]
        return any(v == 1 for v in known) if known else None

    return guarded(read)
