"""A plain, non-editable install carries the schema and the packs: build the wheel,
install it into a fresh venv, and validate from there."""

import subprocess
import sys
import venv
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def installed(tmp_path_factory, repo):
    work = tmp_path_factory.mktemp("wheel")
    dist = work / "dist"
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "-q", "-w", str(dist), str(repo)], check=True, cwd=work
    )
    wheel = next(dist.glob("pilot_agent-*.whl"))
    env_dir = work / "venv"
    venv.EnvBuilder(with_pip=True).create(env_dir)
    py = env_dir / "bin" / "python"
    subprocess.run([str(py), "-m", "pip", "install", "-q", "--disable-pip-version-check", str(wheel)], check=True)
    return env_dir, wheel


def run(env_dir: Path, *args: str, cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run([str(env_dir / "bin" / "pilot"), *args], capture_output=True, text=True, cwd=cwd)


def test_wheel_contains_schemas_and_packs(installed):
    import zipfile

    _, wheel = installed
    names = zipfile.ZipFile(wheel).namelist()
    assert "pilot/data/schemas/profile.v1.schema.json" in names
    assert "pilot/data/profiles/base/pack.yaml" in names


def test_installed_pilot_validates_shipped_packs_and_broken_profiles(installed, tmp_path, repo):
    env_dir, _ = installed
    version = run(env_dir, "--version", cwd=tmp_path)
    assert version.returncode == 0 and version.stdout.startswith("pilot ")
    good = tmp_path / "mine.yaml"
    good.write_text("pilot: 1\nextends: [base/linux]\ndevice: {name: Test box}\n")
    ok = run(env_dir, "validate", str(good), cwd=tmp_path)
    assert ok.returncode == 0, ok.stdout + ok.stderr
    bad = tmp_path / "bad.yaml"
    bad.write_text("pilot: 1\nsensors:\n  cpu: {probe: cpu.precent}\n")
    result = run(env_dir, "validate", str(bad), cwd=tmp_path)
    assert result.returncode == 1
    assert (
        f"{bad}:3:16: error: $.sensors.cpu.probe: unknown probe 'cpu.precent' (did you mean 'cpu.percent'?)"
        in result.stdout
    )
    schema = run(env_dir, "schema", cwd=tmp_path)
    assert schema.stdout == (repo / "schemas" / "profile.v1.schema.json").read_text(encoding="utf-8")
