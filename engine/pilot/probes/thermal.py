"""Temperatures from hwmon and thermal zones in sysfs (Linux).

psutil.sensors_temperatures() cannot be pointed at a recorded tree and knows
nothing of thermal zones, which is all a Raspberry Pi has, so this reads sysfs
directly. Every temperature file holds millidegrees Celsius.

Which sensor is "the CPU" (thermal.cpu), first match wins:
  1. coretemp (Intel): the "Package id N" sensors (max over sockets); else the
     hottest "Core N" / any coretemp sensor.
  2. k10temp / zenpower (AMD): Tdie when present, else Tctl (Tctl carries a
     +10..+27 °C fan-control offset on some Ryzen 1000/2000 parts, Tdie never
     does), else any sensor of the chip; max over chips.
  3. hwmon named cpu_thermal, then soc_thermal, then any hwmon name containing "cpu".
  4. thermal zones typed x86_pkg_temp, cpu-thermal/cpu_thermal, soc*/…, any "*cpu*".
  5. acpitz (hwmon, then zone): a motherboard/ACPI reading, the last resort because
     it is often the chassis rather than the die.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from pilot.params import params, prop
from pilot.probes._common import Reader, guarded, reason_of
from pilot.probes._context import ProbeContext
from pilot.probes._sysfs import HwmonChip, hwmon_chips, list_dir, read_int, read_text
from pilot.registry import PROBES

_TEMP_DEFAULTS = {
    "unit": "°C",
    "device_class": "temperature",
    "state_class": "measurement",
    "platform": "sensor",
    "icon": "mdi:thermometer",
    "precision": 1,
}

Source = tuple[list[Path], str]  # input files (reading = their max) and where they came from


def _millideg(path: Path) -> float | None:
    value = read_int(path)
    return None if value is None else round(value / 1000.0, 3)


def _norm(name: str) -> str:
    return name.strip().lower().replace("-", "_")


def thermal_zones(ctx: ProbeContext) -> list[tuple[str, Path]]:
    """(type, temp file) of each /sys/class/thermal/thermal_zoneN that has a type."""
    base = ctx.sys("class", "thermal")
    zones = []
    for entry in list_dir(base):
        if entry.startswith("thermal_zone"):
            kind = read_text(base / entry / "type")
            if kind is not None:
                zones.append((kind.strip(), base / entry / "temp"))
    return zones


def _labelled(chips: list[HwmonChip], want: Callable[[str | None], bool]) -> list[Path]:
    return [p for c in chips for i, p in c.inputs("temp").items() if want(c.label("temp", i))]


def _all_temps(chips: list[HwmonChip]) -> list[Path]:
    return [p for c in chips for p in c.inputs("temp").values()]


def cpu_temperature_source(ctx: ProbeContext) -> Source | None:
    """The file(s) thermal.cpu reads on this machine, chosen by the order in the module docstring."""
    chips = hwmon_chips(ctx.sys("class", "hwmon"))
    by_name: dict[str, list[HwmonChip]] = {}
    for chip in chips:
        by_name.setdefault(_norm(chip.name), []).append(chip)

    intel = by_name.get("coretemp", [])
    for paths, what in (
        (_labelled(intel, lambda lb: bool(lb) and lb.startswith("Package id")), "coretemp Package id"),
        (_labelled(intel, lambda lb: bool(lb) and lb.startswith("Core")), "coretemp Core (max)"),
        (_all_temps(intel), "coretemp (max)"),
    ):
        if paths:
            return paths, what
    amd = by_name.get("k10temp", []) + by_name.get("zenpower", [])
    for label in ("Tdie", "Tctl"):
        if paths := _labelled(amd, lambda lb, want=label: lb == want):
            return paths, f"{amd[0].name} {label}"
    if paths := _all_temps(amd):
        return paths, f"{amd[0].name} (max)"
    for name in ("cpu_thermal", "soc_thermal"):
        if paths := _all_temps(by_name.get(name, [])):
            return paths, f"hwmon {name}"
    if paths := _all_temps([c for n, cs in by_name.items() if "cpu" in n for c in cs]):
        return paths, "hwmon *cpu*"

    zones = thermal_zones(ctx)
    for want, what in (
        (lambda t: t == "x86_pkg_temp", "zone x86_pkg_temp"),
        (lambda t: t in ("cpu_thermal", "cpu"), "zone cpu-thermal"),
        (lambda t: t.startswith("soc"), "zone soc"),
        (lambda t: "cpu" in t, "zone *cpu*"),
    ):
        if paths := [p for kind, p in zones if want(_norm(kind))]:
            return paths, what
    if paths := _all_temps(by_name.get("acpitz", [])):
        return paths, "hwmon acpitz"
    if paths := [p for kind, p in zones if _norm(kind) == "acpitz"]:
        return paths, "zone acpitz"
    return None


class _Resolving:
    """Read the max of a resolved set of files; resolve again after a read finds none of them."""

    def __init__(self, resolve: Callable[[], Source | None]) -> None:
        self._resolve = resolve
        self._source: Source | None = None

    def __call__(self) -> float | None:
        if self._source is None:
            self._source = self._resolve()
            if self._source is None:
                return None
        values = [v for p in self._source[0] if (v := _millideg(p)) is not None]
        if not values:
            self._source = None
            return None
        return max(values)


def _cpu_reason(ctx: ProbeContext, **_: Any) -> str | None:
    return reason_of(
        lambda: (
            None
            if cpu_temperature_source(ctx)
            else (f"no CPU temperature sensor under {ctx.sys('class', 'hwmon')} or {ctx.sys('class', 'thermal')}")
        )
    )


@PROBES.register("thermal.cpu", params=params(), defaults=_TEMP_DEFAULTS, available=_cpu_reason)
def thermal_cpu(ctx: ProbeContext) -> Reader:
    """CPU (package) temperature in °C, from the best sensor this machine has.

    Intel coretemp package, AMD k10temp Tdie (else Tctl), ARM cpu/soc thermal,
    thermal zones (Raspberry Pi has no hwmon), and ACPI as a last resort.
    """
    return guarded(_Resolving(lambda: cpu_temperature_source(ctx)))


# ------------------------------------------------------------- thermal.sensor


def _sensor_source(ctx: ProbeContext, chip: str, label: str | None) -> tuple[Source | None, str]:
    chips = hwmon_chips(ctx.sys("class", "hwmon"))
    named = [c for c in chips if c.name == chip]
    if not named:
        found = ", ".join(sorted({c.name for c in chips})) or "none"
        return None, f"no hwmon chip named {chip!r} (found: {found})"
    seen: list[str] = []
    for candidate in named:
        temps = candidate.inputs("temp")
        if not temps:
            continue
        if label is None:
            return ([next(iter(temps.values()))], f"{chip} first"), ""
        for index, path in temps.items():
            own = candidate.label("temp", index)
            if label in (own, f"temp{index}"):
                return ([path], f"{chip} {label}"), ""
            seen.append(own or f"temp{index}")
    if not seen:
        return None, f"hwmon chip {chip!r} has no temperature inputs"
    return None, f"hwmon chip {chip!r} has no temperature labelled {label!r} (found: {', '.join(seen)})"


def _sensor_reason(ctx: ProbeContext, chip: str = "", label: str | None = None, **_: Any) -> str | None:
    return reason_of(lambda: _sensor_source(ctx, chip, label)[1] or None)


@PROBES.register(
    "thermal.sensor",
    params=params(
        {
            "chip": prop(
                "string",
                "hwmon chip name, as in /sys/class/hwmon/hwmon*/name (e.g. nvme, amdgpu, acpitz).",
                minLength=1,
            ),
            "label": prop(
                "string",
                "Sensor label (temp*_label, e.g. Composite, junction) or file stem "
                "(temp2); leave out for the chip's first sensor.",
                minLength=1,
            ),
        },
        required=("chip",),
        examples=[{"chip": "nvme", "label": "Composite"}],
    ),
    defaults=_TEMP_DEFAULTS,
    available=_sensor_reason,
)
def thermal_sensor(ctx: ProbeContext, chip: str, label: str | None = None) -> Reader:
    """Temperature in °C of any hwmon sensor, chosen by chip name and label.

    When several chips share a name (two NVMe drives), the first in hwmonN order is read.
    """
    return guarded(_Resolving(lambda: _sensor_source(ctx, chip, label)[0]))


# --------------------------------------------------------------- thermal.zone


def _zone_reason(ctx: ProbeContext, type: str = "", **_: Any) -> str | None:  # noqa: A002 - the param's name
    def check() -> str | None:
        zones = thermal_zones(ctx)
        if any(kind == type for kind, _ in zones):
            return None
        return f"no thermal zone of type {type!r} (found: {', '.join(k for k, _ in zones) or 'none'})"

    return reason_of(check)


@PROBES.register(
    "thermal.zone",
    params=params(
        {
            "type": prop(
                "string",
                "Thermal zone type, as in /sys/class/thermal/thermal_zone*/type "
                "(e.g. cpu-thermal, x86_pkg_temp, acpitz).",
                minLength=1,
            )
        },
        required=("type",),
        examples=[{"type": "cpu-thermal"}],
    ),
    defaults=_TEMP_DEFAULTS,
    available=_zone_reason,
)
def thermal_zone(ctx: ProbeContext, type: str) -> Reader:  # noqa: A002 - the param's name
    """Temperature in °C of a kernel thermal zone, chosen by its type; the first zone of that type."""

    def resolve() -> Source | None:
        paths = [p for kind, p in thermal_zones(ctx) if kind == type]
        return (paths[:1], f"zone {type}") if paths else None

    return guarded(_Resolving(resolve))
