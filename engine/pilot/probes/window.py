"""desktop.active_window: the title of the window that has the keyboard focus (X11).

Read with two runs of xprop, no shell: `xprop -root _NET_ACTIVE_WINDOW` gives the focused
window's id (EWMH, set by every current X11 window manager), `xprop -id ID _NET_WM_NAME WM_NAME`
its title. A title is whatever a program or a web page chose, so it is decoded from xprop's
quoting, every control, invisible and bidi character is written as an escape, and it is cut to
MAX_TITLE characters (Home Assistant keeps at most 255 in a state).

Off by default and in no pack: a window title can hold a mail subject or a private page's name,
and it leaves the machine in every reading. On Wayland the focused window is not visible to
other programs, so the probe says so rather than report XWayland windows only.
"""

from __future__ import annotations

import os
import re
import time
from collections.abc import Callable, Mapping
from typing import Any

from pilot.escaping import escape
from pilot.params import params, prop
from pilot.probes._background import background_reader, every_seconds
from pilot.probes._context import ProbeContext
from pilot.probes._programs import ProgramResult, resolve, run_program
from pilot.registry import PROBES

MAX_TITLE = 255
MAX_OUTPUT = 16384  # xprop's answer for one property of one window; a title is short
TIMEOUT = 2.0
_ACTIVE = re.compile(r"^_NET_ACTIVE_WINDOW\(WINDOW\): window id # (0x[0-9a-fA-F]{1,8})[ \t]*$", re.M)
_TITLE = re.compile(r'(_NET_WM_NAME|WM_NAME)\((?:UTF8_STRING|STRING|COMPOUND_TEXT)\) = "(.*)"')
_ESCAPE = re.compile(r"\\([0-7]{1,3}|.)", re.S)


class WindowError(Exception):
    """xprop could not tell; the message says why in one line."""


def _x_env(environ: Mapping[str, str]) -> dict[str, str]:
    return {k: environ[k] for k in ("DISPLAY", "XAUTHORITY") if environ.get(k)}


def active_window_id(text: str) -> str | None:
    """The window id in `xprop -root _NET_ACTIVE_WINDOW` output; None when no window has the focus."""
    match = _ACTIVE.search(text)
    if match is None:
        raise WindowError("the window manager does not publish _NET_ACTIVE_WINDOW")
    return None if int(match.group(1), 16) == 0 else match.group(1).lower()


def _unquote(body: str) -> str:
    """xprop's quoting: \\" and \\\\ for themselves, \\n for a line break, \\ooo for a byte in octal."""
    raw = bytearray()
    pos = 0
    for match in _ESCAPE.finditer(body):
        raw += body[pos : match.start()].encode("utf-8", "surrogateescape")
        code = match.group(1)
        if code.isdigit():
            raw.append(int(code, 8) & 0xFF)
        else:
            raw += {"n": b"\n", "t": b"\t"}.get(code, code.encode("utf-8", "surrogateescape"))
        pos = match.end()
    raw += body[pos:].encode("utf-8", "surrogateescape")
    return raw.decode("utf-8", errors="replace")


def window_title(text: str) -> str | None:
    """The title in `xprop -id ID _NET_WM_NAME WM_NAME` output, preferring _NET_WM_NAME (UTF-8), made safe."""
    found = {m.group(1): m.group(2) for m in map(_TITLE.match, text.splitlines()) if m}
    body = found.get("_NET_WM_NAME", found.get("WM_NAME"))
    if body is None:
        return None
    return safe_title(_unquote(body))


def safe_title(title: str) -> str:
    """One line of at most MAX_TITLE characters, with anything that could hide or fake text escaped."""
    shown = escape(title)
    return shown if len(shown) <= MAX_TITLE else shown[: MAX_TITLE - 1] + "…"


def read_active_title(
    environ: Mapping[str, str], runner: Callable[..., ProgramResult] = run_program, xprop: str = "xprop"
) -> str:
    """The focused window's title ('' when no window has the focus); WindowError when xprop cannot tell."""
    env = _x_env(environ)

    def run(*args: str) -> str:
        result = runner([xprop, *args], timeout=TIMEOUT, max_output=MAX_OUTPUT, env=env)
        if not result.ok:
            raise WindowError(f"xprop {result.problem(MAX_OUTPUT)}")
        return result.text()

    window = active_window_id(run("-root", "_NET_ACTIVE_WINDOW"))
    if window is None:
        return ""
    return window_title(run("-id", window, "_NET_WM_NAME", "WM_NAME")) or ""


def _available(ctx: ProbeContext, **_: Any) -> str | None:
    environ = os.environ
    if not environ.get("DISPLAY"):
        if environ.get("WAYLAND_DISPLAY"):
            return "a Wayland session does not show other programs which window has the focus"
        return "no X11 session here (DISPLAY is not set)"
    if resolve("xprop")[0] is None:
        return "xprop is not installed (x11-utils / xorg-xprop)"
    return None


@PROBES.register(
    "desktop.active_window",
    params=params(
        {"every": prop(["string", "number"], "How often to look (a duration such as 10s); at least 1s.", default="10s")}
    ),
    defaults={"platform": "sensor", "icon": "mdi:application"},
    available=_available,
)
def active_window(
    ctx: ProbeContext,
    every: str | float = "10s",
    *,
    environ: Mapping[str, str] | None = None,
    runner: Callable[..., ProgramResult] = run_program,
    clock: Callable[[], float] = time.monotonic,
    worker: Any = None,
) -> Callable[[], str | None]:
    """Title of the focused window (X11), escaped and cut to 255 characters.

    Not in any pack: a window title can be private (a mail subject, a page name) and is sent
    with every reading. Read on Pilot's one background thread with xprop; '' when no window
    has the focus.
    """
    interval = every_seconds(every)
    env = dict(os.environ if environ is None else environ)
    return background_reader(
        f"desktop.active_window {env.get('DISPLAY', '')}",
        lambda: read_active_title(env, runner),
        every=interval,
        stale_after=3 * interval + 10,
        clock=clock,
        worker=worker,
    )
