"""Text from outside (the network, a profile, a file name) made safe to print on one line.

Log lines and diagnostics are read by people and by tools that split on line breaks, so a value
must never start a line of its own, recolour a terminal or hide text: every character that could
is written as an escape, and long values are cut with their length. Used by the agent's log
formatters and by the diagnostics' text reporter.
"""

from __future__ import annotations

import re

# C0 and C1 controls (ESC, so ANSI sequences, included; NEL is \x85), DEL, the Unicode line and
# paragraph separators, bidi overrides and isolates, zero-width and other invisible format
# characters, lone surrogates (undecodable bytes) and the tag characters.
UNSAFE = re.compile(
    "[\x00-\x1f\x7f-\x9f\u00ad\u061c\u180e\u200b-\u200f\u2028-\u202e\u2060-\u206f"
    "\ufeff\ufff9-\ufffb\ud800-\udfff\U000e0000-\U000e007f]"
)
_NAMED = {"\n": "\\n", "\r": "\\r", "\t": "\\t"}


def _escape_char(match: re.Match) -> str:
    ch = match.group()
    if ch in _NAMED:
        return _NAMED[ch]
    code = ord(ch)
    return f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}" if code < 0x10000 else f"\\U{code:08x}"


def escape(text: str) -> str:
    """`text` with every character that could break, fake or hide a log line written as an escape."""
    return UNSAFE.sub(_escape_char, text)


def bound(text: str, limit: int) -> str:
    """`text` cut to about `limit` characters, saying so and how long it was."""
    if len(text) <= limit:
        return text
    return f"{text[:limit]}…(+{len(text) - limit} chars)"
