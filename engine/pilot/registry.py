"""Named, self-describing capabilities (probes, actions, entity platforms).

A capability is one decorated function in one module; the validator, the schema
generator, `pilot probes` and the runtime all read the same entry, so adding a
probe is adding one file and nothing else has to learn about it.
"""

from __future__ import annotations

import importlib
import os
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class Entry:
    name: str
    factory: Callable[..., Any]
    doc: str
    params: Mapping[str, Any]
    defaults: Mapping[str, Any] = field(default_factory=dict)
    available: Callable[..., str | None] | None = None
    privilege: str | None = None
    # actions only: Home Assistant platforms that fit, and a reader of the current state
    platforms: tuple[str, ...] = ()
    state: Callable[..., Any] | None = None

    @property
    def summary(self) -> str:
        return self.doc.strip().splitlines()[0] if self.doc.strip() else ""


class Registry:
    """A name -> Entry map filled by decorators when the family's package is imported."""

    def __init__(self, kind: str, package: str, aliases: Mapping[str, str] | None = None) -> None:
        self.kind = kind
        self._package = package
        self._aliases = dict(aliases or {})  # names people reach for first -> the entry that does it
        self._entries: dict[str, Entry] = {}
        self._loaded = False

    def register(
        self,
        name: str,
        *,
        params: Mapping[str, Any] | None = None,
        defaults: Mapping[str, Any] | None = None,
        available: Callable[..., str | None] | None = None,
        privilege: str | None = None,
        platforms: tuple[str, ...] = (),
        state: Callable[..., Any] | None = None,
    ) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
        def decorate(factory: Callable[..., Any]) -> Callable[..., Any]:
            if name in self._entries:
                raise ValueError(f"{self.kind} {name!r} registered twice")
            self._entries[name] = Entry(
                name=name,
                factory=factory,
                doc=factory.__doc__ or "",
                params=params or {"type": "object", "additionalProperties": False},
                defaults=dict(defaults or {}),
                available=available,
                privilege=privilege,
                platforms=tuple(platforms),
                state=state,
            )
            return factory

        return decorate

    def _load(self) -> None:
        if self._loaded:
            return
        self._loaded = True
        package = importlib.import_module(self._package)
        for folder in package.__path__:
            for name in sorted(os.listdir(folder)):
                if name.endswith(".py") and not name.startswith("_"):
                    importlib.import_module(f"{self._package}.{name[:-3]}")

    def get(self, name: str) -> Entry | None:
        self._load()
        return self._entries.get(name)

    def __contains__(self, name: str) -> bool:
        return self.get(name) is not None

    def __iter__(self) -> Iterator[Entry]:
        self._load()
        return iter(sorted(self._entries.values(), key=lambda e: e.name))

    def names(self) -> list[str]:
        return [e.name for e in self]

    def suggest(self, name: str) -> str | None:
        """The entry a wrong name most likely meant: a known alias first, then the closest spelling."""
        from pilot.naming import closest

        if self._aliases.get(name) in self:
            return self._aliases[name]
        return closest(name, self.names())


# Names other agents and habits use, which spelling distance alone maps to the wrong probe
# ("cpu.usage" is closest in letters to "gpu.pstate").
PROBE_ALIASES = {
    "cpu.usage": "cpu.percent",
    "cpu.utilization": "cpu.percent",
    "cpu.util": "cpu.percent",
    "cpu.temp": "thermal.cpu",
    "cpu.temperature": "thermal.cpu",
    "cpu.freq": "cpu.frequency",
    "ram.used": "memory.used",
    "ram.free": "memory.available",
    "mem.used": "memory.used",
    "memory.free": "memory.available",
    "memory.percent": "memory.used_percent",
    "disk.percent": "disk.used_percent",
    "disk.usage": "disk.used_percent",
    "uptime": "system.uptime",
    "ip": "net.ip",
    "net.ip_address": "net.ip",
    "gpu.temp": "gpu.temperature",
    "gpu.usage": "gpu.utilization",
    "gpu.load": "gpu.utilization",
    "battery.percent": "battery.level",
    "battery.charge": "battery.level",
}

PROBES = Registry("probe", "pilot.probes", PROBE_ALIASES)
ACTIONS = Registry("action", "pilot.actions")
SOURCES = Registry("source", "pilot.sources")
