"""The rendered units: the directives the brief asks for, and `systemd-analyze verify` finds no syntax error."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest

from pilot.service import systemd as service

SYSTEMD_ANALYZE = shutil.which("systemd-analyze")
# what `systemd-analyze verify` says about a unit file it cannot read as written
SYNTAX = re.compile(
    r"Unknown (key|section|lvalue)|Failed to parse|Invalid|Missing|not executable|"
    r"bad unit file setting|Assignment outside of section|ignoring",
    re.I,
)


def _values(unit: str, key: str) -> list[str]:
    return [line.split("=", 1)[1] for line in unit.splitlines() if line.startswith(key + "=")]


def _system(exe: str = "/usr/bin/pilot", **kw) -> str:
    return service.render_system_unit([exe], "/etc/pilot/office.yaml", "pilot", **kw)


def test_system_unit_has_the_service_settings():
    unit = _system()
    expected = {
        "Type": "notify",
        "NotifyAccess": "main",
        "User": "pilot",
        "ExecStart": "/usr/bin/pilot run /etc/pilot/office.yaml --state-dir /var/lib/pilot",
        "ExecReload": "/bin/kill -HUP $MAINPID",
        "Restart": "on-failure",
        "RestartSec": "5",
        "TimeoutStopSec": "15",
        "WatchdogSec": "60",
        "StateDirectory": "pilot",
        "StateDirectoryMode": "0700",
        "ConfigurationDirectory": "pilot",
        "ProtectSystem": "strict",
        "ProtectHome": "true",
        "NoNewPrivileges": "true",
        "PrivateTmp": "true",
        "ProtectKernelTunables": "true",
        "RestrictAddressFamilies": "AF_UNIX AF_INET AF_INET6 AF_NETLINK",
        "SyslogIdentifier": "pilot",
        "CapabilityBoundingSet": "",
        "WantedBy": "multi-user.target",
    }
    for key, value in expected.items():
        assert _values(unit, key) == [value], key
    assert "Environment=PYTHONUNBUFFERED=1" in unit.splitlines()
    assert not _values(unit, "ReadWritePaths")  # nothing to write: /sys stays read-only


def test_system_unit_pokes_holes_only_for_the_sysfs_folders_it_writes():
    unit = _system(rw_paths=["-/sys/devices/system/cpu"])
    assert _values(unit, "ReadWritePaths") == ["-/sys/devices/system/cpu"]
    assert _values(unit, "ProtectKernelTunables") == ["true"]


def test_exec_words_are_quoted_and_escaped_for_systemd():
    unit = service.render_system_unit(
        ["/opt/my pilot/bin/pilot"], "/etc/pilot/50%.yaml", "pilot", env={"PYTHONPATH": "/opt/a b"}
    )
    assert _values(unit, "ExecStart") == [
        '"/opt/my pilot/bin/pilot" run /etc/pilot/50%%.yaml --state-dir /var/lib/pilot'
    ]
    assert 'Environment="PYTHONPATH=/opt/a b"' in unit.splitlines()
    assert service.systemd_quote("$HOME") == "$$HOME"


def test_user_unit_has_no_user_and_no_system_only_hardening():
    unit = service.render_user_unit(["/usr/bin/pilot"], "/home/ann/office.yaml")
    assert not _values(unit, "User")
    for key in (
        "ProtectSystem",
        "ProtectHome",
        "PrivateTmp",
        "ProtectKernelTunables",
        "StateDirectory",
        "CapabilityBoundingSet",
        "ReadWritePaths",
    ):
        assert not _values(unit, key), key
    assert _values(unit, "ExecStart") == ["/usr/bin/pilot run /home/ann/office.yaml"]
    assert _values(unit, "Type") == ["notify"] and _values(unit, "WatchdogSec") == ["60"]
    assert _values(unit, "WantedBy") == ["default.target"]


def _verify(unit_text: str, folder: Path, *, user: bool) -> str:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "pilot.service"
    path.write_text(unit_text)
    env = {**os.environ, "SYSTEMD_LOG_COLOR": "0"}
    argv = [SYSTEMD_ANALYZE]
    if user:
        runtime = folder / "xdg-runtime"
        runtime.mkdir(mode=0o700)
        env["XDG_RUNTIME_DIR"] = str(runtime)
        argv.append("--user")
    argv += ["verify", "--man=no", "--generators=no", str(path)]
    proc = subprocess.run(argv, capture_output=True, text=True, env=env, timeout=60)
    return proc.stdout + proc.stderr


@pytest.mark.skipif(SYSTEMD_ANALYZE is None, reason="systemd-analyze is not installed (apt-get install systemd)")
@pytest.mark.parametrize("user", [False, True], ids=["system", "user"])
def test_systemd_analyze_verify_finds_no_syntax_error(tmp_path, fake_pilot, user):
    if user:
        unit = service.render_user_unit([str(fake_pilot)], str(tmp_path / "office.yaml"), env={"PYTHONPATH": "/x y"})
    else:
        unit = _system(
            str(fake_pilot),
            rw_paths=["-/sys/devices/system/cpu", "-/sys/class/backlight"],
            env={"PYTHONPATH": "/opt/x y"},
            home="read-only",
        )
    out = _verify(unit, tmp_path / "units", user=user)
    problems = [line for line in out.splitlines() if SYNTAX.search(line) and "pilot.service" in line]
    assert not problems, out


@pytest.mark.skipif(SYSTEMD_ANALYZE is None, reason="systemd-analyze is not installed (apt-get install systemd)")
def test_the_verify_check_does_catch_a_broken_unit(tmp_path, fake_pilot):
    unit = _system(str(fake_pilot)).replace("Restart=on-failure", "Restart=sometimes\nBogus=1")
    out = _verify(unit, tmp_path / "units", user=False)
    problems = [line for line in out.splitlines() if SYNTAX.search(line) and "pilot.service" in line]
    assert len(problems) == 2, out
