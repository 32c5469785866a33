"""audio.volume and audio.muted: the default output's volume and mute, from PipeWire or PulseAudio.

Where PulseAudio's native socket answers (PulseAudio itself, or PipeWire's pipewire-pulse), both
are read in the agent's own process over that socket (probes/_pulse.py): no child process, no
fork per reading, and a reading asks again only after the server announces a change. Otherwise
PipeWire with WirePlumber: `wpctl get-volume @DEFAULT_AUDIO_SINK@` prints `Volume: 0.40` (and
` [MUTED]`), both readings in one run; else PulseAudio's `pactl get-sink-volume` and
`get-sink-mute @DEFAULT_SINK@`. All reach the sound server of the user whose session the agent
runs in, through XDG_RUNTIME_DIR (and HOME for PulseAudio's cookie): the agent must run as that
user (a user service), not as the system service. One reading on the background worker serves
both probes.

The parsing and the backend choice live here; actions/audio.py reuses them to set the volume
and to publish the state back.
"""

from __future__ import annotations

import os
import re
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from pilot.params import params, prop
from pilot.probes import _pulse
from pilot.probes._background import background_reader, every_seconds
from pilot.probes._context import ProbeContext, ProbeUnavailable
from pilot.probes._programs import ProgramResult, run_program
from pilot.registry import PROBES
from pilot.units import DURATION_PATTERN, parse_duration

BACKENDS = ("auto", "wpctl", "pactl")  # the actions' (pilot.actions.audio), which run the tools
PROBE_BACKENDS = (*BACKENDS, "pulse")  # the probes may also read over the native socket only
# What reaches the audio tools from the agent's environment: where the sound server's socket and
# cookie are, nothing else.
AUDIO_ENV = ("XDG_RUNTIME_DIR", "HOME", "PIPEWIRE_REMOTE", "PULSE_SERVER", "PULSE_COOKIE")
WPCTL_SINK = "@DEFAULT_AUDIO_SINK@"
PACTL_SINK = "@DEFAULT_SINK@"
TIMEOUT = 3.0
MAX_AGE = 600.0  # over the native socket the volume is read again at least this often, changes or not
_WPCTL = re.compile(r"Volume: ([0-9]{1,3}(?:\.[0-9]{1,6})?)( \[MUTED\])?\s*")
_PACTL_PERCENT = re.compile(r"/\s*([0-9]{1,4})%\s*/")
_PACTL_MUTE = re.compile(r"Mute: (yes|no)")


@dataclass(frozen=True)
class Audio:
    volume: int  # percent of the nominal volume; above 100 when boosted
    muted: bool


def audio_env(environ: Mapping[str, str]) -> dict[str, str]:
    return {k: environ[k] for k in AUDIO_ENV if environ.get(k)}


def choose_backend(
    backend: str, environ: Mapping[str, str], which: Callable[[str], str | None]
) -> tuple[str | None, str | None]:
    """(backend, None) or (None, why there is none here)."""
    runtime = environ.get("XDG_RUNTIME_DIR")
    if not runtime and not environ.get("PULSE_SERVER") and not environ.get("PIPEWIRE_REMOTE"):
        return None, (
            "no audio session: XDG_RUNTIME_DIR is not set (run the agent in the user's session, as a user "
            "service, to reach PipeWire or PulseAudio)"
        )
    pipewire = bool(environ.get("PIPEWIRE_REMOTE")) or bool(runtime and os.path.exists(f"{runtime}/pipewire-0"))
    if backend in ("auto", "wpctl") and which("wpctl") and (pipewire or backend == "wpctl"):
        return "wpctl", None
    if backend in ("auto", "pactl") and which("pactl"):
        return "pactl", None
    if backend == "wpctl":
        return None, "wpctl (WirePlumber) is not installed"
    if backend == "pactl":
        return None, "pactl (pulseaudio-utils) is not installed"
    return None, "neither wpctl (PipeWire) nor pactl (PulseAudio) is installed"


def _first_line(text: str) -> str:
    line = next((ln.strip() for ln in text.splitlines() if ln.strip()), "")
    return "".join(ch if ch.isprintable() else "?" for ch in line)[:120]


def parse_wpctl(text: str) -> Audio:
    match = _WPCTL.fullmatch(text.strip() + "\n")
    if match is None:
        shown = _first_line(text)
        raise ProbeUnavailable("wpctl printed no volume" + (f" ({shown})" if shown else ""))
    return Audio(volume=round(float(match.group(1)) * 100), muted=match.group(2) is not None)


def parse_pactl(volume_text: str, mute_text: str) -> Audio:
    percents = [int(p) for p in _PACTL_PERCENT.findall(volume_text)]
    mute = _PACTL_MUTE.search(mute_text)
    if not percents or mute is None:
        shown = _first_line(volume_text if not percents else mute_text)
        raise ProbeUnavailable("pactl printed no volume or mute state" + (f" ({shown})" if shown else ""))
    return Audio(volume=round(sum(percents) / len(percents)), muted=mute.group(1) == "yes")


def read_audio(backend: str, env: Mapping[str, str], runner: Callable[..., ProgramResult] = run_program) -> Audio:
    """The default sink's volume and mute now; ProbeUnavailable with the tool's reason otherwise."""

    def run(*argv: str) -> str:
        result = runner(list(argv), timeout=TIMEOUT, max_output=16384, env=dict(env))
        if not result.ok:
            raise ProbeUnavailable(f"{argv[0]} {argv[1]} {result.problem(16384)}")
        return result.text()

    if backend == "wpctl":
        return parse_wpctl(run("wpctl", "get-volume", WPCTL_SINK))
    return parse_pactl(run("pactl", "get-sink-volume", PACTL_SINK), run("pactl", "get-sink-mute", PACTL_SINK))


def _which(name: str) -> str | None:
    from pilot.probes._programs import resolve

    return resolve(name)[0]


def _native_socket(backend: str, environ: Mapping[str, str]) -> str | None:
    """Why the native socket is not used here (None: it is, or may be, for this backend)."""
    if backend not in ("auto", "pulse"):
        return f"backend {backend}"
    path, why = _pulse.socket_path(environ)
    if path is None:
        return why
    return None if os.path.exists(path) else f"no sound server socket at {path}"


def _available(ctx: ProbeContext, backend: str = "auto", every: Any = None, **_: Any) -> str | None:
    if backend not in PROBE_BACKENDS:
        return f"backend must be one of {', '.join(PROBE_BACKENDS)}"
    try:
        if every is not None:
            parse_duration(every)
    except ValueError as exc:
        return str(exc)
    native_why = _native_socket(backend, os.environ)
    if native_why is None or backend == "pulse":
        return native_why
    return choose_backend(backend, os.environ, _which)[1]


BACKEND_PARAM = prop(  # the actions' (pilot.actions.audio)
    "string",
    "Sound tool: auto (wpctl where PipeWire runs, else pactl), wpctl or pactl.",
    enum=list(BACKENDS),
    default="auto",
)

_PARAMS = params(
    {
        "backend": prop(
            "string",
            "Where the volume is read: auto (PulseAudio's native socket where it answers, served by PulseAudio "
            "and by PipeWire's pipewire-pulse, read in-process; else wpctl where PipeWire runs; else pactl), "
            "pulse (the native socket only), wpctl or pactl (run the tool).",
            enum=list(PROBE_BACKENDS),
            default="auto",
        ),
        "every": prop(
            "string",
            "How often the sound server is asked (at least 1s), when less often than the sensor is read; "
            "by default once per reading for wpctl and pactl (about 13 ms of CPU for wpctl each time), and "
            "only after a change announced on the native socket.",
            pattern=DURATION_PATTERN,
        ),
    },
    examples=[{}, {"backend": "pactl", "every": "10s"}, {"backend": "pulse"}],
)


def _native_audio(server: _pulse.Server) -> Audio:
    sink = server.sink()
    return Audio(volume=sink.percent, muted=sink.muted)


def _register(name: str, field: str, defaults: dict[str, Any], doc: str) -> None:
    def factory(
        ctx: ProbeContext,
        backend: str = "auto",
        every: str | float | None = None,
        *,
        runner: Callable[..., ProgramResult] = run_program,
        clock: Callable[[], float] = time.monotonic,
        worker: Any = None,
        environ: Mapping[str, str] | None = None,
        which: Callable[[str], str | None] = _which,
    ) -> Callable[[], Any]:
        if backend not in PROBE_BACKENDS:
            raise ProbeUnavailable(f"backend must be one of {', '.join(PROBE_BACKENDS)}")
        interval = None if every is None else every_seconds(every)
        env = os.environ if environ is None else environ
        variables = audio_env(env)
        stale_after = None if interval is None else 3 * interval + 2 * TIMEOUT
        server, native_why = None, None
        if backend in ("auto", "pulse"):
            server, native_why = _pulse.shared_server(variables, clock)
        if server is not None and backend == "auto":
            try:
                server.connect()
            except _pulse.Refused as exc:  # a definite no (access denied...): pactl, which reads the cookie, may pass
                server, native_why = None, str(exc)
            except ProbeUnavailable as exc:
                # nothing at the address (PipeWire without pipewire-pulse, no server): the tools. A socket that
                # did not answer just now (a server starting, a busy machine) stays chosen and is tried again
                # every RECONNECT_AFTER seconds, rather than forking a tool at every reading from then on
                if not _pulse.is_socket(server.path):
                    server, native_why = None, str(exc)
        if server is not None:
            shared = server
            raw = background_reader(
                f"audio pulse {server.path}",
                lambda: _native_audio(shared),
                every=interval if interval is not None else MAX_AGE,
                stale_after=stale_after,
                clock=clock,
                worker=worker,
                due=server.changed,
            )
        elif backend == "pulse":
            raise ProbeUnavailable(native_why or "no PulseAudio socket")
        else:
            chosen, why = choose_backend(backend, env, which)
            if chosen is None:
                why = why or "no sound tool"
                raise ProbeUnavailable(
                    why if native_why is None or why.startswith("no audio") else f"{native_why}; {why}"
                )
            tool = chosen
            raw = background_reader(
                f"audio {chosen} {variables.get('XDG_RUNTIME_DIR', '')}".rstrip(),
                lambda: read_audio(tool, variables, runner),
                every=interval,
                stale_after=stale_after,
                clock=clock,
                worker=worker,
            )

        def read() -> Any:
            audio = raw()
            return None if audio is None else getattr(audio, field)

        return read

    factory.__doc__ = doc
    factory.__name__ = name.replace(".", "_")
    PROBES.register(name, params=_PARAMS, defaults=defaults, available=_available)(factory)


_register(
    "audio.volume",
    "volume",
    {"unit": "%", "state_class": "measurement", "platform": "sensor", "icon": "mdi:volume-high", "precision": 0},
    """Volume of the default audio output in percent (above 100 when boosted).

    In-process over PulseAudio's native socket (PulseAudio, or PipeWire's pipewire-pulse) where it
    answers, read again only after the server announces a change; else `wpctl get-volume
    @DEFAULT_AUDIO_SINK@` on PipeWire, else `pactl get-sink-volume @DEFAULT_SINK@`. The mean of the
    channels, on Pilot's background thread. The agent must run in the user's session
    (XDG_RUNTIME_DIR) to reach the sound server.
    """,
)
_register(
    "audio.muted",
    "muted",
    {"platform": "binary_sensor", "icon": "mdi:volume-off"},
    """Whether the default audio output is muted (on: muted).

    Same reading as audio.volume: the sink's mute flag over the native socket, wpctl's `[MUTED]`,
    or `pactl get-sink-mute @DEFAULT_SINK@`.
    """,
)
