"""The session probes (idle time, idle, locked) against a logind and a Mutter idle monitor on
private dbus-daemons: one standing in for the system bus, one for the session bus."""

from __future__ import annotations

import os

import pytest

from pilot.probes import ProbeContext, ProbeUnavailable, _dbus, desktop_session
from pilot.registry import PROBES
from testkit.dbus import Logind, Monitor, MutterIdleMonitor, bus_environment, find_dbus_daemon, private_buses
from tests.support.probes import signal_delivered

pytestmark = pytest.mark.skipif(find_dbus_daemon() is None, reason="dbus-daemon is not installed")
NOW = 1_800_000_000.0  # the wall clock the probes see


@pytest.fixture
def buses(monkeypatch):
    with private_buses() as (session, system):
        for key, value in bus_environment(session, system).items():
            monkeypatch.setenv(key, value)
        monkeypatch.setattr(desktop_session, "CLOCK", lambda: NOW)
        yield session, system
        _dbus.close_all()


@pytest.fixture
def logind(buses):
    with Logind(buses[1].address, session_id="31", pids={os.getpid()}) as peer:
        yield peer


def read(name: str, **args):
    return PROBES.get(name).factory(ProbeContext(), **args)()


def test_logind_idle_time_counts_from_idle_since(logind) -> None:
    assert read("session.idle_seconds") == 0  # IdleHint off: not idle
    logind.idle_hint = True
    logind.idle_since_usec = int((NOW - 600) * 1_000_000)
    assert read("session.idle_seconds") == 600
    assert read("session.idle") is True
    asked = logind.received("GetSessionByPID")
    assert asked and asked[-1].body == (os.getpid(),)  # this process's own session


def test_locked_follows_logind(logind) -> None:
    assert read("session.locked") is False
    logind.locked_hint = True
    assert read("session.locked") is True


def test_mutter_is_preferred_when_gnome_runs(buses, logind) -> None:
    logind.idle_hint = True
    logind.idle_since_usec = int((NOW - 600) * 1_000_000)
    with MutterIdleMonitor(buses[0].address, idle_ms=4_200):
        assert read("session.idle_seconds") == 4.2
        assert read("session.idle_seconds", source="logind") == 600
    assert read("session.idle_seconds") == 600  # Mutter gone: logind again


def test_idle_after_a_threshold(buses, logind) -> None:
    with MutterIdleMonitor(buses[0].address, idle_ms=299_999) as mutter:
        assert read("session.idle", after=300) is False
        mutter.idle_ms = 300_000
        assert read("session.idle", after=300) is True
    assert read("session.idle") is False  # without `after`: logind's IdleHint, which is off


def test_a_service_outside_any_session_reads_the_auto_session(buses) -> None:
    with Logind(buses[1].address, pids={1}) as logind:  # our PID is in no session
        logind.locked_hint = True
        assert read("session.locked") is True
        assert logind.received("GetAll")[-1].path == "/org/freedesktop/login1/session/auto"


def test_a_system_service_reads_the_session_active_on_seat0(buses) -> None:
    with Logind(buses[1].address, session_id="c7", pids={1}) as logind:
        logind.without_auto()
        logind.locked_hint = True
        assert read("session.locked") is True
        assert [(c.member, c.body) for c in logind.calls][-2:] == [
            ("Get", ("org.freedesktop.login1.Seat", "ActiveSession")),
            ("GetAll", ("org.freedesktop.login1.Session",)),
        ]
        assert logind.calls[-1].path == "/org/freedesktop/login1/session/c7"
        logind.seat_active = ("", "/")  # the greeter, or nobody, at the seat
        assert read("session.locked") is None


def test_a_named_session(buses) -> None:
    with Logind(buses[1].address, session_id="c2") as logind:
        logind.locked_hint = True
        assert read("session.locked", session="c2") is True
        assert logind.received("GetSession")[-1].body == ("c2",)
        assert read("session.locked", session="c9") is None  # NoSuchSession: no reading, no traceback


def test_what_logind_gets_wrong_is_no_reading(logind) -> None:
    logind.idle_hint = True
    logind.idle_since_usec = 0  # idle since never
    assert read("session.idle_seconds", source="logind") is None
    logind.idle_since_signature, logind.idle_since_usec = "s", "yesterday"
    assert read("session.idle_seconds", source="logind") is None
    logind.idle_since_signature, logind.idle_since_usec = "t", int((NOW + 60) * 1_000_000)  # in the future
    assert read("session.idle_seconds", source="logind") == 0


def test_no_logind_on_the_bus_is_no_reading(buses) -> None:
    assert read("session.locked") is None
    assert read("session.idle_seconds") is None
    assert read("session.idle_seconds", source="mutter") is None


def test_unavailable_reasons(monkeypatch, tmp_path) -> None:
    monkeypatch.setenv("DBUS_SYSTEM_BUS_ADDRESS", f"unix:path={tmp_path}/system_bus_socket")
    monkeypatch.setenv("DBUS_SESSION_BUS_ADDRESS", f"unix:path={tmp_path}/bus")
    ctx = ProbeContext()
    for name in ("session.locked", "session.idle", "session.idle_seconds"):
        reason = PROBES.get(name).available(ctx)
        assert reason and "system bus is not running" in reason, name
        with pytest.raises(ProbeUnavailable):
            PROBES.get(name).factory(ctx)
    assert "session bus is not running" in PROBES.get("session.idle_seconds").available(ctx, source="mutter")


def test_windows_answers_idle_time_but_not_the_lock(monkeypatch) -> None:
    monkeypatch.setattr(desktop_session, "_windows", lambda: True)
    monkeypatch.setattr(desktop_session, "windows_idle_seconds", lambda: 12.5)  # GetLastInputInfo needs Windows
    ctx = ProbeContext()
    assert PROBES.get("session.idle_seconds").available(ctx) is None
    assert read("session.idle_seconds") == 12.5
    assert read("session.idle", after=10) is True
    assert "Linux" in PROBES.get("session.locked").available(ctx)
    assert "Linux-only" in PROBES.get("session.idle_seconds").available(ctx, session="2")


# ---------------------------------------------------------------- round trips per reading


@pytest.fixture
def clocked():
    """A context whose session readers run on a clock the test moves (ticks without sleeping)."""
    now = [1000.0]
    ctx = ProbeContext()

    def reader(session: str | None = None) -> desktop_session.SessionReader:
        made = desktop_session.SessionReader(session, clock=lambda: now[0])
        return ctx.shared(f"session.reader:{session or ''}", lambda: made)

    return ctx, now, reader


def probes(ctx, session: str | None = None, source: str = "logind"):
    return (
        PROBES.get("session.idle").factory(ctx, session=session),
        PROBES.get("session.locked").factory(ctx, session=session),
        PROBES.get("session.idle_seconds").factory(ctx, source=source, session=session),
    )


def delivered(change) -> None:
    """Make `change` and wait until the agent's system bus connection holds logind's signal for it."""
    signal_delivered(_dbus.system_bus(), desktop_session.LOGIND_SIGNALS, change)


def test_the_probes_share_one_getall_and_a_tick_without_a_change_costs_no_round_trip(buses, logind, clocked) -> None:
    ctx, now, reader = clocked
    reader()
    idle, locked, idle_time = probes(ctx)
    with Monitor(buses[1].address) as monitor:
        assert (idle(), locked(), idle_time()) == (False, False, 0)
        assert [c.member for c in logind.calls] == ["GetSessionByPID", "GetAll"]
        monitor.clear()
        for _ in range(5):
            now[0] += 10
            assert (idle(), locked(), idle_time()) == (False, False, 0)
        # five ticks of three probes and no round trip: before, GetSessionByPID and a Get per property
        # for each probe (eight calls a tick)
        assert monitor.count() == 0
        delivered(lambda: setattr(logind, "locked_hint", True))
        now[0] += 5
        assert (idle(), locked(), idle_time()) == (False, True, 0)
        assert monitor.count() == 1 and logind.calls[-1].member == "GetAll"  # the path is remembered
        now[0] += desktop_session.MAX_AGE
        assert locked() is True
        assert monitor.count() == 2  # read again after MAX_AGE, whatever was said


def test_a_lock_and_idleness_are_seen_at_the_next_tick(logind, clocked) -> None:
    ctx, now, reader = clocked
    reader()
    idle, locked, idle_time = probes(ctx)
    assert (idle(), locked(), idle_time()) == (False, False, 0)
    delivered(lambda: setattr(logind, "locked_hint", True))
    delivered(lambda: setattr(logind, "idle_since_usec", int((NOW - 90) * 1_000_000)))
    delivered(lambda: setattr(logind, "idle_hint", True))
    assert locked() is False  # the same tick: the reading it already made
    now[0] += desktop_session.FRESH
    assert (idle(), locked(), idle_time()) == (True, True, 90)


def test_a_logind_that_never_announces_a_change_is_read_again_after_max_age(logind, clocked) -> None:
    ctx, now, reader = clocked
    reader()
    _, locked, _ = probes(ctx)
    logind.quiet = True  # breaks its own promise: no PropertiesChanged
    assert locked() is False
    logind.locked_hint = True
    now[0] += desktop_session.MAX_AGE - 1
    assert locked() is False  # the documented limit: nothing said it changed
    now[0] += 1
    assert locked() is True


def test_a_session_that_ends_is_looked_up_again_at_the_next_reading(logind, clocked) -> None:
    ctx, now, reader = clocked
    reader()
    idle, locked, _ = probes(ctx)
    assert locked() is False
    delivered(lambda: logind.replace_session("32"))  # logout and login: the old path answers an error now
    delivered(lambda: setattr(logind, "locked_hint", True))
    now[0] += 10
    assert locked() is True
    assert [c.member for c in logind.calls][-3:] == ["GetAll", "GetSessionByPID", "GetAll"]
    assert logind.calls[-1].path == "/org/freedesktop/login1/session/_332"


def test_a_named_session_that_ends_is_no_reading(buses, clocked) -> None:
    ctx, now, reader = clocked
    reader("c2")
    with Logind(buses[1].address, session_id="c2") as logind:
        _, locked, _ = probes(ctx, session="c2")
        assert locked() is False
        delivered(lambda: logind.replace_session("c3"))
        now[0] += 10
        assert locked() is None  # GetSession("c2"): NoSuchSession
        assert logind.received("GetSession")[-1].body == ("c2",)


def test_a_system_service_follows_a_user_switch_on_seat0_at_the_next_reading(buses, clocked) -> None:
    ctx, now, reader = clocked
    reader()
    with Logind(buses[1].address, session_id="c7", pids={1}) as logind:
        logind.without_auto()
        _, locked, _ = probes(ctx)
        assert locked() is False
        now[0] += 10
        asked = len(logind.calls)
        assert locked() is False
        assert len(logind.calls) == asked  # nothing changed: nothing asked
        delivered(lambda: logind.replace_session("c8"))  # a user switch: seat0's ActiveSession changes
        delivered(lambda: setattr(logind, "locked_hint", True))
        now[0] += 10
        assert locked() is True
        # the fallbacks that failed are not asked again: seat0's ActiveSession and the session's GetAll
        assert [(c.member, c.path) for c in logind.calls[asked:]] == [
            ("Get", "/org/freedesktop/login1/seat/seat0"),
            ("GetAll", "/org/freedesktop/login1/session/c8"),
        ]
        now[0] += desktop_session.REFIND
        assert locked() is True
        assert logind.received("GetSessionByPID")[1:]  # after REFIND the own session is looked for again


def test_mutter_is_asked_once_a_tick_and_its_quitting_is_seen_at_the_next_reading(buses, logind, clocked) -> None:
    ctx, now, reader = clocked
    reader()
    logind.idle_hint, logind.idle_since_usec = True, int((NOW - 600) * 1_000_000)
    away = PROBES.get("session.idle").factory(ctx, after=60)
    idle_time = PROBES.get("session.idle_seconds").factory(ctx)
    with Monitor(buses[0].address) as monitor:
        with MutterIdleMonitor(buses[0].address, idle_ms=4_200) as mutter:
            assert (idle_time(), away()) == (4.2, False)
            monitor.clear()
            for _ in range(3):
                now[0] += 10
                mutter.idle_ms += 10_000
                assert idle_time() == mutter.idle_ms / 1000
                assert away() is (mutter.idle_ms >= 60_000)
            # one GetIdletime a tick for both probes; before, ListNames and GetIdletime for each probe
            assert monitor.count() == 3
            assert monitor.count("GetIdletime") == 3
        now[0] += 10
        assert idle_time() == 600  # GNOME quit: logind answers in the same reading
        with MutterIdleMonitor(buses[0].address, idle_ms=1_000):
            now[0] += 10
            assert idle_time() == 600  # the absence is trusted REFIND seconds
            now[0] += desktop_session.REFIND
            assert idle_time() == 1.0


def test_a_failed_tick_is_no_reading_for_every_probe_of_it_and_the_next_tick_asks_again(buses, clocked) -> None:
    ctx, now, reader = clocked
    reader()
    idle, locked, idle_time = probes(ctx)
    with Monitor(buses[1].address) as monitor:
        assert (idle(), locked(), idle_time()) == (None, None, None)  # no logind on the bus
        assert monitor.count("GetSessionByPID") == 1  # asked once for the three
        with Logind(buses[1].address, session_id="31", pids={os.getpid()}) as logind:
            logind.locked_hint = True
            now[0] += 10
            assert (idle(), locked(), idle_time()) == (False, True, 0)


def test_a_session_lookup_answered_with_nothing_is_no_reading_not_an_exception(buses) -> None:
    # GetSessionByPID answered with an empty body: an IndexError out of the probe, where every other
    # malformed answer is no reading
    with Logind(buses[1].address, session_id="31", pids={os.getpid()}) as logind:
        manager = "org.freedesktop.login1.Manager"
        logind.methods[("/org/freedesktop/login1", manager, "GetSessionByPID")] = lambda body: ("", ())
        assert read("session.locked") is None
        logind.methods[("/org/freedesktop/login1", manager, "GetSessionByPID")] = lambda body: ("u", (7,))
        assert read("session.locked") is None
