"""What the editor offers to complete and explain: keys, probes, actions and the shipped packs.

Read from the same sources as docs/reference.md (pilot.profile.docgen): the profile's JSON Schema for keys
and the registries for probes and actions, so the page's completion and hover text never drift from
what the validator accepts. Built once per process; the packs are read from the pack search path.
"""

from __future__ import annotations

import re
from functools import cache
from pathlib import Path
from typing import Any

from pilot.console.editor import MAX_TEXT, EditorError
from pilot.profile import packs as packs_module
from pilot.profile.schema import base_profile_schema
from pilot.registry import ACTIONS, PROBES

MAX_DEPTH = 8
PACK_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}")


def _words(text: Any) -> str:
    return " ".join(str(text or "").split())


def _type(node: dict[str, Any]) -> str:
    if "anyOf" in node:
        return " or ".join(dict.fromkeys(_type(n) for n in node["anyOf"] if isinstance(n, dict)))
    if "const" in node:
        return "constant"
    kind = node.get("type", "")
    if isinstance(kind, list):
        return " or ".join(kind)
    if kind == "string" and str(node.get("pattern", "")).startswith("^\\s*(\\d+"):
        return "duration"
    if kind == "object" and isinstance(node.get("additionalProperties"), dict) and not node.get("properties"):
        return "map"
    return kind or "any"


def _resolve(node: Any, defs: dict[str, Any]) -> dict[str, Any]:
    if isinstance(node, dict) and isinstance(node.get("$ref"), str):
        target = defs.get(node["$ref"].rsplit("/", 1)[-1], {})
        merged = {**target, **{k: v for k, v in node.items() if k != "$ref"}}
        return merged
    return node if isinstance(node, dict) else {}


def key_node(node: Any, defs: dict[str, Any], depth: int = 0) -> dict[str, Any]:
    """One key of the tree: its doc, type, enum, and what lies under it."""
    node = _resolve(node, defs)
    out: dict[str, Any] = {"doc": _words(node.get("description")), "type": _type(node)}
    if isinstance(node.get("enum"), list):
        out["enum"] = list(node["enum"])
    if depth >= MAX_DEPTH:
        return out
    props = node.get("properties")
    if isinstance(props, dict) and props:
        out["children"] = {
            k: key_node(v, defs, depth + 1) for k, v in props.items() if isinstance(v, dict) and not k.startswith("$")
        }
    extra = node.get("additionalProperties")
    if isinstance(extra, dict):
        out["items"] = key_node(extra, defs, depth + 1)
    elif isinstance(node.get("items"), dict):
        out["items"] = key_node(node["items"], defs, depth + 1)
    elif isinstance(node.get("anyOf"), list):  # `extends`: a name or a list of them
        for option in node["anyOf"]:
            if isinstance(option, dict) and isinstance(option.get("items"), dict):
                out["items"] = key_node(option["items"], defs, depth + 1)
    return out


def _args(params: Any) -> list[dict[str, Any]]:
    params = params if isinstance(params, dict) else {}
    required = set(params.get("required") or ())
    out = []
    for name, spec in (params.get("properties") or {}).items():
        spec = spec if isinstance(spec, dict) else {}
        arg: dict[str, Any] = {
            "name": name,
            "type": _type(spec),
            "required": name in required,
            "doc": _words(spec.get("description")),
        }
        if isinstance(spec.get("enum"), list):
            arg["enum"] = list(spec["enum"])
        out.append(arg)
    return out


@cache
def catalog() -> dict[str, Any]:
    from pilot import __version__

    schema = base_profile_schema()
    defs = schema.get("$defs", {})
    keys = {k: key_node(v, defs) for k, v in schema.get("properties", {}).items() if not k.startswith("$")}
    probes = [{"name": e.name, "doc": _words(e.doc), "args": _args(e.params)} for e in PROBES]
    actions = [
        {"name": e.name, "doc": _words(e.doc), "args": _args(e.params), "platforms": list(e.platforms)} for e in ACTIONS
    ]
    return {"version": __version__, "keys": keys, "probes": probes, "actions": actions}


# ------------------------------------------------------------------ packs
def _profiles(folder: Path) -> list[str]:
    return sorted(p.stem for p in folder.glob("*.yaml") if p.name != "pack.yaml" and p.is_file())


def pack_list() -> dict[str, Any]:
    found = packs_module.discover()
    return {
        "packs": [
            {"name": p.name, "description": _words(p.description), "profiles": _profiles(p.folder)}
            for p in sorted(found, key=lambda p: p.name)
            if isinstance(p.name, str)
        ]
    }


def pack_profile(pack: str, profile: str) -> dict[str, Any]:
    """A shipped profile's text; only names the pack list shows are opened, so no path reaches the disk."""
    if not PACK_NAME.fullmatch(pack) or not PACK_NAME.fullmatch(profile):
        raise EditorError(404, "no such pack profile")
    for p in packs_module.discover():
        if p.name == pack and profile in _profiles(p.folder):
            path = p.folder / f"{profile}.yaml"
            data = path.read_bytes()[: MAX_TEXT + 1]
            if len(data) > MAX_TEXT:
                raise EditorError(413, "the pack profile is larger than the editor takes")
            try:
                return {"text": data.decode("utf-8"), "name": path.name}
            except UnicodeDecodeError:
                raise EditorError(422, "the pack profile is not UTF-8") from None
    raise EditorError(404, "no such pack profile")
