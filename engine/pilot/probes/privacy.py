"""privacy.camera_in_use / privacy.microphone_in_use: is some program holding a camera or a microphone open?

Linux shows every open file of a process as a link in /proc/PID/fd; a program that captures
video holds /dev/videoN open, one that records sound holds an ALSA capture device,
/dev/snd/pcmC<card>D<device>c (the trailing c; p is playback). So a scan of those links answers
without any library or daemon. It sees the processes the agent may look into: those of its own
user (a desktop agent: the user's browser and call apps), or all of them when it runs as root.
As a service account (the packaged `pilot` user) it could see nothing that matters, and says so.

The scan is bounded (MAX_PROCESSES process folders, MAX_LINKS links in all): a machine that
exceeds either gets no reading rather than a "no" that did not look everywhere. It stops at the
first match, and never reports which program or device: the sensor says only yes or no.
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Any

from pilot.params import params
from pilot.probes._common import Reader, reason_of
from pilot.probes._context import ProbeContext
from pilot.registry import PROBES

CAMERA = re.compile(r"/dev/video[0-9]{1,4}")
MICROPHONE = re.compile(r"/dev/snd/pcmC[0-9]{1,3}D[0-9]{1,3}c")
MAX_PROCESSES = 32768
MAX_LINKS = 262144
SYSTEM_UID_MAX = 999  # login.defs' SYS_UID_MAX on Debian, Ubuntu and Fedora: service accounts such as `pilot`


def device_in_use(
    proc_root: Path,
    device: re.Pattern[str],
    *,
    max_processes: int = MAX_PROCESSES,
    max_links: int = MAX_LINKS,
) -> bool | None:
    """True if an open file of some readable process fully matches `device`; False if none does;
    None if the scan reached a bound first (or /proc cannot be listed)."""
    try:
        with os.scandir(proc_root) as entries:
            pids = [e.name for e in entries if e.name.isdigit()]
    except OSError:
        return None
    if len(pids) > max_processes:
        return None
    links = 0
    for pid in pids:
        fd_dir = os.path.join(proc_root, pid, "fd")
        try:
            with os.scandir(fd_dir) as fds:
                for fd in fds:
                    links += 1
                    if links > max_links:
                        return None
                    try:
                        target = os.readlink(fd.path)
                    except OSError:  # closed since the listing
                        continue
                    if device.fullmatch(target):
                        return True
        except OSError:  # the process ended, or belongs to a user we may not look into
            continue
    return False


def _reason(ctx: ProbeContext, **_: Any) -> str | None:
    euid = os.geteuid() if hasattr(os, "geteuid") else 0
    if 0 < euid <= SYSTEM_UID_MAX:
        return (
            f"the agent runs as a system account (uid {euid}), which may look only into its own processes; "
            "run it as the desktop's user (or as root) to see which programs hold a camera or microphone"
        )

    def check() -> str | None:
        root = ctx.procfs_root
        if not (root / "self" / "fd").is_dir() and not any(p.name.isdigit() for p in root.iterdir()):
            return f"{root} is not a process filesystem (open files are listed there on Linux only)"
        return None

    if not ctx.procfs_root.is_dir():
        return f"{ctx.procfs_root} does not exist (open files are listed there on Linux only)"
    return reason_of(check)


def _reader(ctx: ProbeContext, device: re.Pattern[str]) -> Reader:
    root = ctx.procfs_root
    return lambda: device_in_use(root, device)


@PROBES.register(
    "privacy.camera_in_use",
    params=params({}),
    defaults={"platform": "binary_sensor", "icon": "mdi:webcam"},
    available=_reason,
)
def camera_in_use(ctx: ProbeContext) -> Reader:
    """Whether some program has a camera (/dev/video*) open."""
    return _reader(ctx, CAMERA)


@PROBES.register(
    "privacy.microphone_in_use",
    params=params({}),
    defaults={"platform": "binary_sensor", "icon": "mdi:microphone"},
    available=_reason,
)
def microphone_in_use(ctx: ProbeContext) -> Reader:
    """Whether some program has a microphone (an ALSA capture device) open."""
    return _reader(ctx, MICROPHONE)
