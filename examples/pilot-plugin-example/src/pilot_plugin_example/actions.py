"""example.stamp: write a short text (the command's value, or a fixed one) into a file.

An action never touches the machine itself: its factory returns the exact `Call`s it needs and
Pilot performs them (or, with --dry-run, only reports them), after every guard of the command.
"""

from __future__ import annotations

import os
from typing import Any

from pilot.actions import ActionContext, ActionError, Call
from pilot.params import params, prop
from pilot.registry import ACTIONS

MAX_TEXT = 256


def _available(ctx: ActionContext, path: str = "", **_: Any) -> str | None:
    folder = os.path.dirname(path)
    if not os.path.isabs(path) or not os.path.isdir(folder):
        return f"the folder of {path[:200]!r} does not exist here"
    return None


@ACTIONS.register(
    "example.stamp",
    params=params(
        {
            "path": prop("string", "Absolute path of the file to write.", minLength=2, maxLength=4096),
            "text": prop("string", "What to write; default: the command's value.", maxLength=MAX_TEXT),
        },
        required=("path",),
        examples=[{"path": "/run/user/1000/last-press", "text": "pressed"}],
    ),
    platforms=("button", "text"),
    available=_available,
)
def stamp(ctx: ActionContext, value: Any = None, *, path: str, text: str | None = None) -> list[Call]:
    """Write a short text into a file."""
    body = text if text is not None else ("" if value in (None, "PRESS") else str(value))
    if len(body) > MAX_TEXT or any(ch in body for ch in "\x00\n\r"):
        raise ActionError(f"the text must be one line of at most {MAX_TEXT} characters")
    return [Call(kind="write", path=path, data=body or "pressed")]
