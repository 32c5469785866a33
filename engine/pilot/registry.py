"""Named, self-describing capabilities (probes, actions, entity platforms).

A capability is one decorated function in one module; the validator, the schema
generator, `pilot probes` and the runtime all read the same entry, so adding a
probe is adding one file and nothing else has to learn about it.

Installed distributions add capabilities through the `pilot.probes` and `pilot.actions`
entry points (docs/plugins.md). They are looked up only when a name is not built in or a
listing asks for everything, so an agent whose profile uses built-ins only never imports
importlib.metadata or any plugin. A plugin that fails to load, or tries to take a built-in
name, becomes one line in `problems` naming it; it never stops the built-ins.
"""

from __future__ import annotations

import importlib
import os
import re
import threading
from collections.abc import Callable, Iterable, Iterator, Mapping
from contextvars import ContextVar
from dataclasses import dataclass, field
from typing import Any

BUILTIN = "pilot"  # the origin of everything shipped in this package


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
    # "pilot" for a built-in, "<distribution> <version>" for a plugin's
    origin: str = BUILTIN

    def unavailable(self, ctx: Any, **args: Any) -> str | None:
        """Why this capability cannot work here with `args`, or None. A check that raises is itself the
        answer (its exception in words), so no caller has to guard it again."""
        if self.available is None:
            return None
        try:
            return self.available(ctx, **args)
        except Exception as exc:
            return f"{type(exc).__name__}: {exc}"

    @property
    def summary(self) -> str:
        return self.doc.strip().splitlines()[0] if self.doc.strip() else ""

    @property
    def is_plugin(self) -> bool:
        return self.origin != BUILTIN


class PluginRefused(Exception):
    """A plugin asked for something it may not have (a built-in's name, a malformed entry)."""


@dataclass
class _Loading:
    """The plugin whose module is being imported on this thread, and what it registered so far."""

    label: str
    origin: str
    added: list[tuple[Registry, str]] = field(default_factory=list)


_LOADING: ContextVar[_Loading | None] = ContextVar("pilot_plugin_loading", default=None)
_LOCK = threading.RLock()  # built-in and plugin imports: one at a time, so a name is decided once
MAX_PROBLEM = 300  # characters of one plugin's error kept in its line
# a plugin's names: lower-case words joined by dots, at least two ("vendor.thing"), at most 64 characters
PLUGIN_NAME = re.compile(r"(?=.{3,64}\Z)[a-z][a-z0-9_]*(?:\.[a-z][a-z0-9_]*)+")


def _entry_points(group: str) -> list[Any]:
    from importlib.metadata import entry_points  # costs ~10 ms and a few modules: only when asked

    seen: set[tuple[str, str]] = set()
    found = []
    for ep in entry_points(group=group):
        if (ep.name, ep.value) not in seen:  # one distribution found twice on sys.path
            seen.add((ep.name, ep.value))
            found.append(ep)
    return sorted(found, key=lambda ep: ep.name)


def _origin(ep: Any) -> str:
    dist = getattr(ep, "dist", None)
    if dist is None:
        return _one_line(f"{ep.value.split(':')[0]} (no distribution)", 120)
    return _one_line(f"{dist.name} {dist.version}", 120)  # metadata is text from the distribution: shown safely


def _one_line(text: str, limit: int = MAX_PROBLEM) -> str:
    from pilot.escaping import bound, escape

    return bound(escape(" ".join(text.split())), limit)


PROBE_DEFAULT_KEYS = frozenset({"unit", "state_class", "device_class", "platform", "icon", "precision", "options"})
PROBE_PLATFORMS = ("sensor", "binary_sensor")
ACTION_PLATFORMS = ("button", "switch", "number", "select", "text")  # pilot.profile.schema.COMMAND_PLATFORMS


def _check_plugin_entry(
    kind: str, name: str, factory: Any, params: Any, defaults: Any = None, platforms: Any = ()
) -> None:
    """What a plugin's entry must look like for the validator and the agent to use it without a traceback."""
    if not isinstance(name, str) or not PLUGIN_NAME.fullmatch(name):
        raise PluginRefused(f"{kind} name {name!r} is not lower-case words joined by dots (like 'vendor.thing')")
    if not callable(factory):
        raise PluginRefused(f"{kind} {name!r}: its factory is not callable")
    if params is not None and (
        not isinstance(params, Mapping)
        or params.get("type") != "object"
        or not isinstance(params.get("properties", {}), Mapping)
    ):
        raise PluginRefused(f"{kind} {name!r}: params must be an object schema (see pilot.params.params)")
    if defaults is not None and not isinstance(defaults, Mapping):
        raise PluginRefused(f"{kind} {name!r}: defaults must be a mapping")
    if kind == "probe":
        unknown = sorted(str(k) for k in (defaults or {}) if k not in PROBE_DEFAULT_KEYS)
        if unknown:
            raise PluginRefused(f"probe {name!r}: unknown defaults {', '.join(unknown)[:80]}")
        if (defaults or {}).get("platform", "sensor") not in PROBE_PLATFORMS:
            raise PluginRefused(f"probe {name!r}: platform must be sensor or binary_sensor")
    if kind == "action" and (
        isinstance(platforms, str) or not platforms or not all(p in ACTION_PLATFORMS for p in platforms)
    ):
        raise PluginRefused(f"action {name!r}: platforms must name some of {', '.join(ACTION_PLATFORMS)}")


class Registry:
    """A name -> Entry map filled by decorators when the family's package is imported,
    and by the modules that installed distributions name under the entry-point `group`."""

    def __init__(
        self,
        kind: str,
        package: str,
        aliases: Mapping[str, str] | None = None,
        *,
        group: str | None = None,
        entry_points: Callable[[str], Iterable[Any]] = _entry_points,
    ) -> None:
        self.kind = kind
        self.group = group  # the entry-point group plugins use; None: built-ins only
        self._package = package
        self._aliases = dict(aliases or {})  # names people reach for first -> the entry that does it
        self._entries: dict[str, Entry] = {}
        self._loaded = False
        self._importing = False
        self._entry_points = entry_points
        self._plugins_loaded = False
        self._problems: list[str] = []

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
            loading = _LOADING.get()
            if loading is not None:
                self._admit_plugin(loading, name, factory, params, defaults, platforms)
            elif name in self._entries:
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
                origin=loading.origin if loading is not None else BUILTIN,
            )
            if loading is not None:
                loading.added.append((self, name))
            return factory

        return decorate

    def _admit_plugin(
        self, loading: _Loading, name: str, factory: Any, params: Any, defaults: Any, platforms: Any
    ) -> None:
        self._load()  # the built-ins first, so a plugin can never take one of their names
        _check_plugin_entry(self.kind, name, factory, params, defaults, platforms)
        taken = self._entries.get(name)
        if taken is not None and not taken.is_plugin:
            raise PluginRefused(f"{self.kind} {name!r} is built into Pilot; a plugin may not replace it")
        if taken is not None:
            raise PluginRefused(f"{self.kind} {name!r} is already provided by {taken.origin}")

    def _load(self) -> None:
        if self._loaded:
            return
        with _LOCK:  # another thread waits for the whole family; this one may re-enter (an RLock)
            if self._loaded or self._importing:
                return  # a module that lists the registry while it is being imported sees what is there
            self._importing = True
            token = _LOADING.set(None)  # built-ins imported while a plugin loads are still built-ins
            try:
                package = importlib.import_module(self._package)
                for folder in package.__path__:
                    for name in sorted(os.listdir(folder)):
                        if name.endswith(".py") and not name.startswith("_"):
                            importlib.import_module(f"{self._package}.{name[:-3]}")
                self._loaded = True
            finally:
                self._importing = False
                _LOADING.reset(token)

    def load_plugins(self) -> list[str]:
        """Import every module installed distributions name under `group` (once), and return
        one line per plugin that could not be used. Never raises for a plugin's fault."""
        self._load()
        if self._plugins_loaded or self.group is None:
            return list(self._problems)
        with _LOCK:
            if not self._plugins_loaded:
                try:
                    found = list(self._entry_points(self.group))
                except Exception as exc:  # broken metadata of some distribution on the path
                    found = []
                    self._problems.append(_one_line(f"{self.group}: cannot list plugins: {type(exc).__name__}: {exc}"))
                for ep in found:
                    self._load_one(ep)
                self._plugins_loaded = True
        return list(self._problems)

    def _load_one(self, ep: Any) -> None:
        origin = _origin(ep)
        loading = _Loading(label=f"plugin '{_one_line(ep.name, 80)}' ({self.group}) from {origin}", origin=origin)
        token = _LOADING.set(loading)
        try:
            ep.load()  # the module registers its entries as it is imported
        except BaseException as exc:
            if isinstance(exc, KeyboardInterrupt):
                raise
            for registry, name in loading.added:  # all or nothing: a half-loaded plugin is not loaded
                registry._entries.pop(name, None)
            reason = str(exc) if isinstance(exc, PluginRefused) else f"{type(exc).__name__}: {exc}"
            self._problems.append(_one_line(f"{loading.label} is not loaded: {reason}"))
        finally:
            _LOADING.reset(token)

    @property
    def problems(self) -> list[str]:
        """The plugins that could not be loaded so far, one line each."""
        return list(self._problems)

    def get(self, name: str) -> Entry | None:
        self._load()
        entry = self._entries.get(name)
        if entry is None and not self._plugins_loaded and self.group is not None:
            self.load_plugins()  # a name Pilot does not have: perhaps an installed plugin's
            entry = self._entries.get(name)
        return entry

    def __contains__(self, name: str) -> bool:
        return self.get(name) is not None

    def __iter__(self) -> Iterator[Entry]:
        """The built-ins and the plugins loaded so far (`load_plugins()` first for every plugin)."""
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

PROBES = Registry("probe", "pilot.probes", PROBE_ALIASES, group="pilot.probes")
ACTIONS = Registry("action", "pilot.actions", group="pilot.actions")
SOURCES = Registry("source", "pilot.sources")
