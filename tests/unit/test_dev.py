"""./dev's ways to `pilot` (README: "Running pilot"), against a stand-in virtual environment: ./dev run
ends by saying how to run pilot, ./dev pilot passes its arguments through, ./dev shell puts it on the PATH.
Nothing is installed: the stand-in venv carries the stamp ./dev writes after a complete install."""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.skipif(not shutil.which("bash") or sys.platform == "win32", reason="./dev is bash")


@pytest.fixture
def fake_venv(repo, tmp_path) -> Path:
    venv = tmp_path / "venv"
    (venv / "bin").mkdir(parents=True)
    for name, body in (("python", 'exec python3 "$@"'), ("pilot", 'echo "pilot called with: $*"')):
        (venv / "bin" / name).write_text(f"#!/bin/sh\n{body}\n")
        (venv / "bin" / name).chmod(0o755)
    digest = hashlib.sha256((repo / "pyproject.toml").read_bytes() + (repo / "setup.py").read_bytes()).hexdigest()
    (venv / ".pilot-installed-gpu,test").write_text(digest[:16] + "\n")  # as after ./dev test
    (venv / ".pilot-installed-gpu").write_text(digest[:16] + "\n")  # as after ./dev run
    return venv


def dev(repo: Path, venv: Path, tmp_path: Path, *args: str) -> subprocess.CompletedProcess:
    stubs = tmp_path / "stubs"  # mosquitto "is installed": ./dev run installs nothing
    stubs.mkdir(exist_ok=True)
    for tool in ("mosquitto", "mosquitto_sub"):
        (stubs / tool).write_text("#!/bin/sh\nexit 0\n")
        (stubs / tool).chmod(0o755)
    env = {**os.environ, "PILOT_VENV": str(venv), "PATH": f"{stubs}:{os.environ['PATH']}", "SHELL": "/bin/sh"}
    env.pop("VIRTUAL_ENV", None)
    return subprocess.run([str(repo / "dev"), *args], capture_output=True, text=True, env=env, timeout=60)


def test_dev_run_ends_by_saying_how_to_run_pilot(repo, fake_venv, tmp_path):
    result = dev(repo, fake_venv, tmp_path, "run", "--duration", "1")
    assert result.returncode == 0, result.stderr
    assert result.stdout == "pilot called with: demo --duration 1\n"
    assert f". {fake_venv}/bin/activate" in result.stderr
    assert f"{fake_venv}/bin/pilot ARGS" in result.stderr and "./dev pilot ARGS" in result.stderr


def test_dev_pilot_passes_arguments_through(repo, fake_venv, tmp_path):
    fake_venv.joinpath(".pilot-installed-gpu").unlink()  # ./dev test's install is enough
    result = dev(repo, fake_venv, tmp_path, "pilot", "validate", "a file.yaml")
    assert result.returncode == 0, result.stderr
    assert result.stdout == "pilot called with: validate a file.yaml\n"


def test_dev_shell_puts_pilot_on_the_path(repo, fake_venv, tmp_path):
    result = dev(repo, fake_venv, tmp_path, "shell", "-c", 'command -v pilot; echo "$VIRTUAL_ENV"')
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == [str(fake_venv / "bin" / "pilot"), str(fake_venv)]


def test_the_readme_shows_the_ways_dev_offers(repo):
    readme = (repo / "README.md").read_text(encoding="utf-8")
    for way in (
        ". .venv/bin/activate",
        ".venv/bin/pilot",
        "./dev pilot",
        "./dev shell",
        "pilot init",
        "docs/deploy.md",
    ):
        assert way in readme, way
