"""Media player controls: play, pause, next, previous, over MPRIS on the session bus.

The action plans one exact `busctl --user call` to the player (systemd's busctl, like
`display.power` on GNOME), so dry-run shows which player would get which call and nothing is
sent. The player is the active one (the first playing, else paused, else any; see
`pilot.probes._mpris`), looked up on the bus while planning, or the one named by `player`.
The agent needs the user's session bus (DBUS_SESSION_BUS_ADDRESS or $XDG_RUNTIME_DIR/bus),
which is passed on to busctl. Windows presses the media key with NirCmd (VK_MEDIA_PLAY_PAUSE,
VK_MEDIA_NEXT_TRACK, VK_MEDIA_PREV_TRACK; untested on real Windows); it has no separate play
and pause keys.
"""

from __future__ import annotations

import re
from typing import Any

from pilot.actions import _windows
from pilot.actions._base import ActionContext, ActionError, Call, Unsupported
from pilot.actions._common import SESSION_ENV, env_from, exec_call, is_windows
from pilot.params import params, prop
from pilot.probes import _dbus
from pilot.probes._mpris import MPRIS_PATH, MPRIS_PLAYER, MPRIS_PREFIX, PLAYER_NAME, active_player
from pilot.registry import ACTIONS

_PLAYER = prop(
    "string",
    "The player to control, by its MPRIS name (`vlc`, `spotify`); default: the active player "
    "(the first playing, else paused), looked up when the command runs.",
    pattern=PLAYER_NAME,
    maxLength=200,
)
TIMEOUT = 5.0


def _reason(ctx: ActionContext, control: str) -> str | None:
    if is_windows(ctx):
        if control not in _windows.MEDIA_KEYS:
            return f"Windows has no media key for {control.replace('_', ' ')}: use media.play_pause"
        return None if ctx.which("nircmd") else "media keys need NirCmd (nircmd.exe on PATH) on Windows"
    if ctx.platform != "linux":
        return f"media controls are not supported on {ctx.platform or 'this system'}"
    if not ctx.which("busctl"):
        return "busctl (systemd) is not installed, so media players cannot be reached"
    if _dbus.session_address(ctx.environ) is None:
        return "no session bus: the agent must run in the user's session (DBUS_SESSION_BUS_ADDRESS is unset)"
    return None


def _player(ctx: ActionContext, player: str | None) -> str:
    """The bus name the call goes to: `player`'s, or the active player's (asked on the bus now)."""
    if player is not None:
        if not isinstance(player, str) or len(player) > 200 or not re.fullmatch(PLAYER_NAME, player):
            raise ActionError(f"{str(player)[:40]!r} is not a valid MPRIS player name (like vlc or spotify)")
        return MPRIS_PREFIX + player
    try:
        name, _ = active_player(_dbus.session_bus(ctx.environ))
    except _dbus.DBusError as exc:
        raise Unsupported(f"cannot find the media player: {exc}") from None
    if name is None:
        raise ActionError("no media player is running (no org.mpris.MediaPlayer2.* name on the session bus)")
    return name


def _register(name: str, control: str, method: str, doc: str) -> None:
    def available(ctx: ActionContext, **_: Any) -> str | None:
        return _reason(ctx, control)

    def factory(ctx: ActionContext, value: Any = None, *, player: str | None = None) -> list[Call]:
        reason = _reason(ctx, control)
        if reason:
            raise Unsupported(reason)
        if is_windows(ctx):
            if player is not None:
                raise Unsupported("`player` is Linux-only; the Windows media key goes to the system's current player")
            return [exec_call(_windows.media_key(control), timeout=TIMEOUT)]
        argv = ("busctl", "--user", "call", _player(ctx, player), MPRIS_PATH, MPRIS_PLAYER, method)
        return [exec_call(argv, timeout=TIMEOUT, env=env_from(ctx, SESSION_ENV))]

    factory.__doc__ = doc
    factory.__name__ = name.replace(".", "_")
    ACTIONS.register(
        name,
        params=params({"player": _PLAYER}, examples=[{"player": "vlc"}]),
        platforms=("button",),
        available=available,
    )(factory)


_register(
    "media.play_pause",
    "play_pause",
    "PlayPause",
    "Toggle the media player between playing and paused (MPRIS PlayPause; the media key on Windows).\n\n"
    "Windows presses VK_MEDIA_PLAY_PAUSE with NirCmd (untested on real Windows; docs/desktop.md).",
)
_register(
    "media.play",
    "play",
    "Play",
    "Start or resume playback on the media player (MPRIS Play).\n\nLinux only: Windows has no play key.",
)
_register(
    "media.pause", "pause", "Pause", "Pause the media player (MPRIS Pause).\n\nLinux only: Windows has no pause key."
)
_register(
    "media.next",
    "next",
    "Next",
    "Skip to the next track on the media player (MPRIS Next; the media key on Windows).\n\n"
    "Windows presses VK_MEDIA_NEXT_TRACK with NirCmd (untested on real Windows; docs/desktop.md).",
)
_register(
    "media.previous",
    "previous",
    "Previous",
    "Go back to the previous track on the media player (MPRIS Previous; the media key on Windows).\n\n"
    "Windows presses VK_MEDIA_PREV_TRACK with NirCmd (untested on real Windows; docs/desktop.md).",
)
