"""audio.set_volume (number 0-100) and audio.mute (switch): the default audio output.

PipeWire: `wpctl set-volume @DEFAULT_AUDIO_SINK@ 0.37` and `wpctl set-mute ... 1|0`; PulseAudio
(or pipewire-pulse): `pactl set-sink-volume @DEFAULT_SINK@ 37%` and `pactl set-sink-mute ... 1|0`.
The value is checked and formatted here (a whole percent from 0 to 100), so what reaches argv is
always a number Pilot wrote. The tools get only the variables that locate the user's sound
server (XDG_RUNTIME_DIR, HOME for PulseAudio's cookie, PULSE_SERVER, PIPEWIRE_REMOTE): the agent
must run in the user's session. The state readers publish the volume and mute back.
Windows: NirCmd's setsysvolume / mutesysvolume (argv only, untested on real Windows).
"""

from __future__ import annotations

from typing import Any

from pilot.actions._base import ActionContext, ActionError, Call, Unsupported
from pilot.actions._common import as_number, as_switch, env_from, exec_call, is_windows
from pilot.params import params
from pilot.probes.audio import (
    AUDIO_ENV,
    BACKEND_PARAM,
    BACKENDS,
    PACTL_SINK,
    WPCTL_SINK,
    audio_env,
    choose_backend,
    read_audio,
)
from pilot.registry import ACTIONS

_PARAMS = params(
    {"backend": BACKEND_PARAM},
    examples=[{}, {"backend": "pactl"}],
)


def _backend(ctx: ActionContext, backend: str) -> str:
    if backend not in BACKENDS:
        raise ActionError(f"backend must be one of {', '.join(BACKENDS)}")
    chosen, why = choose_backend(backend, ctx.environ, ctx.which)
    if chosen is None:
        raise Unsupported(why or "no sound tool")
    return chosen


def _available(ctx: ActionContext, backend: str = "auto", **_: Any) -> str | None:
    if is_windows(ctx):
        return None if ctx.which("nircmd") else "NirCmd (nircmd.exe) is not on PATH"
    if ctx.platform != "linux":
        return f"audio actions are not supported on {ctx.platform or 'this system'}"
    if backend not in BACKENDS:
        return f"backend must be one of {', '.join(BACKENDS)}"
    return choose_backend(backend, ctx.environ, ctx.which)[1]


def _percent(value: Any) -> int:
    number = as_number(value, "audio.set_volume")
    if not 0 <= number <= 100:
        raise ActionError("the volume must be from 0 to 100")
    return round(number)


def _read(ctx: ActionContext, backend: str) -> Any:
    """The current volume and mute (None when they cannot be read now; never raises)."""
    if is_windows(ctx) or ctx.platform != "linux":
        return None
    try:
        chosen = _backend(ctx, backend)
        return read_audio(chosen, audio_env(ctx.environ))
    except Exception:  # noqa: BLE001 - a state reader reports "unknown", never an error
        return None


def _volume_state(ctx: ActionContext, backend: str = "auto", **_: Any) -> int | None:
    audio = _read(ctx, backend)
    return None if audio is None else audio.volume


def _mute_state(ctx: ActionContext, backend: str = "auto", **_: Any) -> str | None:
    audio = _read(ctx, backend)
    return None if audio is None else ("ON" if audio.muted else "OFF")


@ACTIONS.register(
    "audio.set_volume",
    params=_PARAMS,
    privilege=None,
    platforms=("number",),
    available=_available,
    state=_volume_state,
)
def set_volume(ctx: ActionContext, value: Any = None, *, backend: str = "auto") -> list[Call]:
    """Set the volume of the default audio output, in percent (0 to 100)."""
    percent = _percent(value)
    if is_windows(ctx):
        return [exec_call(("nircmd", "setsysvolume", str(round(percent * 65535 / 100))), timeout=10)]
    chosen = _backend(ctx, backend)
    env = env_from(ctx, AUDIO_ENV)
    if chosen == "wpctl":
        argv = ("wpctl", "set-volume", WPCTL_SINK, f"{percent / 100:.2f}")
    else:
        argv = ("pactl", "set-sink-volume", PACTL_SINK, f"{percent}%")
    return [exec_call(argv, timeout=10, env=env)]


@ACTIONS.register(
    "audio.mute",
    params=_PARAMS,
    privilege=None,
    platforms=("switch",),
    available=_available,
    state=_mute_state,
)
def mute(ctx: ActionContext, value: Any = None, *, backend: str = "auto") -> list[Call]:
    """Mute (ON) or unmute (OFF) the default audio output."""
    on = as_switch(value, "audio.mute")
    if is_windows(ctx):
        return [exec_call(("nircmd", "mutesysvolume", "1" if on else "0"), timeout=10)]
    chosen = _backend(ctx, backend)
    env = env_from(ctx, AUDIO_ENV)
    sink = WPCTL_SINK if chosen == "wpctl" else PACTL_SINK
    verb = "set-mute" if chosen == "wpctl" else "set-sink-mute"
    return [exec_call((chosen, verb, sink, "1" if on else "0"), timeout=10, env=env)]
