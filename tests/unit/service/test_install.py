"""`pilot service install | uninstall | status`: --print, --root, and the commands a RecordingRunner saw."""

from __future__ import annotations

import re
import stat
from pathlib import Path

import pytest

from pilot.cli import main
from pilot.service import systemd as service

from .conftest import BASIC, PRIVILEGED, REPO, write

EXE = "/usr/local/bin/pilot"  # outside /tmp and /home, where the sandbox would hide it; need not exist


def _files(out: str) -> dict[str, str]:
    """--print output: path -> content, for every `==> PATH (mode ...) <==` section."""
    files, current = {}, None
    for line in out.splitlines():
        head = re.match(r"==> (/\S+) \(mode \d+\)(?: \(copy of \S+\))? <==$", line)
        if head:
            current = head.group(1)
            files[current] = []
        elif line.startswith("==> "):
            current = None
        elif current is not None:
            files[current].append(line)
    return {k: "\n".join(v).rstrip("\n") + "\n" for k, v in files.items()}


def _commands(out: str) -> list[str]:
    return [line[2:].split("    #")[0] for line in out.splitlines() if line.startswith("$ ")]


def _unit_value(unit: str, key: str) -> list[str]:
    return [line.split("=", 1)[1] for line in unit.splitlines() if line.startswith(key + "=")]


# ------------------------------------------------------------------ --print


def test_print_system_shows_every_file_and_command_and_changes_nothing(capsys, recorded_commands):
    code = main(["service", "install", "--system", "--print", "--exec", EXE, str(BASIC)])
    out, err = capsys.readouterr()
    assert code == 0, err
    files = _files(out)
    assert set(files) == {"/etc/systemd/system/pilot.service", "/etc/pilot/basic.yaml"}
    unit = files["/etc/systemd/system/pilot.service"]
    assert _unit_value(unit, "ExecStart") == [f"{EXE} run /etc/pilot/basic.yaml --state-dir /var/lib/pilot"]
    assert _unit_value(unit, "User") == ["pilot"]
    assert files["/etc/pilot/basic.yaml"] == BASIC.read_text()
    commands = _commands(out)
    assert commands[-3:] == ["systemctl daemon-reload", "systemctl enable --now pilot", "systemctl restart pilot"]
    if not service.user_exists("pilot"):
        assert commands[0] == "useradd --system --user-group --home-dir /var/lib/pilot --shell /usr/sbin/nologin pilot"
    assert recorded_commands() == []  # nothing ran
    assert not Path("/etc/pilot/basic.yaml").exists() or Path("/etc/pilot/basic.yaml").read_text() != "changed"


def test_print_with_privileged_commands_adds_polkit_tmpfiles_and_sysfs_holes(tmp_path, capsys, monkeypatch):
    sysfs = tmp_path / "sys"
    (sysfs / "devices/system/cpu/cpufreq/policy0").mkdir(parents=True)
    (sysfs / "devices/system/cpu/cpufreq/policy0/scaling_max_freq").write_text("4000000\n")
    (sysfs / "devices/system/cpu/cpu0").mkdir(parents=True)
    (sysfs / "devices/system/cpu/cpu0/cpufreq").symlink_to("../cpufreq/policy0")
    panel = sysfs / "devices/pci0000:00/0000:00:02.0/drm/card0/card0-eDP-1/intel_backlight"
    panel.mkdir(parents=True)
    (panel / "brightness").write_text("100\n")
    (sysfs / "class/backlight").mkdir(parents=True)
    (sysfs / "class/backlight/intel_backlight").symlink_to(panel)
    monkeypatch.setenv("PILOT_SYSFS_ROOT", str(sysfs))
    profile = write(tmp_path, "box.yaml", PRIVILEGED)
    assert main(["service", "install", "--system", "--print", "--exec", EXE, str(profile)]) == 0
    files = _files(capsys.readouterr().out)
    unit = files["/etc/systemd/system/pilot.service"]
    assert _unit_value(unit, "ReadWritePaths") == [
        "-/sys/class/backlight -/sys/devices/pci0000:00/0000:00:02.0/drm/card0/card0-eDP-1/intel_backlight "
        "-/sys/devices/system/cpu"
    ]
    assert _unit_value(unit, "ProtectKernelTunables") == ["true"]
    rule = files["/etc/polkit-1/rules.d/50-pilot.rules"]
    assert '"org.freedesktop.login1.power-off"' in rule and 'subject.user == "pilot"' in rule
    assert not [line for line in rule.splitlines() if line.startswith("#") or line.startswith("z ")], (
        "a polkit rules file is JavaScript: no shell-style comments"
    )
    tmpfiles = files["/etc/tmpfiles.d/pilot.conf"]
    assert "z /sys/devices/system/cpu/cpu*/cpufreq/scaling_max_freq 0664 root pilot -" in tmpfiles.splitlines()
    assert "z /sys/class/backlight/*/brightness 0664 root pilot -" in tmpfiles.splitlines()


def test_a_profile_without_privileged_commands_gets_no_polkit_rule(capsys):
    assert main(["service", "install", "--system", "--print", "--exec", EXE, str(BASIC)]) == 0
    out = capsys.readouterr().out
    assert "polkit" not in out and "tmpfiles" not in out


def test_the_service_user_comes_from_the_profile(tmp_path, capsys):
    profile = write(tmp_path, "box.yaml", PRIVILEGED + "service: {user: homeauto}\n")
    assert main(["service", "install", "--system", "--print", "--exec", EXE, str(profile)]) == 0
    out = capsys.readouterr().out
    files = _files(out)
    assert _unit_value(files["/etc/systemd/system/pilot.service"], "User") == ["homeauto"]
    assert 'subject.user == "homeauto"' in files["/etc/polkit-1/rules.d/50-pilot.rules"]
    assert any(c.endswith(" homeauto") and c.startswith("useradd ") for c in _commands(out))


def test_print_user_writes_a_user_unit_with_the_profile_in_place(tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "config"))
    monkeypatch.setattr(service, "is_root", lambda: False)
    assert main(["service", "install", "--user", "--print", "--exec", EXE, str(BASIC)]) == 0
    out, err = capsys.readouterr()
    files = _files(out)
    unit = files[str(tmp_path / "config/systemd/user/pilot.service")]
    assert _unit_value(unit, "ExecStart") == [f"{EXE} run {BASIC}"]
    assert not _unit_value(unit, "User")
    assert _commands(out) == [
        "systemctl --user daemon-reload",
        "systemctl --user enable --now pilot",
        "systemctl --user restart pilot",
    ]
    assert "enable-linger" in err


def test_install_refuses_an_invalid_profile_with_file_line_col(tmp_path, capsys, recorded_commands):
    profile = write(tmp_path, "bad.yaml", "pilot: 1\nsensors:\n  cpu: {probe: cpu.percent, every: 10}\n")
    assert main(["service", "install", "--system", "--root", str(tmp_path / "root"), str(profile)]) == 1
    err = capsys.readouterr().err
    assert re.search(r"bad\.yaml:3:\d+: error: ", err), err
    assert "nothing installed" in err
    assert not (tmp_path / "root").exists() and recorded_commands() == []


def test_install_refuses_a_service_section_with_an_unknown_key(tmp_path, capsys):
    profile = write(tmp_path, "bad.yaml", "pilot: 1\nservice: {allow_rot: true}\n")
    assert main(["service", "install", "--system", "--print", str(profile)]) == 1
    assert re.search(r"bad\.yaml:2:\d+: error: .*allow_rot.*allow_root", capsys.readouterr().err)


def test_an_executable_the_sandbox_hides_blocks_install(tmp_path, capsys):
    hidden = "/tmp/venv/bin/pilot"
    assert main(["service", "install", "--system", "--print", "--exec", hidden, str(BASIC)]) == 1
    err = capsys.readouterr().err
    assert "install would refuse" in err and "PrivateTmp=true" in err
    assert (
        main(
            [
                "service",
                "install",
                "--system",
                "--exec",
                "/home/ann/.local/bin/pilot",
                "--root",
                str(tmp_path / "root"),
                str(BASIC),
            ]
        )
        == 1
    )
    assert "ProtectHome=true" in capsys.readouterr().err
    assert not (tmp_path / "root").exists()


def test_a_sensor_reading_home_makes_protect_home_read_only(tmp_path, capsys):
    profile = write(
        tmp_path,
        "p.yaml",
        "pilot: 1\nsensors:\n  home_used: {probe: disk.used_percent, args: {path: /home}, every: 5m}\n",
    )
    assert main(["service", "install", "--system", "--print", "--exec", EXE, str(profile)]) == 0
    unit = _files(capsys.readouterr().out)["/etc/systemd/system/pilot.service"]
    assert _unit_value(unit, "ProtectHome") == ["read-only"]


def test_secrets_outside_reach_are_warned_about(tmp_path, capsys):
    profile = write(
        tmp_path, "p.yaml", "pilot: 1\nmqtt: {host: broker.lan, username: u, password_file: /home/ann/mqtt.pass}\n"
    )
    assert main(["service", "install", "--system", "--print", "--exec", EXE, str(profile)]) == 0
    err = capsys.readouterr().err
    assert "mqtt.password_file /home/ann/mqtt.pass is hidden from the service by ProtectHome=true" in err


def test_root_as_service_user_needs_allow_root(tmp_path, capsys):
    profile = write(tmp_path, "p.yaml", "pilot: 1\nservice: {user: root}\n")
    assert main(["service", "install", "--system", "--print", "--exec", EXE, str(profile)]) == 1
    assert "allow_root" in capsys.readouterr().err
    profile = write(tmp_path, "p.yaml", "pilot: 1\nservice: {user: root, allow_root: true}\n")
    assert main(["service", "install", "--system", "--print", "--exec", EXE, str(profile)]) == 0
    out = capsys.readouterr().out
    assert "useradd" not in out and "CapabilityBoundingSet" not in out


# ------------------------------------------------------------------ extends


def test_relative_extends_are_copied_beside_the_profile(tmp_path, capsys):
    write(tmp_path, "site/common.yaml", "pilot: 1\nsensors:\n  mem: {probe: memory.used_percent, every: 1m}\n")
    profile = write(
        tmp_path, "office.yaml", "pilot: 1\nextends: [base/linux, ./site/common.yaml]\ndevice: {name: Office}\n"
    )
    assert main(["service", "install", "--system", "--print", "--exec", EXE, str(profile)]) == 0
    files = _files(capsys.readouterr().out)
    # base/linux is a shipped pack: found by name from /etc/pilot too, so not copied
    assert {f for f in files if f.startswith("/etc/pilot/")} == {
        "/etc/pilot/office.yaml",
        "/etc/pilot/site/common.yaml",
    }


def test_extends_outside_the_profile_folder_is_refused(tmp_path, capsys, recorded_commands):
    write(tmp_path, "common.yaml", "pilot: 1\n")
    profile = write(tmp_path, "sub/office.yaml", "pilot: 1\nextends: ../common.yaml\n")
    assert main(["service", "install", "--system", "--root", str(tmp_path / "root"), str(profile)]) == 1
    err = capsys.readouterr().err
    assert "neither a shipped pack nor in the profile's folder" in err and "common.yaml" in err
    assert not (tmp_path / "root").exists() and recorded_commands() == []


# ------------------------------------------------------------------ --root and applying


def test_root_writes_every_file_under_the_folder_and_runs_nothing(tmp_path, capsys, recorded_commands):
    root = tmp_path / "root"
    profile = write(tmp_path, "box.yaml", PRIVILEGED)
    assert main(["service", "install", "--system", "--root", str(root), "--exec", EXE, str(profile)]) == 0
    out = capsys.readouterr().out
    unit = root / "etc/systemd/system/pilot.service"
    assert _unit_value(unit.read_text(), "ExecStart") == [f"{EXE} run /etc/pilot/box.yaml --state-dir /var/lib/pilot"]
    assert (root / "etc/pilot/box.yaml").read_text() == PRIVILEGED
    assert (root / "etc/polkit-1/rules.d/50-pilot.rules").is_file()
    assert (root / "etc/tmpfiles.d/pilot.conf").is_file()
    for path in root.rglob("*"):
        if path.is_file():
            assert stat.S_IMODE(path.stat().st_mode) == 0o644, path
    assert recorded_commands() == []
    assert "not run (--root): systemctl enable --now pilot" in out


def _changes(tmp_path: Path, text: str, **kw) -> service.Changes:
    profile = write(tmp_path, "box.yaml", text)
    doc, plan, diags = service.load_profile(str(profile))
    assert doc is not None, diags
    return service.plan_install(str(profile), doc, plan, system=True, exec_override="/usr/bin/pilot", **kw)


def test_apply_runs_the_commands_in_order_through_the_runner(tmp_path):
    changes = _changes(tmp_path, PRIVILEGED, exists=lambda user: False)
    runner = service.RecordingRunner(results={("systemctl", "is-active", "--quiet", "pilot"): service.Result(3)})
    said: list[str] = []
    assert service.apply(changes, runner, root=tmp_path / "root", say=said.append) == 0
    assert runner.calls == [
        ["systemctl", "is-active", "--quiet", "pilot"],
        [
            "useradd",
            "--system",
            "--user-group",
            "--home-dir",
            "/var/lib/pilot",
            "--shell",
            "/usr/sbin/nologin",
            "pilot",
        ],
        ["systemd-tmpfiles", "--create", "/etc/tmpfiles.d/pilot.conf"],
        ["systemctl", "daemon-reload"],
        ["systemctl", "enable", "--now", "pilot"],
    ]
    assert (tmp_path / "root/etc/systemd/system/pilot.service").is_file()


def test_reinstalling_a_running_service_restarts_it_and_skips_an_existing_user(tmp_path):
    changes = _changes(tmp_path, "pilot: 1\n", exists=lambda user: True)
    runner = service.RecordingRunner()  # is-active answers 0: running
    assert service.apply(changes, runner, root=tmp_path / "root", say=lambda _: None) == 0
    assert [c[0] for c in runner.calls].count("useradd") == 0
    assert runner.calls[-1] == ["systemctl", "restart", "pilot"]


def test_a_failing_command_stops_install(tmp_path):
    changes = _changes(tmp_path, "pilot: 1\n", exists=lambda user: True)
    runner = service.RecordingRunner(
        results={
            ("systemctl", "is-active", "--quiet", "pilot"): service.Result(3),
            ("systemctl", "daemon-reload"): service.Result(1, "Access denied"),
        }
    )
    said: list[str] = []
    assert service.apply(changes, runner, root=tmp_path / "root", say=said.append) == 1
    assert ["systemctl", "enable", "--now", "pilot"] not in runner.calls
    assert any("Access denied" in line for line in said)


def test_install_through_the_cli_uses_the_recording_runner(tmp_path, capsys, monkeypatch, recorded_commands):
    """Without --root, commands go to the runner: here the recorder (PILOT_SERVICE_RECORD), never systemctl."""
    monkeypatch.setattr(service, "rooted", lambda root, path: tmp_path / "root" / path.lstrip("/"))
    monkeypatch.setattr(service, "is_root", lambda: True)
    monkeypatch.setattr(service, "user_exists", lambda name: True)
    assert main(["service", "install", "--system", "--exec", "/usr/bin/pilot", str(BASIC)]) == 0
    assert recorded_commands() == [
        ["systemctl", "is-active", "--quiet", "pilot"],
        ["systemctl", "daemon-reload"],
        ["systemctl", "enable", "--now", "pilot"],
        ["systemctl", "restart", "pilot"],
    ]
    assert (tmp_path / "root/etc/pilot/basic.yaml").is_file()


# ------------------------------------------------------------------ uninstall and status


def test_uninstall_removes_unit_and_rule_and_keeps_config_and_state(tmp_path, capsys, recorded_commands):
    root = tmp_path / "root"
    for path in (
        "etc/systemd/system/pilot.service",
        "etc/polkit-1/rules.d/50-pilot.rules",
        "etc/tmpfiles.d/pilot.conf",
        "etc/pilot/box.yaml",
        "var/lib/pilot/discovery.json",
    ):
        write(root, path, "x")
    assert main(["service", "uninstall", "--system", "--root", str(root)]) == 0
    assert not (root / "etc/systemd/system/pilot.service").exists()
    assert not (root / "etc/polkit-1/rules.d/50-pilot.rules").exists()
    assert not (root / "etc/tmpfiles.d/pilot.conf").exists()
    assert (root / "etc/pilot/box.yaml").exists() and (root / "var/lib/pilot/discovery.json").exists()
    assert recorded_commands() == []
    assert main(["service", "uninstall", "--system", "--root", str(root), "--purge"]) == 0
    assert not (root / "etc/pilot").exists() and not (root / "var/lib/pilot").exists()


def test_uninstall_print_lists_commands_in_order(capsys):
    assert main(["service", "uninstall", "--system", "--print"]) == 0
    out = capsys.readouterr().out
    assert _commands(out) == ["systemctl disable --now pilot", "systemctl daemon-reload"]
    assert (
        out.index("disable --now") < out.index("remove /etc/systemd/system/pilot.service") < out.index("daemon-reload")
    )


def test_uninstall_goes_on_when_the_service_was_never_enabled(tmp_path):
    runner = service.RecordingRunner(results={("systemctl", "disable", "--now", "pilot"): service.Result(1, "no unit")})
    changes = service.plan_uninstall(system=True, purge=False)
    assert service.apply(changes, runner, root=tmp_path, say=lambda _: None) == 0
    assert runner.calls[-1] == ["systemctl", "daemon-reload"]


def test_status_runs_systemctl_through_the_runner_and_reads_the_state_dir(tmp_path, capsys, recorded_commands):
    import json

    state = tmp_path / "state"
    state.mkdir()
    plan = {"device": {"id": "testrig01"}, "topics": {"availability": "pilot/testrig01/availability"}}
    (state / "plan-cache.json").write_text(
        json.dumps({"version": "1", "profile": "/etc/pilot/basic.yaml", "result": {"plan": plan}})
    )
    (state / "discovery.json").write_text("{}")
    code = main(["service", "status", "--system", "--state-dir", str(state)])
    out = capsys.readouterr().out
    assert code == 0
    assert recorded_commands() == [["systemctl", "status", "pilot", "--no-pager"]]
    assert "device testrig01" in out and "pilot/testrig01/availability" in out and "last discovery change" in out
    assert main(["service", "status", "--user", "--state-dir", str(tmp_path / "none")]) == 0
    assert "nothing readable" in capsys.readouterr().out
    assert recorded_commands()[-1] == ["systemctl", "--user", "status", "pilot", "--no-pager"]


def test_the_real_runner_reports_a_missing_program():
    result = service.Runner().run(["/nonexistent/pilot-test-program"])
    assert result.returncode == 127


@pytest.mark.parametrize(
    "profile",
    sorted(p for p in (REPO / "profiles").glob("*/*.yaml") if p.name != "pack.yaml"),
    ids=lambda p: f"{p.parent.name}/{p.stem}",
)
def test_every_shipped_profile_installs_and_its_copy_composes_alike(profile, capsys):
    assert main(["service", "install", "--system", "--print", "--exec", EXE, str(profile)]) == 0, (
        capsys.readouterr().err
    )
    files = _files(capsys.readouterr().out)
    assert f"/etc/pilot/{profile.name}" in files


def test_a_malformed_service_user_is_a_schema_error(tmp_path, capsys):
    profile = write(tmp_path, "p.yaml", "pilot: 1\nservice:\n  user: Bad User\n")
    assert main(["validate", str(profile)]) == 1
    assert re.search(r"p\.yaml:3:\d+: error: \$\.service\.user: a user name is lower-case", capsys.readouterr().out)
