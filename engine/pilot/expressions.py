"""Expressions in profiles: a small, checked subset of Python expression syntax.

They come only from local YAML, but a profile pack may come from someone else,
so every expression is parsed once, checked against an allowlist of AST node
types and size caps, and only then handed to simpleeval. Nothing reaches
attributes, subscripts, comprehensions, lambdas or `**` (an exponent tower
like 9**9**9 would hang the evaluator).
"""

from __future__ import annotations

import ast
import warnings
from dataclasses import dataclass

MAX_LENGTH = 256
MAX_DEPTH = 24
MAX_NODES = 120

BUILTIN_NAMES = {
    "now": "seconds since the epoch",
    "hour": "hour of the day, 0-23",
    "minute": "minute of the hour, 0-59",
    "weekday": "day of the week, 0 = Monday",
}
PLAIN_FUNCTIONS = {"min": (1, 8), "max": (1, 8), "abs": (1, 1), "round": (1, 2), "clamp": (3, 3)}
WINDOW_FUNCTIONS = {"avg": (2, 2), "max_over": (2, 2), "min_over": (2, 2), "rate": (2, 2)}
FUNCTIONS = {**PLAIN_FUNCTIONS, **WINDOW_FUNCTIONS}

_ALLOWED = (
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
        id(child) for n in nodes if not isinstance(n, _ALLOWED) for child in ast.walk(n) if child is not n
    }
    for node in nodes:
        if id(node) in inside_refused:
            continue
        if not isinstance(node, _ALLOWED):
            what = _FRIENDLY.get(type(node), type(node).__name__)
            errors.append(ExprError(at(node), f"{what} is not allowed in expressions"))
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
    unique = tuple(dict.fromkeys(errors))
    return Checked(tree if not unique else None, frozenset(names), tuple(windows), unique)
