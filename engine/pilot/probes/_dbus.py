"""Thin D-Bus helpers over jeepney for the desktop probes and actions (logind, MPRIS, Mutter).

jeepney is pure Python (it works from the packaged /opt/pilot/lib, where a compiled binding
would not), and its blocking calls take a timeout, which fits a probe's reader. One connection
per bus address is kept and shared under a lock (a jeepney blocking connection is not
thread-safe); a call on a connection that broke reconnects once. The addresses come from
DBUS_SESSION_BUS_ADDRESS / DBUS_SYSTEM_BUS_ADDRESS like libdbus, so tests point Pilot at
their own dbus-daemon; the session bus falls back to $XDG_RUNTIME_DIR/bus like sd-bus.
"""

from __future__ import annotations

import functools
import os
import threading
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

SYSTEM_BUS_DEFAULT = "unix:path=/run/dbus/system_bus_socket"
# a reply bigger than this is not something a probe wants (jeepney itself allows 128 MiB)
MAX_REPLY_ITEMS = 4096


class DBusError(Exception):
    """The bus or the peer could not answer; the message is safe to show (one line)."""

    def __init__(self, message: str, name: str | None = None, *, bus_down: bool = False) -> None:
        super().__init__(message)
        self.name = name  # the D-Bus error name, when the peer answered with one
        self.bus_down = bus_down  # the bus itself could not be reached: no peer on it can answer


def session_address(environ: Mapping[str, str] | None = None) -> str | None:
    """The session bus address, or None when this process has no session bus."""
    env = os.environ if environ is None else environ
    if env.get("DBUS_SESSION_BUS_ADDRESS"):
        return env["DBUS_SESSION_BUS_ADDRESS"]
    runtime = env.get("XDG_RUNTIME_DIR")
    if runtime and os.path.exists(os.path.join(runtime, "bus")):
        return f"unix:path={os.path.join(runtime, 'bus')}"
    return None


def system_address(environ: Mapping[str, str] | None = None) -> str:
    env = os.environ if environ is None else environ
    return env.get("DBUS_SYSTEM_BUS_ADDRESS") or SYSTEM_BUS_DEFAULT


MAX_DRAIN = 1024  # signals taken per look; past that the watches all count as changed
# What a connection's stream can raise. Any program on the bus can send a message to this connection
# (straight to its unique name: no match rule needed) that the daemon passes on but jeepney cannot parse
# (an 'h' without its fd: IndexError); jeepney has then consumed the bytes with its parser left out of
# step, and every later message is misread (AssertionError, KeyError, struct.error...). So whatever a
# send or a receive raises, the connection is lost and is replaced; only TimeoutError leaves it usable.
LOST = Exception
CONNECT_TIMEOUT = 1.0  # seconds for the authentication, and again for Hello's answer
MAX_MESSAGE = 4 * 1024 * 1024  # bytes: a GetAll of a player with its cover art inline is ~100 KiB


@dataclass(frozen=True)
class Signals:
    """Signals to be told of: `rule` for the bus daemon (AddMatch; it may name a well-known sender)
    and `member`, `interface`, `path_namespace`, `arg0` (a name, or a namespace when ending in '.*')
    for the connection's own filter (which sees unique senders only)."""

    interface: str
    member: str | None = None
    path_namespace: str | None = None
    sender: str | None = None
    arg0: str | None = None

    def rules(self) -> tuple[Any, Any]:
        """(the daemon's rule, the connection's filter) as jeepney MatchRules."""
        from jeepney import MatchRule

        def rule(sender: str | None) -> Any:
            match = MatchRule(
                type="signal",
                sender=sender,
                interface=self.interface,
                member=self.member,
                path_namespace=self.path_namespace,
            )
            if self.arg0 is not None:
                if self.arg0.endswith(".*"):
                    match.add_arg_condition(0, self.arg0[:-2], kind="namespace")
                else:
                    match.add_arg_condition(0, self.arg0)
            return match

        return rule(self.sender), rule(None)


class Watch:
    """Signals on a bus that say something a reader remembers may have changed (PropertiesChanged,
    NameOwnerChanged): subscribed with AddMatch once per connection, counted by the connection's
    filter as they arrive, and looked at without blocking (`Bus.look`). Only whether one came
    matters, not what it says, so a hostile peer's signal costs at most one extra reading. One
    Watch per set of signals and bus, shared by every reader: each compares the count it last saw."""

    def __init__(self, signals: tuple[Signals, ...]) -> None:
        self.signals = signals
        self.count = 0
        self.armed_on: Any = None  # the connection its rules were added on
        self.blind = False  # the bus refused its rules: it cannot tell, so every look counts as a change

    def append(self, message: Any) -> None:  # the connection's filter queue: count, keep nothing
        self.count += 1


class Bus:
    """One bus address: a lazily opened, shared connection that reconnects after a failure."""

    def __init__(self, address: str, label: str) -> None:
        self.address = address
        self.label = label  # "session bus" / "system bus": for messages
        self._lock = threading.Lock()
        self._conn: Any = None
        self._watches: list[Watch] = []

    def watch(self, *signals: Signals) -> Watch:
        """The Watch of these signals on this bus (one per set of signals), subscribed at its first look."""
        with self._lock:
            for watch in self._watches:
                if watch.signals == signals:
                    return watch
            watch = Watch(signals)
            self._watches.append(watch)
            return watch

    def look(self, watch: Watch, timeout: float = 1.0) -> int:
        """The count of `watch`'s signals after taking what the socket already holds (never waiting for
        more). A reader that sees the count it saw last time knows nothing it watches has changed; the
        count also moves when that cannot be known (a new connection, a flood, a failed look)."""
        with self._lock:
            try:
                if self._conn is None:
                    self._conn = self._connect()
                conn = self._conn
                if watch.armed_on is not conn:
                    self._arm(conn, watch, timeout)
                elif watch.blind:
                    watch.count += 1
                else:
                    for _ in range(MAX_DRAIN):
                        try:
                            conn.recv_messages(timeout=0)
                        except TimeoutError:
                            break
                    else:  # a flood: whatever it held, every watch must be read again
                        for other in self._watches:
                            other.count += 1
            except TimeoutError:
                watch.count += 1  # the subscription was not answered in time: armed at the next look
            except DBusError:
                watch.count += 1
            except LOST:
                self._drop()
                watch.count += 1
            return watch.count

    def _arm(self, conn: Any, watch: Watch, timeout: float) -> None:
        from jeepney import DBusAddress, MessageType, new_method_call
        from jeepney.io.common import FilterHandle

        daemon = DBusAddress("/org/freedesktop/DBus", "org.freedesktop.DBus", "org.freedesktop.DBus")
        watch.count += 1  # signals before this look were not counted: whatever the reader holds is old
        watch.blind = False
        for signals in watch.signals:
            rule, local = signals.rules()
            reply = _exchange(conn, new_method_call(daemon, "AddMatch", "s", (rule.serialise(),)), timeout)
            if reply.header.message_type == MessageType.error:
                watch.blind = True  # refused (the bus's limit of rules): every look counts as a change
                break
            FilterHandle(conn._filters, local, watch)
        watch.armed_on = conn

    def _connect(self) -> Any:
        from jeepney.bus import get_bus
        from jeepney.io.blocking import prep_socket

        try:
            return _connection_type()(prep_socket(get_bus(self.address), timeout=CONNECT_TIMEOUT))
        except LOST as exc:
            reason = _short(exc) or type(exc).__name__
            raise DBusError(f"cannot connect to the {self.label} ({reason})", bus_down=True) from None

    def send_and_get_reply(self, message: Any, timeout: float) -> Any:
        """Send one method call and return the reply message; DBusError when none comes."""
        with self._lock:
            for attempt in (1, 2):
                if self._conn is None:
                    self._conn = self._connect()
                try:
                    return _exchange(self._conn, message, timeout)
                except TimeoutError:
                    # a late reply would be matched to nothing; the connection itself is fine
                    raise DBusError(f"no answer on the {self.label} within {timeout:g} s") from None
                except LOST as exc:
                    self._drop()
                    if attempt == 2:
                        reason = _short(exc) or type(exc).__name__  # jeepney's AssertionError says nothing
                        raise DBusError(f"the {self.label} connection failed ({reason})", bus_down=True) from None
            raise AssertionError("unreachable")

    def _drop(self) -> None:
        conn, self._conn = self._conn, None
        if conn is not None:
            try:
                conn.close()
            except OSError:
                pass

    def close(self) -> None:
        with self._lock:
            self._drop()


@functools.cache
def _connection_type() -> Any:
    """The connection class, made at the first connection: jeepney is imported only then."""
    from jeepney.io.blocking import DBusConnection, DBusConnectionBase
    from jeepney.io.common import MessageFilters

    class Connection(DBusConnection):
        """jeepney's blocking connection with a bounded parser (_Bounded) and a deadline on Hello, which
        jeepney's own waits for without one; its socket is closed when Hello fails."""

        def __init__(self, sock: Any) -> None:
            from jeepney import MessageType
            from jeepney.bus_messages import message_bus

            DBusConnectionBase.__init__(self, sock)
            self.parser = _Bounded(self.parser)
            self._filters = MessageFilters()
            try:
                reply = _exchange(self, message_bus.Hello(), CONNECT_TIMEOUT)
                if reply.header.message_type != MessageType.method_return or not reply.body:
                    raise ValueError("the bus refused Hello")
            except BaseException:
                self.close()
                raise
            self.unique_name = reply.body[0]

    return Connection


class _Bounded:
    """A jeepney Parser that refuses a message longer than MAX_MESSAGE as soon as its first 16 bytes say
    so (a SizeLimitError: the connection is dropped), where jeepney would buffer and parse up to 128 MiB."""

    def __init__(self, parser: Any) -> None:
        self.parser = parser

    def add_data(self, data: bytes, fds: Any = ()) -> None:
        self.parser.add_data(data, fds)

    def bytes_desired(self) -> int:
        desired: int = self.parser.bytes_desired()
        return desired

    def get_next_message(self) -> Any:
        from jeepney.low_level import SizeLimitError, calc_msg_size

        buffered = self.parser.buf
        if buffered.bytes_buffered >= 16 and calc_msg_size(buffered.peek(16)) > MAX_MESSAGE:
            raise SizeLimitError(f"a message of more than {MAX_MESSAGE} bytes")
        return self.parser.get_next_message()


def _exchange(conn: Any, message: Any, timeout: float) -> Any:
    """Send a method call on `conn` and return its reply; TimeoutError past `timeout` seconds. jeepney's
    send_and_get_reply checks its deadline only when the socket is empty, so messages queued ahead of a
    reply that never comes (a peer's flood of signals) held a call for as long as they kept coming. The
    other messages go to the connection's filters (the watches count them), as jeepney does."""
    from jeepney.low_level import HeaderFields

    deadline = time.monotonic() + timeout
    serial = next(conn.outgoing_serial)
    conn.send(message, serial=serial)
    while (remaining := deadline - time.monotonic()) > 0:
        received = conn.receive(timeout=remaining)
        if received.header.fields.get(HeaderFields.reply_serial, -1) == serial:
            return received
        for handle in conn._filters.matches(received):
            handle.queue.append(received)
    raise TimeoutError


_buses: dict[str, Bus] = {}
_buses_lock = threading.Lock()


def _bus(address: str, label: str) -> Bus:
    with _buses_lock:
        bus = _buses.get(address)
        if bus is None:
            bus = _buses[address] = Bus(address, label)
        return bus


def session_bus(environ: Mapping[str, str] | None = None) -> Bus:
    address = session_address(environ)
    if address is None:
        raise DBusError("no session bus (DBUS_SESSION_BUS_ADDRESS is unset and there is no $XDG_RUNTIME_DIR/bus)")
    return _bus(address, "session bus")


def system_bus(environ: Mapping[str, str] | None = None) -> Bus:
    return _bus(system_address(environ), "system bus")


def bus_named(which: str, environ: Mapping[str, str] | None = None) -> Bus:
    """ "session" or "system" -> that Bus (what an action's planned call names)."""
    if which == "session":
        return session_bus(environ)
    if which == "system":
        return system_bus(environ)
    raise DBusError(f"unknown bus {which!r}")


def close_all() -> None:
    """Close every shared connection (tests tearing down their dbus-daemon)."""
    with _buses_lock:
        buses = list(_buses.values())
        _buses.clear()
    for bus in buses:
        bus.close()


def call(
    bus: Bus,
    name: str,
    path: str,
    interface: str,
    method: str,
    signature: str | None = None,
    body: Sequence[Any] = (),
    timeout: float = 1.0,
) -> tuple[Any, ...]:
    """Call `interface.method` on `name` at `path` and return the reply's body."""
    from jeepney import DBusAddress, MessageType, new_method_call
    from jeepney.low_level import HeaderFields

    try:
        message = new_method_call(DBusAddress(path, bus_name=name, interface=interface), method, signature, tuple(body))
    except (ValueError, TypeError) as exc:
        raise DBusError(f"bad D-Bus call {interface}.{method}: {_short(exc)}") from None
    reply = bus.send_and_get_reply(message, timeout)
    if reply.header.message_type == MessageType.error:
        error = reply.header.fields.get(HeaderFields.error_name)
        detail = reply.body[0] if reply.body and isinstance(reply.body[0], str) else ""
        raise DBusError(f"{name} answered {error}{': ' + _short(detail) if detail else ''}", name=error)
    return tuple(reply.body)


def get_property(bus: Bus, name: str, path: str, interface: str, prop: str, timeout: float = 1.0) -> Any:
    """One property's value (the variant unwrapped)."""
    body = call(bus, name, path, "org.freedesktop.DBus.Properties", "Get", "ss", (interface, prop), timeout)
    if len(body) != 1 or not isinstance(body[0], tuple) or len(body[0]) != 2:
        raise DBusError(f"{name} sent a malformed answer for {interface}.{prop}")
    return body[0][1]


def get_all(bus: Bus, name: str, path: str, interface: str, timeout: float = 1.0) -> dict[str, Any]:
    """Every property of `interface` in one round trip (the variants unwrapped), where a Get per
    property would cost one each. A peer's malformed or oversized answer is a DBusError."""
    body = call(bus, name, path, "org.freedesktop.DBus.Properties", "GetAll", "s", (interface,), timeout)
    if len(body) != 1 or not isinstance(body[0], dict) or len(body[0]) > MAX_REPLY_ITEMS:
        raise DBusError(f"{name} sent a malformed answer for {interface}'s properties")
    values: dict[str, Any] = {}
    for key, variant in body[0].items():
        if isinstance(key, str) and isinstance(variant, tuple) and len(variant) == 2:
            values[key] = variant[1]
    return values


def name_has_owner(bus: Bus, name: str, timeout: float = 1.0) -> bool:
    """Whether some connection owns `name` now (one name asked, where ListNames sends them all)."""
    (owned,) = call(
        bus,
        "org.freedesktop.DBus",
        "/org/freedesktop/DBus",
        "org.freedesktop.DBus",
        "NameHasOwner",
        "s",
        (name,),
        timeout,
    )
    return owned is True


# error names that say the peer is gone (quit, or crashed before it answered): look it up again
GONE = frozenset(
    {
        "org.freedesktop.DBus.Error.ServiceUnknown",
        "org.freedesktop.DBus.Error.NoReply",
        "org.freedesktop.DBus.Error.NameHasNoOwner",
    }
)


def list_names(bus: Bus, timeout: float = 1.0) -> list[str]:
    """The names currently on the bus."""
    (names,) = call(
        bus, "org.freedesktop.DBus", "/org/freedesktop/DBus", "org.freedesktop.DBus", "ListNames", timeout=timeout
    )
    return [n for n in names[:MAX_REPLY_ITEMS] if isinstance(n, str)]


def unreachable(address: str | None, label: str) -> str | None:
    """Why a bus at `address` cannot be reached, without connecting (availability checks); None if it may be."""
    if not address:
        return f"no {label} (DBUS_SESSION_BUS_ADDRESS is unset and there is no $XDG_RUNTIME_DIR/bus)"
    try:
        from jeepney.bus import parse_addresses
    except ImportError:
        return "the jeepney D-Bus library is not installed"
    try:
        parts = list(parse_addresses(address))
    except ValueError:
        return f"the {label} address {_short(address, 80)!r} cannot be parsed"
    for transport, keys in parts:
        if transport == "unix" and "abstract" in keys:
            return None
        if transport == "unix" and "path" in keys:
            if os.path.exists(keys["path"]):
                return None
            return f"the {label} is not running (no socket at {_short(keys['path'], 80)})"
    return f"the {label} address {_short(address, 80)!r} has no unix socket (the only transport Pilot speaks)"


def _short(value: object, limit: int = 160) -> str:
    """One printable line of at most `limit` characters: peers' messages are not trusted."""
    text = "".join(c if c.isprintable() else " " for c in str(value)).strip()
    return text if len(text) <= limit else text[: limit - 1] + "…"
