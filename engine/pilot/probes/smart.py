"""Disk health from SMART: smartctl's JSON (`smartctl --json=c -H -A`), read on the background worker.

One smartctl run per disk serves every probe of that disk (health, temperature, power-on
hours, reallocated sectors): they share the background key `disk.health DEVICE`. smartctl is
asked with `-n standby`, so a disk that sleeps is not woken to be watched; while it sleeps
the last reading stays. smartctl's exit status is a bit mask (smartctl(8), "RETURN VALUES"):
bits 0 and 1 mean no data (a bad command line, a device that could not be opened); the
higher bits report what the disk said (failing, attributes past threshold, errors logged)
and still come with a full answer. Bit 0 alone ("Unable to detect device type" on a virtio
disk or a USB stick) is a definite answer: this disk, asked this way, has no SMART data, and
asking again sooner will not change it; so it is logged once and asked again at `every`, not
retried every minute as a failure that may pass (bit 1: the device could not be opened).

smartctl needs to open the raw device: the agent must run as root, or have read access to
the disk and CAP_SYS_RAWIO. Needs smartmontools 7.0 or later (the first with --json).
"""

from __future__ import annotations

import json
import logging
import os
import re
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from pilot.params import params, prop
from pilot.probes._background import background_reader, every_seconds
from pilot.probes._context import ProbeContext, ProbeUnavailable
from pilot.probes._programs import ProgramResult, resolve, run_program
from pilot.registry import PROBES
from pilot.units import DURATION_PATTERN, parse_duration

DEVICE_PATTERN = r"^/dev/(?:[A-Za-z0-9_:+][A-Za-z0-9_.:+-]*/)*[A-Za-z0-9_:+][A-Za-z0-9_.:+-]{0,200}(?!\n)$"
TYPE_PATTERN = r"^[a-z][a-z0-9_]{0,31}(?:,[0-9]{1,3}){0,2}(?!\n)$"  # sat, nvme, megaraid,0, usbjmicron,0
_ASLEEP = re.compile(r"Device is in (STANDBY|SLEEP|IDLE\w*) mode")
MAX_OUTPUT = 1 << 20
NO_DATA_STATUS = 0b1  # exit status 1: no data, and none to come for this argv (see above)
TIMEOUT = 30.0
REALLOCATED = 5  # ATA attribute Reallocated_Sector_Ct

_DEVICE = prop(
    "string",
    "The disk, as a device path: /dev/sda, /dev/nvme0n1, or a stable /dev/disk/by-id/... name.",
    pattern=DEVICE_PATTERN,
)
_DEVICE["x-error"] = "expected a device path such as /dev/sda or /dev/disk/by-id/ata-..."
_TYPE = prop(
    "string",
    "smartctl's -d device type where it cannot tell by itself (sat for most USB enclosures, megaraid,N behind "
    "a RAID controller); leave out for auto.",
    pattern=TYPE_PATTERN,
)
_EVERY = prop("string", "How often smartctl is run (at least 1m).", pattern=DURATION_PATTERN, default="10m")
_PARAMS = params(
    {"device": _DEVICE, "type": _TYPE, "every": _EVERY},
    required=("device",),
    examples=[{"device": "/dev/sda"}, {"device": "/dev/disk/by-id/usb-WD_Elements_1234", "type": "sat"}],
)


log = logging.getLogger("pilot.probes")


class NoSmartData(ProbeUnavailable):
    """smartctl answered that this disk, asked this way, has no SMART data (exit status 1)."""


@dataclass(frozen=True)
class Smart:
    """What one smartctl answer says about a disk; None where the disk does not report it."""

    passed: bool | None
    temperature: int | None
    power_on_hours: int | None
    reallocated_sectors: int | None


NOTHING = Smart(passed=None, temperature=None, power_on_hours=None, reallocated_sectors=None)


def check_device(device: Any, dtype: Any = None) -> tuple[str, str | None]:
    if not isinstance(device, str) or not re.fullmatch(DEVICE_PATTERN, device) or "/../" in device + "/":
        raise ValueError(f"{str(device)[:80]!r} is not a device path such as /dev/sda")
    if dtype is not None and (not isinstance(dtype, str) or not re.fullmatch(TYPE_PATTERN, dtype)):
        raise ValueError(f"{str(dtype)[:40]!r} is not a smartctl device type such as sat or megaraid,0")
    return device, dtype


def smartctl_argv(device: str, dtype: str | None = None) -> list[str]:
    return ["smartctl", "--json=c", "-H", "-A", "-n", "standby", *(["-d", dtype] if dtype else []), "--", device]


def _count(value: Any, low: int = 0, high: int = 10**12) -> int | None:
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        return None
    return value


def _get(doc: Any, *path: str) -> Any:
    for key in path:
        if not isinstance(doc, dict):
            return None
        doc = doc.get(key)
    return doc


def _reallocated(doc: dict) -> int | None:
    table = _get(doc, "ata_smart_attributes", "table")
    if isinstance(table, list):
        for row in table:
            if isinstance(row, dict) and row.get("id") == REALLOCATED:
                return _count(_get(row, "raw", "value"))
    return _count(doc.get("scsi_grown_defect_list"))  # SCSI/SAS: the grown defect list; NVMe has neither


def parse_smartctl(raw: bytes, device: str) -> Smart | None:
    """smartctl's JSON as a Smart, None when the disk sleeps; ProbeUnavailable when it gave no data."""
    try:
        doc = json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, ValueError, RecursionError):
        raise ProbeUnavailable(f"smartctl {device} printed no JSON (smartmontools 7.0 or later is needed)") from None
    if not isinstance(doc, dict):
        raise ProbeUnavailable(f"smartctl {device} printed JSON that is not an object")
    status = _get(doc, "smartctl", "exit_status")
    messages = _get(doc, "smartctl", "messages")
    texts = (
        [m for m in messages if isinstance(m, dict) and isinstance(m.get("string"), str)]
        if isinstance(messages, list)
        else []
    )
    if any(_ASLEEP.search(m["string"]) for m in texts):
        return None
    if not isinstance(status, int) or status & 0b11:
        errors = [m["string"] for m in texts if m.get("severity") == "error"] or [m["string"] for m in texts]
        why = "".join(ch if ch.isprintable() else "?" for ch in errors[0])[:200] if errors else f"exit status {status}"
        raise (NoSmartData if status == NO_DATA_STATUS else ProbeUnavailable)(f"smartctl {device}: {why}")
    passed = _get(doc, "smart_status", "passed")
    if not isinstance(passed, bool):
        passed = None if not status & 0b1000 else False  # bit 3: "SMART status check returned DISK FAILING"
    return Smart(
        passed=passed,
        temperature=_count(_get(doc, "temperature", "current"), -60, 200),
        power_on_hours=_count(_get(doc, "power_on_time", "hours")),
        reallocated_sectors=_reallocated(doc),
    )


def read_disk(
    device: str, dtype: str | None, runner: Callable[..., ProgramResult], key: str = "disk.health"
) -> Callable[[], Smart]:
    """The background work for one disk: run smartctl, keep the last answer while the disk sleeps.
    A definite "no SMART data" is a result (NOTHING: no readings, asked again at `every`), logged
    once per reason under `key`, the way a failure is."""
    last: list[Smart] = []
    said: list[str] = []

    def work() -> Smart:
        result = runner(smartctl_argv(device, dtype), timeout=TIMEOUT, max_output=MAX_OUTPUT)
        if result.error or result.timed_out or result.truncated:
            raise ProbeUnavailable(f"smartctl {device} {result.problem(MAX_OUTPUT)}")
        try:
            smart = parse_smartctl(result.stdout, device)
        except NoSmartData as exc:
            if said != [str(exc)]:
                said[:] = [str(exc)]
                log.warning("probe %s: no reading: %s", key, str(exc)[:300])
            return NOTHING
        if smart is None:
            if not last:
                raise ProbeUnavailable(f"{device} is asleep and has not been read yet (smartctl does not wake it)")
            return last[0]
        last[:] = [smart]
        return smart

    return work


def _available(ctx: ProbeContext, device: Any = None, type: Any = None, every: Any = "10m", **_: Any) -> str | None:
    try:
        check_device(device, type)
        parse_duration(every)
    except ValueError as exc:
        return str(exc)
    if resolve("smartctl")[0] is None:
        return "smartctl is not installed (smartmontools)"
    if not os.path.exists(device):
        return f"{device} does not exist"
    if getattr(os, "geteuid", lambda: 0)() != 0 and not os.access(device, os.R_OK):
        return f"the agent's user cannot open {device} (smartctl needs root, or read access and CAP_SYS_RAWIO)"
    return None


def _register(name: str, field: str, defaults: dict[str, Any], doc: str) -> None:
    def factory(
        ctx: ProbeContext,
        device: str,
        type: str | None = None,
        every: str | float = "10m",
        *,
        runner: Callable[..., ProgramResult] = run_program,
        clock: Callable[[], float] = time.monotonic,
        worker: Any = None,
    ) -> Callable[[], Any]:
        try:
            device, dtype = check_device(device, type)
        except ValueError as exc:
            raise ProbeUnavailable(str(exc)) from None
        interval = every_seconds(every, 60, "every must be at least 1m (each run reads the disk's SMART data)")
        key = f"disk.health {device}" + (f" -d {dtype}" if dtype else "")
        raw = background_reader(
            key,
            read_disk(device, dtype, runner, key),
            every=interval,
            stale_after=3 * interval + TIMEOUT,
            clock=clock,
            worker=worker,
        )

        def read() -> Any:
            smart = raw()
            if smart is None:
                return None
            value = getattr(smart, field)
            return (not value if value is not None else None) if field == "passed" else value

        return read

    factory.__doc__ = doc
    factory.__name__ = name.replace(".", "_")
    PROBES.register(name, params=_PARAMS, defaults=defaults, available=_available)(factory)


_register(
    "disk.health",
    "passed",
    {"device_class": "problem", "platform": "binary_sensor", "icon": "mdi:harddisk"},
    """Whether a disk's SMART self-assessment reports a problem (on: failing).

    From `smartctl --json=c -H -A -n standby`, run on Pilot's background thread every `every`
    (one run serves every probe of the same disk); a sleeping disk is not woken, its last
    reading stays. Needs smartmontools 7.0+ and the right to open the raw device.
    """,
)
_register(
    "disk.temperature",
    "temperature",
    {"unit": "°C", "device_class": "temperature", "state_class": "measurement", "platform": "sensor", "precision": 0},
    """A disk's temperature as its SMART data reports it.

    ATA, SCSI and NVMe disks alike (smartctl's `temperature.current`); same run as disk.health.
    """,
)
_register(
    "disk.power_on_hours",
    "power_on_hours",
    {"unit": "h", "device_class": "duration", "state_class": "total_increasing", "platform": "sensor", "precision": 0},
    """Hours a disk has been powered on, from its SMART data (smartctl's `power_on_time.hours`).""",
)
_register(
    "disk.reallocated_sectors",
    "reallocated_sectors",
    {"state_class": "measurement", "platform": "sensor", "icon": "mdi:harddisk-remove", "precision": 0},
    """Sectors a disk has replaced with spares: ATA attribute 5, or a SCSI disk's grown defect list.

    A number that grows is an early sign of a failing disk. NVMe disks report no such count
    (no reading); watch disk.health for them.
    """,
)
