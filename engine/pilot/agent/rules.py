"""On-device rules: a condition over sensors, held for a while, fires steps; a second condition clears.

Rules are evaluated when one of their inputs changes (never by polling every
rule), and once more at the moment a `for:` hold would complete, so a
condition that stays true without any input changing still fires on time.
Time is injected: tests drive `for`, cooldowns and clearing with a fake clock.
"""

from __future__ import annotations

import logging
import time
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from pilot.agent.evaluator import Evaluator, Missing
from pilot.agent.telemetry import first_time
from pilot.plan import Rule

log = logging.getLogger("pilot.rules")


@dataclass
class RuleState:
    rule: Rule
    active: bool = False
    pending_since: float | None = None
    last_fired: float | None = None
    fired: int = 0
    errors: int = 0
    error_kinds: set[str] = field(default_factory=set)

    def note_error(self, message: str) -> None:
        self.errors += 1
        if first_time(self.error_kinds, message):
            log.warning("rule %s: %s", self.rule.id, message)


class RuleEngine:
    def __init__(
        self,
        rules: tuple[Rule, ...],
        evaluator: Evaluator,
        fire: Callable[[Rule], None],
        clear: Callable[[Rule], None],
        wake_at: Callable[[float], None] = lambda deadline: None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.evaluator = evaluator
        self._fire, self._clear, self._wake_at, self.clock = fire, clear, wake_at, clock
        self.states = {r.id: RuleState(r) for r in rules}
        self._by_input: dict[str, list[str]] = defaultdict(list)
        for rule in rules:
            for name in rule.inputs:
                self._by_input[name].append(rule.id)

    def _truth(self, state: RuleState, expr: str, values: dict[str, Any]) -> bool | None:
        """True/False, or None when an input is missing (the rule is then simply not true)."""
        try:
            return bool(self.evaluator.evaluate(expr, values))
        except Missing:
            return None
        except Exception as exc:  # division by zero, type errors, NaN: counted, never raised
            state.note_error(f"{type(exc).__name__}: {exc}")
            return None

    def on_change(self, changed: set[str] | list[str], values: dict[str, Any]) -> None:
        ids = {rid for name in changed for rid in self._by_input.get(name, ())}
        for rid in sorted(ids):
            self._evaluate(self.states[rid], values)

    def evaluate_all(self, values: dict[str, Any]) -> None:
        for state in self.states.values():
            self._evaluate(state, values)

    def poll(self, values: dict[str, Any]) -> None:
        """Re-evaluate rules whose hold time may have completed."""
        now = self.clock()
        for state in self.states.values():
            if state.pending_since is not None and now - state.pending_since >= state.rule.hold:
                self._evaluate(state, values)

    def _evaluate(self, state: RuleState, values: dict[str, Any]) -> None:
        rule, now = state.rule, self.clock()
        if state.active:
            if rule.clear is not None:
                clearing = self._truth(state, rule.clear, values) is True
            else:
                clearing = self._truth(state, rule.when, values) is not True
            if clearing:
                state.active = False
                state.pending_since = None
                self._clear(rule)
            return
        if self._truth(state, rule.when, values) is not True:
            state.pending_since = None
            return
        if state.pending_since is None:
            state.pending_since = now
        if now - state.pending_since < rule.hold:
            self._wake_at(state.pending_since + rule.hold)
            return
        if state.last_fired is not None and rule.cooldown and now - state.last_fired < rule.cooldown:
            return  # stays pending; the next input change after the cooldown fires it
        state.active = True
        state.pending_since = None
        state.last_fired = now
        state.fired += 1
        self._fire(rule)
