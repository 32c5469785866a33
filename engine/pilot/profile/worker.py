"""Validate and compile a profile in a short-lived process; print the Plan as JSON.

The agent runs this as a child (or reuses a cached result keyed by the profile
files' sizes and mtimes) so its own long-running process never imports
jsonschema or ruamel: they cost several MB of RSS that telemetry never uses.
"""

from __future__ import annotations

import json
import os
import sys
from dataclasses import asdict
from pathlib import Path
from typing import Any

from pilot import __version__


class CompileError(Exception):
    def __init__(self, diagnostics: list[dict[str, Any]]) -> None:
        self.diagnostics = diagnostics
        super().__init__(format_diagnostics(diagnostics))


def format_diagnostics(diagnostics: list[dict[str, Any]]) -> str:
    lines = []
    for d in diagnostics:
        where = f"{d['file']}:{d['line']}:{d['col']}" if d.get("line") else d["file"]
        lines.append(f"{where}: {d['severity']}: {d['path'] + ': ' if d.get('path') else ''}{d['message']}")
    return "\n".join(lines)


def compile_here(profile: str) -> dict[str, Any]:
    from pilot.profile.compiler import compile_document
    from pilot.profile.validate import validate_file

    doc, diags = validate_file(profile)
    errors = [d for d in diags if d.severity == "error"]
    if doc is None or errors:
        return {"ok": False, "diagnostics": [asdict(d) for d in (errors or diags)]}
    plan = compile_document(doc)
    warnings = [asdict(d) for d in diags]
    return {"ok": True, "plan": plan.to_dict(), "warnings": warnings}


def _fingerprint(sources: list[str]) -> list[list[Any]] | None:
    out = []
    for source in sources:
        try:
            st = os.stat(source)
        except OSError:
            return None
        out.append([os.path.realpath(source), st.st_size, st.st_mtime_ns])
    return out


def compile_profile(profile: str, cache_dir: Path | None = None) -> dict[str, Any]:
    """Compiled result for profile, from the cache when no source file changed."""
    profile = os.path.abspath(profile)
    cache = None
    if cache_dir is not None:
        cache = cache_dir / "plan-cache.json"
        try:
            cached = json.loads(cache.read_text(encoding="utf-8"))
            if (cached.get("version") == __version__ and cached.get("profile") == profile
                    and cached.get("fingerprint") == _fingerprint(cached["result"]["plan"]["sources"])):
                return cached["result"]
        except (OSError, ValueError, KeyError, TypeError):
            pass
    import subprocess  # only on a cache miss: a warm start never loads it

    proc = subprocess.run([sys.executable, "-m", "pilot.profile.worker", profile], capture_output=True, text=True,
                          env={**os.environ, "PYTHONPATH": os.pathsep.join(p for p in sys.path if p)})
    try:
        result = json.loads(proc.stdout)
    except ValueError:
        raise RuntimeError(f"compiling {profile} failed: {proc.stderr.strip() or proc.stdout.strip()}") from None
    if result.get("ok") and cache is not None:
        try:
            cache_dir.mkdir(parents=True, exist_ok=True)
            tmp = cache.with_suffix(".tmp")
            tmp.write_text(json.dumps({"version": __version__, "profile": profile,
                                       "fingerprint": _fingerprint(result["plan"]["sources"]),
                                       "result": result}), encoding="utf-8")
            os.replace(tmp, cache)
        except OSError:
            pass
    return result


if __name__ == "__main__":
    print(json.dumps(compile_here(sys.argv[1])))
