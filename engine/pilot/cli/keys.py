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
from typing import Any

from pilot.cli.common import load_plan, parse_broker, state_path
from pilot.plan import Plan


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


def _key(keyring: str, kid: str | None) -> Any:
    from pilot.agent import signing

    keys = signing.load_keyring(keyring)
    usable = [k for k in keys.values() if k.state == "active"]
    if kid:
        key = keys.get(kid)
        if key is None or key.state != "active":
            raise signing.KeyringError(f"no active key {kid!r} in {keyring}")
        return key
    if not usable:
        raise signing.KeyringError(f"no active key in {keyring}")
    return usable[-1]


def cmd_sign(args: argparse.Namespace) -> int:
    from pilot.agent import signing

    try:
        key = _key(args.keyring, args.kid)
    except signing.KeyringError as exc:
        print(f"pilot: error: {exc}", file=sys.stderr)
        return 1
    print(json.dumps(signing.sign(key, args.device, args.topic, args.payload), separators=(",", ":")))
    return 0


def cmd_send(args: argparse.Namespace) -> int:
    import paho.mqtt.client as paho
    from paho.mqtt.enums import CallbackAPIVersion

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
    payload = value
    key = None
    if command.signed or args.keyring:
        try:
            key = _key(args.keyring or plan.policy.keyring or "", args.kid)
        except signing.KeyringError as exc:
            print(f"pilot: error: {exc}", file=sys.stderr)
            return 1
        payload = json.dumps(signing.sign(key, plan.device.id, command.command_topic, value), separators=(",", ":"))
    host, port = args.broker if args.broker else (plan.mqtt.host or "127.0.0.1", plan.mqtt.port or 1883)
    done = threading.Event()
    result: dict[str, Any] = {}
    sent = {"payload": payload}

    def envelope() -> str:
        if key is None:
            return value
        return json.dumps(signing.sign(key, plan.device.id, command.command_topic, value), separators=(",", ":"))

    def nonce_of(text: str) -> str | None:
        return json.loads(text).get("nonce") if key is not None else None

    client = paho.Client(CallbackAPIVersion.VERSION2, client_id=f"pilot-send-{os.getpid()}")
    if plan.mqtt.username:
        from pilot.agent.mqtt import read_password

        client.username_pw_set(plan.mqtt.username, read_password(plan.mqtt.password_file))
    if plan.mqtt.tls is not None:
        from pilot.agent.mqtt import tls_context

        client.tls_set_context(tls_context(plan.mqtt))

    def on_connect(c, userdata, flags, rc, props):
        c.subscribe(command.result_topic, 1)

    def on_subscribe(c, userdata, mid, rcs, props):
        c.publish(command.command_topic, sent["payload"], qos=1)

    def on_message(c, userdata, msg):
        try:
            body = json.loads(msg.payload)
        except ValueError:
            return
        if key is not None and body.get("nonce") not in (None, nonce_of(sent["payload"])):
            return  # someone else's result
        if body.get("status") == "armed" and not args.no_confirm and not result.get("armed"):
            result["armed"] = True
            sent["payload"] = envelope()  # the confirming press needs a fresh nonce
            c.publish(command.command_topic, sent["payload"], qos=1)
            return
        result.update(body)
        done.set()

    client.on_connect, client.on_subscribe, client.on_message = on_connect, on_subscribe, on_message
    try:
        client.connect(host, port, keepalive=30)
    except OSError as exc:
        print(f"pilot: error: cannot reach the broker {host}:{port}: {exc}", file=sys.stderr)
        return 1
    client.loop_start()
    finished = done.wait(args.timeout)
    client.loop_stop()
    client.disconnect()
    if not finished:
        print(f"pilot: no result within {args.timeout:g} s (is the agent running?)", file=sys.stderr)
        return 1
    print(json.dumps(result))
    return 0 if result.get("status") in ("ok", "dry_run") else 1


def cmd_privileges(args: argparse.Namespace) -> int:
    from pilot.service.privileges import render, render_polkit

    plan = _plan_or_report(args)
    if plan is None:
        return 1
    print((render_polkit if args.polkit else render)(plan, user=args.user), end="")
    return 0


def cmd_actions(args: argparse.Namespace) -> int:
    from pilot.actions import ActionContext
    from pilot.registry import ACTIONS

    ctx = ActionContext()
    for entry in ACTIONS:
        try:
            reason = entry.available(ctx) if entry.available else None
        except Exception as exc:
            reason = str(exc)
        status = "available" if not reason else f"unavailable: {reason}"
        print(
            f"{entry.name:<22} {entry.summary}\n{'':<22} platforms: {', '.join(entry.platforms)}; "
            f"privilege: {entry.privilege or 'none'}; {status}"
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
    p.add_argument("--keyring", help="default: the profile's policies.hmac.keyring")
    p.add_argument("--kid")
    p.add_argument("--broker", metavar="HOST:PORT", type=parse_broker)
    p.add_argument("--state-dir", metavar="DIR")
    p.add_argument("--timeout", type=float, default=10.0)
    p.add_argument("--no-confirm", action="store_true", help="do not press a second time for confirm commands")
    p.set_defaults(func=cmd_send)

    p = sub.add_parser("privileges", help="print the polkit rule (and sudoers alternative) the profile needs")
    p.add_argument("profile", metavar="PROFILE")
    p.add_argument("--user", default="pilot", help="the service user (default: pilot)")
    p.add_argument("--polkit", action="store_true", help="print only the polkit rules file")
    p.add_argument("--state-dir", metavar="DIR")
    p.set_defaults(func=cmd_privileges)

    p = sub.add_parser("actions", help="list actions and whether they work on this host")
    p.set_defaults(func=cmd_actions)
