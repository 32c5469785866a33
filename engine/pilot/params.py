"""Builders for the argument schemas of registry entries (probes and actions).

Every property carries a description (editors, `pilot probes`, `pilot actions` and the
generated docs show it) and every object is closed, so a typo in `args:` never passes.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any


def prop(type_: str | list[str], description: str, **extra: Any) -> dict[str, Any]:
    return {"type": type_, "description": description, **extra}


def params(
    properties: Mapping[str, Mapping[str, Any]] | None = None,
    *,
    required: tuple[str, ...] = (),
    examples: list[dict[str, Any]] | None = None,
    **extra: Any,
) -> dict[str, Any]:
    """A closed (additionalProperties: false) object schema for an entry's `args:`."""
    schema: dict[str, Any] = {
        "type": "object",
        "additionalProperties": False,
        "properties": {k: dict(v) for k, v in (properties or {}).items()},
    }
    if required:
        schema["required"] = list(required)
    if examples:
        schema["examples"] = examples
    schema.update(extra)
    return schema
