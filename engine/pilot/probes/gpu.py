"""NVIDIA GPU probes through NVML (the `pynvml` module of nvidia-ml-py, extra [gpu]).

pynvml is imported only when a GPU probe is bound or asked about, so machines
without it pay nothing. nvmlInit runs once per ProbeContext (ctx.shared); its
failure is remembered as the reason every GPU probe is unavailable.

NVML answers NVMLError_NotSupported for readings a card does not have (a
data-centre GPU has no fan): available() reports "not supported by this GPU"
and a reader returns None. Readers never raise NVML errors.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from pilot.params import params, prop
from pilot.probes._common import Reader
from pilot.probes._context import ProbeContext, ProbeUnavailable
from pilot.registry import PROBES

_INSTALL_HINT = "NVML not installed (pip install 'pilot-agent[gpu]')"
_NOT_SUPPORTED = 3  # NVML_ERROR_NOT_SUPPORTED, should the module lack the constant
_INIT_REASONS = {
    "NVMLError_LibraryNotFound": "NVIDIA driver not found (libnvidia-ml cannot be loaded)",
    "NVMLError_DriverNotLoaded": "NVIDIA driver not loaded",
    "NVMLError_NoPermission": "no permission to use NVML",
    "NVMLError_LibRmVersionMismatch": "NVIDIA driver/library version mismatch (reboot after a driver update?)",
}


@dataclass
class Nvml:
    """The NVML module after nvmlInit, or why there is none."""

    module: Any = None
    count: int = 0
    reason: str | None = None

    def is_not_supported(self, exc: BaseException) -> bool:
        code = getattr(self.module, "NVML_ERROR_NOT_SUPPORTED", _NOT_SUPPORTED)
        return getattr(exc, "value", None) == code or type(exc).__name__ == "NVMLError_NotSupported"

    def error_types(self) -> tuple[type[BaseException], ...]:
        nvml_error = getattr(self.module, "NVMLError", None)
        base: tuple[type[BaseException], ...] = (OSError, ValueError, ArithmeticError, LookupError, AttributeError)
        return base + ((nvml_error,) if isinstance(nvml_error, type) else ())


def _start(ctx: ProbeContext) -> Nvml:
    module = ctx.nvml
    if module is None:
        try:
            import pynvml as module  # noqa: PLC0415 - lazy on purpose: optional and costly
        except ImportError:
            return Nvml(reason=_INSTALL_HINT)
    state = Nvml(module=module)
    try:
        module.nvmlInit()
        state.count = int(module.nvmlDeviceGetCount())
    except Exception as exc:  # noqa: BLE001 - any failure here only means "no usable NVML"
        name = type(exc).__name__
        state.reason = _INIT_REASONS.get(name, f"NVML could not start ({name}: {exc})")
        return state
    if state.count == 0:
        state.reason = "no NVIDIA GPU"
    return state


def nvml(ctx: ProbeContext) -> Nvml:
    """The context's one initialised NVML (or the reason it has none)."""
    return ctx.shared("nvml", lambda: _start(ctx))


def gpu_count(ctx: ProbeContext) -> int:
    """Number of NVIDIA GPUs NVML sees; 0 without NVML, driver or GPU. Never raises."""
    try:
        return nvml(ctx).count
    except Exception:  # noqa: BLE001 - a host fact must not break `pilot detect`
        return 0


Getter = Callable[[Any, Any], Any]  # (module, handle) -> reading


def _handle(ctx: ProbeContext, index: int) -> tuple[Nvml, Any]:
    state = nvml(ctx)
    if state.reason:
        raise ProbeUnavailable(state.reason)
    if index >= state.count:
        raise ProbeUnavailable(f"no NVIDIA GPU {index} (found {state.count}, numbered from 0)")
    try:
        return state, state.module.nvmlDeviceGetHandleByIndex(index)
    except state.error_types() as exc:
        raise ProbeUnavailable(f"GPU {index} cannot be opened ({type(exc).__name__})") from None


def _reason(getter: Getter) -> Callable[..., str | None]:
    def available(ctx: ProbeContext, index: int = 0, **_: Any) -> str | None:
        try:
            state, handle = _handle(ctx, index)
        except ProbeUnavailable as exc:
            return str(exc)
        try:
            getter(state.module, handle)
        except state.error_types() as exc:
            if state.is_not_supported(exc):
                return "not supported by this GPU"
            return f"cannot be read ({type(exc).__name__})"
        return None

    return available


def _register(name: str, getter: Getter, defaults: dict[str, Any], doc: str) -> None:
    def factory(ctx: ProbeContext, index: int = 0) -> Reader:
        state, handle = _handle(ctx, index)
        errors = state.error_types()

        def read() -> Any:
            try:
                return getter(state.module, handle)
            except errors:
                return None  # NotSupported, GPU lost, driver gone: no reading right now

        return read

    factory.__doc__ = doc
    factory.__name__ = name.replace(".", "_")
    PROBES.register(name, params=params(_INDEX), defaults=defaults, available=_reason(getter))(factory)


_INDEX = {"index": prop("integer", "GPU number as NVML (and nvidia-smi) counts them, from 0.", minimum=0, default=0)}
_GPU = {"platform": "sensor", "icon": "mdi:expansion-card"}
_PCT = {**_GPU, "unit": "%", "state_class": "measurement", "precision": 0}
_MHZ = {**_GPU, "unit": "MHz", "device_class": "frequency", "state_class": "measurement", "precision": 0}
_BYTES = {**_GPU, "unit": "B", "device_class": "data_size", "state_class": "measurement", "precision": 0}
_W = {**_GPU, "unit": "W", "device_class": "power", "state_class": "measurement", "precision": 1}


def _clock(kind: str) -> Getter:
    return lambda n, h: n.nvmlDeviceGetClockInfo(h, getattr(n, kind))


def _memory_percent(n: Any, h: Any) -> float | None:
    info = n.nvmlDeviceGetMemoryInfo(h)
    return round(info.used / info.total * 100.0, 2) if info.total else None


def _power_limit(n: Any, h: Any) -> float:
    getter = getattr(n, "nvmlDeviceGetEnforcedPowerLimit", None) or n.nvmlDeviceGetPowerManagementLimit
    return getter(h) / 1000.0


def _pstate(n: Any, h: Any) -> str | None:
    value = n.nvmlDeviceGetPerformanceState(h)
    return f"P{value}" if 0 <= value <= 15 else None  # 32 = NVML_PSTATE_UNKNOWN


for _name, _getter, _defaults, _doc in (
    (
        "gpu.temperature",
        lambda n, h: n.nvmlDeviceGetTemperature(h, n.NVML_TEMPERATURE_GPU),
        {
            **_GPU,
            "unit": "°C",
            "device_class": "temperature",
            "state_class": "measurement",
            "precision": 0,
            "icon": "mdi:thermometer",
        },
        "GPU core temperature in °C.",
    ),
    (
        "gpu.utilization",
        lambda n, h: n.nvmlDeviceGetUtilizationRates(h).gpu,
        _PCT,
        "GPU busy time in percent over NVML's last sample period.",
    ),
    (
        "gpu.memory_utilization",
        lambda n, h: n.nvmlDeviceGetUtilizationRates(h).memory,
        _PCT,
        "Share of time GPU memory was being read or written, in percent (not how full it is).",
    ),
    ("gpu.memory_used", lambda n, h: n.nvmlDeviceGetMemoryInfo(h).used, _BYTES, "GPU memory in use, in bytes."),
    ("gpu.memory_total", lambda n, h: n.nvmlDeviceGetMemoryInfo(h).total, _BYTES, "GPU memory size, in bytes."),
    ("gpu.memory_used_percent", _memory_percent, {**_PCT, "precision": 1}, "GPU memory in use, in percent of total."),
    ("gpu.power", lambda n, h: n.nvmlDeviceGetPowerUsage(h) / 1000.0, _W, "GPU power draw in W."),
    ("gpu.power_limit", _power_limit, _W, "Power limit the GPU enforces, in W (nvmlDeviceGetEnforcedPowerLimit)."),
    ("gpu.clock_graphics", _clock("NVML_CLOCK_GRAPHICS"), _MHZ, "Current graphics clock in MHz."),
    ("gpu.clock_memory", _clock("NVML_CLOCK_MEM"), _MHZ, "Current memory clock in MHz."),
    ("gpu.clock_sm", _clock("NVML_CLOCK_SM"), _MHZ, "Current SM (streaming multiprocessor) clock in MHz."),
    (
        "gpu.fan_speed",
        lambda n, h: n.nvmlDeviceGetFanSpeed(h),
        {**_PCT, "icon": "mdi:fan"},
        "GPU fan speed in percent of its maximum (not supported on fanless data-centre cards).",
    ),
    (
        "gpu.energy",
        lambda n, h: round(n.nvmlDeviceGetTotalEnergyConsumption(h) / 3_600_000.0, 4),
        {
            **_GPU,
            "unit": "Wh",
            "device_class": "energy",
            "state_class": "total_increasing",
            "precision": 2,
            "icon": "mdi:lightning-bolt",
        },
        "Energy the GPU used since the driver was loaded, in Wh (counter; resets on driver reload).",
    ),
    (
        "gpu.pstate",
        _pstate,
        {**_GPU, "icon": "mdi:speedometer"},
        "GPU performance state, P0 (maximum) to P15 (minimum).",
    ),
):
    _register(_name, _getter, _defaults, _doc)
