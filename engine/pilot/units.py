"""Durations, sizes and frequencies as people write them: `10s`, `1h30m`, `512MiB`, `1.6GHz`."""

from __future__ import annotations

import math
import re

DURATION_PATTERN = r"^\s*(\d+(\.\d+)?\s*(ms|s|m|h|d)\s*)+$"
_DURATION_PART = re.compile(r"(\d+(?:\.\d+)?)\s*(ms|s|m|h|d)")
_DURATION_SECONDS = {"ms": 0.001, "s": 1, "m": 60, "h": 3600, "d": 86400}

SIZE_PATTERN = r"^\s*(\d+(?:\.\d+)?)\s*([KMGT]i?B|B)\s*$"
_SIZE_UNITS = {
    "B": 1,
    "KB": 10**3,
    "MB": 10**6,
    "GB": 10**9,
    "TB": 10**12,
    "KiB": 2**10,
    "MiB": 2**20,
    "GiB": 2**30,
    "TiB": 2**40,
}

FREQUENCY_PATTERN = r"^\s*(\d+(?:\.\d+)?)\s*([kMG]?Hz)\s*$"
_FREQ_UNITS = {"Hz": 1, "kHz": 10**3, "MHz": 10**6, "GHz": 10**9}


def parse_duration(text: str | int | float) -> float:
    """Seconds in a duration string; a bare number is seconds. Raises ValueError."""
    if isinstance(text, bool):
        raise ValueError("a duration is text such as 10s, 5m or 1h30m")
    if isinstance(text, (int, float)):
        seconds = float(text)
    elif not re.fullmatch(DURATION_PATTERN, text):
        raise ValueError(f"'{text}' is not a duration such as 10s, 5m or 1h30m")
    else:
        seconds = sum(float(n) * _DURATION_SECONDS[u] for n, u in _DURATION_PART.findall(text))
    if not math.isfinite(seconds):  # 400 nines: a float's infinity, an interval that would never end
        raise ValueError("that duration is too long to be a number of seconds")
    return seconds


def format_duration(seconds: float) -> str:
    if seconds < 1 and seconds > 0:
        return f"{round(seconds * 1000)}ms"
    out, rest = "", int(round(seconds))
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60), ("s", 1)):
        if rest >= size:
            out += f"{rest // size}{unit}"
            rest %= size
    return out or "0s"


def parse_size(text: str | int) -> int:
    if isinstance(text, int) and not isinstance(text, bool):
        return text
    match = re.match(SIZE_PATTERN, str(text))
    if not match:
        raise ValueError(f"'{text}' is not a size such as 512KiB or 1MB")
    return int(float(match.group(1)) * _SIZE_UNITS[match.group(2)])


def parse_frequency(text: str | int | float) -> float:
    """Hertz in `1.6GHz`; a bare number is taken as GHz only by callers that say so."""
    if isinstance(text, (int, float)) and not isinstance(text, bool):
        return float(text)
    match = re.match(FREQUENCY_PATTERN, str(text))
    if not match:
        raise ValueError(f"'{text}' is not a frequency such as 800MHz or 1.6GHz")
    return float(match.group(1)) * _FREQ_UNITS[match.group(2)]
