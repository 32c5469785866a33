"""`pilot console service install|uninstall|status`: the console under systemd, as its own user, hardened.

The same shape as the agent's service (pilot.service.systemd): everything is computed first as a `Changes`
(files with their content, commands to run); `--print` shows it, `--root DIR` writes the files there and runs
nothing, and every command goes through one `Runner`, so tests record commands instead of running them.

The console is a network server the agent is not, so its unit differs: its own user (`pilot-console`, not the
agent's `pilot`: a bug in the web server reads neither the agent's keyring nor its state), its own state folder,
no sysfs or polkit grants, no devices, no kernel tunables, and only the socket families a web server needs.
docs/console-deploy.md explains each step.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

from pilot.service import systemd
from pilot.service.systemd import (
    Changes,
    FileChange,
    HostCommand,
    InstallError,
    Runner,
    UnitValueError,
    pilot_command,
    rooted,
    systemd_env,
    systemd_quote,
    unit_comment,
    user_exists,
)

SERVICE = "pilot-console"
SYSTEM_UNIT = "/etc/systemd/system/pilot-console.service"
CONFIG = "/etc/pilot/console.yaml"
USERS_FILE = "/etc/pilot/console-users"
STATE_DIR = "/var/lib/pilot-console"
DEFAULT_USER = "pilot-console"
ADDRESS_FAMILIES = "AF_UNIX AF_INET AF_INET6"


def _service_core(start: str, env: dict[str, str] | None) -> list[str]:
    return [
        "Type=exec",
        f"ExecStart={start}",
        "Restart=on-failure",
        "RestartPreventExitStatus=2",  # a usage error or a broken configuration will not heal by restarting
        "RestartSec=5",
        "TimeoutStopSec=15",
        f"SyslogIdentifier={SERVICE}",
        *(systemd_env(k, v) for k, v in sorted({"PYTHONUNBUFFERED": "1", **(env or {})}.items())),
    ]


def render_system_unit(
    exec_argv: list[str], config: str = CONFIG, user: str = DEFAULT_USER, *, env: dict[str, str] | None = None
) -> str:
    from pilot.service.privileges import check_user

    user = check_user(user)
    start = " ".join(
        systemd_quote(a) for a in [*exec_argv, "console", "run", "--config", config, "--state-dir", STATE_DIR]
    )
    lines = [
        f"# {SYSTEM_UNIT}: written by `pilot console service install`.",
        "# Reinstall to regenerate it; keep local changes in a drop-in (`systemctl edit pilot-console`).",
        "# What each line is for: docs/console-deploy.md in the Pilot sources.",
        "[Unit]",
        "Description=Pilot Console: the fleet of Pilot devices in a browser",
        "Wants=network-online.target",
        "After=network-online.target",
        "",
        "[Service]",
        f"User={user}",
        *_service_core(start, env),
        "StateDirectory=pilot-console",
        "StateDirectoryMode=0700",
        "ConfigurationDirectory=pilot",
        "UMask=0077",
        "# Hardening: a web server needs the network and its own folder, nothing else.",
        "NoNewPrivileges=true",
        "ProtectSystem=strict",
        "ProtectHome=true",
        "PrivateTmp=true",
        "PrivateDevices=true",
        "ProtectKernelTunables=true",
        "ProtectKernelModules=true",
        "ProtectKernelLogs=true",
        "ProtectControlGroups=true",
        "ProtectHostname=true",
        "ProtectClock=true",
        f"RestrictAddressFamilies={ADDRESS_FAMILIES}",
        "RestrictNamespaces=true",
        "RestrictRealtime=true",
        "RestrictSUIDSGID=true",
        "LockPersonality=true",
        "SystemCallArchitectures=native",
        "SystemCallFilter=@system-service",
    ]
    if user != "root":
        lines += ["CapabilityBoundingSet=", "AmbientCapabilities=", "RemoveIPC=true"]
    lines += ["", "[Install]", "WantedBy=multi-user.target", ""]
    return "\n".join(lines)


def user_unit_path(home: str | None = None) -> str:
    base = os.environ.get("XDG_CONFIG_HOME") or os.path.join(home or os.path.expanduser("~"), ".config")
    return os.path.join(base, "systemd", "user", f"{SERVICE}.service")


def user_config_path(home: str | None = None) -> str:
    base = os.environ.get("XDG_CONFIG_HOME") or os.path.join(home or os.path.expanduser("~"), ".config")
    return os.path.join(base, "pilot", "console.yaml")


def render_user_unit(exec_argv: list[str], config: str, *, env: dict[str, str] | None = None, path: str = "") -> str:
    start = " ".join(systemd_quote(a) for a in [*exec_argv, "console", "run", "--config", config])
    return "\n".join(
        [
            f"# {unit_comment(path) or '~/.config/systemd/user/pilot-console.service'}: written by "
            "`pilot console service install --user`.",
            "# Reinstall to regenerate it; keep local changes in a drop-in (`systemctl --user edit pilot-console`).",
            "[Unit]",
            "Description=Pilot Console: the fleet of Pilot devices in a browser (user service)",
            "",
            "[Service]",
            *_service_core(start, env),
            "NoNewPrivileges=true",
            f"RestrictAddressFamilies={ADDRESS_FAMILIES}",
            "LockPersonality=true",
            "",
            "[Install]",
            "WantedBy=default.target",
            "",
        ]
    )


def plan_install(
    *,
    system: bool,
    config: str | None = None,
    exec_override: str | None = None,
    user: str = DEFAULT_USER,
    root: Path | None = None,
    exists: Callable[[str], bool] | None = None,
) -> Changes:
    """What `pilot console service install` would do. A value that cannot go into a unit safely is an
    InstallError naming it."""
    try:
        return _plan_install(
            system=system, config=config, exec_override=exec_override, user=user, root=root, exists=exists
        )
    except (UnitValueError, ValueError) as exc:
        raise InstallError(str(exc)) from None


def _plan_install(
    *,
    system: bool,
    config: str | None,
    exec_override: str | None,
    user: str,
    root: Path | None,
    exists: Callable[[str], bool] | None,
) -> Changes:
    exists = exists or user_exists
    exec_argv, env = pilot_command(exec_override)
    if not system:
        changes = Changes("user")
        config = os.path.abspath(config) if config else user_config_path()
        path = user_unit_path()
        changes.files.append(FileChange(path, render_user_unit(exec_argv, config, env=env, path=path)))
        if not rooted(root, config).is_file():
            changes.warnings.append(f"{config} does not exist yet: write it before the console can start")
        changes.commands += [
            HostCommand(("systemctl", "--user", "daemon-reload")),
            HostCommand(("systemctl", "--user", "enable", "--now", SERVICE)),
        ]
        changes.notes.append("a user service stops when you log out, unless `loginctl enable-linger $USER`")
        return changes

    from pilot.service.privileges import check_user

    user = check_user(user)
    config = config or CONFIG
    if not os.path.isabs(config):
        raise InstallError(f"--config {config!r} is relative: the service runs in /; give an absolute path")
    changes = Changes("system")
    if user == "root":
        changes.blockers.append("the console is a web server: it does not run as root; name another --service-user")
    elif not exists(user):
        changes.commands_before.append(
            systemd.create_user(user, STATE_DIR, f"the console's own user {user} does not exist yet")
        )
    changes.blockers += systemd.hidden_from_service(
        [("the pilot command", exec_argv[0]), ("the console configuration", config)],
        env,
        f"put it where the service can read it (for example {CONFIG} for the configuration, a venv under /opt "
        "for Pilot), or pass --exec PATH",
    )
    if not rooted(root, config).is_file():
        changes.warnings.append(
            f"{config} does not exist yet: write it before the console can start (docs/console-deploy.md)"
        )
    changes.files.append(FileChange(SYSTEM_UNIT, render_system_unit(exec_argv, config, user, env=env)))
    if rooted(root, USERS_FILE).exists() and user != "root":
        changes.commands.append(
            HostCommand(
                ("chown", f"{user}:{user}", USERS_FILE),
                note="the console reads its users file as its own user; nobody else may read it",
            )
        )
    else:
        changes.notes.append(
            f"add the first user with `pilot console user add NAME --role admin` (as root: {USERS_FILE})"
        )
    changes.commands += [
        HostCommand(("systemctl", "daemon-reload")),
        HostCommand(("systemctl", "enable", "--now", SERVICE)),
    ]
    return changes


def plan_uninstall(*, system: bool, purge: bool) -> Changes:
    """Stop, disable and remove the unit; --purge also removes the console's state (history, sessions).
    /etc/pilot is left alone: the agent shares it."""
    if not system:
        changes = Changes("user")
        changes.commands_before.append(HostCommand(("systemctl", "--user", "disable", "--now", SERVICE), check=False))
        changes.removals.append(user_unit_path())
        changes.commands.append(HostCommand(("systemctl", "--user", "daemon-reload")))
        return changes
    changes = Changes("system")
    changes.commands_before.append(HostCommand(("systemctl", "disable", "--now", SERVICE), check=False))
    changes.removals.append(SYSTEM_UNIT)
    if purge:
        changes.removals.append(STATE_DIR)
    changes.commands.append(HostCommand(("systemctl", "daemon-reload")))
    return changes


def render_changes(changes: Changes, root: Path | None = None) -> str:
    """Every command and file, in the order install / uninstall would run and write them."""
    return systemd.render_changes(changes, root, service=SERVICE)


def apply(
    changes: Changes,
    runner: Runner,
    *,
    root: Path | None = None,
    run_commands: bool = True,
    say: Callable[[str], None] = print,
) -> int:
    """Write the files and run the commands; 0 when everything succeeded. A console that was running is
    restarted so the new unit applies."""
    return systemd.apply(changes, runner, root=root, run_commands=run_commands, say=say, service=SERVICE)


def status(*, system: bool, runner: Runner) -> tuple[int, str]:
    """`systemctl status pilot-console`."""
    result = runner.run(["systemctl", *([] if system else ["--user"]), "status", SERVICE, "--no-pager"])
    text = result.output.rstrip("\n") or f"{SERVICE}: no status (is it installed? `pilot console service install`)"
    return result.returncode, text + "\n"
