"""Service tests never run systemctl, useradd or systemd-tmpfiles, and never write outside tmp_path.

Every command `pilot service` would run goes to a RecordingRunner (PILOT_SERVICE_RECORD), and
every file write uses `--root` (or `root=`) under the test's temporary folder."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.support.files import BASIC, REPO, write  # noqa: F401 - the service tests import them from here


@pytest.fixture(autouse=True)
def recorded_commands(tmp_path, monkeypatch):
    """The commands a test's `pilot service ...` ran, as argv lists (none of them really ran)."""
    path = tmp_path / "service-commands.jsonl"
    monkeypatch.setenv("PILOT_SERVICE_RECORD", str(path))

    def read() -> list[list[str]]:
        if not path.exists():
            return []
        return [json.loads(line) for line in path.read_text().splitlines()]

    return read


@pytest.fixture
def fake_pilot(tmp_path) -> Path:
    """A real executable file for ExecStart= (systemd-analyze verify checks that it exists)."""
    exe = tmp_path / "bin" / "pilot"
    exe.parent.mkdir()
    exe.write_text("#!/bin/sh\nexit 0\n")
    exe.chmod(0o755)
    return exe


PRIVILEGED = """\
pilot: 1
device: {id: box01, name: Box}
sensors:
  cpu_usage: {probe: cpu.percent, every: 10s}
commands:
  shutdown: {action: power.shutdown, platform: button}
  cpu_max: {action: cpufreq.set_max, platform: number, min: 0.4, max: 5}
  brightness: {action: display.brightness, platform: number, min: 0, max: 100}
"""
