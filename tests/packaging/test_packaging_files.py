"""The packaging's static parts, without building anything: the systemd unit, the sample profile,
the pre-commit hook, the profiles in docs/deploy.md and build.py's metadata."""

from __future__ import annotations

import configparser
import importlib.util
import re
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest
from ruamel.yaml import YAML

from pilot.cli import main
from tests.support.files import with_its_files

REPO = Path(__file__).resolve().parents[2]


def load_build():
    name = "pilot_packaging_build"
    if name not in sys.modules:
        spec = importlib.util.spec_from_file_location(name, REPO / "packaging" / "build.py")
        module = importlib.util.module_from_spec(spec)
        sys.modules[name] = module  # dataclasses look their module up while the class is made
        spec.loader.exec_module(module)
    return sys.modules[name]


def unit() -> configparser.ConfigParser:
    parser = configparser.ConfigParser(strict=False, interpolation=None, delimiters=("=",))
    parser.optionxform = str
    parser.read_string((REPO / "packaging" / "pilot.service").read_text(encoding="utf-8"))
    return parser


def test_the_unit_is_the_hardened_system_service():
    service = unit()["Service"]
    expected = {
        "User": "pilot",
        "ExecStart": "/opt/pilot/bin/pilot run /etc/pilot/pilot.yaml --state-dir /var/lib/pilot",
        "ExecReload": "/bin/kill -HUP $MAINPID",
        "Restart": "on-failure",
        "RestartPreventExitStatus": "2",
        "StateDirectory": "pilot",
        "StateDirectoryMode": "0700",
        "ConfigurationDirectory": "pilot",
        "ProtectSystem": "strict",
        "ProtectHome": "true",
        "NoNewPrivileges": "true",
        "PrivateTmp": "true",
        "TimeoutStopSec": "15",
        "SyslogIdentifier": "pilot",
    }
    assert {k: service.get(k) for k in expected} == expected
    # Type=notify only because the agent speaks sd_notify; otherwise systemd would wait for READY=1 forever
    if (REPO / "engine" / "pilot" / "agent" / "sdnotify.py").exists():
        assert service["Type"] == "notify"
    else:
        assert service["Type"] == "simple"
    assert unit()["Install"]["WantedBy"] == "multi-user.target"
    # these would break shipped features (sysfs writes, /dev/nvidia*): see the comments in the unit
    for setting in ("ProtectKernelTunables", "ProtectClock", "PrivateDevices", "DeviceAllow"):
        assert setting not in service, setting


def test_the_sample_profile_validates_strictly(tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert main(["validate", "--strict", str(REPO / "packaging" / "pilot.yaml")]) == 0, capsys.readouterr().out
    text = (REPO / "packaging" / "pilot.yaml").read_text(encoding="utf-8")
    assert re.search(r"^extends: \[base/linux\]", text, re.M)
    # the commented mqtt block, uncommented, is valid too
    head, _, tail = text.partition("# mqtt:\n")
    uncommented = head + "mqtt:\n" + re.sub(r"^# ", "", tail, flags=re.M)
    assert "password_file: /etc/pilot/mqtt.pass" in uncommented
    (tmp_path / "with-mqtt.yaml").write_text(with_its_files(uncommented, tmp_path), encoding="utf-8")
    assert main(["validate", "--strict", str(tmp_path / "with-mqtt.yaml")]) == 0, capsys.readouterr().out


def test_the_pre_commit_hook_runs_pilot_validate_on_profiles_only():
    hooks = YAML(typ="safe").load((REPO / ".pre-commit-hooks.yaml").read_text(encoding="utf-8"))
    hook = next(h for h in hooks if h["id"] == "pilot-validate")
    assert hook["entry"] == "pilot validate" and hook["language"] == "python" and hook["pass_filenames"] is True
    scripts = tomllib.loads((REPO / "pyproject.toml").read_text(encoding="utf-8"))["project"]["scripts"]
    assert "pilot" in scripts  # what `language: python` installs, and `entry` runs
    files = re.compile(hook["files"])
    for path in (
        "profiles/base/linux.yaml",
        "profiles/linux-laptop/pack.yaml",
        "home/pilot/office.yml",
        "pilot.yaml",
        "machines/office.pilot.yaml",
    ):
        assert files.search(path), path
    for path in (
        ".github/workflows/ci.yml",
        "docker-compose.yml",
        "mkdocs.yml",
        "copilot.yaml",
        "profiles/README.md",
        ".pre-commit-hooks.yaml",
    ):
        assert not files.search(path), path


def test_the_shipped_packs_pass_the_hook(tmp_path, capsys, monkeypatch):
    """What the hook (and the GitHub Actions step in docs/deploy.md) runs on this repository."""
    monkeypatch.chdir(REPO)
    assert main(["validate", "--format", "github", "profiles/"]) == 0, capsys.readouterr().out


def deploy_profiles() -> list[tuple[str, str]]:
    text = (REPO / "docs" / "deploy.md").read_text(encoding="utf-8")
    return re.findall(r"```yaml\n# (/etc/pilot/[\w.-]+\.yaml|/config/pilot/[\w.-]+\.yaml)\n(.*?)```", text, re.S)


def test_the_deploy_guide_profiles_are_valid(tmp_path, capsys, monkeypatch):
    found = deploy_profiles()
    assert found, "docs/deploy.md should show /etc/pilot/pilot.yaml"
    monkeypatch.chdir(tmp_path)
    for name, body in found:
        path = tmp_path / Path(name).name
        path.write_text(with_its_files(body, tmp_path), encoding="utf-8")
        assert main(["validate", "--strict", str(path)]) == 0, f"{name}:\n{capsys.readouterr().out}"


def test_the_deploy_guide_matches_the_package():
    text = (REPO / "docs" / "deploy.md").read_text(encoding="utf-8")
    for fact in (
        "/etc/pilot/pilot.yaml",
        "/opt/pilot/bin/pilot",
        "/var/lib/pilot",
        "pilot privileges",
        "pilot keygen",
        "pilot send",
        "pilot validate --format github profiles/",
        "docs/service.md",
        "pilot/+/cmd/#",
        "homeassistant/device/",
        "make deb",
        "make rpm",
        "/usr/share/pilot/schemas/profile.v1.schema.json",  # where the packages put them (test_packages.py)
        "/usr/share/man/man1/pilot.1.gz",
        "/usr/share/doc/pilot-agent/",
        "`reference.md`",
    ):
        assert fact in text, fact


def test_no_document_installs_what_is_not_published():
    """Pilot is not on PyPI: `pip install pilot-agent` would fail, or install somebody else's project."""
    unpublished = re.compile(r"pip install ['\"]?pilot-agent(?!\s*@)")
    for path in [REPO / "README.md", *sorted((REPO / "docs").glob("*.md")), *sorted(REPO.glob("*/README.md"))]:
        for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
            assert not unpublished.search(line), f"{path.relative_to(REPO)}:{number}: {line.strip()}"


@pytest.mark.parametrize(
    "python, deb",
    [
        ("0.1.0", "0.1.0"),
        ("1.2.0rc1", "1.2.0~rc1"),
        ("1.2.0.dev3", "1.2.0~dev3"),
        ("1.2.0a1", "1.2.0~a1"),
        ("1.2.0.post2", "1.2.0+post2"),
    ],
)
def test_package_versions_sort_like_python_versions(python, deb):
    assert load_build().debian_version(python) == deb


def test_one_metadata_source():
    build = load_build()
    meta = build.load_meta()
    project = tomllib.loads((REPO / "pyproject.toml").read_text(encoding="utf-8"))["project"]
    assert meta.name == project["name"] == "pilot-agent"
    assert meta.license == "Apache-2.0"
    assert meta.dependencies == project["dependencies"]
    from pilot import __version__

    assert meta.version == __version__
    control = build.deb_control(meta, "amd64", 1)
    assert f"Version: {__version__}-1\n" in control
    description = control.split("\nDescription: ", 1)[1].splitlines()
    assert all(len(line) <= 80 for line in description)  # Debian policy: short lines, paragraphs " ."
    assert " ." in description
    assert f"python3 (>= {meta.pythons[0]})" in control
    spec = build.rpm_spec(meta, Path("/payload"), "x86_64")
    assert "@" not in re.sub(r"<[^>]*>", "", spec)  # every placeholder filled (the maintainer's e-mail aside)
    assert f"Version: {build.debian_version(__version__)}\n" in spec


# ---------------------------------------------------------------- maintainer scripts, with stand-ins


def run_script(name: str, tmp_path: Path, *args: str, env: dict | None = None, known_users: str = ""):
    """Run a .deb maintainer script with getent/adduser/systemctl/... replaced by stand-ins that record
    their arguments. Only paths that do not exist on a host without the package are touched."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir(exist_ok=True)
    log = tmp_path / "calls.log"
    for tool in ("adduser", "deluser", "delgroup", "systemctl", "systemd-sysusers"):
        (bin_dir / tool).write_text(f'#!/bin/sh\necho "{tool} $*" >> "{log}"\n', encoding="utf-8")
        (bin_dir / tool).chmod(0o755)
    (bin_dir / "getent").write_text(
        f'#!/bin/sh\necho "getent $*" >> "{log}"\n'
        f'for u in {known_users or "-"}; do [ "$2" = "$u" ] && exit 0; done\nexit 2\n',
        encoding="utf-8",
    )
    (bin_dir / "getent").chmod(0o755)
    proc = subprocess.run(
        ["sh", str(REPO / "packaging" / "deb" / name), *args],
        capture_output=True,
        text=True,
        env={"PATH": f"{bin_dir}:/usr/bin:/bin", **(env or {})},
    )
    calls = log.read_text(encoding="utf-8").splitlines() if log.exists() else []
    log.unlink(missing_ok=True)
    return proc, calls


@pytest.mark.skipif(
    Path("/opt/pilot").exists() or Path("/run/systemd/system").exists(),
    reason="runs the scripts for real paths: only where Pilot is not installed and systemd is not running",
)
def test_postinst_creates_the_user_and_starts_nothing(tmp_path):
    proc, calls = run_script("postinst", tmp_path, "configure", "")
    assert proc.returncode == 0, proc.stderr
    assert "adduser --quiet --system --group --home /var/lib/pilot --no-create-home pilot" in calls
    assert not any(c.startswith("systemctl") for c in calls)
    assert "systemctl enable --now pilot" in proc.stdout  # told, not done
    proc, calls = run_script("postinst", tmp_path, "configure", "0.0.9-1", known_users="pilot")
    assert proc.returncode == 0 and not any(c.startswith("adduser") for c in calls)
    assert proc.stdout == ""  # an upgrade says nothing


def test_maintainer_scripts_touch_only_dpkg_root(tmp_path):
    root = tmp_path / "root"
    (root / "var/lib/pilot").mkdir(parents=True)
    (root / "var/lib/pilot/nonces.log").write_text("x", encoding="utf-8")
    env = {"DPKG_ROOT": str(root)}
    proc, calls = run_script("postinst", tmp_path, "configure", "", env=env)
    assert proc.returncode == 0, proc.stderr
    assert calls == [f"systemd-sysusers --root={root} pilot-agent.conf"]
    for script, args in (("prerm", ("remove",)), ("postrm", ("remove",)), ("postrm", ("purge",))):
        proc, calls = run_script(script, tmp_path, *args, env=env)
        assert proc.returncode == 0, proc.stderr
        assert calls == [], (script, calls)
    assert not (root / "var/lib/pilot").exists()


def test_rpm_scriptlets_are_valid_shell():
    spec = load_build().rpm_spec(load_build().load_meta(), Path("/payload"), "x86_64")
    sections = re.split(r"^(%\w+)\n", spec, flags=re.M)
    scriptlets = dict(zip(sections[1::2], sections[2::2]))
    assert {"%pre", "%post", "%preun", "%postun"} <= set(scriptlets)
    for name in ("%pre", "%post", "%preun", "%postun"):
        syntax = subprocess.run(["sh", "-n"], input=scriptlets[name], capture_output=True, text=True)
        assert syntax.returncode == 0, f"{name}: {syntax.stderr}"
    assert "systemctl start" not in spec and "enable --now pilot\n" in scriptlets["%post"]
    assert "%config(noreplace) /etc/pilot/pilot.yaml" in scriptlets["%files"]


def test_the_desktop_entry_is_valid_and_runs_the_local_console():
    """The menu's "Pilot settings": checked by freedesktop's own validator, and its command line is one the
    parser takes (`pilot console --open`, a console for this machine on 127.0.0.1)."""
    import shutil

    from pilot.cli import build_parser

    entry = REPO / "packaging" / "pilot-settings.desktop"
    if shutil.which("desktop-file-validate") is None:
        pytest.skip("desktop-file-validate is missing (Debian: apt-get install desktop-file-utils)")
    checked = subprocess.run(["desktop-file-validate", str(entry)], capture_output=True, text=True)
    assert checked.returncode == 0 and not checked.stdout.strip(), checked.stdout + checked.stderr
    parser = configparser.ConfigParser(interpolation=None)
    parser.optionxform = str
    parser.read_string(entry.read_text(encoding="utf-8"))
    desktop = parser["Desktop Entry"]
    assert desktop["Name"] == "Pilot settings" and desktop["Terminal"] == "false"
    argv = desktop["Exec"].split()
    assert argv[0] == "pilot"
    args = build_parser().parse_args(argv[1:])
    assert args.open_local is True and args.command == "console"
    assert (REPO / "packaging" / f"{desktop['Icon']}.svg").is_file()
