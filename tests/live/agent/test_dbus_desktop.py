"""The desktop's D-Bus services end to end: a real agent on a real broker reads a media player,
logind and Mutter's idle monitor on private dbus-daemons (DBUS_SESSION_BUS_ADDRESS and
DBUS_SYSTEM_BUS_ADDRESS point it there) and controls the player. In --dry-run the player must
not be called; without it the player records the exact call (it is the test's own player on
the test's own bus, so nothing of this machine is touched)."""

from __future__ import annotations

import json
import shutil
import time

import pytest

from testkit.dbus import Logind, MprisPlayer, MutterIdleMonitor, bus_environment, find_dbus_daemon, private_buses

pytestmark = pytest.mark.skipif(find_dbus_daemon() is None, reason="dbus-daemon is not installed")
BASE = "pilot/dbusrig"
PROFILE = """pilot: 1
device: {id: dbusrig, name: D-Bus rig}
sensors:
  media_state: {probe: media.state, every: 1s}
  media_title: {probe: media.title, every: 1s}
  media_artist: {probe: media.artist, every: 1s}
  idle_time: {probe: session.idle_seconds, every: 1s}
  away: {probe: session.idle, args: {after: 60}, every: 1s}
  locked: {probe: session.locked, every: 1s}
commands:
  play_pause: {action: media.play_pause, platform: button}
  next_track: {action: media.next, args: {player: vlc}, platform: button}
policies:
  allow: [play_pause, next_track]
"""


@pytest.fixture
def desktop():
    """A session bus with a player and Mutter's idle monitor, a system bus with logind."""
    with private_buses() as (session, system):
        with (
            MprisPlayer(session.address, "vlc", "Playing", "So What", ["Miles Davis"]) as player,
            MutterIdleMonitor(session.address, idle_ms=75_000),
            Logind(system.address) as logind,
        ):
            logind.locked_hint = True
            yield player, bus_environment(session, system)


def start(run_agent, tmp_path, broker, watcher, env, *extra):
    profile = tmp_path / "dbus.yaml"
    profile.write_text(PROFILE)
    started = time.monotonic()
    agent = run_agent(profile, broker.port, *extra, env=env)
    online = watcher.wait_for(
        lambda m: m.topic == f"{BASE}/availability" and m.payload == b"online", timeout=20, since=started
    )
    assert online, agent.output()
    time.sleep(0.3)  # subscriptions are made before `online`; a little slack for the watcher
    return agent


def state(watcher, key: str, payload: bytes, since: float = 0.0) -> None:
    got = watcher.wait_for(lambda m: m.topic == f"{BASE}/state/{key}" and m.payload == payload, timeout=10, since=since)
    assert got is not None, (key, [m.payload for m in watcher.on(f"{BASE}/state/{key}")])


def press(watcher, command: str) -> dict:
    sent = time.monotonic()
    watcher.publish(f"{BASE}/cmd/{command}/set", "PRESS")
    msg = watcher.wait_for(lambda m: m.topic == f"{BASE}/cmd/{command}/result", timeout=10, since=sent)
    assert msg is not None, command
    return json.loads(msg.payload)


def test_dry_run_reads_the_desktop_and_shows_the_call_without_making_it(
    desktop, broker, watcher, run_agent, tmp_path
) -> None:
    player, env = desktop
    agent = start(run_agent, tmp_path, broker, watcher, env, "--dry-run")
    state(watcher, "media_state", b"playing")
    state(watcher, "media_title", b"So What")
    state(watcher, "media_artist", b"Miles Davis")
    state(watcher, "idle_time", b"75")
    state(watcher, "away", b"ON")
    state(watcher, "locked", b"ON")
    body = press(watcher, "play_pause")
    assert body["status"] == "dry_run", agent.output()
    (call,) = body["calls"]
    assert call["argv"] == [
        "busctl",
        "--user",
        "call",
        "org.mpris.MediaPlayer2.vlc",
        "/org/mpris/MediaPlayer2",
        "org.mpris.MediaPlayer2.Player",
        "PlayPause",
    ]
    assert ["DBUS_SESSION_BUS_ADDRESS", "<redacted>"] in call["env"]
    assert player.received("PlayPause") == [] and player.status == "Playing"


@pytest.mark.skipif(shutil.which("busctl") is None, reason="busctl (systemd) is not installed")
def test_a_press_reaches_the_player_and_the_state_follows(desktop, broker, watcher, run_agent, tmp_path) -> None:
    player, env = desktop
    agent = start(run_agent, tmp_path, broker, watcher, env)
    state(watcher, "media_state", b"playing")
    pressed = time.monotonic()
    assert press(watcher, "play_pause")["status"] == "ok", agent.output()
    (call,) = player.received("PlayPause")
    assert (call.path, call.interface) == ("/org/mpris/MediaPlayer2", "org.mpris.MediaPlayer2.Player")
    state(watcher, "media_state", b"paused", since=pressed)
    assert press(watcher, "next_track")["status"] == "ok", agent.output()
    assert len(player.received("Next")) == 1 and len(player.received("PlayPause")) == 1


def test_without_the_desktop_the_sensors_are_unavailable_and_the_agent_runs_on(
    broker, watcher, run_agent, tmp_path
) -> None:
    env = {
        "DBUS_SESSION_BUS_ADDRESS": f"unix:path={tmp_path}/none",
        "DBUS_SYSTEM_BUS_ADDRESS": f"unix:path={tmp_path}/x",
    }
    agent = start(run_agent, tmp_path, broker, watcher, env, "--dry-run")
    body = press(watcher, "play_pause")
    assert (body["status"], body["reason"]) == ("failed", "unavailable")
    assert body["detail"].startswith("cannot find the media player: cannot connect to the session bus")
    assert agent.running(), agent.output()
    assert "session bus is not running" in agent.output()
