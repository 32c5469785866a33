"""Reloading the profile of a running agent (SIGHUP or a `_reload` command).

The reloader never compiles anything itself: it is handed a function that
returns a fresh CompileResult (the CLI passes one that runs the compile
worker), so the agent package never imports the profile compiler.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from collections.abc import Callable
from dataclasses import fields
from typing import TYPE_CHECKING

from pilot.plan import CompileResult, Plan

if TYPE_CHECKING:
    from pilot.agent.runtime import Agent

log = logging.getLogger("pilot")

MAX_ERRORS_REPORTED = 20  # diagnostics sent back on the result topic of a refused reload


def connection_changes(old: Plan, new: Plan) -> list[str]:
    """The settings a reload cannot apply on the running MQTT connection (the broker, TLS, credentials,
    the last will's topic), named as the profile spells them; their values are never logged."""
    changed = [f"mqtt.{f.name}" for f in fields(old.mqtt) if getattr(old.mqtt, f.name) != getattr(new.mqtt, f.name)]
    if old.topics.availability != new.topics.availability:
        changed.append("device.id")
    return changed


class Reloader:
    """Re-validate the profile and swap the plan in; a broken profile leaves the old plan running."""

    MIN_INTERVAL = 5.0  # seconds between two reloads; requests in between fold into one

    def __init__(self, agent: Agent, recompile: Callable[[], CompileResult]) -> None:
        self.agent, self.recompile = agent, recompile
        self.lock = threading.Lock()  # shared with the Deployer: a reload never runs inside a deploy
        self._wanted = threading.Event()
        self._origin = ""
        self._last = 0.0
        self._worker: threading.Thread | None = None

    def request(self, origin: str) -> None:
        """Ask for a reload without blocking the caller (a signal handler or paho's thread).
        One worker runs them; a flood of requests folds into one reload every few seconds."""
        self._origin = origin
        self._wanted.set()
        if self._worker is None or not self._worker.is_alive():
            self._worker = threading.Thread(target=self._work, name="pilot-reload", daemon=True)
            self._worker.start()

    def _work(self) -> None:
        while self._wanted.wait(timeout=30):
            wait = self._last + self.MIN_INTERVAL - time.monotonic()
            if wait > 0:
                time.sleep(wait)
            self._wanted.clear()
            self._last = time.monotonic()
            try:
                self.run(self._origin)
            except Exception:  # a reload must never take the agent down with it
                log.exception("reload failed; the running profile stays")
                self._reply({"status": "failed", "reason": "unavailable"})

    def _reply(self, body: dict) -> None:
        topic = f"{self.agent.plan.topics.base}/cmd/_reload/result"
        self.agent.session.publish_result(topic, json.dumps({**body, "ts": int(time.time())}), 1, False)

    def from_mqtt(self, payload: bytes) -> None:
        """Runs on paho's thread: cheap checks only, then a request for the worker."""
        plan = self.agent.plan
        if len(payload) > plan.policy.max_payload:
            return
        if plan.policy.require_signed:
            commands = self.agent.commands
            if commands is None:
                return
            reason, nonce = commands.verify_control(f"{plan.topics.base}/cmd/_reload/set", payload, False)
            if reason:
                if nonce or commands.guards.junk_replies.allow():  # junk: one answer a second
                    self._reply({"status": "rejected", "reason": reason, **({"nonce": nonce} if nonce else {})})
                return
        self.request("mqtt")

    def run(self, origin: str) -> None:
        with self.lock:
            log.info(
                "reload requested (%s): validating %s",
                origin,
                self.agent.plan.sources[0] if self.agent.plan.sources else self.agent.plan.profile,
            )
            try:
                result = self.recompile()
            except (RuntimeError, OSError) as exc:
                log.error("reload failed, keeping the running profile: %s", exc)
                self._reply({"status": "failed", "reason": "unavailable"})
                return
            if result.plan is None:
                log.error(
                    "reload refused, keeping the running profile:\n%s", "\n".join(d.text() for d in result.diagnostics)
                )
                self._reply(
                    {
                        "status": "rejected",
                        "reason": "invalid_profile",
                        "errors": [d.text() for d in result.diagnostics[:MAX_ERRORS_REPORTED]],
                    }
                )
                return
            changed = connection_changes(self.agent.plan, result.plan)
            if changed:
                log.error("reload refused: %s changed, which takes a restart of Pilot to apply", ", ".join(changed))
                self._reply({"status": "rejected", "reason": "restart_required"})
                return
            self.agent.reload(result.plan)
            self._reply({"status": "ok", "profile_hash": result.plan.profile_hash})
