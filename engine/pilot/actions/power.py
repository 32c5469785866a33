"""Power actions: shut down, reboot, suspend, hibernate, and the power-profiles-daemon profile.

Linux backends, in the order `method: auto` tries them:

- **logind** over D-Bus with systemd's own `busctl` (no Python D-Bus library): `PowerOff`,
  `Reboot`, `Suspend`, `Hibernate` with `interactive=true`, so polkit decides (an active
  local session may power off; a service user needs a polkit rule for the action id in
  `privilege`). A delayed shutdown or reboot is `ScheduleShutdown`, at an absolute time in
  microseconds since the epoch. Chosen when `busctl` exists and systemd is the running init
  (`/run/systemd/system` exists, the test `sd_booted()` uses).
- **systemctl** `poweroff|reboot|suspend|hibernate`; a delayed shutdown or reboot is
  `shutdown -h|-r +MINUTES` (whole minutes, rounded up: a delay is a minimum).

Suspend and hibernate take no delay: neither logind nor systemctl can schedule them, and a
transient timer (`systemd-run --on-active`) would need the right to create units in the system
manager. A rule that wants "suspend in 10 minutes" puts a `delay:` step before the command.

Windows dispatches to `_windows.py` (argv only, untested on real Windows).
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from typing import Any

from pilot.actions import _windows
from pilot.actions._base import ActionContext, ActionError, Call, Unsupported
from pilot.actions._common import exec_call, is_windows, need_tool
from pilot.params import params, prop
from pilot.registry import ACTIONS
from pilot.units import DURATION_PATTERN, parse_duration

SYSTEMD_RUNTIME_DIR = "/run/systemd/system"

LOGIND = ("busctl", "call", "org.freedesktop.login1", "/org/freedesktop/login1", "org.freedesktop.login1.Manager")

# verb -> (logind method, ScheduleShutdown type, systemctl verb, shutdown(8) flag)
_VERBS: dict[str, tuple[str, str | None, str, str | None]] = {
    "shutdown": ("PowerOff", "poweroff", "poweroff", "-h"),
    "reboot": ("Reboot", "reboot", "reboot", "-r"),
    "suspend": ("Suspend", None, "suspend", None),
    "hibernate": ("Hibernate", None, "hibernate", None),
}

_METHOD = prop(
    "string",
    "How to reach the power manager: `auto` (logind over D-Bus when systemd runs, "
    "else systemctl), `logind` or `systemctl`.",
    enum=["auto", "logind", "systemctl"],
    default="auto",
)
_DELAY = prop(
    "string",
    "Wait this long before powering off (for example 1m or 1h30m); leave out to act at once. "
    "Without logind, shutdown(8) counts whole minutes, rounded up.",
    pattern=DURATION_PATTERN,
)

_WITH_DELAY = params({"delay": _DELAY, "method": _METHOD}, examples=[{"delay": "1m"}, {"method": "systemctl"}])
_NO_DELAY = params({"method": _METHOD}, examples=[{"method": "logind"}])


def systemd_booted(path: str = SYSTEMD_RUNTIME_DIR) -> bool:
    """Whether systemd is the running init: the check sd_booted(3) makes."""
    return os.path.isdir(path)


def _backend(ctx: ActionContext, method: str, booted: Callable[[], bool] | None) -> str:
    """'logind' or 'systemctl' for this machine and `method`; Unsupported with the reason otherwise."""
    if ctx.platform not in ("linux", "windows"):
        raise Unsupported(f"power actions are not supported on {ctx.platform or 'this system'}")
    if method not in ("auto", "logind", "systemctl"):
        raise ActionError(f"method must be auto, logind or systemctl, not {str(method)[:20]!r}")
    if is_windows(ctx):
        if method != "auto":
            raise Unsupported(f"method '{method}' is Linux-only; leave it out on Windows")
        return "windows"
    is_booted = (booted or systemd_booted)()
    if method in ("auto", "logind"):
        if ctx.which("busctl") and is_booted:
            return "logind"
        if method == "logind":
            if not ctx.which("busctl"):
                raise Unsupported("busctl (systemd) is not installed, so logind cannot be reached")
            raise Unsupported(f"systemd is not running here ({SYSTEMD_RUNTIME_DIR} is missing), so there is no logind")
    if ctx.which("systemctl"):
        return "systemctl"
    if method == "systemctl":
        raise Unsupported("systemctl is not installed")
    raise Unsupported("neither logind (busctl with a running systemd) nor systemctl is available here")


def _delay_seconds(delay: Any) -> float:
    if delay is None:
        return 0.0
    try:
        seconds = parse_duration(delay)
    except ValueError as exc:
        raise ActionError(str(exc)) from None
    if seconds < 0:
        raise ActionError("delay cannot be negative")
    return seconds


def _plan(
    ctx: ActionContext,
    verb: str,
    *,
    delay: Any,
    method: str,
    clock: Callable[[], float] | None,
    booted: Callable[[], bool] | None,
) -> list[Call]:
    seconds = _delay_seconds(delay)
    logind_method, schedule_type, systemctl_verb, shutdown_flag = _VERBS[verb]
    if seconds and schedule_type is None:
        raise ActionError(
            f"delay is only supported for power.shutdown and power.reboot; {verb} at once, "
            "or put a `delay:` step before this command in a rule"
        )
    backend = _backend(ctx, method, booted)
    if backend == "windows":
        argv = {
            "shutdown": lambda: _windows.shutdown(seconds),
            "reboot": lambda: _windows.reboot(seconds),
            "suspend": _windows.suspend,
            "hibernate": _windows.hibernate,
        }[verb]()
        return [exec_call(argv)]
    if backend == "logind":
        if seconds:
            when = int(round(((clock or time.time)() + seconds) * 1_000_000))
            return [exec_call(LOGIND + ("ScheduleShutdown", "st", schedule_type, str(when)))]
        return [exec_call(LOGIND + (logind_method, "b", "true"))]
    if seconds:
        need_tool(ctx, "shutdown", " (needed for a delayed shutdown without logind)")
        minutes = int(-(-seconds // 60))
        return [exec_call(("shutdown", shutdown_flag, f"+{minutes}"))]
    return [exec_call(("systemctl", systemctl_verb))]


def _available(
    ctx: ActionContext, method: str = "auto", delay: Any = None, booted: Callable[[], bool] | None = None, **_: Any
) -> str | None:
    try:
        _backend(ctx, method, booted)
    except ActionError as exc:
        return str(exc)
    return None


@ACTIONS.register(
    "power.shutdown",
    params=_WITH_DELAY,
    privilege="org.freedesktop.login1.power-off",
    platforms=("button",),
    available=_available,
)
def shutdown(
    ctx: ActionContext,
    value: Any = None,
    *,
    delay: str | None = None,
    method: str = "auto",
    clock: Callable[[], float] | None = None,
    booted: Callable[[], bool] | None = None,
) -> list[Call]:
    """Power the machine off, at once or after a delay.

    `clock` (seconds since the epoch) and `booted` (is systemd running) are for tests;
    profiles cannot set them.
    """
    return _plan(ctx, "shutdown", delay=delay, method=method, clock=clock, booted=booted)


@ACTIONS.register(
    "power.reboot",
    params=_WITH_DELAY,
    privilege="org.freedesktop.login1.reboot",
    platforms=("button",),
    available=_available,
)
def reboot(
    ctx: ActionContext,
    value: Any = None,
    *,
    delay: str | None = None,
    method: str = "auto",
    clock: Callable[[], float] | None = None,
    booted: Callable[[], bool] | None = None,
) -> list[Call]:
    """Restart the machine, at once or after a delay."""
    return _plan(ctx, "reboot", delay=delay, method=method, clock=clock, booted=booted)


@ACTIONS.register(
    "power.suspend",
    params=_NO_DELAY,
    privilege="org.freedesktop.login1.suspend",
    platforms=("button",),
    available=_available,
)
def suspend(
    ctx: ActionContext,
    value: Any = None,
    *,
    method: str = "auto",
    delay: str | None = None,
    booted: Callable[[], bool] | None = None,
) -> list[Call]:
    """Suspend the machine to RAM (sleep).

    Takes no delay (see the module notes); a `delay` passed anyway is refused.
    """
    return _plan(ctx, "suspend", delay=delay, method=method, clock=None, booted=booted)


@ACTIONS.register(
    "power.hibernate",
    params=_NO_DELAY,
    privilege="org.freedesktop.login1.hibernate",
    platforms=("button",),
    available=_available,
)
def hibernate(
    ctx: ActionContext,
    value: Any = None,
    *,
    method: str = "auto",
    delay: str | None = None,
    booted: Callable[[], bool] | None = None,
) -> list[Call]:
    """Hibernate the machine (suspend to disk).

    Takes no delay (see the module notes); a `delay` passed anyway is refused.
    """
    return _plan(ctx, "hibernate", delay=delay, method=method, clock=None, booted=booted)


# ------------------------------------------------------------ power.profile

PROFILES = ("power-saver", "balanced", "performance")


def _profile_available(ctx: ActionContext, **_: Any) -> str | None:
    if is_windows(ctx):
        return None
    if ctx.platform != "linux":
        return f"power profiles are not supported on {ctx.platform or 'this system'}"
    if not ctx.which("powerprofilesctl"):
        return "powerprofilesctl (power-profiles-daemon) is not installed"
    return None


@ACTIONS.register(
    "power.profile",
    params=params({}),
    privilege="org.freedesktop.UPower.PowerProfiles.switch-profile",
    platforms=("select",),
    available=_profile_available,
)
def profile(ctx: ActionContext, value: Any) -> list[Call]:
    """Switch the power profile: power-saver, balanced or performance.

    Linux: `powerprofilesctl set` (power-profiles-daemon, or tuned-ppd). Windows: `powercfg
    /setactive` with the built-in scheme of the same intent (untested on real Windows).
    The select's `options` should be some of power-saver, balanced, performance; a machine
    without a performance mode refuses that one when it runs. No state is published: reading
    it would mean running powerprofilesctl on every poll.
    """
    if value not in PROFILES:
        raise ActionError(f"{str(value)[:40]!r} is not a power profile; choose one of {', '.join(PROFILES)}")
    if is_windows(ctx):
        return [exec_call(_windows.power_profile(value))]
    reason = _profile_available(ctx)
    if reason:
        raise Unsupported(reason)
    return [exec_call(("powerprofilesctl", "set", value))]
