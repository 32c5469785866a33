"""examples/pilot-plugin-example, built and installed as a user would: its wheel and Pilot's, both built
from copies of the sources with `pip wheel --no-deps`, installed with `pip install --no-index --no-deps`
into a FRESH virtual environment. Pilot's own dependencies come from this test's environment through one
`.pth` line (no network here for pip to fetch them); Pilot and the plugin are only in the fresh venv.

Then that venv's `pilot` lists the plugin's probe, action and pack with their origin, validates a profile
that uses them (and refuses bad arguments to them at their line and column), and runs it with
`pilot run --once --dry-run` against a real Mosquitto: the plugin's probe's value reaches the broker.

pip fetches the build backend (setuptools, wheel) as it is set up to (PyPI, a mirror, or its cache),
exactly like tests/packaging/test_wheel.py."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import sysconfig
from pathlib import Path

import pytest

from testkit.broker import Mosquitto, Watcher

pytestmark = pytest.mark.slow

REPO = Path(__file__).resolve().parents[2]
EXAMPLE = REPO / "examples" / "pilot-plugin-example"
PILOT_SOURCES = ["pyproject.toml", "setup.py", "README.md", "engine", "schemas", "profiles"]
ORIGIN = "pilot-plugin-example 0.1.0"


def _run(argv: list[str], *, cwd: Path | None = None, env: dict[str, str] | None = None, timeout: float = 300):
    return subprocess.run(argv, cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout)


def _ok(proc: subprocess.CompletedProcess) -> subprocess.CompletedProcess:
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    return proc


@pytest.fixture(scope="module")
def venv(tmp_path_factory) -> Path:
    work = tmp_path_factory.mktemp("plugin")
    dist = work / "dist"
    plugin_src, pilot_src = work / "plugin-src", work / "pilot-src"
    ignore = shutil.ignore_patterns("__pycache__", "*.egg-info", "build", "dist", "node_modules")
    shutil.copytree(EXAMPLE, plugin_src, ignore=ignore)
    pilot_src.mkdir()
    for name in PILOT_SOURCES:
        if (REPO / name).is_dir():
            shutil.copytree(REPO / name, pilot_src / name, ignore=ignore)
        else:
            shutil.copy(REPO / name, pilot_src / name)
    env = {**os.environ, "PIP_DISABLE_PIP_VERSION_CHECK": "1", "PIP_ROOT_USER_ACTION": "ignore"}
    env.pop("VIRTUAL_ENV", None)
    for src in (plugin_src, pilot_src):
        _ok(_run([sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "-w", str(dist), str(src)], env=env))
    wheels = sorted(p.name for p in dist.glob("*.whl"))
    assert [w.split("-")[0] for w in wheels] == ["pilot_agent", "pilot_plugin_example"], wheels

    fresh = work / "venv"
    _ok(_run([sys.executable, "-m", "venv", str(fresh)], env=env))
    python = fresh / "bin" / "python"
    purelib = _ok(_run([str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"])).stdout
    # Pilot's dependencies (paho, psutil, ruamel, jsonschema...) from here, appended after the fresh
    # site-packages; .pth files in that folder are not run, so this environment's editable Pilot is not seen
    Path(purelib.strip(), "pilot-deps.pth").write_text(sysconfig.get_paths()["purelib"] + "\n", encoding="utf-8")
    _ok(
        _run(
            [str(python), "-m", "pip", "install", "-q", "--no-index", "--no-deps", *map(str, dist.glob("*.whl"))],
            env=env,
        )
    )
    return fresh


def _env(tmp_path: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PILOT_", "PYTHON"))}
    return {**env, "PILOT_ALLOW_ROOT": "1", "HOME": str(tmp_path), "XDG_STATE_HOME": str(tmp_path / "state")}


def _pilot(venv: Path, tmp_path: Path, *args: str, timeout: float = 60) -> subprocess.CompletedProcess:
    return _run([str(venv / "bin" / "pilot"), *args], cwd=tmp_path, env=_env(tmp_path), timeout=timeout)


def test_pilot_and_the_plugin_come_from_the_fresh_venv_only(venv: Path, tmp_path: Path) -> None:
    code = "import pilot, pilot_plugin_example; print(pilot.__file__); print(pilot_plugin_example.__file__)"
    where = _ok(_run([str(venv / "bin" / "python"), "-c", code], env=_env(tmp_path))).stdout.split()
    assert all(path.startswith(str(venv)) for path in where), where
    # and the environment running these tests does not have the plugin
    assert _run([sys.executable, "-c", "import pilot_plugin_example"]).returncode != 0


def test_the_listings_show_the_plugins_entries_and_where_they_came_from(venv: Path, tmp_path: Path) -> None:
    probes = _ok(_pilot(venv, tmp_path, "probes", "--no-values", "--json"))
    rows = {r["name"]: r for r in json.loads(probes.stdout)}
    assert rows["example.file_count"]["origin"] == ORIGIN
    assert rows["example.file_count"]["summary"] == "How many files in a folder match a glob."
    assert rows["cpu.percent"]["origin"] == "pilot"
    assert probes.stderr == ""

    actions = _ok(_pilot(venv, tmp_path, "actions")).stdout
    block = actions.split("example.stamp", 1)[1].splitlines()
    assert block[0].strip() == "Write a short text into a file."
    assert f"from: {ORIGIN};" in block[1]

    detect = json.loads(_ok(_pilot(venv, tmp_path, "detect", "--json")).stdout)
    pack = {p["name"]: p for p in detect["packs"]}["example-box"]
    assert pack["origin"] == ORIGIN and pack["default_profile"].endswith("example-box/box.yaml")


PROFILE = """\
pilot: 1
device: {{id: plugged, name: Plugged}}
sensors:
  spooled: {{probe: example.file_count, every: 10s, args: {{folder: "{folder}", pattern: "*.job"}}}}
commands:
  stamp: {{action: example.stamp, args: {{path: "{folder}/stamp"}}}}
"""


def test_the_plugin_pack_validates_in_the_fresh_venv(venv: Path, tmp_path: Path) -> None:
    detect = json.loads(_ok(_pilot(venv, tmp_path, "detect", "--json")).stdout)
    box = {p["name"]: p for p in detect["packs"]}["example-box"]["default_profile"]
    proc = _pilot(venv, tmp_path, "validate", box, str(Path(box).parent / "pack.yaml"))
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_bad_arguments_to_a_plugins_probe_are_refused_at_their_position(venv: Path, tmp_path: Path) -> None:
    text = PROFILE.format(folder=tmp_path).replace('pattern: "*.job"', "patern: 1")
    (tmp_path / "bad.yaml").write_text(text, encoding="utf-8")
    proc = _pilot(venv, tmp_path, "validate", "bad.yaml")
    assert proc.returncode == 1, proc.stdout + proc.stderr
    column = text.splitlines()[3].index("patern") + 1
    assert f"bad.yaml:4:{column}: error:" in proc.stdout
    assert "patern" in proc.stdout and "Traceback" not in proc.stdout + proc.stderr


def test_a_profile_using_the_plugin_runs_once_against_a_real_broker(venv: Path, tmp_path: Path) -> None:
    spool = tmp_path / "spool"
    spool.mkdir()
    for name in ("a.job", "b.job", "c.job", "notes.txt"):
        (spool / name).write_text("x", encoding="utf-8")
    (tmp_path / "plugged.yaml").write_text(PROFILE.format(folder=spool), encoding="utf-8")
    _ok(_pilot(venv, tmp_path, "validate", "plugged.yaml"))

    broker = Mosquitto().start()
    watcher = Watcher(broker.port, topics=("#",)).start()
    try:
        proc = _pilot(
            venv,
            tmp_path,
            "run",
            "plugged.yaml",
            "--broker",
            f"127.0.0.1:{broker.port}",
            "--state-dir",
            str(tmp_path / "state"),
            "--once",
            "--dry-run",
            "--timeout",
            "10",
            timeout=90,
        )
        assert proc.returncode == 0, proc.stderr[-3000:]
        state = watcher.wait_for(lambda m: m.topic == "pilot/plugged/state/spooled", 10)
        assert state is not None, [m.topic for m in watcher.messages][:40]
        assert state.payload == b"3"  # three *.job files; notes.txt does not match
        config = watcher.wait_for(lambda m: m.topic.startswith("homeassistant/") and b"stamp" in m.payload, 10)
        assert config is not None, "the plugin's action was not announced as a command"
    finally:
        watcher.stop()
        broker.stop()
    assert "Traceback" not in proc.stderr
