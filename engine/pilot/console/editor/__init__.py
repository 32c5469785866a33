"""The profile editor's server side: the console's one door to the profile compiler.

Only this package may import `pilot.profile` (and through it ruamel and jsonschema); the rest of the
console imports it lazily, inside the editor's routes, so a console nobody opens the editor on never
loads the compiler (pyproject.toml's import-linter contracts). Everything a browser sends here is
bounded before it is parsed: a text is at most MAX_TEXT bytes, validation runs on a small worker pool
with a deadline (runner.py), and the answer carries at most MAX_DIAGNOSTICS findings.
"""

from __future__ import annotations

MAX_TEXT = 262_144  # bytes of a profile text, as the agent's deploy limit
MAX_DIAGNOSTICS = 200
MAX_EDITS = 200
MAX_PATH = 12  # parts of one edit's path


class EditorError(Exception):
    """A request the editor refuses: `status` is the HTTP status, the message one plain line."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
