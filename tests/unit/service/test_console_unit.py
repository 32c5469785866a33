"""The console's systemd unit (pilot.service.console): its own user, the hardening, and what install and
uninstall plan. No command runs: plans are inspected, files go under tmp_path."""

from __future__ import annotations

import re
import shutil
import subprocess

import pytest

from pilot.service import console as unit
from pilot.service.systemd import InstallError, RecordingRunner, Result


def _values(text: str, key: str) -> list[str]:
    return [line.split("=", 1)[1] for line in text.splitlines() if line.startswith(key + "=")]


def test_the_system_unit_runs_the_console_as_its_own_user_hardened():
    text = unit.render_system_unit(["/opt/pilot/bin/pilot"])
    expected = {
        "User": "pilot-console",
        "ExecStart": "/opt/pilot/bin/pilot console run --config /etc/pilot/console.yaml "
        "--state-dir /var/lib/pilot-console",
        "Type": "exec",
        "Restart": "on-failure",
        "StateDirectory": "pilot-console",
        "StateDirectoryMode": "0700",
        "UMask": "0077",
        "NoNewPrivileges": "true",
        "ProtectSystem": "strict",
        "ProtectHome": "true",
        "PrivateTmp": "true",
        "PrivateDevices": "true",
        "RestrictAddressFamilies": "AF_UNIX AF_INET AF_INET6",
        "CapabilityBoundingSet": "",
        "SystemCallFilter": "@system-service",
        "WantedBy": "multi-user.target",
    }
    for key, value in expected.items():
        assert _values(text, key) == [value], key
    assert not _values(text, "ReadWritePaths")  # nothing outside its state folder is written


def test_a_config_path_with_spaces_is_quoted_and_a_newline_refused():
    text = unit.render_system_unit(["/usr/bin/pilot"], "/etc/pilot/my console.yaml")
    assert _values(text, "ExecStart") == [
        '/usr/bin/pilot console run --config "/etc/pilot/my console.yaml" --state-dir /var/lib/pilot-console'
    ]
    with pytest.raises(InstallError, match="U\\+000A"):
        unit.plan_install(system=True, config="/etc/pilot/x\nExecStartPre=/bin/sh", exec_override="/usr/bin/pilot")


def test_a_hostile_service_user_is_refused():
    for user in ("0", "-x", "a b", "a\nb"):
        with pytest.raises(InstallError, match="is not allowed"):
            unit.plan_install(system=True, user=user, exec_override="/usr/bin/pilot", exists=lambda _: True)


def test_install_creates_the_user_when_missing_and_never_runs_as_root(tmp_path):
    changes = unit.plan_install(system=True, exec_override="/usr/bin/pilot", root=tmp_path, exists=lambda _: False)
    assert changes.commands_before[0].argv[:2] == ("useradd", "--system")
    assert changes.commands_before[0].argv[-1] == "pilot-console"
    assert [c.argv for c in changes.commands] == [
        ("systemctl", "daemon-reload"),
        ("systemctl", "enable", "--now", "pilot-console"),
    ]
    assert any("console.yaml does not exist yet" in w for w in changes.warnings)
    as_root = unit.plan_install(system=True, exec_override="/usr/bin/pilot", user="root", root=tmp_path)
    assert as_root.blockers == ["the console is a web server: it does not run as root; name another --service-user"]


def test_an_existing_users_file_is_given_to_the_console_user(tmp_path):
    (tmp_path / "etc/pilot").mkdir(parents=True)
    (tmp_path / "etc/pilot/console-users").write_text("")
    changes = unit.plan_install(system=True, exec_override="/usr/bin/pilot", root=tmp_path, exists=lambda _: True)
    assert ("chown", "pilot-console:pilot-console", "/etc/pilot/console-users") in [c.argv for c in changes.commands]
    assert changes.commands_before == []


def test_uninstall_keeps_etc_pilot_and_purge_removes_only_the_consoles_state():
    assert unit.plan_uninstall(system=True, purge=False).removals == ["/etc/systemd/system/pilot-console.service"]
    assert unit.plan_uninstall(system=True, purge=True).removals == [
        "/etc/systemd/system/pilot-console.service",
        "/var/lib/pilot-console",
    ]


def test_apply_restarts_the_console_not_the_agent_when_it_was_running(tmp_path):
    changes = unit.plan_install(system=True, exec_override="/usr/bin/pilot", root=tmp_path, exists=lambda _: True)
    runner = RecordingRunner(results={("systemctl", "is-active", "--quiet", "pilot-console"): Result(0, "")})
    assert unit.apply(changes, runner, root=tmp_path, say=lambda _: None) == 0
    assert runner.calls[-1] == ["systemctl", "restart", "pilot-console"]
    assert not any(call[-1] == "pilot" for call in runner.calls)
    assert (tmp_path / "etc/systemd/system/pilot-console.service").read_text().startswith("# /etc/systemd")


def test_a_failing_command_stops_apply_with_its_message(tmp_path):
    changes = unit.plan_install(system=True, exec_override="/usr/bin/pilot", root=tmp_path, exists=lambda _: True)
    runner = RecordingRunner(results={("systemctl", "daemon-reload"): Result(1, "boom\n")})
    said = []
    assert unit.apply(changes, runner, root=tmp_path, say=said.append) == 1
    assert said[-1] == "pilot: error: `systemctl daemon-reload` failed: boom"


def test_the_user_unit_runs_the_given_config():
    text = unit.render_user_unit(["/usr/bin/pilot"], "/home/me/.config/pilot/console.yaml")
    assert _values(text, "ExecStart") == ["/usr/bin/pilot console run --config /home/me/.config/pilot/console.yaml"]
    assert _values(text, "WantedBy") == ["default.target"]


def test_systemd_analyze_finds_no_syntax_error_in_the_unit(tmp_path, fake_pilot):
    analyze = shutil.which("systemd-analyze")
    assert analyze, "systemd-analyze is installed by ./dev (systemd package)"
    path = tmp_path / "pilot-console.service"
    path.write_text(unit.render_system_unit([str(fake_pilot)]).replace("User=pilot-console", "User=root"))
    proc = subprocess.run([analyze, "verify", str(path)], capture_output=True, text=True)
    bad = [
        line
        for line in proc.stderr.splitlines()
        if re.search(r"Unknown (key|section|lvalue)|Failed to parse|Invalid|bad unit file setting", line, re.I)
    ]
    assert bad == []
