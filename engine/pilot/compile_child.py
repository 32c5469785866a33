"""Compile a profile in a short-lived child process, so the agent never loads the compiler.

`compile_profile()` runs in the agent's process and imports nothing heavy: it
reads a cached result when no source file changed, and otherwise starts
`python -m pilot.profile.worker PROFILE` (or with no PROFILE: the shipped pack
that matches this machine, picked in the child) and reads a CompileResult as
JSON from its standard output. jsonschema and ruamel cost several MB of RSS
that telemetry never uses.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path
from typing import Any

from pilot import __version__
from pilot.plan import CompileResult

COMPILE_TIMEOUT = 60.0  # seconds; a profile that takes longer is refused, the running agent stays as it is
WORKER = "pilot.profile.worker"


def _fingerprint(sources: list[str]) -> list[list[Any]] | None:
    out = []
    for source in sources:
        try:
            st = os.stat(source)
        except OSError:
            return None
        out.append([os.path.realpath(source), st.st_size, st.st_mtime_ns])
    return out


def _cached(cache: Path, profile: str) -> CompileResult | None:
    try:
        cached = json.loads(cache.read_text(encoding="utf-8"))
        if (
            cached.get("version") == __version__
            and cached.get("profile") == profile
            and cached.get("fingerprint") == _fingerprint(cached["result"]["plan"]["sources"])
        ):
            return CompileResult.from_dict(cached["result"])
    except (OSError, ValueError, KeyError, TypeError):
        pass
    return None


def _remember(cache: Path, profile: str, result: CompileResult) -> None:
    try:
        cache.parent.mkdir(parents=True, exist_ok=True)
        tmp = cache.with_suffix(".tmp")
        tmp.write_text(
            json.dumps(
                {
                    "version": __version__,
                    "profile": profile,
                    "fingerprint": _fingerprint(list(result.plan.sources)),
                    "result": result.to_dict(),
                }
            ),
            encoding="utf-8",
        )
        os.replace(tmp, cache)
    except OSError:
        pass


def compile_profile(
    profile: str | None, cache_dir: Path | None = None, timeout: float = COMPILE_TIMEOUT
) -> CompileResult:
    """The compiled result for profile (None: the matching shipped pack), from the cache when no
    source file changed. Raises RuntimeError when the child fails or runs past `timeout`."""
    profile = os.path.abspath(profile) if profile is not None else None
    # a picked pack depends on this machine's facts, which only the child reads: never cached
    cache = cache_dir / "plan-cache.json" if cache_dir is not None and profile is not None else None
    if cache is not None:
        cached = _cached(cache, profile)
        if cached is not None:
            return cached
    import subprocess  # only on a cache miss: a warm start never loads it
    import threading

    argv = [sys.executable, "-m", WORKER] + ([profile] if profile else [])
    proc = subprocess.Popen(
        argv,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYTHONPATH": os.pathsep.join(p for p in sys.path if p)},
    )
    # the deadline is a timer that kills the child, not communicate(timeout=...): that one polls
    # with time.sleep(), which some clock-shifting environments break (libfaketime 0.9.10)
    killed = threading.Event()

    def kill() -> None:
        killed.set()
        proc.kill()

    timer = threading.Timer(timeout, kill)
    timer.daemon = True
    timer.start()
    try:
        stdout, stderr = proc.communicate()
    finally:
        timer.cancel()
    if killed.is_set():
        raise RuntimeError(
            f"compiling {profile or 'the matching pack'} took longer than {timeout:g} s; nothing was changed"
        )
    try:
        result = CompileResult.from_dict(json.loads(stdout))
    except (ValueError, TypeError, KeyError):
        raise RuntimeError(
            f"compiling {profile or 'the matching pack'} failed: {stderr.strip() or stdout.strip()}"
        ) from None
    if result.ok and cache is not None:
        _remember(cache, profile, result)
    return result
