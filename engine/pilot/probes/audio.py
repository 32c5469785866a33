"""audio.volume and audio.muted: the default output's volume and mute, from PipeWire or PulseAudio.

PipeWire with WirePlumber: `wpctl get-volume @DEFAULT_AUDIO_SINK@` prints `Volume: 0.40` (and
` [MUTED]`), both readings in one run. Otherwise PulseAudio's `pactl get-sink-volume` and
`get-sink-mute @DEFAULT_SINK@` (pactl also talks to PipeWire's pipewire-pulse). Both reach the
sound server of the user whose session the agent runs in, through XDG_RUNTIME_DIR (and HOME for
PulseAudio's cookie): the agent must run as that user (a user service), not as the system
service. One run on the background worker serves both probes.

The parsing and the backend choice live here; actions/audio.py reuses them to set the volume
and to publish the state back.
"""

from __future__ import annotations

import os
import re
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from pilot.params import params, prop
from pilot.probes._background import background_reader, every_seconds
from pilot.probes._context import ProbeContext, ProbeUnavailable
from pilot.probes._programs import ProgramResult, reap, run_program, spawn
from pilot.registry import PROBES
from pilot.units import DURATION_PATTERN, parse_duration

BACKENDS = ("auto", "wpctl", "pactl")
# What reaches the audio tools from the agent's environment: where the sound server's socket and
# cookie are, nothing else.
AUDIO_ENV = ("XDG_RUNTIME_DIR", "HOME", "PIPEWIRE_REMOTE", "PULSE_SERVER", "PULSE_COOKIE")
WPCTL_SINK = "@DEFAULT_AUDIO_SINK@"
PACTL_SINK = "@DEFAULT_SINK@"
TIMEOUT = 3.0
MAX_AGE = 600.0  # with a change watcher, the volume is read again at least this often all the same
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


class ChangeWatch:
    """`pactl subscribe`, kept running: says whether the sound server announced a change to a sink or to
    the server (the default sink) since the last look, so the volume is read again only then.

    pactl speaks to PulseAudio and to PipeWire's pipewire-pulse alike. Our own reads only make
    `client` events, which are ignored. Where the watcher cannot run, or dies, every look says
    "changed" (the sensor then reads at its own pace) and a new watcher is tried at most every
    RESTART_AFTER seconds. `changed()` never blocks: it drains what the pipe holds.
    """

    RESTART_AFTER = 600.0

    def __init__(self, env: Mapping[str, str], clock: Callable[[], float] = time.monotonic) -> None:
        self.env = dict(env)
        self.clock = clock
        self.proc: Any = None
        self.tried_at: float | None = None
        self.partial = b""
        self.lock = threading.Lock()

    def changed(self) -> bool:
        with self.lock:
            if self.proc is None and not self._start():
                return True
            try:
                data = self.proc.stdout.read(65536) or b""  # non-blocking: None when nothing is waiting
                eof = data == b"" and self.proc.poll() is not None
            except (OSError, ValueError):
                data, eof = b"", True
            if eof:
                self.stop()
                return True
            lines = (self.partial + data).split(b"\n")
            self.partial = lines.pop()[-256:]
            return any(b" on sink #" in line or b" on server" in line for line in lines)

    def _start(self) -> bool:
        now = self.clock()
        if self.tried_at is not None and now - self.tried_at < self.RESTART_AFTER:
            return False
        self.tried_at = now
        proc = spawn(["pactl", "subscribe"], self.env)
        if isinstance(proc, str):
            return False
        self.proc = proc
        return True

    def stop(self) -> None:
        if self.proc is not None:
            reap(self.proc)
            self.proc = None


_watches: dict[str, ChangeWatch] = {}
_watches_lock = threading.Lock()


def change_watch(key: str, env: Mapping[str, str], clock: Callable[[], float] = time.monotonic) -> ChangeWatch:
    """One watcher per sound server, shared by its probes."""
    with _watches_lock:
        if key not in _watches:
            _watches[key] = ChangeWatch(env, clock)
        return _watches[key]


def _which(name: str) -> str | None:
    from pilot.probes._programs import resolve

    return resolve(name)[0]


def _available(ctx: ProbeContext, backend: str = "auto", every: Any = None, **_: Any) -> str | None:
    if backend not in BACKENDS:
        return f"backend must be one of {', '.join(BACKENDS)}"
    try:
        if every is not None:
            parse_duration(every)
    except ValueError as exc:
        return str(exc)
    return choose_backend(backend, os.environ, _which)[1]


BACKEND_PARAM = prop(  # the probes' and the actions' (pilot.actions.audio)
    "string",
    "Sound tool: auto (wpctl where PipeWire runs, else pactl), wpctl or pactl.",
    enum=list(BACKENDS),
    default="auto",
)

_PARAMS = params(
    {
        "backend": BACKEND_PARAM,
        "every": prop(
            "string",
            "How often the sound server is asked (at least 1s), when less often than the sensor is read; "
            "by default once per reading (about 13 ms of CPU for wpctl each time).",
            pattern=DURATION_PATTERN,
        ),
    },
    examples=[{}, {"backend": "pactl", "every": "10s"}],
)


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
        watch_changes: bool = True,
    ) -> Callable[[], Any]:
        if backend not in BACKENDS:
            raise ProbeUnavailable(f"backend must be one of {', '.join(BACKENDS)}")
        interval = None if every is None else every_seconds(every)
        env = os.environ if environ is None else environ
        chosen, why = choose_backend(backend, env, which)
        if chosen is None:
            raise ProbeUnavailable(why or "no sound tool")
        variables = audio_env(env)
        key = f"audio {chosen} {variables.get('XDG_RUNTIME_DIR', '')}".rstrip()
        watch = change_watch(key, variables, clock) if which("pactl") and watch_changes else None
        if watch is not None:
            watch.changed()  # subscribed before the first read, so no change after it goes unseen
        raw = background_reader(
            key,
            lambda: read_audio(chosen, variables, runner),
            every=interval if watch is None or interval is not None else MAX_AGE,
            stale_after=None if interval is None else 3 * interval + 2 * TIMEOUT,
            clock=clock,
            worker=worker,
            due=watch.changed if watch is not None else None,
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

    `wpctl get-volume @DEFAULT_AUDIO_SINK@` on PipeWire, else `pactl get-sink-volume
    @DEFAULT_SINK@` (the mean of the channels), on Pilot's background thread. The agent must run
    in the user's session (XDG_RUNTIME_DIR) to reach the sound server.
    """,
)
_register(
    "audio.muted",
    "muted",
    {"platform": "binary_sensor", "icon": "mdi:volume-off"},
    """Whether the default audio output is muted (on: muted).

    Same run as audio.volume: wpctl's `[MUTED]`, or `pactl get-sink-mute @DEFAULT_SINK@`.
    """,
)
