"""docs/deploy.md's pip install, run as written: its two shell blocks ("Or with pip, from this
repository") run in a temporary root, with `sudo` dropped and /opt, /usr/local/bin and /etc moved under
that root, in a copy of the checkout, with `python3` the interpreter running these tests. The first
installs the checkout (`pip install .`) into a fresh venv; the second builds the wheel and installs it
there. Then the installed `pilot` validates from the wheel's own schema and packs.

pip fetches the build backend and the dependencies as it is set up to (PyPI, a mirror, or its cache)."""

import os
import re
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow

REPO = Path(__file__).resolve().parents[2]
CHECKOUT = ["pyproject.toml", "setup.py", "README.md", "engine", "schemas", "profiles"]  # what pip reads


def documented_blocks() -> list[str]:
    text = (REPO / "docs" / "deploy.md").read_text(encoding="utf-8")
    section = text.split("### Or with pip", 1)[1].split("\n## ", 1)[0]
    return re.findall(r"```sh\n(.*?)```", section, re.S)


def as_test(block: str, root: Path) -> str:
    """The block, run without root: no sudo, every system path under `root`."""
    script = re.sub(r"^sudo ", "", block, flags=re.M)
    for path in ("/opt/pilot", "/usr/local/bin", "/etc/pilot"):
        script = re.sub(rf"(?<![\w./]){re.escape(path)}", f"{root}{path}", script)
    return script


def test_the_guide_shows_two_pip_blocks_with_nothing_unpublished():
    install, wheel = documented_blocks()
    assert re.search(r"^sudo /opt/pilot/bin/pip install \. ", install, re.M)
    assert "pip install pilot-agent" not in install + wheel
    assert "pip wheel --no-deps -w dist ." in wheel


@pytest.fixture(scope="module")
def installed(tmp_path_factory):
    work = tmp_path_factory.mktemp("pip")
    root, checkout, bin_dir = work / "root", work / "checkout", work / "bin"
    (root / "usr" / "local" / "bin").mkdir(parents=True)
    checkout.mkdir()
    for name in CHECKOUT:
        if (REPO / name).is_dir():
            shutil.copytree(REPO / name, checkout / name, ignore=shutil.ignore_patterns("__pycache__", "*.egg-info"))
        else:
            shutil.copy(REPO / name, checkout / name)
    bin_dir.mkdir()
    (bin_dir / "python3").write_text(f'#!/bin/sh\nexec "{sys.executable}" "$@"\n')
    (bin_dir / "python3").chmod(0o755)
    env = {
        **os.environ,
        "PATH": f"{bin_dir}:{os.environ['PATH']}",
        "PIP_DISABLE_PIP_VERSION_CHECK": "1",
        "PIP_ROOT_USER_ACTION": "ignore",
    }
    env.pop("VIRTUAL_ENV", None)

    def sh(script: str) -> None:
        proc = subprocess.run(
            ["bash", "-euxo", "pipefail", "-c", script],
            cwd=checkout,
            env=env,
            capture_output=True,
            text=True,
            timeout=300,
        )
        assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]

    install, wheel = documented_blocks()
    sh(as_test(install, root))
    linked = subprocess.run([str(root / "usr/local/bin/pilot"), "--version"], capture_output=True, text=True)
    # the second block installs the wheel where the first installed the checkout: uninstall, so it really does
    sh(f"{root}/opt/pilot/bin/pip uninstall -q -y pilot-agent")
    sh(as_test(wheel, root))
    return root / "opt" / "pilot", next((checkout / "dist").glob("pilot_agent-*.whl")), linked, root


def run(env_dir: Path, *args: str, cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run([str(env_dir / "bin" / "pilot"), *args], capture_output=True, text=True, cwd=cwd)


def test_the_checkout_install_puts_pilot_on_the_path(installed):
    from pilot import __version__

    _, _, linked, root = installed
    assert linked.returncode == 0 and linked.stdout.strip() == f"pilot {__version__}", linked.stderr
    assert (root / "etc" / "pilot").is_dir()


def test_wheel_contains_schemas_and_packs(installed):
    from pilot import __version__

    _, wheel, _, _ = installed
    assert wheel.name == f"pilot_agent-{__version__}-py3-none-any.whl"  # the name the guide gives
    names = zipfile.ZipFile(wheel).namelist()
    assert "pilot/data/schemas/profile.v1.schema.json" in names
    assert "pilot/data/profiles/base/pack.yaml" in names
    # the console's pages ship built: users need no Node
    index = (REPO / "engine/pilot/console/static/index.html").read_text()
    assets = sorted(
        f"pilot/console/static/{p.relative_to(REPO / 'engine/pilot/console/static')}"
        for p in (REPO / "engine/pilot/console/static/assets").iterdir()
    )
    assert "pilot/console/static/index.html" in names and assets and set(assets) <= set(names)
    # every asset is reached from the page: named by index.html, or imported by an asset it names (the
    # editor's chunk is loaded only on /editor, by the main script)
    folder = REPO / "engine/pilot/console/static/assets"
    texts = {p.name: p.read_text(encoding="utf-8", errors="replace") for p in folder.iterdir()}
    reached = {name for name in texts if name in index}
    while True:
        more = {name for name in texts if name not in reached and any(name in texts[r] for r in reached)}
        if not more:
            break
        reached |= more
    assert reached == set(texts), sorted(set(texts) - reached)


def test_installed_pilot_validates_shipped_packs_and_broken_profiles(installed, tmp_path, repo):
    env_dir, _, _, _ = installed
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
