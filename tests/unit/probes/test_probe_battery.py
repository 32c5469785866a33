"""Battery and AC probes against recorded real power_supply trees (see tests/fixtures/sysfs/SOURCES.md)."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from pilot.probes import ProbeContext, ProbeUnavailable
from tests.support.probes import SYSFS_FIXTURES, bind, read, reason

PROBES = ("level", "state", "time_left", "power", "health")
N = None

# folder: (level %, state, time_left s, power W, health %) — each derived from the recorded files:
#   time_left = energy_now / power_now h (discharging) or (full - now) / rate h (charging), × 3600, rounded;
#   power = power_now / 1e6, else current_now × voltage_now / 1e12; health = *_full / *_full_design × 100.
EXPECTED = {
    # 46410000 µWh / 15453000 µW = 3.0033 h; 67490000 / 99460000
    "thinkpad-lgc-45n1153--discharging": (68, "discharging", 10812, 15.453, 67.86),
    # 2420000 / 27758000 h; energy_full 25860000 > design 23510000
    "thinkpad-sanyo-00hw022--bat0-discharging": (9, "discharging", 314, 27.758, 110.0),
    # idle BAT0 of a two-battery machine: Unknown, power_now 0
    "thinkpad-sanyo-00hw022--bat0-idle-unknown": (5, "unknown", N, 0.0, 110.0),
    # BAT1, Full, no POWER_NOW line at all
    "dell-xps15-simplo--bat1-full": (100, "full", N, N, 98.03),
    # charge_*: 4723000 µAh / 756000 µA; 756000 µA × 12600000 µV; 4804000 / 4912000
    "dell-samsung-sdi-m7r9677--discharging": (98, "discharging", 22490, 9.526, 97.8),
    # (3750000 - 3692000) / 413000 h; 413000 × 12729000; 3750000 / 4474000
    "dell-smp-pn1vn08--charging": (98, "charging", 506, 5.257, 83.82),
    # Full at 100 % although current_now is still 413000 µA: no time, but a power
    "asus-chromebook-c300--full": (100, "full", N, 5.314, 83.92),
    # 61850000 / 10649000 h; energy_full 84720000 > design 80000000 (not clamped)
    "lenovo-legion5-15akp10-byd--discharging": (73, "discharging", 20909, 10.649, 105.9),
    # Unknown on AC; current_now 1000 µA × 12439000 µV = 0.012 W; 3328000 / 4000000
    "toshiba-bat1--unknown-on-ac": (100, "unknown", N, 0.012, 83.2),
    # (1802000 - 501000) / 2977000 h; a worn pack: 1802000 / 5600000
    "lenovo-lgc-42t4865--charging": (27, "charging", 1573, 38.094, 32.18),
    # Unknown at a charge threshold, power_now 0; 25500000 / 38920000
    "thinkpad-smp-42t4977--unknown-threshold": (32, "unknown", N, 0.0, 65.52),
    # only status and capacity recorded
    "laptop-yabar160--full-on-ac": (100, "full", N, N, N),
    # only status recorded
    "laptop-waybar1560--not-charging-on-ac0": (N, "not_charging", N, N, N),
}
AC = {
    "thinkpad-smp-42t4977--unknown-threshold": True,  # AC/online from its uevent
    "laptop-yabar160--full-on-ac": True,
    "laptop-waybar1560--not-charging-on-ac0": True,  # the adapter is AC0
    "laptop-acad-ucsi-fwupd8799--plugged": True,  # ACAD=1, ucsi-source-psy-USBC000:004=1
    "laptop-acad-ucsi-fwupd8799--unplugged": False,  # every supply 0
}


@pytest.mark.parametrize("folder", sorted(EXPECTED))
def test_recorded_batteries(folder: str, machine) -> None:
    ctx = machine(folder)
    got = tuple(read(f"battery.{p}", ctx) for p in PROBES)
    assert got == EXPECTED[folder]
    assert isinstance(got[2], (int, type(None)))


@pytest.mark.parametrize("folder", sorted(AC))
def test_recorded_ac_adapters(folder: str, machine) -> None:
    ctx = machine(folder)
    assert reason("battery.ac_online", ctx) is None
    assert read("battery.ac_online", ctx) is AC[folder]


def test_names_with_colons_are_plain_folders(machine) -> None:
    from pilot.probes.battery import external_power

    names = [s.name for s in external_power(machine("laptop-acad-ucsi-fwupd8799--plugged"))]
    assert names == ["ACAD"] + [f"ucsi-source-psy-USBC000:00{i}" for i in range(1, 5)]


def test_no_ac_folder_means_unavailable_not_false(machine) -> None:
    ctx = machine("thinkpad-lgc-45n1153--discharging")
    assert "no AC adapter" in reason("battery.ac_online", ctx)
    assert read("battery.ac_online", ctx) is None  # bound anyway (optional sensor): no reading, not False


def test_ac_only_machine_has_no_battery(machine) -> None:
    ctx = machine("laptop-acad-ucsi-fwupd8799--plugged")
    why = reason("battery.level", ctx)
    assert why and why.startswith("no battery under") and why.endswith("class/power_supply")
    with pytest.raises(ProbeUnavailable, match="no battery"):
        bind("battery.state", ctx)


def test_battery_by_name(machine) -> None:
    ctx = machine("dell-xps15-simplo--bat1-full")
    assert read("battery.level", ctx, name="BAT1") == 100
    assert read("battery.state", ctx, name="BAT1") == "full"
    why = reason("battery.level", ctx, name="BAT0")
    assert why and "'BAT0'" in why and "BAT1" in why
    with pytest.raises(ProbeUnavailable):
        bind("battery.level", ctx, name="BAT0")


def test_not_a_battery_by_name(machine) -> None:
    ctx = machine("thinkpad-smp-42t4977--unknown-threshold")
    assert "is not a battery" in reason("battery.level", ctx, name="AC")


@pytest.mark.parametrize(
    "folder", sorted(f for f in EXPECTED if "uevent" in str(list((SYSFS_FIXTURES / f).rglob("uevent"))))
)
def test_uevent_only_gives_the_same_answers(folder: str, tmp_path: Path, machine) -> None:
    """Keep only the real uevent dumps: every attribute must come from POWER_SUPPLY_* lines."""
    root = tmp_path / "uevent-only"
    for uevent in (SYSFS_FIXTURES / folder).rglob("uevent"):
        target = root / uevent.relative_to(SYSFS_FIXTURES / folder)
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(uevent, target)
    ctx = ProbeContext(sysfs_root=root, procfs_root=tmp_path, etc_root=tmp_path)
    assert tuple(read(f"battery.{p}", ctx) for p in PROBES) == EXPECTED[folder]
    if folder in AC:
        assert read("battery.ac_online", ctx) is AC[folder]


def test_uevent_only_folders_exist() -> None:
    """The uevent-only test above covers exactly these recorded trees (none silently dropped)."""
    with_uevent = sorted(f for f in EXPECTED if list((SYSFS_FIXTURES / f).rglob("uevent")))
    assert with_uevent == [
        "asus-chromebook-c300--full",
        "dell-samsung-sdi-m7r9677--discharging",
        "dell-smp-pn1vn08--charging",
        "dell-xps15-simplo--bat1-full",
        "lenovo-legion5-15akp10-byd--discharging",
        "lenovo-lgc-42t4865--charging",
        "thinkpad-smp-42t4977--unknown-threshold",
        "toshiba-bat1--unknown-on-ac",
    ]


def test_not_present_battery_is_ignored(machine_copy) -> None:
    root, ctx = machine_copy("thinkpad-lgc-45n1153--discharging")
    (root / "class/power_supply/BAT0/present").write_text("0\n")
    assert reason("battery.level", ctx).startswith("no battery under")


def test_file_beats_uevent(machine_copy) -> None:
    root, ctx = machine_copy("dell-samsung-sdi-m7r9677--discharging")
    (root / "class/power_supply/BAT0/status").write_text("Charging\n")  # the file is newer than the dump
    assert read("battery.state", ctx) == "charging"


def test_two_recorded_batteries_combined(machine_copy) -> None:
    """BAT0 of the ThinkPad recording next to BAT1 of the XPS recording: a made-up pairing of real packs."""
    _, ctx = machine_copy("thinkpad-lgc-45n1153--discharging", "dell-xps15-simplo--bat1-full")
    # level: capacity weighted by energy_full: (68 × 67490000 + 100 × 89210000) / (67490000 + 89210000)
    assert read("battery.level", ctx) == round((68 * 67490000 + 100 * 89210000) / (67490000 + 89210000), 1)
    assert read("battery.state", ctx) == "discharging"  # one discharges, one is full
    # both packs empty through the one discharging: (46410000 + 89210000) µWh / 15453000 µW
    assert read("battery.time_left", ctx) == round((46410000 + 89210000) / 15453000 * 3600)
    assert read("battery.power", ctx) == 15.453  # BAT1 has no power reading
    assert read("battery.health", ctx) == round((67490000 + 89210000) / (99460000 + 91000000) * 100, 2)
    assert read("battery.level", ctx, name="BAT0") == 68


def test_peripheral_batteries_are_not_the_machines(machine_copy) -> None:
    """A wireless mouse shows up as type Battery with scope Device (synthetic folder, real attribute names)."""
    root, ctx = machine_copy("thinkpad-lgc-45n1153--discharging")
    mouse = root / "class/power_supply/hidpp_battery_0"
    mouse.mkdir()
    for name, text in {"type": "Battery", "scope": "Device", "capacity": "10", "status": "Discharging"}.items():
        (mouse / name).write_text(text + "\n")
    assert read("battery.level", ctx) == 68


def test_state_priority() -> None:
    from pilot.probes.battery import aggregate_state

    assert aggregate_state(["full", "charging"]) == "charging"
    assert aggregate_state(["unknown", "discharging"]) == "discharging"
    assert aggregate_state(["full", "not_charging"]) == "not_charging"
    assert aggregate_state(["full", "unknown"]) == "full"
    assert aggregate_state([]) == "unknown"


def test_unknown_status_word_is_unknown(machine_copy) -> None:
    root, ctx = machine_copy("laptop-yabar160--full-on-ac")
    (root / "class/power_supply/BAT0/status").write_text("Weird\n")
    assert read("battery.state", ctx) == "unknown"
