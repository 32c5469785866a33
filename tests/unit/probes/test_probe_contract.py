"""Every registered probe keeps the registry contract, and no reader raises on a bad machine."""

from __future__ import annotations

import math
import subprocess
import sys
from pathlib import Path

import fake_nvml
import jsonschema
import pytest

from pilot.probes import ProbeContext, ProbeUnavailable
from pilot.registry import PROBES
from tests.support.probes import REPO

EXPECTED = {
    "cpu.percent",
    "cpu.frequency",
    "cpu.load",
    "cpu.count",
    "memory.used_percent",
    "memory.used",
    "memory.available",
    "memory.total",
    "swap.used_percent",
    "swap.used",
    "disk.used_percent",
    "disk.used",
    "disk.free",
    "disk.total",
    "disk.read_bytes",
    "disk.write_bytes",
    "disk.read_rate",
    "disk.write_rate",
    "net.bytes_sent",
    "net.bytes_recv",
    "net.send_rate",
    "net.recv_rate",
    "net.ip",
    "net.default_interface",
    "system.uptime",
    "system.boot_time",
    "system.processes",
    "system.users",
    "thermal.cpu",
    "thermal.sensor",
    "thermal.zone",
    "battery.level",
    "battery.state",
    "battery.time_left",
    "battery.power",
    "battery.health",
    "battery.ac_online",
    "fan.speed",
    "gpu.temperature",
    "gpu.utilization",
    "gpu.memory_utilization",
    "gpu.memory_used",
    "gpu.memory_total",
    "gpu.memory_used_percent",
    "gpu.power",
    "gpu.power_limit",
    "gpu.clock_graphics",
    "gpu.clock_memory",
    "gpu.clock_sm",
    "gpu.fan_speed",
    "gpu.energy",
    "gpu.pstate",
    "sysfs.read",
    "session.idle_seconds",
    "session.idle",
    "session.locked",
    "media.state",
    "media.title",
    "media.artist",
    "command.output",
    "systemd.unit",
    "disk.health",
    "disk.temperature",
    "disk.power_on_hours",
    "disk.reallocated_sectors",
    "updates.pending",
    "audio.volume",
    "audio.muted",
    "privacy.camera_in_use",
    "privacy.microphone_in_use",
    "desktop.active_window",
}
DEFAULT_KEYS = {"unit", "state_class", "device_class", "platform", "icon", "precision", "options"}
ENTRIES = list(PROBES)


def test_exactly_the_specified_probes_are_registered() -> None:
    assert set(PROBES.names()) == EXPECTED


@pytest.mark.parametrize("entry", ENTRIES, ids=lambda e: e.name)
def test_entry_is_self_describing(entry) -> None:
    assert entry.summary and entry.summary.endswith("."), entry.name
    schema = entry.params
    jsonschema.Draft202012Validator.check_schema(schema)
    assert schema["type"] == "object" and schema["additionalProperties"] is False
    for prop_name, prop in schema.get("properties", {}).items():
        assert prop.get("description"), f"{entry.name}.{prop_name} has no description"
        if "default" in prop:
            jsonschema.Draft202012Validator(prop).validate(prop["default"])
    for example in schema.get("examples", []):
        jsonschema.Draft202012Validator(schema).validate(example)
    assert set(entry.defaults) <= DEFAULT_KEYS, entry.name
    assert entry.defaults.get("platform") in ("sensor", "binary_sensor")
    if entry.defaults.get("device_class") == "enum":
        assert entry.defaults.get("options") and "unit" not in entry.defaults and "state_class" not in entry.defaults
    if entry.defaults.get("device_class") == "timestamp":
        assert "state_class" not in entry.defaults


def test_required_params_have_examples() -> None:
    for entry in ENTRIES:
        if entry.params.get("required"):
            assert entry.params.get("examples"), entry.name


def test_unknown_args_are_rejected_by_the_schema() -> None:
    schema = PROBES.get("cpu.percent").params
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate({"cores": 1}, schema)
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate({"period": 2}, PROBES.get("cpu.load").params)


def _example_args(entry) -> dict:
    examples = entry.params.get("examples") or [{}]
    return dict(examples[0])


def _hostile_tree(root: Path) -> None:
    """Files that exist but hold junk, directories where files belong, empty names."""
    files = {
        "class/power_supply/BAT0/capacity": "lots\n",
        "class/power_supply/BAT0/status": "\n",
        "class/power_supply/BAT0/energy_now": "-\n",
        "class/power_supply/BAT0/energy_full": "0\n",
        "class/power_supply/BAT0/energy_full_design": "0\n",
        "class/power_supply/BAT0/power_now": "0\n",
        "class/power_supply/BAT0/uevent": "garbage without equals\n=\n",
        "class/power_supply/AC/online": "maybe\n",
        "class/hwmon/hwmon0/name": "coretemp\n",
        "class/hwmon/hwmon0/temp1_input": "hot\n",
        "class/hwmon/hwmon0/temp1_label": "Package id 0\n",
        "class/hwmon/hwmon0/fan1_input": "\n",
        "class/thermal/thermal_zone0/type": "cpu-thermal\n",
        "class/hwmon/hwmon1/name": "nvme\n",
        "devices/system/cpu/cpu0/cpufreq/scaling_cur_freq": "<unsupported>\n",
    }
    for rel, text in files.items():
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    (root / "class/thermal/thermal_zone0/temp").mkdir(parents=True)  # a directory where a file belongs
    (root / "class/hwmon/hwmon1/temp1_input").mkdir(parents=True)


def _contexts(tmp_path: Path) -> list[ProbeContext]:
    missing = tmp_path / "does-not-exist"
    hostile = tmp_path / "hostile"
    _hostile_tree(hostile)
    broken = fake_nvml.make_module(init_error=fake_nvml.NVMLError_LibraryNotFound)
    return [
        ProbeContext(sysfs_root=missing, procfs_root=missing, etc_root=missing, nvml=broken),
        ProbeContext(sysfs_root=hostile, procfs_root=hostile, etc_root=hostile, nvml=fake_nvml.make_module()),
    ]


@pytest.mark.parametrize("entry", ENTRIES, ids=lambda e: e.name)
def test_bad_context_never_raises_out_of_a_reader(entry, tmp_path: Path) -> None:
    for ctx in _contexts(tmp_path):
        args = _example_args(entry)
        if entry.available is not None:
            why = entry.available(ctx, **args)
            assert why is None or (isinstance(why, str) and why), entry.name
        try:
            reader = entry.factory(ctx, **args)
        except ProbeUnavailable as exc:
            assert str(exc)
            continue
        for _ in range(2):
            value = reader()
            assert value is None or isinstance(value, (int, float, str, bool)), (entry.name, value)
            if isinstance(value, float):
                assert math.isfinite(value)


def test_importing_probes_stays_light() -> None:
    code = (
        "import sys; from pilot.registry import PROBES; PROBES.names(); import pilot.facts;"
        "heavy = [m for m in ('pynvml', 'jsonschema', 'ruamel', 'ruamel.yaml') if m in sys.modules];"
        "assert not heavy, heavy"
    )
    env = {"PYTHONPATH": str(REPO / "engine"), "PATH": "/usr/bin:/bin"}
    subprocess.run([sys.executable, "-c", code], check=True, env=env, cwd=REPO)
