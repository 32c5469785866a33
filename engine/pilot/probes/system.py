"""CPU, memory, swap and whole-system probes, read through psutil (and cpufreq in sysfs).

psutil is the one portable layer that works on Linux, Windows and macOS; the
only sysfs/procfs read here is the CPU frequency, because psutil averages or
hides per-core cpufreq and cannot be pointed at a recorded tree.
"""

from __future__ import annotations

import re
import sys
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import psutil

from pilot.params import params, prop
from pilot.probes._common import Reader, guarded, reason_of
from pilot.probes._context import ProbeContext, ProbeUnavailable
from pilot.probes._sysfs import is_dir, list_dir, read_int, read_text
from pilot.registry import PROBES

_CORE = prop(
    "integer",
    "Logical CPU number (0-based) to read; leave out for the whole CPU.",
    minimum=0,
)
_PERCENT = {"unit": "%", "state_class": "measurement", "platform": "sensor", "precision": 1}
_BYTES = {"unit": "B", "device_class": "data_size", "state_class": "measurement", "platform": "sensor", "precision": 0}


def _core_reason(ctx: ProbeContext, core: int | None = None, **_: Any) -> str | None:
    if core is None:
        return None
    count = psutil.cpu_count(logical=True) or 0
    if core >= count:
        return f"no CPU core {core} (this machine has {count} logical CPUs, numbered from 0)"
    return None


# ---------------------------------------------------------------- cpu.percent


def _busy_and_total(times: Any) -> tuple[float, float]:
    """Busy and total CPU seconds of one cpu_times sample, counted the way psutil does."""
    total = sum(times)
    # On Linux guest time is already included in user/nice: do not count it twice.
    total -= getattr(times, "guest", 0.0) + getattr(times, "guest_nice", 0.0)
    idle = times.idle + getattr(times, "iowait", 0.0)
    return total - idle, total


@PROBES.register(
    "cpu.percent",
    params=params({"core": _CORE}),
    defaults={**_PERCENT, "icon": "mdi:cpu-64-bit"},
    available=_core_reason,
)
def cpu_percent(ctx: ProbeContext, core: int | None = None) -> Reader:
    """CPU usage in percent, of the whole CPU or of one core.

    Each reader keeps its own previous psutil.cpu_times() sample, taken when the
    reader is bound, so two sensors never shorten each other's interval (as the
    shared state of psutil.cpu_percent(interval=None) would). The first reading
    is therefore the usage since binding, neither the since-boot average nor
    None; a read within the same clock tick as the previous one returns None.
    """
    reason = _core_reason(ctx, core)
    if reason:
        raise ProbeUnavailable(reason)

    def sample() -> Any:
        if core is None:
            return psutil.cpu_times()
        per_cpu = psutil.cpu_times(percpu=True)
        return per_cpu[core] if core < len(per_cpu) else None

    state: dict[str, Any] = {"prev": None}
    try:
        state["prev"] = sample()
    except (OSError, psutil.Error):
        pass

    def read() -> float | None:
        current = sample()
        previous, state["prev"] = state["prev"], current
        if current is None or previous is None:
            return None
        busy0, total0 = _busy_and_total(previous)
        busy1, total1 = _busy_and_total(current)
        if total1 - total0 <= 0:
            return None
        percent = (busy1 - busy0) / (total1 - total0) * 100.0
        return round(min(100.0, max(0.0, percent)), 2)

    return guarded(read)


# -------------------------------------------------------------- cpu.frequency

_CPU_DIR = re.compile(r"cpu\d+")


def _cpufreq_dirs(ctx: ProbeContext) -> dict[int, Path]:
    base = ctx.sys("devices", "system", "cpu")
    out = {}
    for name in list_dir(base):
        if _CPU_DIR.fullmatch(name) and is_dir(base / name / "cpufreq"):
            out[int(name[3:])] = base / name / "cpufreq"
    return out


def _cpuinfo_mhz(ctx: ProbeContext) -> list[float]:
    text = read_text(ctx.procfs_root / "cpuinfo") or ""
    values = []
    for line in text.splitlines():
        key, _, value = line.partition(":")
        if key.strip() == "cpu MHz":
            try:
                values.append(float(value))
            except ValueError:
                continue
    return values


def _khz(folder: Path) -> int | None:
    for name in ("scaling_cur_freq", "cpuinfo_cur_freq"):
        value = read_int(folder / name)
        if value is not None and value > 0:
            return value
    return None


def _frequency_source(ctx: ProbeContext, core: int | None) -> tuple[Callable[[], float | None] | None, str]:
    """Pick where the frequency comes from: cpufreq in sysfs, /proc/cpuinfo, or psutil (non-Linux)."""
    dirs = _cpufreq_dirs(ctx)
    if dirs:
        if core is not None:
            if core not in dirs:
                return None, f"no cpufreq folder for CPU {core} under {ctx.sys('devices', 'system', 'cpu')}"
            folder = dirs[core]
            return (lambda: (v / 1000.0) if (v := _khz(folder)) is not None else None), ""
        folders = list(dirs.values())

        def mean() -> float | None:
            values = [v for f in folders if (v := _khz(f)) is not None]
            return sum(values) / len(values) / 1000.0 if values else None

        return mean, ""
    if sys.platform.startswith("linux"):
        mhz = _cpuinfo_mhz(ctx)
        if not mhz:
            return None, "no CPU frequency here (no cpufreq in /sys, no 'cpu MHz' in /proc/cpuinfo)"
        if core is not None and core >= len(mhz):
            return None, f"no CPU {core} in /proc/cpuinfo ({len(mhz)} CPUs)"

        def from_cpuinfo() -> float | None:
            values = _cpuinfo_mhz(ctx)
            if core is not None:
                return values[core] if core < len(values) else None
            return sum(values) / len(values) if values else None

        return from_cpuinfo, ""

    def from_psutil() -> float | None:
        freq = psutil.cpu_freq(percpu=core is not None)
        if core is not None:
            return freq[core].current if freq and core < len(freq) else None
        return freq.current if freq else None

    return from_psutil, ""


def _frequency_reason(ctx: ProbeContext, core: int | None = None, **_: Any) -> str | None:
    return reason_of(lambda: _frequency_source(ctx, core)[1] or None)


@PROBES.register(
    "cpu.frequency",
    params=params({"core": _CORE}),
    defaults={
        "unit": "MHz",
        "device_class": "frequency",
        "state_class": "measurement",
        "platform": "sensor",
        "icon": "mdi:speedometer",
        "precision": 0,
    },
    available=_frequency_reason,
)
def cpu_frequency(ctx: ProbeContext, core: int | None = None) -> Reader:
    """Current CPU clock in MHz, of one core or averaged over all cores.

    Linux: cpufreq scaling_cur_freq (else cpuinfo_cur_freq) per CPU, else
    'cpu MHz' of /proc/cpuinfo; elsewhere psutil.cpu_freq().
    """
    source, reason = _frequency_source(ctx, core)
    if source is None:
        raise ProbeUnavailable(reason)
    return guarded(source)


# ---------------------------------------------------------- load and count


@PROBES.register(
    "cpu.load",
    params=params({"period": prop("integer", "Averaging window in minutes: 1, 5 or 15.", enum=[1, 5, 15], default=1)}),
    defaults={"state_class": "measurement", "platform": "sensor", "icon": "mdi:chart-line", "precision": 2},
)
def cpu_load(ctx: ProbeContext, period: int = 1) -> Reader:
    """System load average over 1, 5 or 15 minutes (runnable + waiting tasks).

    On Windows psutil emulates it; its first readings there are 0.
    """
    index = {1: 0, 5: 1, 15: 2}.get(period)
    if index is None:
        raise ValueError(f"period must be 1, 5 or 15, not {period!r}")
    return guarded(lambda: round(psutil.getloadavg()[index], 2))


@PROBES.register(
    "cpu.count",
    params=params(
        {"logical": prop("boolean", "Count logical CPUs (hyper-threads); false counts physical cores.", default=True)}
    ),
    defaults={"platform": "sensor", "icon": "mdi:cpu-64-bit", "precision": 0},
)
def cpu_count(ctx: ProbeContext, logical: bool = True) -> Reader:
    """Number of CPUs: logical CPUs by default, physical cores with logical: false."""
    return guarded(lambda: psutil.cpu_count(logical=logical))


# ---------------------------------------------------------- memory and swap


def _register_psutil_field(
    name: str, sample: Callable[[], Any], field: str, defaults: dict[str, Any], doc: str
) -> None:
    def factory(ctx: ProbeContext) -> Reader:
        return guarded(lambda: getattr(sample(), field))

    factory.__doc__ = doc
    factory.__name__ = name.replace(".", "_")
    PROBES.register(name, params=params(), defaults=defaults)(factory)


_MEMORY_ICON = {"icon": "mdi:memory"}
for _name, _sample, _field, _defaults, _doc in (
    (
        "memory.used_percent",
        psutil.virtual_memory,
        "percent",
        {**_PERCENT, **_MEMORY_ICON},
        "RAM in use, in percent of total (psutil: total minus available).",
    ),
    (
        "memory.used",
        psutil.virtual_memory,
        "used",
        {**_BYTES, **_MEMORY_ICON},
        "RAM in use, in bytes (psutil's 'used': excludes buffers and page cache).",
    ),
    (
        "memory.available",
        psutil.virtual_memory,
        "available",
        {**_BYTES, **_MEMORY_ICON},
        "RAM available to new programs without swapping, in bytes.",
    ),
    ("memory.total", psutil.virtual_memory, "total", {**_BYTES, **_MEMORY_ICON}, "Total physical RAM, in bytes."),
    (
        "swap.used_percent",
        psutil.swap_memory,
        "percent",
        {**_PERCENT, "icon": "mdi:harddisk"},
        "Swap in use, in percent of total swap (0 when there is no swap).",
    ),
    ("swap.used", psutil.swap_memory, "used", {**_BYTES, "icon": "mdi:harddisk"}, "Swap in use, in bytes."),
):
    _register_psutil_field(_name, _sample, _field, _defaults, _doc)


# ------------------------------------------------------------------ system


@PROBES.register(
    "system.uptime",
    params=params(),
    defaults={
        "unit": "s",
        "device_class": "duration",
        "state_class": "total_increasing",
        "platform": "sensor",
        "icon": "mdi:timer-outline",
        "precision": 0,
    },
)
def system_uptime(ctx: ProbeContext) -> Reader:
    """Seconds since the system booted (drops to 0 on reboot, hence total_increasing)."""
    return guarded(lambda: max(0, int(time.time() - psutil.boot_time())))


@PROBES.register(
    "system.boot_time",
    params=params(),
    defaults={"device_class": "timestamp", "platform": "sensor", "icon": "mdi:restart"},
)
def system_boot_time(ctx: ProbeContext) -> Reader:
    """When the system booted, as an ISO 8601 UTC timestamp (Home Assistant's timestamp format)."""

    def read() -> str:
        return datetime.fromtimestamp(psutil.boot_time(), tz=UTC).isoformat(timespec="seconds")

    return guarded(read)


@PROBES.register(
    "system.processes",
    params=params(),
    defaults={"state_class": "measurement", "platform": "sensor", "icon": "mdi:format-list-numbered", "precision": 0},
)
def system_processes(ctx: ProbeContext) -> Reader:
    """Number of running processes (as many as the agent can see)."""
    return guarded(lambda: len(psutil.pids()))


@PROBES.register(
    "system.users",
    params=params(),
    defaults={"state_class": "measurement", "platform": "sensor", "icon": "mdi:account-multiple", "precision": 0},
)
def system_users(ctx: ProbeContext) -> Reader:
    """Number of distinct users logged in (a user with three terminals counts once)."""
    return guarded(lambda: len({u.name for u in psutil.users()}))
