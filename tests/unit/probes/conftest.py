"""Fixtures for the probe tests: contexts pointing at recorded sysfs trees."""

from __future__ import annotations

import shutil
import sys
from pathlib import Path

import pytest

HERE = Path(__file__).resolve().parent
if str(HERE) not in sys.path:  # so tests can import fake_nvml
    sys.path.insert(0, str(HERE))

from pilot.probes import ProbeContext  # noqa: E402
from tests.support.probes import SYSFS_FIXTURES  # noqa: E402


@pytest.fixture
def machine(tmp_path: Path):
    """machine("folder") -> a ProbeContext whose sysfs root is that recorded tree.

    procfs and etc point at empty folders so nothing of the test host leaks in.
    """

    def make(name: str, nvml: object | None = None) -> ProbeContext:
        root = SYSFS_FIXTURES / name
        if not root.is_dir():
            pytest.fail(f"fixture {name} missing under {SYSFS_FIXTURES}")
        (tmp_path / "proc").mkdir(exist_ok=True)
        (tmp_path / "etc").mkdir(exist_ok=True)
        return ProbeContext(sysfs_root=root, procfs_root=tmp_path / "proc", etc_root=tmp_path / "etc", nvml=nvml)

    return make


@pytest.fixture
def machine_copy(tmp_path: Path):
    """machine_copy("folder") -> (writable copy of the tree, context on it), to remove or add files."""

    def make(*names: str) -> tuple[Path, ProbeContext]:
        root = tmp_path / "sys"
        for name in names:
            shutil.copytree(SYSFS_FIXTURES / name, root, dirs_exist_ok=True)
        root.mkdir(exist_ok=True)
        (tmp_path / "proc").mkdir(exist_ok=True)
        (tmp_path / "etc").mkdir(exist_ok=True)
        return root, ProbeContext(sysfs_root=root, procfs_root=tmp_path / "proc", etc_root=tmp_path / "etc")

    return make
