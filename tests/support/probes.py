"""Paths and helpers shared by the probe tests.

Kept out of conftest.py so test modules can import it by a unique name
(`from conftest import ...` would pick whichever conftest pytest loaded last).
"""

from __future__ import annotations

import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
if str(REPO / "engine") not in sys.path:  # run without an install or PYTHONPATH=engine
    sys.path.insert(0, str(REPO / "engine"))

from pilot.probes import ProbeContext  # noqa: E402

# Recorded real data, kept in the repository with its provenance (SOURCES.md, README.md there).
FIXTURES = REPO / "tests" / "fixtures"
SYSFS_FIXTURES = FIXTURES / "sysfs"
NVML_FIXTURES = FIXTURES / "nvml"


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


def signal_delivered(bus, signals: tuple, change, timeout: float = 5.0) -> None:
    """Make `change`, then wait until the agent's D-Bus connection `bus` holds the signal it causes (one of the
    `signals` watched together): the bus delivers it within microseconds, but a test reads at once (on a desktop
    the next reading is seconds away)."""
    import time

    watch = bus.watch(*signals)
    before = bus.look(watch)
    change()
    deadline = time.monotonic() + timeout
    while bus.look(watch) == before:
        assert time.monotonic() < deadline, "the change sent no signal"
        time.sleep(0.005)
