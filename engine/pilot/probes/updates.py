"""updates.pending: how many package updates wait, from apt or dnf, at most once an hour.

apt: `apt-get -s -o Debug::NoLocking=1 upgrade` simulates the upgrade without root and without
taking apt's lock (so it never blocks, or is blocked by, a real apt run) and prints one `Inst`
line per package. dnf: `dnf -q check-update` exits 100 when updates wait and lists one
`NAME.ARCH VERSION REPO` line each (what follows `Obsoleting Packages` is not counted); it may
refresh expired metadata over the network, as dnf does. Both run through `run_program` on the
background worker: slow, but never on the telemetry loop. `security: true` counts only updates
from a security suite (apt: an origin such as `Debian-Security:12/stable-security`; dnf:
`--security`).
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

MANAGERS = ("auto", "apt", "dnf")
MIN_EVERY = 3600.0
TIMEOUT = 120.0
MAX_OUTPUT = 8 << 20
_TOOLS = {"apt": "apt-get", "dnf": "dnf"}
_DNF_LINE = re.compile(r"^(\S+)\.(\S+)\s+(\S+)\s+(\S+)\s*$")
_SECURITY = re.compile(r"[-/]security\b", re.IGNORECASE)
# What apt's answer depends on: the installed set (and holds), the package lists `apt update` writes
# (by renaming files into the folder, which changes its mtime), the sources and the pinning. While none
# of them changed, the count cannot have changed, and the costly simulation is skipped.
APT_STATE = (
    "/var/lib/dpkg/status",
    "/var/lib/apt/lists",
    "/etc/apt/sources.list",
    "/etc/apt/sources.list.d",
    "/etc/apt/preferences",
    "/etc/apt/preferences.d",
)


def pick_manager(manager: str) -> str | None:
    """The package manager to ask: `manager` itself, or for auto the first installed."""
    if manager != "auto":
        return manager if resolve(_TOOLS[manager])[0] else None
    return next((m for m in ("apt", "dnf") if resolve(_TOOLS[m])[0]), None)


def argv_for(manager: str, security: bool) -> list[str]:
    if manager == "apt":
        return ["apt-get", "-s", "-o", "Debug::NoLocking=1", "upgrade"]
    return ["dnf", "-q", "check-update", *(["--security"] if security else [])]


def count_apt(text: str, security: bool = False) -> int:
    """`Inst` lines of apt's simulation; with security, those whose new version comes from a security suite."""
    count = 0
    for line in text.splitlines():
        if not line.startswith("Inst "):
            continue
        origin = line.partition("(")[2]
        if not security or _SECURITY.search(origin):
            count += 1
    return count


def count_dnf(text: str) -> int:
    count = 0
    for line in text.splitlines():
        if line.startswith("Obsoleting Packages"):
            break
        if _DNF_LINE.match(line):
            count += 1
    return count


def pending(manager: str, security: bool, runner: Callable[..., ProgramResult] = run_program) -> int:
    result = runner(argv_for(manager, security), timeout=TIMEOUT, max_output=MAX_OUTPUT)
    tool = _TOOLS[manager]
    if result.error or result.timed_out or result.truncated:
        raise ProbeUnavailable(f"{tool} {result.problem(MAX_OUTPUT)}")
    if manager == "apt":
        if result.returncode != 0:
            raise ProbeUnavailable(f"{tool} {result.problem()}")
        return count_apt(result.text(), security)
    if result.returncode == 0:
        return 0
    if result.returncode != 100:
        raise ProbeUnavailable(f"{tool} {result.problem()}")
    return count_dnf(result.text())


def fingerprint(paths: tuple[str, ...] = APT_STATE) -> tuple:
    """The identity and change time of each path apt's answer depends on (None where it is absent)."""
    out: list[tuple] = []
    for path in paths:
        try:
            info = os.stat(path)
        except OSError:
            out.append((path, None))
            continue
        out.append((path, info.st_ino, info.st_size, info.st_mtime_ns, info.st_ctime_ns))
    return tuple(out)


def apt_work(
    security: bool, runner: Callable[..., ProgramResult], paths: tuple[str, ...] = APT_STATE
) -> Callable[[], int]:
    """The background work for apt: the simulation only when something it depends on changed."""
    last: dict[str, Any] = {}

    def work() -> int:
        seen = fingerprint(paths)  # taken before the run: a change during it is seen next time
        if last.get("seen") == seen:
            return last["count"]
        count = pending("apt", security, runner)
        last.update(seen=seen, count=count)
        return count

    return work


def _available(ctx: ProbeContext, manager: str = "auto", every: Any = "1h", **_: Any) -> str | None:
    if manager not in MANAGERS:
        return f"manager must be one of {', '.join(MANAGERS)}"
    try:
        parse_duration(every)
    except ValueError as exc:
        return str(exc)
    if pick_manager(manager) is None:
        return "neither apt-get nor dnf is installed" if manager == "auto" else f"{_TOOLS[manager]} is not installed"
    return None


@PROBES.register(
    "updates.pending",
    params=params(
        {
            "manager": prop(
                "string", "Package manager to ask; auto: apt, else dnf.", enum=list(MANAGERS), default="auto"
            ),
            "security": prop("boolean", "Count only security updates.", default=False),
            "every": prop("string", "How often to look (at least 1h).", pattern=DURATION_PATTERN, default="1h"),
        },
        examples=[{}, {"security": True}, {"manager": "dnf", "every": "6h"}],
    ),
    defaults={"state_class": "measurement", "platform": "sensor", "icon": "mdi:package-up", "precision": 0},
    available=_available,
)
def updates_pending(
    ctx: ProbeContext,
    manager: str = "auto",
    security: bool = False,
    every: str | float = "1h",
    *,
    runner: Callable[..., ProgramResult] = run_program,
    clock: Callable[[], float] = time.monotonic,
    worker: Any = None,
    state_paths: tuple[str, ...] = APT_STATE,
) -> Callable[[], int | None]:
    """Number of package updates waiting (apt or dnf), checked at most once an hour.

    apt: `apt-get -s -o Debug::NoLocking=1 upgrade` (a simulation: no root, no lock), run again
    only when the package lists, the installed set, the sources or the pinning changed; dnf:
    `dnf -q check-update`. Runs on Pilot's background thread; until the first answer there is
    no reading.
    """
    if manager not in MANAGERS:
        raise ProbeUnavailable(f"manager must be one of {', '.join(MANAGERS)}")
    interval = every_seconds(every, MIN_EVERY, "every must be at least 1h (a package manager run is costly)")
    chosen = pick_manager(manager)
    if chosen is None:
        raise ProbeUnavailable(_available(ctx, manager) or "no package manager")
    if chosen == "apt":
        work = apt_work(bool(security), runner, state_paths)
    else:
        work = lambda: pending(chosen, bool(security), runner)  # dnf refreshes its metadata itself
    return background_reader(
        f"updates.pending {chosen}" + (" security" if security else ""),
        work,
        every=interval,
        stale_after=3 * interval,
        clock=clock,
        worker=worker,
    )
