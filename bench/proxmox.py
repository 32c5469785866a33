"""What 200 Proxmox VE guests as child devices cost the agent, the broker and Home Assistant.

What runs (a private mosquitto on a free loopback port and the fake Proxmox VE API of testkit/proxmox.py,
HTTPS with its own CA, in this process; nothing else):

* the cluster: 200 guests on 5 nodes, 150 QEMU VMs and 50 LXC containers, 10 % of them stopped. A timer
  in this process moves the running ones every `--tick` seconds the way real guests move: a random walk on
  CPU and memory around each guest's own level, disk and network byte counters that grow at each guest's
  own rate (varying tick to tick), uptime.
* four agents at the same time (`pilot run --dry-run`, each its own device id and state directory), all
  on the same base profile (`extends: [base/linux]`):
    - `base`: the base profile alone;
    - `guests`: plus `children.guests` (`proxmox.guests`, the source's usual sensors and commands, no
      deadband), polled every 30 s (`--quick`: 5 s);
    - `guests-cpu2`: the same with `min_change: 2` on cpu;
    - `guests-tuned`: deadbands on every field that moves (cpu 2 %, memory 2 % / 100 MB, disk and network
      rates 1 MB/s, uptime 1 h).
  After every guest agent has announced all 200 devices and a settling pause, a window of `--window`
  seconds (default 300; `--quick`: 60) measures each agent's CPU (utime+stime of its process tree,
  schedstat beside it), RSS (median of samples every 5 s) and messages per minute on `pilot/<id>/guests/#`.
  "Added" CPU and RSS are a guest agent's minus `base`'s, from the same window.
* discovery payloads: each guest's retained device config (`homeassistant/device/<id>_guests_<vmid>/config`)
  as the `guests` agent published it, in bytes: min / median / max and the total.
* appearance latency: one more agent polling every `--appear-every` seconds (default 2); guests are added
  to the fake one at a time, at random moments, and the time from the addition to its discovery config on
  the broker is measured (p50 / max). With `every: 30s` it is dominated by the poll interval (0-30 s more).

Nothing is asserted: timings on a shared machine are evidence, not tests.

    python bench/proxmox.py [--quick] [--window 300] [--every 30] [--json] [--keep]
"""

from __future__ import annotations

import argparse
import json
import os
import random
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(REPO), str(REPO / "engine")]

from bench._proc import finish, summary, table  # noqa: E402
from bench.agent import (  # noqa: E402
    context_switches,
    cpu_seconds,
    cpu_seconds_precise,
    fmt,
    memory_mb,
    pilot_agent,
    print_notes,
    ready,
    sleep_until,
    source_state,
)
from pilot.sources.proxmox import DEFAULT_SENSORS  # noqa: E402 - the usual set, which the variants narrow
from testkit.broker import Mosquitto, Watcher  # noqa: E402
from testkit.proxmox import FakeProxmox  # noqa: E402

GUESTS, NODES, LXC, STOPPED_EVERY = 200, 5, 50, 10  # every 10th guest stopped
HA_CONFIG_ADVICE = 64 * 1024  # a conservative ceiling for one discovery payload (see the docs' note)
SETTLE = 10.0  # seconds after the last discovery before the window opens
SAMPLE = 5.0  # seconds between RSS samples
APPEARANCES = 8
COUNTERS = ("diskread", "diskwrite", "netin", "netout")
VARIANTS: dict[str, dict[str, dict] | None] = {
    "base": None,
    "guests": {},
    "guests-cpu2": {"cpu": {"min_change": 2}},
    "guests-tuned": {
        "cpu": {"min_change": 2},
        "memory_percent": {"min_change": 2},
        "memory_used": {"min_change": 100_000_000},
        "disk_read": {"min_change": 1_000_000},
        "disk_write": {"min_change": 1_000_000},
        "network_in": {"min_change": 1_000_000},
        "network_out": {"min_change": 1_000_000},
        "uptime": {"min_change": 3600},
    },
}


# ------------------------------------------------------------------ the cluster


class Cluster:
    """200 guests on the fake API, moved by a timer like real ones."""

    def __init__(self, pve: FakeProxmox, seed: int = 15) -> None:
        self.pve = pve
        self.rng = random.Random(seed)
        self.guests: dict[int, dict] = {}
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()

    def add(self, vmid: int, index: int, status: str | None = None) -> None:
        rng = self.rng
        kind = "lxc" if index % 4 == 3 else "qemu"  # 1 in 4: 50 of 200
        status = status or ("stopped" if index % STOPPED_EVERY == 7 else "running")
        maxmem = rng.choice((1, 2, 4, 8, 16)) * 1024**3
        running = status == "running"
        guest: dict = {
            "name": f"{'ct' if kind == 'lxc' else 'vm'}-{vmid}",
            "node": f"pve{index % NODES + 1}",
            "kind": kind,
            "status": status,
            "cpu": rng.uniform(0.01, 0.3) if running else 0.0,
            "mem": int(maxmem * rng.uniform(0.2, 0.8)) if running else 0,
            "maxmem": maxmem,
            # bytes/s: median about 22 kB/s, a long tail of busy guests
            "rates": {k: rng.lognormvariate(10, 2) if running else 0.0 for k in COUNTERS},
            "counters": {k: rng.randrange(10**9, 10**11) for k in COUNTERS},
            "uptime": rng.randrange(3600, 90 * 86400) if running else 0,
        }
        guest["cpu_level"], guest["mem_level"] = guest["cpu"], guest["mem"]
        with self._lock:
            self.guests[vmid] = guest
            self.pve.add_guest(
                vmid,
                guest["name"],
                node=guest["node"],
                kind=kind,
                status=status,
                cpu=guest["cpu"],
                maxcpu=rng.choice((1, 2, 4)),
                mem=guest["mem"],
                maxmem=maxmem,
                uptime=guest["uptime"],
                **guest["counters"],
            )

    def populate(self) -> None:
        for i in range(GUESTS):
            self.add(100 + i, i)

    def tick(self, seconds: float) -> None:
        rng = self.rng
        with self._lock:
            for vmid, g in self.guests.items():
                if g["status"] != "running":
                    continue
                # around each guest's own level (mean-reverting), not drifting off: CPU about 1.4 points
                # and memory about 0.7 % of its size either side; I/O rates vary by tick around their level
                g["cpu"] = min(1.0, max(0.0, g["cpu"] + 0.3 * (g["cpu_level"] - g["cpu"]) + rng.gauss(0, 0.01)))
                mem = g["mem"] + 0.3 * (g["mem_level"] - g["mem"]) + rng.gauss(0, 0.005) * g["maxmem"]
                g["mem"] = int(min(g["maxmem"], max(0.05 * g["maxmem"], mem)))
                g["uptime"] += int(seconds)
                for key, level in g["rates"].items():
                    g["counters"][key] += int(level * rng.lognormvariate(0, 0.5) * seconds)
                for key in ("cpu", "mem", "uptime"):
                    self.pve.set_field(vmid, key, g[key])
                for key, value in g["counters"].items():
                    self.pve.set_field(vmid, key, value)

    def start(self, every: float) -> None:
        def loop() -> None:
            while not self._stop.wait(every):
                self.tick(every)

        self._thread = threading.Thread(target=loop, name="cluster", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread:
            self._thread.join(5)


# ------------------------------------------------------------------ profiles and agents


def profile(path: Path, device_id: str, pve: FakeProxmox | None, every: float, sensors: dict | None) -> Path:
    lines = ["pilot: 1", "extends: [base/linux]", f"device: {{id: {device_id}, name: Bench {device_id}}}"]
    if pve is not None:
        args = {"url": pve.url, "token_id": pve.token_id, "token_file": str(pve.token_file), "ca_file": pve.ca_file}
        lines += [
            "children:",
            "  guests:",
            "    source: proxmox.guests",
            f"    every: {every:g}s",
            f"    args: {json.dumps(args)}",
        ]
        if sensors:
            chosen = {name: sensors.get(name, {}) for name in DEFAULT_SENSORS}
            lines.append(f"    sensors: {json.dumps(chosen)}")
    path.write_text("\n".join(lines) + "\n")
    return path


def dev_id(name: str) -> str:
    return "bpx" + name.replace("guests", "g").replace("-", "")


def guest_configs(watcher: Watcher, device: str, since: float) -> dict[str, bytes]:
    """The latest non-empty guest discovery payload per topic, published at or after `since`."""
    prefix = f"homeassistant/device/{device}_guests_"
    out = {}
    for m in list(watcher.messages):
        if m.at >= since and m.topic.startswith(prefix) and m.topic.endswith("/config") and m.payload:
            out[m.topic] = m.payload
    return out


def wait_all_guests(watcher: Watcher, device: str, since: float, count: int, timeout: float) -> float | None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if len(guest_configs(watcher, device, since)) >= count:
            return time.monotonic() - since
        time.sleep(0.5)
    return None


def snapshot(pid: int) -> tuple[float, float, int]:
    return cpu_seconds(pid), cpu_seconds_precise(pid), context_switches(pid)


def measure(args: argparse.Namespace, work: Path) -> dict:
    notes: list[str] = []
    broker = Mosquitto().start()
    watcher = Watcher(broker.port, topics=("homeassistant/#", "pilot/#", "bench/#")).start()
    (work / "pve").mkdir()
    pve = FakeProxmox(work / "pve")
    pve.start()
    cluster = Cluster(pve)
    cluster.populate()
    cluster.start(args.tick)
    agents = {}
    figures: dict[str, dict] = {}
    try:
        ready(watcher)
        for name, sensors in VARIANTS.items():
            device = dev_id(name)
            path = profile(work / f"{name}.yaml", device, None if sensors is None else pve, args.every, sensors)
            agent = pilot_agent(path, broker.port, work / f"{name}-state", work, device, "--dry-run", name=name)
            agent.start()
            agents[name] = agent
            figures[name] = {"device": device}
        for name, agent in agents.items():
            device = figures[name]["device"]
            if VARIANTS[name] is None:
                found = watcher.wait_for(
                    lambda m, d=device: m.topic == f"homeassistant/device/{d}/config", 60, since=agent.started
                )
                took = None if found is None else found.at - agent.started
            else:
                took = wait_all_guests(watcher, device, agent.started, GUESTS, 60 + 2 * args.every)
            figures[name]["all_discovered_s"] = took
            if took is None:
                notes.append(f"{name}: not every device announced in time: {agent.tail(lines=5)}")
        time.sleep(SETTLE)
        live = {n: a for n, a in agents.items() if a.running()}
        before = {n: snapshot(a.pid) for n, a in live.items()}
        start = time.monotonic()
        rss: dict[str, list[float]] = {n: [] for n in live}
        while time.monotonic() < start + args.window:
            for n, a in live.items():
                if a.running():
                    rss[n].append(memory_mb(a.pid)["rss_mb"])
            sleep_until(min(start + args.window, time.monotonic() + SAMPLE))
        after = {n: snapshot(a.pid) for n, a in live.items() if a.running()}
        end = time.monotonic()
        seconds = end - start
        messages = [m for m in list(watcher.messages) if start <= m.at <= end]
        for n in live:
            if n not in after:
                notes.append(f"{n} died during the window: {agents[n].tail(lines=5)}")
                continue
            device = figures[n]["device"]
            mine = [m for m in messages if m.topic.startswith(f"pilot/{device}/guests/")]
            states = [m for m in mine if m.topic.endswith("/state")]
            figures[n].update(
                window_s=seconds,
                cpu_s_per_h=(after[n][0] - before[n][0]) * 3600 / seconds,
                cpu_s_per_h_schedstat=(after[n][1] - before[n][1]) * 3600 / seconds,
                wakeups_per_s=(after[n][2] - before[n][2]) / seconds,
                rss_mb=statistics.median(rss[n]) if rss[n] else None,
                rss_samples=len(rss[n]),
                threads=memory_mb(agents[n].pid)["threads"],
                guest_msgs_per_min=len(mine) * 60 / seconds,
                guest_states_per_min=len(states) * 60 / seconds,
                guest_kb_per_min=sum(len(m.payload) for m in mine) / 1024 * 60 / seconds,
            )
        sizes = [len(p) for p in guest_configs(watcher, figures["guests"]["device"], 0.0).values()]
        discovery = {"count": len(sizes), "total_bytes": sum(sizes)}
        if sizes:
            discovery.update(min=min(sizes), median=statistics.median(sizes), max=max(sizes))
        notes.append(f"the fake API answered {len(pve.requests)} requests so far (one per poll per agent)")
    finally:
        for agent in agents.values():
            agent.stop()
    try:
        appear = appearance(args, work, broker, watcher, pve, cluster, notes)
    finally:
        cluster.stop()
        pve.stop()
        watcher.stop()
        broker.cleanup()
    running = sum(1 for g in cluster.guests.values() if g["status"] == "running")
    return {
        "mode": "quick" if args.quick else "full",
        "every_s": args.every,
        "window_s": args.window,
        "tick_s": args.tick,
        "guests": GUESTS,
        "running": running,
        "agents": figures,
        "discovery": discovery,
        "appearance": appear,
        "notes": notes,
    }


def appearance(
    args: argparse.Namespace,
    work: Path,
    broker: Mosquitto,
    watcher: Watcher,
    pve: FakeProxmox,
    cluster: Cluster,
    notes: list[str],
) -> dict:
    """Seconds from a guest's addition to the API to its discovery config on the broker."""
    device = "bpxappear"
    path = profile(work / "appear.yaml", device, pve, args.appear_every, {})
    agent = pilot_agent(path, broker.port, work / "appear-state", work, device, "--dry-run", name="appear")
    agent.start()
    delays: list[float] = []
    try:
        if wait_all_guests(watcher, device, agent.started, len(cluster.guests), 60 + 2 * args.appear_every) is None:
            notes.append(f"appear: the agent did not announce the cluster: {agent.tail(lines=5)}")
            return {"every_s": args.appear_every, "delays_s": []}
        rng = random.Random(7)
        for i in range(APPEARANCES):
            time.sleep(rng.uniform(0.2, args.appear_every))  # at a random point of the poll cycle
            vmid = 9000 + i
            added = time.monotonic()
            cluster.add(vmid, i, status="running")
            topic = f"homeassistant/device/{device}_guests_{vmid}/config"
            found = watcher.wait_for(lambda m, t=topic: m.topic == t and bool(m.payload), 30 + 2 * args.appear_every)
            if found is None:
                notes.append(f"appear: guest {vmid} never announced")
                continue
            delays.append(found.at - added)
    finally:
        agent.stop()
    out: dict = {"every_s": args.appear_every, "delays_s": delays}
    if delays:
        out["summary"] = summary(delays)
    return out


# ------------------------------------------------------------------ output


def print_result(result: dict) -> None:
    mode = (
        "QUICK mode (short window, short poll interval: noisier, and not the 30 s of a real deployment)"
        if result["mode"] == "quick"
        else "full mode"
    )
    print(
        f"{mode}: {result['guests']} guests ({result['running']} running) on {NODES} nodes, "
        f"polled every {result['every_s']:g} s; cluster moves every {result['tick_s']:g} s; "
        f"window {result['window_s']:.0f} s\n"
    )
    agents = result["agents"]
    base = agents.get("base", {})
    headers = (
        "agent",
        "CPU s/h",
        "(schedstat)",
        "+CPU s/h",
        "RSS MB",
        "+RSS MB",
        "wakeups/s",
        "guest msgs/min",
        "KB/min",
    )
    rows = []
    for name, f in agents.items():
        added_cpu = added_rss = None
        if name != "base" and f.get("cpu_s_per_h") is not None and base.get("cpu_s_per_h") is not None:
            added_cpu = f["cpu_s_per_h"] - base["cpu_s_per_h"]
        if name != "base" and f.get("rss_mb") is not None and base.get("rss_mb") is not None:
            added_rss = f["rss_mb"] - base["rss_mb"]
        rows.append(
            (
                name,
                fmt(f.get("cpu_s_per_h"), 1),
                fmt(f.get("cpu_s_per_h_schedstat"), 1),
                fmt(added_cpu, 1),
                fmt(f.get("rss_mb")),
                fmt(added_rss),
                fmt(f.get("wakeups_per_s")),
                "-" if name == "base" else fmt(f.get("guest_msgs_per_min"), 0),
                "-" if name == "base" else fmt(f.get("guest_kb_per_min"), 1),
            )
        )
    print(table(rows, headers))
    d = result["discovery"]
    print()
    rows = []
    if d.get("count"):
        rows.append(
            (
                f"discovery config per guest, bytes (min / median / max, {d['count']} guests)",
                f"{d['min']} / {d['median']:.0f} / {d['max']}",
            )
        )
        rows.append(("all guests' discovery configs, KB", f"{d['total_bytes'] / 1024:.1f}"))
        rows.append(
            (f"largest / a {HA_CONFIG_ADVICE // 1024} KB ceiling", f"{d['max'] / HA_CONFIG_ADVICE:.3f}"),
        )
    a = result["appearance"]
    if a.get("summary"):
        s = a["summary"]
        rows.append(
            (
                f"guest added -> its discovery, every {a['every_s']:g} s (p50 / max, n={len(a['delays_s'])})",
                f"{s['p50']:.2f} s / {s['max']:.2f} s",
            )
        )
    for name, f in agents.items():
        if f.get("all_discovered_s") is not None and name != "base":
            rows.append(
                (f"{name}: start -> all {result['guests']} devices announced", f"{f['all_discovered_s']:.1f} s")
            )
    print(table(rows, ("figure", "value")))
    print_notes(result["notes"])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="200 Proxmox guests as child devices: CPU, RSS, messages, sizes.")
    parser.add_argument("--quick", action="store_true", help="every 5 s, a 60 s window (a few minutes in all)")
    parser.add_argument("--window", type=float, help="measured seconds (default 300; --quick 60)")
    parser.add_argument("--every", type=float, help="poll interval in seconds (default 30; --quick 5)")
    parser.add_argument("--tick", type=float, default=5.0, help="how often the fake cluster moves (default 5 s)")
    parser.add_argument("--appear-every", type=float, default=2.0, help="poll interval for the appearance test")
    parser.add_argument("--json", action="store_true", help="print machine-readable results")
    parser.add_argument("--keep", action="store_true", help="keep the work directory (logs, profiles)")
    args = parser.parse_args(argv)
    args.window = args.window or (60.0 if args.quick else 300.0)
    args.every = args.every or (5.0 if args.quick else 30.0)
    work = Path(tempfile.mkdtemp(prefix="pilot-bench-proxmox-"))
    load_before = os.getloadavg()[0]
    result = measure(args, work)
    result["pilot_source"] = source_state()
    result["notes"].insert(0, f"Pilot measured at {result['pilot_source']}")
    return finish(result, load_before, work, args.keep, args.json, print_result)


if __name__ == "__main__":
    raise SystemExit(main())
