"""sysfs.read against recorded trees, and its confinement to sysfs."""

from __future__ import annotations

import os
from pathlib import Path

import jsonschema
import pytest

from pilot.probes import ProbeContext
from pilot.registry import PROBES
from tests.support.probes import bind, read, reason

CPU0 = "/sys/devices/system/cpu/cpu0/cpufreq/"


def test_parses_recorded_values(machine) -> None:
    ctx = machine("intel-i5-6300u-intel_pstate-epp")
    assert read("sysfs.read", ctx, path=CPU0 + "scaling_governor", parse="str") == "performance"
    assert read("sysfs.read", ctx, path=CPU0 + "scaling_max_freq") == 2900000.0
    assert read("sysfs.read", ctx, path=CPU0 + "scaling_max_freq", parse="int") == 2900000
    assert read("sysfs.read", ctx, path=CPU0 + "scaling_max_freq", parse="int", scale=0.001) == 2900
    # only the newline is removed: the kernel's trailing space stays
    assert read("sysfs.read", ctx, path=CPU0 + "energy_performance_available_preferences", parse="str") == (
        "default performance balance_performance balance_power power "
    )
    assert read("sysfs.read", ctx, path="/sys/devices/system/cpu/intel_pstate/status", parse="bool") is True


def test_leading_spaces_and_unparseable(machine) -> None:
    ctx = machine("thinkpad-lgc-45n1153--discharging")
    assert read("sysfs.read", ctx, path="/sys/class/power_supply/BAT0/serial_number", parse="str") == "  382"
    assert read("sysfs.read", ctx, path="/sys/class/power_supply/BAT0/serial_number", parse="int") == 382
    assert read("sysfs.read", ctx, path="/sys/class/power_supply/BAT0/status") is None  # "Discharging" as float
    legacy = machine("intel-dstat74-intel_pstate-legacy")
    assert read("sysfs.read", legacy, path=CPU0 + "scaling_setspeed") is None  # "<unsupported>"
    boost = machine("amd-ryzen7-pro-3700u-acpi-cpufreq")
    assert read("sysfs.read", boost, path="/sys/devices/system/cpu/cpufreq/boost", parse="bool") is True


def test_missing_file(machine) -> None:
    ctx = machine("intel-i5-6300u-intel_pstate-epp")
    assert reason("sysfs.read", ctx, path=CPU0 + "scaling_cur_freq") == CPU0 + "scaling_cur_freq does not exist"
    assert read("sysfs.read", ctx, path=CPU0 + "scaling_cur_freq") is None


@pytest.mark.parametrize(
    "bad",
    ["/etc/shadow", "/sys", "sys/class/x", "/sys/class/../../etc/passwd", "/sys/../etc/passwd", "/proc/self/environ"],
)
def test_paths_outside_sys_are_refused(bad: str, tmp_path: Path) -> None:
    ctx = ProbeContext(sysfs_root=tmp_path)
    with pytest.raises(ValueError):
        bind("sysfs.read", ctx, path=bad)
    assert reason("sysfs.read", ctx, path=bad)
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate({"path": bad}, PROBES.get("sysfs.read").params)


def test_symlink_out_of_sysfs_is_refused(tmp_path: Path) -> None:
    root = tmp_path / "sys"
    (root / "class").mkdir(parents=True)
    secret = tmp_path / "secret"
    secret.write_text("42\n")
    os.symlink(secret, root / "class" / "leak")
    ctx = ProbeContext(sysfs_root=root)
    with pytest.raises(ValueError, match="outside"):
        bind("sysfs.read", ctx, path="/sys/class/leak")
    inside = root / "class" / "value"
    inside.write_text("7\n")
    os.symlink(inside, root / "class" / "alias")  # links that stay inside sysfs are fine
    assert read("sysfs.read", ctx, path="/sys/class/alias", parse="int") == 7


def test_schema_accepts_ordinary_paths() -> None:
    schema = PROBES.get("sysfs.read").params
    jsonschema.validate(
        {"path": "/sys/class/backlight/intel_backlight/brightness", "parse": "int", "scale": 0.5}, schema
    )
    jsonschema.validate({"path": "/sys/class/x/..hidden"}, schema)
