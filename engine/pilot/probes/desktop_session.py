"""Desktop session probes: how long the user has been idle, whether the screen is locked.

Linux asks two services over D-Bus:

- **Mutter's idle monitor** (GNOME; `org.gnome.Mutter.IdleMonitor` `GetIdletime` on the
  session bus): the milliseconds since the last keyboard or mouse input, exact.
- **logind** (`org.freedesktop.login1` on the system bus): the session's `IdleHint`,
  `IdleSinceHint` and `LockedHint`, which the desktop sets (GNOME, KDE, and xss-lock or
  swayidle elsewhere). IdleHint turns on only after the desktop's own idle delay, so the
  seconds it gives are 0 until then: coarse, but on every systemd desktop.

The session is the one named by `session`, else this process's own (logind's GetSessionByPID),
else logind's `auto` session (the user's graphical one: a user service runs outside any session),
else the session active on seat0 (a system service's user has no graphical session). Windows answers idle time with
GetLastInputInfo (untested on real Windows); it has no lock state an agent can read.
"""

from __future__ import annotations

import os
import sys
import time
from collections.abc import Callable
from typing import Any

from pilot.params import params, prop
from pilot.probes import _dbus
from pilot.probes._common import Reader
from pilot.probes._context import ProbeContext, ProbeUnavailable
from pilot.registry import PROBES

LOGIND = "org.freedesktop.login1"
LOGIND_PATH = "/org/freedesktop/login1"
MANAGER = "org.freedesktop.login1.Manager"
SESSION = "org.freedesktop.login1.Session"
SEAT = "org.freedesktop.login1.Seat"
MUTTER = "org.gnome.Mutter.IdleMonitor"
MUTTER_PATH = "/org/gnome/Mutter/IdleMonitor/Core"
TIMEOUT = 0.5
SESSION_ID = r"^[A-Za-z0-9_][A-Za-z0-9_.-]{0,63}$"
# wall clock for logind's IdleSinceHint (microseconds since the epoch); tests replace it
CLOCK: Callable[[], float] = time.time

_SESSION = prop(
    "string", "logind session id (see `loginctl list-sessions`); default: the agent's own session.", pattern=SESSION_ID
)
_SOURCE = prop(
    "string",
    "Where the idle time comes from: auto (Mutter's idle monitor when GNOME runs, else logind), mutter or logind.",
    enum=["auto", "mutter", "logind"],
    default="auto",
)
_AFTER = prop(
    "number",
    "Seconds without input after which the session counts as idle; default: logind's IdleHint "
    "(the desktop's own idle delay).",
    exclusiveMinimum=0,
    maximum=86400 * 7,
)


def _windows() -> bool:
    return sys.platform == "win32"


def session_path(session: str | None = None) -> str | None:
    """The logind object path of `session`, or of this process's own session; None when it has none."""
    bus = _dbus.system_bus()
    if session is not None:
        return _dbus.call(bus, LOGIND, LOGIND_PATH, MANAGER, "GetSession", "s", (session,), TIMEOUT)[0]
    try:
        return _dbus.call(bus, LOGIND, LOGIND_PATH, MANAGER, "GetSessionByPID", "u", (os.getpid(),), TIMEOUT)[0]
    except _dbus.DBusError as exc:
        if exc.name != "org.freedesktop.login1.NoSessionForPID":
            raise
    return None


def seat_session_path(seat: str = "seat0") -> str:
    """The session in front of the seat's screen and keyboard (logind's ActiveSession of seat0)."""
    active = _dbus.get_property(
        _dbus.system_bus(), LOGIND, f"{LOGIND_PATH}/seat/{seat}", SEAT, "ActiveSession", TIMEOUT
    )
    if not (isinstance(active, tuple) and len(active) == 2 and isinstance(active[1], str) and active[1] != "/"):
        raise _dbus.DBusError(f"no session is active on {seat}")
    return active[1]


def session_property(name: str, session: str | None = None) -> Any:
    """A property of the session: the named one, else this process's own, else logind's `auto` (the
    user's graphical session, for a user service, which runs outside any session), else the session
    active on seat0 (for a system service, whose user has no graphical session)."""
    bus = _dbus.system_bus()
    path = session_path(session)
    if path is None:
        try:
            return _dbus.get_property(bus, LOGIND, f"{LOGIND_PATH}/session/auto", SESSION, name, TIMEOUT)
        except _dbus.DBusError:
            path = seat_session_path()
    return _dbus.get_property(bus, LOGIND, path, SESSION, name, TIMEOUT)


def mutter_idle_seconds() -> float:
    (ms,) = _dbus.call(_dbus.session_bus(), MUTTER, MUTTER_PATH, MUTTER, "GetIdletime", timeout=TIMEOUT)
    if not isinstance(ms, int) or ms < 0:
        raise _dbus.DBusError("Mutter's idle monitor sent a malformed idle time")
    return ms / 1000


def logind_idle_seconds(session: str | None = None) -> float:
    """Seconds since logind's IdleHint turned on; 0 while it is off."""
    if not session_property("IdleHint", session):
        return 0.0
    since = session_property("IdleSinceHint", session)
    if not isinstance(since, int) or since <= 0:
        raise _dbus.DBusError("logind sent no IdleSinceHint for an idle session")
    return max(0.0, CLOCK() - since / 1_000_000)


def windows_idle_seconds() -> float:
    """GetLastInputInfo: milliseconds of the tick count at the last input, against GetTickCount."""
    import ctypes

    class LASTINPUTINFO(ctypes.Structure):
        _fields_ = [("cbSize", ctypes.c_uint), ("dwTime", ctypes.c_uint)]

    info = LASTINPUTINFO(ctypes.sizeof(LASTINPUTINFO), 0)
    user32 = ctypes.windll.user32  # type: ignore[attr-defined]
    kernel32 = ctypes.windll.kernel32  # type: ignore[attr-defined]
    if not user32.GetLastInputInfo(ctypes.byref(info)):
        raise OSError("GetLastInputInfo failed")
    return ((kernel32.GetTickCount() - info.dwTime) & 0xFFFFFFFF) / 1000  # both wrap after 49.7 days


def _mutter_present() -> bool:
    if _dbus.session_address() is None:
        return False
    try:
        return MUTTER in _dbus.list_names(_dbus.session_bus(), TIMEOUT)
    except _dbus.DBusError:
        return False


def idle_seconds(source: str = "auto", session: str | None = None) -> float:
    if _windows():
        return windows_idle_seconds()
    if source == "mutter" or (source == "auto" and session is None and _mutter_present()):
        return mutter_idle_seconds()
    return logind_idle_seconds(session)


def _logind_reason() -> str | None:
    return _dbus.unreachable(_dbus.system_address(), "system bus")


def _idle_reason(ctx: ProbeContext, source: str = "auto", session: str | None = None, **_: Any) -> str | None:
    if _windows():
        return None if session is None and source == "auto" else "`session` and `source` are Linux-only"
    if not sys.platform.startswith("linux"):
        return f"idle time is not supported on {sys.platform}"
    if source == "mutter":
        return _dbus.unreachable(_dbus.session_address(), "session bus")
    return _logind_reason()


def _locked_reason(ctx: ProbeContext, session: str | None = None, **_: Any) -> str | None:
    if _windows() or not sys.platform.startswith("linux"):
        return "the lock state is read from logind, which only Linux has"
    return _logind_reason()


def _reading(read: Callable[[], Any]) -> Reader:
    def safe() -> Any:
        try:
            return read()
        except (_dbus.DBusError, OSError, ValueError):
            return None  # logind or the desktop did not answer: no reading right now

    return safe


@PROBES.register(
    "session.idle_seconds",
    params=params({"source": _SOURCE, "session": _SESSION}, examples=[{"source": "logind", "session": "2"}]),
    defaults={
        "unit": "s",
        "device_class": "duration",
        "state_class": "measurement",
        "platform": "sensor",
        "icon": "mdi:timer-sand",
        "precision": 0,
    },
    available=_idle_reason,
)
def session_idle_seconds(ctx: ProbeContext, source: str = "auto", session: str | None = None) -> Reader:
    """Seconds since the user last touched the keyboard or mouse.

    GNOME: Mutter's idle monitor (exact). Elsewhere: logind's IdleSinceHint, which stays 0
    until the desktop's own idle delay has passed. Windows: GetLastInputInfo (untested there).
    """
    reason = _idle_reason(ctx, source, session)
    if reason:
        raise ProbeUnavailable(reason)
    return _reading(lambda: round(idle_seconds(source, session), 1))


@PROBES.register(
    "session.idle",
    params=params({"after": _AFTER, "session": _SESSION}, examples=[{"after": 300}]),
    defaults={"platform": "binary_sensor", "icon": "mdi:sleep"},
    available=lambda ctx, after=None, session=None, **_: (
        _idle_reason(ctx, "auto", session) if after is not None else _locked_reason(ctx, session)
    ),
)
def session_idle(ctx: ProbeContext, after: float | None = None, session: str | None = None) -> Reader:
    """Whether the user is away: no input for `after` seconds, or logind's IdleHint without `after`.

    Without `after` the desktop decides (its idle delay, the one that dims the screen); with it,
    the idle time of `session.idle_seconds` is compared with `after`.
    """
    if after is not None:
        reason = _idle_reason(ctx, "auto", session)
        if reason:
            raise ProbeUnavailable(reason)
        return _reading(lambda: idle_seconds("auto", session) >= after)
    reason = _locked_reason(ctx, session)
    if reason:
        raise ProbeUnavailable(reason)
    return _reading(lambda: bool(session_property("IdleHint", session)))


@PROBES.register(
    "session.locked",
    params=params({"session": _SESSION}, examples=[{"session": "2"}]),
    defaults={"platform": "binary_sensor", "icon": "mdi:monitor-lock"},
    available=_locked_reason,
)
def session_locked(ctx: ProbeContext, session: str | None = None) -> Reader:
    """Whether the session's screen is locked (logind's LockedHint, which the screen locker sets)."""
    reason = _locked_reason(ctx, session)
    if reason:
        raise ProbeUnavailable(reason)
    return _reading(lambda: bool(session_property("LockedHint", session)))
