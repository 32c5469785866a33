"""Built-in probes: read-only telemetry readers, one family per module.

Each probe is registered with `PROBES.register(name, params=..., defaults=...)`
on a factory `factory(ctx, **args) -> reader`, where `reader()` returns a number,
string, bool or None ("no reading right now"). Binding once and reading many
times lets a probe keep the state it needs (the previous CPU times, an NVML
handle) without globals.
"""

from pilot.probes._context import ProbeContext, ProbeUnavailable

__all__ = ["ProbeContext", "ProbeUnavailable"]
