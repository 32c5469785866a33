"""privacy.camera_in_use / privacy.microphone_in_use on recorded /proc trees (tests/fixtures/proc/README.md),
ALSA's capture state under /proc/asound, the one scan both probes share (an injected clock), and the
real /proc for a file this test or its child holds open (matched through an injected device pattern)."""

from __future__ import annotations

import os
import re
import subprocess
from pathlib import Path

import pytest

from pilot.probes import ProbeContext, privacy
from pilot.probes.privacy import CAMERA, FRESH, MICROPHONE, SharedScan, capture_running, device_in_use
from pilot.registry import PROBES
from tests.support.probes import REPO

PROC = REPO / "tests" / "fixtures" / "proc"
DEV = REPO / "tests" / "fixtures" / "dev"  # /dev/snd trees (tests/fixtures/dev/README.md)


@pytest.fixture(autouse=True)
def _desktop_user(monkeypatch):
    """These tests stand for an agent run by a desktop user, whoever runs them (root in CI)."""
    monkeypatch.setattr(os, "geteuid", lambda: 1000)


def _read(name: str, tree: str) -> bool | None:
    # no class/ there: the camera scans; /dev/snd lists the trees' capture nodes: the microphone scans
    ctx = ProbeContext(procfs_root=PROC / tree, sysfs_root=PROC / tree, dev_root=DEV / "sound")
    entry = PROBES.get(name)
    assert entry.available(ctx) is None
    return entry.factory(ctx)()


@pytest.mark.parametrize(
    ("tree", "camera", "microphone"),
    [("idle", False, False), ("call", True, True), ("camera-only", True, False), ("microphone-only", False, True)],
)
def test_recorded_trees(tree: str, camera: bool, microphone: bool) -> None:
    assert _read("privacy.camera_in_use", tree) is camera
    assert _read("privacy.microphone_in_use", tree) is microphone


@pytest.mark.parametrize(
    ("target", "camera", "microphone"),
    [
        ("/dev/video0", True, False),
        ("/dev/video12", True, False),
        ("/dev/snd/pcmC0D0c", False, True),
        ("/dev/snd/pcmC2D11c", False, True),
        ("/dev/snd/pcmC0D0p", False, False),  # playback
        ("/dev/snd/controlC0", False, False),
        ("/dev/video0 (deleted)", False, False),  # unplugged while open: nothing is capturing
        ("/home/alice/dev/video0", False, False),
        ("/dev/video", False, False),
        ("/dev/videoX", False, False),
        ("/dev/video0\n", False, False),
        ("/dev/snd/pcmC0D0cx", False, False),
    ],
)
def test_which_link_targets_count(target: str, camera: bool, microphone: bool) -> None:
    assert bool(CAMERA.fullmatch(target)) is camera
    assert bool(MICROPHONE.fullmatch(target)) is microphone


def test_the_real_proc_for_a_file_this_process_holds_open(tmp_path: Path) -> None:
    fake_device = tmp_path / "video7"
    fake_device.write_bytes(b"")
    pattern = re.compile(re.escape(str(fake_device)))
    with open(fake_device, "rb"):
        assert device_in_use(Path("/proc"), pattern) is True
    assert device_in_use(Path("/proc"), pattern) is False  # closed: the same scan now finds nothing


def test_bounds_give_no_reading_rather_than_a_no_that_did_not_look_everywhere() -> None:
    root = PROC / "call"
    assert device_in_use(root, CAMERA) is True
    pids = sum(1 for p in root.iterdir() if p.name.isdigit())
    assert device_in_use(root, re.compile("nothing"), max_processes=pids) is False
    assert device_in_use(root, re.compile("nothing"), max_processes=pids - 1) is None
    links = sum(len(os.listdir(p / "fd")) for p in root.iterdir() if p.name.isdigit())
    assert device_in_use(root, re.compile("nothing"), max_links=links) is False
    assert device_in_use(root, re.compile("nothing"), max_links=links - 1) is None


def test_unreadable_and_vanishing_processes_are_skipped(tmp_path: Path) -> None:
    root = tmp_path / "proc"
    (root / "10").mkdir(parents=True)  # a process without an fd folder (ended, or not ours)
    (root / "11" / "fd").mkdir(parents=True)
    (root / "11" / "fd" / "3").write_text("not a link")  # readlink fails: skipped
    (root / "12" / "fd").mkdir(parents=True)
    (root / "12" / "fd" / "4").symlink_to("/dev/video3")
    assert device_in_use(root, CAMERA) is True
    (root / "12" / "fd" / "4").unlink()
    assert device_in_use(root, CAMERA) is False


def test_without_a_process_filesystem_it_says_why(tmp_path: Path) -> None:
    entry = PROBES.get("privacy.camera_in_use")
    missing = ProbeContext(procfs_root=tmp_path / "nowhere")
    assert (
        entry.available(missing) == f"{tmp_path / 'nowhere'} does not exist (open files are listed there on Linux only)"
    )
    (tmp_path / "empty").mkdir()
    empty = ProbeContext(procfs_root=tmp_path / "empty")
    assert entry.available(empty) == (
        f"{tmp_path / 'empty'} is not a process filesystem (open files are listed there on Linux only)"
    )
    assert device_in_use(tmp_path / "nowhere", CAMERA) is None


def test_this_host_has_a_real_proc() -> None:
    ctx = ProbeContext()
    for name in ("privacy.camera_in_use", "privacy.microphone_in_use"):
        assert PROBES.get(name).available(ctx) is None
        assert PROBES.get(name).factory(ctx)() in (True, False)


@pytest.mark.parametrize("uid", [1, 999])
def test_a_service_account_is_told_it_cannot_see_the_desktops_programs(monkeypatch, uid: int) -> None:
    monkeypatch.setattr(os, "geteuid", lambda: uid)
    reason = PROBES.get("privacy.microphone_in_use").available(ProbeContext(procfs_root=PROC / "call"))
    assert reason.startswith(f"the agent runs as a system account (uid {uid}), which may look only into its own")


@pytest.mark.parametrize("uid", [0, 1000, 60000])
def test_root_and_people_may_look(monkeypatch, uid: int) -> None:
    monkeypatch.setattr(os, "geteuid", lambda: uid)
    assert PROBES.get("privacy.camera_in_use").available(ProbeContext(procfs_root=PROC / "call")) is None


# ---------------------------------------------------------------- ALSA capture state (/proc/asound)


@pytest.mark.parametrize(("tree", "microphone"), [("alsa-recording", True), ("alsa-prepared", False)])
def test_the_microphone_reads_alsas_capture_state_where_proc_asound_exists(tree: str, microphone: bool) -> None:
    root = PROC / tree
    assert capture_running(root) is microphone
    assert _read("privacy.microphone_in_use", tree) is microphone
    # alsa-prepared: the capture device is open (the fd scan says so), but nothing records
    assert device_in_use(root, MICROPHONE) is True
    assert _read("privacy.camera_in_use", tree) is False


def _substream(root: Path, status: bytes, card: str = "card0", pcm: str = "pcm0c", sub: str = "sub0") -> None:
    folder = root / "asound" / card / pcm / sub
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "status").write_bytes(status)


@pytest.mark.parametrize(
    ("status", "running"),
    [
        (b"state: RUNNING\nowner_pid   : 812\n", True),
        (b"state: XRUN\nowner_pid   : 812\n", True),  # an overrun in the middle of a capture
        (b"state: DRAINING\n", True),
        (b"closed\n", False),
        (b"state: OPEN\n", False),
        (b"state: SETUP\n", False),
        (b"state: PREPARED\n", False),
        (b"state: PAUSED\n", False),
        (b"state: SUSPENDED\n", False),
        (b"state: DISCONNECTED\n", False),
        (b"error -19\n", False),
        (b"", False),
        (b"state: RUNNINGX\n", False),
        (b"xstate: RUNNING\n", False),
        (b"state: \xffRUNNING\n", False),
        (b"\x00" * 8192 + b"\nstate: RUNNING\n", False),  # past the 4 KiB the kernel's file ever holds
    ],
)
def test_which_capture_states_count_as_recording(tmp_path: Path, status: bytes, running: bool) -> None:
    _substream(tmp_path, status)
    assert capture_running(tmp_path) is running


def test_playback_substreams_and_odd_names_are_not_microphones(tmp_path: Path) -> None:
    running = b"state: RUNNING\n"
    _substream(tmp_path, running, pcm="pcm0p")  # playback
    _substream(tmp_path, running, card="cardX", pcm="pcm0c")
    _substream(tmp_path, running, card="card0", pcm="pcmXc")
    _substream(tmp_path, running, card="card0", pcm="pcm1c", sub="subX")
    (tmp_path / "asound" / "card0" / "pcm2c").mkdir(parents=True)
    (tmp_path / "asound" / "card0" / "pcm2c" / "sub0").write_text("a file where a folder was")
    assert capture_running(tmp_path) is False
    _substream(tmp_path, running, card="card3", pcm="pcm12c", sub="sub7")
    assert capture_running(tmp_path) is True


def test_no_proc_asound_means_no_alsa_answer_and_the_fd_scan_decides(tmp_path: Path) -> None:
    assert capture_running(tmp_path) is None
    assert capture_running(PROC / "microphone-only") is None
    assert _read("privacy.microphone_in_use", "microphone-only") is True


def test_the_substream_bound_gives_no_reading(tmp_path: Path) -> None:
    for n in range(3):
        _substream(tmp_path, b"closed\n", sub=f"sub{n}")
    assert capture_running(tmp_path, max_substreams=3) is False
    assert capture_running(tmp_path, max_substreams=2) is None


# ---------------------------------------------------------------- one scan for both probes


def test_camera_and_microphone_in_one_tick_cost_one_scan() -> None:
    root, now = PROC / "call", [100.0]
    scan = SharedScan(root, clock=lambda: now[0])
    # not a sysfs: the camera gate cannot tell, so it scans; /dev/snd holds capture nodes
    ctx = ProbeContext(procfs_root=root, sysfs_root=root, dev_root=DEV / "sound")
    ctx.shared(privacy.SCAN_KEY, lambda: scan)
    camera = PROBES.get("privacy.camera_in_use").factory(ctx)
    microphone = PROBES.get("privacy.microphone_in_use").factory(ctx)  # no asound in `call`: the fd scan
    assert (camera(), microphone(), scan.scans) == (True, True, 1)
    now[0] += FRESH - 0.01
    assert (microphone(), camera(), scan.scans) == (True, True, 1)
    now[0] += 0.01  # the next tick scans again
    assert (camera(), microphone(), scan.scans) == (True, True, 2)


def test_a_shared_scan_sees_a_change_at_the_next_tick(tmp_path: Path) -> None:
    root, now = tmp_path / "proc", [0.0]
    (root / "12" / "fd").mkdir(parents=True)
    scan = SharedScan(root, clock=lambda: now[0])
    scan.want("camera", CAMERA)
    assert scan.read("camera") is False
    (root / "12" / "fd" / "4").symlink_to("/dev/video3")
    assert scan.read("camera") is False  # the same tick: the scan it already made
    now[0] = FRESH
    assert scan.read("camera") is True


def test_the_agents_own_files_are_not_looked_into_but_a_child_holding_one_is(tmp_path: Path) -> None:
    fake_device = tmp_path / "video7"
    fake_device.write_bytes(b"")
    now = [0.0]
    scan = SharedScan(Path("/proc"), clock=lambda: now[0])
    scan.want("device", re.compile(re.escape(str(fake_device))))
    with open(fake_device, "rb") as held:
        assert scan.read("device") is False  # only this process holds it: the agent itself is skipped
        child = subprocess.Popen(["sleep", "60"], stdin=held)
    try:
        now[0] += FRESH
        assert scan.read("device") is True
    finally:
        child.kill()
        child.wait()
    now[0] += FRESH
    assert scan.read("device") is False


# ---------------------------------------------------------------- no video node, no scan


@pytest.mark.parametrize(
    ("nodes", "gated"),
    [
        (None, True),  # /sys/class without video4linux: videodev is not loaded
        ([], True),
        (["v4l-subdev0", "radio0", "vbi0", "videoX"], True),  # no video node among them
        (["video0"], False),
        (["v4l-subdev0", "video12"], False),
    ],
)
def test_the_camera_is_looked_for_only_while_sysfs_lists_a_video_node(
    tmp_path: Path, nodes: list[str] | None, gated: bool
) -> None:
    sysfs = tmp_path / "sys"
    (sysfs / "class" / "input").mkdir(parents=True)
    if nodes is not None:
        (sysfs / "class" / "video4linux").mkdir()
        for node in nodes:
            (sysfs / "class" / "video4linux" / node).mkdir()
    assert privacy.no_video_device(sysfs) is gated
    root = PROC / "call"  # 3977 holds /dev/video0 open
    scan = SharedScan(root, clock=lambda: 0.0)
    ctx = ProbeContext(procfs_root=root, sysfs_root=sysfs)
    ctx.shared(privacy.SCAN_KEY, lambda: scan)
    camera = PROBES.get("privacy.camera_in_use").factory(ctx)
    assert camera() is (not gated)
    assert scan.scans == (0 if gated else 1)


def test_without_a_sysfs_the_gate_cannot_tell_and_the_scan_decides(tmp_path: Path) -> None:
    assert privacy.no_video_device(tmp_path / "nowhere") is False
    assert privacy.no_video_device(tmp_path) is False  # a folder without class/


# ---------------------------------------------------------------- no capture node, no scan


class _Counted:
    """os.scandir and os.readlink as they are, with every path they were asked about recorded."""

    def __init__(self, monkeypatch) -> None:
        self.paths: list[str] = []
        scandir, readlink = os.scandir, os.readlink

        def counted_scandir(path=".", *args):
            self.paths.append(os.fspath(path))
            return scandir(path, *args)

        def counted_readlink(path, *args, **kwargs):
            self.paths.append(os.fspath(path))
            return readlink(path, *args, **kwargs)

        monkeypatch.setattr(os, "scandir", counted_scandir)
        monkeypatch.setattr(os, "readlink", counted_readlink)

    def under(self, root: Path) -> list[str]:
        return [p for p in self.paths if p == str(root) or p.startswith(str(root) + os.sep)]


@pytest.mark.parametrize(
    ("dev", "gated"), [("no-sound", True), ("playback-only", True), ("sound", False), ("nowhere", False)]
)
def test_no_capture_device_is_read_from_dev_snd(dev: str, gated: bool) -> None:
    # nowhere: no /dev at all, so the gate cannot tell and the scan decides
    assert privacy.no_capture_device(DEV / dev) is gated


@pytest.mark.parametrize(("tree", "held"), [("microphone-only", True), ("call", True), ("idle", False)])
def test_without_a_capture_node_the_microphone_is_not_in_use_and_proc_is_not_walked(
    monkeypatch, tree: str, held: bool
) -> None:
    root = PROC / tree
    assert device_in_use(root, MICROPHONE) is held  # what the walk would say (a capture device held open)
    counted = _Counted(monkeypatch)
    for dev, expected, walks in (("playback-only", False, 0), ("no-sound", False, 0), ("sound", held, 1)):
        scan = SharedScan(root, clock=lambda: 0.0)
        ctx = ProbeContext(procfs_root=root, sysfs_root=root, dev_root=DEV / dev)
        ctx.shared(privacy.SCAN_KEY, lambda scan=scan: scan)
        microphone = PROBES.get("privacy.microphone_in_use").factory(ctx)
        counted.paths.clear()
        assert microphone() is expected
        assert scan.scans == walks
        # not one folder or link of the /proc tree was read without a capture node
        assert (len(counted.under(root)) > 0) is (walks > 0)


def test_a_capture_node_that_appears_is_seen_at_the_next_reading(tmp_path: Path) -> None:
    dev, root, now = tmp_path / "dev", PROC / "microphone-only", [0.0]
    dev.mkdir()
    scan = SharedScan(root, clock=lambda: now[0])
    ctx = ProbeContext(procfs_root=root, sysfs_root=root, dev_root=dev)
    ctx.shared(privacy.SCAN_KEY, lambda: scan)
    microphone = PROBES.get("privacy.microphone_in_use").factory(ctx)
    assert (microphone(), scan.scans) == (False, 0)
    (dev / "snd").mkdir()
    (dev / "snd" / "pcmC0D0p").write_bytes(b"")
    assert (microphone(), scan.scans) == (False, 0)  # playback only
    (dev / "snd" / "pcmC0D10c").write_bytes(b"")  # a USB microphone plugged in, held by 812
    assert (microphone(), scan.scans) == (True, 1)


def test_camera_and_a_gated_microphone_cost_one_scan_a_tick() -> None:
    root = PROC / "call"
    scan = SharedScan(root, clock=lambda: 0.0)
    ctx = ProbeContext(procfs_root=root, sysfs_root=root, dev_root=DEV / "no-sound")
    ctx.shared(privacy.SCAN_KEY, lambda: scan)
    camera = PROBES.get("privacy.camera_in_use").factory(ctx)
    microphone = PROBES.get("privacy.microphone_in_use").factory(ctx)
    assert (microphone(), camera(), scan.scans) == (False, True, 1)
    assert (microphone(), camera(), scan.scans) == (False, True, 1)


# --- a watched camera: inotify on the video nodes (real inotify, on stand-in nodes in a temporary /dev) --------


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def _watched_camera(tmp_path: Path, tree: str = "camera-only"):
    """A camera reader over a copy of a recorded /proc tree (so a test can close the camera in it), a sysfs
    listing video2, and a /dev whose video2 is a regular file: inotify reports its opens and closes as it does a
    device node's. Returns the reader, its scan, the clock, the /proc copy and the stand-in node."""
    import shutil

    proc = tmp_path / "proc"
    shutil.copytree(PROC / tree, proc, symlinks=True)
    sysfs = tmp_path / "sys"
    (sysfs / "class" / "video4linux" / "video2").mkdir(parents=True)
    dev = tmp_path / "dev"
    dev.mkdir()
    node = dev / "video2"
    node.write_bytes(b"")
    clock = Clock()
    scan = SharedScan(proc, clock=clock)
    scan.want("camera", CAMERA)
    return privacy.CameraReader(scan, sysfs, dev), scan, clock, proc, node


def test_a_watched_camera_is_scanned_again_only_after_a_node_is_opened_or_closed(tmp_path: Path) -> None:
    camera, scan, clock, proc, node = _watched_camera(tmp_path)
    assert (camera(), scan.scans) == (True, 1)  # the first reading scans: 3977 holds /dev/video2
    for _ in range(5):
        clock.now += 30
        assert (camera(), scan.scans) == (True, 1)  # nothing opened or closed: the answer stands, no scan
    (proc / "3977" / "fd" / "31").unlink()  # the call ends: the browser closes the camera...
    node.open("rb").close()  # ...which the kernel reports as an open and a close of the node
    clock.now += 30
    assert (camera(), scan.scans) == (False, 2)
    clock.now += 30
    assert (camera(), scan.scans) == (False, 2)
    clock.now += privacy.RESCAN_AFTER  # events or not, a watched camera is scanned again this often
    assert (camera(), scan.scans) == (False, 3)


def test_an_open_between_two_readings_is_seen_even_if_the_other_probe_scanned_in_between(tmp_path: Path) -> None:
    camera, scan, clock, proc, node = _watched_camera(tmp_path, tree="idle")
    assert (camera(), scan.scans) == (False, 1)
    clock.now += 30
    scan.want("microphone", MICROPHONE)
    assert scan.read("microphone") is False  # the microphone's fallback scans first in this tick...
    assert scan.scans == 2
    (proc / "3977" / "fd").mkdir(parents=True)
    (proc / "3977" / "fd" / "31").symlink_to("/dev/video2")
    node.open("rb").close()  # ...then a program opens the camera, a millisecond later, in the same tick
    clock.now += 0.001
    assert (camera(), scan.scans) == (True, 3)  # the camera does not take the microphone's older scan


def test_a_node_plugged_in_later_is_watched_too(tmp_path: Path) -> None:
    camera, scan, clock, proc, node = _watched_camera(tmp_path, tree="idle")
    assert (camera(), scan.scans) == (False, 1)
    second = node.parent / "video3"
    second.write_bytes(b"")  # a second webcam appears in /dev: a change, and its node is watched from now on
    clock.now += 30
    assert (camera(), scan.scans) == (False, 2)
    clock.now += 30
    assert (camera(), scan.scans) == (False, 2)
    second.open("rb").close()
    clock.now += 30
    assert (camera(), scan.scans) == (False, 3)


def test_without_a_watch_every_camera_reading_scans(tmp_path: Path) -> None:
    camera, scan, clock, proc, node = _watched_camera(tmp_path)
    camera.dev_root = tmp_path / "no-dev"  # inotify cannot watch what is not there: the scan runs every reading
    for n in range(1, 4):
        assert (camera(), scan.scans) == (True, n)
        clock.now += 30
    assert camera.watch is not None and camera.watch.fd is None and camera.watch.why


def test_a_flood_of_events_is_one_change_and_one_scan(tmp_path: Path) -> None:
    camera, scan, clock, proc, node = _watched_camera(tmp_path)
    assert camera() is True
    for _ in range(20000):  # 40,000 events: past the kernel's queue (max_queued_events, 16,384 by default)
        node.open("rb").close()
    clock.now += 30
    assert (camera(), scan.scans) == (True, 2)  # one scan for all of them (the look reads at most 1 MiB)
    clock.now += 30
    assert (camera(), scan.scans) == (True, 2)  # the queue, overflow marker included, was drained


def test_the_watch_is_closed_when_the_last_video_node_goes(tmp_path: Path) -> None:
    camera, scan, clock, proc, node = _watched_camera(tmp_path)
    assert camera() is True
    fd = camera.watch.fd
    assert fd is not None and os.readlink(f"/proc/self/fd/{fd}") == "anon_inode:inotify"
    (camera.sysfs_root / "class" / "video4linux" / "video2").rmdir()  # unplugged: sysfs lists no video node
    assert camera() is False and camera.watch is None
    with pytest.raises(OSError):
        os.fstat(fd)  # closed, not leaked
