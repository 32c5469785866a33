"""Names derived from ids: entity ids and display names (no imports: the agent uses these at run time)."""

from __future__ import annotations

import re


def slug(text: str) -> str:
    """`Office PC` -> `office_pc`, for Home Assistant entity ids."""
    return re.sub(r"[^a-z0-9]+", "_", text.lower()).strip("_") or "pilot"


def words(identifier: str) -> str:
    """`cpu_usage` -> `Cpu usage`, the default display name of an entity."""
    text = identifier.replace("_", " ").strip()
    return text[:1].upper() + text[1:]
