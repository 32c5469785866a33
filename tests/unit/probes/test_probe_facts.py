"""Host facts and the device id."""

from __future__ import annotations

import hashlib
import platform
import socket
from pathlib import Path
from types import SimpleNamespace

import fake_nvml
import psutil
import pytest

from pilot.facts import NoDeviceId, cpu_vendor, device_id, host_facts, os_release
from pilot.probes import ProbeContext
from tests.support.probes import SYSFS_FIXTURES


def _ctx(tmp_path: Path, sysfs: Path | None = None, gpus: int = 0) -> ProbeContext:
    (tmp_path / "proc").mkdir(exist_ok=True)
    (tmp_path / "etc").mkdir(exist_ok=True)
    recording = {"count": gpus, "devices": [{}] * gpus}
    return ProbeContext(
        sysfs_root=sysfs or tmp_path / "sys",
        procfs_root=tmp_path / "proc",
        etc_root=tmp_path / "etc",
        nvml=fake_nvml.make_module(recording),
    )


def test_facts_of_this_machine() -> None:
    facts = host_facts()
    assert facts["os"] == platform.system().lower()
    assert facts["hostname"] == socket.gethostname()
    assert facts["has"] == sorted(facts["has"])
    cpuinfo = Path("/proc/cpuinfo").read_text() if Path("/proc/cpuinfo").exists() else ""
    if "GenuineIntel" in cpuinfo:
        assert facts["cpu.vendor"] == "intel"
    elif "AuthenticAMD" in cpuinfo:
        assert facts["cpu.vendor"] == "amd"
    if facts["os"] == "linux" and Path("/etc/os-release").exists():
        release = platform.freedesktop_os_release()
        assert facts["os.id"] == release["ID"]
        assert facts["os.version"] == release.get("VERSION_ID")
    expected_keys = {
        "os",
        "os.id",
        "os.version",
        "arch",
        "hostname",
        "dmi.sys_vendor",
        "dmi.product_name",
        "dmi.board_vendor",
        "cpu.vendor",
        "cpu.model",
        "has",
        "gpu.count",
    }
    assert set(facts) == expected_keys


def test_facts_of_a_recorded_machine(tmp_path: Path) -> None:
    """Every fact from known files: a recorded sysfs tree (one hwmon chip, nothing else), DMI strings,
    os-release, /proc/cpuinfo and two NVIDIA GPUs. Only os, arch and hostname come from the host."""
    import shutil

    sysfs = tmp_path / "sys"
    shutil.copytree(SYSFS_FIXTURES / "amd-ryzen-k10temp-amdgpu", sysfs)
    dmi = sysfs / "class" / "dmi" / "id"
    dmi.mkdir(parents=True)
    (dmi / "sys_vendor").write_text("LENOVO\n")
    (dmi / "product_name").write_text("21A0CTO1WW\n")
    (dmi / "board_vendor").write_text("  \n")  # blank: no fact rather than an empty string
    ctx = _ctx(tmp_path, sysfs, gpus=2)
    (tmp_path / "etc" / "os-release").write_text(
        'PRETTY_NAME="Debian GNU/Linux 12 (bookworm)"\nID=debian\nVERSION_ID="12"\n'
    )
    (tmp_path / "proc" / "cpuinfo").write_text(
        "processor\t: 0\nvendor_id\t: AuthenticAMD\nmodel name\t: AMD Ryzen 7 PRO 5850U with Radeon Graphics\n\n"
        "processor\t: 1\nvendor_id\t: AuthenticAMD\nmodel name\t: second core, not read\n"
    )
    machine = platform.machine().lower()
    assert host_facts(ctx) == {
        "os": platform.system().lower(),
        "os.id": "debian",
        "os.version": "12",
        "arch": {"amd64": "x86_64", "x64": "x86_64", "arm64": "aarch64"}.get(machine, machine),
        "hostname": socket.gethostname(),
        "dmi.sys_vendor": "LENOVO",
        "dmi.product_name": "21A0CTO1WW",
        "dmi.board_vendor": None,
        "cpu.vendor": "amd",
        "cpu.model": "AMD Ryzen 7 PRO 5850U with Radeon Graphics",
        "has": ["hwmon", "nvidia_gpu"],
        "gpu.count": 2,
    }


@pytest.mark.parametrize(
    "folder, present, absent",
    [
        ("thinkpad-lgc-45n1153--discharging", {"battery"}, {"hwmon", "cpufreq"}),
        ("laptop-acad-ucsi-fwupd8799--plugged", set(), {"battery"}),
        ("intel-i3-5010u-coretemp-acpitz", {"hwmon"}, {"battery", "thermal_zone"}),
        ("raspberry-pi-armv7-cpu-thermal", {"thermal_zone"}, {"hwmon", "battery"}),
        ("intel-i5-6300u-intel_pstate-epp", {"cpufreq"}, {"hwmon"}),
        ("server-pcc-cpufreq-partial", {"cpufreq"}, set()),  # cpu8 and cpu22 only, no cpu0
    ],
)
def test_has_from_recorded_trees(folder: str, present: set, absent: set, tmp_path: Path) -> None:
    has = set(host_facts(_ctx(tmp_path, SYSFS_FIXTURES / folder))["has"])
    assert present <= has and not (absent & has)


def test_has_gpu_proxmox_raspberry_pi(tmp_path: Path) -> None:
    ctx = _ctx(tmp_path, gpus=1)
    (tmp_path / "etc" / "pve").mkdir()
    dt = tmp_path / "proc" / "device-tree"
    dt.mkdir()
    (dt / "model").write_bytes(b"Raspberry Pi 4 Model B Rev 1.4\x00")  # the kernel ends it with NUL
    facts = host_facts(ctx)
    assert facts["has"] == ["nvidia_gpu", "proxmox", "raspberry_pi"]
    assert facts["gpu.count"] == 1


def test_os_release_and_dmi(tmp_path: Path) -> None:
    ctx = _ctx(tmp_path)
    (tmp_path / "etc" / "os-release").write_text(
        'NAME="Ubuntu"\nVERSION_ID="24.04"\nID=ubuntu\n# comment\nPRETTY_NAME=\'Ubuntu 24.04 LTS\'\n'
    )
    dmi = tmp_path / "sys" / "class" / "dmi" / "id"
    dmi.mkdir(parents=True)
    (dmi / "sys_vendor").write_text("LENOVO\n")
    (dmi / "product_name").write_text("20HRCTO1WW\n")
    facts = host_facts(ctx)
    assert (facts["os.id"], facts["os.version"]) == ("ubuntu", "24.04")
    assert os_release(ctx)["PRETTY_NAME"] == "Ubuntu 24.04 LTS"
    assert (facts["dmi.sys_vendor"], facts["dmi.product_name"], facts["dmi.board_vendor"]) == (
        "LENOVO",
        "20HRCTO1WW",
        None,
    )


@pytest.mark.parametrize(
    "cpuinfo, vendor, model",
    [
        (
            "vendor_id\t: GenuineIntel\nmodel name\t: Intel(R) Core(TM) i3-5010U CPU @ 2.10GHz\n",
            "intel",
            "Intel(R) Core(TM) i3-5010U CPU @ 2.10GHz",
        ),
        ("vendor_id\t: AuthenticAMD\nmodel name\t: AMD Ryzen 7 PRO 3700U\n", "amd", "AMD Ryzen 7 PRO 3700U"),
        (
            "processor\t: 0\nmodel name\t: ARMv7 Processor rev 4 (v7l)\nCPU implementer\t: 0x41\n",
            "arm",
            "ARMv7 Processor rev 4 (v7l)",
        ),
    ],
)
def test_cpu_vendor_and_model(cpuinfo: str, vendor: str, model: str, tmp_path: Path) -> None:
    ctx = _ctx(tmp_path)
    (tmp_path / "proc" / "cpuinfo").write_text(cpuinfo)
    facts = host_facts(ctx)
    assert (facts["cpu.vendor"], facts["cpu.model"]) == (vendor, model)


def test_cpu_vendor_of_this_machine() -> None:
    text = Path("/proc/cpuinfo").read_text() if Path("/proc/cpuinfo").exists() else ""
    vendor = cpu_vendor(ProbeContext())
    if "GenuineIntel" in text:
        assert vendor == "intel"
    elif "AuthenticAMD" in text:
        assert vendor == "amd"


# ------------------------------------------------------------------ device id


def _expected(seed: str) -> str:
    return hashlib.sha256(seed.encode()).hexdigest()[:12]


def test_device_id_from_machine_id(tmp_path: Path) -> None:
    ctx = _ctx(tmp_path)
    (tmp_path / "etc" / "machine-id").write_text("3d1219c7c4c5404aaa1f6d2a48adfda4\n")
    # sha256("pilot:3d1219c7c4c5404aaa1f6d2a48adfda4"), first 12 hex digits, worked out once by hand
    assert device_id(ctx) == "775a82d0cb6b" == _expected("pilot:3d1219c7c4c5404aaa1f6d2a48adfda4")


def test_device_id_dbus_fallback(tmp_path: Path) -> None:
    ctx = _ctx(tmp_path)
    (tmp_path / "etc" / "machine-id").write_text("uninitialized\n")  # systemd's first-boot placeholder
    dbus = tmp_path / "var" / "lib" / "dbus"
    dbus.mkdir(parents=True)
    (dbus / "machine-id").write_text("0123456789abcdef0123456789abcdef\n")
    assert device_id(ctx) == "1d90bd5681c8" == _expected("pilot:0123456789abcdef0123456789abcdef")


def test_device_id_mac_fallback_and_failure(tmp_path: Path, monkeypatch) -> None:
    ctx = _ctx(tmp_path)
    addrs = {
        "lo": [SimpleNamespace(family=psutil.AF_LINK, address="00:00:00:00:00:00")],
        "wlan0": [SimpleNamespace(family=psutil.AF_LINK, address="AA-BB-CC-DD-EE-02")],
        "eth0": [SimpleNamespace(family=psutil.AF_LINK, address="aa:bb:cc:dd:ee:01")],
    }
    monkeypatch.setattr(psutil, "net_if_addrs", lambda: addrs)
    assert device_id(ctx) == "8e71d71d9c0a" == _expected("pilot:mac:aa:bb:cc:dd:ee:01")  # no default route: lowest name
    net = tmp_path / "proc" / "net"
    net.mkdir()
    (net / "route").write_text(
        "Iface\tDestination\tGateway\tFlags\tRefCnt\tUse\tMetric\tMask\n"
        "wlan0\t00000000\t0101A8C0\t0003\t0\t0\t600\t00000000\n"
    )
    assert device_id(ctx) == "d4b92791779f" == _expected("pilot:mac:aa:bb:cc:dd:ee:02")  # the default-route interface
    monkeypatch.setattr(psutil, "net_if_addrs", lambda: {"lo": addrs["lo"]})
    with pytest.raises(NoDeviceId):
        device_id(ctx)


def test_device_id_of_this_machine() -> None:
    if not Path("/etc/machine-id").exists():
        pytest.skip("no /etc/machine-id here")
    machine = Path("/etc/machine-id").read_text().strip()
    assert device_id() == _expected("pilot:" + machine)
