"""The media probes against real MPRIS players on a private dbus-daemon."""

from __future__ import annotations

import jsonschema
import pytest

from pilot.probes import ProbeContext, ProbeUnavailable, _dbus, _mpris
from pilot.probes.media import _Snapshot
from pilot.registry import PROBES
from testkit.dbus import NO_REPLY, Monitor, MprisPlayer, bus_environment, find_dbus_daemon, private_buses
from tests.support.probes import signal_delivered

pytestmark = pytest.mark.skipif(find_dbus_daemon() is None, reason="dbus-daemon is not installed")


@pytest.fixture
def bus(monkeypatch):
    """A private session bus that Pilot's D-Bus helpers use (DBUS_SESSION_BUS_ADDRESS points at it)."""
    with private_buses() as (session, system):
        for key, value in bus_environment(session, system).items():
            monkeypatch.setenv(key, value)
        yield session
        _dbus.close_all()


def read(name: str, **args):
    """One fresh reading (a new context each time, so no snapshot is shared between readings)."""
    return PROBES.get(name).factory(ProbeContext(), **args)()


def delivered(signals: _dbus.Signals, change) -> None:
    """Make `change` and wait until the agent's session bus connection holds the signal it causes."""
    signal_delivered(_dbus.session_bus(), (signals,), change)


def test_no_player_reads_idle_and_empty(bus) -> None:
    assert read("media.state") == "idle"
    assert read("media.title") == ""
    assert read("media.artist") == ""


def test_the_playing_player_is_read(bus) -> None:
    with MprisPlayer(bus.address, "vlc", "Playing", "Blue in Green", ["Miles Davis", "Bill Evans"]):
        assert read("media.state") == "playing"
        assert read("media.title") == "Blue in Green"
        assert read("media.artist") == "Miles Davis, Bill Evans"


def test_a_playing_player_wins_over_a_paused_one_whatever_the_names(bus) -> None:
    with (
        MprisPlayer(bus.address, "aaa", "Paused", "Paused song"),
        MprisPlayer(bus.address, "zzz", "Playing", "Playing song"),
        MprisPlayer(bus.address, "mmm", "Stopped", "Stopped song"),
    ):
        assert read("media.state") == "playing"
        assert read("media.title") == "Playing song"
        assert read("media.title", player="aaa") == "Paused song"
        assert read("media.state", player="mmm") == "stopped"
        assert read("media.state", player="nothere") == "idle"


def test_a_name_matches_its_instances(bus) -> None:
    with MprisPlayer(bus.address, "firefox.instance_1_42", "Paused", "A video"):
        assert read("media.title", player="firefox") == "A video"
        assert read("media.title", player="fire") == ""  # a prefix of an element is another player


def test_the_state_follows_the_player(bus) -> None:
    with MprisPlayer(bus.address, "vlc", "Playing") as player:
        assert read("media.state") == "playing"
        player.status = "Paused"
        assert read("media.state") == "paused"
        player.status = "Buffering"  # not an MPRIS status: reads as stopped, never as the junk
        assert read("media.state") == "stopped"


def test_a_hung_player_is_passed_over(bus) -> None:
    with MprisPlayer(bus.address, "aaa", "Playing") as hung, MprisPlayer(bus.address, "bbb", "Paused", "Fine"):
        hung.properties[("/org/mpris/MediaPlayer2", "org.mpris.MediaPlayer2.Player")]["PlaybackStatus"] = (
            "s",
            lambda: NO_REPLY,
        )
        assert read("media.title") == "Fine"
        assert hung.received("GetAll")  # it was asked, and did not answer


def test_a_bus_of_hung_players_costs_one_budget_and_is_no_reading_not_idle(bus, monkeypatch) -> None:
    monkeypatch.setattr(_mpris, "SCAN_BUDGET", 0.3)
    with MprisPlayer(bus.address, "aaa", "Playing") as hung, MprisPlayer(bus.address, "zzz", "Playing") as late:
        hung.properties[("/org/mpris/MediaPlayer2", "org.mpris.MediaPlayer2.Player")]["PlaybackStatus"] = (
            "s",
            lambda: NO_REPLY,
        )
        assert read("media.state") is None
        assert not late.received("GetAll")  # the budget went to the hung player: the next was not asked


def test_hostile_metadata_becomes_a_clean_bounded_state(bus) -> None:
    with MprisPlayer(bus.address, "evil") as player:
        player.metadata["xesam:title"] = ("s", "\x1b[31mred\x07\n" + "x" * 10_000)
        player.metadata["xesam:artist"] = ("i", 42)  # the wrong type
        title = read("media.title")
        assert title.startswith("[31mredx") and len(title) == 255 and title.endswith("…")
        assert read("media.artist") == ""
        player.metadata["xesam:artist"] = ("as", ["ok", "\u202egnp.exe"] + ["z"] * 100)
        artist = read("media.artist")
        assert artist.startswith("ok, ") and "\u202e" not in artist and len(artist) <= 255
        del player.metadata["xesam:title"]
        assert read("media.title") == ""


def test_the_bus_going_away_is_no_reading_not_an_error(monkeypatch) -> None:
    now = [0.0]
    ctx = ProbeContext()
    ctx.shared("media.snapshot:", lambda: _Snapshot(None, clock=lambda: now[0]))  # the probes' own snapshot
    with private_buses() as (session, _):
        monkeypatch.setenv("DBUS_SESSION_BUS_ADDRESS", session.address)
        reader = PROBES.get("media.state").factory(ctx)
        with MprisPlayer(session.address, "vlc", "Playing"):
            assert reader() == "playing"
    now[0] += 5
    assert reader() is None
    _dbus.close_all()


def test_one_snapshot_serves_the_probes_of_a_tick(bus) -> None:
    now = [100.0]
    with MprisPlayer(bus.address, "vlc", "Playing") as player:
        snapshot = _Snapshot(None, clock=lambda: now[0], max_age=1.0)
        assert snapshot().status == "playing"
        asked = player.asked()
        delivered(_mpris.PROPERTIES_CHANGED, lambda: setattr(player, "status", "Paused"))
        now[0] += 0.5
        assert snapshot().status == "playing"  # within max_age: not asked again
        assert player.asked() == asked
        now[0] += 0.5
        assert snapshot().status == "paused"


def test_unavailable_without_a_session_bus(monkeypatch, tmp_path) -> None:
    monkeypatch.delenv("DBUS_SESSION_BUS_ADDRESS", raising=False)
    monkeypatch.setenv("XDG_RUNTIME_DIR", str(tmp_path))  # no bus socket in it
    entry = PROBES.get("media.state")
    assert "DBUS_SESSION_BUS_ADDRESS" in entry.available(ProbeContext())
    with pytest.raises(ProbeUnavailable, match="no session bus"):
        entry.factory(ProbeContext())
    monkeypatch.setenv("DBUS_SESSION_BUS_ADDRESS", f"unix:path={tmp_path}/gone")
    assert "is not running" in entry.available(ProbeContext())
    monkeypatch.setenv("DBUS_SESSION_BUS_ADDRESS", "tcp:host=example.org,port=1")
    assert "no unix socket" in entry.available(ProbeContext())
    (tmp_path / "bus").touch()
    monkeypatch.delenv("DBUS_SESSION_BUS_ADDRESS")
    assert entry.available(ProbeContext()) is None  # $XDG_RUNTIME_DIR/bus, like sd-bus


@pytest.mark.parametrize("name", ["vlc; rm -rf /", "a..b", ".vlc", "vlc.", "1vlc", "x" * 201, "v\u00e9lc"])
def test_player_names_outside_the_bus_grammar_are_refused(name) -> None:
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate({"player": name}, PROBES.get("media.title").params)


# ---------------------------------------------------------------- round trips per reading


@pytest.fixture
def monitor(bus):
    with Monitor(bus.address) as monitor:
        yield monitor


def test_a_reading_without_a_change_costs_no_round_trip(bus, monitor) -> None:
    now = [100.0]
    with MprisPlayer(bus.address, "vlc", "Playing", "So What") as player:
        snapshot = _Snapshot(None, clock=lambda: now[0])
        assert snapshot().title == "So What"  # the first reading subscribes, lists the players and reads them
        assert (monitor.count("AddMatch"), monitor.count("ListNames"), player.asked()) == (2, 1, 1)
        monitor.clear()
        for _ in range(5):
            now[0] += 5
            assert (snapshot().status, snapshot().title) == ("playing", "So What")
        # five readings and no round trip: before, each cost ListNames, Get PlaybackStatus and Get Metadata
        assert (monitor.count(), player.asked()) == (0, 1)
        delivered(_mpris.PROPERTIES_CHANGED, lambda: setattr(player, "status", "Paused"))
        now[0] += 10
        assert snapshot().status == "paused"
        assert (monitor.count(), monitor.count("GetAll", destination=player.bus_name)) == (1, 1), monitor.calls
        now[0] += _mpris.MAX_AGE
        assert snapshot().status == "paused"
        assert (monitor.count("ListNames"), monitor.count("GetAll")) == (1, 2)  # read again anyway after MAX_AGE


def test_a_new_track_and_a_pause_are_seen_at_the_next_reading(bus) -> None:
    now = [100.0]
    with MprisPlayer(bus.address, "vlc", "Playing", "So What", ["Miles Davis"]) as player:
        snapshot = _Snapshot(None, clock=lambda: now[0])
        assert (snapshot().status, snapshot().title) == ("playing", "So What")
        delivered(_mpris.PROPERTIES_CHANGED, lambda: player.metadata.__setitem__("xesam:title", ("s", "Freddie")))
        delivered(_mpris.PROPERTIES_CHANGED, lambda: setattr(player, "status", "Paused"))
        now[0] += 1
        assert (snapshot().status, snapshot().title, snapshot().artist) == ("paused", "Freddie", "Miles Davis")


def test_a_player_that_quits_and_another_that_starts_are_seen_at_the_next_reading(bus, monitor) -> None:
    now = [100.0]
    snapshot = _Snapshot(None, clock=lambda: now[0])
    vlc = MprisPlayer(bus.address, "vlc", "Playing", "So What").start()
    assert snapshot().player == "vlc"
    spotify = MprisPlayer(bus.address, "spotify", "Paused", "Blue in Green")
    delivered(_mpris.NAME_CHANGED, vlc.stop)
    delivered(_mpris.NAME_CHANGED, spotify.start)
    try:
        monitor.clear()
        now[0] += 1
        playing = snapshot()
        assert (playing.player, playing.status, playing.title) == ("spotify", "paused", "Blue in Green")
        assert (monitor.count("ListNames"), monitor.count("GetAll")) == (1, 1), monitor.calls  # listed again, once
    finally:
        delivered(_mpris.NAME_CHANGED, spotify.stop)
    now[0] += 1
    assert snapshot().status == "idle"  # spotify quit too, and no player runs


def test_the_first_player_and_one_starting_beside_a_running_one_are_seen_at_the_next_reading(bus) -> None:
    now = [100.0]
    snapshot = _Snapshot(None, clock=lambda: now[0])
    assert snapshot().status == "idle"
    vlc = MprisPlayer(bus.address, "vlc", "Paused", "Paused song")
    delivered(_mpris.NAME_CHANGED, vlc.start)
    spotify = MprisPlayer(bus.address, "spotify", "Playing", "Playing song")
    try:
        now[0] += 1
        assert (snapshot().player, snapshot().title) == ("vlc", "Paused song")
        delivered(_mpris.NAME_CHANGED, spotify.start)
        now[0] += 1
        assert (snapshot().player, snapshot().title) == ("spotify", "Playing song")
    finally:
        spotify.stop()
        vlc.stop()


def test_a_player_that_never_announces_a_change_is_read_again_after_max_age(bus) -> None:
    now = [100.0]
    with MprisPlayer(bus.address, "vlc", "Playing", "So What") as player:
        player.quiet = True  # breaks the MPRIS spec: no PropertiesChanged
        snapshot = _Snapshot(None, clock=lambda: now[0])
        assert snapshot().status == "playing"
        player.status = "Paused"
        now[0] += _mpris.MAX_AGE - 1
        assert snapshot().status == "playing"  # the documented limit: nothing said it changed
        now[0] += 1
        assert snapshot().status == "paused"


def test_a_flood_of_signals_costs_one_reading_and_the_look_is_bounded(bus, monitor) -> None:
    now = [100.0]
    with MprisPlayer(bus.address, "vlc", "Playing", "So What") as player:
        snapshot = _Snapshot(None, clock=lambda: now[0])
        assert snapshot().status == "playing"
        for n in range(_dbus.MAX_DRAIN + 50):  # a hostile peer: junk PropertiesChanged, more than one look takes
            player.emit("/org/mpris/MediaPlayer2/x", "org.freedesktop.DBus.Properties", "PropertiesChanged",
                        "sa{sv}as", ("junk", {"n": ("u", n)}, []))  # fmt: skip
        monitor.clear()
        now[0] += 1
        assert snapshot().status == "playing"
        assert monitor.count("GetAll") == 1  # one more reading, not one per signal
        now[0] += 1
        snapshot()
        assert monitor.count("GetAll") <= 2  # what was left of the flood: at most one more


def test_a_named_player_is_found_again_after_it_restarts(bus) -> None:
    now = [100.0]
    snapshot = _Snapshot("vlc", clock=lambda: now[0])
    first = MprisPlayer(bus.address, "vlc", "Playing", "First").start()
    assert snapshot().title == "First"
    delivered(_mpris.NAME_CHANGED, first.stop)
    now[0] += 1
    assert snapshot().status == "idle"
    second = MprisPlayer(bus.address, "vlc", "Playing", "Second")
    delivered(_mpris.NAME_CHANGED, second.start)
    try:
        now[0] += 1
        assert snapshot().title == "Second"
    finally:
        second.stop()


def test_when_the_playing_player_pauses_and_the_paused_one_plays_the_choice_follows(bus) -> None:
    now = [100.0]
    with (
        MprisPlayer(bus.address, "aaa", "Playing", "First") as first,
        MprisPlayer(bus.address, "zzz", "Paused", "Second") as second,
    ):
        snapshot = _Snapshot(None, clock=lambda: now[0])
        assert (snapshot().player, snapshot().title) == ("aaa", "First")
        delivered(_mpris.PROPERTIES_CHANGED, lambda: setattr(first, "status", "Paused"))
        delivered(_mpris.PROPERTIES_CHANGED, lambda: setattr(second, "status", "Playing"))
        now[0] += 1
        assert (snapshot().player, snapshot().status, snapshot().title) == ("zzz", "playing", "Second")
        delivered(_mpris.PROPERTIES_CHANGED, lambda: setattr(second, "status", "Paused"))  # only the other's signal
        now[0] += 1
        assert (snapshot().player, snapshot().status) == ("aaa", "paused")  # both paused: the first by name
