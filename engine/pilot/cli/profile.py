"""`pilot validate`, `schema`, `probes`, `detect` and `plan`: looking at profiles and at this host."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from pilot.cli.common import EXIT_INVALID, EXIT_OK, EXIT_USAGE
from pilot.cli.common import out as _out
from pilot.escaping import escape

# ------------------------------------------------------------------ validate


def cmd_validate(args: argparse.Namespace) -> int:
    from pilot.diagnostics import ERROR, REPORTERS, WARNING
    from pilot.profile.validate import profile_files, sort_key, validate_file

    files: list[Path] = []
    for target in args.paths:
        path = Path(target)
        if not path.exists():
            print(f"pilot: error: {target}: no such file or directory", file=sys.stderr)
            return EXIT_USAGE
        found = profile_files(path)
        if not found:  # only a folder yields nothing: checking nothing must not look like a pass
            kind = "is a folder, not a profile file, and" if path.suffix in (".yaml", ".yml") else "is a folder that"
            print(f"pilot: error: {target}: {kind} holds no *.yaml or *.yml file", file=sys.stderr)
            return EXIT_USAGE
        files += found
    diags = []
    unreadable = False
    bases: dict = {}  # composed base profiles, shared by every file of this run
    for file in files:
        _, found = validate_file(file, cache=bases)
        unreadable |= any(d.code == "unreadable" for d in found)
        diags += found
    if args.strict:
        from dataclasses import replace

        diags = [replace(d, severity=ERROR) if d.severity == WARNING else d for d in diags]
    diags.sort(key=sort_key)
    if args.quiet:
        diags = [d for d in diags if d.severity == ERROR]
    _out(REPORTERS[args.format](diags, len(files)))
    if unreadable:
        return EXIT_USAGE
    return EXIT_INVALID if any(d.severity == ERROR for d in diags) else EXIT_OK


# ------------------------------------------------------------------ schema


def cmd_schema(args: argparse.Namespace) -> int:
    from pilot.profile.schema import dumps, pack_schema, published_schema

    if args.write:
        out = Path(args.write)
        out.mkdir(parents=True, exist_ok=True)
        (out / "profile.v1.schema.json").write_text(dumps(published_schema()), encoding="utf-8")
        (out / "pack.v1.schema.json").write_text(dumps(pack_schema()), encoding="utf-8")
        _out(f"wrote {out / 'profile.v1.schema.json'} and {out / 'pack.v1.schema.json'}")
        return EXIT_OK
    sys.stdout.write(dumps(pack_schema() if args.pack else published_schema()))
    return EXIT_OK


# ------------------------------------------------------------------ probes


def _probe_reading(entry: Any, ctx: Any) -> tuple[str, Any]:
    required = entry.params.get("required") or []
    if required:
        return "needs args", "needs " + ", ".join(f"`{r}`" for r in required)
    try:
        reason = entry.available(ctx) if entry.available else None
        if reason:
            return "unavailable", reason
        reader = entry.factory(ctx)
        value = reader()
        if value is None or entry.name.endswith("_rate"):
            import time  # rates and CPU usage need two samples

            time.sleep(0.25)
            value = reader()
        return "ok", value
    except Exception as exc:  # a probe failing here is information, not a crash
        return "unavailable", str(exc) or type(exc).__name__


def cmd_probes(args: argparse.Namespace) -> int:
    from pilot.probes import ProbeContext
    from pilot.registry import BUILTIN, PROBES

    ctx = ProbeContext()
    for problem in PROBES.load_plugins():  # a listing shows installed plugins too; a broken one is a line
        print(f"pilot: warning: {problem}", file=sys.stderr)
    rows = []
    for entry in PROBES:
        status, value = ("skipped", None) if args.no_values else _probe_reading(entry, ctx)
        rows.append(
            {
                "name": entry.name,
                "summary": entry.summary,
                "origin": entry.origin,
                "status": status,
                "value": value,
                "unit": entry.defaults.get("unit"),
                "params": entry.params.get("properties", {}),
            }
        )
    if args.json:
        _out(json.dumps(rows, indent=2, default=str))
        return EXIT_OK
    width = max(len(r["name"]) for r in rows) if rows else 10
    for r in rows:
        if r["status"] == "ok":
            shown = f"{r['value']}{' ' + r['unit'] if r['unit'] and r['value'] is not None else ''}"
        elif r["status"] == "skipped":
            shown = ""
        else:
            shown = f"({r['value']})"
        origin = "" if r["origin"] == BUILTIN else f"  [plugin: {r['origin']}]"
        _out(f"{r['name']:<{width}}  {r['summary']}{origin}" + (f"\n{'':<{width}}  -> {shown}" if shown else ""))
    return EXIT_OK


# ------------------------------------------------------------------ detect


def cmd_detect(args: argparse.Namespace) -> int:
    from pilot import facts as host
    from pilot.profile import packs

    facts = host.host_facts()
    facts["device_id"] = host.device_id()
    all_packs, problems = packs.discover_all()
    for problem in problems:
        print(f"pilot: warning: {problem}", file=sys.stderr)
    verdicts = [(p, *packs.matches(p, facts)) for p in all_packs]
    chosen = packs.matching(facts)
    here = _optional_here(chosen[0].default_profile) if chosen and chosen[0].default_profile else []
    if args.json:
        _out(
            json.dumps(
                {
                    "facts": facts,
                    "packs": [
                        {
                            "name": p.name,
                            "version": p.version,
                            "origin": p.origin,
                            "matches": ok,
                            "why_not": why,
                            "default_profile": str(p.default_profile) if p.default_profile else None,
                        }
                        for p, ok, why in verdicts
                    ],
                    "best": chosen[0].name if chosen else None,
                    "optional": [{"kind": k, "id": i, "works": why is None, "why_not": why} for k, i, why in here],
                },
                indent=2,
                default=str,
            )
        )
        return EXIT_OK
    _out("Host facts")
    width = max(len(k) for k in facts)
    for key, value in facts.items():
        shown = ", ".join(value) if isinstance(value, list) else ("-" if value is None else value)
        _out(f"  {key:<{width}}  {shown}")
    _out("\nProfile packs")
    for pack, ok, why in sorted(verdicts, key=lambda v: (not v[1], v[0].name)):
        mark = "match" if ok else "  -  "
        tail = ("" if ok else f"  ({why})") + ("" if pack.origin == "pilot" else f"  [plugin: {pack.origin}]")
        _out(f"  [{mark}] {pack.name} {pack.version}: {pack.description}{tail}")
    if chosen and chosen[0].default_profile:
        _out(f"\nBest match: {chosen[0].name} -> {chosen[0].default_profile}")
    if here:
        _out("\nOptional sensors and commands of that profile, on this host")
        width = max(len(i) for _, i, _ in here)
        for kind, item, why in here:
            line = f"  [{' on' if why is None else 'off'}] {kind:<7} {item:<{width}}"
            _out((line + (f"  ({escape(why)})" if why else "")).rstrip())
    return EXIT_OK


def _optional_here(profile: Any) -> list[tuple[str, str, str | None]]:
    """What the agent turns on here of `profile`'s optional parts ([] when it does not compile)."""
    from pilot.cli.check import optional_here
    from pilot.profile.pipeline import compile_file

    _doc, result = compile_file(profile)
    return optional_here(result.plan) if result.plan is not None else []


# ------------------------------------------------------------------ plan


def cmd_plan(args: argparse.Namespace) -> int:
    from pilot.diagnostics import REPORTERS
    from pilot.profile.pipeline import compile_file
    from pilot.profile.report import render_plan

    _, result = compile_file(args.profile)
    plan = result.plan
    if plan is None:
        print(REPORTERS["text"](list(result.diagnostics), 1), file=sys.stderr)
        return EXIT_INVALID
    if args.json:
        _out(json.dumps(plan.to_dict(), indent=2, default=str))
    else:
        _out(render_plan(plan))
        idle = _idle_rules_here(plan)
        if idle:
            _out("\nOn this host:\n" + "\n".join(f"  {line}" for line in idle))
    return EXIT_OK


def _idle_rules_here(plan: Any) -> list[str]:
    """The rules that cannot work on this host, as `pilot run` will log them (`pilot check` says more)."""
    from pilot.agent import telemetry
    from pilot.agent.runtime import idle_rules
    from pilot.probes import ProbeContext

    ctx = ProbeContext()
    working = {s.id for s in plan.sensors if s.probe and telemetry.bind(s, ctx)[0] is not None}
    return idle_rules(plan, working)


# ------------------------------------------------------------------ parser


def register(sub: Any) -> None:
    p = sub.add_parser("validate", help="check profiles and packs; errors come as file:line:col")
    p.add_argument("paths", nargs="+", metavar="PATH", help="profile files or folders to walk")
    p.add_argument("--format", choices=["text", "json", "github"], default="text")
    p.add_argument("--strict", action="store_true", help="treat warnings as errors")
    p.add_argument("--quiet", action="store_true", help="print errors only")
    p.set_defaults(func=cmd_validate)

    p = sub.add_parser("schema", help="print the profile JSON Schema (with probe and action names)")
    p.add_argument("--pack", action="store_true", help="print the pack manifest schema instead")
    p.add_argument("--write", metavar="DIR", help="write both schema files into DIR")
    p.set_defaults(func=cmd_schema)

    p = sub.add_parser("probes", help="list probes with their current value on this host")
    p.add_argument("--json", action="store_true")
    p.add_argument("--no-values", action="store_true", help="do not read anything")
    p.set_defaults(func=cmd_probes)

    p = sub.add_parser("detect", help="print host facts and the profile packs that match")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_detect)

    p = sub.add_parser("plan", help="print what a profile will publish and accept")
    p.add_argument("profile", metavar="PROFILE")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_plan)
