"""A profile sent to a device from the console, and the profile a device runs read back.

The text is validated first with the console's own validator (the editor); only a valid text is signed,
with the console's key id and the signed-in user as `by`, in the exact bytes `pilot deploy` sends
(pilot.agent.deploy). An answer is believed only when it echoes our nonce with a valid result signature;
a device that never learnt our key answers unsigned (`unauthorized`, `unavailable`, ...), which is passed on
marked unverified when nothing better comes shortly after, as presses do. Each send moves the device's
rollout state in the fleet (`sending`, then what the answer says, or `no_answer`); the agents' retained
`<base>/deploy` topic moves it too (ingest.py), so a deploy from a terminal shows as well.
"""

from __future__ import annotations

import asyncio
import json
import re
import time
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from pilot.agent import deploy as wire
from pilot.agent import policy, signing
from pilot.console.commands import STATUS, CommandSender, PressError
from pilot.console.fleet import Fleet

DEPLOY_TIMEOUT_S = 40.0
GET_TIMEOUT_S = 15.0
UNVERIFIED_GRACE_S = 1.5
PRE_KEY = policy.UNAUTHENTICATED | {"unavailable"}  # what a device says before it can know who asked
MAX_RESULT = 2 * wire.MAX_DEPLOY_BYTES
HEX64 = re.compile(r"[0-9a-f]{64}")
STATES = {"ok": "applied", "rolled_back": "rolled_back", "timeout": "no_answer"}
MAX_ERROR_LINE = 500
MAX_NAME = 128
MAX_REDACTED = 64


class NoAnswer(Exception):
    """The device did not answer in time."""


@dataclass
class _Waiter:
    request: wire.Request
    future: asyncio.Future
    unverified: dict[str, Any] | None = None


def _text(value: Any, size: int) -> str | None:
    return value[:size] if isinstance(value, str) else None


def public_deploy(body: dict[str, Any], verified: bool) -> dict[str, Any]:
    """What the page is shown of a deploy answer: codes checked, text bounded, never the raw object."""
    status = body.get("status")
    reason = body.get("reason")
    errors = body.get("errors")
    profile_hash = body.get("profile_hash")
    return {
        "status": status if isinstance(status, str) and STATUS.fullmatch(status) else "failed",
        "reason": reason if isinstance(reason, str) and STATUS.fullmatch(reason) else None,
        "detail": _text(body.get("detail"), 500),
        "errors": [e[:MAX_ERROR_LINE] for e in errors[: wire.MAX_ERRORS] if isinstance(e, str)]
        if isinstance(errors, list)
        else [],
        "profile_hash": profile_hash[:128] if isinstance(profile_hash, str) else None,
        "verified": verified,
    }


class ProfileSender:
    """Sends `_profile/set` and `_profile/get`, matches their answers; `on_result` runs on the MQTT thread."""

    def __init__(
        self,
        publish: Callable[..., bool],
        sender: CommandSender,
        fleet: Fleet,
        prefix: str,
        *,
        timeout: float = DEPLOY_TIMEOUT_S,
        get_timeout: float = GET_TIMEOUT_S,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.publish = publish
        self.sender = sender  # its key(): the console's keyring and key id
        self.fleet = fleet
        self.prefix = prefix
        self.timeout = timeout
        self.get_timeout = get_timeout
        self.clock = clock
        self._waiting: dict[str, list[_Waiter]] = defaultdict(list)
        self._loop: asyncio.AbstractEventLoop | None = None

    def base(self, device_id: str) -> str:
        return f"{self.prefix}/{device_id}"

    # -------------------------------------------------------------- sending
    async def _send(self, device_id: str, request: wire.Request, timeout: float) -> tuple[dict[str, Any], bool]:
        loop = asyncio.get_running_loop()
        self._loop = loop
        waiter = _Waiter(request, loop.create_future())
        self._waiting[device_id].append(waiter)
        try:
            if not self.publish(request.topic, request.payload, 1):
                raise PressError("broker_unavailable", "the console is not connected to the broker")
            try:
                return await asyncio.wait_for(asyncio.shield(waiter.future), timeout)
            except TimeoutError:
                if waiter.unverified is not None:
                    return waiter.unverified, False
                raise NoAnswer() from None
        finally:
            self._waiting[device_id].remove(waiter)
            if not self._waiting[device_id]:
                del self._waiting[device_id]

    async def deploy(self, device_id: str, text: str, user: str) -> dict[str, Any]:
        key = self.sender.key()
        try:
            request = wire.build_deploy(key, device_id, self.base(device_id), text, by=user, ts=int(self.clock()))
        except ValueError as exc:
            raise PressError("too_large" if "bytes" in str(exc) else "bad_profile", str(exc)) from None
        self.fleet.set_deploy(device_id, "sending", None, self.clock(), user, request.sha256)
        try:
            body, verified = await self._send(device_id, request, self.timeout)
        except NoAnswer:
            self.fleet.set_deploy(device_id, "no_answer", None, self.clock(), user, request.sha256)
            return {
                "status": "timeout",
                "reason": None,
                "detail": f"no answer within {self.timeout:g} s",
                "errors": [],
                "profile_hash": None,
                "verified": False,
            }
        except PressError:
            self.fleet.set_deploy(device_id, "no_answer", None, self.clock(), user, request.sha256)
            raise
        answer = public_deploy(body, verified)
        state = STATES.get(answer["status"], "rejected")
        self.fleet.set_deploy(
            device_id,
            state,
            answer["reason"] or (None if state == "applied" else answer["status"]),
            self.clock(),
            user,
            request.sha256,
        )
        return answer

    async def get(self, device_id: str, user: str) -> dict[str, Any]:
        key = self.sender.key()
        request = wire.build_get(key, device_id, self.base(device_id), by=user, ts=int(self.clock()))
        body, verified = await self._send(device_id, request, self.get_timeout)
        if not verified or body.get("status") != "ok":
            answer = public_deploy(body, verified)
            raise PressError(answer["reason"] or answer["status"], answer["detail"] or "")
        text = body.get("profile")
        if not isinstance(text, str):
            raise PressError("bad_answer", "the device's answer holds no profile text")
        redacted = body.get("redacted")
        return {
            "text": text,
            "sha256": wire.text_sha256(text),
            "name": _text(body.get("name"), MAX_NAME) or "profile.yaml",
            "redacted": [r[:200] for r in redacted[:MAX_REDACTED] if isinstance(r, str)]
            if isinstance(redacted, list)
            else [],
        }

    # -------------------------------------------------------------- answers (MQTT thread)
    def on_result(self, device_id: str, payload: bytes) -> None:
        loop = self._loop
        if not self._waiting.get(device_id) or loop is None or len(payload) > MAX_RESULT:
            return
        loop.call_soon_threadsafe(self._match, device_id, payload)

    def _match(self, device_id: str, payload: bytes) -> None:
        waiters = [w for w in self._waiting.get(device_id, ()) if not w.future.done()]
        if not waiters:
            return
        try:
            key = self.sender.key()
        except PressError:
            return
        for waiter in waiters:
            body = wire.read_answer(payload, key, device_id, waiter.request)
            if body is not None:
                waiter.future.set_result((body, True))
                return
        try:
            body = json.loads(payload)
        except (ValueError, RecursionError):
            return
        if not isinstance(body, dict):
            return
        if isinstance(body.get("nonce"), str):  # ours but not believed: a forgery, or a replay's answer
            for w in waiters:
                if w.request.nonce == body["nonce"]:
                    if not signing.verify_result(body, key, device_id, w.request.topic, w.request.nonce):
                        self.sender.stats.forged += 1
            return
        # unsigned: only what a device says before it can know who asked, and only once per waiter
        if "sig" in body or body.get("status") != "rejected" or body.get("reason") not in PRE_KEY:
            return
        for waiter in waiters:
            if waiter.unverified is None and body.get("op") == waiter.request.op:
                waiter.unverified = body
                future = waiter.future
                assert self._loop is not None
                self._loop.call_later(
                    UNVERIFIED_GRACE_S,
                    lambda w=waiter, f=future: None if f.done() else f.set_result((w.unverified, False)),
                )
                return
