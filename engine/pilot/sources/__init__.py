"""Sources: sets of things found at run time (Proxmox guests today; containers, systemd units or disks
next), each instance announced as its own Home Assistant device under the host.

A source is registered with `SOURCES.register(name, params=..., defaults=...)` on a factory
`factory(**args) -> Bound`: `poll()` returns the instances seen now, or raises `SourceError` when the
whole set cannot be read; `request(method, path)` performs a command's planned request on the same
connection (a "request" `Call`, see pilot.actions), raising `ActionError` when it fails.
The entry's `defaults` describe what a profile can choose from:
`fields` (each a value an instance reports, with its Home Assistant metadata), `sensors` (the fields
announced when a profile names none), `commands` (each an action on one instance) and `model` (the
child devices' model). The engine knows nothing else about a source, so a new kind of child is one
new module here.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any


class SourceError(Exception):
    """The set cannot be read now. `reason` is a short code (one log line per distinct reason);
    `detail` is one line safe to log: bounded, no secrets."""

    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(f"{reason}: {detail}")
        self.reason, self.detail = reason, detail


@dataclass(frozen=True)
class Instance:
    """One child as a poll saw it. `key` is its identity across polls (a Proxmox vmid survives a rename
    and a migration); `target` is what its commands need to reach it (a node, a kind, a vmid)."""

    key: str
    name: str
    fields: dict[str, Any]
    available: bool = True
    target: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Bound:
    """A source bound to its arguments: how to list the instances, and how to act on one."""

    poll: Callable[[], list[Instance]]
    request: Callable[[str, str], str] | None = None
