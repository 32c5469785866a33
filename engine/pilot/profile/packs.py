"""Profile packs: folders of profiles for one kind of machine, matched to host facts."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pilot.profile import loader


@dataclass(frozen=True)
class Pack:
    name: str
    version: str
    description: str
    folder: Path
    default: str | None = None
    priority: int = 0
    match: dict[str, Any] = field(default_factory=dict)

    @property
    def default_profile(self) -> Path | None:
        if self.default:
            return self.folder / f"{self.default}.yaml"
        profiles = sorted(self.folder.glob("*.yaml"))
        profiles = [p for p in profiles if p.name != "pack.yaml"]
        return profiles[0] if len(profiles) == 1 else None


def discover(search: list[Path] | None = None) -> list[Pack]:
    packs: dict[str, Pack] = {}
    for root in search if search is not None else loader.pack_search_path():
        for manifest in sorted(Path(root).glob("*/pack.yaml")):
            doc, diags = loader.load_file(manifest)
            if doc is None or not isinstance(doc.data, dict) or doc.data.get("name") in packs:
                continue
            d = doc.data
            packs[d.get("name", manifest.parent.name)] = Pack(
                name=d.get("name", manifest.parent.name),
                version=str(d.get("version", "0.0.0")),
                description=d.get("description", ""),
                folder=manifest.parent,
                default=d.get("default"),
                priority=int(d.get("priority", 0)),
                match=dict(d.get("match") or {}),
            )
    return list(packs.values())


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
