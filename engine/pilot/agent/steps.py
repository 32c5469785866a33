"""Running the steps of rules and schedules: command, publish, notify, delay.

Steps run in order on a worker thread (a `delay` must not hold up sensors or
MQTT). A `command` step goes through the command service's local path: the
allowlist, value and cooldown guards apply, no signature or confirmation is
needed (the step comes from the local profile), and it is audited with its
origin, `rule:<id>` or `schedule:<id>`.
"""

from __future__ import annotations

import logging
import re
import threading
from collections.abc import Callable
from typing import Any

from pilot.actions import ActionContext, ActionError
from pilot.actions._base import System
from pilot.plan import Step

log = logging.getLogger("pilot.steps")
_PLACEHOLDER = re.compile(r"\{([a-z][a-z0-9_]*)\}")


def render(template: str, values: dict[str, Any]) -> str:
    """`{sensor_id}` becomes that sensor's latest value; unknown names stay as written."""

    def sub(match: re.Match) -> str:
        value = values.get(match.group(1))
        return match.group(0) if value is None else str(value)

    return _PLACEHOLDER.sub(sub, template)


class StepRunner:
    def __init__(
        self,
        base_topic: str,
        values: Callable[[], dict[str, Any]],
        run_command: Callable[[str, Any, str], None] | None,
        publish: Callable[[str, str, int, bool], None],
        system: System,
        dry_run: bool = False,
        ctx: ActionContext | None = None,
        wait: Callable[[float], Any] | None = None,
    ) -> None:
        self.base_topic = base_topic
        self.values = values
        self.run_command = run_command
        self.publish = publish
        self.system = system
        self.dry_run = dry_run
        self.ctx = ctx or ActionContext()
        self._stop = threading.Event()
        self._wait = wait or self._stop.wait  # tests inject one; the real one ends early when stopped
        self._pool: Any = None  # made on first use: most profiles never run a step

    def run(self, steps: tuple[Step, ...], origin: str) -> None:
        if not steps or self._stop.is_set():
            return
        if self._pool is None:
            from concurrent.futures import ThreadPoolExecutor

            self._pool = ThreadPoolExecutor(max_workers=2, thread_name_prefix="pilot-steps")
        try:
            self._pool.submit(self._run, steps, origin)
        except RuntimeError:
            log.warning("%s: not run, the agent is stopping", origin)

    def _run(self, steps: tuple[Step, ...], origin: str) -> None:
        for step in steps:
            if self._stop.is_set():
                return
            try:
                self.perform(step, origin)
            except Exception:
                log.exception("%s: step %s failed", origin, step.kind)

    def perform(self, step: Step, origin: str) -> None:
        if step.kind == "delay":
            self._wait(step.seconds)
        elif step.kind == "command":
            if self.run_command is None:
                log.warning("%s: no commands are declared; step skipped", origin)
                return
            self.run_command(step.command or "", step.value, origin)
        elif step.kind == "publish":
            topic = step.topic or ""
            if topic.startswith("~/"):
                topic = f"{self.base_topic}/{topic[2:]}"  # `~/x` lives under this device's topics
            self.publish(topic, render(step.payload or "", self.values()), step.qos, step.retain)
        elif step.kind == "notify":
            self._notify(step, origin)

    def _notify(self, step: Step, origin: str) -> None:
        from pilot.registry import ACTIONS

        entry = ACTIONS.get("notify.desktop")
        message = render(step.message or "", self.values())
        args = {"message": message, **({"title": step.title} if step.title else {})}
        try:
            calls = entry.factory(self.ctx, None, **args) if entry else []
        except ActionError as exc:
            log.warning("%s: notification not shown (%s): %s", origin, exc, message)
            return
        for call in calls:
            if self.dry_run:
                log.info("dry-run %s: %s", origin, call.describe())
            else:
                self.system.perform(call)

    def stop(self) -> None:
        self._stop.set()
        if self._pool is not None:
            self._pool.shutdown(wait=False, cancel_futures=True)
