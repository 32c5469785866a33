"""System probes against this machine's real psutil (plus recorded cpufreq trees)."""

from __future__ import annotations

import os
import time
from datetime import UTC, datetime
from pathlib import Path

import psutil
import pytest

from pilot.probes import ProbeContext, ProbeUnavailable
from tests.support.probes import bind, read, reason

CTX = ProbeContext()


class Clock:
    """A monotonic clock the test moves by hand."""

    def __init__(self, now: float = 1000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock(monkeypatch) -> Clock:
    """The rate probes (disk, net) built on this clock instead of time.monotonic."""
    import functools

    from pilot.probes import _common, disk, net

    fake = Clock()
    for module in (disk, net):
        monkeypatch.setattr(module, "CounterRate", functools.partial(_common.CounterRate, clock=fake))
    return fake


CPU_TIMES = type(psutil.cpu_times())  # psutil's own sample type, taken before any test replaces cpu_times


def cpu_times(busy: float, idle: float):
    """A psutil cpu_times sample: busy seconds as user time, idle as idle (nothing else)."""
    values = dict.fromkeys(CPU_TIMES._fields, 0.0)
    values.update(user=float(busy), idle=float(idle))
    return CPU_TIMES(**values)


# ------------------------------------------------------------------ cpu


def test_cpu_percent_total_and_per_core_are_percentages() -> None:
    total = bind("cpu.percent", CTX)
    core0 = bind("cpu.percent", CTX, core=0)
    last = bind("cpu.percent", CTX, core=psutil.cpu_count() - 1)
    deadline = time.monotonic() + 0.3
    while time.monotonic() < deadline:  # burn a little CPU so the interval is not empty
        sum(range(10_000))
    for reader in (total, core0, last):
        value = reader()
        assert isinstance(value, float) and 0.0 <= value <= 100.0


def test_cpu_percent_is_the_busy_share_of_the_interval_since_the_last_read(monkeypatch) -> None:
    samples = iter([cpu_times(100, 900), cpu_times(130, 970), cpu_times(130, 970), cpu_times(230, 970)])
    monkeypatch.setattr(psutil, "cpu_times", lambda percpu=False: next(samples))
    reader = bind("cpu.percent", CTX)  # first sample taken here
    assert reader() == 30.0  # 30 busy of 100 seconds
    assert reader() is None  # the same tick again: no interval, no made-up number
    assert reader() == 100.0


def test_cpu_percent_readers_do_not_share_state(monkeypatch) -> None:
    now = [cpu_times(0, 0)]
    monkeypatch.setattr(psutil, "cpu_times", lambda percpu=False: now[0])
    a = bind("cpu.percent", CTX)
    b = bind("cpu.percent", CTX)
    now[0] = cpu_times(50, 50)
    assert a() == 50.0
    for _ in range(20):  # hammer a: with shared state b's interval would collapse to nothing
        a()
    now[0] = cpu_times(50, 150)
    assert a() == 0.0  # a's own interval: 100 idle seconds
    assert b() == 25.0, "b lost its interval to a"  # b's: 50 busy of 200 since it was bound


def test_cpu_percent_unknown_core_is_unavailable() -> None:
    count = psutil.cpu_count()
    why = reason("cpu.percent", CTX, core=count)
    assert why and f"no CPU core {count}" in why
    with pytest.raises(ProbeUnavailable):
        bind("cpu.percent", CTX, core=count)


def test_cpu_load_count(monkeypatch) -> None:
    monkeypatch.setattr(psutil, "getloadavg", lambda: (0.5, 1.234, 3.0))
    assert [read("cpu.load", CTX, period=p) for p in (1, 5, 15)] == [0.5, 1.23, 3.0]  # two decimals
    with pytest.raises(ValueError):
        bind("cpu.load", CTX, period=2)
    assert read("cpu.count", CTX) == psutil.cpu_count(logical=True)
    assert read("cpu.count", CTX, logical=False) == psutil.cpu_count(logical=False)


def test_cpu_frequency_on_this_machine() -> None:
    if reason("cpu.frequency", CTX):
        pytest.skip(reason("cpu.frequency", CTX))
    value = read("cpu.frequency", CTX)
    assert isinstance(value, float) and 10 < value < 10_000
    assert isinstance(read("cpu.frequency", CTX, core=0), float)


def test_cpu_frequency_from_recorded_cpufreq(machine) -> None:
    # server-pcc-cpufreq-partial: only cpu8 (scaling_cur_freq 1200000) and cpu22 (2280000) were recorded.
    ctx = machine("server-pcc-cpufreq-partial")
    assert read("cpu.frequency", ctx, core=8) == 1200.0
    assert read("cpu.frequency", ctx, core=22) == 2280.0
    assert read("cpu.frequency", ctx) == 1740.0  # mean of the two
    assert "no cpufreq folder for CPU 0" in reason("cpu.frequency", ctx, core=0)
    # dstat #74: an old intel_pstate tree with no scaling_cur_freq, only cpuinfo_cur_freq = 830875 kHz.
    assert read("cpu.frequency", machine("intel-dstat74-intel_pstate-legacy")) == 830.875
    # tlp-stat trees recorded no current frequency at all: no reading, not a made-up one.
    assert read("cpu.frequency", machine("intel-i5-6300u-intel_pstate-epp")) is None


def test_cpu_frequency_falls_back_to_proc_cpuinfo(tmp_path: Path) -> None:
    text = Path("/proc/cpuinfo").read_text()
    mhz = [float(line.split(":")[1]) for line in text.splitlines() if line.startswith("cpu MHz")]
    if not mhz:
        pytest.skip("this machine's /proc/cpuinfo has no 'cpu MHz' lines")
    ctx = ProbeContext(sysfs_root=tmp_path, procfs_root=Path("/proc"))
    value = read("cpu.frequency", ctx, core=0)
    assert isinstance(value, float) and value > 0
    empty = ProbeContext(sysfs_root=tmp_path, procfs_root=tmp_path)
    assert "no CPU frequency" in reason("cpu.frequency", empty)


# --------------------------------------------------------------- memory


def test_memory_and_swap() -> None:
    vm = psutil.virtual_memory()
    assert read("memory.total", CTX) == vm.total
    used, available = read("memory.used", CTX), read("memory.available", CTX)
    assert 0 < used <= vm.total and 0 < available <= vm.total
    assert 0.0 < read("memory.used_percent", CTX) <= 100.0
    assert 0.0 <= read("swap.used_percent", CTX) <= 100.0
    assert read("swap.used", CTX) >= 0


# ----------------------------------------------------------------- disk


def test_disk_usage_of_root() -> None:
    total, used, free = read("disk.total", CTX), read("disk.used", CTX), read("disk.free", CTX)
    assert total > 0 and 0 <= used <= total and 0 <= free <= total
    assert used + free <= total * 1.001  # reserved blocks make the sum smaller, never larger
    assert 0.0 <= read("disk.used_percent", CTX, path="/") <= 100.0


def test_disk_path_that_is_no_mount(tmp_path: Path) -> None:
    assert "does not exist" in reason("disk.used", CTX, path=str(tmp_path / "nope"))
    if os.path.ismount(tmp_path):
        pytest.skip("tmp_path is a mount point here")
    assert "not a mount point" in reason("disk.used_percent", CTX, path=str(tmp_path))
    with pytest.raises(ProbeUnavailable):
        bind("disk.free", CTX, path=str(tmp_path))


def test_disk_io_counters_and_rates() -> None:
    per_disk = psutil.disk_io_counters(perdisk=True) or {}
    if not per_disk:
        pytest.skip("no disk I/O counters here")
    device = max(per_disk, key=lambda d: per_disk[d].read_bytes)
    assert read("disk.read_bytes", CTX, device=device) >= per_disk[device].read_bytes
    assert read("disk.write_bytes", CTX, device="/dev/" + device) >= per_disk[device].write_bytes
    assert read("disk.read_bytes", CTX) >= 0
    why = reason("disk.read_bytes", CTX, device="nosuchdisk0")
    assert why and "nosuchdisk0" in why and device in why


def test_disk_rates_are_bytes_per_second_of_the_clock(monkeypatch, clock) -> None:
    from types import SimpleNamespace

    counter = [1_000]
    monkeypatch.setattr(
        psutil, "disk_io_counters", lambda perdisk=False: SimpleNamespace(read_bytes=counter[0], write_bytes=0)
    )
    rate = bind("disk.read_rate", CTX)
    counter[0], clock.now = 5_000, clock.now + 2.0
    assert rate() == 2_000.0  # 4000 bytes in 2 s
    clock.now += 0.5
    assert rate() == 0.0
    counter[0], clock.now = 4_000, clock.now + 1.0
    assert rate() == 0.0  # the counter went back (a reset): never a negative rate


# ------------------------------------------------------------------ net


def test_net_totals_follow_the_globs() -> None:
    nics = psutil.net_io_counters(pernic=True)
    everything = read("net.bytes_recv", CTX, include=["*"], exclude=[])
    default = read("net.bytes_recv", CTX)
    assert everything >= default >= 0
    if "lo" in nics:
        only_lo = read("net.bytes_sent", CTX, include=["lo"], exclude=[])
        assert only_lo >= nics["lo"].bytes_sent
        assert read("net.bytes_sent", CTX, include=["lo"]) == 0  # lo is excluded by default
    assert read("net.bytes_sent", CTX, include=["no-such-nic*"]) == 0
    assert "no network interface matches" in reason("net.bytes_sent", CTX, include=["no-such-nic*"])


def test_net_sum_is_exact_over_matching_interfaces(monkeypatch) -> None:
    class Counters:
        def __init__(self, sent: int, recv: int) -> None:
            self.bytes_sent, self.bytes_recv = sent, recv

    fixed = {
        "lo": Counters(5, 5),
        "eth0": Counters(100, 1000),
        "wlan0": Counters(20, 200),
        "docker0": Counters(7, 7),
        "veth12ab": Counters(9, 9),
        "br-3f2": Counters(3, 3),
    }
    monkeypatch.setattr(psutil, "net_io_counters", lambda pernic=False: fixed)
    assert read("net.bytes_sent", CTX) == 120
    assert read("net.bytes_recv", CTX, include=["wl*"]) == 200
    assert read("net.bytes_sent", CTX, exclude=["wlan0"]) == 100 + 5 + 7 + 9 + 3
    assert read("net.bytes_sent", CTX, include=["*"], exclude=[]) == 144


def test_net_rates_do_not_spike_when_an_interface_goes(monkeypatch, clock) -> None:
    class C:
        def __init__(self, sent: int) -> None:
            self.bytes_sent = self.bytes_recv = sent

    samples = iter([{"eth0": C(1000), "wlan0": C(5000)}, {"eth0": C(3000)}, {"eth0": C(500)}])
    monkeypatch.setattr(psutil, "net_io_counters", lambda pernic=False: next(samples))
    rate = bind("net.send_rate", CTX)
    clock.now += 4.0
    assert rate() == 500.0  # wlan0 vanished: only eth0's +2000 counts, over 4 s
    clock.now += 1.0
    assert rate() == 0.0  # eth0 reset (3000 -> 500): nothing, not a negative rate


def test_net_rates_on_this_machine(clock) -> None:
    """This host's real counters through the rate probes: lo's own traffic, made by the test, shows."""
    import socket

    for name in ("net.send_rate", "net.recv_rate"):
        if "lo" not in psutil.net_io_counters(pernic=True):
            pytest.skip("no loopback interface here")
        rate = bind(name, CTX, include=["lo"], exclude=[])
        with (
            socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as rx,
            socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as tx,
        ):
            rx.bind(("127.0.0.1", 0))
            for _ in range(20):
                tx.sendto(b"x" * 1000, rx.getsockname())
        clock.now += 1.0
        assert rate() >= 20 * 1000, name  # at least the 20 kB sent over lo in that (fake) second


def _default_v4(route: str) -> str | None:
    for line in route.splitlines()[1:]:
        f = line.split()
        if f[1] == "00000000" and f[7] == "00000000":
            return f[0]
    return None


def test_net_ip_matches_psutil_for_the_default_interface() -> None:
    route = Path("/proc/net/route")
    iface = _default_v4(route.read_text()) if route.exists() else None
    if iface is None:
        pytest.skip("no IPv4 default route here")
    assert read("net.default_interface", CTX) == iface
    expected = [a.address for a in psutil.net_if_addrs()[iface] if a.family.name == "AF_INET"]
    assert read("net.ip", CTX) == expected[0]
    assert read("net.ip", CTX, interface=iface) == expected[0]
    v6 = read("net.ip", CTX, family="ipv6")
    assert v6 is None or not v6.lower().startswith("fe80")
    assert "no network interface 'nosuch0'" in reason("net.ip", CTX, interface="nosuch0")


def test_default_route_choice_from_recorded_proc(tmp_path: Path) -> None:
    net = tmp_path / "net"
    net.mkdir()
    # Lowest metric wins; a non-default route and a down route (flags 0) are ignored.
    (net / "route").write_text(
        "Iface\tDestination\tGateway \tFlags\tRefCnt\tUse\tMetric\tMask\t\tMTU\tWindow\tIRTT\n"
        "wlan0\t00000000\t0101A8C0\t0003\t0\t0\t600\t00000000\t0\t0\t0\n"
        "eth0\t00000000\t0100A8C0\t0003\t0\t0\t100\t00000000\t0\t0\t0\n"
        "tun0\t00000000\t00000000\t0000\t0\t0\t1\t00000000\t0\t0\t0\n"
        "eth0\t0000A8C0\t00000000\t0001\t0\t0\t100\t00FFFFFF\t0\t0\t0\n"
    )
    # /proc/net/ipv6_route as recorded on this test VM: the lo default is a reject route (flags 0x200).
    (net / "ipv6_route").write_text(
        "00000000000000000000000000000000 00 00000000000000000000000000000000 00 fd000000000000000000000000000001"
        " 00000400 00000002 00000000 00000003     eth0\n"
        "00000000000000000000000000000000 00 00000000000000000000000000000000 00 00000000000000000000000000000000"
        " ffffffff 00000001 00000000 00200200       lo\n"
    )
    ctx = ProbeContext(sysfs_root=tmp_path, procfs_root=tmp_path)
    from pilot.probes.net import default_interface

    assert default_interface(ctx, "ipv4") == "eth0"
    assert default_interface(ctx, "ipv6") == "eth0"
    (net / "route").write_text("Iface\tDestination\tGateway \tFlags\tRefCnt\tUse\tMetric\tMask\n")
    (net / "ipv6_route").write_text("")
    assert default_interface(ctx, "ipv4") is None
    assert "no default route" in reason("net.ip", ctx)


def test_ipv6_skips_link_local_and_prefers_global(monkeypatch) -> None:
    import socket
    from types import SimpleNamespace as A

    addrs = {
        "eth0": [
            A(family=socket.AF_INET6, address="fe80::1%eth0"),
            A(family=socket.AF_INET6, address="fd00::2"),
            A(family=socket.AF_INET6, address="2a01:4f8:c0c:1::5"),
        ]
    }
    monkeypatch.setattr(psutil, "net_if_addrs", lambda: addrs)
    assert read("net.ip", CTX, family="ipv6", interface="eth0") in ("2a01:4f8:c0c:1::5",)
    addrs["eth0"] = addrs["eth0"][:2]
    assert read("net.ip", CTX, family="ipv6", interface="eth0") == "fd00::2"
    addrs["eth0"] = addrs["eth0"][:1]
    assert read("net.ip", CTX, family="ipv6", interface="eth0") is None


# --------------------------------------------------------------- system


def test_system_probes() -> None:
    uptime = read("system.uptime", CTX)
    assert isinstance(uptime, int) and abs(uptime - (time.time() - psutil.boot_time())) < 5
    boot = datetime.fromisoformat(read("system.boot_time", CTX))
    assert boot.tzinfo is not None and boot.utcoffset().total_seconds() == 0
    assert abs(boot.timestamp() - psutil.boot_time()) < 1
    assert boot <= datetime.now(UTC)
    assert read("system.processes", CTX) >= 1
    users = read("system.users", CTX)
    assert isinstance(users, int) and users == len({u.name for u in psutil.users()})
