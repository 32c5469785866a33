"""Runs checked expressions with simpleeval: parsed once, evaluated many times.

Only expressions that passed `pilot.expressions.check` reach this module, and
names are bound only to numbers, strings and booleans, so simpleeval's own
guards are a second wall, not the first.
"""

from __future__ import annotations

import ast
import math
import operator
import time
from collections import deque
from collections.abc import Callable
from typing import Any

from simpleeval import SimpleEval

from pilot.units import parse_duration

MAX_STRING = 10_000  # no expression needs to build a longer string


def _safe_add(a: Any, b: Any) -> Any:
    if isinstance(a, str) and isinstance(b, str) and len(a) + len(b) > MAX_STRING:
        raise ValueError(f"string longer than {MAX_STRING} characters")
    return a + b


def _safe_mult(a: Any, b: Any) -> Any:
    if isinstance(a, str) or isinstance(b, str):
        raise TypeError("strings cannot be multiplied")
    return a * b


def _safe_mod(a: Any, b: Any) -> Any:
    if isinstance(a, str):
        raise TypeError("string formatting with % is not allowed")
    return a % b


_OPERATORS = {
    ast.Add: _safe_add,
    ast.Sub: operator.sub,
    ast.Mult: _safe_mult,
    ast.Div: operator.truediv,
    ast.FloorDiv: operator.floordiv,
    ast.Mod: _safe_mod,
    ast.Eq: operator.eq,
    ast.NotEq: operator.ne,
    ast.Gt: operator.gt,
    ast.Lt: operator.lt,
    ast.GtE: operator.ge,
    ast.LtE: operator.le,
    ast.Not: operator.not_,
    ast.USub: operator.neg,
    ast.UAdd: operator.pos,
    ast.In: lambda a, b: a in b,
    ast.NotIn: lambda a, b: a not in b,
}


class Missing(Exception):
    """An input has no value yet: the expression is simply not true."""


class History:
    """Recent samples of the sensors that some window function reads, and no others."""

    def __init__(self, spans: dict[str, float]) -> None:
        self.spans = spans
        self._samples: dict[str, deque[tuple[float, float]]] = {s: deque() for s in spans}

    def add(self, sensor: str, value: Any, now: float) -> None:
        samples = self._samples.get(sensor)
        if samples is None or not isinstance(value, (int, float)) or isinstance(value, bool):
            return
        samples.append((now, float(value)))
        horizon = now - self.spans[sensor]
        while samples and samples[0][0] < horizon:
            samples.popleft()

    def window(self, sensor: str, seconds: float, now: float) -> list[tuple[float, float]]:
        return [(t, v) for t, v in self._samples.get(sensor, ()) if t >= now - seconds]


class Evaluator:
    def __init__(self, history: History | None = None, clock: Callable[[], float] = time.time) -> None:
        self.history = history or History({})
        self.clock = clock
        self._engine = SimpleEval(operators=_OPERATORS, functions=self._functions(), names={})
        self._trees: dict[str, Any] = {}

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

        return {
            "min": min,
            "max": max,
            "abs": abs,
            "round": round,
            "clamp": lambda x, low, high: max(low, min(high, x)),
            "avg": lambda s, w: (lambda v: sum(v) / len(v))(window(s, w)),
            "max_over": lambda s, w: max(window(s, w)),
            "min_over": lambda s, w: min(window(s, w)),
            "rate": rate,
        }

    def _compiled(self, expr: str) -> tuple[Any, tuple[str, ...], bool]:
        """Parse once: the tree, the sensor names to bind, whether time is used."""
        entry = self._trees.get(expr)
        if entry is None:
            tree = self._engine.parse(expr.strip())
            _quote_window_arguments(tree)  # avg(cpu, "5m") reads cpu's history, not its value
            names = _names(tree)
            uses_time = bool(names & {"now", "hour", "minute", "weekday"})
            inputs = tuple(sorted(names - {"now", "hour", "minute", "weekday", "True", "False"}))
            entry = self._trees[expr] = (tree, inputs, uses_time)
        return entry

    def evaluate(self, expr: str, values: dict[str, Any]) -> Any:
        """Value of expr, or raises (Missing, ZeroDivisionError, TypeError, ...) for the caller to count."""
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
            names[name] = value
        self._engine.names = names
        result = self._engine.eval(expr, previously_parsed=tree)
        if isinstance(result, float) and math.isnan(result):
            raise ValueError("result is NaN")
        return result


def _names(tree: Any) -> set[str]:
    funcs = {id(n.func) for n in ast.walk(tree) if isinstance(n, ast.Call)}
    return {n.id for n in ast.walk(tree) if isinstance(n, ast.Name) and id(n) not in funcs}


def _quote_window_arguments(tree: Any) -> None:
    from pilot.expressions import WINDOW_FUNCTIONS

    for node in ast.walk(tree):
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id in WINDOW_FUNCTIONS:
            if node.args and isinstance(node.args[0], ast.Name):
                node.args[0] = ast.copy_location(ast.Constant(node.args[0].id), node.args[0])
