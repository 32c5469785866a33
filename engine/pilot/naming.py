"""Names derived from ids: entity ids and display names (no imports: the agent uses these at run time)."""

from __future__ import annotations

import re
from collections.abc import Iterable


def slug(text: str) -> str:
    """`Office PC` -> `office_pc`, for Home Assistant entity ids."""
    return re.sub(r"[^a-z0-9]+", "_", text.lower()).strip("_") or "pilot"


# Words that are written in capitals (or their own way) in a display name: "RAM free", not "Ram free".
ACRONYMS = {
    w.lower(): w
    for w in (
        "AC",
        "CPU",
        "DNS",
        "GPU",
        "HDD",
        "ID",
        "IP",
        "IPv4",
        "IPv6",
        "LAN",
        "MAC",
        "NVMe",
        "OS",
        "RAM",
        "SSD",
        "UPS",
        "USB",
        "VPN",
        "WAN",
        "WiFi",
    )
}


def words(identifier: str) -> str:
    """`cpu_usage` -> `CPU usage`, `ram_free` -> `RAM free`: the default display name of an entity."""
    parts = [ACRONYMS.get(part.lower(), part) for part in identifier.replace("_", " ").split()]
    text = " ".join(parts)
    return text[:1].upper() + text[1:]


def closest(word: str, choices: Iterable[str]) -> str | None:
    """The choice a typo most likely meant, or None (difflib's ratio of at least 0.6)."""
    import difflib  # only when there is a mistake to explain

    matches = difflib.get_close_matches(word, list(choices), n=1, cutoff=0.6)
    return matches[0] if matches else None


def did_you_mean(word: str, choices: Iterable[str]) -> str:
    """` (did you mean 'path'?)`, or "" when nothing is close: the one hint every message uses."""
    close = closest(word, choices)
    return f" (did you mean '{close}'?)" if close else ""
