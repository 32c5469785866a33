"""The command path: guard chain, bounded action executor, results and audit.

Messages arrive on paho's network thread; everything up to the decision runs
there (it is pure and fast, but for the one fsync of a signed command's
nonce), and the action itself runs on a small pool so a slow action never
blocks MQTT. A command whose action is still running is answered `busy`.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pilot.actions import ActionContext, ActionError, Call
from pilot.actions._base import System
from pilot.agent import policy, signing
from pilot.agent.children import KEY_RE
from pilot.plan import ChildCommand, ChildSet, Command, Plan
from pilot.registry import ACTIONS
from pilot.sources import Instance

log = logging.getLogger("pilot.commands")

MAX_RUNNING = 4
# answers to an unsigned command: a burst of 3 in 3 s, so a press, its confirmation and the refusal of
# a third press are all answered, while a flood on one topic gets one answer a second
UNSIGNED_REPLIES = (3, 3.0)


@dataclass
class CommandStats:
    executed: int = 0
    failed: int = 0
    dry_run: int = 0
    rejected: dict[str, int] = field(default_factory=dict)
    replies_suppressed: int = 0


@dataclass
class Guards:
    """What the guards remember. A reload hands it whole to the next CommandService, so it cannot
    reset a cooldown, forget an armed confirmation or a running action, or open a window in
    which a nonce seen by the old service is unknown to the new one."""

    cooldowns: policy.Cooldowns
    confirmations: policy.Confirmations
    junk_replies: policy.RateLimit  # answers to senders that proved no key: one a second overall
    replies: dict[str, policy.RateLimit] = field(default_factory=dict)  # per unsigned command: one a second
    stats: CommandStats = field(default_factory=CommandStats)
    running: set[str] = field(default_factory=set)  # commands whose action is still running
    lock: threading.Lock = field(default_factory=threading.Lock)
    rate: policy.RateLimit | None = None  # the profile's rate_limit (rebuilt when that changes)
    nonces: signing.NonceStore | None = None  # one store per file: never two writers of nonces.log

    @classmethod
    def fresh(cls, mono: Callable[[], float]) -> Guards:
        return cls(policy.Cooldowns(mono), policy.Confirmations(mono), policy.RateLimit(1, 1.0, mono))


@dataclass
class CommandService:
    plan: Plan
    publish: Callable[[str, str, int, bool], None]  # topic, payload, qos, retain (ordered, never dropped)
    system: System
    state_dir: Path
    dry_run: bool = False
    wall: Callable[[], float] = time.time
    mono: Callable[[], float] = time.monotonic
    ctx: ActionContext = field(default_factory=ActionContext)
    guards: Guards | None = None  # on reload: the previous service's, which continue
    # a child set's instance by (set id, key), as its last poll saw it (pilot.agent.children)
    instances: Callable[[str, str], Instance | None] = lambda set_id, key: None

    def __post_init__(self) -> None:
        self._by_id = {c.id: c for c in self.plan.commands}
        self._children = {(s.id, c.id): (s, c) for s in self.plan.children for c in s.commands}
        self._prefix = f"{self.plan.topics.base}/cmd/"
        self.audit_topic = f"{self.plan.topics.base}/audit"
        guards = self.guards = self.guards or Guards.fresh(self.mono)
        for command_id in self._by_id:
            guards.replies.setdefault(command_id, policy.RateLimit(*UNSIGNED_REPLIES, self.mono))
        limit = (self.plan.policy.rate_max, self.plan.policy.rate_per)
        if guards.rate is None or (guards.rate.limit, guards.rate.per) != limit:
            guards.rate = policy.RateLimit(*limit, self.mono)
        self._pool = ThreadPoolExecutor(max_workers=MAX_RUNNING, thread_name_prefix="pilot-action")
        self._keys: dict[str, signing.Key] = {}
        self._keyring_error: str | None = None
        self._signed = any(c.signed for c in self.plan.commands) or any(c.signed for _, c in self._children.values())
        self._retired = False
        if self._signed:
            self._load_keys()
            path = self.state_dir / "nonces.log"
            if guards.nonces is None or guards.nonces.path != path:
                guards.nonces = signing.NonceStore(path, self.plan.policy.window, clock=self.mono)
            else:  # never a second store reading the file the first one still appends to
                guards.nonces.window = self.plan.policy.window

    @property
    def nonces(self) -> signing.NonceStore | None:
        return self.guards.nonces if self._signed else None

    def _load_keys(self) -> None:
        try:
            self._keys = signing.load_keyring(self.plan.policy.keyring or "")
        except (signing.KeyringError, ValueError) as exc:
            self._keyring_error = str(exc)
            log.error("signed commands are refused until the keyring is fixed: %s", exc)

    @property
    def subscription(self) -> str:
        return f"{self._prefix}+/set"

    # ------------------------------------------------------------ entry points
    def handle(self, topic: str, payload: bytes, retained: bool) -> None:
        """A message on `<base>/cmd/<id>/set`. Always answers (subject to the reply limits) and never
        raises: an unexpected error is answered `failed` and logged on one bounded line."""
        command_id = topic[len(self._prefix) : -len("/set")] if topic.startswith(self._prefix) else ""
        result_topic = (
            f"{self._prefix}{command_id}/result"
            if command_id and "/" not in command_id
            else f"{self._prefix}_unknown/result"
        )
        try:
            self._handle(command_id, topic, result_topic, payload, retained)
        except Exception as exc:  # a bug, not a decision: answer it rather than leave a traceback per message
            log.error("command %.64r: unexpected %s while handling it", command_id, type(exc).__name__)
            try:
                if self.guards.junk_replies.allow():  # whatever caused it, at most one answer a second
                    self._result(result_topic, {"status": "failed", "reason": "unavailable"}, None)
                    self._audit(
                        command_id if command_id in self._by_id else None, "failed", "unavailable", "mqtt", None
                    )
                else:
                    self.guards.stats.replies_suppressed += 1
            except Exception:
                pass

    def handle_child(self, topic: str, payload: bytes, retained: bool) -> None:
        """A message on `<base>/<set>/<key>/cmd/<command>/set`: a command on one instance of a child set.
        It becomes a command of its own (`<set>/<key>/<command>`, acting on the instance as its last
        poll saw it), so cooldowns, confirmations and `busy` are per instance, and then goes through
        exactly the same chain; `policies.allow` names it `<set>.<command>`."""
        parts = topic[len(self.plan.topics.base) + 1 :].split("/")
        command_id, result_topic = "", f"{self._prefix}_unknown/result"
        if len(parts) == 5 and parts[2] == "cmd" and parts[4] == "set" and KEY_RE.fullmatch(parts[1]):
            set_id, key, _, name, _ = parts
            found = self._children.get((set_id, name))
            instance = self.instances(set_id, key) if found else None
            if found is not None:
                result_topic = f"{found[0].topic}/{key}/cmd/{name}/result"
                command_id = f"{set_id}/{key}/{name}"
                if instance is not None:
                    # known only while this message is decided (paho's one thread): thousands of guests
                    # pressed over months leave nothing behind; the action gets the Command itself
                    self._by_id[command_id] = self._materialize(found[0], found[1], instance, topic, result_topic)
                    # one reply budget per set command (`guests.start`), whichever guest is pressed
                    self.guards.replies.setdefault(found[1].policy_id, policy.RateLimit(*UNSIGNED_REPLIES, self.mono))
        try:
            self._handle(command_id, topic, result_topic, payload, retained)
        except Exception as exc:  # a bug, not a decision (see `handle`)
            log.error("command %.64r: unexpected %s while handling it", command_id, type(exc).__name__)
        finally:
            self._by_id.pop(command_id, None)

    def _materialize(self, spec: ChildSet, child: ChildCommand, instance: Instance, topic: str, result: str) -> Command:
        return Command(
            id=f"{spec.id}/{instance.key}/{child.id}",
            action=child.action,
            entity=child.entity,
            command_topic=topic,
            result_topic=result,
            state_topic=None,
            args={**child.args, "target": dict(instance.target), "via": spec.id},
            signed=child.signed,
            cooldown=child.cooldown,
            confirm=child.confirm,
            policy_id=child.policy_id,
        )

    def _handle(self, command_id: str, topic: str, result_topic: str, payload: bytes, retained: bool) -> None:
        command = self._by_id.get(command_id)
        auth: _Auth | None = None
        try:
            reason = (
                policy.check_size(payload, self.plan.policy.max_payload)
                or policy.check_retained(retained)
                or policy.check_allowed(command, self.plan.policy)
            )
            if reason:
                raise signing.Rejected(reason)
            assert command is not None
            if command.signed:
                text, auth = self._verify(topic, payload)
                if policy.decode_text(text.encode("utf-8")) is None:
                    raise _Authenticated("malformed", auth)
            else:
                decoded = policy.decode_text(payload)
                if decoded is None:
                    raise signing.Rejected("malformed")
                text = decoded
            self._decide(command, text, origin="mqtt", result_topic=result_topic, auth=auth, confirm=True)
        except signing.Rejected as exc:
            self._reject(command_id, result_topic, exc.reason, getattr(exc, "auth", None) or auth, origin="mqtt")

    def run_local(self, command_id: str, value: Any, origin: str) -> None:
        """A command reached by a rule or schedule: no signature and no confirmation, the rest applies."""
        command = self._by_id.get(command_id)
        result_topic = f"{self._prefix}{command_id}/result"
        try:
            reason = policy.check_allowed(command, self.plan.policy)
            if reason:
                raise signing.Rejected(reason)
            assert command is not None
            text = "PRESS" if value is None and command.entity.platform == "button" else str(value)
            self._decide(command, text, origin=origin, result_topic=result_topic, auth=None, confirm=False)
        except signing.Rejected as exc:
            self._reject(command_id, result_topic, exc.reason, None, origin=origin)

    # ------------------------------------------------------------ the chain
    def _verify(self, topic: str, payload: bytes) -> tuple[str, _Auth]:
        envelope = signing.parse_envelope(payload)
        if self._keyring_error is not None or self.nonces is None:
            raise signing.Rejected("unavailable")
        verified = signing.verify(
            envelope, self._keys, self.plan.device.id, topic, now=self.wall(), window=self.plan.policy.window
        )
        auth = _Auth(verified.nonce, self._keys[verified.kid], topic, verified.by)
        if self._retired:  # replaced by a reload: the nonce is not spent, the same envelope may be sent again
            raise _Authenticated("busy", auth)
        try:
            self.nonces.admit(verified.nonce, verified.ts)  # durable before anything runs
        except signing.Rejected as exc:
            raise _Authenticated(exc.reason, auth) from None
        return verified.cmd, auth

    def _decide(
        self, command: Command, text: str, *, origin: str, result_topic: str, auth: _Auth | None, confirm: bool
    ) -> None:
        if self._retired:
            raise _Authenticated("busy", auth)
        value, reason = policy.check_value(command, text)
        if reason:
            raise _Authenticated(reason, auth)
        cooldown = command.cooldown or self.plan.policy.cooldown
        if confirm and command.confirm:
            # a press the cooldown would refuse is refused now, not armed for a confirmation that must fail
            if self.guards.cooldowns.check(command.id, cooldown):
                raise _Authenticated("cooldown", auth)
            if not self.guards.confirmations.press(command.id, command.confirm, value):
                if command.signed or self.guards.replies[command.policy_id or command.id].allow():
                    self._result(result_topic, {"status": "armed", "confirm_within": command.confirm}, auth)
                    self._audit(command.id, "armed", None, origin, auth)
                return
        with self.guards.lock:  # checked and marked as one step: two threads cannot both pass
            if self.guards.cooldowns.check(command.id, cooldown):
                raise _Authenticated("cooldown", auth)
            if command.id in self.guards.running or len(self.guards.running) >= MAX_RUNNING:
                raise _Authenticated("busy", auth)
            # last, so that only commands that start spend the budget (docs/security.md, the guard chain)
            if not self.guards.rate.allow():
                raise _Authenticated("rate_limited", auth)
            self.guards.running.add(command.id)
            self.guards.cooldowns.mark(command.id)
        try:
            self._pool.submit(self._execute, command, value, origin, result_topic, auth)
        except RuntimeError:  # pool shut down: the agent is stopping
            with self.guards.lock:
                self.guards.running.discard(command.id)
            raise _Authenticated("busy" if self._retired else "unavailable", auth) from None

    def _execute(self, command: Command, value: Any, origin: str, result_topic: str, auth: _Auth | None) -> None:
        try:
            entry = ACTIONS.get(command.action)
            if entry is None:
                self.guards.stats.failed += 1  # counted like every other failure
                self._finish(command, result_topic, {"status": "failed", "reason": "unavailable"}, auth, origin)
                return
            try:
                calls: list[Call] = entry.factory(self.ctx, value, **command.args)
            except ActionError as exc:
                self._finish(
                    command,
                    result_topic,
                    {"status": "failed", "reason": "unavailable", "detail": str(exc)},
                    auth,
                    origin,
                )
                return
            if self.dry_run:
                self.guards.stats.dry_run += 1
                log.info("dry-run %s (%s): %s", command.id, _who(origin, auth), "; ".join(c.describe() for c in calls))
                self._finish(
                    command, result_topic, {"status": "dry_run", "calls": [public_call(c) for c in calls]}, auth, origin
                )
                return
            for call in calls:
                outcome = self.system.perform(call)
                if outcome.interrupted:
                    self._finish(command, result_topic, {"status": "interrupted"}, auth, origin)
                    return
                if outcome.returncode != 0:
                    self.guards.stats.failed += 1
                    self._finish(
                        command,
                        result_topic,
                        {
                            "status": "failed",
                            "reason": "exit_status",
                            "detail": f"{call.argv[0] if call.argv else call.kind} exited {outcome.returncode}",
                        },
                        auth,
                        origin,
                    )
                    return
            self.guards.stats.executed += 1
            log.info("executed %s (%s): %s", command.id, _who(origin, auth), "; ".join(c.describe() for c in calls))
            self._publish_state(command, value)
            self._finish(command, result_topic, {"status": "ok"}, auth, origin)
        except (ActionError, OSError) as exc:
            self.guards.stats.failed += 1
            self._finish(
                command,
                result_topic,
                {"status": "failed", "reason": "unavailable", "detail": str(exc)[:200]},
                auth,
                origin,
            )
        except Exception:
            self.guards.stats.failed += 1
            log.exception("action %s failed", command.action)
            self._finish(command, result_topic, {"status": "failed", "reason": "unavailable"}, auth, origin)
        finally:
            with self.guards.lock:
                self.guards.running.discard(command.id)

    # ------------------------------------------------------------ output
    def _publish_state(self, command: Command, value: Any) -> None:
        if not command.state_topic:
            return
        state = self.read_state(command)
        if state is None:  # only switches, numbers, selects and texts have a state topic
            state = value  # optimistic: what was just applied
        if state is not None:
            self.publish(command.state_topic, str(state), 1, True)

    def read_state(self, command: Command) -> Any:
        entry = ACTIONS.get(command.action)
        if entry is None or entry.state is None:
            return None
        try:
            return entry.state(self.ctx, **command.args)
        except Exception:
            return None

    def _finish(self, command: Command, topic: str, body: dict, auth: _Auth | None, origin: str) -> None:
        # no longer running before anyone hears it finished: a client that sends again on the answer is not `busy`
        with self.guards.lock:
            self.guards.running.discard(command.id)
        self._result(topic, body, auth)
        self._audit(command.id, body["status"], body.get("reason"), origin, auth)

    def _result(self, topic: str, body: dict, auth: _Auth | None) -> None:
        """Publish a result. The answer to a signed command echoes its nonce and carries `sig`, a
        `pilot-result-v1` HMAC with the command's key (docs/mqtt.md), so `pilot send` can tell it
        from an answer made up by anyone else on the broker."""
        ts = int(self.wall())
        body = {**body, "ts": ts}
        if auth is not None:
            body["nonce"] = auth.nonce
            body["sig"] = signing.sign_result(
                auth.key, self.plan.device.id, auth.topic, auth.nonce, body["status"], body.get("reason"), ts
            )
        self.publish(topic, json.dumps(body, separators=(",", ":")), 1, False)

    def _reject(
        self,
        command_id: str,
        topic: str,
        reason: str,
        auth: _Auth | None,
        origin: str,
    ) -> None:
        self.guards.stats.rejected[reason] = self.guards.stats.rejected.get(reason, 0) + 1
        command = self._by_id.get(command_id)
        # whoever holds no key gets at most one answer (and one audit event) a second: junk and
        # replays overall, and rejections of an unsigned command per command
        if origin == "mqtt":
            if reason in policy.UNAUTHENTICATED or command is None:
                limiter = self.guards.junk_replies
            elif not command.signed:
                limiter = self.guards.replies[command.policy_id or command.id]
            else:
                limiter = None
            if limiter is not None and not limiter.allow():
                self.guards.stats.replies_suppressed += 1
                return
        self._result(topic, {"status": "rejected", "reason": reason}, auth)
        self._audit(command_id if command_id in self._by_id else None, "rejected", reason, origin, auth)

    def _audit(self, command_id: str | None, status: str, reason: str | None, origin: str, auth: _Auth | None) -> None:
        """One audit event. After a verified signature it names the key (`kid`) and, when the envelope
        says so, who pressed (`by`): both were covered by the signature, so neither is a sender's claim."""
        event = {"event_type": status, "command": command_id, "origin": origin}
        if reason:
            event["reason"] = reason
        if auth is not None:
            event["kid"] = auth.key.kid
            if auth.by is not None:
                event["by"] = auth.by
        self.publish(self.audit_topic, json.dumps(event, separators=(",", ":")), 0, False)

    # ------------------------------------------------------------ lifecycle
    def verify_control(self, topic: str, payload: bytes, retained: bool) -> tuple[str | None, str | None]:
        """Guards for a control command such as `_reload`: (reason or None, nonce)."""
        reason = policy.check_size(payload, self.plan.policy.max_payload) or policy.check_retained(retained)
        if reason:
            return reason, None
        if not self.plan.policy.require_signed:
            return None, None
        try:
            _text, auth = self._verify(topic, payload)
            return None, auth.nonce
        except signing.Rejected as exc:
            auth = getattr(exc, "auth", None)
            return exc.reason, auth.nonce if auth is not None else None

    def retire(self) -> None:
        """On reload: accept nothing new (a command that still reaches this service is answered `busy`,
        with its nonce unspent, so it can be sent again); running actions finish and answer as usual."""
        self._retired = True
        self._pool.shutdown(wait=False, cancel_futures=False)

    def stop(self, timeout: float = 4.0) -> None:
        """Interrupt running actions (they answer `interrupted`) and wait briefly for them."""
        self._pool.shutdown(wait=False, cancel_futures=True)
        self.system.interrupt_all(grace=min(2.0, timeout / 2))
        deadline = time.monotonic() + timeout
        while self.guards.running and time.monotonic() < deadline:
            time.sleep(0.02)


@dataclass(frozen=True)
class _Auth:
    """A verified envelope: what its answer echoes (the nonce) and is signed with (key, set topic)."""

    nonce: str
    key: signing.Key
    topic: str
    by: str | None = None  # who pressed, signed with the rest of the envelope


class _Authenticated(signing.Rejected):
    """A rejection after the sender proved a key (or for an unsigned command): the nonce may be echoed."""

    def __init__(self, reason: str, auth: _Auth | None) -> None:
        super().__init__(reason)
        self.auth = auth


def _who(origin: str, auth: _Auth | None) -> str:
    """The origin as a log line shows it: with the key and who pressed for a verified signed command
    (the log formatter escapes and bounds it like every argument; `by` cannot hold a control character)."""
    if auth is None:
        return origin
    return f"{origin}, kid {auth.key.kid}" + (f", by {auth.by}" if auth.by is not None else "")


REDACTED = "<redacted>"


def public_call(call: Call) -> dict:
    """A call as a dry-run result shows it: environment variables by name only (values such as PATH or
    a profile's `env:` secrets never reach the broker)."""
    data = call.to_dict()
    if call.env is not None:
        data["env"] = [[name, REDACTED] for name, _value in call.env]
    return data
