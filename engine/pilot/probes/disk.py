"""Filesystem usage and disk I/O probes (psutil).

Usage is per mount point (what `df` shows); I/O is per block device or the
sum psutil reports for whole disks. Rates are private to each reader.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import Any

import psutil

from pilot.params import params, prop
from pilot.probes._common import CounterRate, Reader, guarded, reason_of
from pilot.probes._context import ProbeContext, ProbeUnavailable
from pilot.registry import PROBES

_PATH = prop("string", "Mount point of the filesystem, e.g. / or /home or C:\\.", default="/", minLength=1)
_DEVICE = prop(
    "string",
    "Block device name as in /proc/diskstats, e.g. sda or nvme0n1 (a /dev/ prefix is allowed); "
    "leave out for the sum over whole disks.",
    minLength=1,
)
_DATA = {"unit": "B", "device_class": "data_size", "platform": "sensor", "icon": "mdi:harddisk", "precision": 0}
_RATE = {
    "unit": "B/s",
    "device_class": "data_rate",
    "state_class": "measurement",
    "platform": "sensor",
    "icon": "mdi:harddisk",
    "precision": 0,
}


def _mount_reason(ctx: ProbeContext, path: str = "/", **_: Any) -> str | None:
    def check() -> str | None:
        if not os.path.exists(path):
            return f"{path} does not exist"
        if not os.path.ismount(path):
            return f"{path} is not a mount point (use the folder where the filesystem is mounted)"
        return None

    return reason_of(check)


def _register_usage(name: str, field: str, defaults: dict[str, Any], doc: str) -> None:
    def factory(ctx: ProbeContext, path: str = "/") -> Reader:
        reason = _mount_reason(ctx, path)
        if reason:
            raise ProbeUnavailable(reason)
        return guarded(lambda: getattr(psutil.disk_usage(path), field))

    factory.__doc__ = doc
    factory.__name__ = name.replace(".", "_")
    PROBES.register(name, params=params({"path": _PATH}), defaults=defaults, available=_mount_reason)(factory)


for _name, _field, _defaults, _doc in (
    (
        "disk.used_percent",
        "percent",
        {"unit": "%", "state_class": "measurement", "platform": "sensor", "icon": "mdi:harddisk", "precision": 1},
        "Space used on a filesystem, in percent, as df shows it (reserved blocks not counted as free).",
    ),
    ("disk.used", "used", {**_DATA, "state_class": "measurement"}, "Space used on a filesystem, in bytes."),
    (
        "disk.free",
        "free",
        {**_DATA, "state_class": "measurement"},
        "Space free on a filesystem for ordinary users, in bytes.",
    ),
    ("disk.total", "total", {**_DATA, "state_class": "measurement"}, "Size of a filesystem, in bytes."),
):
    _register_usage(_name, _field, _defaults, _doc)


# --------------------------------------------------------------------- I/O


def _device_name(device: str | None) -> str | None:
    if device is None:
        return None
    return device[len("/dev/") :] if device.startswith("/dev/") else device


def _io_reason(ctx: ProbeContext, device: str | None = None, **_: Any) -> str | None:
    def check() -> str | None:
        dev = _device_name(device)
        if dev is None:
            return None if psutil.disk_io_counters() is not None else "no disk I/O counters on this system"
        per_disk = psutil.disk_io_counters(perdisk=True) or {}
        if dev not in per_disk:
            found = ", ".join(sorted(per_disk)[:12]) or "none"
            return f"no disk I/O counters for {dev!r} (found: {found})"
        return None

    return reason_of(check)


def _io_sampler(device: str | None, field: str) -> Callable[[], dict[str, int] | None]:
    dev = _device_name(device)

    def sample() -> dict[str, int] | None:
        if dev is None:
            counters = psutil.disk_io_counters()
            return None if counters is None else {"*": getattr(counters, field)}
        per_disk = psutil.disk_io_counters(perdisk=True) or {}
        return {dev: getattr(per_disk[dev], field)} if dev in per_disk else None

    return sample


def _register_io(name: str, field: str, rate: bool, doc: str) -> None:
    def factory(ctx: ProbeContext, device: str | None = None) -> Reader:
        reason = _io_reason(ctx, device)
        if reason:
            raise ProbeUnavailable(reason)
        sample = _io_sampler(device, field)
        if rate:
            return guarded(CounterRate(sample))

        def total() -> int | None:
            counters = sample()
            return next(iter(counters.values())) if counters else None

        return guarded(total)

    factory.__doc__ = doc
    factory.__name__ = name.replace(".", "_")
    defaults = _RATE if rate else {**_DATA, "state_class": "total_increasing"}
    PROBES.register(name, params=params({"device": _DEVICE}), defaults=defaults, available=_io_reason)(factory)


for _name, _field, _rate, _doc in (
    ("disk.read_bytes", "read_bytes", False, "Bytes read from a disk (or all disks) since boot."),
    ("disk.write_bytes", "write_bytes", False, "Bytes written to a disk (or all disks) since boot."),
    (
        "disk.read_rate",
        "read_bytes",
        True,
        "Disk read throughput in bytes per second since this sensor's previous reading.\n\n"
        "The first reading covers the time since the sensor was bound.",
    ),
    (
        "disk.write_rate",
        "write_bytes",
        True,
        "Disk write throughput in bytes per second since this sensor's previous reading.\n\n"
        "The first reading covers the time since the sensor was bound.",
    ),
):
    _register_io(_name, _field, _rate, _doc)
