"""The agent's state files when the disk fails, without root or a tmpfs (tests/live/faults/test_disk_full.py
needs both): faults injected at the lowest layer, os.write and os.fsync, and only for files under the
test's own folder.

A state file is replaced atomically (tmp, fsync, rename): whatever fails, the previous file stays as it
was, no temporary file is left behind, the failure reaches the caller (the agent counts it in
`state_write_failures`), and the next write after the fault works.
"""

from __future__ import annotations

import errno
import json
import os
from pathlib import Path

import pytest

from pilot.agent.state import StateDir, write_all

OLD = {"sensors": ["cpu", "load"], "written": "before the fault"}
NEW = {"sensors": ["cpu", "load", "disk"], "written": "after the fault", "pad": "x" * 10_000}


class Faults:
    """os.write and os.fsync that misbehave for file descriptors under `root` while `on`."""

    def __init__(self, root: Path, monkeypatch: pytest.MonkeyPatch) -> None:
        self.root = str(root.resolve())
        self.on = True
        self.write_mode = "ok"  # ok | short | zero | enospc_after_first | eio
        self.fsync_errno: int | None = None
        self.chunk = 7  # bytes per short write
        self.writes = 0
        self._write, self._fsync = os.write, os.fsync
        monkeypatch.setattr(os, "write", self.write)
        monkeypatch.setattr(os, "fsync", self.fsync)

    def _ours(self, fd: int) -> bool:
        try:
            return self.on and os.readlink(f"/proc/self/fd/{fd}").startswith(self.root)
        except OSError:
            return False

    def write(self, fd: int, data) -> int:
        if not self._ours(fd):
            return self._write(fd, data)
        self.writes += 1
        if self.writes > 10_000:
            raise AssertionError("write_all kept calling os.write on a disk that takes nothing")
        if self.write_mode == "short":
            return self._write(fd, bytes(data[: self.chunk]))
        if self.write_mode == "zero":
            return 0  # a full disk answering with a zero-length write instead of an error
        if self.write_mode == "enospc_after_first":
            if self.writes == 1:
                return self._write(fd, bytes(data[:4096]))
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        if self.write_mode == "eio":
            raise OSError(errno.EIO, os.strerror(errno.EIO))
        return self._write(fd, data)

    def fsync(self, fd: int) -> None:
        if self.fsync_errno is not None and self._ours(fd):
            raise OSError(self.fsync_errno, os.strerror(self.fsync_errno))
        return self._fsync(fd)


@pytest.fixture
def state(tmp_path, monkeypatch):
    folder = StateDir(tmp_path / "state")
    folder.write_json("discovery.json", OLD)  # written before any fault is injected
    return folder, Faults(tmp_path, monkeypatch)


def files(folder: StateDir) -> dict[str, str]:
    return {p.name: p.read_text() for p in folder.path.iterdir()}


def old_file_only(folder: StateDir) -> dict[str, str]:
    return {"discovery.json": json.dumps(OLD, separators=(",", ":"), sort_keys=True)}


def test_short_writes_are_continued_until_every_byte_is_down(state):
    folder, faults = state
    faults.write_mode = "short"
    folder.write_json("discovery.json", NEW)
    assert json.loads((folder.path / "discovery.json").read_text()) == NEW
    assert faults.writes == -(-len(json.dumps(NEW, separators=(",", ":")).encode()) // 7)  # 7 bytes a call
    assert sorted(files(folder)) == ["discovery.json"]


@pytest.mark.parametrize(
    "mode, fsync_errno, code",
    [
        ("zero", None, errno.ENOSPC),
        ("enospc_after_first", None, errno.ENOSPC),
        ("eio", None, errno.EIO),
        ("ok", errno.EIO, errno.EIO),
        ("ok", errno.ENOSPC, errno.ENOSPC),
    ],
    ids=["write-returns-0", "enospc-after-a-page", "write-eio", "fsync-eio", "fsync-enospc"],
)
def test_a_failed_write_keeps_the_previous_file_and_recovers(state, mode, fsync_errno, code):
    folder, faults = state
    faults.write_mode, faults.fsync_errno = mode, fsync_errno
    for _ in range(3):  # the agent tries again at the next announcement: same result, nothing piles up
        with pytest.raises(OSError) as raised:
            folder.write_json("discovery.json", NEW)
        assert raised.value.errno == code
        assert files(folder) == old_file_only(folder), "a truncated or temporary file was left"
    faults.on = False  # space (or the device) is back
    folder.write_json("discovery.json", NEW)
    assert json.loads((folder.path / "discovery.json").read_text()) == NEW
    assert sorted(files(folder)) == ["discovery.json"]


def test_write_all_raises_enospc_on_a_zero_length_write(tmp_path, monkeypatch):
    faults = Faults(tmp_path, monkeypatch)
    faults.write_mode = "zero"
    fd = os.open(tmp_path / "f", os.O_WRONLY | os.O_CREAT, 0o600)
    try:
        with pytest.raises(OSError) as raised:
            write_all(fd, b"abc")
        assert (raised.value.errno, faults.writes) == (errno.ENOSPC, 1)
    finally:
        os.close(fd)


def test_the_agent_counts_each_failed_state_write_and_writes_again_once_the_fault_stops(tmp_path, monkeypatch):
    """Through the agent's own path: announce() remembers what it published in discovery.json."""
    from pilot.agent.runtime import Agent, AgentOptions
    from tests.support.profiles import compile_text

    plan = compile_text(
        "pilot: 1\ndevice: {id: statefaults, name: State faults}\nsensors:\n  cpu: {probe: cpu.percent, every: 30s}\n",
        folder=tmp_path / "profile",
    )
    folder = StateDir(tmp_path / "state")
    agent = Agent(plan, AgentOptions(host="127.0.0.1", port=1, state_dir=folder))  # never started: no broker
    faults = Faults(tmp_path / "state", monkeypatch)
    folder.ensure()
    faults.write_mode = "zero"  # the disk is full
    agent.announce()
    faults.write_mode, faults.fsync_errno = "ok", errno.EIO  # then the device fails
    agent.announce()
    assert agent.health.state_write_failures == 2
    assert list(folder.path.iterdir()) == []  # nothing half-written left behind
    faults.on = False
    agent.announce()
    assert agent.health.state_write_failures == 2
    record = json.loads((folder.path / "discovery.json").read_text())
    assert "statefaults" in json.dumps(record)  # what was announced, remembered for the next removals
