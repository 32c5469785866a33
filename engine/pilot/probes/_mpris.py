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
MAX_AGE = 60.0  # seconds a reading stands without a signal before the players are read again anyway
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


# what may change a reading: a player's properties; a player's name coming or going
PROPERTIES_CHANGED = _dbus.Signals(
    interface="org.freedesktop.DBus.Properties", member="PropertiesChanged", path_namespace=MPRIS_PATH
)
NAME_CHANGED = _dbus.Signals(
    interface="org.freedesktop.DBus", member="NameOwnerChanged", sender="org.freedesktop.DBus", arg0=MPRIS_PREFIX + "*"
)


class Players:
    """The players a reading is about, remembered between readings.

    With `watch` (the media probes' snapshot), a reading first looks, without waiting, at the
    signals the bus has delivered since the last one: PropertiesChanged of a player (MPRIS players
    announce every change of PlaybackStatus and Metadata) and NameOwnerChanged of an MPRIS name (a
    player started or quit). When none came, the last reading stands and costs no round trip; when
    one came, the players are read again (one GetAll each: status and metadata together), and the
    bus's names are listed again when a name came or went. Everything is listed and read again
    after MAX_AGE seconds whatever came (for a player that breaks the spec) and after a failure.
    Without `watch` (or where the bus refuses the subscription) every reading asks. A listed player
    that quit (ServiceUnknown, NoReply) makes the names be listed again within the same reading.
    Not thread-safe: one per media snapshot."""

    def __init__(
        self, wanted: str | None = None, clock: Callable[[], float] = time.monotonic, watch: bool = False
    ) -> None:
        self.wanted = wanted
        self.clock = clock
        self.watch = watch
        self._names: list[str] = []
        self._last: Playing | None = None
        self._read_at: float | None = None
        self._seen: dict[_dbus.Signals, tuple[_dbus.Bus, int]] = {}  # per signal: the bus and the count last seen

    def _changed(self, bus: _dbus.Bus, signals: _dbus.Signals) -> bool:
        if not self.watch:
            return True
        count = bus.look(bus.watch(signals))
        seen = self._seen.get(signals)
        self._seen[signals] = (bus, count)
        return seen is None or seen[0] is not bus or seen[1] != count

    def read(self, bus: _dbus.Bus) -> Playing:
        # looked at before reading: a change after the look is seen at the next reading
        names_changed = self._changed(bus, NAME_CHANGED)
        properties_changed = self._changed(bus, PROPERTIES_CHANGED)
        now = self.clock()
        fresh = self._read_at is not None and 0 <= now - self._read_at < MAX_AGE
        if self._last is not None and fresh and not (names_changed or properties_changed):
            return self._last
        self._last = None
        ask = lambda name, timeout: _state_of(bus, name, timeout)  # noqa: E731
        try:
            listed = names_changed or not fresh
            if listed:
                self._names = player_names(bus, self.wanted)
            chosen, gone = _pick(self._names, ask, time.monotonic)
            if gone and not listed:  # a player quit since the list was made: another may have started
                self._names = player_names(bus, self.wanted)
                chosen, gone = _pick(self._names, ask, time.monotonic)
        except _dbus.DBusError:
            self._seen.clear()  # no reading: the next one lists and asks again
            self._read_at = None
            raise
        self._names = [n for n in self._names if n not in gone]
        if chosen is None:
            playing = Playing(None, "idle", "", "")
        else:
            name, status, metadata = chosen
            playing = Playing(
                name[len(MPRIS_PREFIX) :],
                status,
                clean_text(_metadata_value(metadata, "xesam:title")),
                clean_text(_metadata_value(metadata, "xesam:artist")),
            )
        self._last, self._read_at = playing, now
        return playing


def read_playing(bus: _dbus.Bus, wanted: str | None = None) -> Playing:
    """One reading with no memory of earlier ones (the names listed afresh)."""
    return Players(wanted).read(bus)
