"""Temperatures and fans against recorded real hwmon / thermal-zone trees."""

from __future__ import annotations

import pytest

from pilot.probes import ProbeUnavailable
from pilot.probes.thermal import cpu_temperature_source
from tests.support.probes import bind, read, reason


def test_intel_coretemp_package(machine) -> None:
    ctx = machine("intel-i3-5010u-coretemp-acpitz")
    assert read("thermal.cpu", ctx) == 37.0  # coretemp temp1 "Package id 0" = 37000, not acpitz 27800
    assert cpu_temperature_source(ctx)[1] == "coretemp Package id"
    assert read("thermal.sensor", ctx, chip="coretemp", label="Core 1") == 36.0
    assert read("thermal.sensor", ctx, chip="coretemp", label="temp1") == 37.0
    assert read("thermal.sensor", ctx, chip="coretemp") == 37.0  # first sensor
    assert read("thermal.sensor", ctx, chip="acpitz") == 27.8
    assert "no temperature inputs" in reason("thermal.sensor", ctx, chip="iwlwifi_1")
    why = reason("thermal.sensor", ctx, chip="coretemp", label="Core 7")
    assert why and "Package id 0, Core 0, Core 1" in why


def test_coretemp_without_package_uses_hottest_core(machine_copy) -> None:
    root, ctx = machine_copy("intel-i3-5010u-coretemp-acpitz")
    for name in ("temp1_input", "temp1_label"):
        (root / "class/hwmon/hwmon1" / name).unlink()
    assert read("thermal.cpu", ctx) == 36.0
    assert cpu_temperature_source(ctx)[1] == "coretemp Core (max)"


def test_amd_k10temp_prefers_tdie(machine, machine_copy) -> None:
    ctx = machine("amd-ryzen-k10temp-amdgpu")
    assert read("thermal.cpu", ctx) == 43.875
    assert cpu_temperature_source(ctx)[1] == "k10temp Tdie"
    assert read("thermal.sensor", ctx, chip="amdgpu", label="junction") == 40.0
    assert read("thermal.sensor", ctx, chip="amdgpu", label="mem") == 42.0
    root, copy = machine_copy("amd-ryzen-k10temp-amdgpu")
    for name in ("temp2_input", "temp2_label"):
        (root / "class/hwmon/hwmon0" / name).unlink()
    assert cpu_temperature_source(copy)[1] == "k10temp Tctl"
    assert read("thermal.cpu", copy) == 43.875


def test_raspberry_pi_has_only_a_thermal_zone(machine) -> None:
    ctx = machine("raspberry-pi-armv7-cpu-thermal")
    assert not (ctx.sys("class", "hwmon")).exists()
    assert read("thermal.cpu", ctx) == 70.908
    assert cpu_temperature_source(ctx)[1] == "zone cpu-thermal"
    assert read("thermal.zone", ctx, type="cpu-thermal") == 70.908
    assert "found: cpu-thermal" in reason("thermal.zone", ctx, type="x86_pkg_temp")
    assert "no hwmon chip named 'cpu_thermal' (found: none)" == reason("thermal.sensor", ctx, chip="cpu_thermal")


def test_orange_pi_soc_thermal(machine) -> None:
    ctx = machine("orange-pi-5-rk3588")
    assert read("thermal.cpu", ctx) == 32.384
    assert cpu_temperature_source(ctx)[1] == "hwmon soc_thermal"
    assert read("thermal.sensor", ctx, chip="bigcore1_thermal") == 31.461
    assert read("thermal.sensor", ctx, chip="gpu_thermal", label="temp1") == 31.461


def test_nvme_composite_and_no_cpu_sensor(machine) -> None:
    ctx = machine("dell-skylake-laptop-nvme")
    assert read("thermal.sensor", ctx, chip="nvme", label="Composite") == 29.85
    assert read("thermal.sensor", ctx, chip="nvme") == 29.85
    # coretemp and acpitz are there by name only: nothing to read, so thermal.cpu says why.
    why = reason("thermal.cpu", ctx)
    assert why and why.startswith("no CPU temperature sensor")
    assert read("thermal.cpu", ctx) is None
    assert "found: AC, BAT0, acpitz, coretemp" in reason("thermal.sensor", ctx, chip="k10temp")


def test_a_sensor_that_vanishes_and_returns(machine_copy) -> None:
    root, ctx = machine_copy("intel-i3-5010u-coretemp-acpitz")
    reader = bind("thermal.cpu", ctx)
    assert reader() == 37.0
    hwmon1 = root / "class/hwmon/hwmon1"
    moved = root / "class/hwmon/hwmon9"
    hwmon1.rename(moved)  # module reload renumbers the chip
    assert reader() is None  # the old file is gone: no reading, and the choice is made again
    assert reader() == 37.0


def test_thermal_zone_order_without_hwmon(machine_copy) -> None:
    root, ctx = machine_copy("raspberry-pi-armv7-cpu-thermal")
    zone1 = root / "class/thermal/thermal_zone1"
    zone1.mkdir()
    (zone1 / "type").write_text("acpitz\n")
    (zone1 / "temp").write_text("27800\n")  # acpitz value of the i3 recording, as a second zone
    assert read("thermal.cpu", ctx) == 70.908  # acpitz is the last resort
    (root / "class/thermal/thermal_zone0/type").write_text("unrelated\n")
    assert read("thermal.cpu", ctx) == 27.8


# ------------------------------------------------------------------ fans


@pytest.mark.parametrize(
    "folder",
    [
        "intel-i3-5010u-coretemp-acpitz",
        "dell-skylake-laptop-nvme",
        "raspberry-pi-armv7-cpu-thermal",
        "orange-pi-5-rk3588",
    ],
)
def test_no_fan_recorded_means_unavailable(folder: str, machine) -> None:
    ctx = machine(folder)
    why = reason("fan.speed", ctx)
    assert why and why.startswith("no fan speed sensor (fan*_input) under")
    with pytest.raises(ProbeUnavailable):
        bind("fan.speed", ctx)


def test_fan_speed_from_hwmon(machine_copy) -> None:
    """Synthetic fan files added to a real tree: no recording with fan*_input exists in the fixtures."""
    root, ctx = machine_copy("dell-skylake-laptop-nvme")
    smm = root / "class/hwmon/hwmon6"  # dell_smm
    (smm / "fan1_input").write_text("2900\n")
    (smm / "fan2_input").write_text("0\n")
    assert read("fan.speed", ctx) == 2900
    assert read("fan.speed", ctx, chip="dell_smm", index=2) == 0
    assert "no fan3_input" in reason("fan.speed", ctx, index=3)
    assert "chips with fans: dell_smm" in reason("fan.speed", ctx, chip="thinkpad")
    reader = bind("fan.speed", ctx)
    (smm / "fan1_input").unlink()
    assert reader() is None
