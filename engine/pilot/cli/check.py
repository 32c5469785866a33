"""`pilot check PROFILE`: will this profile work on this host, with this broker? A checklist.

It validates the profile, then looks at everything `pilot run` will need and says what it found:
the files the profile names (password file, TLS files, keyring), the broker (a real connection and
login, pilot.agent.brokercheck), the privileges the commands need (the polkit rule `pilot
privileges` prints, installed or not), which sensors and commands work on this host, and which
rules and schedules can never do their work here, and whether each child set's source answers (one
request, as the agent's first poll). Exit 0 when nothing would fail, 1 when something
would (a line marked FAIL); `warn` lines are worth reading but do not stop the agent.
"""

from __future__ import annotations

import argparse
import os
import stat
import sys
from pathlib import Path
from typing import Any

from pilot.cli.common import EXIT_INVALID, EXIT_OK, EXIT_USAGE, err, out, parse_broker

MARKS = {"ok": "[ ok ]", "fail": "[FAIL]", "warn": "[warn]", "skip": "[skip]", "info": "[info]"}


class Checklist:
    def __init__(self) -> None:
        self.failures: list[str] = []
        self.warnings: list[str] = []

    def section(self, title: str) -> None:
        out(f"\n{title}")

    def line(self, mark: str, text: str, advice: str = "") -> None:
        out(f"  {MARKS[mark]} {text}")
        if advice:
            out(f"         {advice}")
        if mark == "fail":
            self.failures.append(text)
        elif mark == "warn":
            self.warnings.append(text)


def _rooted(root: str | None, path: str) -> Path:
    return Path(root) / path.lstrip("/") if root else Path(path)


# ------------------------------------------------------------------ files


def check_files(plan: Any, checks: Checklist) -> None:
    items = [("mqtt.password_file", plan.mqtt.password_file), ("policies.hmac.keyring", plan.policy.keyring)]
    if plan.mqtt.tls is not None:
        items += [
            ("mqtt.tls.ca_file", plan.mqtt.tls.ca_file),
            ("mqtt.tls.cert_file", plan.mqtt.tls.cert_file),
            ("mqtt.tls.key_file", plan.mqtt.tls.key_file),
        ]
    items = [(k, v) for k, v in items if v]
    checks.section("Files")
    if not items:
        checks.line("ok", "the profile names no password, TLS or keyring file")
        return
    for key, path in items:
        where = f"{key} {path}"
        try:
            st = os.stat(path)
        except FileNotFoundError:
            checks.line("fail", f"{where}: does not exist", _create_advice(key))
            continue
        except OSError as exc:
            checks.line("fail", f"{where}: cannot be looked at ({exc.strerror})")
            continue
        if not stat.S_ISREG(st.st_mode):
            checks.line("fail", f"{where}: is not a regular file")
            continue
        try:
            with open(path, "rb") as handle:
                first = handle.readline()
        except OSError as exc:
            checks.line("fail", f"{where}: cannot be read by this user ({exc.strerror})")
            continue
        mode = stat.S_IMODE(st.st_mode)
        if key == "mqtt.password_file" and not first.strip(b"\r\n"):
            checks.line("fail", f"{where}: is empty (the password is its first line)")
        elif key == "policies.hmac.keyring":
            from pilot.agent import signing

            try:
                keys = signing.load_keyring(path)
            except signing.KeyringError as exc:
                checks.line("fail", f"{where}: {exc}")
                continue
            active = sum(1 for k in keys.values() if k.state == "active")
            checks.line("ok" if active else "fail", f"{where}: {active} active key(s), mode {mode:04o}")
        elif key in ("mqtt.password_file", "mqtt.tls.key_file") and mode & 0o077:
            checks.line(
                "warn",
                f"{where}: readable, but other users may read it too (mode {mode:04o})",
                f"chmod 600 {path}",
            )
        else:
            checks.line("ok", f"{where}: readable (mode {mode:04o})")


def _create_advice(key: str) -> str:
    if key == "mqtt.password_file":
        return "Write the broker password on its first line, then chmod 600 (or run `pilot init`)."
    if key == "policies.hmac.keyring":
        return "Create it with `pilot keygen --keyring PATH`."
    return "Copy the file there, or fix the path in the profile."


# ------------------------------------------------------------------ broker


def check_broker(plan: Any, args: argparse.Namespace, checks: Checklist) -> None:
    from pilot.agent.brokercheck import check_settings

    checks.section("Broker")
    if args.broker:
        host, port = args.broker
    elif plan.mqtt.host:
        host, port = plan.mqtt.host, plan.mqtt.port or 1883
    else:
        checks.line(
            "warn",
            "the profile names no broker (`mqtt.host`): `pilot run` would start a local trial broker",
            "Home Assistant will not see this device until `mqtt.host` names its broker (`pilot init` asks).",
        )
        return
    who = f" as {plan.mqtt.username}" if plan.mqtt.username else " (anonymous)"
    result = check_settings(plan.mqtt, host, port, timeout=args.timeout)
    if result.ok:
        about = [result.details[k] for k in ("version", "tls_version") if result.details.get(k)]
        extra = f" ({', '.join(about)})" if about else ""
        checks.line("ok", f"{host}:{port}: connected and logged in{who}, MQTT {plan.mqtt.protocol}{extra}")
    else:
        checks.line("fail", f"{host}:{port}{who}: {result.summary}", result.advice)


# ------------------------------------------------------------------ privileges


def check_privileges(plan: Any, args: argparse.Namespace, checks: Checklist) -> None:
    from pilot.service.privileges import UnsafeName, needed, render_polkit, tmpfiles_lines
    from pilot.service.systemd import POLKIT_RULE, TMPFILES

    checks.section("Privileges")
    pairs = needed(plan)
    if not pairs:
        checks.line("ok", "no command needs a privilege")
        return
    user = args.user or plan.service.user
    for command_id, privilege in pairs:
        checks.line("info", f"command {command_id} needs {privilege}")
    try:
        expected = render_polkit(plan, user=user)
        files = tmpfiles_lines(plan, user)
    except UnsafeName as exc:
        checks.line("fail", str(exc))
        return
    if expected:
        rule = _rooted(args.root, POLKIT_RULE)
        try:
            installed = rule.read_text(encoding="utf-8")
        except FileNotFoundError:
            installed = None
        except OSError as exc:
            checks.line("warn", f"{POLKIT_RULE}: cannot be read ({exc.strerror})")
            installed = ""
        if installed == expected:
            checks.line("ok", f"{POLKIT_RULE} is installed and grants exactly what this profile needs (user {user})")
        elif installed is None:
            checks.line(
                "warn",
                f"{POLKIT_RULE} is not installed",
                "`pilot service install` writes it for the system service; `pilot privileges PROFILE` prints it. "
                "A user service in a desktop session may not need it: logind asks the session's user.",
            )
        elif installed:
            checks.line(
                "warn",
                f"{POLKIT_RULE} differs from what `pilot privileges` prints for this profile and user {user}",
                "Reinstall the service (`pilot service install`), or compare with `pilot privileges --polkit PROFILE`.",
            )
    if files:
        conf = _rooted(args.root, TMPFILES)
        try:
            present = set(conf.read_text(encoding="utf-8").splitlines())
        except OSError:
            present = set()
        missing = [line for line in files if line not in present]
        if missing:
            checks.line(
                "warn",
                f"{TMPFILES} does not grant the sysfs writes these commands need ({len(missing)} line(s) missing)",
                "`pilot service install` writes it; `pilot privileges PROFILE` prints the lines.",
            )
        else:
            checks.line("ok", f"{TMPFILES} grants the sysfs writes these commands need")


# ------------------------------------------------------------------ sensors, commands, rules


def _probe_reason(sensor: Any, ctx: Any) -> str | None:
    """None when the sensor's probe binds and reads here; else why not."""
    from pilot.agent import telemetry
    from pilot.probes import ProbeUnavailable

    reader, reason = telemetry.bind(sensor, ctx)
    if reader is None:
        return reason or "unavailable here"
    try:
        reader()
    except ProbeUnavailable as exc:
        return str(exc) or "unavailable here"
    except Exception as exc:  # a probe failing here is information, not a crash
        return f"{type(exc).__name__}: {exc}"
    return None


def optional_here(plan: Any) -> list[tuple[str, str, str | None]]:
    """(kind, id, why it is left out here or None) for each optional sensor and command of `plan`:
    what the agent will turn on on this host (`pilot detect` shows it for the pack that matches)."""
    from pilot.actions import ActionContext
    from pilot.probes import ProbeContext
    from pilot.registry import ACTIONS

    ctx, actx = ProbeContext(), ActionContext()
    out: list[tuple[str, str, str | None]] = []
    for sensor in plan.sensors:
        if sensor.optional and sensor.probe:
            out.append(("sensor", sensor.id, _probe_reason(sensor, ctx)))
    for command in plan.commands:
        if command.optional:
            entry = ACTIONS.get(command.action)
            reason = entry.unavailable(actx, **command.args) if entry else f"unknown action {command.action!r}"
            out.append(("command", command.id, reason))
    return out


def check_host(plan: Any, checks: Checklist) -> None:
    from pilot.actions import ActionContext
    from pilot.probes import ProbeContext
    from pilot.registry import ACTIONS

    ctx = ProbeContext()
    dead: dict[str, str] = {}  # sensor id -> why it will have no value here
    works: list[str] = []
    checks.section("Sensors")
    for sensor in plan.sensors:
        if sensor.probe:
            reason = _probe_reason(sensor, ctx)
            if reason is None:
                works.append(sensor.id)
            elif sensor.optional:
                dead[sensor.id] = f"skipped here (optional): {reason}"
                checks.line("skip", f"{sensor.id} ({sensor.probe}): {reason}")
            else:
                dead[sensor.id] = f"unavailable here: {reason}"
                checks.line("fail", f"{sensor.id} ({sensor.probe}): unavailable here: {reason}")
    for sensor in _derived_in_order(plan):
        lost = [i for i in sensor.inputs if i in dead]
        if lost:
            verb = "has" if len(lost) == 1 else "have"
            dead[sensor.id] = f"derived from {', '.join(lost)}, which {verb} no value here"
            checks.line("skip", f"{sensor.id} (derived): reads {', '.join(lost)}, which {verb} no value here")
        else:
            works.append(sensor.id)
    if works:
        checks.line("ok", f"{len(works)} sensor(s) work here: {', '.join(works)}")
    if not plan.sensors:
        checks.line("info", "the profile has no sensors")

    actx = ActionContext()
    broken: dict[str, str] = {}  # command id -> why it fails here
    checks.section("Commands")
    for command in plan.commands:
        entry = ACTIONS.get(command.action)
        reason = entry.unavailable(actx, **command.args) if entry else f"unknown action {command.action!r}"
        guards = _guards(command, plan)
        if reason and command.optional:
            broken[command.id] = f"left out here (optional): {reason}"
            checks.line("skip", f"{command.id} ({command.action}): {reason}")
        elif reason:
            broken[command.id] = reason
            checks.line("fail", f"{command.id} ({command.action}): unavailable here: {reason}")
        else:
            checks.line("ok", f"{command.id} ({command.action}){guards}")
    if not plan.commands:
        checks.line("info", "the profile offers no commands")

    if plan.rules or plan.schedules:
        checks.section("Rules and schedules")
    for rule in plan.rules:
        lost = [i for i in rule.inputs if i in dead]
        failing = _failing_steps(rule.do + rule.on_clear, broken, ACTIONS, actx)
        if lost:
            checks.line(
                "warn",
                f"rule {rule.id} can never fire here: it reads {', '.join(lost)} ({dead[lost[0]]})",
            )
        elif failing:
            checks.line("fail", f"rule {rule.id}: {failing}")
        else:
            checks.line("ok", f"rule {rule.id}")
    for schedule in plan.schedules:
        failing = _failing_steps(schedule.do, broken, ACTIONS, actx)
        checks.line("fail" if failing else "ok", f"schedule {schedule.id}" + (f": {failing}" if failing else ""))


def _guards(command: Any, plan: Any) -> str:
    words = []
    if command.signed:
        words.append("signed")
    if command.confirm:
        words.append(f"a second press within {_duration(command.confirm)}")
    if command.cooldown:
        words.append(f"cooldown {_duration(command.cooldown)}")
    if plan.policy.allow is not None and command.id not in plan.policy.allow:
        words.append("not in policies.allow: always refused")
    return f": {', '.join(words)}" if words else ""


def _duration(seconds: float) -> str:
    for size, unit in ((3600, "h"), (60, "min")):
        if seconds >= size and seconds % size == 0:
            return f"{seconds / size:g} {unit}"
    return f"{seconds:g} s"


def _failing_steps(steps: Any, broken: dict[str, str], actions: Any, actx: Any) -> str:
    for step in steps:
        if step.kind == "command" and step.command in broken:
            return f"its step `command: {step.command}` fails here ({broken[step.command]})"
        if step.kind == "notify":
            entry = actions.get("notify.desktop")
            reason = entry.available(actx) if entry and entry.available else None
            if reason:
                return f"its notify step fails here ({reason})"
    return ""


def _derived_in_order(plan: Any) -> list[Any]:
    derived = {s.id: s for s in plan.sensors if not s.probe}
    order: list[Any] = []
    placed: set[str] = set()

    def place(sid: str, trail: frozenset[str]) -> None:
        if sid in placed or sid in trail:
            return
        for name in derived[sid].inputs:
            if name in derived:
                place(name, trail | {sid})
        placed.add(sid)
        order.append(derived[sid])

    for sid in derived:
        place(sid, frozenset())
    return order


# ------------------------------------------------------------------ the command


def check_children(plan: Any, checks: Checklist) -> None:
    """Each child set's source, asked once as the agent would: how many instances, or why not."""
    if not plan.children:
        return
    from pilot.agent.children import bind_source
    from pilot.sources import SourceError

    checks.section("Children")
    for spec in plan.children:
        try:
            found = bind_source(spec).poll()
        except Exception as exc:  # a source bug is a FAIL line, never a traceback
            if not isinstance(exc, SourceError):
                exc = SourceError("error", f"{type(exc).__name__}: {exc}")
            if exc.reason == "absent" and spec.optional:
                checks.line("skip", f"{spec.id}: {spec.source} is skipped here: {exc.detail}")
            else:
                checks.line(
                    "fail",
                    f"{spec.id}: {spec.source} cannot be read ({exc.reason}: {exc.detail})",
                    "the agent would report its devices unavailable and keep asking (docs/proxmox.md)",
                )
            continue
        checks.line("ok", f"{spec.id}: {spec.source} answers: {len(found)} instance(s), each a device")


def cmd_check(args: argparse.Namespace) -> int:
    from pilot.diagnostics import ERROR, REPORTERS
    from pilot.profile.pipeline import compile_file

    if not Path(args.profile).is_file():
        err(f"pilot: error: {args.profile}: no such file")
        return EXIT_USAGE
    checks = Checklist()
    out(f"Checking {args.profile} on this host")
    checks.section("Profile")
    _, result = compile_file(args.profile)
    plan = result.plan
    if plan is None:
        sys.stdout.write(REPORTERS["text"](list(result.diagnostics), 1))
        checks.line("fail", "the profile is not valid (the errors above give file:line:column)")
        out("\n1 problem: fix the profile first; nothing else was checked.")
        return EXIT_INVALID
    warnings = [d for d in result.diagnostics if d.severity != ERROR]
    checks.line(
        "ok",
        f"valid: device {plan.device.name!r} ({plan.device.id}), {len(plan.sensors)} sensor(s), "
        f"{len(plan.commands)} command(s), {len(plan.rules)} rule(s), {len(plan.schedules)} schedule(s)",
    )
    for diag in warnings:
        checks.line("warn", diag.text())
    check_files(plan, checks)
    check_broker(plan, args, checks)
    check_privileges(plan, args, checks)
    check_host(plan, checks)
    check_children(plan, checks)
    out("")
    if checks.failures:
        out(f"{len(checks.failures)} problem(s) would stop something from working:")
        for text in checks.failures:
            out(f"  - {text}")
        return EXIT_INVALID
    tail = f" ({len(checks.warnings)} warning(s) above)" if checks.warnings else ""
    out(f"All is well{tail}: `pilot run {args.profile}` should work here.")
    return EXIT_OK


def register(sub: Any) -> None:
    p = sub.add_parser("check", help="check a profile on this host: files, broker login, privileges, probes, actions")
    p.add_argument("profile", metavar="PROFILE")
    p.add_argument(
        "--broker", metavar="HOST:PORT", type=parse_broker, help="check this broker instead of the profile's"
    )
    p.add_argument("--timeout", type=float, default=5.0, help="seconds allowed for the broker test (default 5)")
    p.add_argument("--user", help="the service user the privileges are for (default: the profile's service.user)")
    p.add_argument("--root", metavar="DIR", help=argparse.SUPPRESS)  # tests: look for installed files under DIR
    p.set_defaults(func=cmd_check)
