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
import threading
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
FRESH = 1.0  # seconds one reading serves the session probes of a tick, never the next tick's
REFIND = 60.0  # seconds a fallback (seat0's session) or Mutter's presence is trusted before it is asked again
AUTO = f"{LOGIND_PATH}/session/auto"
SEAT0 = ""  # not a path: the session active on seat0
MAX_AGE = 60.0  # seconds the session's properties stand without a signal before they are read again anyway
# what logind announces: a property of a session or seat changed (IdleHint, LockedHint, ActiveSession
# all "emit change"), a session came or went, logind itself restarted
LOGIND_SIGNALS = (
    _dbus.Signals(
        interface="org.freedesktop.DBus.Properties",
        member="PropertiesChanged",
        path_namespace=LOGIND_PATH,
        sender=LOGIND,
    ),
    _dbus.Signals(interface=MANAGER, sender=LOGIND),
    _dbus.Signals(
        interface="org.freedesktop.DBus", member="NameOwnerChanged", sender="org.freedesktop.DBus", arg0=LOGIND
    ),
)
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


def seat_session_path(seat: str = "seat0") -> str:
    """The session in front of the seat's screen and keyboard (logind's ActiveSession of seat0)."""
    active = _dbus.get_property(
        _dbus.system_bus(), LOGIND, f"{LOGIND_PATH}/seat/{seat}", SEAT, "ActiveSession", TIMEOUT
    )
    if not (isinstance(active, tuple) and len(active) == 2 and isinstance(active[1], str) and active[1] != "/"):
        raise _dbus.DBusError(f"no session is active on {seat}")
    return active[1]


class SessionReader:
    """What the session probes of one context read, shared between them and remembered between readings.

    logind announces every change of IdleHint, IdleSinceHint, LockedHint and seat0's ActiveSession
    with PropertiesChanged, and sessions coming and going with SessionNew/SessionRemoved; the reader
    subscribes to those (and to logind restarting) and, at each reading, looks without waiting at
    what the bus delivered. Nothing came: the last answer stands, no round trip. Something came, or
    MAX_AGE seconds passed, or the last reading failed: the session's properties are read again in
    one GetAll, which serves every probe of the tick (within FRESH seconds). The session's object
    path is looked up once (the named session, else this process's own, else logind's `auto`) and
    kept until a call on it fails with an error; the seat0 fallback (a system service) asks
    ActiveSession at each GetAll and tries the own and `auto` sessions again after REFIND seconds.
    Mutter's idle time has no signal, so it is asked once a tick (GetIdletime); its presence is asked
    with NameHasOwner and trusted REFIND seconds, or until GetIdletime says it is gone.
    """

    def __init__(self, session: str | None = None, clock: Callable[[], float] = time.monotonic) -> None:
        self.session = session
        self.clock = clock
        self._lock = threading.Lock()
        self._path: str | None = None  # the session's object path; AUTO or SEAT0 for those fallbacks
        self._found_at = 0.0
        self._properties: tuple[float, dict[str, Any] | _dbus.DBusError] | None = None
        self._mutter: tuple[float, bool] | None = None  # (when asked, present)
        self._idle_ms: tuple[float, int | _dbus.DBusError] | None = None
        self._seen: tuple[_dbus.Bus, int] | None = None  # the system bus and its watch's count at the last look

    # ------------------------------------------------------------------ logind

    def _changed(self) -> bool:
        """Whether logind said something changed since the last look (a property of a session or seat,
        a session that came or went, logind restarting); True when that cannot be known."""
        bus = _dbus.system_bus()
        count = bus.look(bus.watch(*LOGIND_SIGNALS))
        seen, self._seen = self._seen, (bus, count)
        return seen is None or seen[0] is not bus or seen[1] != count

    def properties(self) -> dict[str, Any]:
        """The session's properties (IdleHint, IdleSinceHint, LockedHint...): one GetAll when logind
        announced a change, or MAX_AGE seconds after the last one; one answer for a whole tick."""
        with self._lock:
            now = self.clock()
            cached = self._properties
            if cached is None or not 0 <= now - cached[0] < FRESH:
                changed = self._changed()  # looked at only past the tick, so no change is lost
                stands = (
                    cached is not None
                    and not isinstance(cached[1], _dbus.DBusError)
                    and not changed
                    and 0 <= now - cached[0] < MAX_AGE
                )
                if not stands:
                    try:
                        value: dict[str, Any] | _dbus.DBusError = self._read_properties(now)
                    except _dbus.DBusError as exc:
                        value = exc  # no reading for the tick: the other probes are not made to wait again
                        self._seen = None
                    self._properties = (now, value)
            assert self._properties is not None
            result = self._properties[1]
        if isinstance(result, _dbus.DBusError):
            raise result
        return result

    def _read_properties(self, now: float) -> dict[str, Any]:
        bus = _dbus.system_bus()
        remembered = self._path is not None and (self._path != SEAT0 or 0 <= now - self._found_at < REFIND)
        if not remembered:
            self._find(bus, now)
        try:
            return self._get_all(bus)
        except _dbus.DBusError as exc:
            if not remembered or exc.name is None:  # looked up just now, or no answer at all: no reading
                raise
        self._find(bus, now)  # the session ended or logind restarted: look it up again, once
        return self._get_all(bus)

    def _find(self, bus: _dbus.Bus, now: float) -> None:
        self._path = None
        if self.session is not None:
            body = _dbus.call(bus, LOGIND, LOGIND_PATH, MANAGER, "GetSession", "s", (self.session,), TIMEOUT)
        else:
            try:
                body = _dbus.call(bus, LOGIND, LOGIND_PATH, MANAGER, "GetSessionByPID", "u", (os.getpid(),), TIMEOUT)
            except _dbus.DBusError as exc:
                if exc.name != "org.freedesktop.login1.NoSessionForPID":
                    raise
                body = (AUTO,)
        path = body[0] if len(body) == 1 else None
        if not isinstance(path, str):
            raise _dbus.DBusError("logind sent a malformed session path")
        self._path, self._found_at = path, now

    def _get_all(self, bus: _dbus.Bus) -> dict[str, Any]:
        if self._path == AUTO:
            try:
                return _dbus.get_all(bus, LOGIND, AUTO, SESSION, TIMEOUT)
            except _dbus.DBusError:  # a user service whose user has no graphical session
                self._path = SEAT0
        path = seat_session_path() if self._path == SEAT0 else self._path
        assert path is not None
        return _dbus.get_all(bus, LOGIND, path, SESSION, TIMEOUT)

    def logind_idle_seconds(self) -> float:
        """Seconds since logind's IdleHint turned on; 0 while it is off."""
        properties = self.properties()
        if not properties.get("IdleHint"):
            return 0.0
        since = properties.get("IdleSinceHint")
        if not isinstance(since, int) or isinstance(since, bool) or since <= 0:
            raise _dbus.DBusError("logind sent no IdleSinceHint for an idle session")
        return max(0.0, CLOCK() - since / 1_000_000)

    # ------------------------------------------------------------------ Mutter

    def mutter_present(self) -> bool:
        if _dbus.session_address() is None:
            return False
        with self._lock:
            now = self.clock()
            if self._mutter is None or not 0 <= now - self._mutter[0] < REFIND:
                try:
                    present = _dbus.name_has_owner(_dbus.session_bus(), MUTTER, TIMEOUT)
                except _dbus.DBusError:
                    present = False
                self._mutter = (now, present)
            return self._mutter[1]

    def mutter_idle_seconds(self) -> float:
        """Mutter's idle time, one GetIdletime a tick; a DBusError named in _dbus.GONE when it is gone."""
        with self._lock:
            now = self.clock()
            if self._idle_ms is None or not 0 <= now - self._idle_ms[0] < FRESH:
                try:
                    value: int | _dbus.DBusError = mutter_idle_ms()
                except _dbus.DBusError as exc:
                    value = exc
                    if exc.name in _dbus.GONE:
                        self._mutter = (now, False)  # GNOME quit: logind answers until it is seen again
                self._idle_ms = (now, value)
            result = self._idle_ms[1]
        if isinstance(result, _dbus.DBusError):
            raise result
        return result / 1000

    def idle_seconds(self, source: str = "auto") -> float:
        if _windows():
            return windows_idle_seconds()
        if source == "mutter":
            return self.mutter_idle_seconds()
        if source == "auto" and self.session is None and self.mutter_present():
            try:
                return self.mutter_idle_seconds()
            except _dbus.DBusError as exc:
                if exc.name not in _dbus.GONE:
                    raise
        return self.logind_idle_seconds()


def mutter_idle_ms() -> int:
    (ms,) = _dbus.call(_dbus.session_bus(), MUTTER, MUTTER_PATH, MUTTER, "GetIdletime", timeout=TIMEOUT)
    if not isinstance(ms, int) or isinstance(ms, bool) or ms < 0:
        raise _dbus.DBusError("Mutter's idle monitor sent a malformed idle time")
    return ms


def session_reader(ctx: ProbeContext, session: str | None) -> SessionReader:
    """The context's one SessionReader of `session` (the agent has one context: one for all three probes)."""
    reader: SessionReader = ctx.shared(f"session.reader:{session or ''}", lambda: SessionReader(session))
    return reader


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
    reader = session_reader(ctx, session)
    return _reading(lambda: round(reader.idle_seconds(source), 1))


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
        reader = session_reader(ctx, session)
        return _reading(lambda: reader.idle_seconds("auto") >= after)
    reason = _locked_reason(ctx, session)
    if reason:
        raise ProbeUnavailable(reason)
    reader = session_reader(ctx, session)
    return _reading(lambda: bool(reader.properties().get("IdleHint")))


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
    reader = session_reader(ctx, session)
    return _reading(lambda: bool(reader.properties().get("LockedHint")))
