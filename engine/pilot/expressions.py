"""Expressions in profiles: a small, checked and bounded subset of Python expression syntax.

They come only from local YAML, but a profile pack may come from someone else,
so every expression is parsed once, checked against an allowlist of AST node
types and size caps, and only then evaluated. Nothing reaches attributes,
subscripts, comprehensions, lambdas or `**` (an exponent tower like 9**9**9
would hang the evaluator).

Every operation is also bounded in cost, because Python's own integers are not:
`round(x, -999999999)` computes 10**999999999 and `10**18 * 10**18 * ...`
grows without end, each step holding the GIL. So the operators and functions
below (`OPERATORS`, `FUNCTIONS_IMPL`, `BoundedEval`) are the ones the agent
runs, here in the shared core so that `check` (what `pilot validate` reports)
and the agent's evaluator apply the same rules:

- numbers: whole numbers stay within +-MAX_INT (beyond it a result becomes a
  float); floats must stay finite; every operand and every result is checked,
  so no operation ever sees a number whose size makes it slow;
- text: only `+` (at most MAX_STRING characters), comparisons and `in`; no `*`, no `%`;
- tuples: only after `in` / `not in`, at most MAX_NODES elements;
- `round(x, n)`: n is a whole number from -MAX_ROUND_DIGITS to MAX_ROUND_DIGITS,
  written in the expression;
- `min`/`max`: 1 to 8 numbers; each evaluation visits at most MAX_STEPS nodes.

Values from sensors are bounded the same way when they are bound to names.
"""

from __future__ import annotations

import ast
import math
import operator
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from simpleeval import InvalidExpression, SimpleEval

MAX_LENGTH = 256
MAX_DEPTH = 24
MAX_NODES = 120
MAX_INT = 10**18  # whole numbers beyond this become floats (no sensor needs more: 10**18 bytes is an exabyte)
MAX_STRING = 10_000  # no expression needs to build a longer string
MAX_ROUND_DIGITS = 20
MAX_STEPS = 1_000  # node visits per evaluation: an expression has at most MAX_NODES nodes

BUILTIN_NAMES = {
    "now": "seconds since the epoch",
    "hour": "hour of the day, 0-23",
    "minute": "minute of the hour, 0-59",
    "weekday": "day of the week, 0 = Monday",
}
PLAIN_FUNCTIONS = {"min": (1, 8), "max": (1, 8), "abs": (1, 1), "round": (1, 2), "clamp": (3, 3)}
WINDOW_FUNCTIONS = {"avg": (2, 2), "max_over": (2, 2), "min_over": (2, 2), "rate": (2, 2)}
FUNCTIONS = {**PLAIN_FUNCTIONS, **WINDOW_FUNCTIONS}

ALLOWED_NODES = (
    ast.Expression,
    ast.BoolOp,
    ast.And,
    ast.Or,
    ast.BinOp,
    ast.Add,
    ast.Sub,
    ast.Mult,
    ast.Div,
    ast.FloorDiv,
    ast.Mod,
    ast.UnaryOp,
    ast.Not,
    ast.USub,
    ast.UAdd,
    ast.Compare,
    ast.Eq,
    ast.NotEq,
    ast.Lt,
    ast.LtE,
    ast.Gt,
    ast.GtE,
    ast.In,
    ast.NotIn,
    ast.IfExp,
    ast.Name,
    ast.Load,
    ast.Constant,
    ast.Call,
    ast.Tuple,
)
_FRIENDLY = {
    ast.Attribute: "attribute access (`a.b`)",
    ast.Subscript: "indexing (`a[0]`)",
    ast.Lambda: "lambda",
    ast.ListComp: "comprehensions",
    ast.GeneratorExp: "comprehensions",
    ast.DictComp: "comprehensions",
    ast.SetComp: "comprehensions",
    ast.Pow: "`**`",
    ast.NamedExpr: "`:=`",
    ast.Dict: "dict literals",
    ast.List: "list literals",
    ast.Set: "set literals",
    ast.JoinedStr: "f-strings",
    ast.Starred: "`*` unpacking",
    ast.BitAnd: "bitwise operators",
    ast.BitOr: "bitwise operators",
    ast.BitXor: "bitwise operators",
    ast.LShift: "bitwise operators",
    ast.RShift: "bitwise operators",
    ast.Invert: "bitwise operators",
    ast.Is: "`is`",
    ast.IsNot: "`is not`",
}


@dataclass(frozen=True)
class ExprError:
    offset: int  # 0-based character offset into the expression
    message: str


@dataclass(frozen=True)
class Checked:
    tree: ast.Expression | None
    names: frozenset[str]  # sensor ids the expression reads
    windows: tuple[tuple[str, str, float], ...]  # (function, sensor id, seconds) window uses
    errors: tuple[ExprError, ...]


def _depth(node: ast.AST, level: int = 0) -> int:
    children = list(ast.iter_child_nodes(node))
    if level > MAX_DEPTH:
        return level
    return max([_depth(c, level + 1) for c in children], default=level)


_LOGIC_HINTS = {ast.BitAnd: "; for logic use `and`", ast.BitOr: "; for logic use `or`", ast.Invert: "; use `not`"}
_C_OPERATORS = {"&&": "and", "||": "or", "!": "not"}


def _c_operator(text: str) -> ExprError | None:
    """The first `&&`, `||` or `!` (not `!=`) outside quotes: operators from C, shell or
    JavaScript that Python's parser answers with a bare "invalid syntax"."""
    quote = ""
    i = 0
    while i < len(text):
        ch = text[i]
        if quote:
            if ch == "\\":
                i += 1
            elif ch == quote:
                quote = ""
        elif ch in "'\"":
            quote = ch
        elif text.startswith(("&&", "||"), i) or (ch == "!" and not text.startswith("!=", i)):
            op = text[i : i + 2] if ch != "!" else "!"
            word = _C_OPERATORS[op]
            return ExprError(i, f"syntax error in expression: `{op}` is not an operator here; use `{word}`")
        i += 1
    return None


def check(text: str, sensors: set[str] | frozenset[str]) -> Checked:
    """Parse and vet an expression; errors carry the offset of the offending part."""
    from pilot.units import parse_duration

    if len(text) > MAX_LENGTH:
        return Checked(
            None,
            frozenset(),
            (),
            (ExprError(MAX_LENGTH, f"expression is {len(text)} characters long; the limit is {MAX_LENGTH}"),),
        )
    lead = len(text) - len(text.lstrip())
    try:
        with warnings.catch_warnings():  # "invalid decimal literal" and friends: ours to report, not Python's
            warnings.simplefilter("ignore")
            tree = ast.parse(text.strip(), mode="eval")
    except SyntaxError as exc:
        foreign = _c_operator(text)
        if foreign is not None:
            return Checked(None, frozenset(), (), (foreign,))
        offset = lead + max((exc.offset or 1) - 1, 0)
        return Checked(None, frozenset(), (), (ExprError(offset, f"syntax error in expression: {exc.msg}"),))
    except (RecursionError, MemoryError, ValueError):
        return Checked(None, frozenset(), (), (ExprError(0, "expression is nested too deeply"),))
    errors: list[ExprError] = []
    names: set[str] = set()
    windows: list[tuple[str, str, float]] = []
    nodes = list(ast.walk(tree))
    if len(nodes) > MAX_NODES:
        errors.append(ExprError(0, f"expression has {len(nodes)} parts; the limit is {MAX_NODES}"))
    if _depth(tree) > MAX_DEPTH:
        errors.append(ExprError(0, f"expression is nested more than {MAX_DEPTH} levels deep"))
    if errors:
        return Checked(None, frozenset(), (), tuple(errors))

    def at(node: ast.AST) -> int:
        return lead + getattr(node, "col_offset", 0)

    call_funcs = {id(n.func) for n in nodes if isinstance(n, ast.Call)}
    window_args = set()
    inside_refused = {
        id(child) for n in nodes if not isinstance(n, ALLOWED_NODES) for child in ast.walk(n) if child is not n
    }
    for node in nodes:
        if id(node) in inside_refused:
            continue
        if not isinstance(node, ALLOWED_NODES):
            what = _FRIENDLY.get(type(node), type(node).__name__)
            hint = _LOGIC_HINTS.get(type(node), "")
            errors.append(ExprError(at(node), f"{what} is not allowed in expressions{hint}"))
            continue
        if (
            isinstance(node, ast.Constant)
            and not isinstance(node.value, (int, float, str, bool))
            and node.value is not None
        ):
            errors.append(ExprError(at(node), "only numbers, strings and booleans are allowed as constants"))
        elif isinstance(node, ast.Call):
            if not isinstance(node.func, ast.Name):
                errors.append(
                    ExprError(
                        at(node),
                        f"only functions called by name can be called; allowed: {', '.join(sorted(FUNCTIONS))}",
                    )
                )
                continue
            if node.func.id not in FUNCTIONS:
                errors.append(
                    ExprError(at(node), f"unknown function '{node.func.id}'; allowed: {', '.join(sorted(FUNCTIONS))}")
                )
                continue
            if node.keywords:
                errors.append(ExprError(at(node), f"{node.func.id}() takes no keyword arguments"))
            low, high = FUNCTIONS[node.func.id]
            if not low <= len(node.args) <= high:
                want = str(low) if low == high else f"{low} to {high}"
                errors.append(ExprError(at(node), f"{node.func.id}() takes {want} arguments, got {len(node.args)}"))
                continue
            if node.func.id in WINDOW_FUNCTIONS:
                sensor, span = node.args
                if not isinstance(sensor, ast.Name):
                    errors.append(ExprError(at(sensor), f"{node.func.id}() needs a sensor id as its first argument"))
                elif not (isinstance(span, ast.Constant) and isinstance(span.value, str)):
                    errors.append(
                        ExprError(at(span), f'{node.func.id}() needs a window such as "5m" as its second argument')
                    )
                else:
                    try:
                        seconds = parse_duration(span.value)
                        if seconds <= 0:
                            raise ValueError("the window must be longer than 0")
                        windows.append((node.func.id, sensor.id, seconds))
                        window_args.add(id(sensor))
                    except ValueError as exc:
                        errors.append(ExprError(at(span), str(exc)))
        elif isinstance(node, ast.Name) and id(node) not in call_funcs:
            if node.id in sensors:
                names.add(node.id)
            elif node.id in ("True", "False"):
                pass
            elif node.id not in BUILTIN_NAMES:
                from pilot.naming import did_you_mean

                hint = did_you_mean(node.id, list(sensors) + list(BUILTIN_NAMES))
                errors.append(
                    ExprError(
                        at(node),
                        f"unknown name '{node.id}'{hint}: expressions use sensor ids and {', '.join(BUILTIN_NAMES)}",
                    )
                )
    if not errors:
        errors += _bounds(tree, nodes, at)
    unique = tuple(dict.fromkeys(errors))
    return Checked(tree if not unique else None, frozenset(names), tuple(windows), unique)


def _literal(node: ast.AST) -> bool:
    """No sensor, no time and no window in it: its value is known now."""
    inside = list(ast.walk(node))
    called = {id(n.func) for n in inside if isinstance(n, ast.Call)}
    return not any(
        (isinstance(n, ast.Name) and id(n) not in called and n.id not in ("True", "False"))
        or (isinstance(n, ast.Call) and isinstance(n.func, ast.Name) and n.func.id in WINDOW_FUNCTIONS)
        for n in inside
    )


def _bounds(tree: ast.Expression, nodes: list[ast.AST], at: Callable[[ast.AST], int]) -> list[ExprError]:
    """What the bounded evaluator would refuse, found before the agent runs: numbers out of range,
    tuples outside `in`, round() digits, text in arithmetic, and literal parts that always fail."""
    errors: list[ExprError] = []
    in_operands = {
        id(comp)
        for n in nodes
        if isinstance(n, ast.Compare)
        for op, comp in zip(n.ops, n.comparators)
        if isinstance(op, (ast.In, ast.NotIn))
    }
    for node in nodes:
        if isinstance(node, ast.Constant) and not isinstance(node.value, bool):
            if isinstance(node.value, int) and abs(node.value) > MAX_INT:
                errors.append(
                    ExprError(at(node), "whole numbers in expressions are at most 10**18; write a float such as 1e20")
                )
            elif isinstance(node.value, float) and not math.isfinite(node.value):
                errors.append(ExprError(at(node), "this number is too large for a float"))
            elif isinstance(node.value, str) and len(node.value) > MAX_STRING:
                errors.append(ExprError(at(node), f"text is limited to {MAX_STRING} characters"))
        elif isinstance(node, ast.Tuple) and id(node) not in in_operands:
            errors.append(ExprError(at(node), "a tuple such as (1, 2) is allowed only after `in` or `not in`"))
        elif isinstance(node, (ast.BinOp, ast.UnaryOp)):
            operands = [node.left, node.right] if isinstance(node, ast.BinOp) else [node.operand]
            text = any(isinstance(o, ast.Constant) and isinstance(o.value, str) for o in operands)
            if text and not isinstance(node.op, (ast.Add, ast.Not)):
                errors.append(ExprError(at(node), "text can only be joined with `+`, compared, or tested with `in`"))
        elif isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id == "round":
            if len(node.args) == 2:
                digits = node.args[1]
                if not _literal(digits):
                    errors.append(
                        ExprError(
                            at(digits),
                            f"round()'s second argument must be a whole number written in the expression "
                            f"(-{MAX_ROUND_DIGITS} to {MAX_ROUND_DIGITS})",
                        )
                    )
                else:
                    try:
                        reason = round_digits(BoundedEval().run(digits, {"True": True, "False": False}))
                    except (ArithmeticError, ValueError, TypeError) as exc:
                        reason = f"round()'s second argument cannot be computed: {exc}"
                    if reason:
                        errors.append(ExprError(at(digits), reason))
    if errors:
        return errors

    def fold(node: ast.AST) -> None:
        if isinstance(node, ast.Constant) or not isinstance(node, ast.expr):
            return
        if _literal(node):
            try:
                BoundedEval().run(node, {"True": True, "False": False})
            except ZeroDivisionError:
                errors.append(ExprError(at(node), "this part always divides by zero"))
            except (ArithmeticError, ValueError, TypeError, InvalidExpression) as exc:
                errors.append(ExprError(at(node), f"this part always fails: {exc}"))
            return
        for child in ast.iter_child_nodes(node):
            fold(child)

    fold(tree.body)
    return errors


# ---------------------------------------------------------------- bounded evaluation


class LimitError(ValueError):
    """An evaluation that would leave the bounds above; counted as the rule's or sensor's error."""


def _is_number(x: Any) -> bool:
    return isinstance(x, (int, float))  # bool is an int: True + 1 == 2, as in Python


def bounded(x: Any) -> Any:
    """x if it is a value expressions may hold, a float for a whole number beyond MAX_INT;
    LimitError for a non-finite float or a number no float holds, TypeError for anything else."""
    if isinstance(x, bool):
        return x
    if isinstance(x, int):
        if -MAX_INT <= x <= MAX_INT:
            return x
        try:
            return float(x)
        except OverflowError:
            raise LimitError("number too large") from None
    if isinstance(x, float):
        if math.isfinite(x):
            return x
        raise LimitError("result is not a number (NaN)" if math.isnan(x) else "number out of range")
    if isinstance(x, str):
        if len(x) > MAX_STRING:
            raise LimitError(f"text longer than {MAX_STRING} characters")
        return x
    raise TypeError(f"{type(x).__name__} values are not allowed in expressions")


def _numbers(what: str, *args: Any) -> None:
    for a in args:
        if not _is_number(a):
            raise TypeError(f"{what} needs numbers, not {type(a).__name__}")


def _arith(what: str, op: Callable[[Any, Any], Any]) -> Callable[[Any, Any], Any]:
    def run(a: Any, b: Any) -> Any:
        _numbers(what, a, b)
        return bounded(op(a, b))

    return run


def _add(a: Any, b: Any) -> Any:
    if isinstance(a, str) and isinstance(b, str):
        if len(a) + len(b) > MAX_STRING:
            raise LimitError(f"text longer than {MAX_STRING} characters")
        return a + b
    _numbers("+", a, b)
    return bounded(a + b)


def _unary(what: str, op: Callable[[Any], Any]) -> Callable[[Any], Any]:
    def run(a: Any) -> Any:
        _numbers(what, a)
        return bounded(op(a))

    return run


def _order(op: Callable[[Any, Any], bool]) -> Callable[[Any, Any], bool]:
    def run(a: Any, b: Any) -> bool:
        if not ((_is_number(a) and _is_number(b)) or (isinstance(a, str) and isinstance(b, str))):
            raise TypeError(f"cannot order {type(a).__name__} and {type(b).__name__}")
        return op(a, b)

    return run


def _contains(a: Any, b: Any) -> bool:
    if isinstance(b, tuple):
        return a in b  # at most MAX_NODES elements, each a bounded scalar
    if isinstance(b, str) and isinstance(a, str):
        return a in b  # both at most MAX_STRING characters
    raise TypeError("`in` needs a tuple such as (1, 2) or text on its right")


OPERATORS: dict[type, Callable[..., Any]] = {
    ast.Add: _add,
    ast.Sub: _arith("-", operator.sub),
    ast.Mult: _arith("*", operator.mul),
    ast.Div: _arith("/", operator.truediv),
    ast.FloorDiv: _arith("//", operator.floordiv),
    ast.Mod: _arith("%", operator.mod),
    ast.Eq: operator.eq,
    ast.NotEq: operator.ne,
    ast.Gt: _order(operator.gt),
    ast.Lt: _order(operator.lt),
    ast.GtE: _order(operator.ge),
    ast.LtE: _order(operator.le),
    ast.Not: operator.not_,
    ast.USub: _unary("-", operator.neg),
    ast.UAdd: _unary("+", operator.pos),
    ast.In: _contains,
    ast.NotIn: lambda a, b: not _contains(a, b),
}


def round_digits(n: Any) -> str | None:
    """Why n cannot be round()'s second argument, or None."""
    if isinstance(n, bool) or not isinstance(n, int):
        return "round()'s second argument must be a whole number"
    if not -MAX_ROUND_DIGITS <= n <= MAX_ROUND_DIGITS:
        return f"round()'s second argument must be from -{MAX_ROUND_DIGITS} to {MAX_ROUND_DIGITS}, not {n}"
    return None


def _round(x: Any, n: Any = None) -> Any:
    _numbers("round()", x)
    if n is None:
        return bounded(round(x))  # a float's round() is a whole number of at most ~1024 bits
    reason = round_digits(n)
    if reason:
        raise LimitError(reason)
    return bounded(round(x, n))  # 10**20 at most: cheap


def _extreme(name: str, pick: Callable[..., Any]) -> Callable[..., Any]:
    def run(*args: Any) -> Any:
        low, high = PLAIN_FUNCTIONS[name]
        if not low <= len(args) <= high:
            raise TypeError(f"{name}() takes {low} to {high} arguments")
        _numbers(f"{name}()", *args)
        return pick(args)

    return run


def _abs(x: Any) -> Any:
    _numbers("abs()", x)
    return bounded(abs(x))


def _clamp(x: Any, low: Any, high: Any) -> Any:
    _numbers("clamp()", x, low, high)
    return max(low, min(high, x))


FUNCTIONS_IMPL: dict[str, Callable[..., Any]] = {
    "min": _extreme("min", min),
    "max": _extreme("max", max),
    "abs": _abs,
    "round": _round,
    "clamp": _clamp,
}


class BoundedEval(SimpleEval):
    """simpleeval with the bounded operators and functions, tuples (for `in`), a cap on node visits
    and bounded constants and names. `run(node, names)` evaluates a checked tree's body."""

    def __init__(self, functions: dict[str, Callable[..., Any]] | None = None) -> None:
        super().__init__(operators=dict(OPERATORS), functions={**FUNCTIONS_IMPL, **(functions or {})}, names={})
        self.nodes[ast.Tuple] = self._eval_tuple
        self._steps = 0

    def run(self, node: ast.AST, names: dict[str, Any]) -> Any:
        self.names = names
        self._steps = 0
        return self._eval(node)

    def _eval(self, node: ast.AST) -> Any:
        self._steps += 1
        if self._steps > MAX_STEPS:
            raise LimitError(f"the expression took more than {MAX_STEPS} steps")
        return super()._eval(node)

    def _eval_name(self, node: ast.Name) -> Any:
        return bounded(super()._eval_name(node))  # a sensor's value is checked when it is read

    def _eval_call(self, node: ast.Call) -> Any:
        return bounded(super()._eval_call(node))

    def _eval_constant(self, node: ast.Constant) -> Any:
        if node.value is None:
            return None
        return bounded(node.value)

    def _eval_tuple(self, node: ast.Tuple) -> tuple:
        if len(node.elts) > MAX_NODES:
            raise LimitError(f"a tuple holds at most {MAX_NODES} values")
        return tuple(self._eval(x) for x in node.elts)
