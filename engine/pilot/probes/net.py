"""Network traffic and address probes (psutil, plus the routing table in procfs).

Traffic is summed over the interfaces that match include globs and none of the
exclude globs, so container bridges and veth pairs do not count a packet twice
by default. The default interface is re-read on every reading: a laptop that
moves from Wi-Fi to Ethernet reports the new one.
"""

from __future__ import annotations

import ipaddress
import socket
from collections.abc import Callable, Iterable
from fnmatch import fnmatchcase
from typing import Any

import psutil

from pilot.params import params, prop
from pilot.probes._common import CounterRate, Reader, guarded, reason_of
from pilot.probes._context import ProbeContext
from pilot.probes._sysfs import read_text
from pilot.registry import PROBES

DEFAULT_EXCLUDE = ["lo", "docker*", "veth*", "br-*", "virbr*"]
_GLOBS = {"type": "string", "minLength": 1}
_FILTER = {
    "include": prop(
        "array",
        'Interface name globs to count (fnmatch: *, ?, [..]), e.g. ["eth*", "wl*"].',
        items=_GLOBS,
        default=["*"],
    ),
    "exclude": prop(
        "array", "Interface name globs to leave out; applied after include.", items=_GLOBS, default=DEFAULT_EXCLUDE
    ),
}
_FAMILY = prop("string", "Address family: ipv4 or ipv6.", enum=["ipv4", "ipv6"], default="ipv4")
_RTF_UP = 0x1
_RTF_REJECT = 0x200


def matching_interfaces(
    names: Iterable[str], include: Iterable[str] = ("*",), exclude: Iterable[str] = DEFAULT_EXCLUDE
) -> list[str]:
    """The names matched by some include glob and by no exclude glob, sorted."""
    inc, exc = list(include), list(exclude)
    return sorted(n for n in names if any(fnmatchcase(n, g) for g in inc) and not any(fnmatchcase(n, g) for g in exc))


def _net_sampler(include: list[str], exclude: list[str], field: str) -> Callable[[], dict[str, int]]:
    def sample() -> dict[str, int]:
        counters = psutil.net_io_counters(pernic=True) or {}
        return {n: getattr(counters[n], field) for n in matching_interfaces(counters, include, exclude)}

    return sample


def _filter_reason(
    ctx: ProbeContext, include: list[str] | None = None, exclude: list[str] | None = None, **_: Any
) -> str | None:
    def check() -> str | None:
        names = list(psutil.net_io_counters(pernic=True) or {})
        if not matching_interfaces(names, include or ["*"], DEFAULT_EXCLUDE if exclude is None else exclude):
            return f"no network interface matches the include/exclude globs (interfaces: {', '.join(names) or 'none'})"
        return None

    return reason_of(check)


def _register_traffic(name: str, field: str, rate: bool, doc: str) -> None:
    def factory(ctx: ProbeContext, include: list[str] | None = None, exclude: list[str] | None = None) -> Reader:
        sample = _net_sampler(list(include or ["*"]), list(DEFAULT_EXCLUDE if exclude is None else exclude), field)
        if rate:
            return guarded(CounterRate(sample))
        return guarded(lambda: sum(sample().values()))

    factory.__doc__ = doc
    factory.__name__ = name.replace(".", "_")
    if rate:
        defaults = {"unit": "B/s", "device_class": "data_rate", "state_class": "measurement"}
    else:
        defaults = {"unit": "B", "device_class": "data_size", "state_class": "total_increasing"}
    defaults.update(
        {
            "platform": "sensor",
            "icon": "mdi:upload-network" if "sent" in field else "mdi:download-network",
            "precision": 0,
        }
    )
    PROBES.register(name, params=params(_FILTER), defaults=defaults, available=_filter_reason)(factory)


for _name, _field, _rate, _doc in (
    ("net.bytes_sent", "bytes_sent", False, "Bytes sent since boot, summed over the matching interfaces."),
    ("net.bytes_recv", "bytes_recv", False, "Bytes received since boot, summed over the matching interfaces."),
    (
        "net.send_rate",
        "bytes_sent",
        True,
        "Upload rate in bytes per second over the matching interfaces, since this sensor's previous reading.\n\n"
        "Each interface's counter is differenced on its own, so an interface that appears, disappears or resets "
        "between two readings adds nothing instead of a spike. The first reading covers the time since binding.",
    ),
    (
        "net.recv_rate",
        "bytes_recv",
        True,
        "Download rate in bytes per second over the matching interfaces, since this sensor's previous reading.\n\n"
        "Computed like net.send_rate.",
    ),
):
    _register_traffic(_name, _field, _rate, _doc)


# ----------------------------------------------------------- default route


def _route_v4(ctx: ProbeContext) -> str | None:
    text = read_text(ctx.procfs_root / "net" / "route")
    if text is None:
        return None
    best: tuple[int, str] | None = None
    for line in text.splitlines()[1:]:
        f = line.split()
        if len(f) < 8:
            continue
        try:
            flags, metric = int(f[3], 16), int(f[6])
        except ValueError:
            continue
        if f[1] == "00000000" and f[7] == "00000000" and flags & _RTF_UP and not flags & _RTF_REJECT:
            if best is None or metric < best[0]:
                best = (metric, f[0])
    return best[1] if best else ""


def _route_v6(ctx: ProbeContext) -> str | None:
    text = read_text(ctx.procfs_root / "net" / "ipv6_route")
    if text is None:
        return None
    best: tuple[int, str] | None = None
    for line in text.splitlines():
        f = line.split()
        if len(f) < 10:
            continue
        try:
            metric, flags = int(f[5], 16), int(f[8], 16)
        except ValueError:
            continue
        if set(f[0]) == {"0"} and f[1] == "00" and f[9] != "lo" and flags & _RTF_UP and not flags & _RTF_REJECT:
            if best is None or metric < best[0]:
                best = (metric, f[9])
    return best[1] if best else ""


def _route_by_socket(family: str) -> str | None:
    """Non-Linux fallback: the interface holding the source address the OS picks for an outside host.

    A UDP connect() sends no packet; it only asks the routing table.
    """
    af, target = (socket.AF_INET, "198.51.100.1") if family == "ipv4" else (socket.AF_INET6, "2001:db8::1")
    try:
        with socket.socket(af, socket.SOCK_DGRAM) as sock:
            sock.connect((target, 9))
            local = sock.getsockname()[0]
    except OSError:
        return None
    for iface, addrs in psutil.net_if_addrs().items():
        if any(a.family == af and a.address.split("%")[0] == local for a in addrs):
            return iface
    return None


def default_interface(ctx: ProbeContext, family: str = "ipv4") -> str | None:
    """The interface of the default route (lowest metric), from /proc/net/route or /proc/net/ipv6_route.

    Without those files (not Linux) the OS is asked through a UDP socket. An IPv6
    query with no IPv6 default route falls back to the IPv4 default interface.
    """
    found = _route_v4(ctx) if family == "ipv4" else _route_v6(ctx)
    if found is None:
        found = _route_by_socket(family)
    if not found and family == "ipv6":
        found = default_interface(ctx, "ipv4")
    return found or None


def interface_address(iface: str, family: str = "ipv4") -> str | None:
    """The interface's first address of a family; for IPv6 link-local is skipped and global beats ULA."""
    af = socket.AF_INET if family == "ipv4" else socket.AF_INET6
    candidates = []
    for addr in psutil.net_if_addrs().get(iface, []):
        if addr.family != af:
            continue
        text = addr.address.split("%")[0]
        try:
            ip = ipaddress.ip_address(text)
        except ValueError:
            continue
        if ip.is_link_local or ip.is_unspecified:
            continue
        candidates.append((ip.is_private, text))
    if family == "ipv6":
        candidates.sort(key=lambda c: c[0])
    return candidates[0][1] if candidates else None


def _ip_reason(ctx: ProbeContext, family: str = "ipv4", interface: str | None = None, **_: Any) -> str | None:
    def check() -> str | None:
        if interface is not None:
            names = psutil.net_if_addrs()
            if interface not in names:
                return f"no network interface {interface!r} (found: {', '.join(sorted(names)) or 'none'})"
            return None
        if default_interface(ctx, family) is None:
            return f"no default route ({family}) to pick an interface from; name one with interface:"
        return None

    return reason_of(check)


@PROBES.register(
    "net.ip",
    params=params(
        {
            "family": _FAMILY,
            "interface": prop("string", "Interface to report; leave out for the default-route interface.", minLength=1),
        }
    ),
    defaults={"platform": "sensor", "icon": "mdi:ip-network"},
    available=_ip_reason,
)
def net_ip(ctx: ProbeContext, family: str = "ipv4", interface: str | None = None) -> Reader:
    """IP address of an interface, by default of the one holding the default route.

    IPv6 skips link-local (fe80::/10) addresses and prefers a global address to a
    unique-local (fd00::/8) one.
    """
    if family not in ("ipv4", "ipv6"):
        raise ValueError(f"family must be ipv4 or ipv6, not {family!r}")

    def read() -> str | None:
        iface = interface or default_interface(ctx, family)
        return interface_address(iface, family) if iface else None

    return guarded(read)


@PROBES.register(
    "net.default_interface",
    params=params({"family": _FAMILY}),
    defaults={"platform": "sensor", "icon": "mdi:lan"},
    available=lambda ctx, family="ipv4", **_: reason_of(
        lambda: None if default_interface(ctx, family) else f"no default route ({family})"
    ),
)
def net_default_interface(ctx: ProbeContext, family: str = "ipv4") -> Reader:
    """Name of the network interface holding the default route (e.g. eth0, wlan0)."""
    return guarded(lambda: default_interface(ctx, family))
