"""Fan speed from hwmon fan*_input files (RPM), on Linux.

Laptops expose their fan through thinkpad/dell_smm/asus hwmon chips, desktops
through the Super-I/O chip (nct6775, it87); many machines have none at all,
and then the probe says so instead of publishing zeros.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from pilot.params import params, prop
from pilot.probes._common import Reader, guarded, reason_of
from pilot.probes._context import ProbeContext, ProbeUnavailable
from pilot.probes._sysfs import hwmon_chips, read_int
from pilot.registry import PROBES


def _fan_source(ctx: ProbeContext, chip: str | None, index: int | None) -> tuple[Path | None, str]:
    base = ctx.sys("class", "hwmon")
    chips = hwmon_chips(base)
    fans = [(c.name, i, p) for c in chips for i, p in c.inputs("fan").items()]
    if not fans:
        return None, f"no fan speed sensor (fan*_input) under {base}"
    if chip is not None:
        fans = [f for f in fans if f[0] == chip]
        if not fans:
            found = ", ".join(sorted({c.name for c in chips if c.inputs("fan")}))
            return None, f"no hwmon chip named {chip!r} with a fan (chips with fans: {found})"
    if index is not None:
        picked = [f for f in fans if f[1] == index]
        if not picked:
            found = ", ".join(f"{n} fan{i}" for n, i, _ in fans)
            return None, f"no fan{index}_input (found: {found})"
        fans = picked
    return fans[0][2], ""


def _fan_reason(ctx: ProbeContext, chip: str | None = None, index: int | None = None, **_: Any) -> str | None:
    return reason_of(lambda: _fan_source(ctx, chip, index)[1] or None)


@PROBES.register(
    "fan.speed",
    params=params(
        {
            "chip": prop(
                "string", "hwmon chip name (e.g. thinkpad, dell_smm, nct6775); leave out for any chip.", minLength=1
            ),
            "index": prop(
                "integer",
                "Fan number N of fanN_input (1-based, as the kernel numbers them); leave out for the first fan found.",
                minimum=1,
            ),
        }
    ),
    defaults={"unit": "RPM", "state_class": "measurement", "platform": "sensor", "icon": "mdi:fan", "precision": 0},
    available=_fan_reason,
)
def fan_speed(ctx: ProbeContext, chip: str | None = None, index: int | None = None) -> Reader:
    """Fan speed in RPM from hwmon; the first fan found unless chip/index pick one."""
    path, reason = _fan_source(ctx, chip, index)
    if path is None:
        raise ProbeUnavailable(reason)
    return guarded(lambda: read_int(path))
