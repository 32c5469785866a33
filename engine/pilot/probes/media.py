"""Media player probes: what the desktop's media player is doing, over MPRIS on the session bus.

Every MPRIS player (browsers, Spotify, VLC, mpv with mpv-mpris) owns a name
`org.mpris.MediaPlayer2.<player>` on the user's session bus. The *active* player is the
first one playing, else the first paused, else the first at all (by name, so the choice is
stable); `player` picks one by name instead. A player is another program on the bus, so
what it says is bounded and cleaned (titles are cut to 255 characters, control characters
dropped) before it becomes a sensor state. The agent must run in the user's session
(DBUS_SESSION_BUS_ADDRESS, or $XDG_RUNTIME_DIR/bus). Linux only: Windows' media session API
is WinRT, which Pilot does not load.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable
from typing import Any

from pilot.params import params, prop
from pilot.probes import _dbus
from pilot.probes._common import Reader
from pilot.probes._context import ProbeContext, ProbeUnavailable
from pilot.probes._mpris import PLAYER_NAME, STATES, Players, Playing
from pilot.registry import PROBES

_PLAYER = prop(
    "string",
    "The player to read, by its MPRIS name (`vlc`, `spotify`, `firefox.instance_1_42`); "
    "a name also matches its instances (`firefox` matches `firefox.instance_1_42`). "
    "Default: the active player (the first playing, else paused).",
    pattern=PLAYER_NAME,
    maxLength=200,
)


class _Snapshot:
    """One reading of the player shared by the media probes of a context for `max_age` seconds,
    so state, title and artist read in the same tick ask the bus once; the players are remembered
    from one reading to the next and read again only when the bus announced a change
    (`_mpris.Players`), so a reading without a change costs no round trip."""

    def __init__(self, wanted: str | None, clock: Callable[[], float] = time.monotonic, max_age: float = 1.0) -> None:
        self.wanted = wanted
        self.clock = clock
        self.max_age = max_age
        self.players = Players(wanted, clock, watch=True)
        self._at: float | None = None
        self._value: Playing | None = None

    def __call__(self) -> Playing | None:
        now = self.clock()
        if self._at is None or not 0 <= now - self._at < self.max_age:
            self._at = now
            try:
                self._value = self.players.read(_dbus.session_bus())
            except _dbus.DBusError:
                self._value = None  # the bus or the player went away: no reading, not an error
        return self._value


def _reason(ctx: ProbeContext, player: str | None = None, **_: Any) -> str | None:
    if not sys.platform.startswith("linux"):
        return "media players are read over MPRIS (D-Bus), which only Linux desktops have"
    return _dbus.unreachable(_dbus.session_address(), "session bus")


def _register(name: str, pick: Callable[[Playing], Any], defaults: dict[str, Any], doc: str) -> None:
    def factory(ctx: ProbeContext, player: str | None = None) -> Reader:
        reason = _reason(ctx, player)
        if reason:
            raise ProbeUnavailable(reason)
        snapshot = ctx.shared(f"media.snapshot:{player or ''}", lambda: _Snapshot(player))

        def read() -> Any:
            playing = snapshot()
            return None if playing is None else pick(playing)

        return read

    factory.__doc__ = doc
    factory.__name__ = name.replace(".", "_")
    PROBES.register(
        name, params=params({"player": _PLAYER}, examples=[{"player": "vlc"}]), defaults=defaults, available=_reason
    )(factory)


_register(
    "media.state",
    lambda p: p.status,
    {"device_class": "enum", "options": STATES, "platform": "sensor", "icon": "mdi:play-pause"},
    "What the active media player is doing: playing, paused, stopped, or idle when no player runs.\n\n"
    "MPRIS `PlaybackStatus` of the first player playing, else paused, else any (or of `player`).",
)
_register(
    "media.title",
    lambda p: p.title,
    {"platform": "sensor", "icon": "mdi:music-note"},
    "Title of what the active media player plays (MPRIS `xesam:title`); empty when no player runs.\n\n"
    "At most 255 characters, control characters removed.",
)
_register(
    "media.artist",
    lambda p: p.artist,
    {"platform": "sensor", "icon": "mdi:account-music"},
    "Artist of what the active media player plays (MPRIS `xesam:artist`, several joined by commas).\n\n"
    "Empty when no player runs or the player names none; at most 255 characters, control characters removed.",
)
