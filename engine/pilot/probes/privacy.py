"""privacy.camera_in_use / privacy.microphone_in_use: is some program using a camera or a microphone?

Linux shows every open file of a process as a link in /proc/PID/fd; a program that captures
video holds /dev/videoN open, one that records sound holds an ALSA capture device,
/dev/snd/pcmC<card>D<device>c (the trailing c; p is playback). So a scan of those links answers
without any library or daemon. It sees the processes the agent may look into: those of its own
user (a desktop agent: the user's browser and call apps), or all of them when it runs as root.
As a service account (the packaged `pilot` user) it could see nothing that matters, and says so.

The scan costs a readlink per open file, and a desktop holds 10,000 and more; so both probes
share ONE scan (a reading is reused for FRESH seconds: the two sensors, read in the same tick,
cost one scan) and it skips the agent itself. The kernel lets it into the fd folders of the
agent's own user only (all of them for root): the others fail at once, without a readlink, as
do kernel threads' folders, which hold no links. The camera is looked for only while sysfs
lists a video node (/sys/class/video4linux/videoN): a machine without a webcam pays nothing.
The microphone prefers ALSA's own account: /proc/asound/cardN/pcmDc/subS/status says
`state: RUNNING` while a capture substream runs (the kernel's
Documentation/sound/designs/procfile.rst), whatever program or user holds it, at a cost that
does not grow with open files; the fd scan is its fallback where /proc/asound is absent, and
even that is skipped while /dev/snd holds no capture node (pcmC<card>D<device>c): with none on
the machine no program can hold one, so "not in use" comes from one listing of /dev/snd.

A camera that is there is watched rather than polled: inotify reports every open and close of a
/dev/videoN node (and nodes added or removed in /dev), so a camera reading scans only when one of
those happened since the last reading, and at least every RESCAN_AFTER seconds; otherwise its last
answer stands. Where the watch cannot be set up (no inotify, no read access to the node), every
reading scans, as it did before.

The scan is bounded (MAX_PROCESSES process folders, MAX_LINKS links in all, MAX_SUBSTREAMS
status files): a machine that exceeds one gets no reading rather than a "no" that did not look
everywhere. It stops once it has its answers, and never reports which program or device: the
sensor says only yes or no.
"""

from __future__ import annotations

import os
import re
import threading
import time
from collections.abc import Callable
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
MAX_SUBSTREAMS = 4096
FRESH = 1.0  # seconds a shared scan answers for: the sensors of one tick, never the next tick's
SYSTEM_UID_MAX = 999  # login.defs' SYS_UID_MAX on Debian, Ubuntu and Fedora: service accounts such as `pilot`
CAPTURING = frozenset({"RUNNING", "DRAINING", "XRUN"})  # XRUN: an overrun stopped a running capture for now
RESCAN_AFTER = 3600.0  # a watched camera is scanned at least this often, events or not (opens and closes suffice)
# inotify(7): the events a watch asks for, and inotify_init1's flags (O_NONBLOCK, O_CLOEXEC on Linux)
IN_CLOSE_WRITE, IN_CLOSE_NOWRITE, IN_OPEN, IN_CREATE, IN_DELETE = 0x08, 0x10, 0x20, 0x100, 0x200
IN_NONBLOCK, IN_CLOEXEC = 0o4000, 0o2000000
EVENT_READS = 16  # reads of at most 64 KiB per look: a flood is a change all the same, never a long loop
_VIDEO_NODE = re.compile(r"video[0-9]{1,4}")
_CAPTURE_NODE = re.compile(r"pcmC[0-9]{1,3}D[0-9]{1,3}c")
_SUBSTREAM = re.compile(r"card[0-9]{1,3}/pcm[0-9]{1,3}c/sub[0-9]{1,4}")
_STATE = re.compile(rb"^state:\s*([A-Z_]{1,20})\s*$", re.MULTILINE)


def _euid() -> int:
    return os.geteuid() if hasattr(os, "geteuid") else 0


def devices_in_use(
    proc_root: Path,
    devices: tuple[re.Pattern[str], ...],
    *,
    skip: frozenset[str] = frozenset(),
    max_processes: int = MAX_PROCESSES,
    max_links: int = MAX_LINKS,
) -> tuple[bool | None, ...]:
    """For each pattern: True if an open file of some readable process fully matches it, False if
    none does; all None if the scan reached a bound first (or /proc cannot be listed). `skip`:
    process IDs not to look into."""
    unknown: tuple[bool | None, ...] = (None,) * len(devices)
    try:
        with os.scandir(proc_root) as entries:
            pids = [e for e in entries if e.name.isdigit() and e.name not in skip]
    except OSError:
        return unknown
    if len(pids) > max_processes:
        return unknown
    found = [False] * len(devices)
    links = 0
    for entry in pids:
        try:
            with os.scandir(os.path.join(entry.path, "fd")) as fds:
                for fd in fds:
                    links += 1
                    if links > max_links:
                        return unknown
                    try:
                        target = os.readlink(fd.path)
                    except OSError:  # closed since the listing
                        continue
                    for i, device in enumerate(devices):
                        if not found[i] and device.fullmatch(target):
                            found[i] = True
                            if all(found):
                                return tuple(found)
        except OSError:  # the process ended, or belongs to a user we may not look into
            continue
    return tuple(found)


def device_in_use(
    proc_root: Path,
    device: re.Pattern[str],
    *,
    max_processes: int = MAX_PROCESSES,
    max_links: int = MAX_LINKS,
) -> bool | None:
    """One pattern's answer from a scan of every readable process (the agent's own included)."""
    return devices_in_use(proc_root, (device,), max_processes=max_processes, max_links=max_links)[0]


def capture_running(proc_root: Path, *, max_substreams: int = MAX_SUBSTREAMS) -> bool | None:
    """True if some ALSA capture substream runs, False if none does; None where /proc/asound is
    absent (no ALSA: the caller scans open files instead) or has more substreams than the bound."""
    asound = proc_root / "asound"
    try:
        cards = [c for c in os.scandir(asound) if c.name.startswith("card") and c.name[4:].isdigit()]
    except OSError:
        return None
    seen = 0
    for card in cards:
        try:
            pcms = [p for p in os.scandir(card.path) if p.name.startswith("pcm") and p.name.endswith("c")]
        except OSError:  # the card was unplugged since the listing
            continue
        for pcm in pcms:
            try:
                subs = [s for s in os.scandir(pcm.path) if s.name.startswith("sub") and s.name[3:].isdigit()]
            except OSError:
                continue
            for sub in subs:
                seen += 1
                if seen > max_substreams:
                    return None
                if not _SUBSTREAM.fullmatch(f"{card.name}/{pcm.name}/{sub.name}"):
                    continue
                try:
                    with open(os.path.join(sub.path, "status"), "rb") as f:
                        text = f.read(4096)  # "closed\n" or a dozen short lines
                except OSError:
                    continue
                state = _STATE.search(text)
                if state and state.group(1).decode() in CAPTURING:
                    return True
    return False


def no_video_device(sysfs_root: Path) -> bool:
    """True when sysfs lists no V4L2 video node (/sys/class/video4linux/videoN), so no program can
    hold one open: no scan needed. False when there is one, or when `sysfs_root` is no sysfs."""
    if not (sysfs_root / "class").is_dir():
        return False
    try:
        names = os.listdir(sysfs_root / "class" / "video4linux")
    except FileNotFoundError:  # videodev not loaded: no V4L2 device at all
        return True
    except OSError:
        return False
    return not any(_VIDEO_NODE.fullmatch(name) for name in names)


def no_capture_device(dev_root: Path) -> bool:
    """True when `dev_root`/snd holds no ALSA capture node (pcmC<card>D<device>c), so no program can
    hold one open: no scan needed. False when there is one, or when `dev_root` is no /dev at all
    (the gate cannot tell, the scan decides)."""
    if not dev_root.is_dir():
        return False
    try:
        names = os.listdir(dev_root / "snd")
    except (FileNotFoundError, NotADirectoryError):  # no sound driver loaded: no ALSA device at all
        return True
    except OSError:
        return False
    return not any(_CAPTURE_NODE.fullmatch(name) for name in names)


class SharedScan:
    """One fd scan of a /proc serving every probe that asks within FRESH seconds of it."""

    def __init__(self, proc_root: Path, clock: Callable[[], float] = time.monotonic) -> None:
        self.proc_root = proc_root
        self.clock = clock
        self.scans = 0
        self._lock = threading.Lock()
        self._wanted: dict[str, re.Pattern[str]] = {}
        self._at: float | None = None
        self._answers: dict[str, bool | None] = {}

    def want(self, name: str, device: re.Pattern[str]) -> None:
        """Look for `device` (under `name`) from the next scan on."""
        with self._lock:
            if name not in self._wanted:
                self._wanted[name] = device
                self._at = None

    def read(self, name: str, since: float | None = None) -> bool | None:
        """The answer for `name` from a scan of this tick; `since`: from a scan made at or after it."""
        with self._lock:
            now = self.clock()
            stale = self._at is None or not 0 <= now - self._at < FRESH or (since is not None and self._at < since)
            if stale or name not in self._answers:
                names = tuple(self._wanted)
                found = devices_in_use(
                    self.proc_root, tuple(self._wanted[n] for n in names), skip=frozenset({str(os.getpid())})
                )
                self._answers = dict(zip(names, found, strict=True))
                self._at = now
                self.scans += 1
            return self._answers.get(name)


class VideoWatch:
    """inotify on the /dev/videoN nodes (opened, closed) and on /dev (nodes added, removed): says whether
    anything happened since the last look, without blocking. A watch that cannot be set up (no inotify,
    no read access to a node) says "something happened" at every look, so the caller scans as before."""

    def __init__(self, dev_root: Path) -> None:
        self.dev_root = dev_root
        self.fd: int | None = None
        self.why: str | None = None
        try:
            import ctypes

            libc = ctypes.CDLL(None, use_errno=True)
            self._add_watch = libc.inotify_add_watch
            fd = libc.inotify_init1(IN_NONBLOCK | IN_CLOEXEC)
            if fd < 0:
                raise OSError(ctypes.get_errno(), "inotify_init1")
            self.fd = fd
            self._errno = ctypes.get_errno
            self._watch(dev_root, IN_CREATE | IN_DELETE)
            self._watch_nodes()
        except (OSError, AttributeError) as exc:  # AttributeError: a libc without inotify
            self.why = getattr(exc, "strerror", None) or type(exc).__name__
            self.close()

    def _watch(self, path: Path, mask: int) -> None:
        if self._add_watch(self.fd, os.fsencode(path), mask) < 0:
            raise OSError(self._errno(), f"inotify_add_watch {path}")

    def _watch_nodes(self) -> None:
        """Watch every video node now in /dev (again: a node already watched keeps its watch)."""
        for name in os.listdir(self.dev_root):
            if _VIDEO_NODE.fullmatch(name):
                self._watch(self.dev_root / name, IN_OPEN | IN_CLOSE_WRITE | IN_CLOSE_NOWRITE)

    def changed(self) -> bool:
        if self.fd is None:
            return True
        seen = False
        for _ in range(EVENT_READS):
            try:
                data = os.read(self.fd, 65536)
            except BlockingIOError:
                break
            except OSError:
                self.close()
                return True
            if not data:
                break
            seen = True
        if seen:
            try:
                self._watch_nodes()  # a node plugged in since is watched from now on
            except OSError:
                self.close()
        return seen

    def close(self) -> None:
        if self.fd is not None:
            os.close(self.fd)
            self.fd = None


class CameraReader:
    """privacy.camera_in_use's reader: nothing while sysfs lists no video node; else the shared scan, run
    again only after the VideoWatch saw an open, a close or a node come or go (or after RESCAN_AFTER)."""

    def __init__(self, scan: SharedScan, sysfs_root: Path, dev_root: Path) -> None:
        self.scan, self.sysfs_root, self.dev_root = scan, sysfs_root, dev_root
        self.watch: VideoWatch | None = None
        self.answer: bool | None = None
        self.at: float | None = None

    def __call__(self) -> bool | None:
        if no_video_device(self.sysfs_root):
            if self.watch is not None:
                self.watch.close()
                self.watch, self.answer = None, None
            return False
        if self.watch is None:
            self.watch = VideoWatch(self.dev_root)
        now = self.scan.clock()
        if self.watch.changed():  # drained before the scan: an open during the scan is the next look's
            self.answer, self.at = self.scan.read("camera", since=now), now
        elif self.answer is None or self.at is None or not 0 <= now - self.at < RESCAN_AFTER:
            self.answer, self.at = self.scan.read("camera"), now
        return self.answer


SCAN_KEY = "privacy.scan"


def shared_scan(ctx: ProbeContext) -> SharedScan:
    """The context's one SharedScan of its /proc (the agent has one context: one scan for both probes)."""
    scan: SharedScan = ctx.shared(SCAN_KEY, lambda: SharedScan(ctx.procfs_root))
    return scan


def _reason(ctx: ProbeContext, **_: Any) -> str | None:
    euid = _euid()
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


@PROBES.register(
    "privacy.camera_in_use",
    params=params({}),
    defaults={"platform": "binary_sensor", "icon": "mdi:webcam"},
    available=_reason,
)
def camera_in_use(ctx: ProbeContext) -> Reader:
    """Whether some program has a camera (/dev/video*) open."""
    scan = shared_scan(ctx)
    scan.want("camera", CAMERA)
    return CameraReader(scan, ctx.sysfs_root, ctx.dev_root)


@PROBES.register(
    "privacy.microphone_in_use",
    params=params({}),
    defaults={"platform": "binary_sensor", "icon": "mdi:microphone"},
    available=_reason,
)
def microphone_in_use(ctx: ProbeContext) -> Reader:
    """Whether some program records from a microphone (an ALSA capture stream runs, or a capture device is open).

    ALSA's capture state in /proc/asound where it exists; the open-file scan, shared with the
    camera, where it does not, and only while /dev/snd holds a capture node.
    """
    root, dev = ctx.procfs_root, ctx.dev_root
    if (root / "asound").is_dir():
        return lambda: capture_running(root)
    scan = shared_scan(ctx)
    if not no_capture_device(dev):
        scan.want("microphone", MICROPHONE)  # one scan a tick for camera and microphone

    def read() -> bool | None:
        if no_capture_device(dev):
            return False
        scan.want("microphone", MICROPHONE)  # a capture node appeared since: scan for it from now on
        return scan.read("microphone")

    return read
