"""Host facts for pack matching (`pilot detect`, `match:` in pack.yaml) and the device id.

Facts are a flat dict of plain values so a pack's `match:` can compare them
directly. Every fact is read defensively: a fact that cannot be read is None
(or absent from `has`), never an exception, because `pilot detect` must work
on any machine.
"""

from __future__ import annotations

import hashlib
import platform
import re
import socket
from typing import Any

import psutil

from pilot.probes._context import ProbeContext
from pilot.probes._sysfs import exists, is_dir, list_dir, read_text

_ARCH = {"amd64": "x86_64", "x64": "x86_64", "arm64": "aarch64", "i686": "x86", "i386": "x86"}


def os_release(ctx: ProbeContext) -> dict[str, str]:
    """KEY=value pairs of os-release (etc/os-release, else usr/lib/os-release), quotes removed."""
    text = read_text(ctx.etc_root / "os-release")
    if text is None:
        text = read_text(ctx.etc_root.parent / "usr" / "lib" / "os-release")
    out: dict[str, str] = {}
    for line in (text or "").splitlines():
        key, sep, value = line.strip().partition("=")
        if not sep or key.startswith("#"):
            continue
        value = value.strip()
        if len(value) >= 2 and value[0] == value[-1] and value[0] in "\"'":
            value = re.sub(r"\\(.)", r"\1", value[1:-1])
        out[key] = value
    return out


def _cpuinfo(ctx: ProbeContext) -> dict[str, str]:
    """The first value of each key in /proc/cpuinfo."""
    out: dict[str, str] = {}
    for line in (read_text(ctx.procfs_root / "cpuinfo") or "").splitlines():
        key, sep, value = line.partition(":")
        if sep:
            out.setdefault(key.strip(), value.strip())
    return out


def cpu_vendor(ctx: ProbeContext, info: dict[str, str] | None = None) -> str:
    """intel, amd, arm or another lower-case vendor name.

    x86 vendor_id decides; an ARM 'CPU implementer' line means arm whoever made the
    core (Arm, Apple, Qualcomm: packs match the architecture); otherwise the machine type.
    """
    info = _cpuinfo(ctx) if info is None else info
    vendor = info.get("vendor_id", "")
    if not vendor and platform.system() == "Windows":
        vendor = platform.processor()
    if "GenuineIntel" in vendor or "Intel" in vendor:
        return "intel"
    if "AuthenticAMD" in vendor or "AMD" in vendor:
        return "amd"
    if "CPU implementer" in info:
        return "arm"
    machine = platform.machine().lower()
    if machine.startswith(("arm", "aarch64")):
        return "arm"
    if platform.system() == "Darwin" and machine == "x86_64":
        return "intel"  # every x86 Mac has an Intel CPU; macOS has no /proc/cpuinfo
    if vendor:
        return vendor.lower()
    return "unknown"


def _cpu_model(info: dict[str, str]) -> str | None:
    for key in ("model name", "Processor", "cpu model", "cpu"):
        if info.get(key):
            return info[key]
    return platform.processor() or None


def _dt_model(ctx: ProbeContext) -> str:
    for path in (ctx.procfs_root / "device-tree" / "model", ctx.sys("firmware", "devicetree", "base", "model")):
        text = read_text(path)
        if text:
            return text.replace("\x00", "").strip()
    return ""


def _has(ctx: ProbeContext, gpus: int) -> list[str]:
    from pilot.probes.battery import batteries  # noqa: PLC0415 - keep `import pilot.facts` light

    has = []
    if batteries(ctx):
        has.append("battery")
    if gpus > 0:
        has.append("nvidia_gpu")
    if list_dir(ctx.sys("class", "hwmon")):
        has.append("hwmon")
    if any(n.startswith("thermal_zone") for n in list_dir(ctx.sys("class", "thermal"))):
        has.append("thermal_zone")
    cpu = ctx.sys("devices", "system", "cpu")
    if any(re.fullmatch(r"cpu\d+", n) and is_dir(cpu / n / "cpufreq") for n in list_dir(cpu)) or any(
        n.startswith("policy") for n in list_dir(cpu / "cpufreq")
    ):
        has.append("cpufreq")
    if list_dir(ctx.sys("class", "backlight")):
        has.append("backlight")
    if exists(ctx.etc_root / "pve"):
        has.append("proxmox")
    if "Raspberry Pi" in _dt_model(ctx):
        has.append("raspberry_pi")
    return sorted(has)


def _dmi(ctx: ProbeContext, name: str) -> str | None:
    text = read_text(ctx.sys("class", "dmi", "id", name))
    return (text.strip() or None) if text is not None else None


def host_facts(ctx: ProbeContext | None = None) -> dict[str, Any]:
    """This machine's facts: os, os.id, os.version, arch, hostname, dmi.*, cpu.*, has, gpu.count."""
    from pilot.probes.gpu import gpu_count  # noqa: PLC0415 - imports NVML lazily itself

    ctx = ctx or ProbeContext()
    release = os_release(ctx)
    info = _cpuinfo(ctx)
    machine = platform.machine().lower()
    gpus = gpu_count(ctx)
    return {
        "os": platform.system().lower(),
        "os.id": release.get("ID"),
        "os.version": release.get("VERSION_ID"),
        "arch": _ARCH.get(machine, machine),
        "hostname": socket.gethostname(),
        "dmi.sys_vendor": _dmi(ctx, "sys_vendor"),
        "dmi.product_name": _dmi(ctx, "product_name"),
        "dmi.board_vendor": _dmi(ctx, "board_vendor"),
        "cpu.vendor": cpu_vendor(ctx, info),
        "cpu.model": _cpu_model(info),
        "has": _has(ctx, gpus),
        "gpu.count": gpus,
    }


# ----------------------------------------------------------------- device id


def _machine_id(ctx: ProbeContext) -> str | None:
    for path in (ctx.etc_root / "machine-id", ctx.etc_root.parent / "var" / "lib" / "dbus" / "machine-id"):
        text = (read_text(path) or "").strip()
        if text and text != "uninitialized":
            return text
    return None


def _primary_mac(ctx: ProbeContext) -> str | None:
    """MAC of the default-route interface, else the lowest-named interface with a real MAC."""
    from pilot.probes.net import default_interface  # noqa: PLC0415

    macs: dict[str, str] = {}
    for iface, addrs in psutil.net_if_addrs().items():
        for addr in addrs:
            mac = (addr.address or "").lower().replace("-", ":")
            if (
                addr.family == psutil.AF_LINK
                and re.fullmatch(r"([0-9a-f]{2}:){5}[0-9a-f]{2}", mac)
                and mac != "00:00:00:00:00:00"
            ):
                macs[iface] = mac
    preferred = default_interface(ctx)
    if preferred in macs:
        return macs[preferred]
    return macs[sorted(macs)[0]] if macs else None


class NoDeviceId(RuntimeError):
    """Neither a machine-id nor a MAC address: the profile has to set device.id itself."""


def device_id(ctx: ProbeContext | None = None) -> str:
    """A stable, non-identifying id: first 12 hex of sha256("pilot:" + machine-id).

    Never the hostname (it changes, and it would leak into topics). Without a
    machine-id (Windows, some containers) the primary MAC address is hashed
    instead, as "pilot:mac:<mac>"; that id changes if the network card does.
    With neither, NoDeviceId is raised rather than inventing an id that would
    change on the next start and leave a ghost device in Home Assistant.
    """
    ctx = ctx or ProbeContext()
    machine = _machine_id(ctx)
    if machine:
        seed = "pilot:" + machine
    else:
        try:
            mac = _primary_mac(ctx)
        except (OSError, psutil.Error):
            mac = None
        if not mac:
            raise NoDeviceId("no /etc/machine-id and no MAC address to derive a device id from; set device.id")
        seed = f"pilot:mac:{mac}"
    return hashlib.sha256(seed.encode()).hexdigest()[:12]
