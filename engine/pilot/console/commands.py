"""Pressing a device's command from the console, and hearing its answer.

A signed command is signed with the console's own key id and carries the signed-in user as `by`, so the
device's audit names both. Its answer is believed only when it echoes our nonce with a valid result
signature; anything else on the topic is ignored (a forgery is counted). An unsigned command's answer is
unauthenticated by nature and marked so. An answer given before the device knew our key (`unauthorized`,
`expired`, `malformed` carry no signature) is passed on, marked unverified, when nothing better
arrives shortly after: it is how a user learns the console's key is missing from the device's keyring.
The console always builds the topic itself, `<prefix>/<device>/cmd/<command>/set`.
"""

from __future__ import annotations

import asyncio
import json
import math
import re
import time
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from pilot.agent import policy, signing
from pilot.console.fleet import CommandInfo

UNVERIFIED_GRACE_S = 1.5
STATUS = re.compile(r"[a-z_]{1,32}")
MAX_VALUE = 4096
NUMBER = re.compile(r"-?(?:\d{1,30}(?:\.\d{0,30})?|\.\d{1,30})(?:[eE][-+]?\d{1,3})?")


class PressError(Exception):
    """The press cannot be sent; `reason` is a code the page explains."""

    def __init__(self, reason: str, detail: str = "") -> None:
        super().__init__(reason)
        self.reason = reason
        self.detail = detail


@dataclass
class _Waiter:
    future: asyncio.Future
    nonce: str | None
    unverified: dict[str, Any] | None = None


@dataclass
class CommandStats:
    sent: int = 0
    answered: int = 0
    timeouts: int = 0
    forged: int = 0
    by_status: dict[str, int] = field(default_factory=dict)


def value_for(command: CommandInfo, value: Any) -> str:
    """The payload a control's value becomes, checked against what the device announced."""
    if command.platform == "button":
        return command.payload_press
    if not isinstance(value, str) or len(value) > MAX_VALUE:
        raise PressError("bad_value", "a value must be text of at most 4096 characters")
    if command.platform == "switch" and value not in ("ON", "OFF"):
        raise PressError("bad_value", "a switch takes ON or OFF")
    if command.platform == "select" and value not in command.options:
        raise PressError("bad_value", "not one of the options")
    if command.platform == "number":
        if not NUMBER.fullmatch(value):  # float() would also take "nan", "inf", " 5 " and "1_0"
            raise PressError("bad_value", "not a number")
        number = float(value)
        if not math.isfinite(number):
            raise PressError("bad_value", "not a number")
        if (command.min is not None and number < command.min) or (command.max is not None and number > command.max):
            raise PressError("bad_value", "out of range")
    return value


def parse_answer(payload: bytes) -> dict[str, Any] | None:
    try:
        body = json.loads(payload.decode("utf-8"))
    except (ValueError, RecursionError):
        return None
    if not isinstance(body, dict) or not isinstance(body.get("status"), str) or not STATUS.fullmatch(body["status"]):
        return None
    return body


def public_answer(body: dict[str, Any], verified: bool) -> dict[str, Any]:
    """What the page is shown: fixed codes, bounded text, never the device's raw object."""
    out: dict[str, Any] = {"status": body["status"], "verified": verified}
    reason = body.get("reason")
    if isinstance(reason, str) and STATUS.fullmatch(reason):
        out["reason"] = reason
    confirm = body.get("confirm_within")
    if isinstance(confirm, (int, float)) and not isinstance(confirm, bool):
        out["confirm_within"] = confirm
    detail = body.get("detail")
    if isinstance(detail, str):
        out["detail"] = detail[:500]
    calls = body.get("calls")
    if isinstance(calls, list):
        out["calls"] = json.dumps(calls)[:2000]
    return out


class CommandSender:
    """Publishes presses and matches answers; `on_result` is called from the MQTT thread."""

    def __init__(
        self,
        publish: Callable[[str, str], bool],
        keyring_path: Any,
        kid: str,
        *,
        timeout: float,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.publish = publish
        self.keyring_path = keyring_path
        self.kid = kid
        self.timeout = timeout
        self.clock = clock
        self.stats = CommandStats()
        self._waiting: dict[str, list[_Waiter]] = defaultdict(list)
        self._loop: asyncio.AbstractEventLoop | None = None
        # answers on `<prefix>/<device>/cmd/_profile/result` go to the profile sender (deploy.py), once it exists
        self.profile_results: Callable[[str, bytes], None] | None = None

    def key(self) -> signing.Key:
        if self.keyring_path is None:
            raise PressError("console_has_no_key", "the console has no keyring (signing.keyring)")
        try:
            keys = signing.load_keyring(self.keyring_path)
        except signing.KeyringError as exc:
            raise PressError("console_has_no_key", str(exc)) from None
        key = keys.get(self.kid)
        if key is None or key.state != "active":
            raise PressError("console_has_no_key", f"no active key {self.kid!r} in the console's keyring")
        return key

    async def press(self, device_id: str, command: CommandInfo, value: Any, user: str, prefix: str) -> dict[str, Any]:
        topic = f"{prefix}/{device_id}/cmd/{command.id}/set"
        payload = value_for(command, value)
        nonce = None
        if command.signed:
            key = self.key()
            envelope = signing.sign(key, device_id, topic, payload, ts=int(self.clock()), by=user)
            nonce = envelope["nonce"]
            payload = json.dumps(envelope, separators=(",", ":"))
        loop = asyncio.get_running_loop()
        self._loop = loop
        waiter = _Waiter(loop.create_future(), nonce)
        self._waiting[topic].append(waiter)
        try:
            if not self.publish(topic, payload):
                raise PressError("broker_unavailable", "the console is not connected to the broker")
            self.stats.sent += 1
            try:
                answer = await asyncio.wait_for(asyncio.shield(waiter.future), self.timeout)
            except TimeoutError:
                if waiter.unverified is not None:
                    answer = waiter.unverified
                else:
                    self.stats.timeouts += 1
                    answer = {"status": "timeout", "verified": False}
        finally:
            self._waiting[topic].remove(waiter)
            if not self._waiting[topic]:
                del self._waiting[topic]
        self.stats.answered += answer["status"] != "timeout"
        self.stats.by_status[answer["status"]] = self.stats.by_status.get(answer["status"], 0) + 1
        return answer

    def on_result(self, device_id: str, result_topic: str, payload: bytes) -> None:
        """An answer on `<prefix>/<device>/cmd/<command>/result` (MQTT thread)."""
        if result_topic.endswith("/cmd/_profile/result"):
            if self.profile_results is not None:
                self.profile_results(device_id, payload)
            return
        topic = result_topic[: -len("result")] + "set"
        waiters = self._waiting.get(topic)
        loop = self._loop
        if not waiters or loop is None:
            return
        body = parse_answer(payload)
        if body is None:
            return
        loop.call_soon_threadsafe(self._match, device_id, topic, body)

    def _match(self, device_id: str, topic: str, body: dict[str, Any]) -> None:
        for waiter in list(self._waiting.get(topic, ())):
            if waiter.future.done():
                continue
            if waiter.nonce is None:  # unsigned: the first answer on the topic is ours, unauthenticated
                waiter.future.set_result(public_answer(body, False))
                return
            if body.get("nonce") == waiter.nonce:
                try:
                    key = self.key()
                except PressError:
                    return
                if signing.verify_result(body, key, device_id, topic, waiter.nonce):
                    waiter.future.set_result(public_answer(body, True))
                else:
                    self.stats.forged += 1
                return
            # an answer without a signature is taken for a signed press only as what a device says before it
            # knows the key (`unauthorized`, `expired`, ...): a made-up "ok" would otherwise read as done
            if (
                "nonce" not in body
                and "sig" not in body
                and waiter.unverified is None
                and body["status"] == "rejected"
                and body.get("reason") in policy.UNAUTHENTICATED
            ):
                waiter.unverified = public_answer(body, False)
                future = waiter.future
                self._loop.call_later(
                    UNVERIFIED_GRACE_S,
                    lambda w=waiter, f=future: None if f.done() else f.set_result(w.unverified),
                )
                return
