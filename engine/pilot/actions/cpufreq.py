"""CPU frequency actions: cap the highest or lowest frequency, switch the cpufreq governor.

Writes the kernel's cpufreq files under /sys/devices/system/cpu, one write per cpufreq
policy: `cpu/cpufreq/policyN/` when the kernel has those directories, else each
`cpu/cpuN/cpufreq/` (CPUs sharing a policy take the same value, so writing each is harmless).
Needs root, or a udev/tmpfiles rule that grants write access to these files.

The value is checked against the hardware's own range (`cpuinfo_min_freq`..`cpuinfo_max_freq`;
where the kernel or a recording lacks those, `scaling_available_frequencies`, and last the
current `scaling_min_freq`..`scaling_max_freq`). On a CPU whose cores differ (big.LITTLE),
the accepted range is from the lowest core minimum to the highest core maximum, and each
core is written the value clamped to its own range, which is what the kernel would do anyway.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from pilot.actions._base import ActionContext, ActionError, Call, Unsupported
from pilot.actions._common import as_number, numbered, read_int, read_text
from pilot.params import params, prop
from pilot.registry import ACTIONS
from pilot.units import parse_frequency

_KHZ_PER = {"GHz": 1_000_000, "MHz": 1_000}

_UNIT = prop("string", "Unit of the value: GHz (default) or MHz.", enum=["GHz", "MHz"], default="GHz")


def _policies(ctx: ActionContext) -> list[Path]:
    """The cpufreq directories to write, one per policy (or per CPU on kernels without policy dirs)."""
    cpu = ctx.sys("devices", "system", "cpu")
    try:
        policy_dirs = numbered((p for p in (cpu / "cpufreq").iterdir() if p.is_dir()), "policy")
    except OSError:
        policy_dirs = []
    if policy_dirs:
        return policy_dirs
    try:
        cpus = numbered(cpu.iterdir(), "cpu")
    except OSError:
        return []
    return [c / "cpufreq" for c in cpus if (c / "cpufreq").is_dir()]


def _label(path: Path) -> str:
    return path.name if path.name.startswith("policy") else path.parent.name


def _require_policies(ctx: ActionContext) -> list[Path]:
    if ctx.platform != "linux":
        raise Unsupported(f"cpufreq is Linux-only; not supported on {ctx.platform or 'this system'}")
    policies = _policies(ctx)
    if not policies:
        raise Unsupported(
            f"no cpufreq in {ctx.sys('devices', 'system', 'cpu')} (the kernel has no CPU frequency driver here)"
        )
    return policies


def _hw_range(policy: Path) -> tuple[int, int] | None:
    """(min, max) kHz the hardware allows for this policy, or None when nothing says."""
    text = read_text(policy / "scaling_available_frequencies") or ""
    available = [int(t) for t in text.split() if t.isdigit()]
    lo = read_int(policy / "cpuinfo_min_freq")
    hi = read_int(policy / "cpuinfo_max_freq")
    if lo is None:
        lo = min(available) if available else read_int(policy / "scaling_min_freq")
    if hi is None:
        hi = max(available) if available else read_int(policy / "scaling_max_freq")
    if lo is None or hi is None or lo <= 0 or hi < lo:
        return None
    return lo, hi


def _ranges(ctx: ActionContext, attribute: str) -> list[tuple[Path, int, int]]:
    out = []
    for policy in _require_policies(ctx):
        if not (policy / attribute).exists():
            raise Unsupported(f"{_label(policy)} has no {attribute} to write")
        found = _hw_range(policy)
        if found is None:
            raise Unsupported(f"the frequency range of {_label(policy)} cannot be read")
        out.append((policy, *found))
    return out


def _fmt(khz: int, unit: str) -> str:
    return f"{khz / _KHZ_PER[unit]:g}"


def _khz(value: Any, unit: str, what: str) -> tuple[int, str]:
    """kHz of the value, and the value as the user wrote it (for messages)."""
    if unit not in _KHZ_PER:
        raise ActionError(f"unit must be GHz or MHz, not {str(unit)[:20]!r}")
    if isinstance(value, str) and value.strip().endswith("Hz"):
        try:
            hz = parse_frequency(value)
        except ValueError as exc:
            raise ActionError(str(exc)) from None
        return round(hz / 1000), value.strip()
    number = as_number(value, what)
    if number <= 0:
        raise ActionError(f"{what} needs a frequency above zero, not {number:g} {unit}")
    return round(number * _KHZ_PER[unit]), f"{number:g} {unit}"


def _plan_limit(ctx: ActionContext, value: Any, unit: str, attribute: str, what: str) -> list[Call]:
    khz, shown = _khz(value, unit, what)
    ranges = _ranges(ctx, attribute)
    lo = min(r[1] for r in ranges)
    hi = max(r[2] for r in ranges)
    if not lo <= khz <= hi:
        raise ActionError(f"{shown} is outside this CPU's range {_fmt(lo, unit)}–{_fmt(hi, unit)} {unit}")
    return [
        Call(kind="write", path=str(policy / attribute), data=str(min(max(khz, p_lo), p_hi)))
        for policy, p_lo, p_hi in ranges
    ]


def _limit_available(attribute: str):
    def available(ctx: ActionContext, **_: Any) -> str | None:
        try:
            _ranges(ctx, attribute)
        except ActionError as exc:
            return str(exc)
        return None

    return available


def _limit_state(attribute: str, pick):
    def state(ctx: ActionContext, unit: str = "GHz", **_: Any) -> float | None:
        if ctx.platform != "linux" or unit not in _KHZ_PER:
            return None
        values = [v for v in (read_int(p / attribute) for p in _policies(ctx)) if v is not None]
        return round(pick(values) / _KHZ_PER[unit], 6) if values else None

    return state


_LIMIT_PARAMS = params({"unit": _UNIT}, examples=[{"unit": "MHz"}])


@ACTIONS.register(
    "cpufreq.set_max",
    params=_LIMIT_PARAMS,
    privilege="root: write /sys/devices/system/cpu/cpu*/cpufreq/scaling_max_freq",
    platforms=("number",),
    available=_limit_available("scaling_max_freq"),
    state=_limit_state("scaling_max_freq", max),
)
def set_max(ctx: ActionContext, value: Any, *, unit: str = "GHz") -> list[Call]:
    """Cap the highest CPU frequency, in GHz (or MHz), on every CPU.

    The published state is the highest scaling_max_freq of any CPU.
    """
    return _plan_limit(ctx, value, unit, "scaling_max_freq", "cpufreq.set_max")


@ACTIONS.register(
    "cpufreq.set_min",
    params=_LIMIT_PARAMS,
    privilege="root: write /sys/devices/system/cpu/cpu*/cpufreq/scaling_min_freq",
    platforms=("number",),
    available=_limit_available("scaling_min_freq"),
    state=_limit_state("scaling_min_freq", min),
)
def set_min(ctx: ActionContext, value: Any, *, unit: str = "GHz") -> list[Call]:
    """Raise or lower the lowest CPU frequency, in GHz (or MHz), on every CPU.

    The published state is the lowest scaling_min_freq of any CPU.
    """
    return _plan_limit(ctx, value, unit, "scaling_min_freq", "cpufreq.set_min")


# ------------------------------------------------------------ cpufreq.set_governor


def _governors(ctx: ActionContext) -> tuple[list[Path], list[str]]:
    """The policies and the governors every one of them offers (in the first one's order)."""
    policies = _require_policies(ctx)
    common: list[str] | None = None
    for policy in policies:
        text = read_text(policy / "scaling_available_governors")
        if text is None:
            raise Unsupported(f"{_label(policy)} lists no scaling_available_governors")
        names = text.split()
        common = names if common is None else [g for g in common if g in names]
    return policies, common or []


def _governor_available(ctx: ActionContext, **_: Any) -> str | None:
    try:
        _, names = _governors(ctx)
    except ActionError as exc:
        return str(exc)
    return None if names else "the CPUs share no cpufreq governor"


def _governor_state(ctx: ActionContext, **_: Any) -> str | None:
    if ctx.platform != "linux":
        return None
    for policy in _policies(ctx):
        text = read_text(policy / "scaling_governor")
        if text and text.strip():
            return text.strip()
    return None


@ACTIONS.register(
    "cpufreq.set_governor",
    params=params({}),
    privilege="root: write /sys/devices/system/cpu/cpu*/cpufreq/scaling_governor",
    platforms=("select",),
    available=_governor_available,
    state=_governor_state,
)
def set_governor(ctx: ActionContext, value: Any) -> list[Call]:
    """Switch the cpufreq governor of every CPU (for example powersave or performance).

    The value must be one of the governors the kernel lists in scaling_available_governors
    (on intel_pstate and amd-pstate in active mode only performance and powersave).
    The published state is the governor of the first CPU.
    """
    policies, names = _governors(ctx)
    name = value.strip() if isinstance(value, str) else value
    if name not in names:
        raise ActionError(f"{str(value)[:40]!r} is not a governor here; available: {', '.join(names) or 'none'}")
    return [Call(kind="write", path=str(policy / "scaling_governor"), data=name) for policy in policies]
