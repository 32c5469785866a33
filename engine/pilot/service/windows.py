"""Pilot as a Windows service, on pywin32's service framework. UNTESTED ON REAL WINDOWS.

What is tested (on Linux) are the pure functions: the service name, the command line the
service control manager starts (`python -m pilot.service.windows run PROFILE --state-dir
%ProgramData%\\Pilot`) and the `sc.exe` commands that register it. pywin32's modules are
imported only inside `_service_class()` and `main()`, so this module imports anywhere.

How it works: `sc.exe create Pilot binPath= "<python> -m pilot.service.windows run ..." start= auto`
registers the service. When the service control manager starts that command line, `main()`
hands the process to pywin32's dispatcher (`servicemanager.StartServiceCtrlDispatcher`), whose
`SvcDoRun` runs `pilot run` in-process with a stop event instead of signals; `SvcStop` sets the
event, and the agent publishes `offline` and exits as it does on SIGTERM. A non-zero exit ends
the process without reporting "stopped", which the service control manager treats as a failure
and answers with the restart actions `sc.exe failure` configured (like `Restart=on-failure`).
Logs go to %ProgramData%\\Pilot\\pilot.log (no rotation); start, stop and failures also go to
the Windows event log.

Notes for whoever tries it on Windows: pywin32 must be installed for the same Python
(`pip install pywin32`, then `python -m pywin32_postinstall -install` as administrator so
pythonservice's DLLs are found); the service runs as LocalSystem by default (`sc.exe config
Pilot obj= ...` changes that); lock and logout act on the service's own session, not the
user's (see pilot/actions/_windows.py).
"""

from __future__ import annotations

import argparse
import ntpath
import os
import subprocess
import sys
import threading
from collections.abc import Sequence
from typing import Any

SERVICE_NAME = "Pilot"
DISPLAY_NAME = "Pilot (Home Assistant agent)"
DESCRIPTION = "Makes this computer a Home Assistant device over MQTT: telemetry, commands and rules."
STOP_WAIT_MS = 15_000  # like TimeoutStopSec=15
RESTART_DELAY_MS = 5_000  # like RestartSec=5


def program_data(environ: dict[str, str] | None = None) -> str:
    env = os.environ if environ is None else environ
    return env.get("ProgramData") or env.get("PROGRAMDATA") or r"C:\ProgramData"


def state_dir(environ: dict[str, str] | None = None) -> str:
    """%ProgramData%\\Pilot, expanded now: the service control manager does not expand the binPath."""
    return ntpath.join(program_data(environ), "Pilot")


def log_file(environ: dict[str, str] | None = None) -> str:
    return ntpath.join(state_dir(environ), "pilot.log")


def run_args(profile: str, state: str) -> list[str]:
    """The `pilot run` arguments the service runs with."""
    return ["run", profile, "--state-dir", state]


def service_argv(python_exe: str, profile: str, state: str) -> list[str]:
    """The command line the service control manager starts."""
    return [python_exe, "-m", "pilot.service.windows", *run_args(profile, state)]


def command_line(argv: Sequence[str]) -> str:
    """Windows quoting (the rules of CommandLineToArgvW), as one string."""
    return subprocess.list2cmdline(list(argv))


def sc_create_argv(bin_path: str) -> list[str]:
    # sc.exe wants each option as `name=` followed by the value as the next argument
    return ["sc.exe", "create", SERVICE_NAME, "binPath=", bin_path, "start=", "auto", "DisplayName=", DISPLAY_NAME]


def install_commands(python_exe: str, profile: str, environ: dict[str, str] | None = None) -> list[list[str]]:
    bin_path = command_line(service_argv(python_exe, profile, state_dir(environ)))
    delay = str(RESTART_DELAY_MS)
    return [
        sc_create_argv(bin_path),
        ["sc.exe", "description", SERVICE_NAME, DESCRIPTION],
        # restart after 5 s on the first three failures in a day; failureflag counts a non-zero exit as one
        [
            "sc.exe",
            "failure",
            SERVICE_NAME,
            "reset=",
            "86400",
            "actions=",
            f"restart/{delay}/restart/{delay}/restart/{delay}",
        ],
        ["sc.exe", "failureflag", SERVICE_NAME, "1"],
        ["sc.exe", "start", SERVICE_NAME],
    ]


def uninstall_commands() -> list[list[str]]:
    return [["sc.exe", "stop", SERVICE_NAME], ["sc.exe", "delete", SERVICE_NAME]]


def status_command() -> list[str]:
    return ["sc.exe", "queryex", SERVICE_NAME]


def parse_run_args(argv: Sequence[str]) -> argparse.Namespace:
    """`run PROFILE --state-dir DIR`, the command line `run_args()` writes into the service."""
    parser = argparse.ArgumentParser(prog="python -m pilot.service.windows", add_help=False)
    parser.add_argument("command", choices=["run"])
    parser.add_argument("profile")
    parser.add_argument("--state-dir", required=True)
    try:
        return parser.parse_args(list(argv))
    except SystemExit:
        raise SystemExit(
            f"pilot.service.windows: expected `run PROFILE --state-dir DIR`, got {' '.join(argv)!r}"
        ) from None


def run_profile(args: argparse.Namespace, stop: threading.Event) -> int:
    """What SvcDoRun runs: compile the profile (in a child, as `pilot run` does) and run the agent."""
    import logging
    from pathlib import Path

    from pilot.agent import logs
    from pilot.agent.supervise import options_from_env, run_agent
    from pilot.compile_child import compile_profile

    logs.setup("text", "info")
    state = Path(args.state_dir)
    try:
        result = compile_profile(args.profile, cache_dir=state)
    except (RuntimeError, OSError) as exc:
        logging.getLogger("pilot").error("cannot compile %s: %s", args.profile, exc)
        return 1
    if result.plan is None:
        logging.getLogger("pilot").error(
            "%s is not valid; nothing started:\n%s", args.profile, "\n".join(d.text() for d in result.diagnostics)
        )
        return 1
    options = options_from_env(os.environ, state_dir=state)
    return run_agent(result.plan, options, stop, recompile=lambda: compile_profile(args.profile, cache_dir=state))


# ------------------------------------------------------------------ pywin32 (Windows only)


_RUN_ARGV: list[str] = []  # the `run ...` arguments from the service's command line


def _service_class() -> Any:
    import servicemanager  # pywin32
    import win32service
    import win32serviceutil

    class PilotService(win32serviceutil.ServiceFramework):
        _svc_name_ = SERVICE_NAME
        _svc_display_name_ = DISPLAY_NAME
        _svc_description_ = DESCRIPTION

        def __init__(self, args: Any) -> None:
            super().__init__(args)
            self.stop_event = threading.Event()

        def SvcStop(self) -> None:  # noqa: N802 (pywin32's names)
            self.ReportServiceStatus(win32service.SERVICE_STOP_PENDING, waitHint=STOP_WAIT_MS)
            self.stop_event.set()

        def SvcDoRun(self) -> None:  # noqa: N802
            args = parse_run_args(_RUN_ARGV)
            os.makedirs(args.state_dir, exist_ok=True)
            # a service has no console: the agent's log lines go to a file
            sys.stderr = open(ntpath.join(args.state_dir, "pilot.log"), "a", encoding="utf-8", buffering=1)
            servicemanager.LogInfoMsg(f"{SERVICE_NAME}: starting {' '.join(_RUN_ARGV)}")
            code = run_profile(args, self.stop_event)
            if code != 0:
                servicemanager.LogErrorMsg(f"{SERVICE_NAME}: the agent exited with status {code}; see pilot.log")
                sys.stderr.flush()
                os._exit(code)  # not "stopped": the service control manager applies the failure actions
            servicemanager.LogInfoMsg(f"{SERVICE_NAME}: stopped")

    return PilotService


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the service's command line (`python -m pilot.service.windows run PROFILE ...`)."""
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] != "run":
        print(
            "usage: python -m pilot.service.windows run PROFILE --state-dir DIR   (started by the service control "
            "manager; install with `pilot service install PROFILE`)",
            file=sys.stderr,
        )
        return 2
    parse_run_args(argv)  # fail early, in the event log's terms, on a broken command line
    _RUN_ARGV[:] = argv
    import servicemanager

    servicemanager.Initialize()
    servicemanager.PrepareToHostSingle(_service_class())
    servicemanager.StartServiceCtrlDispatcher()
    return 0


# ------------------------------------------------------------------ `pilot service ...` on Windows


def _run_all(commands: list[list[str]], stop_on_error: bool = True) -> int:
    from pilot.service.systemd import default_runner

    runner = default_runner()
    for argv in commands:
        result = runner.run(argv)
        if result.returncode != 0:
            print(
                f"pilot: {'error' if stop_on_error else 'warning'}: `{command_line(argv)}` failed: "
                f"{result.output.strip()}",
                file=sys.stderr,
            )
            if stop_on_error:
                return 1
    return 0


def cli_install(args: argparse.Namespace) -> int:
    from pilot.diagnostics import REPORTERS
    from pilot.profile.pipeline import compile_file

    _, result = compile_file(args.profile)
    if result.plan is None:
        print(REPORTERS["text"](list(result.diagnostics), 1), file=sys.stderr)
        print(f"pilot: {args.profile} is not valid; nothing installed", file=sys.stderr)
        return 1
    python = getattr(args, "exec_path", None) or sys.executable
    commands = install_commands(python, os.path.abspath(args.profile))
    if args.print:
        print("\n".join("$ " + command_line(c) for c in commands))
        return 0
    return _run_all(commands)


def cli_uninstall(args: argparse.Namespace) -> int:
    commands = uninstall_commands()
    if args.print:
        print("\n".join("$ " + command_line(c) for c in commands))
        return 0
    return _run_all(commands[:1], stop_on_error=False) or _run_all(commands[1:])


def cli_status(args: argparse.Namespace) -> int:
    from pilot.service.systemd import default_runner

    result = default_runner().run(status_command())
    print(result.output.rstrip("\n"))
    return result.returncode


if __name__ == "__main__":
    raise SystemExit(main())
