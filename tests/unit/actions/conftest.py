"""Fixtures for the action tests: contexts with a chosen platform, environment, PATH and sysfs tree.

Nothing here performs an action: factories only *plan* Calls. As a second line of defence,
every test in this folder runs with subprocess.Popen refusing the power/session/display
tools, so a mistake in a test can never shut this machine down or lock its screen.
"""

from __future__ import annotations

import os
import subprocess
from collections.abc import Iterable
from pathlib import Path

import pytest

from pilot.actions import ActionContext
from tests.support.probes import SYSFS_FIXTURES

DANGEROUS = {
    "busctl",
    "systemctl",
    "shutdown",
    "reboot",
    "poweroff",
    "halt",
    "loginctl",
    "xset",
    "kscreen-doctor",
    "powerprofilesctl",
    "notify-send",
    "systemd-run",
    "rundll32.exe",
    "nircmd",
    "powercfg",
}


@pytest.fixture(autouse=True)
def _no_dangerous_exec(monkeypatch):
    real = subprocess.Popen

    class Guarded(real):  # type: ignore[misc, valid-type]
        def __init__(self, args, *a, **kw):
            argv = [args] if isinstance(args, (str, bytes)) else list(args)
            name = os.path.basename(str(argv[0])) if argv else ""
            if name in DANGEROUS:
                raise AssertionError(f"a test tried to really run {name}")
            super().__init__(args, *a, **kw)

    monkeypatch.setattr(subprocess, "Popen", Guarded)


def fake_which(tools: Iterable[str]):
    tools = set(tools)
    return lambda name: f"/usr/bin/{name}" if name in tools else None


@pytest.fixture
def make_ctx(tmp_path: Path):
    """make_ctx(tools=..., environ=..., platform=..., sysfs_root=...) -> ActionContext; nothing of the host leaks in."""

    def make(
        tools: Iterable[str] = (),
        environ: dict[str, str] | None = None,
        platform: str = "linux",
        sysfs_root: Path | None = None,
    ) -> ActionContext:
        root = sysfs_root if sysfs_root is not None else tmp_path / "empty-sys"
        root.mkdir(parents=True, exist_ok=True)
        return ActionContext(sysfs_root=root, platform=platform, environ=dict(environ or {}), which=fake_which(tools))

    return make


@pytest.fixture
def sysfs_fixture():
    """sysfs_fixture("folder") -> Path of a recorded sysfs tree under tests/fixtures/sysfs."""

    def get(name: str) -> Path:
        root = SYSFS_FIXTURES / name
        if not root.is_dir():
            pytest.fail(f"recorded sysfs tree {name} not found under {SYSFS_FIXTURES}")
        return root

    return get
