"""GPU probes over a fake `pynvml` module that answers from a real H200 recording."""

from __future__ import annotations

import sys

import fake_nvml
import pytest

from pilot.probes import ProbeContext, ProbeUnavailable
from pilot.probes.gpu import gpu_count
from pilot.registry import PROBES
from tests.support.probes import NVML_FIXTURES, bind, read, reason

GPU_PROBES = [n for n in PROBES.names() if n.startswith("gpu.")]


@pytest.fixture
def h200():
    module = fake_nvml.make_module(fake_nvml.load_recording(NVML_FIXTURES / "h200.json"))
    return module, ProbeContext(nvml=module)


def test_recorded_h200_values(h200) -> None:
    _, ctx = h200
    assert read("gpu.temperature", ctx) == 35
    assert read("gpu.power", ctx) == 78.721  # 78721 mW
    assert read("gpu.power_limit", ctx, index=0) == 700.0  # 700000 mW, enforced limit
    assert read("gpu.memory_used", ctx) == 644939776
    assert read("gpu.memory_total", ctx) == 150754820096
    assert read("gpu.memory_used_percent", ctx) == round(644939776 / 150754820096 * 100, 2)
    assert read("gpu.utilization", ctx) == 0
    assert read("gpu.memory_utilization", ctx) == 0
    assert read("gpu.clock_graphics", ctx) == 345
    assert read("gpu.clock_sm", ctx) == 345
    assert read("gpu.clock_memory", ctx) == 3201
    assert read("gpu.pstate", ctx) == "P0"
    assert read("gpu.energy", ctx) == round(2708644 / 3_600_000, 4)  # 2708644 mJ in Wh
    assert gpu_count(ctx) == 1


def test_fanless_card_fan_is_not_supported(h200) -> None:
    _, ctx = h200
    assert reason("gpu.fan_speed", ctx) == "not supported by this GPU"
    assert read("gpu.fan_speed", ctx) is None  # bound anyway (optional sensor): None, never an exception
    for name in GPU_PROBES:
        if name != "gpu.fan_speed":
            assert reason(name, ctx) is None, name


def test_nvml_is_initialised_once_per_context(h200) -> None:
    module, ctx = h200
    for name in GPU_PROBES:
        bind(name, ctx)()
        reason(name, ctx)
    gpu_count(ctx)
    assert module.calls["nvmlInit"] == 1
    ProbeContext(nvml=module).shared("nvml", lambda: None)  # a new context has its own cache
    gpu_count(ProbeContext(nvml=module))
    assert module.calls["nvmlInit"] == 2


def test_missing_gpu_index(h200) -> None:
    _, ctx = h200
    assert reason("gpu.temperature", ctx, index=1) == "no NVIDIA GPU 1 (found 1, numbered from 0)"
    with pytest.raises(ProbeUnavailable):
        bind("gpu.temperature", ctx, index=1)


def test_readings_that_fail_later_return_none(h200) -> None:
    module, ctx = h200
    readers = {n: bind(n, ctx) for n in ("gpu.temperature", "gpu.memory_used", "gpu.power")}
    module.overrides["temperature_gpu"] = fake_nvml.NVMLError_GpuIsLost
    module.overrides["memory_info"] = fake_nvml.NVMLError_NotSupported
    assert readers["gpu.temperature"]() is None
    assert readers["gpu.memory_used"]() is None
    assert readers["gpu.power"]() == 78.721
    module.overrides.clear()
    assert readers["gpu.temperature"]() == 35


def test_without_pynvml_the_reason_says_how_to_install(monkeypatch) -> None:
    monkeypatch.setitem(sys.modules, "pynvml", None)  # makes `import pynvml` raise ImportError
    ctx = ProbeContext()
    for name in GPU_PROBES:
        assert reason(name, ctx) == "NVML not installed (pip install 'pilot-agent[gpu]')"
        with pytest.raises(ProbeUnavailable, match="pilot-agent\\[gpu\\]"):
            bind(name, ctx)
    assert gpu_count(ctx) == 0


def test_without_driver_the_reason_is_clear() -> None:
    ctx = ProbeContext(nvml=fake_nvml.make_module(init_error=fake_nvml.NVMLError_LibraryNotFound))
    assert reason("gpu.temperature", ctx) == "NVIDIA driver not found (libnvidia-ml cannot be loaded)"
    assert gpu_count(ctx) == 0


def test_driver_without_gpus() -> None:
    ctx = ProbeContext(nvml=fake_nvml.make_module({"count": 0, "devices": []}))
    assert reason("gpu.power", ctx) == "no NVIDIA GPU"
    assert gpu_count(ctx) == 0


def test_real_pynvml_on_this_machine() -> None:
    """With the real module: a GPU gives readings, no GPU gives a reason; never an exception."""
    pytest.importorskip("pynvml")
    ctx = ProbeContext()
    count = gpu_count(ctx)
    for name in GPU_PROBES:
        why = reason(name, ctx)
        if count == 0:
            assert why and isinstance(why, str)
            continue
        if why is not None:
            assert why == "not supported by this GPU", (name, why)
        value = bind(name, ctx)()
        assert value is None or isinstance(value, (int, float, str)), (name, value)
    if count:
        assert 0 < read("gpu.temperature", ctx) < 120
        assert read("gpu.memory_used", ctx) <= read("gpu.memory_total", ctx)
        assert 0 < read("gpu.power_limit", ctx) < 2000
