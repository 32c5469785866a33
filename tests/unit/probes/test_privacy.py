"""privacy.camera_in_use / privacy.microphone_in_use on recorded /proc trees (tests/fixtures/proc/README.md),
and on the real /proc for a file this test holds open (matched through an injected device pattern)."""

from __future__ import annotations

import os
import re
from pathlib import Path

import pytest

from pilot.probes import ProbeContext
from pilot.probes.privacy import CAMERA, MICROPHONE, device_in_use
from pilot.registry import PROBES
from tests.support.probes import REPO

PROC = REPO / "tests" / "fixtures" / "proc"


@pytest.fixture(autouse=True)
def _desktop_user(monkeypatch):
    """These tests stand for an agent run by a desktop user, whoever runs them (root in CI)."""
    monkeypatch.setattr(os, "geteuid", lambda: 1000)


def _read(name: str, tree: str) -> bool | None:
    ctx = ProbeContext(procfs_root=PROC / tree)
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
