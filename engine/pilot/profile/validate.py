"""Three-stage validation of a composed profile: schema, registry, semantics.

Every stage collects all of its findings, and every stage runs whatever the
others found, so one run reports every problem it safely can. A later stage
leaves out only what an earlier one found broken: the registry does not check
`args` the schema already refused, and semantics skips each sensor, command,
rule or schedule that holds a schema or registry error (and any other
top-level section, `device`, `mqtt`, `policies`, that holds one), so it never
reports a consequence of an error already shown.
"""

from __future__ import annotations

import dataclasses
import math
import os
from functools import cache
from pathlib import Path
from typing import Any

from jsonschema import Draft202012Validator
from jsonschema.exceptions import ValidationError

from pilot.diagnostics import ERROR, Diagnostic
from pilot.naming import did_you_mean
from pilot.profile import loader, semantics
from pilot.profile.loader import Document
from pilot.profile.schema import base_profile_schema, pack_schema
from pilot.registry import ACTIONS, PROBES, SOURCES, Registry

_TYPE_WORDS = {
    "string": "text",
    "integer": "a whole number",
    "number": "a number",
    "boolean": "true or false",
    "object": "a map (key: value)",
    "array": "a list",
    "null": "nothing (null)",
}


@cache
def _validator(kind: str) -> Draft202012Validator:
    schema = base_profile_schema() if kind == "profile" else pack_schema()
    return Draft202012Validator(schema)


@cache
def _false_keys() -> frozenset[str]:
    """Keys that some context of the schema forbids with a `false` subschema."""
    found: set[str] = set()

    def walk(node: Any) -> None:
        if isinstance(node, dict):
            for key, value in (node.get("properties") or {}).items():
                if value is False:
                    found.add(key)
            for value in node.values():
                walk(value)
        elif isinstance(node, list):
            for value in node:
                walk(value)

    walk(base_profile_schema())
    return frozenset(found)


def _type_of(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int):
        return "integer"
    if isinstance(value, float):
        return "number"
    if isinstance(value, str):
        return "string"
    if isinstance(value, list):
        return "array"
    return "object"


def _schema_diags(doc: Document, error: ValidationError, prefix: tuple = (), code: str = "schema") -> list[Diagnostic]:
    path = prefix + tuple(error.absolute_path)
    return [dataclasses.replace(d, code=code) if code != "schema" else d for d in _explain(doc, error, path, prefix)]


def _explain(doc: Document, error: ValidationError, path: tuple, prefix: tuple) -> list[Diagnostic]:
    schema = error.schema if isinstance(error.schema, dict) else {}
    if error.validator == "additionalProperties" and isinstance(error.instance, dict):
        known = set(schema.get("properties", {}))
        out = []
        for key in error.instance:
            if key in known:
                continue
            if key == "object_id":
                msg = "`object_id` is deprecated in Home Assistant; use `default_entity_id`"
            elif not known:
                msg = f"unknown key '{key}': nothing is allowed here" + (
                    "; this probe takes no arguments, remove `args`" if prefix and prefix[-1] == "args" else ""
                )
            else:
                msg = f"unknown key '{key}'{did_you_mean(key, known)}; allowed here: {', '.join(sorted(known))}"
            out.append(doc.diag(path + (key,), msg, code="schema", key=True))
        return out
    if "propertyNames" in error.schema_path and isinstance(error.instance, str):
        bad = error.instance
        return [
            doc.diag(
                path + (bad,), f"bad id '{bad}': " + (schema.get("x-error") or error.message), code="schema", key=True
            )
        ]
    if "x-error" in schema and error.validator not in ("type",):
        return [doc.diag(path, schema["x-error"], code="schema")]
    if error.validator is None:
        # a `false` subschema: the key exists but does not apply in this context
        parent: Any = doc.data
        for part in path:
            try:
                parent = parent[part]
            except (KeyError, IndexError, TypeError):
                parent = None
                break
        if isinstance(parent, dict):
            key = next((k for k in parent if k in _false_keys() and parent[k] == error.instance), None)
            if key is not None:
                kind = parent.get("platform", "entity")
                return [doc.diag(path + (key,), f"`{key}` does not apply to a {kind}", code="schema", key=True)]
        return [doc.diag(path, "this value is not allowed here", code="schema")]
    if error.validator == "required":
        missing = [
            name for name in error.validator_value if not isinstance(error.instance, dict) or name not in error.instance
        ]
        return [doc.diag(path, f"missing required key '{name}'", code="schema") for name in missing]
    if error.validator == "type":
        want = error.validator_value if isinstance(error.validator_value, list) else [error.validator_value]
        got = _type_of(error.instance)
        words = " or ".join(_TYPE_WORDS.get(w, w) for w in want)
        shown = f" ({error.instance!r})" if got in ("string", "integer", "number", "boolean") else ""
        hint = schema.get("x-error", "")
        if hint and not hint.startswith("expected "):
            return [doc.diag(path, f"{hint} (got {_TYPE_WORDS.get(got, got)}{shown})", code="schema")]
        wanted = hint.removeprefix("expected ") or words
        return [doc.diag(path, f"expected {wanted}, got {_TYPE_WORDS.get(got, got)}{shown}", code="schema")]
    if error.validator == "enum":
        choices = [str(c) for c in error.validator_value]
        return [
            doc.diag(
                path,
                f"'{error.instance}' is not one of: {', '.join(choices)}{did_you_mean(str(error.instance), choices)}",
                code="schema",
            )
        ]
    if error.validator == "const":
        return [doc.diag(path, f"must be {error.validator_value!r}", code="schema")]
    if error.validator in ("minimum", "maximum", "exclusiveMinimum", "exclusiveMaximum"):
        words = {
            "minimum": "at least",
            "maximum": "at most",
            "exclusiveMinimum": "more than",
            "exclusiveMaximum": "less than",
        }[error.validator]
        return [
            doc.diag(path, f"{error.instance} is out of range: must be {words} {error.validator_value}", code="schema")
        ]
    if error.validator == "uniqueItems":
        return [doc.diag(path, "the list holds the same item twice", code="schema")]
    if error.validator in ("minItems", "minLength"):
        return [doc.diag(path, "must not be empty", code="schema")]
    if error.validator == "maxLength":
        return [doc.diag(path, f"too long: at most {error.validator_value} characters", code="schema")]
    if error.validator in ("anyOf", "oneOf") and error.context:
        best = min(error.context, key=lambda e: (len(e.absolute_path) * -1, e.validator == "type"))
        return _explain(doc, best, prefix + tuple(best.absolute_path), prefix)
    return [doc.diag(path, error.message, code="schema")]


def _non_finite(doc: Document, broken: set[tuple]) -> list[Diagnostic]:
    """.nan and .inf are YAML floats that JSON Schema's range checks cannot see."""
    out = []

    def walk(node: Any, path: tuple) -> None:
        if isinstance(node, float) and not math.isfinite(node):
            broken.add(path)
            out.append(doc.diag(path, f"{node} is not a usable number here", code="schema"))
        elif isinstance(node, dict):
            for key, value in node.items():
                walk(value, path + (key,))
        elif isinstance(node, list):
            for i, value in enumerate(node):
                walk(value, path + (i,))

    walk(doc.data, ())
    return out


def _broken_paths(error: ValidationError) -> list[tuple]:
    """The document paths a schema error makes unreliable for the later stages: the value at
    the error, except for a map missing or holding extra keys, where only those keys are."""
    path = tuple(error.absolute_path)
    if error.validator == "required" and isinstance(error.instance, dict):
        return [path + (name,) for name in error.validator_value if name not in error.instance]
    if error.validator == "additionalProperties" and isinstance(error.instance, dict):
        known = set((error.schema.get("properties") or {}) if isinstance(error.schema, dict) else {})
        return [path + (key,) for key in error.instance if key not in known]
    return [path]


def schema_findings(doc: Document, kind: str = "profile") -> tuple[list[Diagnostic], set[tuple]]:
    """The schema's diagnostics, and the paths they make unreliable (see _broken_paths)."""
    broken: set[tuple] = set()
    out: list[Diagnostic] = _non_finite(doc, broken)
    seen: set[tuple] = {(d.line, d.col, d.path, d.message) for d in out}
    for error in _validator(kind).iter_errors(doc.data):
        broken.update(_broken_paths(error))
        for diag in _schema_diags(doc, error):
            key = (diag.line, diag.col, diag.path, diag.message)
            if key not in seen:
                seen.add(key)
                out.append(diag)
    return out, broken


def schema_stage(doc: Document, kind: str = "profile") -> list[Diagnostic]:
    return schema_findings(doc, kind)[0]


def _args_errors(doc: Document, path: tuple, params: dict, args: Any) -> list[Diagnostic]:
    out = []
    for error in Draft202012Validator(params).iter_errors(args):
        out += _schema_diags(doc, error, path, code="registry")
    return out


def _prefixes(paths: set[tuple]) -> set[tuple]:
    """Every path in `paths` and all its ancestors: `path in _prefixes(paths)` says whether a path is at or
    under one of them in one look-up (scanning them all per entity was quadratic: 5,000 sensors, 40 s)."""
    return {p[:k] for p in paths for k in range(len(p) + 1)}


def _check_named(
    doc: Document, section: str, field: str, registry: Registry, broken: set[tuple], flagged: set[tuple]
) -> list[Diagnostic]:
    """Names and `args` of one section; `broken` holds what the schema refused (never checked
    again here), `flagged` collects each entity this finds wrong, for semantics to skip."""
    out: list[Diagnostic] = []
    items = doc.data.get(section) if isinstance(doc.data, dict) else None
    if not isinstance(items, dict):
        return out  # the schema said so
    broken = _prefixes(broken)
    for item_id, item in items.items():
        if not isinstance(item, dict):
            continue
        name = item.get(field)
        if not isinstance(name, str) or (section, item_id, field) in broken:
            continue
        before = len(out)
        entry = registry.get(name)
        if entry is None:
            hint = registry.suggest(name)
            known = registry.names()
            if hint:
                tail = f" (did you mean '{hint}'?)"
            elif known:
                tail = f"; see `pilot {registry.kind}s` for the {len(known)} available"
            else:
                tail = f"; this Pilot has no {registry.kind}s yet"
            if registry.problems:  # the plugin that would have provided it may be the broken one
                tail += " (" + "; ".join(registry.problems[:3]) + ")"
            out.append(doc.diag((section, item_id, field), f"unknown {registry.kind} '{name}'{tail}", code="registry"))
        elif (section, item_id, "args") not in broken:
            try:
                out += _args_errors(doc, (section, item_id, "args"), dict(entry.params), item.get("args", {}))
            except Exception as exc:  # only a plugin's schema can be malformed: the shipped ones are tested
                why = f"{type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}"
                text = f"{registry.kind} '{name}' from {entry.origin} has an unusable argument schema ({why})"
                out.append(doc.diag((section, item_id, field), text, code="registry"))
        if len(out) > before:
            flagged.add((section, item_id))
    return out


def registry_findings(doc: Document, broken: set[tuple] = frozenset()) -> tuple[list[Diagnostic], set[tuple]]:
    """Probe and action names and their `args`, wherever the schema left them checkable;
    and the entities found wrong."""
    flagged: set[tuple] = set()
    out = _check_named(doc, "sensors", "probe", PROBES, set(broken), flagged)
    out += _check_named(doc, "commands", "action", ACTIONS, set(broken), flagged)
    out += _check_named(doc, "children", "source", SOURCES, set(broken), flagged)
    return out, flagged


def registry_stage(doc: Document) -> list[Diagnostic]:
    return registry_findings(doc)[0]


def validate_document(doc: Document) -> list[Diagnostic]:
    """Every stage, each skipping only what an earlier one found broken; a finding is reported once."""
    diags, broken = schema_findings(doc)
    found, flagged = registry_findings(doc, broken)
    diags += found
    diags += semantics.check(doc, skip=broken | flagged)
    return list(dict.fromkeys(diags))


def is_pack_manifest(path: Path) -> bool:
    return path.name in ("pack.yaml", "pack.yml")


def validate_file(
    path: str | os.PathLike[str], cache: loader.BaseCache | None = None
) -> tuple[Document | None, list[Diagnostic]]:
    path = Path(path)
    if is_pack_manifest(path):
        doc, diags = loader.load_file(path)
        if doc is None:
            return None, diags
        diags += schema_stage(doc, kind="pack")
        if doc.data and isinstance(doc.data, dict) and doc.data.get("name") not in (None, path.parent.name):
            diags.append(
                doc.diag(("name",), f"the pack's name must equal its folder name '{path.parent.name}'", code="pack")
            )
        default = doc.data.get("default") if isinstance(doc.data, dict) else None
        if isinstance(default, str) and not (path.parent / f"{default}.yaml").is_file():
            diags.append(doc.diag(("default",), f"no profile '{default}.yaml' in this pack", code="pack"))
        return doc, diags
    doc, diags = loader.compose(path, cache=cache)
    if doc is None or any(d.severity == ERROR for d in diags):
        return doc, diags
    return doc, diags + validate_document(doc)


def profile_files(target: Path) -> list[Path]:
    """The profiles a path names: the file itself, or every *.yaml / *.yml under a folder
    (none for a folder without any, which `pilot validate` refuses as a usage error)."""
    if target.is_dir():
        # dangling or looping links are kept: reading them reports why they cannot be read
        return sorted(p for p in target.rglob("*") if p.suffix in (".yaml", ".yml") and (p.is_file() or p.is_symlink()))
    return [target]


def sort_key(d: Diagnostic) -> tuple:
    return (d.file, d.line, d.col, d.message)
