"""Regular expressions that come from profiles, matched in linear time.

A profile may come from someone else (a pack), and the text matched against its
patterns comes from MQTT: a `text` command's value, the value a `process.run`
puts into argv. Python's `re` backtracks, so a pattern such as
`^([a-zA-Z0-9]+\\s?)*$` and forty letters plus `!` pin a core for hours, on
paho's network thread, holding the GIL: no later command is answered and
SIGTERM is never handled. RE2 (google-re2) compiles a pattern into an
automaton and matches in time linear in the text, whatever the pattern; what
it cannot run that way (backreferences, lookaround, possessive and atomic
groups) it refuses to compile. So every profile-supplied pattern goes through
this module, `pilot validate` reports what RE2 refuses at the pattern's
position, and the agent (which refuses the same patterns) agrees with it.

The text is also capped before matching (`MAX_INPUT`, and the caller's own
limit such as a text entity's `max_length`), and the compiled program is
capped in size (`MAX_PROGRAM_MEMORY`), so one match costs microseconds.
"""

from __future__ import annotations

from functools import lru_cache
from typing import Any

MAX_PATTERN = 512  # characters; the patterns profiles need are short
MAX_INPUT = 1024  # characters matched at most, whatever the caller allows
MAX_PROGRAM_MEMORY = 1 << 20  # bytes RE2 may use for one compiled pattern

_UNSUPPORTED = (
    "Pilot matches patterns with RE2, in linear time, so backreferences, lookahead/lookbehind, "
    "possessive and atomic groups and \\Z (write \\z) are not available"
)


class PatternError(ValueError):
    """A pattern the engine refuses to run; the message is plain English."""


def _friendly(detail: str) -> str:
    if any(
        word in detail
        for word in ("invalid perl operator", "invalid escape sequence", "bad repetition operator", "invalid named")
    ):
        return f"{detail}; {_UNSUPPORTED}"
    if "pattern too large" in detail:
        return "the pattern is too large to run in bounded memory: use fewer or smaller repetitions"
    return detail


@lru_cache(maxsize=512)
def compile(pattern: str) -> Any:  # noqa: A001 - the module reads as patterns.compile(...)
    """The compiled pattern, or PatternError. Cached: the agent matches the same few patterns."""
    if not isinstance(pattern, str):
        raise PatternError("a pattern must be text")
    if len(pattern) > MAX_PATTERN:
        raise PatternError(f"the pattern is {len(pattern)} characters long; the limit is {MAX_PATTERN}")
    if "\x00" in pattern:
        raise PatternError("the pattern holds a NUL character")
    try:
        import re2
    except ImportError:  # fail closed: never fall back to a backtracking engine
        raise PatternError("patterns need the google-re2 package, which is not installed") from None
    options = re2.Options()
    options.log_errors = False  # errors are ours to report, not absl's on stderr
    options.max_mem = MAX_PROGRAM_MEMORY
    try:
        return re2.compile(pattern, options)
    except re2.error as exc:
        detail = exc.args[0] if exc.args else "invalid pattern"
        if isinstance(detail, bytes):
            detail = detail.decode("utf-8", "replace")
        raise PatternError(_friendly(str(detail))) from None
    except (TypeError, ValueError, OverflowError) as exc:
        raise PatternError(f"invalid pattern: {exc}") from None


def problem(pattern: Any) -> str | None:
    """Why the engine would refuse `pattern`, or None: what `pilot validate` reports."""
    try:
        compile(pattern)
    except PatternError as exc:
        return str(exc)
    return None


def fullmatch(pattern: str, text: str, max_length: int = MAX_INPUT) -> bool:
    """Whether the whole text matches. False (never an exception, never a long wait) when the
    pattern is refused or the text is longer than `max_length` or MAX_INPUT."""
    if not isinstance(text, str) or len(text) > min(max_length, MAX_INPUT):
        return False
    try:
        compiled = compile(pattern)
    except PatternError:
        return False
    return compiled.fullmatch(text) is not None
