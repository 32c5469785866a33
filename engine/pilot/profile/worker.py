"""The compile child: `python -m pilot.profile.worker [PROFILE]` prints a CompileResult as JSON.

Started by pilot.compile_child, so the agent's own process never imports the
compiler. With no PROFILE it picks the shipped pack that matches this machine
(picking needs the loader, so it happens here too).
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

from pilot.diagnostics import ERROR, Diagnostic
from pilot.plan import CompileResult

NO_PACK = "no profile given and no shipped pack matches this machine (see `pilot detect`)"


def pick_profile() -> Path | None:
    """The default profile of the first shipped pack that matches this machine's facts."""
    from pilot import facts
    from pilot.profile import packs

    for pack in packs.matching(facts.host_facts()):
        if pack.default_profile:
            return pack.default_profile
    return None


def compile_here(profile: str | None) -> CompileResult:
    """In the child: pick a pack when no profile is given, then validate and compile."""
    from pilot.profile.pipeline import compile_file

    if profile is None:
        picked = pick_profile()
        if picked is None:
            return CompileResult(None, (Diagnostic("", 0, 0, ERROR, "", NO_PACK, "no_pack"),))
        profile = str(picked)
    return compile_file(profile)[1]


if __name__ == "__main__":
    print(json.dumps(compile_here(sys.argv[1] if len(sys.argv) > 1 else None).to_dict()))
