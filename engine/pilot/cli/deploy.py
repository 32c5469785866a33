"""`pilot deploy PROFILE --to DEVICE...`: validate a profile here, then push it, signed, to running agents.

Nothing is sent unless the profile validates with this Pilot (every error printed as
file:line:column, exit 1). Each device gets its own signed request (pilot.agent.deploy: the
envelope binds the text's SHA-256 and the device's topic) and only an answer that echoes its nonce
with a valid pilot-result-v1 signature counts; unsigned answers are reported, never believed. One
line per device; the exit status is 0 only when every device applied the profile, so a CI job on
merge fails when any device refused or rolled back. docs/deploy-profiles.md has the whole story.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pilot.cli.common import (
    EXIT_INVALID,
    EXIT_OK,
    EXIT_USAGE,
    add_sender_options,
    broker_address,
    broker_client,
    converse,
    err,
    load_plan,
    out,
    signing_key,
    state_path,
    unreadable_broker_files,
)
from pilot.escaping import escape

DEVICE_RE = re.compile(r"[A-Za-z0-9_-]{1,64}")  # a device id as the profile schema allows it in a topic
MAX_DEVICES = 500


def _device(text: str) -> str:
    if not DEVICE_RE.fullmatch(text):
        raise argparse.ArgumentTypeError(f"{text!r} is not a device id (1 to 64 of A-Z a-z 0-9 _ -)")
    return text


@dataclass
class Target:
    """One device: its request and what came back."""

    device: str
    base: str
    request: Any  # pilot.agent.deploy.Request
    answer: dict | None = None
    unsigned: list[str] = field(default_factory=list)  # status/reason of answers that proved nothing

    @property
    def result_topic(self) -> str:
        return f"{self.base}/cmd/_profile/result"


class Rollout:
    """The answers of every device, judged as they arrive (paho's thread)."""

    def __init__(self, targets: list[Target], key: Any) -> None:
        self.by_topic = {t.result_topic: t for t in targets}
        self.key = key
        self.lock = threading.Lock()
        self.done = threading.Event()
        self.pending = len(targets)

    def take(self, topic: str, raw: bytes) -> None:
        from pilot.agent import deploy

        target = self.by_topic.get(topic)
        if target is None:
            return
        with self.lock:
            if target.answer is not None:
                return
            body = deploy.read_answer(raw, self.key, target.device, target.request)
            if body is None:
                brief = _unsigned(raw)
                if brief and len(target.unsigned) < 10:
                    target.unsigned.append(brief)
                return
            target.answer = body
            self.pending -= 1
            if self.pending == 0:
                self.done.set()


def _unsigned(raw: bytes) -> str | None:
    """`status/reason` of an answer without our nonce and signature (a device without our key, or a forgery)."""
    try:
        body = json.loads(raw[:4096])
    except (ValueError, RecursionError):
        return None
    if not isinstance(body, dict) or "nonce" in body:
        return None
    return "/".join(str(body.get(k))[:32] for k in ("status", "reason") if body.get(k) is not None) or None


def _line(target: Target, timeout: float) -> str:
    answer = target.answer
    name = escape(target.device)
    if answer is None:
        why = f"no answer within {timeout:g} s"
        if target.unsigned:
            why += f" (ignored {len(target.unsigned)} unsigned answer(s): {escape(', '.join(target.unsigned[:3]))})"
        return f"{name}: {why}"
    status, reason = answer.get("status"), answer.get("reason")
    detail = answer.get("detail")
    detail = f" ({escape(str(detail)[:300])})" if detail else ""
    if status == "ok":
        return f"{name}: applied (profile hash {escape(str(answer.get('profile_hash')))})"
    if status == "rolled_back":
        return f"{name}: rolled back: {escape(str(reason))}{detail}"
    if status == "rejected":
        lines = [f"{name}: rejected: {escape(str(reason))}{detail}"]
        errors = answer.get("errors")
        if isinstance(errors, list):
            lines += [f"  {escape(str(e)[:500])}" for e in errors[:20]]
        return "\n".join(lines)
    return f"{name}: {escape(str(status))}: {escape(str(reason))}{detail}"


def _json(target: Target) -> dict:
    answer = target.answer or {}
    errors = answer.get("errors")
    return {
        "device": target.device,
        "status": answer.get("status", "no_answer"),
        "reason": answer.get("reason"),
        "detail": answer.get("detail"),
        "errors": [str(e) for e in errors[:20]] if isinstance(errors, list) else [],
        "profile_hash": answer.get("profile_hash"),
        "unsigned_answers": target.unsigned,
    }


def _publish_all(plan: Any, rollout: Rollout, targets: list[Target], host: str, port: int, timeout: float) -> bool:
    """Subscribe to every result topic, then publish every request; False when the broker cannot be reached."""
    client = broker_client(plan, f"pilot-deploy-{os.getpid()}")
    subscribed = threading.Event()

    def on_connect(c: Any, *_: Any) -> None:
        c.subscribe([(t.result_topic, 1) for t in targets])

    def on_subscribe(c: Any, *_: Any) -> None:
        if not subscribed.is_set():
            subscribed.set()
            for target in targets:
                c.publish(target.request.topic, target.request.payload, qos=1, retain=False)

    client.on_connect = on_connect
    client.on_subscribe = on_subscribe
    client.on_message = lambda c, userdata, msg: rollout.take(msg.topic, msg.payload)
    return converse(client, host, port, rollout.done, timeout) is not None


def cmd_deploy(args: argparse.Namespace) -> int:
    from pilot.agent import deploy, signing

    devices = list(dict.fromkeys(args.to))
    if len(devices) > MAX_DEVICES:
        err(f"pilot: error: at most {MAX_DEVICES} devices per deploy")
        return EXIT_USAGE
    path = Path(args.profile)
    try:
        before = path.read_bytes()
        text = before.decode("utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        err(f"pilot: error: cannot read {escape(args.profile)}: {getattr(exc, 'strerror', None) or exc}")
        return EXIT_USAGE
    plan, code = load_plan(args.profile, state_path(args.state_dir))  # prints every error as file:line:column
    if plan is None:
        return code
    try:
        unchanged = path.read_bytes() == before
    except OSError:
        unchanged = False
    if not unchanged:  # what is sent is exactly what was validated, or nothing
        err(f"pilot: error: {escape(args.profile)} changed while it was being checked; run pilot deploy again")
        return EXIT_INVALID
    try:
        key = signing_key(args.keyring or plan.policy.keyring or "", args.kid)
    except signing.KeyringError as exc:
        err(f"pilot: error: {exc}")
        return EXIT_INVALID
    prefix = plan.mqtt.topic_prefix
    targets = []
    for device in devices:
        base = f"{prefix}/{device}"
        try:
            request = deploy.build_deploy(key, device, base, text, by=args.by)
        except ValueError as exc:
            err(f"pilot: error: {escape(args.profile)}: {exc}")
            return EXIT_INVALID
        targets.append(Target(device, base, request))
    via = plan
    if args.connect is not None:  # the sender's own broker settings (a CI runner has not the device's files)
        via, code = load_plan(args.connect, state_path(args.state_dir))
        if via is None:
            return code
    if unreadable_broker_files(via):
        return EXIT_USAGE
    host, port = broker_address(args, via)
    rollout = Rollout(targets, key)
    if not _publish_all(via, rollout, targets, host, port, args.timeout):
        return EXIT_INVALID
    with rollout.lock:  # late answers change nothing from here on
        if args.json:
            report = {
                "profile": str(path),
                "sha256": deploy.text_sha256(text),
                "kid": key.kid,
                "devices": [_json(t) for t in targets],
            }
            out(json.dumps(report, indent=2))
        else:
            for target in targets:
                out(_line(target, args.timeout))
        applied = all(t.answer is not None and t.answer.get("status") == "ok" for t in targets)
    return EXIT_OK if applied else EXIT_INVALID


def register(sub: Any) -> None:
    p = sub.add_parser(
        "deploy",
        help="validate a profile, then deploy it signed to running agents (they roll back on failure)",
    )
    p.add_argument(
        "profile", metavar="PROFILE", help="the profile file to deploy (its mqtt: settings reach the broker)"
    )
    p.add_argument(
        "--to",
        metavar="DEVICE",
        action="append",
        required=True,
        type=_device,
        help="a device id to deploy to (repeat for several)",
    )
    add_sender_options(p, timeout=60.0, by="who deploys, signed and named in each device's audit and deploy state")
    p.add_argument(
        "--connect",
        metavar="SENDER_PROFILE",
        help="reach the broker with this profile's mqtt: settings (host, credentials, TLS) instead of PROFILE's",
    )
    p.add_argument("--json", action="store_true", help="print one JSON report (for CI) instead of one line per device")
    p.set_defaults(func=cmd_deploy)
