"""Logging set-up: one line per event, JSON on request, no timestamps under journald.

Log lines are read by people and by tools that split on line breaks, and many of their words come
from elsewhere: MQTT topics and payloads, profile values, file names, broker error texts. So every
format goes through `safe_message`: each argument and then the whole message is escaped (control
characters, line and paragraph separators, bidi and zero-width formatting, ANSI escapes become
`\\xNN` / `\\uNNNN`) and cut to a bounded length with an ellipsis and the original length. A value
can therefore never start a line of its own, recolour a terminal or grow a line without bound.
Tracebacks keep their line breaks but every line of one is indented, so no line of a traceback can
pass for a log line either.

`RateLimit` (a handler filter) keeps one source from flooding the log: every (logger, message
template) pair has a token bucket; what exceeds it is counted, not written, and the next line that
passes says how many similar messages were suppressed.
"""

from __future__ import annotations

import json
import logging
import os
import re
import sys
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Mapping

from pilot.escaping import bound, escape

MAX_ARG_CHARS = 512  # one argument of a log call (a topic, a path, an error text)
MAX_MESSAGE_CHARS = 4096  # a whole message after formatting
MAX_EXC_CHARS = 16384  # a formatted traceback


def safe(value: object, limit: int = MAX_ARG_CHARS) -> str:
    """A value from outside (network, profile, file system) as it may appear in a log line: escaped
    and bounded. Use it at the source for known fields; the formatters apply it to every argument."""
    try:
        text = value if isinstance(value, str) else str(value)
    except Exception:  # a broken __str__ must not lose the log line
        text = f"<{type(value).__name__}>"
    return bound(escape(text), limit)


def _safe_arg(value: object) -> object:
    if value is None or isinstance(value, (bool, int, float)):
        return value  # %d, %.1f and friends keep working; numbers cannot hold a line break
    return safe(value)


def safe_message(record: logging.LogRecord) -> str:
    """The record's message with every argument, and then the whole, escaped and bounded."""
    args = record.args
    msg = record.msg if isinstance(record.msg, str) else safe(record.msg)
    if args:
        if isinstance(args, Mapping):
            args = {k: _safe_arg(v) for k, v in args.items()}
        else:
            args = tuple(_safe_arg(a) for a in args)
        try:
            msg = msg % args
        except (TypeError, ValueError, KeyError):  # a format that wanted the raw object
            msg = f"{msg} {args!r}"
    return bound(escape(msg), MAX_MESSAGE_CHARS)


def safe_exception(text: str, indent: str = "    | ") -> str:
    """A traceback: line breaks kept, everything else escaped, each line indented so none of it can be
    read as a log line of its own, and bounded."""
    lines = bound(text, MAX_EXC_CHARS).splitlines()
    return "\n".join(indent + escape(line) for line in lines)


class SafeFormatter(logging.Formatter):
    """logging.Formatter whose `%(message)s` is `safe_message` and whose tracebacks are indented."""

    def format(self, record: logging.LogRecord) -> str:
        copy = logging.makeLogRecord(record.__dict__)
        copy.msg, copy.args = safe_message(record), None
        copy.exc_info, copy.exc_text, copy.stack_info = None, None, None
        text = super().format(copy)
        if record.exc_info:
            text += "\n" + safe_exception(self.formatException(record.exc_info))
        if record.stack_info:
            text += "\n" + safe_exception(record.stack_info)
        return text


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        entry = {
            "ts": round(record.created, 3),
            "level": record.levelname.lower(),
            "logger": record.name,
            "msg": safe_message(record),
        }
        if record.exc_info:
            entry["exc"] = bound(self.formatException(record.exc_info), MAX_EXC_CHARS)
        # JSON escapes C0 controls itself; the other line breaks some readers honour are escaped too
        return json_line(entry)


def json_line(entry: dict) -> str:
    text = json.dumps(entry, ensure_ascii=False)
    return re.sub("[\x85\u2028\u2029]", lambda m: f"\\u{ord(m.group()):04x}", text)


class JournalFormatter(logging.Formatter):
    """`<N>` syslog priority prefixes, which journald turns into the entry's level."""

    PRIORITY = {logging.CRITICAL: 2, logging.ERROR: 3, logging.WARNING: 4, logging.INFO: 6, logging.DEBUG: 7}

    def format(self, record: logging.LogRecord) -> str:
        text = f"{record.name}: {safe_message(record)}"
        if record.exc_info:
            text += " | " + safe_exception(self.formatException(record.exc_info), indent="").replace("\n", " | ")
        return f"<{self.PRIORITY.get(record.levelno, 6)}>{text}"


class RateLimit(logging.Filter):
    """A token bucket per (logger, message template): `burst` lines at once, then one every
    `per` seconds. What is held back is counted; the next line of that kind that passes carries
    "(N similar messages suppressed)". At most `keys` buckets are kept; messages of further kinds
    (formatted on the spot, so unique) share one bucket, so the whole log stays bounded."""

    def __init__(
        self, burst: int = 20, per: float = 1.0, keys: int = 512, clock: Callable[[], float] = time.monotonic
    ) -> None:
        super().__init__()
        self.burst, self.per, self.max_keys, self.clock = burst, per, keys, clock
        self._buckets: OrderedDict[tuple[str, str], list[float]] = OrderedDict()  # key -> [tokens, at, held]
        self._lock = threading.Lock()

    def _key(self, record: logging.LogRecord) -> tuple[str, str]:
        template = record.msg if isinstance(record.msg, str) else type(record.msg).__name__
        key = (record.name, template[:200])
        if key not in self._buckets and len(self._buckets) >= self.max_keys:
            return ("", "")  # the shared overflow bucket
        return key

    def filter(self, record: logging.LogRecord) -> bool:
        now = self.clock()
        with self._lock:
            key = self._key(record)
            bucket = self._buckets.get(key)
            if bucket is None:
                bucket = self._buckets[key] = [float(self.burst), now, 0]
            bucket[0] = min(float(self.burst), bucket[0] + (now - bucket[1]) / self.per)
            bucket[1] = now
            if bucket[0] < 1.0:
                bucket[2] += 1
                return False
            bucket[0] -= 1.0
            held, bucket[2] = int(bucket[2]), 0
        if held:
            note = f"({held} similar message{'s' if held != 1 else ''} suppressed)"
            record.msg = f"{record.msg if isinstance(record.msg, str) else safe(record.msg)} {note}"
        return True


def setup(fmt: str = "text", level: str = "info") -> None:
    handler = logging.StreamHandler(sys.stderr)
    if fmt == "json":
        handler.setFormatter(JsonFormatter())
    elif os.environ.get("JOURNAL_STREAM"):
        # journald stamps every line itself; a second timestamp is noise
        handler.setFormatter(JournalFormatter())
    else:
        formatter = SafeFormatter("%(asctime)s %(levelname)-7s %(name)s: %(message)s", "%H:%M:%S")
        formatter.converter = time.localtime
        handler.setFormatter(formatter)
    handler.addFilter(RateLimit())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(getattr(logging, level.upper(), logging.INFO))
    logging.getLogger("apscheduler").setLevel(logging.WARNING)
