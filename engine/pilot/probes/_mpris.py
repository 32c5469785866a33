"""MPRIS over D-Bus, shared by the media probes and actions: which players run, which is active.

Stdlib and `_dbus` only (jeepney is loaded at the first call), so importing the actions stays
light. A player is another program on the bus, so what it says is bounded and cleaned here
before it becomes a sensor state or a call's destination.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from pilot.probes import _dbus

MPRIS_PREFIX = "org.mpris.MediaPlayer2."
MPRIS_PATH = "/org/mpris/MediaPlayer2"
MPRIS_PLAYER = "org.mpris.MediaPlayer2.Player"
MAX_PLAYERS = 16  # players asked per reading; more is a bus full of junk, not a desktop
MAX_TEXT = 255  # Home Assistant's limit for a state
STATES = ["playing", "paused", "stopped", "idle"]  # idle: no player at all
TIMEOUT = 0.5  # one player's answer
SCAN_BUDGET = 1.0  # all players' answers, per reading
NAMES_MAX_AGE = 60.0  # seconds a list of running players is trusted before the bus's names are listed again
# one element of a D-Bus well-known name, dot-separated (the part after org.mpris.MediaPlayer2.)
PLAYER_NAME = r"^[A-Za-z_-][A-Za-z0-9_-]*(\.[A-Za-z_-][A-Za-z0-9_-]*)*$"


@dataclass(frozen=True)
class Playing:
    """The chosen player's state at one moment; player None means no player is running."""

    player: str | None
    status: str  # one of STATES
    title: str
    artist: str


def player_names(bus: _dbus.Bus, wanted: str | None = None) -> list[str]:
    """The MPRIS players on the bus (full bus names), sorted; only `wanted` and its instances if given."""
    names = sorted(n for n in _dbus.list_names(bus, TIMEOUT) if n.startswith(MPRIS_PREFIX))
    if wanted is not None:
        full = MPRIS_PREFIX + wanted
        names = [n for n in names if n == full or n.startswith(full + ".")]
    return names[:MAX_PLAYERS]


def _status(value: Any) -> str:
    status = value.lower() if isinstance(value, str) else ""
    return status if status in ("playing", "paused") else "stopped"


def status_of(bus: _dbus.Bus, name: str, timeout: float = TIMEOUT) -> str:
    """A player's PlaybackStatus as one of playing/paused/stopped (anything else reads as stopped)."""
    return _status(_dbus.get_property(bus, name, MPRIS_PATH, MPRIS_PLAYER, "PlaybackStatus", timeout))


def _rank(status: str) -> int:
    return {"playing": 0, "paused": 1}.get(status, 2)


def _pick(
    names: list[str], ask: Callable[[str, float], tuple[str, Any]], clock: Callable[[], float]
) -> tuple[tuple[str, str, Any] | None, set[str]]:
    """Ask each player (`ask(name, timeout)` -> (status, extra)) within SCAN_BUDGET seconds in all and
    return ((name, status, extra) of the first playing, else paused, else any; None when none answered)
    with the names found gone (the player quit since the list was made). When the budget ran out
    before any player answered, that is a DBusError (no reading), never a false "idle"."""
    deadline = clock() + SCAN_BUDGET
    found: list[tuple[int, int, str, str, Any]] = []
    unanswered = 0
    gone: set[str] = set()
    for order, name in enumerate(names):
        remaining = deadline - clock()
        if remaining <= 0:
            unanswered += 1
            continue
        try:
            status, extra = ask(name, min(TIMEOUT, remaining))
        except _dbus.DBusError as exc:
            if exc.bus_down:
                raise  # not this player's failure: no reading at all
            unanswered += 1
            if exc.name in _dbus.GONE:
                gone.add(name)
            continue  # a player that quit or hangs between ListNames and the call is no candidate
        found.append((_rank(status), order, name, status, extra))
    if not found:
        if unanswered and clock() >= deadline:
            raise _dbus.DBusError(f"{unanswered} media player(s) did not answer within {SCAN_BUDGET:g} s")
        return None, gone
    _, _, name, status, extra = min(found)
    return (name, status, extra), gone


def active_player(
    bus: _dbus.Bus, wanted: str | None = None, clock: Callable[[], float] = time.monotonic
) -> tuple[str | None, str]:
    """(bus name, status) of the player a control is about; (None, "idle") when none runs.

    The players are asked within SCAN_BUDGET seconds in all, so a bus of hung players costs the
    caller one second, not sixteen timeouts."""
    chosen, _ = _pick(player_names(bus, wanted), lambda name, timeout: (status_of(bus, name, timeout), None), clock)
    return (None, "idle") if chosen is None else (chosen[0], chosen[1])


def clean_text(value: Any) -> str:
    """A player's text as a sensor state: str only, control characters dropped, at most 255 characters."""
    if isinstance(value, (list, tuple)):
        value = ", ".join(v for v in value[:32] if isinstance(v, str))
    if not isinstance(value, str):
        return ""
    text = "".join(c for c in value[: MAX_TEXT * 4] if c.isprintable()).strip()
    return text if len(text) <= MAX_TEXT else text[: MAX_TEXT - 1] + "…"


def _metadata_value(metadata: Any, key: str) -> Any:
    if not isinstance(metadata, dict):
        return None
    entry = metadata.get(key)
    return entry[1] if isinstance(entry, tuple) and len(entry) == 2 else None


def _state_of(bus: _dbus.Bus, name: str, timeout: float) -> tuple[str, Any]:
    """A player's status and metadata in one round trip (GetAll of the Player interface)."""
    properties = _dbus.get_all(bus, name, MPRIS_PATH, MPRIS_PLAYER, timeout)
    return _status(properties.get("PlaybackStatus")), properties.get("Metadata")


class Players:
    """The players a reading is about, remembered between readings: the bus's names are listed again
    only when none was found, when one of them quit (ServiceUnknown, NoReply), or after
    NAMES_MAX_AGE seconds (a player that starts beside a running one waits that long to be
    seen). Each reading then costs one GetAll per listed player instead of ListNames, a Get of
    PlaybackStatus per player and a Get of Metadata. Not thread-safe: one per media snapshot."""

    def __init__(self, wanted: str | None = None, clock: Callable[[], float] = time.monotonic) -> None:
        self.wanted = wanted
        self.clock = clock
        self._names: list[str] = []
        self._listed_at: float | None = None

    def _list(self, bus: _dbus.Bus) -> None:
        self._names = player_names(bus, self.wanted)
        self._listed_at = self.clock()

    def read(self, bus: _dbus.Bus) -> Playing:
        at = self._listed_at
        listed = not self._names or at is None or not 0 <= self.clock() - at < NAMES_MAX_AGE
        if listed:
            self._list(bus)
        try:
            chosen, gone = _pick(self._names, lambda name, timeout: _state_of(bus, name, timeout), time.monotonic)
            if gone and not listed:  # a player quit since the list was made: another may have started
                self._list(bus)
                chosen, gone = _pick(self._names, lambda name, timeout: _state_of(bus, name, timeout), time.monotonic)
        except _dbus.DBusError:
            self._listed_at = None  # no reading: list the names again next time
            raise
        self._names = [n for n in self._names if n not in gone]
        if chosen is None:
            return Playing(None, "idle", "", "")
        name, status, metadata = chosen
        return Playing(
            name[len(MPRIS_PREFIX) :],
            status,
            clean_text(_metadata_value(metadata, "xesam:title")),
            clean_text(_metadata_value(metadata, "xesam:artist")),
        )


def read_playing(bus: _dbus.Bus, wanted: str | None = None) -> Playing:
    """One reading with no memory of earlier ones (the names listed afresh)."""
    return Players(wanted).read(bus)
