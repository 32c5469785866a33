"""The expression evaluator has a bound on the cost of everything it does (issue "Hostile input,
round two": `round(x, -999999999)` passed validation and pinned a core computing 10**999999999).

Hypothesis builds hostile expressions (huge literals, round() digits, products of products, text
repetition, tuples, every operator) and hostile sensor values (a 4,000-digit whole number, 1e308,
infinity, NaN, 20,000 characters). Each example must finish within its deadline and either give a
bounded value or raise one of the errors the rule engine and the sensor set count; what `check`
accepts, the evaluator runs without anything else going wrong. The examples are few and each has a
deadline, so the suite stays short on a shared 2-core machine; the fuzz target
fuzz/fuzz_evaluator.py runs the same properties for as long as one wants.
"""

from __future__ import annotations

import math
import sys
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from simpleeval import InvalidExpression

from pilot import expressions
from pilot.agent.evaluator import Evaluator, History, Missing
from pilot.agent.rules import RuleEngine
from pilot.expressions import MAX_INT, MAX_ROUND_DIGITS, MAX_STRING, LimitError, check
from pilot.plan import Rule

SENSORS = frozenset({"a", "b", "s"})
CLEAN = (Missing, ArithmeticError, ValueError, TypeError, InvalidExpression)
HOSTILE_NUMBERS = st.one_of(
    st.integers(min_value=-(10**40), max_value=10**40),
    st.sampled_from([int("9" * 4000), -int("9" * 4000), 10**18, 10**18 + 1, 2**63, 0, 1, -1]),
    st.floats(allow_nan=True, allow_infinity=True),
    st.sampled_from([1e308, -1e308, 5e-324, float("inf"), float("nan")]),
)
HOSTILE_VALUES = st.one_of(
    HOSTILE_NUMBERS,
    st.booleans(),
    st.text(max_size=20).map(lambda t: t),
    st.sampled_from(["x" * (MAX_STRING + 1), "%010000000d", "a" * 5000]),
)
LITERALS = st.one_of(
    st.integers(min_value=-(10**30), max_value=10**30).map(str),
    st.sampled_from(["99999999999999999999999", "1e308", "1e999", "-999999999", "0", "0.0", "2.5"]),
    st.sampled_from(["'a'", '"on"', "''", "True", "False"]),
)


@st.composite
def _leaf(draw: st.DrawFn) -> str:
    kind = draw(st.sampled_from(["name", "name", "literal", "window"]))
    if kind == "name":
        return draw(st.sampled_from(sorted(SENSORS)))
    if kind == "literal":
        return draw(LITERALS)
    fn = draw(st.sampled_from(["avg", "max_over", "min_over", "rate"]))
    return f"{fn}({draw(st.sampled_from(['a', 'b']))}, '5m')"


def _combine(children: st.SearchStrategy[str]) -> st.SearchStrategy[str]:
    ops = ["+", "-", "*", "/", "//", "%", "<", "<=", ">", ">=", "==", "!=", "and", "or", "in", "not in"]
    digits = st.integers(min_value=-(10**9), max_value=10**9).map(str)
    return st.one_of(
        st.tuples(children, st.sampled_from(ops), children).map(lambda t: f"({t[0]} {t[1]} {t[2]})"),
        children.map(lambda a: f"(-{a})"),
        children.map(lambda a: f"(not {a})"),
        st.tuples(children, children, children).map(lambda t: f"({t[0]} if {t[1]} else {t[2]})"),
        st.tuples(children, st.one_of(digits, children)).map(lambda t: f"round({t[0]}, {t[1]})"),
        st.lists(children, min_size=1, max_size=8).map(lambda xs: f"max({', '.join(xs)})"),
        st.lists(children, min_size=1, max_size=8).map(lambda xs: f"min({', '.join(xs)})"),
        st.tuples(children, children, children).map(lambda t: f"clamp({t[0]}, {t[1]}, {t[2]})"),
        children.map(lambda a: f"abs({a})"),
        st.tuples(children, st.lists(children, min_size=0, max_size=4)).map(
            lambda t: f"({t[0]} in ({', '.join(t[1])}{',' if len(t[1]) == 1 else ''}))"
        ),
        st.tuples(children, children).map(lambda t: f"({t[0]} * {t[1]} * {t[1]} * {t[1]} * {t[1]})"),
    )


EXPRESSIONS = st.recursive(_leaf(), _combine, max_leaves=8)
VALUE_MAPS = st.fixed_dictionaries({"a": HOSTILE_VALUES, "b": HOSTILE_VALUES, "s": HOSTILE_VALUES})


def _bounded(value: object) -> bool:
    if isinstance(value, bool):
        return True
    if isinstance(value, int):
        return abs(value) <= MAX_INT
    if isinstance(value, float):
        return math.isfinite(value)
    if isinstance(value, str):
        return len(value) <= MAX_STRING
    return False


def _evaluator() -> Evaluator:
    ev = Evaluator(History({"a": 600.0, "b": 600.0}), clock=lambda: 10_000.0)
    for t, (a, b) in enumerate([(1, 2), (int("9" * 4000), 1e308), (float("inf"), -5)]):
        ev.history.add("a", a, 9_900.0 + t)
        ev.history.add("b", b, 9_900.0 + t)
    return ev


@settings(max_examples=300, deadline=2000, suppress_health_check=[HealthCheck.too_slow])
@given(EXPRESSIONS, VALUE_MAPS)
def test_hostile_expressions_finish_with_a_bounded_value_or_a_clean_error(text: str, values: dict) -> None:
    checked = check(text, SENSORS)
    assert (checked.tree is None) == bool(checked.errors)
    try:
        value = _evaluator().evaluate(text, values)  # also the refused ones: the evaluator is a second wall
    except CLEAN:
        return
    assert _bounded(value), (text, values, value)


@settings(max_examples=150, deadline=2000)
@given(EXPRESSIONS)
def test_what_check_accepts_evaluates_cleanly_with_ordinary_values(text: str) -> None:
    checked = check(text, SENSORS)
    if checked.errors:
        return
    try:
        value = _evaluator().evaluate(text, {"a": 42, "b": 0.5, "s": "on"})
    except CLEAN:
        return
    assert _bounded(value)


@settings(max_examples=200, deadline=2000)
@given(st.integers(), st.one_of(st.integers(), st.floats(allow_nan=False)))
def test_round_digits_beyond_the_bound_are_refused_by_check_and_evaluator(digits: int, x: float) -> None:
    text = f"round(a, {digits})"
    refused = not -MAX_ROUND_DIGITS <= digits <= MAX_ROUND_DIGITS
    assert bool(check(text, SENSORS).errors) == refused
    if refused:
        with pytest.raises(LimitError):
            Evaluator().evaluate(text, {"a": x})


@pytest.mark.parametrize(
    "text, values",
    [
        ("round(a, -999999999)", {"a": 5}),  # the reported one: 10**999999999
        ("round(a, 999999999)", {"a": 5.5}),
        ("a * a * a * a * a * a * a * a", {"a": 10**17}),
        ("a * a * a * a * a * a * a * a", {"a": int("9" * 4000)}),
        ("a % b", {"a": int("9" * 4000), "b": 7}),
        ("a // b", {"a": int("9" * 4000), "b": 3}),
        ("a > b", {"a": int("9" * 4000), "b": int("8" * 4000)}),
        ("s * 100000000 == ''", {"s": "x"}),
        ("s % a == ''", {"s": "%0100000000d", "a": 1}),
        ("s + s + s == ''", {"s": "x" * 6000}),
        ("a in (1, 2, 3) * 100000000", {"a": 1}),
        ("max(a, b)", {"a": int("9" * 4000), "b": 1}),
        ("round(a)", {"a": 1e308}),
    ],
)
def test_each_costly_operation_of_the_class_is_bounded(text: str, values: dict) -> None:
    try:
        value = Evaluator().evaluate(text, values)
    except CLEAN:
        return
    assert _bounded(value), value


def test_validate_reports_what_the_evaluator_would_refuse_at_its_offset() -> None:
    cases = {
        "round(a, -999999999)": (9, "from -20 to 20"),
        "round(a, b)": (9, "written in the expression"),
        "a + 99999999999999999999": (4, "at most 10**18"),
        "a * 1e999": (4, "too large for a float"),
        "'x' * a": (0, "text can only be joined"),
        "a > (1, 2)": (4, "only after `in`"),
        "a + 1 / 0": (4, "divides by zero"),
        "a + min('x', 1)": (4, "always fails"),
    }
    for text, (offset, says) in cases.items():
        errors = check(text, SENSORS).errors
        assert errors and errors[0].offset == offset and says in errors[0].message, (text, errors)


def test_a_rule_counts_a_bounded_failure_and_keeps_running() -> None:
    rule = Rule(id="r", when="a * a * a > 1", clear=None, hold=0.0, do=(), inputs=("a",))
    fired: list[str] = []
    engine = RuleEngine((rule,), Evaluator(), lambda r: fired.append(r.id), lambda r: None)
    engine.on_change(["a"], {"a": int("9" * 4000)})
    assert engine.states["r"].errors == 1 and fired == []
    engine.on_change(["a"], {"a": 2})
    assert fired == ["r"]


def test_a_tampered_plan_expression_is_refused_by_the_evaluator_itself() -> None:
    ev = Evaluator()
    for text in ("9**9**9", "a.__class__", "[a] * 10**8", "(lambda: 1)()", "a" + " + a" * 200):
        with pytest.raises(LimitError):
            ev.evaluate(text, {"a": 1})
    assert expressions.MAX_STEPS >= 2 * expressions.MAX_NODES


@settings(max_examples=300, deadline=2000)
@given(st.binary(max_size=120))
def test_the_fuzz_target_runs_without_atheris(data: bytes) -> None:
    sys.path.insert(0, str(Path(__file__).resolve().parents[3] / "fuzz"))
    try:
        import fuzz_evaluator
    finally:
        sys.path.pop(0)
    fuzz_evaluator.TestOneInput(data)
