"""The D-Bus helpers under the media and session probes, against a real dbus-daemon: timeouts,
error replies, a broken connection, and the addresses they pick."""

from __future__ import annotations

import socket
import time

import pytest

from pilot.probes import _dbus
from testkit.dbus import NO_REPLY, DBusDaemon, DBusFailure, Peer, find_dbus_daemon

pytestmark = pytest.mark.skipif(find_dbus_daemon() is None, reason="dbus-daemon is not installed")
NAME, PATH, IFACE = "org.example.Peer", "/org/example/Peer", "org.example.Peer"


@pytest.fixture
def peer():
    with DBusDaemon() as daemon, Peer(daemon.address, (NAME,)) as peer:
        yield peer
        _dbus.close_all()


def bus_of(peer: Peer) -> _dbus.Bus:
    return _dbus.Bus(peer.address, "test bus")


def test_a_call_and_its_answer(peer) -> None:
    peer.methods[(PATH, IFACE, "Add")] = lambda body: ("u", (body[0] + body[1],))
    assert _dbus.call(bus_of(peer), NAME, PATH, IFACE, "Add", "uu", (2, 40)) == (42,)
    assert NAME in _dbus.list_names(bus_of(peer))


def test_a_peer_that_never_answers_is_a_timeout_and_the_connection_stays_usable(peer) -> None:
    peer.methods[(PATH, IFACE, "Hang")] = lambda body: NO_REPLY
    peer.methods[(PATH, IFACE, "Ping")] = lambda body: ("s", ("pong",))
    bus = bus_of(peer)
    with pytest.raises(_dbus.DBusError, match="no answer on the test bus within 0.2 s"):
        _dbus.call(bus, NAME, PATH, IFACE, "Hang", timeout=0.2)
    assert _dbus.call(bus, NAME, PATH, IFACE, "Ping") == ("pong",)


def test_an_error_reply_keeps_its_name_and_a_hostile_message_is_one_short_line(peer) -> None:
    peer.methods[(PATH, IFACE, "Fail")] = lambda body: DBusFailure("org.example.Error.Nope", "\x1b[2J\nboom" * 1000)
    with pytest.raises(_dbus.DBusError) as caught:
        _dbus.call(bus_of(peer), NAME, PATH, IFACE, "Fail")
    assert caught.value.name == "org.example.Error.Nope"
    message = str(caught.value)
    assert message.startswith("org.example.Peer answered org.example.Error.Nope: [2J boom")
    assert "\n" not in message and "\x1b" not in message and len(message) < 250


def test_a_broken_connection_is_reopened_once(peer) -> None:
    peer.methods[(PATH, IFACE, "Ping")] = lambda body: ("s", ("pong",))
    bus = bus_of(peer)
    assert _dbus.call(bus, NAME, PATH, IFACE, "Ping") == ("pong",)
    first = bus._conn
    first.sock.shutdown(socket.SHUT_RDWR)  # the daemon restarted, or the socket died under us
    assert _dbus.call(bus, NAME, PATH, IFACE, "Ping") == ("pong",)
    assert bus._conn is not first


def test_no_such_peer_and_no_such_method_are_errors_not_hangs(peer) -> None:
    with pytest.raises(_dbus.DBusError, match="ServiceUnknown"):
        _dbus.call(bus_of(peer), "org.example.Absent", PATH, IFACE, "Ping")
    with pytest.raises(_dbus.DBusError, match="UnknownMethod"):
        _dbus.call(bus_of(peer), NAME, PATH, IFACE, "Nothing")
    with pytest.raises(_dbus.DBusError, match="bad D-Bus call"):
        _dbus.call(bus_of(peer), NAME, "not a path", IFACE, "Ping")


def test_a_dead_bus_is_a_one_line_error(tmp_path) -> None:
    bus = _dbus.Bus(f"unix:path={tmp_path}/bus", "session bus")
    with pytest.raises(_dbus.DBusError, match=r"^cannot connect to the session bus \(.*No such file"):
        _dbus.list_names(bus)


def test_addresses_like_libdbus_and_sd_bus(tmp_path) -> None:
    assert _dbus.session_address({"DBUS_SESSION_BUS_ADDRESS": "unix:path=/a"}) == "unix:path=/a"
    assert _dbus.session_address({"XDG_RUNTIME_DIR": str(tmp_path)}) is None
    (tmp_path / "bus").touch()
    assert _dbus.session_address({"XDG_RUNTIME_DIR": str(tmp_path)}) == f"unix:path={tmp_path}/bus"
    assert _dbus.system_address({}) == "unix:path=/run/dbus/system_bus_socket"
    assert _dbus.system_address({"DBUS_SYSTEM_BUS_ADDRESS": "unix:path=/s"}) == "unix:path=/s"
    with pytest.raises(_dbus.DBusError, match="no session bus"):
        _dbus.session_bus({})
    with pytest.raises(_dbus.DBusError, match="unknown bus"):
        _dbus.bus_named("starter", {})
    assert _dbus.bus_named("system", {"DBUS_SYSTEM_BUS_ADDRESS": "unix:path=/s"}).address == "unix:path=/s"
    assert _dbus.unreachable("unix:abstract=/tmp/dbus-x", "session bus") is None
    assert "cannot be parsed" in _dbus.unreachable("garbage", "session bus")


def test_get_all_is_one_round_trip_and_a_malformed_answer_is_an_error(peer) -> None:
    peer.properties[(PATH, IFACE)] = {"A": ("s", "one"), "B": ("u", 2)}
    bus = bus_of(peer)
    assert _dbus.get_all(bus, NAME, PATH, IFACE) == {"A": "one", "B": 2}
    assert peer.asked() == 1
    peer.methods[(PATH, "org.freedesktop.DBus.Properties", "GetAll")] = lambda body: ("s", ("not a dict",))
    with pytest.raises(_dbus.DBusError, match="malformed answer"):
        _dbus.get_all(bus, NAME, PATH, IFACE)
    peer.methods[(PATH, "org.freedesktop.DBus.Properties", "GetAll")] = lambda body: ("a{sv}s", ({}, "extra"))
    with pytest.raises(_dbus.DBusError, match="malformed answer"):
        _dbus.get_all(bus, NAME, PATH, IFACE)
    del peer.methods[(PATH, "org.freedesktop.DBus.Properties", "GetAll")]
    peer.properties[(PATH, "org.example.Many")] = {f"P{i}": ("u", i) for i in range(_dbus.MAX_REPLY_ITEMS + 1)}
    with pytest.raises(_dbus.DBusError, match="malformed answer"):
        _dbus.get_all(bus, NAME, PATH, "org.example.Many")


def test_name_has_owner_and_a_gone_peer_error(peer) -> None:
    bus = bus_of(peer)
    assert _dbus.name_has_owner(bus, NAME) is True
    assert _dbus.name_has_owner(bus, "org.example.Absent") is False
    with pytest.raises(_dbus.DBusError) as caught:
        _dbus.get_all(bus, "org.example.Absent", PATH, IFACE)
    assert caught.value.name in _dbus.GONE and not caught.value.bus_down


def test_a_dead_bus_is_marked_down_so_no_peer_is_blamed(tmp_path) -> None:
    with pytest.raises(_dbus.DBusError) as caught:
        _dbus.get_all(_dbus.Bus(f"unix:path={tmp_path}/bus", "session bus"), NAME, PATH, IFACE)
    assert caught.value.bus_down and caught.value.name is None


def wait_for_count(bus: _dbus.Bus, watch: _dbus.Watch, before: int) -> int:
    deadline = time.monotonic() + 5
    while (count := bus.look(watch)) == before:
        assert time.monotonic() < deadline, "no signal arrived"
        time.sleep(0.005)
    return count


def test_a_watch_counts_its_signals_without_waiting(peer) -> None:
    bus = bus_of(peer)
    pings = _dbus.Signals(interface=IFACE, member="Ping", path_namespace=PATH)
    watch = bus.watch(pings)
    assert bus.watch(pings) is watch  # one per set of signals: readers share it
    armed = bus.look(watch)  # subscribing counts as a change: what a reader held is of unknown age
    started = time.monotonic()
    assert bus.look(watch) == armed  # nothing came, and the look did not wait for anything
    assert time.monotonic() - started < 0.5
    peer.emit("/org/elsewhere", IFACE, "Ping")  # outside the path namespace
    peer.emit(PATH, IFACE, "Pong")  # another member
    peer.emit(PATH + "/Child", IFACE, "Ping")
    assert wait_for_count(bus, watch, armed) == armed + 1  # only the one that matches


def test_a_new_connection_counts_as_a_change_and_is_subscribed_again(peer) -> None:
    bus = bus_of(peer)
    watch = bus.watch(_dbus.Signals(interface=IFACE, member="Ping"))
    first = bus.look(watch)
    bus._conn.sock.shutdown(socket.SHUT_RDWR)  # the daemon restarted, or the socket died under us
    second = bus.look(watch)
    assert second != first
    third = bus.look(watch)  # reconnected and subscribed again
    assert third != second
    peer.emit(PATH, IFACE, "Ping")
    assert wait_for_count(bus, watch, third) == third + 1


def test_a_signal_from_another_sender_is_not_taken_for_the_bus_daemons(peer) -> None:
    bus = bus_of(peer)
    owners = _dbus.Signals(
        interface="org.freedesktop.DBus", member="NameOwnerChanged", sender="org.freedesktop.DBus", arg0="org.example.*"
    )
    watch = bus.watch(owners)
    armed = bus.look(watch)
    # a forged NameOwnerChanged from a peer: the daemon's rule names the sender, so it is never delivered
    peer.emit("/org/freedesktop/DBus", "org.freedesktop.DBus", "NameOwnerChanged", "sss", ("org.example.X", "", ":1.9"))
    with Peer(peer.address, ("org.example.Other",)):  # a real owner change, sent by the daemon
        assert wait_for_count(bus, watch, armed) == armed + 1
        time.sleep(0.2)  # time for anything else in flight to arrive
        _dbus.list_names(bus)
        assert bus.look(watch) == armed + 1  # the forged one never came


def unparseable(path: str, interface: str, member: str, destination: str | None = None) -> bytes:
    """A signal the bus daemon passes on but jeepney cannot parse: a Unix fd ('h') sent without any fd.
    Any program on the bus can send it, to everyone who matches it or straight to one connection."""
    import array

    from jeepney import DBusAddress, new_signal
    from jeepney.low_level import HeaderFields, padding, parse_signature

    message = new_signal(DBusAddress(path, interface=interface), member, "h", (0,))
    if destination is not None:
        message.header.fields[HeaderFields.destination] = destination
    body = parse_signature(list("(h)")).serialise((0,), 0, message.header.endianness, fds=array.array("i"))
    message.header.body_length = len(body)  # and no unix_fds field: the fd it names does not exist
    header = message.header.serialise(serial=99)
    return header + b"\0" * padding(len(header), 8) + body


def send_raw(peer: Peer, data: bytes) -> None:
    with peer.send_lock:
        peer.conn.sock.sendall(data)


def test_a_message_jeepney_cannot_parse_costs_the_connection_not_the_probe(peer) -> None:
    # jeepney raised IndexError out of look() and left its parser out of step with the stream: every later
    # message was misread (AssertionError, KeyError...), so every probe and action on that bus failed for good
    peer.methods[(PATH, IFACE, "Ping")] = lambda body: ("s", ("pong",))
    bus = bus_of(peer)
    pings = _dbus.Signals(interface=IFACE, member="Ping", path_namespace=PATH)
    watch = bus.watch(pings)
    armed = bus.look(watch)
    first = bus._conn
    send_raw(peer, unparseable(PATH, IFACE, "Ping"))
    assert wait_for_count(bus, watch, armed) > armed  # counted as a change: what it said is lost
    assert _dbus.call(bus, NAME, PATH, IFACE, "Ping") == ("pong",)  # on a new connection
    assert bus._conn is not first
    settled = bus.look(watch)  # subscribed again on the new connection
    peer.emit(PATH, IFACE, "Ping")
    assert wait_for_count(bus, watch, settled) == settled + 1


def test_a_message_jeepney_cannot_parse_during_a_call_is_a_dbus_error_at_worst(peer) -> None:
    bus = bus_of(peer)
    assert _dbus.call(bus, "org.freedesktop.DBus", "/org/freedesktop/DBus", "org.freedesktop.DBus", "GetId")
    hit = []

    def ping(body):  # sends the junk straight to the caller (no match rule needed), then answers
        if not hit:
            hit.append(1)
            send_raw(peer, unparseable(PATH, IFACE, "Junk", destination=bus._conn.unique_name))
        return "s", ("pong",)

    peer.methods[(PATH, IFACE, "Ping")] = ping
    assert _dbus.call(bus, NAME, PATH, IFACE, "Ping") == ("pong",)  # asked again on a new connection
    assert _dbus.call(bus, NAME, PATH, IFACE, "Ping") == ("pong",)


def test_a_call_gives_up_at_its_deadline_even_while_a_flood_keeps_the_socket_busy(peer) -> None:
    # jeepney checks a call's deadline only when the socket is empty: with signals queued ahead of a reply
    # that never comes, a 0.2 s call took as long as the flood lasted (4.5 s for 200,000 pings here)
    from collections import deque

    from jeepney import DBusAddress, new_signal
    from jeepney.io.common import FilterHandle

    peer.methods[(PATH, IFACE, "Hang")] = lambda body: NO_REPLY
    bus = bus_of(peer)
    pings = _dbus.Signals(interface=IFACE, member="Ping", path_namespace=PATH)
    bus.look(bus.watch(pings))  # subscribed: the daemon sends this connection every Ping

    class Slow(deque):  # a loaded machine: each message takes 1 ms to handle
        def append(self, message) -> None:
            time.sleep(0.001)
            super().append(message)

    _, local = pings.rules()
    handled = Slow()
    FilterHandle(bus._conn._filters, local, handled)
    flood = 2000
    send_raw(peer, new_signal(DBusAddress(PATH, interface=IFACE), "Ping").serialise(serial=7) * flood)
    with pytest.raises(_dbus.DBusError, match="no answer"):
        _dbus.call(bus, NAME, PATH, IFACE, "Hang", timeout=0.2)
    taken = len(handled)
    assert taken < flood  # it gave up with the flood still waiting (2 s of it)


def test_an_oversized_message_is_refused_before_it_is_read_whole(peer) -> None:
    # the session bus passes messages of up to 128 MiB, straight to this connection if a peer likes; jeepney
    # buffered each whole and parsed it (an 'ai' of 128 MiB is 32 million Python ints)
    import tracemalloc

    bus = bus_of(peer)
    pings = _dbus.Signals(interface=IFACE, member="Ping", path_namespace=PATH)
    watch = bus.watch(pings)
    armed = bus.look(watch)
    first = bus._conn
    big = 3 * _dbus.MAX_MESSAGE  # the test daemon passes up to 32 MiB
    peer.emit(PATH, IFACE, "Ping", "ay", (b"\0" * big,))
    tracemalloc.start()
    try:
        changed = wait_for_count(bus, watch, armed)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert changed > armed and bus._conn is not first  # what it said is lost with the connection
    assert peak < 2 * _dbus.MAX_MESSAGE  # never the whole of it
    settled = bus.look(watch)
    peer.emit(PATH, IFACE, "Ping", "ay", (b"\0" * (_dbus.MAX_MESSAGE // 2),))  # under the limit: read
    assert wait_for_count(bus, watch, settled) == settled + 1


def test_a_bus_that_takes_the_connection_but_never_says_hello_is_an_error_not_a_hang(tmp_path) -> None:
    # jeepney waits for the answer to Hello without a deadline: a bus daemon stopped (SIGSTOP, swapped
    # out) right after the authentication held the probe, and the telemetry thread with it, for ever
    import threading

    server = socket.socket(socket.AF_UNIX)
    server.bind(str(tmp_path / "bus"))
    server.listen(1)
    accepted: list[socket.socket] = []

    def serve() -> None:
        conn, _ = server.accept()
        accepted.append(conn)
        conn.recv(4096)  # the NUL byte and AUTH EXTERNAL
        conn.sendall(b"OK 0123456789abcdef0123456789abcdef\r\n")  # then Hello is read and never answered

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    outcome: list[BaseException | None] = []

    def ask() -> None:
        try:
            _dbus.list_names(_dbus.Bus(f"unix:path={tmp_path}/bus", "session bus"), timeout=0.2)
            outcome.append(None)
        except BaseException as exc:  # whatever it is, the test reports it
            outcome.append(exc)

    caller = threading.Thread(target=ask, daemon=True)
    caller.start()
    caller.join(timeout=10)  # a hang, not a speed: the connection gives up after about a second
    try:
        assert not caller.is_alive(), "the caller is still waiting for Hello's answer"
        assert isinstance(outcome[0], _dbus.DBusError) and outcome[0].bus_down, outcome
        assert "cannot connect to the session bus" in str(outcome[0])
    finally:
        for conn in accepted:
            conn.close()
        server.close()
        caller.join(timeout=5)


def test_a_bus_daemon_killed_and_started_again_is_reconnected_and_subscribed_again_without_a_leak() -> None:
    import gc
    import os

    pings = _dbus.Signals(interface=IFACE, member="Ping", path_namespace=PATH)
    with DBusDaemon() as daemon:
        bus = _dbus.Bus(daemon.address, "test bus")
        watch = bus.watch(pings)
        bus.look(watch)
        gc.collect()  # earlier tests' connections left to the collector are not counted
        gc.disable()  # nor is one of this test's collected before the count (a leak would hide)
        try:
            descriptors = len(os.listdir("/proc/self/fd"))  # the connection's socket and epoll among them
            for _ in range(10):
                before = bus.look(watch)
                daemon.restart()
                assert wait_for_count(bus, watch, before) > before  # the connection broke: what it held is old
                armed = bus.look(watch)  # connected and subscribed again
                with Peer(daemon.address, (NAME,)) as peer:
                    peer.emit(PATH, IFACE, "Ping")
                    assert wait_for_count(bus, watch, armed) == armed + 1
            assert len(os.listdir("/proc/self/fd")) == descriptors
        finally:
            gc.enable()
            bus.close()


def test_one_look_takes_at_most_max_drain_signals_and_a_flood_counts_as_a_change_for_every_watch(peer) -> None:
    from jeepney import DBusAddress, new_method_call, new_signal
    from jeepney.io.blocking import open_dbus_connection

    bus = bus_of(peer)
    pings = bus.watch(_dbus.Signals(interface=IFACE, member="Ping", path_namespace=PATH))
    other = bus.watch(_dbus.Signals(interface=IFACE, member="Other"))
    before, unrelated = bus.look(pings), bus.look(other)
    flood = _dbus.MAX_DRAIN + 500
    with open_dbus_connection(peer.address) as flooder:
        flooder.send(new_signal(DBusAddress(PATH, interface=IFACE), "Ping"))  # one, then the rest at once
        flooder.sock.sendall(new_signal(DBusAddress(PATH, interface=IFACE), "Ping").serialise(serial=9) * flood)
        daemon = DBusAddress("/org/freedesktop/DBus", "org.freedesktop.DBus", "org.freedesktop.DBus")
        flooder.send_and_get_reply(new_method_call(daemon, "GetId"), timeout=5)  # all routed once this answers
    taken = bus.look(pings) - before
    assert 0 < taken <= _dbus.MAX_DRAIN + 1  # bounded: the rest waits for the next look
    assert bus.look(other) > unrelated  # a flood: what it may have hidden counts as a change for every watch


def test_looks_and_calls_from_two_threads_share_the_connection_without_losing_a_reply_or_a_signal(peer) -> None:
    # the telemetry thread's looks and an action's calls (its own thread) on one connection: the lock is
    # what keeps a look from taking a call's reply, or two threads from feeding jeepney's parser at once
    import threading

    peer.methods[(PATH, IFACE, "Echo")] = lambda body: ("u", (body[0],))
    bus = bus_of(peer)
    watch = bus.watch(_dbus.Signals(interface=IFACE, member="Ping", path_namespace=PATH))
    armed = bus.look(watch)
    failures: list[BaseException] = []
    stop = threading.Event()

    def look() -> None:
        while not stop.is_set():
            try:
                bus.look(watch)
            except BaseException as exc:  # whatever it is, the test reports it
                failures.append(exc)
                return

    looker = threading.Thread(target=look, daemon=True)
    looker.start()
    try:
        for n in range(300):
            if n % 3 == 0:
                peer.emit(PATH, IFACE, "Ping")
            assert _dbus.call(bus, NAME, PATH, IFACE, "Echo", "u", (n,)) == (n,)
    finally:
        stop.set()
        looker.join(timeout=10)
    assert not failures, failures
    assert wait_for_count(bus, watch, armed) >= armed + 100  # every Ping counted, by a look or a call
    assert bus.look(watch) == armed + 100
