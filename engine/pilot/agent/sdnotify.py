"""systemd's notify protocol (sd_notify(3)) without a dependency: one datagram per call.

`notify("READY=1")` tells systemd a `Type=notify` service has started, `WATCHDOG=1`
pings the watchdog, `STOPPING=1` and `RELOADING=1` report the way out and reloads,
`STATUS=...` is the line `systemctl status` shows. Outside systemd (no
$NOTIFY_SOCKET) every call is a cheap no-op that returns False, so the agent calls
these unconditionally. A failure to send is never fatal: it is logged once at debug.
"""

from __future__ import annotations

import logging
import os
import socket
import time

log = logging.getLogger("pilot.sdnotify")


def _address(value: str) -> str | bytes:
    if value.startswith("@"):  # Linux abstract namespace: a leading NUL instead of '@'
        return b"\0" + value[1:].encode()
    return value


def notify(state: str, environ: dict[str, str] | None = None) -> bool:
    """Send `state` (one or more `KEY=VALUE` lines) to $NOTIFY_SOCKET; True when it was sent."""
    env = os.environ if environ is None else environ
    target = env.get("NOTIFY_SOCKET")
    if not target or not hasattr(socket, "AF_UNIX"):
        return False
    if not target.startswith(("/", "@")):
        log.debug("ignoring NOTIFY_SOCKET %r: not a path or an abstract socket name", target)
        return False
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | getattr(socket, "SOCK_CLOEXEC", 0)) as sock:
            sock.sendto(state.encode(), _address(target))
        return True
    except OSError as exc:
        log.debug("sd_notify %r to %s failed: %s", state.split("\n", 1)[0], target, exc)
        return False


def watchdog_interval(environ: dict[str, str] | None = None) -> float | None:
    """Seconds between WATCHDOG=1 pings (half of WatchdogSec), or None when no watchdog is armed for us."""
    env = os.environ if environ is None else environ
    usec = env.get("WATCHDOG_USEC")
    if not usec:
        return None
    pid = env.get("WATCHDOG_PID")
    if pid and pid.strip() != str(os.getpid()):
        return None  # meant for another process (we were started by one that had it)
    try:
        value = int(usec)
    except ValueError:
        return None
    return value / 2_000_000 if value > 0 else None


def ready(status: str | None = None) -> bool:
    return notify("READY=1" + (f"\nSTATUS={status}" if status else ""))


def stopping() -> bool:
    return notify("STOPPING=1")


def reloading() -> bool:
    # systemd 253+ wants the monotonic time with RELOADING=1 (Type=notify-reload); older ones ignore it
    return notify(f"RELOADING=1\nMONOTONIC_USEC={time.monotonic_ns() // 1000}")


def watchdog() -> bool:
    return notify("WATCHDOG=1")


def status(text: str) -> bool:
    return notify(f"STATUS={text}")
