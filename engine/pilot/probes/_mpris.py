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


def status_of(bus: _dbus.Bus, name: str, timeout: float = TIMEOUT) -> str:
    """A player's PlaybackStatus as one of playing/paused/stopped (anything else reads as stopped)."""
    value = _dbus.get_property(bus, name, MPRIS_PATH, MPRIS_PLAYER, "PlaybackStatus", timeout)
    status = value.lower() if isinstance(value, str) else ""
    return status if status in ("playing", "paused") else "stopped"


def active_player(
    bus: _dbus.Bus, wanted: str | None = None, clock: Callable[[], float] = time.monotonic
) -> tuple[str | None, str]:
    """(bus name, status) of the player a reading or a control is about; (None, "idle") when none runs.

    The players are asked within SCAN_BUDGET seconds in all, so a bus of hung players costs the
    telemetry loop one second, not sixteen timeouts; when the budget runs out before a player
    answered, that is a DBusError (no reading), never a false "idle"."""
    names = player_names(bus, wanted)
    deadline = clock() + SCAN_BUDGET
    found: list[tuple[int, str, str]] = []
    unanswered = 0
    for name in names:
        remaining = deadline - clock()
        if remaining <= 0:
            unanswered += 1
            continue
        try:
            status = status_of(bus, name, min(TIMEOUT, remaining))
        except _dbus.DBusError:
            unanswered += 1
            continue  # a player that quit or hangs between ListNames and Get is no candidate
        found.append(({"playing": 0, "paused": 1}.get(status, 2), name, status))
    if not found:
        if unanswered and clock() >= deadline:
            raise _dbus.DBusError(f"{unanswered} media player(s) did not answer within {SCAN_BUDGET:g} s")
        return None, "idle"
    _, name, status = min(found)
    return name, status


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


def read_playing(bus: _dbus.Bus, wanted: str | None = None) -> Playing:
    name, status = active_player(bus, wanted)
    if name is None:
        return Playing(None, "idle", "", "")
    metadata = _dbus.get_property(bus, name, MPRIS_PATH, MPRIS_PLAYER, "Metadata", TIMEOUT)
    return Playing(
        name[len(MPRIS_PREFIX) :],
        status,
        clean_text(_metadata_value(metadata, "xesam:title")),
        clean_text(_metadata_value(metadata, "xesam:artist")),
    )
