"""The Windows service's pure parts (names, command lines, sc.exe arguments). UNTESTED ON REAL WINDOWS."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from pilot.service import windows as winservice

from .conftest import BASIC

ENV = {"ProgramData": r"C:\ProgramData"}


def test_the_module_imports_without_pywin32():
    assert "win32serviceutil" not in sys.modules or sys.platform == "win32"
    assert winservice.SERVICE_NAME == "Pilot"


def test_state_dir_is_program_data_pilot():
    assert winservice.state_dir(ENV) == r"C:\ProgramData\Pilot"
    assert winservice.state_dir({"PROGRAMDATA": r"D:\Data"}) == r"D:\Data\Pilot"
    assert winservice.state_dir({}) == r"C:\ProgramData\Pilot"
    assert winservice.log_file(ENV) == r"C:\ProgramData\Pilot\pilot.log"


def test_the_service_command_line_runs_pilot_run_with_the_state_dir():
    argv = winservice.service_argv(
        r"C:\Program Files\Python312\python.exe", r"C:\ProgramData\Pilot\office.yaml", winservice.state_dir(ENV)
    )
    assert argv[3:] == ["run", r"C:\ProgramData\Pilot\office.yaml", "--state-dir", r"C:\ProgramData\Pilot"]
    assert winservice.command_line(argv) == (
        r'"C:\Program Files\Python312\python.exe" -m pilot.service.windows run '
        r"C:\ProgramData\Pilot\office.yaml --state-dir C:\ProgramData\Pilot"
    )


def test_install_commands_register_an_automatic_service_that_restarts_on_failure():
    commands = winservice.install_commands(r"C:\Python\python.exe", r"C:\p.yaml", ENV)
    create = commands[0]
    assert create[:3] == ["sc.exe", "create", "Pilot"]
    assert create[create.index("start=") + 1] == "auto"
    assert create[create.index("binPath=") + 1] == (
        r"C:\Python\python.exe -m pilot.service.windows run C:\p.yaml "
        r"--state-dir C:\ProgramData\Pilot"
    )
    assert create[create.index("DisplayName=") + 1] == winservice.DISPLAY_NAME
    assert [
        "sc.exe",
        "failure",
        "Pilot",
        "reset=",
        "86400",
        "actions=",
        "restart/5000/restart/5000/restart/5000",
    ] in commands
    assert ["sc.exe", "failureflag", "Pilot", "1"] in commands
    assert commands[-1] == ["sc.exe", "start", "Pilot"]
    assert winservice.uninstall_commands() == [["sc.exe", "stop", "Pilot"], ["sc.exe", "delete", "Pilot"]]


def test_the_run_arguments_parse_back():
    args = winservice.parse_run_args(winservice.run_args(r"C:\p.yaml", r"C:\ProgramData\Pilot"))
    assert args.profile == r"C:\p.yaml" and args.state_dir == r"C:\ProgramData\Pilot"
    with pytest.raises(SystemExit):
        winservice.parse_run_args(["validate", "x.yaml"])


def test_main_without_run_prints_usage():
    assert winservice.main([]) == 2


def test_cli_install_print_validates_then_lists_sc_commands(capsys, tmp_path):
    import argparse

    args = argparse.Namespace(profile=str(BASIC), print=True, exec_path=r"C:\Python\python.exe")
    assert winservice.cli_install(args) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[0].startswith("$ sc.exe create Pilot binPath=") and "start= auto" in out[0]
    bad = tmp_path / "bad.yaml"
    bad.write_text("pilot: 2\n")
    assert winservice.cli_install(argparse.Namespace(profile=str(bad), print=True, exec_path=None)) == 1
    assert "bad.yaml:1:" in capsys.readouterr().err


def test_importing_it_in_a_fresh_interpreter_needs_no_windows_module():
    code = (
        "import sys, pilot.service.windows\n"
        "assert not any(m.startswith(('win32', 'servicemanager')) for m in sys.modules)"
    )
    # a bare environment, but for SYSTEMROOT: Python on Windows needs it to start
    env = {k: v for k, v in os.environ.items() if k.upper() == "SYSTEMROOT"}
    subprocess.run(
        [sys.executable, "-c", code], check=True, env={**env, "PYTHONPATH": str(BASIC.parents[4] / "engine")}
    )


def test_the_modules_it_uses_import_without_posix_only_modules():
    code = (
        "import sys; sys.modules['pwd'] = None; sys.modules['fcntl'] = None\n"
        "import pilot.service.systemd, pilot.cli.service, pilot.service.windows, pilot.agent.sdnotify"
    )
    # a bare environment, but for SYSTEMROOT: Python on Windows needs it to start
    env = {k: v for k, v in os.environ.items() if k.upper() == "SYSTEMROOT"}
    subprocess.run(
        [sys.executable, "-c", code], check=True, env={**env, "PYTHONPATH": str(BASIC.parents[4] / "engine")}
    )
