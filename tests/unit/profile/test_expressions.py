"""pilot.expressions.check: the allowed grammar passes, everything else is refused
with a message and an offset, and nothing ever raises out of check()."""

from __future__ import annotations

import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from pilot import expressions
from pilot.expressions import MAX_DEPTH, MAX_LENGTH, MAX_NODES, check

SENSORS = frozenset({"cpu_usage", "cpu_temp", "gpu_temp", "hot", "state", "net_rx", "boot", "mem_used"})


def ok(text: str) -> expressions.Checked:
    result = check(text, SENSORS)
    assert result.errors == (), f"{text!r} refused: {result.errors}"
    assert result.tree is not None
    return result


def refused(text: str, *, sensors: frozenset[str] = SENSORS) -> tuple[expressions.ExprError, ...]:
    result = check(text, sensors)
    assert result.errors, f"{text!r} was accepted"
    assert result.tree is None, "a refused expression must not hand a tree to the evaluator"
    for err in result.errors:
        assert err.message and isinstance(err.message, str)
        assert 0 <= err.offset <= max(len(text), MAX_LENGTH)
    return result.errors


# ------------------------------------------------------------------ accepted


@pytest.mark.parametrize(
    "text",
    [
        "cpu_temp > 85",
        "cpu_temp > 85 or gpu_temp > 80",
        "cpu_usage >= 10 and cpu_usage <= 90",
        "1 < cpu_usage < 50",
        "cpu_usage == 100",
        "cpu_usage != 0",
        "not hot",
        "not (hot and cpu_temp > 50)",
        "cpu_usage + 1 - 2 * 3 / 4 // 5 % 6",
        "-cpu_usage",
        "+cpu_usage",
        "(cpu_usage)",
        "cpu_usage if hot else 0",
        "'busy' if cpu_usage > 90 else 'idle'",
        "min(cpu_usage, 50)",
        "max(1, 2, 3)",
        "max(cpu_usage, cpu_temp, gpu_temp, 1, 2, 3, 4, 5)",
        "abs(-cpu_usage)",
        "round(cpu_usage)",
        "round(cpu_usage, 1)",
        "clamp(cpu_usage, 0, 100)",
        'avg(cpu_usage, "5m")',
        "avg(cpu_usage, '1h30m') > 80",
        "max_over(cpu_temp, '1h')",
        "min_over(cpu_temp, '10s')",
        "rate(net_rx, '30s') > 1000000",
        'state == "charging"',
        "'charg' in state",
        "state not in ('full', 'charging')",
        "True",
        "False",
        "hot == False",
        "hour >= 22 or weekday > 4",
        "minute == 0",
        "now - boot > 3600",
        "cpu_usage > 1.5e1",
        "cpu_usage > 0.5",
        "  cpu_usage > 1  ",
        "\tcpu_usage > 1",
        "(cpu_usage > 1 and\n cpu_temp > 2)",
        "1" + " " * (MAX_LENGTH - 1),
    ],
)
def test_allowed_grammar_is_accepted(text: str) -> None:
    ok(text)


def test_names_are_the_sensors_read() -> None:
    assert ok("cpu_temp > 85 or gpu_temp > 80").names == {"cpu_temp", "gpu_temp"}
    assert ok("hour > 3 and now > 0").names == frozenset()
    assert ok("max(cpu_usage, 1)").names == {"cpu_usage"}


def test_window_functions_are_recorded() -> None:
    result = ok('avg(cpu_usage, "5m") > max_over(cpu_temp, "1h30m")')
    assert set(result.windows) == {("avg", "cpu_usage", 300.0), ("max_over", "cpu_temp", 5400.0)}
    assert result.names == {"cpu_usage", "cpu_temp"}


def test_check_takes_a_plain_set_too() -> None:
    assert check("a > 1", {"a"}).errors == ()


# ------------------------------------------------------------------ refused


@pytest.mark.parametrize(
    "text, says",
    [
        ("cpu_usage.__class__", "attribute"),
        ("().__class__", "attribute"),
        ("().__class__.__bases__[0].__subclasses__()", ""),
        ("cpu_usage.real", "attribute"),
        ("cpu_usage[0]", "indexing"),
        ("state[1:]", "indexing"),
        ("lambda: 1", "lambda"),
        ("(lambda: 1)()", "lambda"),
        ("[x for x in (1, 2)]", "comprehension"),
        ("(x for x in (1, 2))", "comprehension"),
        ("{x: 1 for x in (1, 2)}", "comprehension"),
        ("{1: 2}", "dict"),
        ("[1, 2]", "list"),
        ("{1, 2}", "set"),
        ("9**9**9", "`**`"),
        ("cpu_usage ** 2", "`**`"),
        ("(y := 1)", "`:=`"),
        ("f'{cpu_usage}'", "f-string"),
        ("cpu_usage & 1", "bitwise"),
        ("cpu_usage | 1", "bitwise"),
        ("cpu_usage ^ 1", "bitwise"),
        ("cpu_usage << 2", "bitwise"),
        ("~cpu_usage", "bitwise"),
        ("hot is True", "`is`"),
        ("hot is not True", "`is not`"),
        ("__import__('os')", "unknown function '__import__'"),
        ("open('/etc/passwd')", "unknown function 'open'"),
        ("eval('1')", "unknown function 'eval'"),
        ("exec('1')", "unknown function 'exec'"),
        ("getattr(cpu_usage, 'real')", "unknown function 'getattr'"),
        ("sqrt(4)", "unknown function 'sqrt'"),
        ("cpu_usage(1)", "unknown function 'cpu_usage'"),
        ("max(*(1, 2))", "unpacking"),
        ("round(cpu_usage, ndigits=1)", "keyword"),
        ("min()", "takes 1 to 8 arguments, got 0"),
        ("max(1, 2, 3, 4, 5, 6, 7, 8, 9)", "takes 1 to 8 arguments, got 9"),
        ("abs(1, 2)", "takes 1 arguments, got 2"),
        ("clamp(cpu_usage, 0)", "takes 3 arguments, got 2"),
        ("avg(cpu_usage)", "takes 2 arguments"),
        ("avg(cpu_usage, '5 minutes')", "'5 minutes' is not a duration"),
        ("avg(cpu_usage, '0s')", "longer than 0"),
        ("avg(cpu_usage, 5)", "needs a window"),
        ("avg(5, '5m')", "needs a sensor id"),
        ("avg(cpu_usage + 1, '5m')", "needs a sensor id"),
        ("unknown_sensor > 1", "unknown name 'unknown_sensor'"),
        ("cpu_usge > 1", "did you mean 'cpu_usage'?"),
        ("max > 1", "unknown name 'max'"),
        ("b'bytes'", "only numbers, strings and booleans"),
        ("1j", "only numbers, strings and booleans"),
        ("...", "only numbers, strings and booleans"),
        ("", "syntax error"),
        ("   ", "syntax error"),
        ("cpu_usage >", "syntax error"),
        ("cpu_usage if hot", "syntax error"),
        ("1; 2", "syntax error"),
        ("import os", "syntax error"),
        ("x = 1", "syntax error"),
        ("cpu_usage > 1\nand True", "syntax error"),
        ("yield 1", "syntax error"),
        ("await cpu_usage", ""),
        ("'unterminated", "syntax error"),
        ("1" + " " * MAX_LENGTH, f"the limit is {MAX_LENGTH}"),
    ],
)
def test_hostile_or_wrong_input_is_refused(text: str, says: str) -> None:
    errors = refused(text)
    assert any(says in e.message for e in errors), errors


def test_power_tower_is_refused_before_any_evaluation() -> None:
    # the classic way to hang an evaluator: refused on sight
    errors = refused("9**9**9**9**9")
    assert all("`**`" in e.message for e in errors)


def test_three_hundred_nested_parentheses() -> None:
    errors = refused("(" * 300 + "1" + ")" * 300)
    assert errors[0].offset == MAX_LENGTH
    assert "characters long" in errors[0].message


def test_fifty_thousand_unary_minus() -> None:
    text = "-" * 50_000 + "1"
    errors = refused(text)
    assert "50001 characters long" in errors[0].message


def test_deep_nesting_within_the_length_cap() -> None:
    text = "not " * (MAX_DEPTH + 10) + "hot"
    assert len(text) <= MAX_LENGTH
    errors = refused(text)
    assert any(f"more than {MAX_DEPTH} levels" in e.message for e in errors)


def test_too_many_parts_within_the_length_cap() -> None:
    text = "+".join(["1"] * 100)
    assert len(text) <= MAX_LENGTH
    errors = refused(text)
    assert any(f"the limit is {MAX_NODES}" in e.message for e in errors)


def test_parentheses_alone_are_not_depth() -> None:
    ok("(" * 100 + "cpu_usage" + ")" * 100)


def test_offsets_point_at_the_culprit() -> None:
    assert [e.offset for e in refused("cpu_usage > unknwn")] == [12]
    assert [e.offset for e in refused("hot and cpu_usage.real")] == [8]
    assert [e.offset for e in refused("1 + sqrt(2)")] == [4]
    assert [e.offset for e in refused("avg(cpu_usage, '5 minutes')")] == [15]


def test_offsets_count_leading_whitespace() -> None:
    assert [e.offset for e in refused("   unknwn > 1")] == [3]


def test_syntax_error_offsets_count_leading_whitespace() -> None:
    # "  cpu_usage > > 3": the second '>' is at index 14 of what the user wrote
    [err] = refused("  cpu_usage > > 3")
    assert "syntax error" in err.message
    assert err.offset == 14


def test_calling_a_call_names_no_made_up_function() -> None:
    # "(lambda: 1)()" or "avg(...)(1)": there is no function called 'that'
    for text in ("(lambda: 1)()", "avg(cpu_usage, '5m')(1)", "max(1)(2)"):
        for err in refused(text):
            assert "'that'" not in err.message, (text, err)


def test_each_problem_is_reported_once() -> None:
    errors = refused("9**9**9")
    assert len(errors) == len(set(errors))


def test_builtin_names_are_not_sensors() -> None:
    result = ok("hour > 3 and minute < 5 and weekday == 0 and now > 0")
    assert result.names == frozenset()


def test_a_sensor_named_like_a_function_is_still_readable() -> None:
    assert check("max > 1", {"max"}).errors == ()


# ------------------------------------------------------------------ property tests

_NAME = st.sampled_from(sorted(SENSORS))
_NUMBER = st.one_of(
    st.integers(min_value=0, max_value=10**6).map(str),
    st.floats(min_value=0, max_value=1e6, allow_nan=False, allow_infinity=False).map(repr),
)
_STRING = st.sampled_from(["'on'", '"off"', "'charging'", "''"])
_BOOL = st.sampled_from(["True", "False"])
_WINDOW = st.sampled_from(["'5m'", '"10s"', "'1h30m'", "'2d'", "'500ms'"])


@st.composite
def _leaf(draw: st.DrawFn) -> tuple[str, frozenset[str]]:
    kind = draw(st.sampled_from(["name", "name", "number", "string", "bool", "builtin", "window"]))
    if kind == "name":
        name = draw(_NAME)
        return name, frozenset({name})
    if kind == "number":
        return draw(_NUMBER), frozenset()
    if kind == "string":
        return draw(_STRING), frozenset()
    if kind == "bool":
        return draw(_BOOL), frozenset()
    if kind == "builtin":
        return draw(st.sampled_from(["now", "hour", "minute", "weekday"])), frozenset()
    fn, name = draw(st.sampled_from(["avg", "max_over", "min_over", "rate"])), draw(_NAME)
    return f"{fn}({name}, {draw(_WINDOW)})", frozenset({name})


def _combine(children: st.SearchStrategy) -> st.SearchStrategy:
    def binary(op: str) -> st.SearchStrategy:
        return st.tuples(children, children).map(lambda ab: (f"({ab[0][0]} {op} {ab[1][0]})", ab[0][1] | ab[1][1]))

    def call(fn: str, low: int, high: int) -> st.SearchStrategy:
        return st.lists(children, min_size=low, max_size=high).map(
            lambda args: (f"{fn}({', '.join(a[0] for a in args)})", frozenset().union(*(a[1] for a in args)))
        )

    return st.one_of(
        *[
            binary(op)
            for op in ("+", "-", "*", "/", "//", "%", "<", "<=", ">", ">=", "==", "!=", "and", "or", "in", "not in")
        ],
        children.map(lambda a: (f"(not {a[0]})", a[1])),
        children.map(lambda a: (f"(-{a[0]})", a[1])),
        children.map(lambda a: (f"(+{a[0]})", a[1])),
        st.tuples(children, children, children).map(
            lambda t: (f"({t[0][0]} if {t[1][0]} else {t[2][0]})", t[0][1] | t[1][1] | t[2][1])
        ),
        call("min", 1, 3),
        call("max", 1, 3),
        call("abs", 1, 1),
        call("round", 1, 2),
        call("clamp", 3, 3),
        st.tuples(children, children).map(lambda ab: (f"{ab[0][0]} < {ab[1][0]} < 10", ab[0][1] | ab[1][1])),
    )


EXPRESSIONS = st.recursive(_leaf(), _combine, max_leaves=6)
BOUNDS = ("this part always", "text can only", "round()'s second argument", "a tuple such as")


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much])
@given(EXPRESSIONS)
def test_generated_grammar_is_accepted(generated: tuple[str, frozenset[str]]) -> None:
    text, names = generated
    assume(len(text) <= MAX_LENGTH)
    result = check(text, SENSORS)
    import ast

    tree = ast.parse(text, mode="eval")
    nodes = sum(1 for _ in ast.walk(tree))
    assume(nodes <= MAX_NODES)
    # the grammar is accepted; what it may still be refused for is a bound of the evaluator that
    # check() can see before the agent runs (text in arithmetic, round() digits, a part that always fails)
    assert all(e.message.startswith(BOUNDS) for e in result.errors), (text, result.errors)
    assert (result.tree is not None) == (result.errors == ())
    if result.tree is not None:
        assert result.names == names


@settings(max_examples=200, deadline=None)
@given(EXPRESSIONS, st.sampled_from(["__class__", "real", "__globals__"]))
def test_generated_grammar_with_attribute_access_is_refused(generated: tuple[str, frozenset[str]], attr: str) -> None:
    text = f"({generated[0]}).{attr}"
    assume(len(text) <= MAX_LENGTH)
    result = check(text, SENSORS)
    assert result.tree is None
    assert any("attribute" in e.message or "the limit" in e.message or "levels" in e.message for e in result.errors)


@settings(max_examples=200, deadline=None)
@given(st.text(st.characters(min_codepoint=32, max_codepoint=0x2FFF), max_size=300))
def test_random_printable_text_never_raises(text: str) -> None:
    result = check(text, SENSORS)
    assert isinstance(result, expressions.Checked)
    assert (result.tree is None) == bool(result.errors)
    for err in result.errors:
        assert err.message
        assert 0 <= err.offset <= max(len(text), MAX_LENGTH)
    assert result.names <= SENSORS


@settings(max_examples=200, deadline=None)
@given(
    st.lists(
        st.sampled_from(
            list("()[]{}.,:;'\"*-+/%<>=!~&|^@ \t\nabc019_")
            + [
                "lambda",
                "if",
                "else",
                "not",
                "and",
                "or",
                "in",
                "is",
                "for",
                "cpu_usage",
                "avg",
                "max",
                "__class__",
                "9",
                "**",
                "'5m'",
            ]
        ),
        max_size=60,
    ).map("".join)
)
def test_random_token_soup_never_raises(text: str) -> None:
    result = check(text, SENSORS)
    assert (result.tree is None) == bool(result.errors)
    for err in result.errors:
        assert err.message and 0 <= err.offset <= max(len(text), MAX_LENGTH)


# ------------------------------------------------------------------ the wall behind check()
# Checked expressions go to pilot.evaluator. `**` is refused because it can hang the
# evaluator; building a huge string by repetition or %-formatting is the same attack
# and check() cannot see it (a sensor value may be the operand), so the evaluator
# must refuse it. 10 MB is enough to show the guard is missing without hurting the host.


def _evaluate(text: str, values: dict) -> object:
    from pilot.agent.evaluator import Evaluator

    assert check(text, frozenset(values)).errors == ()
    return Evaluator().evaluate(text, values)


def test_evaluator_refuses_huge_string_repetition() -> None:
    with pytest.raises(TypeError, match=r"^\* needs numbers, not str$"):
        result = _evaluate("state * 10000000 == 'x'", {"state": "on"})
        pytest.fail(f"built a 20-million-character string (result {result!r})")


def test_evaluator_refuses_huge_percent_formatting() -> None:
    with pytest.raises(TypeError, match=r"^% needs numbers, not str$"):
        result = _evaluate("len_fmt % 1 == ''", {"len_fmt": "%010000000d"})
        pytest.fail(f"formatted a 10 MB string, result {result!r}")


def test_evaluator_refuses_text_joined_past_the_string_cap() -> None:
    """`+` is the one way to build text; it stops at MAX_STRING, one character past is refused."""
    from pilot.expressions import LimitError

    half = "x" * 5_000
    assert _evaluate("a + b == c", {"a": half, "b": half, "c": "x" * 10_000}) is True
    with pytest.raises(LimitError, match=r"^text longer than 10000 characters$"):
        _evaluate("a + b == ''", {"a": half, "b": half + "x"})


def test_check_emits_no_python_warnings() -> None:
    # `pilot validate` speaks through diagnostics; Python's parser warnings
    # ("<unknown>:1: SyntaxWarning: invalid decimal literal") must not leak to stderr
    import warnings

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        check("1if hot else 0", SENSORS)
        check('hot is "x"', SENSORS)
    assert [str(w.message) for w in caught] == []


@pytest.mark.parametrize(
    "text, offset, says",
    [
        ("cpu_usage > 90 && hot", 15, "`&&` is not an operator here; use `and`"),
        ("cpu_usage > 90 || hot", 15, "`||` is not an operator here; use `or`"),
        ("!hot", 0, "`!` is not an operator here; use `not`"),
        ("cpu_usage != 1 and !hot", 19, "use `not`"),
        ("state == 'a && b' && hot", 18, "use `and`"),
        ("hot & boot", 0, "for logic use `and`"),
        ("hot | boot", 0, "for logic use `or`"),
        ("~hot", 0, "use `not`"),
    ],
)
def test_operators_from_other_languages_name_the_python_word(text: str, offset: int, says: str) -> None:
    [error] = refused(text)
    assert says in error.message
    assert error.offset == offset


def test_not_equal_is_not_mistaken_for_a_c_not() -> None:
    ok("cpu_usage != 1")
    [error] = refused("cpu_usage != ")
    assert "use `not`" not in error.message
