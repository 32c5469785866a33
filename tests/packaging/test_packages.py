"""The .deb and the .rpm: built by packaging/build.py, inspected with dpkg-deb / rpm, and the .deb
installed with `dpkg --root` into a throwaway root, where the installed `pilot` runs on the
system's /usr/bin/python3 with nothing but the libraries the package carries.

Needs dpkg-deb (and dpkg) for the .deb, rpmbuild (Debian: the `rpm` package) for the .rpm; each
part is skipped, with the reason, where its tool is missing. The build fetches wheels with pip
(PyPI or the mirror pip is set up for) once per run; pip's cache makes later runs fast.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow

REPO = Path(__file__).resolve().parents[2]
SYSTEM_PYTHON = Path("/usr/bin/python3")


def system_python_version() -> str | None:
    if not SYSTEM_PYTHON.exists():
        return None
    proc = subprocess.run(
        [str(SYSTEM_PYTHON), "-c", "import sys; print('%d.%d' % sys.version_info[:2])"], capture_output=True, text=True
    )
    return proc.stdout.strip() or None


# Fewer interpreters than packaging/package.toml lists (each costs a pip run): two, so that sharing
# lib/common is tested, and this host's own, so that the installed package can run here.
def _key(version: str) -> tuple[int, ...]:
    return tuple(map(int, version.split(".")))


_versions = {"3.11", "3.12"}
if system_python_version() and _key(system_python_version()) >= (3, 11):
    _versions.add(system_python_version())
PYTHONS = ",".join(sorted(_versions, key=_key))
TOP = PYTHONS.split(",")[-1]
NEXT = f"{TOP.split('.')[0]}.{int(TOP.split('.')[1]) + 1}"


def version() -> str:
    text = (REPO / "engine" / "pilot" / "__init__.py").read_text(encoding="utf-8")
    return re.search(r'__version__ = "([^"]+)"', text).group(1)


@pytest.fixture(scope="module")
def packages(tmp_path_factory) -> dict[str, Path]:
    formats = [f for f, tool in (("deb", "dpkg-deb"), ("rpm", "rpmbuild")) if shutil.which(tool)]
    if not formats:
        pytest.skip("neither dpkg-deb nor rpmbuild is installed (Debian: apt-get install dpkg-dev rpm)")
    work = tmp_path_factory.mktemp("packaging")
    proc = subprocess.run(
        [
            sys.executable,
            str(REPO / "packaging" / "build.py"),
            *formats,
            "--out",
            str(work / "dist"),
            "--work",
            str(work / "work"),
            "--pythons",
            PYTHONS,
        ],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    built = {Path(line).suffix.lstrip("."): Path(line) for line in proc.stdout.split()}
    assert set(built) == set(formats), proc.stdout
    return built


@pytest.fixture(scope="module")
def deb(packages) -> Path:
    if "deb" not in packages:
        pytest.skip("dpkg-deb is not installed")
    return packages["deb"]


@pytest.fixture(scope="module")
def rpm(packages) -> Path:
    if "rpm" not in packages:
        pytest.skip("rpmbuild is not installed (Debian/Ubuntu: apt-get install rpm)")
    if not shutil.which("rpm"):
        pytest.skip("rpm is not installed")
    return packages["rpm"]


# The documentation, the schemas and the manual page, at the paths docs/deploy.md gives.
SHIPPED = (
    "/usr/share/doc/pilot-agent/reference.md",
    "/usr/share/doc/pilot-agent/deploy.md",
    "/usr/share/pilot/schemas/profile.v1.schema.json",
    "/usr/share/pilot/schemas/pack.v1.schema.json",
    "/usr/share/man/man1/pilot.1.gz",
    "/usr/share/applications/pilot-settings.desktop",
    "/usr/share/icons/hicolor/scalable/apps/pilot-settings.svg",
)


def check_shipped_files(root: Path) -> None:
    """An unpacked package's docs and schemas are the repository's, and its manual page is pilot(1) for
    every subcommand the parser knows."""
    import gzip

    from pilot.cli import build_parser
    from pilot.manpage import commands

    for name in ("profile.v1.schema.json", "pack.v1.schema.json"):
        assert (root / "usr/share/pilot/schemas" / name).read_bytes() == (REPO / "schemas" / name).read_bytes()
    assert (root / "usr/share/doc/pilot-agent/reference.md").read_bytes() == (REPO / "docs/reference.md").read_bytes()
    desktop = root / "usr/share/applications/pilot-settings.desktop"
    assert desktop.read_bytes() == (REPO / "packaging/pilot-settings.desktop").read_bytes()
    assert "\nExec=pilot console --open\n" in desktop.read_text(encoding="utf-8")
    page = gzip.decompress((root / "usr/share/man/man1/pilot.1.gz").read_bytes()).decode("utf-8")
    assert page.startswith('.\\" pilot.1: generated') and f'"pilot {version()}"' in page
    for name, _, _ in commands(build_parser()):
        assert f'.SS "{name}"' in page, name


def out(*cmd: str) -> str:
    proc = subprocess.run(cmd, capture_output=True, text=True)
    assert proc.returncode == 0, f"{' '.join(cmd)}:\n{proc.stdout}{proc.stderr}"
    return proc.stdout


# ---------------------------------------------------------------- .deb: what it holds


def test_deb_control_conffiles_and_maintainer_scripts(deb):
    assert deb.name == f"pilot-agent_{version()}-1_amd64.deb"
    info = out("dpkg-deb", "--info", str(deb))
    assert "Package: pilot-agent" in info
    assert f"Version: {version()}-1" in info
    assert "Architecture: amd64" in info
    depends = re.search(r"^ Depends: (.*)$", info, re.M).group(1)
    assert "python3 (>= 3.11)" in depends and f"python3 (<< {NEXT})" in depends
    assert "libc6 (>= 2.28)" in depends and "adduser" in depends
    assert out("dpkg-deb", "--info", str(deb), "conffiles").split() == ["/etc/pilot/pilot.yaml"]
    for script in ("postinst", "prerm", "postrm"):
        text = out("dpkg-deb", "--info", str(deb), script)
        assert text.startswith("#!/bin/sh\n") and "DPKG_ROOT" in text, script
        syntax = subprocess.run(["sh", "-n"], input=text, capture_output=True, text=True)
        assert syntax.returncode == 0, f"{script}: {syntax.stderr}"
    postinst = out("dpkg-deb", "--info", str(deb), "postinst")
    assert "adduser --quiet --system --group --home /var/lib/pilot --no-create-home pilot" in postinst
    assert "[ -d /run/systemd/system ]" in postinst
    assert "systemctl start" not in postinst and "enable --now" in postinst  # only printed, never run
    assert "systemctl stop pilot.service" in out("dpkg-deb", "--info", str(deb), "prerm")
    postrm = out("dpkg-deb", "--info", str(deb), "postrm")
    assert "deluser" in postrm and 'rm -rf "$DPKG_ROOT/var/lib/pilot"' in postrm


def test_deb_contents(deb):
    listing = out("dpkg-deb", "--contents", str(deb))
    entries = {}
    for line in listing.splitlines():
        mode, owner, _size, _date, _time, path, *rest = line.split()
        entries[path.removeprefix(".")] = (mode, owner, " ".join(rest))
    assert entries["/lib/systemd/system/pilot.service"][0] == "-rw-r--r--"
    assert entries["/opt/pilot/bin/pilot"][0] == "-rwxr-xr-x"
    assert entries["/usr/bin/pilot"][2] == "-> /opt/pilot/bin/pilot"
    assert "/usr/share/doc/pilot-agent/changelog.Debian.gz" in entries
    assert entries["/etc/pilot/pilot.yaml"][0] == "-rw-r--r--"
    assert "/usr/lib/sysusers.d/pilot-agent.conf" in entries
    assert "/usr/share/doc/pilot-agent/copyright" in entries
    assert "/usr/share/doc/pilot-agent/deploy.md" in entries
    for path in SHIPPED:  # where docs/deploy.md says they are
        assert entries[path][0] == "-rw-r--r--", path
    assert all(owner == "root/root" for _, owner, _ in entries.values())
    assert "/opt/pilot/lib/common/pilot/data/schemas/profile.v1.schema.json" in entries
    assert "/opt/pilot/lib/common/pilot/data/profiles/base/linux.yaml" in entries
    for py in PYTHONS.split(","):  # compiled parts, once per Python version
        tag = py.replace(".", "")
        assert any(p.startswith(f"/opt/pilot/lib/python{py}/_ruamel_yaml.cpython-{tag}-") for p in entries)
        assert any(p.startswith(f"/opt/pilot/lib/python{py}/rpds/") for p in entries)
    assert not any("__pycache__" in p or p.endswith(".pyc") for p in entries)  # postinst compiles
    assert not any(re.match(r"/opt/pilot/lib/[^/]+/bin/", p) for p in entries)  # no build-host scripts


def test_deb_ships_the_unit_and_the_sample_profile_unchanged(deb, tmp_path):
    out("dpkg-deb", "-x", str(deb), str(tmp_path))
    check_shipped_files(tmp_path)
    unit = (tmp_path / "lib/systemd/system/pilot.service").read_text(encoding="utf-8")
    assert unit == (REPO / "packaging" / "pilot.service").read_text(encoding="utf-8")
    assert (tmp_path / "etc/pilot/pilot.yaml").read_bytes() == (REPO / "packaging" / "pilot.yaml").read_bytes()


# ---------------------------------------------------------------- .deb: installed with dpkg --root


def dpkg(root: Path, *args: str) -> subprocess.CompletedProcess:
    # --force-script-chrootless: run the maintainer scripts on this host with DPKG_ROOT=root (they
    # create no host user and touch no host systemd then); --force-depends: the root has no python3
    return subprocess.run(
        [
            "dpkg",
            f"--root={root}",
            f"--log={root}/dpkg.log",
            "--force-script-chrootless",
            "--force-depends",
            "--force-not-root",
            "--no-triggers",
            *args,
        ],
        capture_output=True,
        text=True,
    )


@pytest.fixture(scope="module")
def installed(deb, tmp_path_factory) -> Path:
    if not shutil.which("dpkg"):
        pytest.skip("dpkg is not installed")
    if os.geteuid() != 0:
        pytest.skip("dpkg --root needs root to set the owners of the installed files")
    root = tmp_path_factory.mktemp("root")
    for sub in ("updates", "info", "triggers"):
        (root / "var/lib/dpkg" / sub).mkdir(parents=True)
    (root / "var/lib/dpkg/status").touch()
    proc = dpkg(root, "--install", str(deb))
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return root


def pilot(root: Path, *args: str, cwd: Path, input: str | None = None) -> subprocess.CompletedProcess:
    ver = system_python_version()
    if ver is None:
        pytest.skip(f"{SYSTEM_PYTHON} is missing: the packaged launcher runs on the system's Python")
    if ver not in PYTHONS.split(","):
        pytest.skip(f"{SYSTEM_PYTHON} is Python {ver}, older than Pilot supports")
    # a bare environment: no venv, no PYTHONPATH; the launcher must find everything itself
    env = {"PATH": "/usr/bin:/bin", "HOME": str(cwd), "LANG": "C.UTF-8"}
    # /usr/bin/pilot is an absolute link to /opt/pilot/bin/pilot: inside a root, run its target
    return subprocess.run(
        [str(root / "opt/pilot/bin/pilot"), *args], capture_output=True, text=True, cwd=cwd, env=env, input=input
    )


def test_dpkg_registers_the_package_and_its_conffile(installed):
    status = out("dpkg", f"--root={installed}", "--status", "pilot-agent")
    assert "Status: install ok installed" in status
    assert re.search(r"^Conffiles:\n /etc/pilot/pilot.yaml [0-9a-f]{32}$", status, re.M)
    files = out("dpkg", f"--root={installed}", "--listfiles", "pilot-agent").split()
    assert "/lib/systemd/system/pilot.service" in files and "/usr/bin/pilot" in files


def test_installed_pilot_runs_on_the_system_python(installed, tmp_path):
    result = pilot(installed, "--version", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == f"pilot {version()}"


def test_installed_pilot_carries_the_console_for_the_desktop_entry(installed, tmp_path):
    """`pilot console --open` (the menu's "Pilot settings") needs the console extra on the system Python:
    argon2's compiled part hashes a password, and the console's pages are in the package."""
    users = tmp_path / "users"
    added = pilot(
        installed, "console", "user", "add", "ann", "--role", "admin", "--password-stdin", "--users", str(users),
        cwd=tmp_path, input="correct horse battery\n",
    )  # fmt: skip
    assert added.returncode == 0, added.stdout + added.stderr
    assert users.read_text(encoding="utf-8").startswith("ann:admin:$argon2id$")
    static = installed / "opt/pilot/lib/common/pilot/console/static"
    assert (static / "index.html").is_file() and list(static.glob("assets/*.js"))


def test_installed_pilot_validates_the_shipped_profile_and_a_broken_one(installed, tmp_path):
    ok = pilot(installed, "validate", str(installed / "etc/pilot/pilot.yaml"), cwd=tmp_path)
    assert ok.returncode == 0, ok.stdout + ok.stderr
    assert "1 file checked: 0 error(s)" in ok.stdout
    broken = tmp_path / "broken.yaml"
    broken.write_text("pilot: 1\nextends: [base/linux]\nsensors:\n  cpu: {probe: cpu.precent}\n", encoding="utf-8")
    bad = pilot(installed, "validate", str(broken), cwd=tmp_path)
    assert bad.returncode == 1, bad.stdout + bad.stderr
    assert f"{broken}:4:16: error: $.sensors.cpu.probe: unknown probe 'cpu.precent'" in bad.stdout


def test_installed_pilot_compiles_in_its_child_process(installed, tmp_path):
    """`pilot privileges` compiles the profile in a child `python -m pilot.profile.worker`, which must
    find the bundled libraries too; its output, cut as docs/deploy.md says, is the polkit rule alone."""
    text = (REPO / "docs" / "deploy.md").read_text(encoding="utf-8")
    profile = re.search(r"```yaml\n# /etc/pilot/pilot.yaml\n(.*?)```", text, re.S).group(1)
    (tmp_path / "pilot.yaml").write_text(profile, encoding="utf-8")
    result = pilot(
        installed, "privileges", str(tmp_path / "pilot.yaml"), "--state-dir", str(tmp_path / "state"), cwd=tmp_path
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert (tmp_path / "state" / "plan-cache.json").exists()
    rule = subprocess.run(["sed", "/^$/,$d"], input=result.stdout, capture_output=True, text=True).stdout
    assert "polkit.addRule(function(action, subject) {" in rule and rule.rstrip().endswith("});")
    assert '"org.freedesktop.login1.power-off"' in rule and 'subject.user == "pilot"' in rule
    assert not any(line.startswith("#") for line in rule.splitlines())  # not JavaScript


def test_installed_agent_announces_itself(installed, tmp_path):
    """The packaged agent end to end: paho, psutil, the compile worker, discovery on a real broker."""
    from testkit.broker import Mosquitto, Watcher, find_mosquitto

    if find_mosquitto() is None:
        pytest.skip("mosquitto is not installed (./dev test installs it)")
    broker = Mosquitto().start()
    watcher = Watcher(broker.port, topics=("homeassistant/#", "pilot/#")).start()
    try:
        # --dry-run: as root, `pilot run` refuses to start otherwise (the service runs as `pilot`)
        result = pilot(
            installed,
            "run",
            str(installed / "etc/pilot/pilot.yaml"),
            "--broker",
            f"127.0.0.1:{broker.port}",
            "--once",
            "--dry-run",
            "--state-dir",
            str(tmp_path / "state"),
            cwd=tmp_path,
        )
        assert result.returncode == 0, result.stdout + result.stderr
        found = watcher.wait_for(lambda m: re.fullmatch(r"homeassistant/device/[\w-]+/config", m.topic), timeout=10)
        assert found is not None, result.stderr
        assert json.loads(found.payload)["device"]["name"] == "My computer"
    finally:
        watcher.stop()
        broker.cleanup()


def test_purge_leaves_nothing_behind(installed, tmp_path):
    pilot(installed, "--version", cwd=tmp_path)  # byte code written at run time must go too
    proc = dpkg(installed, "--purge", "pilot-agent")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    left = sorted(
        str(p.relative_to(installed))
        for p in installed.rglob("*")
        if p.is_file() and not str(p.relative_to(installed)).startswith(("var/lib/dpkg", "dpkg.log", "etc/"))
    )
    assert left == []
    for gone in ("opt/pilot", "etc/pilot", "lib/systemd/system/pilot.service", "usr/bin/pilot"):
        assert not (installed / gone).exists(), gone
    assert "pilot-agent" not in out("dpkg", f"--root={installed}", "--get-selections")


# ---------------------------------------------------------------- .rpm


def test_rpm_header_files_and_scripts(rpm):
    assert rpm.name == f"pilot-agent-{version()}-1.x86_64.rpm"
    fields = out("rpm", "-qp", "--queryformat", "%{NAME} %{VERSION} %{RELEASE} %{LICENSE}", str(rpm))
    assert fields == f"pilot-agent {version()} 1 Apache-2.0"
    files = out("rpm", "-qpl", str(rpm)).split()
    for path in (
        "/opt/pilot/bin/pilot",
        "/usr/bin/pilot",
        "/usr/lib/systemd/system/pilot.service",
        "/etc/pilot/pilot.yaml",
        "/usr/lib/sysusers.d/pilot-agent.conf",
        "/usr/share/doc/pilot-agent/copyright",
        "/opt/pilot/lib/common/pilot/data/schemas/profile.v1.schema.json",
        *SHIPPED,
    ):
        assert path in files, path
    assert not any("__pycache__" in p for p in files)
    assert out("rpm", "-qp", "--configfiles", str(rpm)).split() == ["/etc/pilot/pilot.yaml"]
    requires = out("rpm", "-qp", "--requires", str(rpm))
    assert "python3 >= 3.11" in requires and "python3.11" in requires
    scripts = out("rpm", "-qp", "--scripts", str(rpm))
    assert "useradd -r -g pilot -d /var/lib/pilot" in scripts
    assert "systemctl --no-reload disable --now pilot.service" in scripts
    assert "systemctl start" not in scripts


def test_rpm_payload_runs_from_an_rpm_root(rpm, tmp_path):
    """rpm --root into an empty database (no scriptlets: they would chroot into a root without a shell)."""
    if os.geteuid() != 0:
        pytest.skip("rpm --root needs root to set the owners of the installed files")
    root = tmp_path / "root"
    root.mkdir()
    out("rpm", "--root", str(root), "--initdb")
    out("rpm", "--root", str(root), "--install", "--nodeps", "--noscripts", "--notriggers", str(rpm))
    assert out("rpm", "--root", str(root), "-qc", "pilot-agent").split() == ["/etc/pilot/pilot.yaml"]
    result = pilot(root, "validate", str(root / "etc/pilot/pilot.yaml"), cwd=tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr
    check_shipped_files(root)
