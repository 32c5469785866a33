"""A stand-in for the `pynvml` module, answering from a recording of a real GPU.

It is the lowest layer (the module the probes call), so everything above it -
init once, handles, unit conversion, NotSupported handling - runs for real.
Recorded fields are {"ok": value} or {"error": "NVMLError_NotSupported"}.
"""

from __future__ import annotations

import json
import types
from pathlib import Path
from typing import Any

NVML_SUCCESS = 0
NVML_ERROR_UNINITIALIZED = 1
NVML_ERROR_INVALID_ARGUMENT = 2
NVML_ERROR_NOT_SUPPORTED = 3
NVML_ERROR_LIBRARY_NOT_FOUND = 12
NVML_ERROR_GPU_IS_LOST = 15
NVML_ERROR_UNKNOWN = 999


class NVMLError(Exception):
    """Like pynvml.NVMLError: carries the NVML return code in .value."""

    def __init__(self, value: int) -> None:
        super().__init__(value)
        self.value = value


def _error_class(name: str, code: int) -> type[NVMLError]:
    return type(name, (NVMLError,), {"__init__": lambda self, value=code: NVMLError.__init__(self, value)})


NVMLError_NotSupported = _error_class("NVMLError_NotSupported", NVML_ERROR_NOT_SUPPORTED)
NVMLError_LibraryNotFound = _error_class("NVMLError_LibraryNotFound", NVML_ERROR_LIBRARY_NOT_FOUND)
NVMLError_GpuIsLost = _error_class("NVMLError_GpuIsLost", NVML_ERROR_GPU_IS_LOST)
NVMLError_Uninitialized = _error_class("NVMLError_Uninitialized", NVML_ERROR_UNINITIALIZED)
_BY_NAME = {c.__name__: c for c in (NVMLError_NotSupported, NVMLError_LibraryNotFound, NVMLError_GpuIsLost)}


def load_recording(path: Path) -> dict[str, Any]:
    return json.loads(path.read_text())


def make_module(
    recording: dict[str, Any] | None = None,
    *,
    init_error: type[NVMLError] | None = None,
) -> types.ModuleType:
    """A module object with pynvml's names, backed by `recording` (h200.json's shape)."""
    recording = recording or {"count": 0, "devices": []}
    mod = types.ModuleType("pynvml")
    mod.calls = {"nvmlInit": 0}  # type: ignore[attr-defined]
    mod.overrides = {}  # field -> error class to raise instead, for "GPU went away" tests  # type: ignore[attr-defined]
    state = {"initialised": False}
    for name, value in globals().items():
        if name.startswith("NVML") and (isinstance(value, int) or isinstance(value, type)):
            setattr(mod, name, value)
    mod.NVML_TEMPERATURE_GPU = 0  # type: ignore[attr-defined]
    mod.NVML_CLOCK_GRAPHICS, mod.NVML_CLOCK_SM, mod.NVML_CLOCK_MEM = 0, 1, 2  # type: ignore[attr-defined]
    devices = recording.get("devices", [])

    def nvmlInit() -> None:
        mod.calls["nvmlInit"] += 1  # type: ignore[attr-defined]
        if init_error is not None:
            raise init_error()
        state["initialised"] = True

    def _ready() -> None:
        if not state["initialised"]:
            raise NVMLError_Uninitialized()

    def nvmlDeviceGetCount() -> int:
        _ready()
        return int(recording.get("count", len(devices)))

    def nvmlDeviceGetHandleByIndex(index: int) -> Any:
        _ready()
        if not 0 <= index < len(devices):
            raise NVMLError(NVML_ERROR_INVALID_ARGUMENT)
        return ("handle", index)

    def field(handle: Any, key: str) -> Any:
        _ready()
        if key in mod.overrides:  # type: ignore[attr-defined]
            raise mod.overrides[key]()  # type: ignore[attr-defined]
        entry = devices[handle[1]].get(key)
        if entry is None:
            raise NVMLError(NVML_ERROR_NOT_SUPPORTED)  # not recorded: behave like an old driver
        if "error" in entry:
            raise _BY_NAME.get(entry["error"], lambda: NVMLError(NVML_ERROR_UNKNOWN))()
        return entry["ok"]

    clocks = {0: "clock_graphics_mhz", 1: "clock_sm_mhz", 2: "clock_mem_mhz"}
    funcs = {
        "nvmlInit": nvmlInit,
        "nvmlShutdown": lambda: state.update(initialised=False),
        "nvmlDeviceGetCount": nvmlDeviceGetCount,
        "nvmlDeviceGetHandleByIndex": nvmlDeviceGetHandleByIndex,
        "nvmlDeviceGetName": lambda h: field(h, "name"),
        "nvmlDeviceGetTemperature": lambda h, sensor: field(h, "temperature_gpu"),
        "nvmlDeviceGetMemoryInfo": lambda h: types.SimpleNamespace(**field(h, "memory_info")),
        "nvmlDeviceGetUtilizationRates": lambda h: types.SimpleNamespace(**field(h, "utilization")),
        "nvmlDeviceGetPowerUsage": lambda h: field(h, "power_usage_mw"),
        "nvmlDeviceGetEnforcedPowerLimit": lambda h: field(h, "power_limit_mw"),
        "nvmlDeviceGetTotalEnergyConsumption": lambda h: field(h, "total_energy_mj"),
        "nvmlDeviceGetFanSpeed": lambda h: field(h, "fan_speed"),
        "nvmlDeviceGetPerformanceState": lambda h: field(h, "pstate"),
        "nvmlDeviceGetClockInfo": lambda h, clock: field(h, clocks[clock]),
    }
    for name, fn in funcs.items():
        setattr(mod, name, fn)
    mod.NVMLError = NVMLError  # type: ignore[attr-defined]
    return mod
