"""`pilot service install | uninstall | status`: the command line over pilot.service (and pilot.service.windows)."""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path
from typing import Any

from pilot.cli.common import add_scope_flags, system_scope
from pilot.escaping import escape


def _err(text: str) -> None:
    print(text, file=sys.stderr)


def _report(changes: Any) -> None:
    for text in changes.warnings:
        _err(f"pilot: warning: {text}")
    for text in changes.notes:
        _err(f"pilot: note: {text}")


def cmd_install(args: argparse.Namespace) -> int:
    if os.name == "nt":
        from pilot.service import windows as winservice

        return winservice.cli_install(args)
    from pilot.diagnostics import ERROR, REPORTERS
    from pilot.service import systemd as service

    if not os.path.isfile(args.profile):
        _err(f"pilot: error: {escape(args.profile)}: no such file")
        return 2
    system = system_scope(args)
    root = Path(args.root).resolve() if args.root else None
    try:
        doc, plan, diags = service.load_profile(args.profile)
        if doc is None:
            _err(REPORTERS["text"](diags, 1))
            _err(f"pilot: {escape(args.profile)} is not valid; nothing installed")
            return 1
        if any(d.severity != ERROR for d in diags):
            _err(REPORTERS["text"](diags, 1))
        changes = service.plan_install(args.profile, doc, plan, system=system, exec_override=args.exec_path)
    except (service.InstallError, OSError) as exc:
        _err(f"pilot: error: {exc}")
        return 1
    if args.print:
        sys.stdout.write(service.render_changes(changes, root))
        _report(changes)
        for text in changes.blockers:
            _err(f"pilot: error: install would refuse: {text}")
        return 1 if changes.blockers else 0
    if changes.blockers:
        for text in changes.blockers:
            _err(f"pilot: error: {text}")
        _err("pilot: nothing installed")
        return 1
    if system and root is None and not service.is_root():
        _err("pilot: error: installing the system service needs root (sudo), or --user for a user service")
        return 1
    _report(changes)
    code = service.apply(changes, service.default_runner(), root=root, run_commands=root is None)
    if code == 0 and root is None:
        journal = "journalctl -u pilot -f" if system else "journalctl --user -u pilot -f"
        print(f"Pilot is installed and started. Follow it with `{journal}`; `pilot service status` shows its state.")
    return code


def cmd_uninstall(args: argparse.Namespace) -> int:
    if os.name == "nt":
        from pilot.service import windows as winservice

        return winservice.cli_uninstall(args)
    from pilot.service import systemd as service

    system = system_scope(args)
    root = Path(args.root).resolve() if args.root else None
    changes = service.plan_uninstall(system=system, purge=args.purge)
    if args.print:
        sys.stdout.write(service.render_changes(changes, root))
        return 0
    if system and root is None and not service.is_root():
        _err("pilot: error: removing the system service needs root (sudo), or --user for a user service")
        return 1
    runner = service.default_runner()
    if args.purge:
        if root is None:  # stopped first: a running agent would announce itself again
            for command in changes.commands_before:
                runner.run(command.argv)
        _forget_installed(service, system, root)
    code = service.apply(changes, runner, root=root, run_commands=root is None)
    if code == 0 and not args.purge and system:
        print(
            f"Kept {service.CONFIG_DIR} and {service.STATE_DIR} (and the {service.DEFAULT_USER} user); "
            "--purge removes the folders too."
        )
    return code


def _forget_installed(service: Any, system: bool, root: Path | None) -> None:
    """--purge: take the device out of Home Assistant (empty its retained discovery and states) while
    the installed profile and the state directory still say what was announced."""
    from pilot.agent.forget import ForgetError, forget
    from pilot.agent.state import StateDir, default_state_dir

    unit = service.rooted(root, service.SYSTEM_UNIT if system else service.user_unit_path())
    try:
        profile = service.installed_profile(unit.read_text(encoding="utf-8"))
    except OSError:
        profile = None
    if profile is None:
        _err(
            "pilot: warning: no installed unit names a profile; the device stays in Home Assistant "
            "(`pilot forget PROFILE` removes it)"
        )
        return
    _, plan, diags = service.load_profile(str(service.rooted(root, profile)))
    if plan is None or not plan.mqtt.host:
        _err(f"pilot: warning: cannot read the broker from {escape(profile)}; the device stays in Home Assistant")
        return
    state = service.rooted(root, service.STATE_DIR) if system else default_state_dir()
    try:
        report = forget(plan, plan.mqtt.host, plan.mqtt.port or 1883, StateDir(state))
    except ForgetError as exc:
        _err(f"pilot: warning: the device stays in Home Assistant: {exc}")
        return
    print(
        f"Removed device {report.device_id} from Home Assistant: {len(report.cleared)} retained message(s) "
        f"cleared on {report.broker}"
    )


def cmd_status(args: argparse.Namespace) -> int:
    if os.name == "nt":
        from pilot.service import windows as winservice

        return winservice.cli_status(args)
    from pilot.service import systemd as service

    code, text = service.status(
        system=system_scope(args),
        runner=service.default_runner(),
        state_dir=Path(args.state_dir) if args.state_dir else None,
    )
    sys.stdout.write(text)
    return code


def register(sub: Any) -> None:
    p = sub.add_parser("service", help="install, remove or inspect Pilot as a systemd (or Windows) service")
    actions = p.add_subparsers(dest="service_command", metavar="ACTION", parser_class=type(p))
    p.set_defaults(func=lambda args: (p.print_help(), 2)[1])

    i = actions.add_parser("install", help="validate the profile, write the unit (and polkit rule), enable and start")
    i.add_argument("profile", metavar="PROFILE")
    add_scope_flags(i)
    i.add_argument("--print", action="store_true", help="print every file and command; change nothing")
    i.add_argument("--root", metavar="DIR", help="write every file under DIR and run no command (tests, packaging)")
    i.add_argument(
        "--exec", dest="exec_path", metavar="PATH", help="the pilot executable the unit runs (default: the one in use)"
    )
    i.set_defaults(func=cmd_install)

    u = actions.add_parser("uninstall", help="stop and disable the service, remove its unit and polkit rule")
    add_scope_flags(u)
    u.add_argument("--print", action="store_true", help="print what would be removed and run; change nothing")
    u.add_argument("--root", metavar="DIR", help="remove files under DIR and run no command")
    u.add_argument("--purge", action="store_true", help="also remove /etc/pilot and /var/lib/pilot")
    u.set_defaults(func=cmd_uninstall)

    s = actions.add_parser("status", help="`systemctl status pilot` and what the state directory says")
    add_scope_flags(s)
    s.add_argument("--state-dir", metavar="DIR", help="default: /var/lib/pilot (system) or the XDG state dir")
    s.set_defaults(func=cmd_status)
