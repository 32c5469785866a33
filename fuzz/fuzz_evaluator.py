#!/usr/bin/env python3
"""atheris target: profile expressions, checked (pilot.expressions.check) and evaluated (pilot.agent.evaluator).

    python fuzz/fuzz_evaluator.py -runs=100000 -timeout=5 [-max_len=512] [CORPUS_DIR...]

Half the inputs are raw text handed to `check` and to the evaluator as an expression; the other half
are built from hostile tokens (huge literals, `round(x, -999999999)`, text repetition, tuples,
deep nesting, every operator) so the fuzzer reaches the evaluator's bounds rather than stopping at
the parser. Sensor values are hostile too: a 4,000-digit whole number, 1e308, infinity, NaN, a
20,000-character text. Every expression goes to the evaluator whether `check` accepted it or not:
the evaluator's own vetting and bounds are the second wall. Properties: `check` never raises and
returns a tree exactly when it reports no error; an evaluation returns a bounded value (a whole
number within +-MAX_INT, a finite float, a bool, text of at most MAX_STRING characters) or raises
one of the errors the rule engine and the sensor set count (Missing, ArithmeticError, ValueError,
TypeError, simpleeval's InvalidExpression); `-timeout=5` makes a slow evaluation a finding.

atheris is optional for importing this file: without it `TestOneInput` still runs (the Hypothesis
tests in tests/unit/agent/test_evaluator_bounds.py call it), only `main()` needs atheris.
"""

from __future__ import annotations

import math
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "engine"))

try:
    import atheris
except ImportError:  # importable without atheris; main() says what is missing
    atheris = None

if atheris is not None:
    with atheris.instrument_imports():
        from pilot import expressions
        from pilot.agent.evaluator import Evaluator, History, Missing
else:
    from pilot import expressions
    from pilot.agent.evaluator import Evaluator, History, Missing

from simpleeval import InvalidExpression

SENSORS = frozenset({"big", "small", "huge_float", "inf", "nan", "text", "long_text", "flag"})
VALUES = {
    "big": int("9" * 4000),
    "small": 3,
    "huge_float": 1e308,
    "inf": float("inf"),
    "nan": float("nan"),
    "text": "on",
    "long_text": "x" * 20_000,
    "flag": True,
}
TOKENS = (
    "big",
    "small",
    "huge_float",
    "inf",
    "nan",
    "text",
    "long_text",
    "flag",
    "now",
    "hour",
    "1",
    "0",
    "-1",
    "2.5",
    "1e308",
    "1e999",
    "99999999999999999999",
    "10**18",
    "-999999999",
    "20",
    "21",
    '"a"',
    "'on'",
    "True",
    "False",
    "(1, 2, 3)",
    "()",
    "+",
    "-",
    "*",
    "/",
    "//",
    "%",
    "**",
    "<",
    "<=",
    ">",
    ">=",
    "==",
    "!=",
    "and",
    "or",
    "not",
    "in",
    "not in",
    "if",
    "else",
    "(",
    ")",
    ",",
    "round(",
    "min(",
    "max(",
    "abs(",
    "clamp(",
    "avg(big, '5m')",
    "rate(small, '1m')",
    "max_over(big, '1h')",
)
CLEAN = (Missing, ArithmeticError, ValueError, TypeError, InvalidExpression)


def _structured(data: bytes) -> str:
    return " ".join(TOKENS[b % len(TOKENS)] for b in data[:80])


def _bounded(value: object) -> bool:
    if isinstance(value, bool):
        return True
    if isinstance(value, int):
        return abs(value) <= expressions.MAX_INT
    if isinstance(value, float):
        return math.isfinite(value)
    if isinstance(value, str):
        return len(value) <= expressions.MAX_STRING
    return False


def TestOneInput(data: bytes) -> None:  # noqa: N802 - libFuzzer's name
    if data and data[0] & 1:
        text = _structured(data[1:])
    else:
        text = data[1:].decode("utf-8", "replace")
    checked = expressions.check(text, SENSORS)
    if (checked.tree is None) != bool(checked.errors):
        raise AssertionError(f"check() returned a tree and errors for {text!r}")
    evaluator = Evaluator(History({"big": 3600.0, "small": 3600.0}), clock=lambda: 1_000_000.0)
    for when in (999_000.0, 999_500.0):
        evaluator.history.add("small", 5, when)
        evaluator.history.add("big", VALUES["big"], when)
    try:
        value = evaluator.evaluate(text, VALUES)
    except CLEAN:
        return
    if not _bounded(value):
        raise AssertionError(f"{text!r} evaluated to an unbounded {type(value).__name__}")


def main() -> None:
    if atheris is None:
        sys.exit("atheris is not installed: python -m pip install atheris (see fuzz/README.md)")
    atheris.Setup(sys.argv, TestOneInput)
    atheris.Fuzz()


if __name__ == "__main__":
    main()
