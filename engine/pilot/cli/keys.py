"""`pilot keygen`, `pilot sign`, `pilot send` and `pilot privileges`: the tools around commands.

`pilot send` is how a Home Assistant shell_command or a script drives a signed
command (Home Assistant has no HMAC template function): it connects, signs,
publishes, waits for the result and exits non-zero on anything but success.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import threading
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pilot.cli.common import (
    add_sender_options,
    broker_address,
    broker_client,
    converse,
    load_plan,
    signing_key,
    state_path,
    unreadable_broker_files,
)

if TYPE_CHECKING:
    from pilot.plan import Command, Plan


def _plan_or_report(args: argparse.Namespace) -> Plan | None:
    """The compiled plan of args.profile, or None after printing why (with positions)."""
    return load_plan(args.profile, state_path(args.state_dir))[0]


def cmd_keygen(args: argparse.Namespace) -> int:
    from pilot.agent import signing

    path = Path(args.keyring)
    existing = {}
    if path.exists():
        try:
            existing = signing.load_keyring(path)
        except signing.KeyringError as exc:
            print(f"pilot: error: {exc}", file=sys.stderr)
            return 1
    if args.kid in existing:
        print(f"pilot: error: key id {args.kid!r} is already in {path}", file=sys.stderr)
        return 1
    line = signing.new_key_line(args.kid)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
    with os.fdopen(fd, "a", encoding="utf-8") as handle:
        handle.write(line + "\n")
    os.chmod(path, 0o600)
    print(f"added key {args.kid!r} to {path} (mode 0600). Give the same line to the sender's keyring:")
    print(line)
    return 0


def cmd_sign(args: argparse.Namespace) -> int:
    from pilot.agent import signing

    try:
        key = signing_key(args.keyring, args.kid)
    except signing.KeyringError as exc:
        print(f"pilot: error: {exc}", file=sys.stderr)
        return 1
    print(json.dumps(signing.sign(key, args.device, args.topic, args.payload), separators=(",", ":")))
    return 0


class Exchange:
    """One command sent and its answer judged, without MQTT (which `_deliver` does).

    For a signed command only an answer that echoes the current envelope's nonce and carries a valid
    `pilot-result-v1` signature with the same key counts: the nonce is public (anyone subscribed sees
    the envelope), the signature is not. Other answers are counted and reported, never believed. An
    unsigned command's answer is taken as it comes, with a note that it is unauthenticated."""

    def __init__(
        self, plan: Plan, command: Command, value: str, key: Any, *, confirm: bool, by: str | None = None
    ) -> None:
        self.plan, self.command, self.value, self.key, self.confirm = plan, command, value, key, confirm
        self.by = by  # who pressed, signed into the envelope (the agent's audit names them)
        self.lock = threading.Lock()
        self.done = threading.Event()
        self.result: dict | None = None
        self.armed = False
        self.unauthenticated: list[str] = []  # status/reason of answers without a valid signature
        self.forged = 0
        self.payload, self.nonce = self.fresh()

    def fresh(self) -> tuple[str, str | None]:
        """The payload to publish and its nonce: a new envelope (a confirming press needs a fresh nonce)."""
        from pilot.agent import signing

        if self.key is None:
            return self.value, None
        env = signing.sign(self.key, self.plan.device.id, self.command.command_topic, self.value, by=self.by)
        return json.dumps(env, separators=(",", ":")), env["nonce"]

    def answer(self, raw: bytes) -> str | None:
        """Judge one message on the result topic; returns a payload to publish next (the confirming press)."""
        from pilot.agent import signing

        try:
            body = json.loads(raw)
        except (ValueError, RecursionError):
            return None
        if not isinstance(body, dict):
            return None
        with self.lock:
            if self.done.is_set():
                return None
            if self.key is not None:
                if "nonce" in body and body.get("nonce") != self.nonce:
                    return None  # the answer to another envelope (ours from before a re-press, or someone else's)
                if not signing.verify_result(
                    body, self.key, self.plan.device.id, self.command.command_topic, self.nonce or ""
                ):
                    if "nonce" in body:
                        self.forged += 1
                        print(
                            f"pilot: ignored a FORGED answer on {self.command.result_topic} (our nonce, "
                            "no valid pilot-result-v1 signature)",
                            file=sys.stderr,
                        )
                    else:
                        self.unauthenticated.append(_brief(body))
                    return None
            if body.get("status") == "armed" and self.confirm and not self.armed:
                self.armed = True
                self.payload, self.nonce = self.fresh()
                return self.payload
            self.result = body
            self.done.set()
            return None

    def report(self, finished: bool, timeout: float) -> int:
        """Print the outcome; the exit status: 0 for an (authenticated, when signed) ok or dry_run."""
        if not finished or self.result is None:
            why = f"pilot: no result within {timeout:g} s (is the agent running?)"
            if self.key is not None and (self.unauthenticated or self.forged):
                why = (
                    f"pilot: no authenticated result within {timeout:g} s; ignored "
                    f"{len(self.unauthenticated)} unsigned and {self.forged} forged answer(s)"
                    + (f" (last unsigned: {self.unauthenticated[-1]})" if self.unauthenticated else "")
                )
            print(why, file=sys.stderr)
            return 1
        if self.key is None:
            print(
                f"pilot: note: {self.command.id!r} is not a signed command, so its answer is unauthenticated "
                "(anyone who can publish on the broker could have sent it)",
                file=sys.stderr,
            )
        print(json.dumps(self.result))
        return 0 if self.result.get("status") in ("ok", "dry_run") else 1


def _brief(body: dict) -> str:
    status, reason = body.get("status"), body.get("reason")
    return "/".join(str(x)[:32] for x in (status, reason) if x is not None) or "?"


def _deliver(plan: Plan, exchange: Exchange, host: str, port: int, timeout: float) -> bool | None:
    """Publish the exchange's payload, feed it the answers; True when judged, False on timeout,
    None when the broker cannot be reached (reported)."""
    command = exchange.command
    client = broker_client(plan, f"pilot-send-{os.getpid()}")

    def on_message(c: Any, userdata: Any, msg: Any) -> None:
        again = exchange.answer(msg.payload)
        if again is not None:
            c.publish(command.command_topic, again, qos=1)

    client.on_connect = lambda c, *_: c.subscribe(command.result_topic, 1)
    client.on_subscribe = lambda c, *_: c.publish(command.command_topic, exchange.payload, qos=1)
    client.on_message = on_message
    return converse(client, host, port, exchange.done, timeout)


def cmd_send(args: argparse.Namespace) -> int:
    from pilot.agent import signing

    plan = _plan_or_report(args)
    if plan is None:
        return 1
    command = next((c for c in plan.commands if c.id == args.command), None)
    if command is None:
        known = ", ".join(c.id for c in plan.commands) or "none"
        print(f"pilot: error: no command {args.command!r} in {args.profile} (commands: {known})", file=sys.stderr)
        return 2
    value = args.value if args.value is not None else ("PRESS" if command.entity.platform == "button" else None)
    if value is None:
        print(f"pilot: error: command {command.id!r} ({command.entity.platform}) needs a VALUE", file=sys.stderr)
        return 2
    if args.by is not None and not command.signed:
        print(
            f"pilot: error: --by is signed into an envelope, and {command.id!r} is not a signed command",
            file=sys.stderr,
        )
        return 2
    key = None
    if command.signed:  # an unsigned command takes its value as it is: an envelope would be the value
        try:
            key = signing_key(args.keyring or plan.policy.keyring or "", args.kid)
        except signing.KeyringError as exc:
            print(f"pilot: error: {exc}", file=sys.stderr)
            return 1
    host, port = broker_address(args, plan)
    if unreadable_broker_files(plan):
        return 2
    exchange = Exchange(plan, command, value, key, confirm=not args.no_confirm, by=args.by)
    finished = _deliver(plan, exchange, host, port, args.timeout)
    if finished is None:
        return 1
    return exchange.report(finished, args.timeout)


def cmd_privileges(args: argparse.Namespace) -> int:
    from pilot.service.privileges import UnsafeName, render, render_polkit

    plan = _plan_or_report(args)
    if plan is None:
        return 1
    try:
        print((render_polkit if args.polkit else render)(plan, user=args.user), end="")
    except UnsafeName as exc:
        print(f"pilot: error: {exc}", file=sys.stderr)
        return 1
    return 0


def _user(text: str) -> str:
    from pilot.service.privileges import user_arg

    return user_arg(text)


def cmd_actions(args: argparse.Namespace) -> int:
    from pilot.actions import ActionContext
    from pilot.registry import ACTIONS

    ctx = ActionContext()
    for problem in ACTIONS.load_plugins():
        print(f"pilot: warning: {problem}", file=sys.stderr)
    for entry in ACTIONS:
        try:
            reason = entry.available(ctx) if entry.available else None
        except Exception as exc:
            reason = str(exc)
        status = "available" if not reason else f"unavailable: {reason}"
        print(
            f"{entry.name:<22} {entry.summary}\n{'':<22} platforms: {', '.join(entry.platforms)}; "
            f"privilege: {entry.privilege or 'none'}; from: {entry.origin}; {status}"
        )
    return 0


def cmd_sources(args: argparse.Namespace) -> int:
    from pilot.registry import SOURCES

    for entry in SOURCES:
        args_list = ", ".join(entry.params.get("properties", {}))
        fields = ", ".join(entry.defaults.get("fields") or {})
        commands = ", ".join(entry.defaults.get("commands") or {}) or "none"
        print(
            f"{entry.name:<22} {entry.summary}\n{'':<22} args: {args_list}\n{'':<22} fields: {fields}\n"
            f"{'':<22} commands: {commands}"
        )
    return 0


def register(sub: Any) -> None:
    p = sub.add_parser("keygen", help="add a new signing key to a keyring (0600)")
    p.add_argument("--keyring", required=True)
    p.add_argument("--kid", default=time.strftime("k%Y%m%d"), help="key id (default: k<today>)")
    p.set_defaults(func=cmd_keygen)

    p = sub.add_parser("sign", help="print a pilot-cmd-v1 envelope for a command payload")
    p.add_argument("--keyring", required=True)
    p.add_argument("--kid")
    p.add_argument("--device", required=True, help="the agent's device id")
    p.add_argument("--topic", required=True, help="the exact command topic, e.g. pilot/<id>/cmd/shutdown/set")
    p.add_argument("payload", help="the command payload, e.g. PRESS")
    p.set_defaults(func=cmd_sign)

    p = sub.add_parser("send", help="send a (signed) command to an agent and print its result")
    p.add_argument("profile", metavar="PROFILE")
    p.add_argument("command", metavar="COMMAND")
    p.add_argument("value", nargs="?", metavar="VALUE")
    add_sender_options(p, timeout=10.0, by="who pressed, signed into the envelope and named in the agent's audit")
    p.add_argument("--no-confirm", action="store_true", help="do not press a second time for confirm commands")
    p.set_defaults(func=cmd_send)

    p = sub.add_parser("privileges", help="print the polkit rule (and tmpfiles.d lines) the profile needs")
    p.add_argument("profile", metavar="PROFILE")
    p.add_argument("--user", default="pilot", type=_user, help="the service user (default: pilot)")
    p.add_argument("--polkit", action="store_true", help="print only the polkit rules file")
    p.add_argument("--state-dir", metavar="DIR")
    p.set_defaults(func=cmd_privileges)

    p = sub.add_parser("actions", help="list actions and whether they work on this host")
    p.set_defaults(func=cmd_actions)

    p = sub.add_parser("sources", help="list the sources of child devices (`children:`), their fields and commands")
    p.set_defaults(func=cmd_sources)
