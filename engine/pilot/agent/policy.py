"""The guards of the command path: small, pure, each with an injected clock.

Each guard answers None (allow) or a reason code from the fixed list, so the
chain in `commands.py` reads top to bottom like DESIGN.md §6 and every guard
is unit-tested alone.
"""

from __future__ import annotations

import math
import threading
import time
from collections import deque
from collections.abc import Callable
from typing import Any

from pilot import patterns
from pilot.plan import Command, Policy

REASONS = (
    "malformed",
    "too_large",
    "retained",
    "unauthorized",
    "expired",
    "replayed",
    "not_allowed",
    "bad_value",
    "cooldown",
    "busy",
    "unavailable",
    "rate_limited",
    "exit_status",
)
MAX_TEXT = 255  # Home Assistant's limit for a text entity; the schema caps max_length there too
# rejections that happen before the sender is known to hold a key
UNAUTHENTICATED = frozenset(
    {"malformed", "too_large", "retained", "unauthorized", "expired", "not_allowed", "replayed"}
)  # a replayer holds no key either


def check_size(payload: bytes, limit: int) -> str | None:
    return "too_large" if len(payload) > limit else None


def check_retained(retained: bool) -> str | None:
    # a retained command would fire again on every reconnect ("ghost switching")
    return "retained" if retained else None


def check_allowed(command: Command | None, policy: Policy) -> str | None:
    if command is None:
        return "not_allowed"
    if policy.allow is not None and (command.policy_id or command.id) not in policy.allow:
        return "not_allowed"
    return None


def decode_text(payload: bytes) -> str | None:
    """UTF-8 without NUL or other control characters but tab; None if not."""
    try:
        text = payload.decode("utf-8")
    except UnicodeDecodeError:
        return None
    if any(ord(ch) < 32 and ch != "\t" for ch in text):
        return None
    return text


def check_value(command: Command, text: str) -> tuple[Any, str | None]:
    """The value the entity's platform allows, or `bad_value`."""
    platform = command.entity.platform
    extra = command.entity.extra
    text = text.strip()
    if platform == "button":
        return ("PRESS", None) if text == "PRESS" else (None, "bad_value")
    if platform == "switch":
        return (text, None) if text in ("ON", "OFF") else (None, "bad_value")
    if platform == "number":
        try:
            value = float(text)
        except ValueError:
            return None, "bad_value"
        low, high, step = extra.get("min"), extra.get("max"), extra.get("step")
        if not math.isfinite(value) or (low is not None and value < low) or (high is not None and value > high):
            return None, "bad_value"
        if step and low is not None:
            steps = (value - low) / step
            if abs(steps - round(steps)) > 1e-6:
                return None, "bad_value"
        return (int(value) if value.is_integer() else value), None
    if platform == "select":
        options = command.entity.options or ()
        return (text, None) if text in options else (None, "bad_value")
    if platform == "text":
        longest = min(extra.get("max_length", MAX_TEXT), MAX_TEXT)
        if len(text) > longest or len(text) < extra.get("min_length", 0):
            return None, "bad_value"
        pattern = extra.get("pattern")
        # RE2, linear in the text (never Python's backtracking `re`: this runs on paho's thread),
        # and the text is already within max_length; a refused pattern refuses every value
        if pattern and not patterns.fullmatch(pattern, text, longest):
            return None, "bad_value"
        return text, None
    return None, "bad_value"


class Cooldowns:
    """Per-command minimum spacing on the monotonic clock (wall-clock jumps change nothing)."""

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self.clock = clock
        self._last: dict[str, float] = {}

    def check(self, command_id: str, seconds: float) -> str | None:
        last = self._last.get(command_id)
        if seconds and last is not None and self.clock() - last < seconds:
            return "cooldown"
        return None

    def mark(self, command_id: str) -> None:
        self._last[command_id] = self.clock()


class Confirmations:
    """Press twice within the window: the first press arms, the second runs."""

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self.clock = clock
        self._armed: dict[str, tuple[float, Any]] = {}

    def press(self, command_id: str, window: float, value: Any = "PRESS") -> bool:
        """True when this press confirms an armed command with the same value; False when it
        only arms it (arming OFF and confirming ON must not run ON)."""
        now = self.clock()
        armed = self._armed.pop(command_id, None)
        if armed is not None and now - armed[0] <= window and armed[1] == value:
            return True
        self._armed[command_id] = (now, value)
        return False


class RateLimit:
    """At most `limit` events per `per` seconds (sliding window)."""

    def __init__(self, limit: int | None, per: float | None, clock: Callable[[], float] = time.monotonic) -> None:
        self.limit = limit
        self.per = per or 1.0
        self.clock = clock
        self._events: deque[float] = deque()
        self._lock = threading.Lock()

    def allow(self) -> bool:
        if not self.limit:
            return True
        with self._lock:
            now = self.clock()
            while self._events and now - self._events[0] >= self.per:
                self._events.popleft()
            if len(self._events) >= self.limit:
                return False
            self._events.append(now)
            return True
