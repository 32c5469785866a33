"""Profile packs: folders of profiles for one kind of machine, matched to host facts.

Packs come from the shipped profiles folder, PILOT_PACKS_PATH, and installed distributions
that name a package under the `pilot.packs` entry point: that package's folder holds pack
folders (`<name>/pack.yaml`) exactly like the shipped one (docs/plugins.md). A plugin's pack
never replaces a pack of the same name found earlier; it is skipped with a line in `problems()`.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pilot.profile import loader
from pilot.registry import BUILTIN, _one_line

PACKS_GROUP = "pilot.packs"


@dataclass(frozen=True)
class Pack:
    name: str
    version: str
    description: str
    folder: Path
    default: str | None = None
    priority: int = 0
    match: dict[str, Any] = field(default_factory=dict)
    origin: str = BUILTIN  # "pilot" (shipped or PILOT_PACKS_PATH), or the plugin's "<distribution> <version>"

    @property
    def default_profile(self) -> Path | None:
        if self.default:
            return self.folder / f"{self.default}.yaml"
        profiles = sorted(self.folder.glob("*.yaml"))
        profiles = [p for p in profiles if p.name != "pack.yaml"]
        return profiles[0] if len(profiles) == 1 else None


def plugin_roots(
    entry_points: Callable[[str], Iterable[Any]] | None = None,
) -> tuple[list[tuple[Path, str]], list[str]]:
    """(folder, origin) of every installed `pilot.packs` package, and one line per one that is unusable."""
    import importlib.util

    from pilot.registry import _entry_points, _origin

    roots: list[tuple[Path, str]] = []
    problems: list[str] = []
    try:
        found = list((entry_points or _entry_points)(PACKS_GROUP))
    except Exception as exc:  # broken metadata of some distribution on the path
        return [], [_one_line(f"{PACKS_GROUP}: cannot list plugins: {type(exc).__name__}: {exc}")]
    for ep in found:
        origin = _origin(ep)
        label = f"plugin '{_one_line(ep.name, 80)}' ({PACKS_GROUP}) from {origin}"
        try:
            spec = importlib.util.find_spec(ep.value.split(":")[0].strip())
        except Exception as exc:  # its parent package failed to import
            problems.append(_one_line(f"{label} is not loaded: {type(exc).__name__}: {exc}"))
            continue
        folders = list(spec.submodule_search_locations or []) if spec is not None else []
        if not folders:
            problems.append(_one_line(f"{label} is not loaded: {ep.value!r} is not an installed package (a folder)"))
            continue
        roots += [(Path(folder), origin) for folder in folders]
    return roots, problems


def _read(manifest: Path, origin: str) -> Pack | None:
    doc, _ = loader.load_file(manifest)
    if doc is None or not isinstance(doc.data, dict):
        return None
    d = doc.data
    return Pack(
        name=d.get("name", manifest.parent.name),
        version=str(d.get("version", "0.0.0")),
        description=d.get("description", ""),
        folder=manifest.parent,
        default=d.get("default"),
        priority=int(d.get("priority", 0)),
        match=dict(d.get("match") or {}),
        origin=origin,
    )


def discover_all(
    search: list[Path] | None = None, plugins: list[tuple[Path, str]] | None = None
) -> tuple[list[Pack], list[str]]:
    """Every pack (the search path's first, then plugins'), and one line per plugin pack refused."""
    problems: list[str] = []
    if search is None:
        search = loader.pack_search_path()
        if plugins is None:
            plugins, problems = plugin_roots()
    packs: dict[str, Pack] = {}
    roots = [(Path(root), BUILTIN) for root in search] + list(plugins or [])
    for root, origin in roots:
        for manifest in sorted(root.glob("*/pack.yaml")):
            pack = _read(manifest, origin)
            if pack is None:
                continue
            if pack.name in packs:
                if origin != BUILTIN:
                    taken = packs[pack.name].origin
                    owner = "is shipped with Pilot" if taken == BUILTIN else f"is already provided by {taken}"
                    problems.append(
                        _one_line(f"pack '{pack.name}' from {origin} is not loaded: a pack of that name {owner}")
                    )
                continue
            packs[pack.name] = pack
    return list(packs.values()), problems


def discover(search: list[Path] | None = None) -> list[Pack]:
    return discover_all(search)[0]


def problems() -> list[str]:
    """One line per installed pack plugin that could not be used."""
    return discover_all()[1]


def _any_substring(wanted: list[str], actual: Any) -> bool:
    text = str(actual or "").lower()
    return any(w.lower() in text for w in wanted) if text else False


def matches(pack: Pack, facts: dict[str, Any]) -> tuple[bool, str]:
    """Whether every condition holds, and the first one that does not."""
    m = pack.match
    has = set(facts.get("has") or [])
    if "os" in m and m["os"] != facts.get("os"):
        return False, f"os is {facts.get('os')}, not {m['os']}"
    if "arch" in m and facts.get("arch") not in m["arch"]:
        return False, f"arch is {facts.get('arch')}"
    if "cpu.vendor" in m and facts.get("cpu.vendor") not in m["cpu.vendor"]:
        return False, f"cpu vendor is {facts.get('cpu.vendor')}"
    for key in ("dmi.sys_vendor", "dmi.product_name"):
        if key in m and not _any_substring(m[key], facts.get(key)):
            return False, f"{key} is {facts.get(key)!r}"
    missing = [f for f in m.get("has", []) if f not in has]
    if missing:
        return False, "lacks " + ", ".join(missing)
    present = [f for f in m.get("lacks", []) if f in has]
    if present:
        return False, "has " + ", ".join(present)
    return True, ""


def matching(facts: dict[str, Any], search: list[Path] | None = None) -> list[Pack]:
    """Matching packs, most specific first (priority, then number of conditions)."""
    found = [p for p in discover(search) if matches(p, facts)[0]]
    return sorted(found, key=lambda p: (-p.priority, -len(p.match), p.name))
