"""Paths and helpers shared by the probe tests.

Kept out of conftest.py so test modules can import it by a unique name
(`from conftest import ...` would pick whichever conftest pytest loaded last).
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
if str(REPO / "engine") not in sys.path:  # run without an install or PYTHONPATH=engine
    sys.path.insert(0, str(REPO / "engine"))

from pilot.probes import ProbeContext  # noqa: E402

# CI checks the shared folder out beside the clone; PILOT_SHARED points elsewhere.
SHARED = Path(os.environ.get("PILOT_SHARED", REPO.parent / "shared"))
SYSFS_FIXTURES = SHARED / "fixtures" / "sysfs"
NVML_FIXTURES = SHARED / "fixtures" / "nvml"


def require_shared() -> None:
    if not SYSFS_FIXTURES.is_dir():
        pytest.skip(f"recorded fixtures not found at {SHARED} (check out ../shared or set PILOT_SHARED)")


def bind(probe: str, ctx: ProbeContext, /, **args: object):
    """Look the probe up in the registry and bind it, as the compiler will."""
    from pilot.registry import PROBES

    entry = PROBES.get(probe)
    assert entry is not None, probe
    return entry.factory(ctx, **args)


def reason(probe: str, ctx: ProbeContext, /, **args: object) -> str | None:
    from pilot.registry import PROBES

    entry = PROBES.get(probe)
    assert entry is not None and entry.available is not None, probe
    return entry.available(ctx, **args)


def read(probe: str, ctx: ProbeContext, /, **args: object):
    return bind(probe, ctx, **args)()
