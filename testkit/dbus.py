"""A real, private dbus-daemon for tests, and peers on it written with jeepney's server side.

`DBusDaemon` starts `dbus-daemon --config-file=<tmp> --print-address --nofork` on a socket in
a temporary folder (nothing of the host's buses is touched) and stops it by PID. A second
daemon stands in for the system bus: tests export its address as DBUS_SYSTEM_BUS_ADDRESS.
`Peer` is one connection on such a bus that owns names and answers method calls and
property reads from a thread; `MprisPlayer`, `Logind` and `MutterIdleMonitor` are the
desktop services Pilot talks to, with the state a test sets and a record of the calls made.
"""

from __future__ import annotations

import os
import shutil
import signal
import struct
import subprocess
import tempfile
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

CONFIG = """<!DOCTYPE busconfig PUBLIC "-//freedesktop//DTD D-Bus Bus Configuration 1.0//EN"
 "http://www.freedesktop.org/standards/dbus/1.0/busconfig.dtd">
<busconfig>
  <type>session</type>
  <listen>unix:path={socket}</listen>
  <auth>EXTERNAL</auth>
  <policy context="default">
    <allow send_destination="*" eavesdrop="true"/>
    <allow eavesdrop="true"/>
    <allow own="*"/>
    <allow user="*"/>
  </policy>
</busconfig>
"""

NO_REPLY = object()  # a handler's answer that leaves the caller waiting (a hung peer)


def find_dbus_daemon() -> str | None:
    return shutil.which("dbus-daemon") or next(
        (p for p in ("/usr/bin/dbus-daemon", "/bin/dbus-daemon") if os.access(p, os.X_OK)), None
    )


class DBusDaemon:
    """A private bus: started on a socket in a temporary folder, stopped by PID."""

    def __init__(self) -> None:
        binary = find_dbus_daemon()
        if binary is None:
            raise RuntimeError("dbus-daemon is not installed; `./dev test` installs it")
        self.binary = binary
        self.dir = Path(tempfile.mkdtemp(prefix="pilot-test-dbus-"))
        self.proc: subprocess.Popen[bytes] | None = None
        self.address = ""

    def start(self) -> DBusDaemon:
        conf = self.dir / "bus.conf"
        conf.write_text(CONFIG.format(socket=self.dir / "bus"), encoding="utf-8")
        self.proc = subprocess.Popen(
            [self.binary, f"--config-file={conf}", "--print-address", "--nofork"],
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            stdin=subprocess.DEVNULL,
        )
        assert self.proc.stdout is not None
        line = self.proc.stdout.readline().decode().strip()  # printed once it listens
        if not line:
            self.stop()
            raise RuntimeError("dbus-daemon exited before printing its address")
        self.address = line
        return self

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            os.kill(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                os.kill(self.proc.pid, signal.SIGKILL)
                self.proc.wait()
        if self.proc is not None and self.proc.stdout is not None:
            self.proc.stdout.close()
        shutil.rmtree(self.dir, ignore_errors=True)

    def restart(self) -> DBusDaemon:
        """Killed (SIGKILL: no goodbye to its clients) and started again on the same socket."""
        assert self.proc is not None and self.proc.stdout is not None
        os.kill(self.proc.pid, signal.SIGKILL)
        self.proc.wait()
        self.proc.stdout.close()
        return self.start()

    def __enter__(self) -> DBusDaemon:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


@contextmanager
def private_buses() -> Iterator[tuple[DBusDaemon, DBusDaemon]]:
    """(session, system-like) buses, both torn down afterwards."""
    with DBusDaemon() as session, DBusDaemon() as system:
        yield session, system


def bus_environment(session: DBusDaemon | None, system: DBusDaemon | None) -> dict[str, str]:
    """The variables that point Pilot (and anything libdbus-like) at the test buses."""
    env: dict[str, str] = {}
    if session is not None:
        env["DBUS_SESSION_BUS_ADDRESS"] = session.address
    if system is not None:
        env["DBUS_SYSTEM_BUS_ADDRESS"] = system.address
    return env


def method_calls(conn: Any, stop: threading.Event) -> Iterator[Any]:
    """The method calls arriving on `conn` until `stop` is set or the connection closes (a peer's or a
    monitor's serving loop; signals and replies are passed over)."""
    from jeepney import MessageType

    while not stop.is_set():
        try:
            msg = conn.receive(timeout=0.1)
        except TimeoutError:
            continue
        except (OSError, ValueError):
            return
        if msg.header.message_type == MessageType.method_call:
            yield msg


@dataclass(frozen=True)
class Received:
    """One method call a peer answered (or ignored), as it arrived."""

    path: str
    interface: str
    member: str
    body: tuple[Any, ...]


Handler = Callable[[tuple[Any, ...]], Any]  # body -> (signature, body) | NO_REPLY


class Peer:
    """One connection on a bus that owns names and answers calls from a thread.

    `properties[(path, interface)][name] = (signature, value)`; a value may be a callable
    (read at each Get). `methods[(path, interface, member)] = handler`. Every call received
    is appended to `calls`.
    """

    def __init__(self, address: str, names: tuple[str, ...] = ()) -> None:
        from jeepney.io.blocking import open_dbus_connection

        self.address = address
        self.conn = open_dbus_connection(address)
        self.properties: dict[tuple[str, str], dict[str, Any]] = {}
        self.methods: dict[tuple[str, str, str], Handler] = {}
        self.calls: list[Received] = []
        self.lock = threading.Lock()
        self.send_lock = threading.Lock()  # the serving thread answers while a test emits signals
        self.quiet = False  # True: never emits PropertiesChanged (a peer that breaks the spec)
        self._live = False
        self._names = names
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._serve, name="test-dbus-peer", daemon=True)

    def start(self) -> Peer:
        from jeepney.bus_messages import message_bus

        for name in self._names:
            (result,) = self.conn.send_and_get_reply(message_bus.RequestName(name, 4), timeout=5).body
            if result != 1:  # DBUS_REQUEST_NAME_REPLY_PRIMARY_OWNER
                raise RuntimeError(f"could not own {name} (RequestName answered {result})")
        self._thread.start()
        self._live = True
        return self

    # attribute -> (object path, interface, properties) a change of it announces; set by subclasses
    EMITS: dict[str, Callable[[Any], tuple[str, str, tuple[str, ...]]]] = {}

    def __setattr__(self, name: str, value: Any) -> None:
        super().__setattr__(name, value)
        announce = type(self).EMITS.get(name)
        if announce is not None and getattr(self, "_live", False):
            self.emit_changed(*announce(self))

    def emit_changed(self, path: str, interface: str, names: tuple[str, ...]) -> None:
        """org.freedesktop.DBus.Properties.PropertiesChanged with the current values of `names`, as
        sd-bus and every MPRIS player send it for a property that "emits change"."""
        from jeepney import DBusAddress, new_signal

        if self.quiet:
            return
        table = self.properties.get((path, interface), {})
        changed = {}
        for name in names:
            entry = table.get(name)
            if entry is None:
                continue
            signature, current = entry.read() if isinstance(entry, _Dynamic) else entry
            current = current() if callable(current) else current
            if current is not NO_REPLY:
                changed[name] = (signature, current)
        where = DBusAddress(path, interface="org.freedesktop.DBus.Properties")
        signal = new_signal(where, "PropertiesChanged", "sa{sv}as", (interface, changed, []))
        try:
            signal.serialise(serial=1)  # a trial: the connection numbers the real one
        except (TypeError, ValueError, OverflowError, struct.error):  # a value a test made wrong: name it only
            signal = new_signal(where, "PropertiesChanged", "sa{sv}as", (interface, {}, list(names)))
        self.send(signal)

    def emit(self, path: str, interface: str, member: str, signature: str | None = None, body: tuple = ()) -> None:
        from jeepney import DBusAddress, new_signal

        self.send(new_signal(DBusAddress(path, interface=interface), member, signature, body))

    def send(self, message: Any) -> None:
        with self.send_lock:
            self.conn.send(message)

    def stop(self) -> None:
        self._live = False
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(timeout=5)
        self.conn.close()

    def __enter__(self) -> Peer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def received(self, member: str) -> list[Received]:
        with self.lock:
            return [c for c in self.calls if c.member == member]

    def asked(self) -> int:
        """How many calls this peer received in all: the round trips a reader cost it."""
        with self.lock:
            return len(self.calls)

    def _serve(self) -> None:
        for msg in method_calls(self.conn, self._stop):
            self._answer(msg)

    def _answer(self, msg: Any) -> None:
        from jeepney import new_error, new_method_return
        from jeepney.low_level import HeaderFields

        fields = msg.header.fields
        path, interface, member = (
            fields.get(HeaderFields.path, ""),
            fields.get(HeaderFields.interface, ""),
            fields.get(HeaderFields.member, ""),
        )
        with self.lock:
            self.calls.append(Received(path, interface, member, tuple(msg.body)))
        try:
            if (path, interface, member) in self.methods:  # a test's own answer, even to Properties calls
                answer = self.methods[(path, interface, member)](tuple(msg.body))
            elif interface == "org.freedesktop.DBus.Properties":
                answer = self._properties(path, member, tuple(msg.body))
            else:
                answer = ("org.freedesktop.DBus.Error.UnknownMethod", f"no {interface}.{member} at {path}")
                self.send(new_error(msg, answer[0], "s", (answer[1],)))
                return
        except LookupError as exc:
            self.send(new_error(msg, "org.freedesktop.DBus.Error.InvalidArgs", "s", (str(exc),)))
            return
        if answer is NO_REPLY:
            return
        if isinstance(answer, DBusFailure):
            self.send(new_error(msg, answer.name, "s", (answer.message,)))
            return
        signature, body = answer
        self.send(new_method_return(msg, signature, body))

    def _properties(self, path: str, member: str, body: tuple[Any, ...]) -> Any:
        table = self.properties.get((path, body[0]))
        if table is None:
            raise LookupError(f"no interface {body[0]} at {path}")

        def value(name: str) -> tuple[str, Any]:
            entry = table[name]
            if isinstance(entry, _Dynamic):
                return entry.read()
            signature, current = entry
            return signature, current() if callable(current) else current

        if member == "Get":
            if body[1] not in table:
                raise LookupError(f"no property {body[1]}")
            signature, current = value(body[1])
            return NO_REPLY if current is NO_REPLY else ("v", ((signature, current),))
        if member == "GetAll":
            values = {name: value(name) for name in table}
            if any(current is NO_REPLY for _, current in values.values()):
                return NO_REPLY  # a property that hangs hangs the whole GetAll, as it would in a real peer
            return "a{sv}", (values,)
        raise LookupError(f"Properties.{member} is not supported here")


class Monitor:
    """Every method call on a bus, whoever sends it to whom (the bus's own ListNames and NameHasOwner
    included), through the daemon's BecomeMonitor: the round trips a reader cost, counted.

    `settle()` makes the record complete up to now: the daemon hands the monitor messages in the
    order it routes them, so once a marker sent afterwards is seen, every earlier call is too."""

    def __init__(self, address: str) -> None:
        from jeepney.io.blocking import open_dbus_connection

        self.conn = open_dbus_connection(address)
        self._marker_conn = open_dbus_connection(address)
        self.calls: list[tuple[str, str, str]] = []  # (destination, interface, member)
        self.lock = threading.Lock()
        self._marks = 0
        self._seen_marks = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._serve, name="test-dbus-monitor", daemon=True)

    def start(self) -> Monitor:
        from jeepney import DBusAddress, new_method_call

        monitoring = DBusAddress(
            "/org/freedesktop/DBus", bus_name="org.freedesktop.DBus", interface="org.freedesktop.DBus.Monitoring"
        )
        rules = ["type='method_call'"]
        self.conn.send_and_get_reply(new_method_call(monitoring, "BecomeMonitor", "asu", (rules, 0)), timeout=5)
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(timeout=5)
        self.conn.close()
        self._marker_conn.close()

    def __enter__(self) -> Monitor:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def settle(self, timeout: float = 5.0) -> None:
        import time

        from jeepney import DBusAddress, new_method_call

        self._marks += 1
        bus = DBusAddress("/org/freedesktop/DBus", bus_name="org.freedesktop.DBus", interface="org.freedesktop.DBus")
        self._marker_conn.send_and_get_reply(
            new_method_call(bus, "NameHasOwner", "s", (f"org.pilottest.Mark{self._marks}",)), timeout=timeout
        )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with self.lock:
                if self._seen_marks >= self._marks:
                    return
            time.sleep(0.01)
        raise TimeoutError("the bus monitor did not see its marker")

    def clear(self) -> None:
        self.settle()
        with self.lock:
            self.calls.clear()

    def count(self, member: str | None = None, destination: str | None = None) -> int:
        """Calls recorded (since `clear`), of `member` and to `destination` where given; markers excluded."""
        self.settle()
        with self.lock:
            return sum(
                1
                for d, _, m in self.calls
                if (member is None or m == member) and (destination is None or d == destination)
            )

    def _serve(self) -> None:
        from jeepney.low_level import HeaderFields

        for msg in method_calls(self.conn, self._stop):
            fields = msg.header.fields
            call = (
                fields.get(HeaderFields.destination, ""),
                fields.get(HeaderFields.interface, ""),
                fields.get(HeaderFields.member, ""),
            )
            with self.lock:
                if call[2] == "NameHasOwner" and str(msg.body[0]).startswith("org.pilottest.Mark"):
                    self._seen_marks += 1
                else:
                    self.calls.append(call)


@dataclass(frozen=True)
class _Dynamic:
    """A property whose signature and value are both decided when it is read."""

    read: Callable[[], tuple[str, Any]]


@dataclass(frozen=True)
class DBusFailure:
    """A handler's answer that is a D-Bus error reply."""

    name: str
    message: str = ""


MPRIS_PATH = "/org/mpris/MediaPlayer2"
MPRIS_PLAYER = "org.mpris.MediaPlayer2.Player"


class _Announced(dict):  # type: ignore[type-arg]
    """A dict that calls `changed` after each change (a player's Metadata, set item by item by a test)."""

    def __init__(self, values: dict[str, Any], changed: Callable[[], None]) -> None:
        super().__init__(values)
        self._changed = changed

    def __setitem__(self, key: str, value: Any) -> None:
        super().__setitem__(key, value)
        self._changed()

    def __delitem__(self, key: str) -> None:
        super().__delitem__(key)
        self._changed()


class MprisPlayer(Peer):
    """An MPRIS media player: PlaybackStatus and Metadata a test sets; the control calls recorded.

    The controls change the status like a player would (PlayPause toggles Playing/Paused). A change
    of `status` or `metadata` is announced with PropertiesChanged, as the MPRIS spec asks (unless
    `quiet`).
    """

    EMITS = {
        "status": lambda self: (MPRIS_PATH, MPRIS_PLAYER, ("PlaybackStatus",)),
        "metadata": lambda self: (MPRIS_PATH, MPRIS_PLAYER, ("Metadata",)),
    }

    def __init__(
        self,
        address: str,
        name: str = "pilottest",
        status: str = "Playing",
        title: str = "A Song",
        artist: list[str] | None = None,
    ) -> None:
        super().__init__(address, (f"org.mpris.MediaPlayer2.{name}",))
        self.bus_name = f"org.mpris.MediaPlayer2.{name}"
        self.status = status
        self.metadata: dict[str, tuple[str, Any]] = _Announced(
            {
                "mpris:trackid": ("o", "/org/mpris/MediaPlayer2/Track/1"),
                "xesam:title": ("s", title),
                "xesam:artist": ("as", list(artist if artist is not None else ["An Artist"])),
            },
            lambda: self._live and self.emit_changed(MPRIS_PATH, MPRIS_PLAYER, ("Metadata",)),
        )
        self.properties[(MPRIS_PATH, "org.mpris.MediaPlayer2")] = {"Identity": ("s", f"Test player {name}")}
        self.properties[(MPRIS_PATH, MPRIS_PLAYER)] = {
            "PlaybackStatus": ("s", lambda: self.status),
            "Metadata": ("a{sv}", lambda: dict(self.metadata)),
            "CanControl": ("b", True),
        }
        transitions = {
            "PlayPause": lambda: "Paused" if self.status == "Playing" else "Playing",
            "Play": lambda: "Playing",
            "Pause": lambda: "Paused" if self.status == "Playing" else self.status,
            "Stop": lambda: "Stopped",
            "Next": lambda: self.status,
            "Previous": lambda: self.status,
        }
        for member, after in transitions.items():
            self.methods[(MPRIS_PATH, MPRIS_PLAYER, member)] = self._control(after)

    def _control(self, after: Callable[[], str]) -> Handler:
        def handle(body: tuple[Any, ...]) -> tuple[str, tuple[Any, ...]]:
            self.status = after()
            return "", ()

        return handle


LOGIND = "org.freedesktop.login1"
LOGIND_PATH = "/org/freedesktop/login1"
SESSION_INTERFACE = "org.freedesktop.login1.Session"


def _session_hints(*names: str) -> Callable[[Any], tuple[str, str, tuple[str, ...]]]:
    return lambda self: (self.session_path, SESSION_INTERFACE, names)


class Logind(Peer):
    """logind's Manager and one Session: the session's idle and lock hints are what a test sets.

    GetSessionByPID answers this session for the PIDs in `pids` (every PID when empty) and
    logind's own NoSessionForPID error for the others; GetSession answers for `session_id`. A
    change of a hint, or of seat0's active session, is announced with PropertiesChanged on the
    session's (or seat's) own path, as logind does (unless `quiet`).
    """

    EMITS = {
        "idle_hint": _session_hints("IdleHint", "IdleSinceHint"),
        "idle_since_usec": _session_hints("IdleHint", "IdleSinceHint"),
        "idle_since_signature": _session_hints("IdleSinceHint"),
        "locked_hint": _session_hints("LockedHint"),
        "seat_active": lambda self: (f"{LOGIND_PATH}/seat/seat0", "org.freedesktop.login1.Seat", ("ActiveSession",)),
    }

    def __init__(self, address: str, session_id: str = "31", pids: set[int] | None = None) -> None:
        super().__init__(address, (LOGIND,))
        self.session_id = session_id
        self.session_path = f"{LOGIND_PATH}/session/{_escape_path(session_id)}"
        self.pids = pids or set()
        self.idle_hint = False
        self.idle_since_usec = 0
        self.locked_hint = False
        self.idle_since_signature = "t"  # a test may make logind send the wrong type
        session = {
            "Id": ("s", session_id),
            "IdleHint": ("b", lambda: self.idle_hint),
            "LockedHint": ("b", lambda: self.locked_hint),
        }
        self.properties[(self.session_path, SESSION_INTERFACE)] = session
        # logind's `auto` names the caller's session, else the user's graphical one: here, this one
        self.properties[(f"{LOGIND_PATH}/session/auto", SESSION_INTERFACE)] = session
        session["IdleSinceHint"] = _Dynamic(lambda: (self.idle_since_signature, self.idle_since_usec))
        # seat0's ActiveSession: the session in front of the screen ("" and "/" when none is)
        self.seat_active: tuple[str, str] = (session_id, self.session_path)
        self.properties[(f"{LOGIND_PATH}/seat/seat0", "org.freedesktop.login1.Seat")] = {
            "ActiveSession": ("(so)", lambda: self.seat_active)
        }

        manager = "org.freedesktop.login1.Manager"
        self.methods[(LOGIND_PATH, manager, "GetSessionByPID")] = self._by_pid
        self.methods[(LOGIND_PATH, manager, "GetSession")] = self._by_id

    def replace_session(self, session_id: str) -> Logind:
        """The session ends and another begins (a logout, then a login): the old path answers no more,
        and GetSessionByPID, GetSession and seat0 name the new one, with the same hints."""
        table = self.properties.pop((self.session_path, SESSION_INTERFACE))
        old_id, old_path = self.session_id, self.session_path
        self.session_id = session_id
        self.session_path = f"{LOGIND_PATH}/session/{_escape_path(session_id)}"
        table["Id"] = ("s", session_id)
        self.properties[(self.session_path, SESSION_INTERFACE)] = table
        manager = "org.freedesktop.login1.Manager"
        if self._live and not self.quiet:
            self.emit(LOGIND_PATH, manager, "SessionRemoved", "so", (old_id, old_path))
            self.emit(LOGIND_PATH, manager, "SessionNew", "so", (session_id, self.session_path))
        self.seat_active = (session_id, self.session_path)
        return self

    def without_auto(self) -> Logind:
        """Like logind for a caller whose user has no graphical session: `auto` names no session."""
        del self.properties[(f"{LOGIND_PATH}/session/auto", SESSION_INTERFACE)]
        return self

    def _by_pid(self, body: tuple[Any, ...]) -> Any:
        if self.pids and body[0] not in self.pids:
            message = f"PID {body[0]} does not belong to any session"
            return DBusFailure("org.freedesktop.login1.NoSessionForPID", message)
        return "o", (self.session_path,)

    def _by_id(self, body: tuple[Any, ...]) -> Any:
        if body[0] != self.session_id:
            return DBusFailure("org.freedesktop.login1.NoSuchSession", f"No session '{body[0]}' known")
        return "o", (self.session_path,)


def _escape_path(text: str) -> str:
    """sd-bus's object path escaping: a leading digit and non-alphanumerics become _XX."""
    out = []
    for i, ch in enumerate(text):
        if ch.isascii() and (ch.isalpha() or (ch.isdigit() and i > 0)):
            out.append(ch)
        else:
            out.append(f"_{ord(ch):02x}")
    return "".join(out)


MUTTER_IDLE = "org.gnome.Mutter.IdleMonitor"
MUTTER_IDLE_PATH = "/org/gnome/Mutter/IdleMonitor/Core"


class MutterIdleMonitor(Peer):
    """GNOME Shell's idle monitor: GetIdletime answers `idle_ms`."""

    def __init__(self, address: str, idle_ms: int = 0) -> None:
        super().__init__(address, (MUTTER_IDLE,))
        self.idle_ms = idle_ms
        self.methods[(MUTTER_IDLE_PATH, MUTTER_IDLE, "GetIdletime")] = lambda body: ("t", (self.idle_ms,))
