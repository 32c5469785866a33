"""The media actions: the exact busctl call planned for the active player, and performed against
a real MPRIS player on a private dbus-daemon (the player records what it was asked)."""

from __future__ import annotations

import os
import shutil
import subprocess

import jsonschema
import pytest

from pilot.actions import ActionContext, ActionError, System, Unsupported
from pilot.probes import _dbus
from pilot.registry import ACTIONS
from testkit.dbus import MprisPlayer, find_dbus_daemon, private_buses

pytestmark = pytest.mark.skipif(find_dbus_daemon() is None, reason="dbus-daemon is not installed")
needs_busctl = pytest.mark.skipif(shutil.which("busctl") is None, reason="busctl (systemd) is not installed")
METHODS = {
    "media.play_pause": "PlayPause",
    "media.play": "Play",
    "media.pause": "Pause",
    "media.next": "Next",
    "media.previous": "Previous",
}
PLAYER = ("/org/mpris/MediaPlayer2", "org.mpris.MediaPlayer2.Player")


@pytest.fixture
def bus():
    with private_buses() as (session, _):
        yield session
        _dbus.close_all()


def ctx_on(address: str | None, platform: str = "linux", tools: tuple[str, ...] = ("busctl",)) -> ActionContext:
    environ = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "DISPLAY": ":0"}
    if address:
        environ["DBUS_SESSION_BUS_ADDRESS"] = address
    return ActionContext(
        platform=platform, environ=environ, which=lambda name: f"/usr/bin/{name}" if name in tools else None
    )


def plan(name: str, ctx: ActionContext, **args):
    return ACTIONS.get(name).factory(ctx, "PRESS", **args)


def test_the_plan_names_the_active_player_and_calls_nothing(bus) -> None:
    ctx = ctx_on(bus.address)
    with MprisPlayer(bus.address, "paused", "Paused"), MprisPlayer(bus.address, "playing", "Playing") as active:
        for name, method in METHODS.items():
            (call,) = plan(name, ctx)
            assert call.kind == "exec"
            assert call.argv == (
                "busctl",
                "--user",
                "call",
                "org.mpris.MediaPlayer2.playing",
                *PLAYER,
                method,
            )
            assert ("DBUS_SESSION_BUS_ADDRESS", bus.address) in call.env
            assert ("DISPLAY", ":0") in call.env
            assert call.timeout == 5.0
        assert not [c for c in active.calls if c.interface == PLAYER[1]]  # planning only read the bus
        assert active.status == "Playing"


@pytest.fixture
def busctl_on_test_bus(bus, monkeypatch):
    """Lets busctl through this folder's guard (conftest.py) only for an MPRIS call on the test bus."""
    guarded = subprocess.Popen

    class OnlyTheTestBus(guarded.__mro__[1]):  # the real Popen under the guard
        def __init__(self, args, *a, **kw):
            argv, env = list(args), kw.get("env") or {}
            if not (
                os.path.basename(argv[0]) == "busctl"
                and argv[1:3] == ["--user", "call"]
                and argv[3].startswith("org.mpris.MediaPlayer2.")
                and env.get("DBUS_SESSION_BUS_ADDRESS") == bus.address
            ):
                raise AssertionError(f"this test runs only busctl on its own bus, not {argv}")
            super().__init__(args, *a, **kw)

    monkeypatch.setattr(subprocess, "Popen", OnlyTheTestBus)
    return bus


@needs_busctl
@pytest.mark.parametrize("name", sorted(METHODS))
def test_performing_the_plan_reaches_the_player(busctl_on_test_bus, name) -> None:
    bus = busctl_on_test_bus
    with MprisPlayer(bus.address, "vlc", "Paused") as player:
        for call in plan(name, ctx_on(bus.address)):
            outcome = System().perform(call)
            assert outcome.returncode == 0, outcome.output
        (received,) = player.received(METHODS[name])
        assert (received.path, received.interface) == PLAYER
        expected = {"media.play_pause": "Playing", "media.play": "Playing"}.get(name, "Paused")
        assert player.status == expected


def test_a_named_player_needs_no_bus_lookup(bus) -> None:
    with MprisPlayer(bus.address, "other", "Playing") as other:
        (call,) = plan("media.pause", ctx_on(bus.address), player="spotify")
        assert call.argv[3] == "org.mpris.MediaPlayer2.spotify"
        assert not other.calls


def test_no_player_is_a_clear_error(bus) -> None:
    with pytest.raises(ActionError, match="no media player is running"):
        plan("media.play_pause", ctx_on(bus.address))


def test_a_dead_bus_is_unsupported_with_the_reason(tmp_path) -> None:
    with pytest.raises(Unsupported, match="cannot connect to the session bus"):
        plan("media.next", ctx_on(f"unix:path={tmp_path}/bus"))


def test_availability_says_what_is_missing() -> None:
    entry = ACTIONS.get("media.play_pause")
    assert "busctl" in entry.available(ctx_on("unix:path=/x", tools=()))
    assert "DBUS_SESSION_BUS_ADDRESS" in entry.available(ctx_on(None))
    assert "not supported on darwin" in entry.available(ctx_on("unix:path=/x", platform="darwin"))
    assert entry.available(ctx_on("unix:path=/x")) is None
    with pytest.raises(Unsupported, match="DBUS_SESSION_BUS_ADDRESS"):
        plan("media.play_pause", ctx_on(None))


def test_windows_presses_the_media_keys() -> None:
    ctx = ActionContext(
        platform="windows", environ={}, which=lambda n: "C:/tools/nircmd.exe" if n == "nircmd" else None
    )
    keys = {"media.play_pause": "0xB3", "media.next": "0xB0", "media.previous": "0xB1"}
    for name, key in keys.items():
        (call,) = plan(name, ctx)
        assert call.argv == ("nircmd", "sendkeypress", key)
    for name in ("media.play", "media.pause"):
        assert "no media key" in ACTIONS.get(name).available(ctx)
        with pytest.raises(Unsupported, match="use media.play_pause"):
            plan(name, ctx)
    with pytest.raises(Unsupported, match="Linux-only"):
        plan("media.next", ctx, player="vlc")
    bare = ActionContext(platform="windows", environ={}, which=lambda _: None)
    assert "NirCmd" in ACTIONS.get("media.next").available(bare)


@pytest.mark.parametrize(
    "player",
    ["vlc --help", "a..b", ".x", "x.", "9lives", "vlc\n", "x" * 201, "org/mpris", "\u0432\u043b\u0446", ""],
)
def test_player_names_are_checked_before_anything_runs(player) -> None:
    try:  # the profile's validator refuses it; a value that got past (a trailing newline: `$`) the action does
        jsonschema.validate({"player": player}, ACTIONS.get("media.play").params)
    except jsonschema.ValidationError:
        pass
    with pytest.raises(ActionError, match="not a valid MPRIS player name"):
        plan("media.play", ctx_on("unix:path=/x"), player=player)
