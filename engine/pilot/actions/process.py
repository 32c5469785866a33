"""process.run: run a program from an argv list. No shell, ever.

The argv is fixed in the profile. A command's value (a number, a select option, a text)
reaches it only through `value_arg`: a placeholder such as `{value}` that is replaced inside
the argv elements that contain it, after the value has matched `value_pattern` in full.
A value that would begin an argument with `-` (and so read as an option) is refused unless
a `--` element comes before it. The program gets a clean environment: only the variables
named in `env_allow` (taken from the agent's own environment) plus those set in `env`.
"""

from __future__ import annotations

import os
import re
from pathlib import PureWindowsPath
from typing import Any

from pilot import patterns
from pilot.actions._base import ActionContext, ActionError, Call
from pilot.actions._common import ENV_NAME, exec_call, value_text
from pilot.params import params, prop
from pilot.registry import ACTIONS
from pilot.units import DURATION_PATTERN, parse_duration

DEFAULT_VALUE_PATTERN = r"^[A-Za-z0-9_.:-]{1,64}$"
DEFAULT_ENV_ALLOW = ("PATH", "LANG")

_PARAMS = params(
    {
        "argv": prop(
            "array",
            "Program and its arguments, one element each; argv[0] is an absolute path or a "
            "name looked up on PATH. Never run through a shell.",
            items={"type": "string"},
            minItems=1,
        ),
        "timeout": prop(
            "string",
            "Stop the program after this long (for example 30s or 10m).",
            pattern=DURATION_PATTERN,
            default="30s",
        ),
        "cwd": prop("string", "Absolute working directory; default: the agent's.", minLength=1),
        "env": prop(
            "object",
            "Extra environment variables for the program (name: value).",
            additionalProperties={"type": "string"},
            propertyNames={"pattern": ENV_NAME},
        ),
        "env_allow": prop(
            "array",
            "Names of variables passed through from the agent's own environment.",
            items={"type": "string", "pattern": ENV_NAME},
            default=list(DEFAULT_ENV_ALLOW),
        ),
        "capture": prop(
            "boolean", "Capture the program's output (the last 4 KiB) for the log and result.", default=False
        ),
        "value_arg": prop(
            "string",
            "Placeholder (such as {value}) that the command's value replaces inside argv "
            "elements; without it the value never reaches the program.",
            minLength=1,
        ),
        "value_pattern": prop(
            "string",
            "Regular expression (RE2 syntax, matched in linear time) the whole value must match before it "
            "is put into argv.",
            default=DEFAULT_VALUE_PATTERN,
            minLength=1,
            **{"x-regex": True},
        ),
    },
    required=("argv",),
    examples=[
        {"argv": ["/usr/local/bin/backup.sh", "--quick"], "timeout": "10m"},
        {
            "argv": ["/usr/bin/pactl", "set-sink-volume", "@DEFAULT_SINK@", "{value}%"],
            "value_arg": "{value}",
            "value_pattern": "^[0-9]{1,3}$",
        },
    ],
)


def _check_program(ctx: ActionContext, program: str) -> None:
    if not isinstance(program, str) or not program.strip():
        raise ActionError("argv[0] must name a program")
    windows = ctx.platform == "windows"
    absolute = PureWindowsPath(program).is_absolute() if windows else program.startswith("/")
    if absolute:
        return
    if "/" in program or (windows and "\\" in program):
        raise ActionError("argv[0] must be an absolute path or a bare program name, not a relative path")


def _substitute(argv: list[str], value: Any, value_arg: str | None, value_pattern: str) -> list[str]:
    if value_arg is None:
        return argv
    if value_arg in argv[0]:
        raise ActionError("the value cannot choose the program: value_arg may not appear in argv[0]")
    if not any(value_arg in arg for arg in argv[1:]):
        raise ActionError(f"value_arg {value_arg!r} appears in no argv element")
    if value is None:
        raise ActionError("this command needs a value")
    reason = patterns.problem(value_pattern)  # RE2: linear time, whatever the pattern (see pilot.patterns)
    if reason is not None:
        raise ActionError(f"value_pattern is not a valid regular expression Pilot can run: {reason}")
    text = value_text(value)
    if not patterns.fullmatch(value_pattern, text):  # the value itself is never echoed back
        raise ActionError(f"the value does not match value_pattern {value_pattern}")
    out = [argv[0]]
    ended_options = False
    for arg in argv[1:]:
        if arg.startswith(value_arg) and text.startswith("-") and not ended_options:
            raise ActionError(
                "the value may not start with '-' where it begins an argument (it would read as an "
                "option); put '--' before it in argv or write it as --option={value}".replace("{value}", value_arg)
            )
        if arg == "--":
            ended_options = True
        out.append(arg.replace(value_arg, text))
    return out


def _available(ctx: ActionContext, argv: list[str] | None = None, **_: Any) -> str | None:
    if not argv or not isinstance(argv[0], str):
        return None
    program = argv[0]
    try:
        _check_program(ctx, program)
    except ActionError as exc:
        return str(exc)
    windows = ctx.platform == "windows"
    if PureWindowsPath(program).is_absolute() if windows else program.startswith("/"):
        if not os.access(program, os.X_OK):
            return f"{program} does not exist or is not executable"
        return None
    if not ctx.which(program):
        return f"{program} is not on PATH"
    return None


@ACTIONS.register(
    "process.run",
    params=_PARAMS,
    privilege=None,
    platforms=("button", "switch", "number", "select", "text"),
    available=_available,
)
def run(
    ctx: ActionContext,
    value: Any = None,
    *,
    argv: list[str],
    timeout: str | float = "30s",
    cwd: str | None = None,
    env: dict[str, str] | None = None,
    env_allow: list[str] | tuple[str, ...] = DEFAULT_ENV_ALLOW,
    capture: bool = False,
    value_arg: str | None = None,
    value_pattern: str = DEFAULT_VALUE_PATTERN,
) -> list[Call]:
    """Run a program with fixed arguments (no shell); the value can fill one declared placeholder."""
    if not isinstance(argv, (list, tuple)) or not argv or not all(isinstance(a, str) for a in argv):
        raise ActionError("argv must be a non-empty list of strings")
    argv = list(argv)
    _check_program(ctx, argv[0])
    argv = _substitute(argv, value, value_arg, value_pattern)
    try:
        seconds = parse_duration(timeout)
    except ValueError as exc:
        raise ActionError(str(exc)) from None
    if seconds <= 0:
        raise ActionError("timeout must be longer than zero")
    if cwd is not None:
        if not isinstance(cwd, str) or not (
            PureWindowsPath(cwd).is_absolute() if ctx.platform == "windows" else cwd.startswith("/")
        ):
            raise ActionError("cwd must be an absolute path")
    variables: dict[str, str] = {}
    for name in env_allow:
        if not isinstance(name, str) or not re.fullmatch(ENV_NAME, name):
            raise ActionError(f"env_allow holds an invalid variable name {str(name)[:40]!r}")
        if ctx.environ.get(name) is not None:
            variables[name] = ctx.environ[name]
    for name, text in (env or {}).items():
        if not isinstance(name, str) or not re.fullmatch(ENV_NAME, name):
            raise ActionError(f"env holds an invalid variable name {str(name)[:40]!r}")
        if not isinstance(text, str) or "\x00" in text:
            raise ActionError(f"env {name} must be text without NUL bytes")
        variables[name] = text
    return [exec_call(argv, timeout=seconds, env=tuple(sorted(variables.items())), cwd=cwd, capture=bool(capture))]
