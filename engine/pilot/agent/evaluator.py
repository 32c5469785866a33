"""Runs checked expressions with bounded cost: parsed once, evaluated many times.

Only expressions that passed `pilot.expressions.check` should reach this module, but
the evaluator does not rely on it: it checks the tree's node types and size again
when it first parses an expression, and evaluates with `pilot.expressions.BoundedEval`,
whose operators and functions bound every number, text and tuple they touch and
whose node visits are capped. Sensor values are bounded the same way when an
expression reads them. Whatever goes wrong raises, and the caller counts it as
the rule's or sensor's error: an evaluation never hangs and never takes the agent down.
"""

from __future__ import annotations

import ast
import math
import time
import warnings
from collections import deque
from collections.abc import Callable
from typing import Any

from pilot import expressions
from pilot.expressions import BoundedEval, LimitError, bounded
from pilot.units import parse_duration

MAX_STRING = expressions.MAX_STRING
MAX_SAMPLES = 10_000  # per sensor kept for window functions: avg() over them stays cheap
_TIME_NAMES = frozenset({"now", "hour", "minute", "weekday"})


class Missing(Exception):
    """An input has no value yet: the expression is simply not true."""


class History:
    """Recent samples of the sensors that some window function reads, and no others."""

    def __init__(self, spans: dict[str, float]) -> None:
        self.spans = spans
        self._samples: dict[str, deque[tuple[float, float]]] = {s: deque(maxlen=MAX_SAMPLES) for s in spans}

    def add(self, sensor: str, value: Any, now: float) -> None:
        samples = self._samples.get(sensor)
        if samples is None or not isinstance(value, (int, float)) or isinstance(value, bool):
            return
        try:
            number = float(value)
        except OverflowError:
            return
        if not math.isfinite(number):
            return
        samples.append((now, number))
        horizon = now - self.spans[sensor]
        while samples and samples[0][0] < horizon:
            samples.popleft()

    def window(self, sensor: str, seconds: float, now: float) -> list[tuple[float, float]]:
        return [(t, v) for t, v in self._samples.get(sensor, ()) if t >= now - seconds]


class Evaluator:
    def __init__(self, history: History | None = None, clock: Callable[[], float] = time.time) -> None:
        self.history = history or History({})
        self.clock = clock
        self._engine = BoundedEval(functions=self._functions())
        self._trees: dict[str, tuple[Any, tuple[str, ...], bool] | Exception] = {}

    def _functions(self) -> dict[str, Callable]:
        def window(sensor: str, span: str) -> list[float]:
            values = [v for _, v in self.history.window(sensor, parse_duration(span), self.clock())]
            if not values:
                raise Missing(sensor)
            return values

        def rate(sensor: str, span: str) -> float:
            samples = self.history.window(sensor, parse_duration(span), self.clock())
            if len(samples) < 2 or samples[-1][0] == samples[0][0]:
                raise Missing(sensor)
            return (samples[-1][1] - samples[0][1]) / (samples[-1][0] - samples[0][0])

        def avg(sensor: str, span: str) -> float:
            values = window(sensor, span)
            return math.fsum(values) / len(values)

        return {
            "avg": avg,
            "max_over": lambda s, w: max(window(s, w)),
            "min_over": lambda s, w: min(window(s, w)),
            "rate": rate,
        }

    def _compiled(self, expr: str) -> tuple[Any, tuple[str, ...], bool]:
        """Parse and vet once: the tree, the sensor names to bind, whether time is used."""
        entry = self._trees.get(expr)
        if entry is None:
            try:
                entry = _prepare(expr)
            except (SyntaxError, ValueError, RecursionError, MemoryError) as exc:
                entry = LimitError(f"expression refused: {exc}")
            self._trees[expr] = entry
        if isinstance(entry, Exception):
            raise LimitError(str(entry))
        return entry

    def evaluate(self, expr: str, values: dict[str, Any]) -> Any:
        """Value of expr, or raises (Missing, ZeroDivisionError, TypeError, LimitError, ...) for the caller
        to count."""
        tree, inputs, uses_time = self._compiled(expr)
        names: dict[str, Any] = {"True": True, "False": False}
        if uses_time:
            now = self.clock()
            local = time.localtime(now)
            names.update(now=now, hour=local.tm_hour, minute=local.tm_min, weekday=local.tm_wday)
        for name in inputs:
            value = values.get(name)
            if value is None or (isinstance(value, float) and math.isnan(value)):
                raise Missing(name)
            names[name] = value  # bounded when the expression reads it
        result = self._engine.run(tree, names)
        if isinstance(result, tuple):
            raise TypeError("an expression's value is a number, text or a boolean, not a tuple")
        return bounded(result)


def _prepare(expr: str) -> tuple[Any, tuple[str, ...], bool]:
    text = expr.strip()
    if len(text) > expressions.MAX_LENGTH:
        raise ValueError(f"longer than {expressions.MAX_LENGTH} characters")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        tree = ast.parse(text, mode="eval")
    nodes = list(ast.walk(tree))
    if len(nodes) > expressions.MAX_NODES * 2:  # check() counts the same nodes; slack for Load contexts
        raise ValueError("too many parts")
    refused = sorted({type(n).__name__ for n in nodes if not isinstance(n, expressions.ALLOWED_NODES)})
    if refused:
        raise ValueError(f"{', '.join(refused)} not allowed")
    _quote_window_arguments(tree)  # avg(cpu, "5m") reads cpu's history, not its value
    names = _names(tree)
    uses_time = bool(names & _TIME_NAMES)
    inputs = tuple(sorted(names - _TIME_NAMES - {"True", "False"}))
    return tree.body, inputs, uses_time


def _names(tree: Any) -> set[str]:
    funcs = {id(n.func) for n in ast.walk(tree) if isinstance(n, ast.Call)}
    return {n.id for n in ast.walk(tree) if isinstance(n, ast.Name) and id(n) not in funcs}


def _quote_window_arguments(tree: Any) -> None:
    for node in ast.walk(tree):
        if (
            isinstance(node, ast.Call)
            and isinstance(node.func, ast.Name)
            and node.func.id in expressions.WINDOW_FUNCTIONS
        ):
            if node.args and isinstance(node.args[0], ast.Name):
                node.args[0] = ast.copy_location(ast.Constant(node.args[0].id), node.args[0])
