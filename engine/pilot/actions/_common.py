"""Shared pieces of the action families: value coercion, small sysfs reads.

Stdlib only: importing `pilot.actions` must stay cheap (the registry imports
every action module to list them).
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from pilot.actions._base import ActionContext, ActionError, Call, Unsupported

# A name that goes into an argv as one element: no leading '-' (it would read as an option).
SAFE_NAME = r"^[A-Za-z0-9_][A-Za-z0-9_.@-]{0,63}$"
ENV_NAME = r"^[A-Za-z_][A-Za-z0-9_]*$"

# Environment a session-bound tool needs to find the user's display and bus.
SESSION_ENV = ("DISPLAY", "XAUTHORITY", "WAYLAND_DISPLAY", "XDG_RUNTIME_DIR", "DBUS_SESSION_BUS_ADDRESS")
BASE_ENV = ("PATH", "LANG", "LC_ALL")


def env_from(ctx: ActionContext, names: Iterable[str]) -> tuple[tuple[str, str], ...]:
    """The named variables that are set in the agent's environment, as a Call.env (sorted, no duplicates)."""
    wanted = dict.fromkeys(BASE_ENV)
    wanted.update(dict.fromkeys(names))
    return tuple(sorted((k, ctx.environ[k]) for k in wanted if ctx.environ.get(k) is not None))


def exec_call(
    argv: Iterable[str],
    *,
    timeout: float | None = 30.0,
    env: tuple[tuple[str, str], ...] | None = None,
    cwd: str | None = None,
    capture: bool = False,
) -> Call:
    """An exec Call; refuses what exec itself would refuse (a NUL byte) with a readable message."""
    argv = tuple(argv)
    if not argv or not argv[0]:
        raise ActionError("nothing to run: the command line is empty")
    for arg in argv:
        if not isinstance(arg, str):
            raise ActionError(f"every argument must be text, not {type(arg).__name__}")
        if "\x00" in arg:
            raise ActionError("an argument contains a NUL byte")
    return Call(kind="exec", argv=argv, timeout=timeout, env=env, cwd=cwd, capture=capture)


def need_tool(ctx: ActionContext, name: str, hint: str = "") -> None:
    if not ctx.which(name):
        raise Unsupported(f"{name} is not installed{hint}")


def is_windows(ctx: ActionContext) -> bool:
    return ctx.platform == "windows"


def value_text(value: Any) -> str:
    """How a command value appears inside text: 5.0 -> '5', 0.25 -> '0.25', True -> 'ON', None -> ''."""
    if value is None:
        return ""
    if isinstance(value, bool):
        return "ON" if value else "OFF"
    if isinstance(value, float):
        if value != value or value in (float("inf"), float("-inf")):
            raise ActionError("the value is not a finite number")
        return str(int(value)) if value.is_integer() else repr(value)
    return str(value)


def as_number(value: Any, what: str) -> float:
    """A finite number from a number entity's value (or a rule's int/float/numeric text)."""
    if isinstance(value, bool) or value is None:
        raise ActionError(f"{what} needs a number")
    if isinstance(value, (int, float)):
        number = float(value)
    else:
        try:
            number = float(str(value).strip())
        except ValueError:
            raise ActionError(f"{what} needs a number, not {str(value)[:40]!r}") from None
    if number != number or number in (float("inf"), float("-inf")):
        raise ActionError(f"{what} needs a finite number")
    return number


def as_switch(value: Any, what: str) -> bool:
    """ON/OFF (as Home Assistant sends it), or a rule's True/False/1/0."""
    if isinstance(value, bool):
        return value
    if isinstance(value, (int, float)) and value in (0, 1):
        return bool(value)
    text = str(value).strip().upper() if value is not None else ""
    if text in ("ON", "OFF"):
        return text == "ON"
    raise ActionError(f"{what} takes ON or OFF, not {str(value)[:40]!r}")


def check_name(value: str, what: str) -> str:
    if not isinstance(value, str) or not re.fullmatch(SAFE_NAME, value):
        raise ActionError(
            f"{what} {str(value)[:40]!r} is not a valid name (letters, digits, _ . @ -; not starting with -)"
        )
    return value


def read_text(path: Path) -> str | None:
    """A sysfs attribute without its trailing newline; None if it cannot be read."""
    try:
        with open(path, "rb") as handle:
            raw = handle.read(1 << 16)
    except (OSError, ValueError):
        return None
    return raw.decode("utf-8", errors="replace").rstrip("\n")


def read_int(path: Path) -> int | None:
    text = read_text(path)
    if text is None:
        return None
    try:
        return int(text.strip())
    except ValueError:
        return None


def numbered(paths: Iterable[Path], prefix: str) -> list[Path]:
    """Paths named <prefix><N>, sorted by N (cpu8 before cpu22)."""
    out = []
    for path in paths:
        rest = path.name[len(prefix) :]
        if path.name.startswith(prefix) and rest.isdigit():
            out.append((int(rest), path))
    return [p for _, p in sorted(out)]
