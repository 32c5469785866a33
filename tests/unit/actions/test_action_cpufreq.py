"""cpufreq.*: planned writes against the REAL recorded sysfs trees in tests/fixtures/sysfs (see SOURCES.md there).

Only the policy-directory and big.LITTLE cases use a made-up tree (said where they do): none of
the recordings has `cpu/cpufreq/policyN/` directories or cores with different ranges.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from pilot.actions import ActionContext, ActionError, Call, Unsupported, cpufreq
from pilot.registry import ACTIONS

CPU = Path("devices/system/cpu")


@pytest.fixture
def machine(sysfs_fixture):
    def make(name: str) -> tuple[Path, ActionContext]:
        root = sysfs_fixture(name)
        return root, ActionContext(sysfs_root=root, platform="linux", environ={}, which=lambda _: None)

    return make


def writes(root: Path, attribute: str, *pairs: tuple[str, str]) -> list[Call]:
    return [Call(kind="write", path=str(root / CPU / cpu / "cpufreq" / attribute), data=data) for cpu, data in pairs]


# ------------------------------------------------------------ amd-pstate-epp (cpuinfo range, clamped scaling_max)


def test_amd_pstate_set_max_uses_the_cpuinfo_range_not_the_clamped_limit(machine) -> None:
    root, ctx = machine("amd-16cpu-amd-pstate-epp")
    assert cpufreq.set_max(ctx, 3.5) == writes(root, "scaling_max_freq", ("cpu0", "3500000"))
    assert cpufreq.set_max(ctx, 4.463) == writes(root, "scaling_max_freq", ("cpu0", "4463000"))
    assert cpufreq.set_max(ctx, 0.4) == writes(root, "scaling_max_freq", ("cpu0", "400000"))
    assert cpufreq.set_max(ctx, 2400, unit="MHz") == writes(root, "scaling_max_freq", ("cpu0", "2400000"))
    assert cpufreq.set_max(ctx, "2.5GHz") == writes(root, "scaling_max_freq", ("cpu0", "2500000"))


def test_amd_pstate_range_errors_name_the_hardware_range(machine) -> None:
    _, ctx = machine("amd-16cpu-amd-pstate-epp")
    with pytest.raises(ActionError) as err:
        cpufreq.set_max(ctx, 5.0)
    assert str(err.value) == "5 GHz is outside this CPU's range 0.4–4.463 GHz"
    with pytest.raises(ActionError) as err:
        cpufreq.set_min(ctx, 0.3)
    assert str(err.value) == "0.3 GHz is outside this CPU's range 0.4–4.463 GHz"
    with pytest.raises(ActionError) as err:
        cpufreq.set_max(ctx, 4500, unit="MHz")
    assert str(err.value) == "4500 MHz is outside this CPU's range 400–4463 MHz"
    with pytest.raises(ActionError, match="above zero"):
        cpufreq.set_max(ctx, -1)
    with pytest.raises(ActionError, match="needs a number"):
        cpufreq.set_max(ctx, "fast")
    with pytest.raises(ActionError, match="unit must be GHz or MHz"):
        cpufreq.set_max(ctx, 2, unit="kHz")


def test_amd_pstate_states_and_governors(machine) -> None:
    root, ctx = machine("amd-16cpu-amd-pstate-epp")
    assert ACTIONS.get("cpufreq.set_max").state(ctx) == 0.4  # the reporter's clamped limit, as recorded
    assert ACTIONS.get("cpufreq.set_max").state(ctx, unit="MHz") == 400
    assert ACTIONS.get("cpufreq.set_min").state(ctx) == 0.4
    assert ACTIONS.get("cpufreq.set_governor").state(ctx) == "powersave"
    assert cpufreq.set_governor(ctx, "performance") == writes(root, "scaling_governor", ("cpu0", "performance"))
    with pytest.raises(ActionError) as err:
        cpufreq.set_governor(ctx, "ondemand")
    assert str(err.value) == "'ondemand' is not a governor here; available: performance, powersave"


# ------------------------------------------------------------ intel_pstate


def test_intel_pstate_without_cpuinfo_falls_back_to_the_scaling_range(machine) -> None:
    root, ctx = machine("intel-i5-6300u-intel_pstate-epp")
    assert cpufreq.set_max(ctx, 2.0) == writes(root, "scaling_max_freq", ("cpu0", "2000000"))
    assert cpufreq.set_min(ctx, 0.8) == writes(root, "scaling_min_freq", ("cpu0", "800000"))
    with pytest.raises(ActionError) as err:
        cpufreq.set_max(ctx, 3.0)
    assert str(err.value) == "3 GHz is outside this CPU's range 0.4–2.9 GHz"
    assert ACTIONS.get("cpufreq.set_max").state(ctx) == 2.9
    assert ACTIONS.get("cpufreq.set_min").state(ctx) == 0.4
    assert ACTIONS.get("cpufreq.set_governor").state(ctx) == "performance"


def test_intel_pstate_legacy_tree(machine) -> None:
    root, ctx = machine("intel-dstat74-intel_pstate-legacy")
    assert cpufreq.set_max(ctx, 3.9) == writes(root, "scaling_max_freq", ("cpu0", "3900000"))
    with pytest.raises(ActionError) as err:
        cpufreq.set_min(ctx, 0.5)
    assert str(err.value) == "0.5 GHz is outside this CPU's range 0.8–3.9 GHz"
    assert cpufreq.set_governor(ctx, "powersave") == writes(root, "scaling_governor", ("cpu0", "powersave"))


# ------------------------------------------------------------ acpi-cpufreq (available frequencies, no cpuinfo)


def test_acpi_cpufreq_range_from_available_frequencies(machine) -> None:
    root, ctx = machine("amd-ryzen7-pro-3700u-acpi-cpufreq")
    # cpu/cpufreq/ exists here (it holds `boost`) but has no policy directories: cpu0 is written.
    assert cpufreq.set_min(ctx, 1.7) == writes(root, "scaling_min_freq", ("cpu0", "1700000"))
    assert cpufreq.set_max(ctx, 1400, unit="MHz") == writes(root, "scaling_max_freq", ("cpu0", "1400000"))
    with pytest.raises(ActionError) as err:
        cpufreq.set_min(ctx, 1.0)
    assert str(err.value) == "1 GHz is outside this CPU's range 1.4–2.3 GHz"


def test_acpi_cpufreq_governors_with_trailing_space(machine) -> None:
    root, ctx = machine("amd-ryzen7-pro-3700u-acpi-cpufreq")
    assert cpufreq.set_governor(ctx, "schedutil") == writes(root, "scaling_governor", ("cpu0", "schedutil"))
    with pytest.raises(ActionError) as err:
        cpufreq.set_governor(ctx, "powersave")
    assert str(err.value) == "'powersave' is not a governor here; available: ondemand, performance, schedutil"
    assert ACTIONS.get("cpufreq.set_governor").state(ctx) == "ondemand"


# ------------------------------------------------------------ pcc-cpufreq server (only cpu8 and cpu22)


def test_pcc_server_writes_every_recorded_cpu_in_numeric_order(machine) -> None:
    root, ctx = machine("server-pcc-cpufreq-partial")
    assert cpufreq.set_max(ctx, 2.0) == writes(root, "scaling_max_freq", ("cpu8", "2000000"), ("cpu22", "2000000"))
    assert cpufreq.set_min(ctx, 1.2) == writes(root, "scaling_min_freq", ("cpu8", "1200000"), ("cpu22", "1200000"))
    assert cpufreq.set_governor(ctx, "userspace") == writes(
        root, "scaling_governor", ("cpu8", "userspace"), ("cpu22", "userspace")
    )
    with pytest.raises(ActionError) as err:
        cpufreq.set_max(ctx, 2.5)
    assert str(err.value) == "2.5 GHz is outside this CPU's range 1.2–2.4 GHz"
    with pytest.raises(ActionError) as err:
        cpufreq.set_governor(ctx, "schedutil")
    assert str(err.value) == (
        "'schedutil' is not a governor here; available: conservative, userspace, powersave, ondemand, performance"
    )
    assert ACTIONS.get("cpufreq.set_max").state(ctx) == 2.4
    assert ACTIONS.get("cpufreq.set_min").state(ctx) == 1.2
    assert ACTIONS.get("cpufreq.set_governor").state(ctx) == "conservative"
    for name in ("cpufreq.set_max", "cpufreq.set_min", "cpufreq.set_governor"):
        assert ACTIONS.get(name).available(ctx) is None


# ------------------------------------------------------------ made-up trees: policies, big.LITTLE, nothing


def _write(root: Path, rel: str, text: str) -> None:
    path = root / rel
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text + "\n")


def big_little(root: Path) -> Path:
    """Made-up values: two policies with different ranges, laid out like a kernel with policy directories."""
    for policy, lo, hi, governors in (
        ("policy0", 500000, 1800000, "schedutil performance powersave"),
        ("policy4", 600000, 2400000, "performance schedutil"),
    ):
        base = f"devices/system/cpu/cpufreq/{policy}"
        _write(root, f"{base}/cpuinfo_min_freq", str(lo))
        _write(root, f"{base}/cpuinfo_max_freq", str(hi))
        _write(root, f"{base}/scaling_min_freq", str(lo))
        _write(root, f"{base}/scaling_max_freq", str(hi))
        _write(root, f"{base}/scaling_available_governors", governors)
        _write(root, f"{base}/scaling_governor", "schedutil")
    _write(root, "devices/system/cpu/cpu0/cpufreq/scaling_max_freq", "1800000")  # per-CPU view, not written
    return root / "devices/system/cpu/cpufreq"


def test_policy_directories_are_preferred_and_each_is_clamped_to_its_own_range(make_ctx, tmp_path) -> None:
    policies = big_little(tmp_path / "sys")
    ctx = make_ctx(sysfs_root=tmp_path / "sys")
    assert cpufreq.set_max(ctx, 2.0) == [
        Call(kind="write", path=str(policies / "policy0/scaling_max_freq"), data="1800000"),
        Call(kind="write", path=str(policies / "policy4/scaling_max_freq"), data="2000000"),
    ]
    assert cpufreq.set_min(ctx, 0.5) == [
        Call(kind="write", path=str(policies / "policy0/scaling_min_freq"), data="500000"),
        Call(kind="write", path=str(policies / "policy4/scaling_min_freq"), data="600000"),
    ]
    with pytest.raises(ActionError) as err:
        cpufreq.set_max(ctx, 2.5)
    assert str(err.value) == "2.5 GHz is outside this CPU's range 0.5–2.4 GHz"
    # Only governors every policy offers are accepted.
    with pytest.raises(ActionError, match="available: schedutil, performance$"):
        cpufreq.set_governor(ctx, "powersave")
    assert ACTIONS.get("cpufreq.set_max").state(ctx) == 2.4
    assert ACTIONS.get("cpufreq.set_min").state(ctx) == 0.5


def test_no_cpufreq_is_unsupported(make_ctx) -> None:
    ctx = make_ctx()
    for name, value in (("cpufreq.set_max", 2.0), ("cpufreq.set_min", 1.0), ("cpufreq.set_governor", "powersave")):
        entry = ACTIONS.get(name)
        with pytest.raises(Unsupported, match="no cpufreq in"):
            entry.factory(ctx, value)
        assert "no cpufreq" in entry.available(ctx)
        assert entry.state(ctx) is None


def test_unreadable_range_is_unsupported(make_ctx, tmp_path) -> None:
    root = tmp_path / "sys"
    _write(root, "devices/system/cpu/cpu0/cpufreq/scaling_max_freq", "<unsupported>")  # made-up junk
    ctx = make_ctx(sysfs_root=root)
    with pytest.raises(Unsupported, match="frequency range of cpu0 cannot be read"):
        cpufreq.set_max(ctx, 1.0)
    with pytest.raises(Unsupported, match="cpu0 has no scaling_min_freq"):
        cpufreq.set_min(ctx, 1.0)
    assert ACTIONS.get("cpufreq.set_max").state(ctx) is None


def test_windows_is_unsupported(make_ctx) -> None:
    with pytest.raises(Unsupported, match="Linux-only"):
        cpufreq.set_max(make_ctx(platform="windows"), 2.0)
