"""Whole-process cost of Pilot next to LNXlink and a bare floor, on one real broker.

What runs (all on a private mosquitto on a free loopback port, nothing else):

* Pilot: `python -m pilot run bench/agent_profiles/pilot.yaml` (CPU, memory,
  root disk, network rates, uptime, CPU temperature if any, IPv4 address, all
  read and published every 5 s). It is first run once with `--once` on an empty
  state dir: that run compiles the profile in a child process and fills the plan
  cache (the *cold* discovery time); the long-running agent then starts warm.
* LNXlink (PyPI `lnxlink`, the closest peer agent), installed into a throwaway
  venv (or `--lnxlink-venv DIR`), config rendered from bench/lnxlink/lnxlink.yaml.tmpl:
  the same sensors at the same 5 s `update_interval`. Only the sensor modules are
  loaded; the power modules are excluded, `shutdown.command` is `echo`, `PATH`
  starts with a directory whose shutdown/reboot/poweroff/systemctl/loginctl are
  `echo`, and the D-Bus system bus address points nowhere. The bench checks
  LNXlink's "Loaded addons" log line and kills it if anything else loaded.
  If it cannot be installed or started, the report says so and goes on.
* The floor: bench/agent_floor.py, bare paho-mqtt + psutil, same topics' worth.

The three run concurrently, started one after another (each once the previous
one's discovery arrived), because they publish on distinct topics and are idle
>99 % of the time; CPU is counted per process tree, so one agent's work is not
billed to another.

Figures per agent:

* discovery: seconds from just before exec to the first Home Assistant
  discovery message received by a Watcher subscribed beforehand.
* RSS / PSS: summed over the process tree from /proc/PID/smaps_rollup, 60 s after
  exec; HWM is the root process's peak RSS (VmHWM).
* CPU/hour: utime+stime (+ reaped children's) over the process tree, read from
  /proc/PID/stat at the start and end of the steady window (default 300 s,
  `--steady SECONDS`), scaled to CPU-seconds per hour. Those count in 10 ms
  clock ticks, coarse for a short window, so the live threads' nanosecond run
  time from /proc/PID/task/*/schedstat is shown beside it as a cross-check.
* msgs/min, bytes/min: messages on the agent's own topics during the window.
* wakeups/s: voluntary + involuntary context switches of all its threads per
  second during the window (a proxy for timer wake-ups).

Then the targets: Pilot RSS <= 0.9x LNXlink and <= 1.15x floor, Pilot CPU/hour
<= 0.5x LNXlink, Pilot (warm) discovery no later than LNXlink's. They are
reported, never asserted: timings on a shared machine are evidence, not tests.

`--stress`: one Pilot with 1,000 sensors read every 1 s over cheap probes
(`publish: {max_silence: 1s}` so each publishes every second). Reports its CPU
share (% of one core) over `--stress-window` seconds (default 60, starting 10 s
after exec), RSS at the end of that window, messages
per second, and per tick (a burst of state messages separated from the next by
>= 0.2 s of silence): its message count, its spread (first to last arrival) and
the period between consecutive ticks' first arrivals.

    python bench/agent.py [--steady 300] [--json] [--no-lnxlink] [--lnxlink-venv DIR] [--keep]
    python bench/agent.py --stress [--stress-window 60] [--json] [--keep]
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(REPO), str(REPO / "engine")]

from bench._proc import finish, summary, table  # noqa: E402
from testkit.agent import AgentProcess, pilot_argv, pilot_env  # noqa: E402
from testkit.broker import Mosquitto, Watcher  # noqa: E402

PILOT_PROFILE = REPO / "bench" / "agent_profiles" / "pilot.yaml"
LNXLINK_TEMPLATE = REPO / "bench" / "lnxlink" / "lnxlink.yaml.tmpl"
FLOOR_SCRIPT = REPO / "bench" / "agent_floor.py"
LNXLINK_MODULES = {"cpu", "memory", "disk_usage", "network", "boot_time", "interfaces", "temperature"}
POWER_COMMANDS = ("shutdown", "reboot", "poweroff", "halt", "systemctl", "loginctl", "pm-suspend", "rtcwake")
CLK_TCK = os.sysconf("SC_CLK_TCK")
MEMORY_AT = 60.0
DISCOVERY_TIMEOUT = 30.0
TICK_GAP = 0.2


# ------------------------------------------------------------------ /proc


def tree(pid: int) -> list[int]:
    """pid and every live descendant (via /proc/PID/task/*/children)."""
    out, todo = [], [pid]
    while todo:
        current = todo.pop()
        out.append(current)
        for task in Path(f"/proc/{current}/task").glob("*"):
            try:
                todo += [int(c) for c in (task / "children").read_text().split()]
            except OSError:
                pass
    return out


def _stat_fields(pid: int) -> list[str]:
    text = Path(f"/proc/{pid}/stat").read_text()
    return text[text.rindex(")") + 2 :].split()


def cpu_seconds(pid: int) -> float:
    """utime+stime+cutime+cstime of the tree, in seconds."""
    ticks = 0
    for p in tree(pid):
        try:
            fields = _stat_fields(p)  # fields[0] is stat field 3 (state)
        except OSError:
            continue
        ticks += sum(int(x) for x in fields[11:15])
    return ticks / CLK_TCK


def cpu_seconds_precise(pid: int) -> float:
    """Run time of the tree's live threads from /proc/*/task/*/schedstat (ns): a
    finer cross-check of cpu_seconds for short windows (exited threads are lost)."""
    total = 0
    for p in tree(pid):
        for task in Path(f"/proc/{p}/task").glob("*"):
            try:
                total += int((task / "schedstat").read_text().split()[0])
            except (OSError, ValueError, IndexError):
                pass
    return total / 1e9


def _status(path: str) -> dict[str, str]:
    out = {}
    try:
        for line in Path(path).read_text().splitlines():
            key, _, value = line.partition(":")
            out[key] = value.strip()
    except OSError:
        pass
    return out


def context_switches(pid: int) -> int:
    total = 0
    for p in tree(pid):
        for task in Path(f"/proc/{p}/task").glob("*"):
            st = _status(str(task / "status"))
            total += int(st.get("voluntary_ctxt_switches", 0)) + int(st.get("nonvoluntary_ctxt_switches", 0))
    return total


def memory_mb(pid: int) -> dict[str, float]:
    """RSS and PSS of the tree (smaps_rollup), root's VmHWM and thread count."""
    rss = pss = 0
    procs = tree(pid)
    for p in procs:
        st = _status(f"/proc/{p}/smaps_rollup")
        rss += int(st.get("Rss", "0 kB").split()[0])
        pss += int(st.get("Pss", "0 kB").split()[0])
    root = _status(f"/proc/{pid}/status")
    return {
        "rss_mb": rss / 1024,
        "pss_mb": pss / 1024,
        "hwm_mb": int(root.get("VmHWM", "0 kB").split()[0]) / 1024,
        "threads": int(root.get("Threads", 0)),
        "processes": len(procs),
    }


# ------------------------------------------------------------------ agents


class MeasuredAgent(AgentProcess):
    """One agent under measurement: its process (testkit's launcher), which topics are its own,
    which message is its discovery, and the figures measured."""

    def __init__(
        self,
        name: str,
        argv: list[str],
        *,
        owns: Callable[[str], bool],
        is_discovery: Callable[[str], bool],
        log: Path,
        env: dict[str, str] | None = None,
    ) -> None:
        super().__init__(argv, log=log, env=env)
        self.name = name
        self.owns = owns
        self.is_discovery = is_discovery
        self.figures: dict[str, float | int | None] = {}


def wait_discovery(agent: MeasuredAgent, watcher: Watcher) -> float | None:
    """Seconds from exec to the agent's first discovery message; None if it died or never sent one."""
    deadline = agent.started + DISCOVERY_TIMEOUT
    while time.monotonic() < deadline:
        found = watcher.wait_for(lambda m: agent.is_discovery(m.topic), 0.5, since=agent.started)
        if found is not None:
            return found.at - agent.started
        if not agent.running():
            return None
    return None


def pilot_agent(
    profile: Path | None, port: int, state_dir: Path, work: Path, device_id: str, *extra: str, name: str = "pilot"
) -> MeasuredAgent:
    """`pilot run PROFILE`; with profile None, `pilot run` with no profile (it picks the matching pack)."""
    # benchmarks run as root in CI: pilot_env() sets PILOT_ALLOW_ROOT=1, or the agent would refuse root
    argv, env = pilot_argv(profile, port, state_dir, *extra), pilot_env()
    return MeasuredAgent(
        name,
        argv,
        owns=lambda t: t.startswith((f"pilot/{device_id}/", f"homeassistant/device/{device_id}/")),
        is_discovery=lambda t: t == f"homeassistant/device/{device_id}/config",
        log=work / f"{name}{'-once' if '--once' in extra else ''}.log",
        env=env,
    )


def picked_pack_profile(work: Path) -> Path | None:
    """The pack `pilot run` picks here, as an explicit profile: the same plan but for its device id, so
    that both agents can share the broker (one device id is one client id)."""
    sys.path.insert(0, str(REPO / "engine"))
    from pilot.profile.worker import pick_profile

    picked = pick_profile()
    if picked is None:
        return None
    path = work / "picked.yaml"
    path.write_text(f"pilot: 1\nextends: [{picked.parent.name}/{picked.stem}]\ndevice: {{id: benchpack}}\n")
    return path


def this_device_id() -> str:
    """The device id a profile without `device.id` gets here (a shipped pack's, for pilot-auto)."""
    sys.path.insert(0, str(REPO / "engine"))
    from pilot.facts import device_id

    return device_id()


def floor_agent(port: int, work: Path) -> MeasuredAgent:
    argv = [
        sys.executable,
        str(FLOOR_SCRIPT),
        "--broker",
        f"127.0.0.1:{port}",
        "--device-id",
        "benchfloor",
        "--interval",
        "5",
    ]
    return MeasuredAgent(
        "floor",
        argv,
        owns=lambda t: t.startswith(("floor/benchfloor/", "homeassistant/sensor/benchfloor/")),
        is_discovery=lambda t: t.startswith("homeassistant/sensor/benchfloor/"),
        log=work / "floor.log",
    )


def measure_cold_pilot(
    port: int, watcher: Watcher, work: Path, profile: Path, device_id: str, state_dir: Path
) -> dict[str, float | None]:
    """`pilot run --once` on an empty state dir: compiles in a child, fills the plan cache."""
    once = pilot_agent(profile, port, state_dir, work, device_id, "--once")
    once.start()
    discovery = wait_discovery(once, watcher)
    assert once.proc is not None
    try:
        once.proc.wait(60)
    except subprocess.TimeoutExpired:
        once.stop()
    return {
        "discovery_cold_s": discovery,
        "once_wall_s": time.monotonic() - once.started,
        "once_exit": once.proc.returncode,
    }


# ------------------------------------------------------------------ LNXlink


def install_lnxlink(venv: Path, log: Path) -> tuple[Path | None, str]:
    """The lnxlink entry point in venv (created and installed if missing), or None and why."""
    exe = venv / "bin" / "lnxlink"
    if exe.exists():
        return exe, f"reused {venv}"
    started = time.monotonic()
    with open(log, "ab") as out:
        for argv in (
            ["python3", "-m", "venv", str(venv)],
            [str(venv / "bin" / "pip"), "install", "--quiet", "lnxlink"],
        ):
            try:
                rc = subprocess.run(argv, stdout=out, stderr=subprocess.STDOUT, timeout=600).returncode
            except (OSError, subprocess.TimeoutExpired) as exc:
                return None, f"{' '.join(argv[:3])}: {exc}"
            if rc != 0:
                tail = log.read_text(errors="replace").strip().splitlines()[-3:]
                return None, f"{' '.join(argv[:3])} exited {rc}: {' | '.join(tail)}"
    if not exe.exists():
        return None, "pip install lnxlink did not produce a `lnxlink` command"
    return exe, f"installed into {venv} in {time.monotonic() - started:.0f} s"


def power_shims(directory: Path) -> Path:
    """A PATH directory where every power command only echoes."""
    directory.mkdir(parents=True, exist_ok=True)
    for name in POWER_COMMANDS:
        shim = directory / name
        shim.write_text(f'#!/bin/sh\necho "bench shim: {name} $*"\n')
        shim.chmod(0o755)
    return directory


def lnxlink_agent(exe: Path, port: int, work: Path) -> MeasuredAgent:
    config_dir = work / "lnxlink"
    config_dir.mkdir(exist_ok=True)
    config = config_dir / "lnxlink.yaml"
    config.write_text(LNXLINK_TEMPLATE.read_text().format(port=port, client_id="benchlnx"))
    env = {k: v for k, v in os.environ.items() if not k.startswith("LNXLINK_")}
    env.update(
        PATH=f"{power_shims(work / 'shims')}:{env.get('PATH', '/usr/bin:/bin')}",
        DBUS_SYSTEM_BUS_ADDRESS=f"unix:path={work / 'no-system-bus'}",
    )
    argv = [str(exe), "-c", str(config), "--ignore-systemd", "--logging", "INFO", "--log-directory", str(config_dir)]
    return MeasuredAgent(
        "lnxlink",
        argv,
        owns=lambda t: t.startswith("lnxlink/benchlnx/") or "/lnxlink/benchlnx_" in t,
        is_discovery=lambda t: t.startswith("homeassistant/") and "/lnxlink/benchlnx_" in t,
        log=work / "lnxlink.log",
        env=env,
    )


def lnxlink_modules_ok(agent: MeasuredAgent, allowed: set[str] = LNXLINK_MODULES, timeout: float = 10.0) -> str | None:
    """None when LNXlink loaded no module outside `allowed`; otherwise what went wrong. The benches
    stop it on anything else: a stray module could act on this machine."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for line in agent.log.read_text(errors="replace").splitlines():
            if "Loaded addons:" in line:
                loaded = {m.strip() for m in line.split("Loaded addons:", 1)[1].split(",") if m.strip()}
                extra = loaded - allowed
                return f"unexpected modules loaded: {sorted(extra)}" if extra else None
        if not agent.running():
            return f"exited (rc {agent.proc.returncode}): {agent.tail(lines=5)}"
        time.sleep(0.1)
    return "no 'Loaded addons' line in its log"


# ------------------------------------------------------------------ steady window


Sample = tuple[float, float, int]  # cpu_seconds, cpu_seconds_precise, context switches


def snapshot(agents: list[MeasuredAgent]) -> dict[str, Sample]:
    return {
        a.name: (cpu_seconds(a.proc.pid), cpu_seconds_precise(a.proc.pid), context_switches(a.proc.pid))
        for a in agents
        if a.running()
    }


def window_figures(
    agent: MeasuredAgent, before: Sample, after: Sample, messages: list, start: float, end: float
) -> dict[str, float]:
    seconds = end - start
    mine = [m for m in messages if start <= m.at <= end and agent.owns(m.topic)]
    return {
        "window_s": seconds,
        "cpu_s": after[0] - before[0],
        "cpu_s_per_h": (after[0] - before[0]) * 3600 / seconds,
        "cpu_s_per_h_schedstat": (after[1] - before[1]) * 3600 / seconds,
        "wakeups_per_s": (after[2] - before[2]) / seconds,
        "msgs_per_min": len(mine) * 60 / seconds,
        "bytes_per_min": sum(len(m.payload) for m in mine) * 60 / seconds,
    }


def sleep_until(moment: float) -> None:
    time.sleep(max(0.0, moment - time.monotonic()))


# ------------------------------------------------------------------ compare mode


def start_in_turn(agents: list[MeasuredAgent], watcher: Watcher, notes: list[str]) -> list[MeasuredAgent]:
    running = []
    for agent in agents:
        agent.start()
        agent.figures["discovery_s"] = wait_discovery(agent, watcher)
        if not agent.running():
            notes.append(f"{agent.name} exited at start (rc {agent.proc.returncode}): {agent.tail(lines=5)}")
            continue
        if agent.figures["discovery_s"] is None:
            notes.append(f"{agent.name}: no discovery within {DISCOVERY_TIMEOUT:.0f} s")
        if agent.name == "lnxlink":
            problem = lnxlink_modules_ok(agent)
            if problem:
                agent.stop()
                notes.append(f"lnxlink stopped by the bench: {problem}")
                continue
        running.append(agent)
        time.sleep(1.0)  # let its start-up burst settle before the next one starts
    return running


def take_memory(agents: list[MeasuredAgent]) -> None:
    for agent in sorted(agents, key=lambda a: a.started):
        sleep_until(agent.started + MEMORY_AT)
        if agent.running():
            agent.figures.update(memory_mb(agent.proc.pid))


def run_window(agents: list[MeasuredAgent], watcher: Watcher, seconds: float) -> tuple[float, float]:
    before, start = snapshot(agents), time.monotonic()
    time.sleep(seconds)
    after, end = snapshot(agents), time.monotonic()
    messages = list(watcher.messages)
    for agent in agents:
        if agent.name in before and agent.name in after:
            agent.figures.update(window_figures(agent, before[agent.name], after[agent.name], messages, start, end))
    return start, end


def lnxlink_exe(args: argparse.Namespace, work: Path, notes: list[str]) -> Path | None:
    if args.no_lnxlink:
        notes.append("LNXlink: skipped (--no-lnxlink)")
        return None
    venv = Path(args.lnxlink_venv) if args.lnxlink_venv else work / "lnxlink-venv"
    exe, how = install_lnxlink(venv, work / "lnxlink-install.log")
    notes.append(f"LNXlink: {how}" if exe else f"LNXlink could NOT be installed: {how}")
    return exe


def compare(args: argparse.Namespace, work: Path) -> dict:
    notes: list[str] = []
    exe = lnxlink_exe(args, work, notes)  # before anything runs: pip is not idle
    broker = Mosquitto().start()
    watcher = Watcher(broker.port, topics=("homeassistant/#", "pilot/#", "lnxlink/#", "floor/#", "bench/#")).start()
    agents: list[MeasuredAgent] = []
    try:
        ready(watcher)
        state = work / "pilot-state"
        cold = measure_cold_pilot(broker.port, watcher, work, PILOT_PROFILE, "benchpilot", state)
        agents = [pilot_agent(PILOT_PROFILE, broker.port, state, work, "benchpilot")]
        agents[0].figures.update(cold)
        pack = None if args.no_auto else picked_pack_profile(work)
        if pack is not None:
            # `pilot run` with no profile (the compile child picks the pack) beside `pilot run` given that same
            # pack as a profile: picking must cost the agent nothing
            auto_id = this_device_id()
            agents.append(
                pilot_agent(None, broker.port, work / "auto-state", work, auto_id, "--dry-run", name="pilot-auto")
            )
            agents.append(
                pilot_agent(pack, broker.port, work / "pack-state", work, "benchpack", "--dry-run", name="pilot-pack")
            )
        if exe:
            agents.append(lnxlink_agent(exe, broker.port, work))
        agents.append(floor_agent(broker.port, work))
        running = start_in_turn(agents, watcher, notes)
        take_memory(running)
        run_window(running, watcher, args.steady)
        for agent in running:
            if not agent.running():
                notes.append(f"{agent.name} died during the run: {agent.tail(lines=5)}")
    finally:
        for agent in agents:
            agent.stop()
        watcher.stop()
        broker.cleanup()
    if exe and not any(a.name == "lnxlink" and "rss_mb" in a.figures for a in agents):
        notes.append("LNXlink could not be started or measured here; see the notes above and its log")
    figures = {a.name: a.figures for a in agents}
    notes += workload_notes(figures)
    notes.append("agents ran concurrently on one broker, started in turn (each after the previous one's discovery)")
    return {"mode": "compare", "steady_s": args.steady, "agents": figures, "targets": targets(figures), "notes": notes}


def workload_notes(figures: dict[str, dict]) -> list[str]:
    """Flags a Pilot that published a different number of messages than the floor (same sensors)."""
    pilot, floor = figures.get("pilot", {}).get("msgs_per_min"), figures.get("floor", {}).get("msgs_per_min")
    if not pilot or not floor or abs(pilot / floor - 1) <= 0.05:
        return []
    return [
        f"Pilot published {pilot:.0f} msgs/min against the floor's {floor:.0f} for the same sensors: "
        "the CPU figures compare unequal work"
    ]


def ready(watcher: Watcher) -> None:
    """Returns once the watcher's subscriptions are in place."""
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        watcher.publish("bench/ready", "1", qos=1)
        if watcher.wait_for(lambda m: m.topic == "bench/ready", 0.5):
            return
    raise RuntimeError("the watcher never received its own message")


def targets(figures: dict[str, dict]) -> list[dict]:
    """The issue's ratios: (what, Pilot's value / the other's, the limit)."""
    pilot, lnx, floor, auto, pack = (
        figures.get(n, {}) for n in ("pilot", "lnxlink", "floor", "pilot-auto", "pilot-pack")
    )
    rows = []
    if auto.get("rss_mb") is not None and pack.get("rss_mb") is not None:
        gap = auto["rss_mb"] - pack["rss_mb"]
        rows.append(
            {"target": "RSS no profile - RSS same pack given (MiB)", "ratio": gap, "limit": 0.5, "meets": gap <= 0.5}
        )
    for label, mine, other, limit in (
        ("Pilot RSS / LNXlink RSS", pilot.get("rss_mb"), lnx.get("rss_mb"), 0.9),
        ("Pilot RSS / floor RSS", pilot.get("rss_mb"), floor.get("rss_mb"), 1.15),
        ("Pilot CPU/h / LNXlink CPU/h", pilot.get("cpu_s_per_h"), lnx.get("cpu_s_per_h"), 0.5),
        ("Pilot discovery (warm) / LNXlink's", pilot.get("discovery_s"), lnx.get("discovery_s"), 1.0),
    ):
        ratio = mine / other if mine is not None and other else None
        rows.append(
            {"target": label, "ratio": ratio, "limit": limit, "meets": None if ratio is None else ratio <= limit}
        )
    return rows


# ------------------------------------------------------------------ stress mode


STRESS_PROBES = ("cpu.count", "memory.used_percent", "system.uptime")
STRESS_SENSORS = 1000


def stress_profile(path: Path, sensors: int = STRESS_SENSORS) -> Path:
    lines = ["pilot: 1", "device: {id: benchstress, name: Stress}", "sensors:"]
    for i in range(sensors):
        probe = STRESS_PROBES[i % len(STRESS_PROBES)]
        lines.append(f"  s{i:04d}: {{probe: {probe}, every: 1s, publish: {{max_silence: 1s}}}}")
    path.write_text("\n".join(lines) + "\n")
    return path


def ticks(times: list[float], gap: float = TICK_GAP) -> list[list[float]]:
    """Arrival times split into bursts separated by at least `gap` seconds of silence."""
    groups: list[list[float]] = []
    for at in sorted(times):
        if groups and at - groups[-1][-1] < gap:
            groups[-1].append(at)
        else:
            groups.append([at])
    return groups


def tick_figures(times: list[float], expected: int) -> dict:
    groups = ticks(times)[1:-1]  # the first and last may be cut by the window
    if not groups:
        return {"ticks": 0}
    spread = [(g[-1] - g[0]) * 1000 for g in groups]
    counts = [float(len(g)) for g in groups]
    periods = [(b[0] - a[0]) * 1000 for a, b in zip(groups, groups[1:])]
    return {
        "ticks": len(groups),
        "short_ticks": sum(1 for c in counts if c < expected),
        "spread_ms": summary(spread),
        "per_tick": summary(counts),
        "period_ms": summary(periods) if periods else None,
    }


def stress(args: argparse.Namespace, work: Path) -> dict:
    profile = stress_profile(work / "stress.yaml")
    broker = Mosquitto().start()
    watcher = Watcher(broker.port, topics=("homeassistant/#", "pilot/#", "bench/#")).start()
    agent = pilot_agent(profile, broker.port, work / "stress-state", work, "benchstress")
    notes: list[str] = []
    try:
        ready(watcher)
        agent.figures.update(
            measure_cold_pilot(broker.port, watcher, work, profile, "benchstress", work / "stress-state")
        )
        agent.start()
        agent.figures["discovery_s"] = wait_discovery(agent, watcher)
        sleep_until(agent.started + 10)  # past the start-up burst
        start, end = run_window([agent], watcher, args.stress_window)
        if agent.running():
            agent.figures.update(memory_mb(agent.proc.pid))
        else:
            notes.append(f"pilot died: {agent.tail(lines=5)}")
        states = [
            m.at
            for m in list(watcher.messages)
            if start <= m.at <= end and m.topic.startswith("pilot/benchstress/state/")
        ]
    finally:
        agent.stop()
        watcher.stop()
        broker.cleanup()
    window = agent.figures.get("window_s") or 1.0
    agent.figures["cpu_percent_of_core"] = 100 * agent.figures.get("cpu_s", 0.0) / window
    agent.figures["states_per_s"] = len(states) / window
    return {
        "mode": "stress",
        "sensors": STRESS_SENSORS,
        "agents": {"pilot": agent.figures},
        "ticks": tick_figures(states, STRESS_SENSORS),
        "notes": notes,
    }


# ------------------------------------------------------------------ output


def source_state() -> str:
    """Which Pilot was measured: HEAD and whether engine/ has uncommitted changes (read-only git)."""
    try:
        head = subprocess.run(
            ["git", "-C", str(REPO), "rev-parse", "--short", "HEAD"], capture_output=True, text=True, timeout=10
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "-C", str(REPO), "status", "--porcelain", "--", "engine"],
            capture_output=True,
            text=True,
            timeout=10,
        ).stdout.splitlines()
    except (OSError, subprocess.TimeoutExpired):
        return "unknown (no git)"
    return f"{head or 'unknown'}" + (f" + {len(dirty)} uncommitted change(s) under engine/" if dirty else "")


def fmt(value: float | int | None, digits: int = 1) -> str:
    if value is None:
        return "-"
    return f"{value:.{digits}f}" if isinstance(value, float) else str(value)


def print_compare(result: dict) -> None:
    headers = (
        "agent",
        "disc cold s",
        "disc s",
        "RSS MB",
        "PSS MB",
        "HWM MB",
        "thr",
        "CPU s/h",
        "(schedstat)",
        "wakeups/s",
        "msgs/min",
        "KB/min",
    )
    rows = []
    for name, f in result["agents"].items():
        bytes_min = f.get("bytes_per_min")
        rows.append(
            (
                name,
                fmt(f.get("discovery_cold_s"), 3),
                fmt(f.get("discovery_s"), 3),
                fmt(f.get("rss_mb")),
                fmt(f.get("pss_mb")),
                fmt(f.get("hwm_mb")),
                fmt(f.get("threads")),
                fmt(f.get("cpu_s_per_h"), 2),
                fmt(f.get("cpu_s_per_h_schedstat"), 2),
                fmt(f.get("wakeups_per_s")),
                fmt(f.get("msgs_per_min")),
                fmt(None if bytes_min is None else bytes_min / 1024),
            )
        )
    print(f"steady window {result['steady_s']:.0f} s, memory at {MEMORY_AT:.0f} s after exec\n")
    print(table(rows, headers))
    print()
    target_rows = [
        (
            t["target"],
            fmt(t["ratio"], 2),
            f"<= {t['limit']}",
            "-" if t["meets"] is None else ("meets" if t["meets"] else "MISSES"),
        )
        for t in result["targets"]
    ]
    print(table(target_rows, ("target", "ratio", "limit", "")))
    print_notes(result["notes"])


def print_stress(result: dict) -> None:
    f, t = result["agents"]["pilot"], result["ticks"]
    print(f"stress: {result['sensors']} sensors at 1 s, window {fmt(f.get('window_s'), 0)} s\n")
    rows = [
        ("discovery cold / warm s", f"{fmt(f.get('discovery_cold_s'), 3)} / {fmt(f.get('discovery_s'), 3)}"),
        ("CPU % of one core", fmt(f.get("cpu_percent_of_core"))),
        ("RSS / PSS / HWM MB", f"{fmt(f.get('rss_mb'))} / {fmt(f.get('pss_mb'))} / {fmt(f.get('hwm_mb'))}"),
        ("threads", fmt(f.get("threads"))),
        ("wakeups/s", fmt(f.get("wakeups_per_s"))),
        ("state msgs/s (expect 1000)", fmt(f.get("states_per_s"))),
    ]
    if t.get("ticks"):
        for label, key in (
            ("msgs per tick", "per_tick"),
            ("tick spread ms", "spread_ms"),
            ("tick period ms", "period_ms"),
        ):
            s = t.get(key)
            if s:
                rows.append(
                    (f"{label} p50/p99/min/max", f"{s['p50']:.0f} / {s['p99']:.0f} / {s['min']:.0f} / {s['max']:.0f}")
                )
        rows.append((f"ticks seen / short of {result['sensors']}", f"{t['ticks']} / {t['short_ticks']}"))
    print(table(rows, ("figure", "value")))
    print_notes(result["notes"])


def print_notes(notes: list[str]) -> None:
    if notes:
        print("\nnotes:")
        for note in notes:
            print(f"  - {note}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Pilot vs LNXlink vs a bare floor: RSS, CPU, discovery.")
    parser.add_argument("--steady", type=float, default=300.0, help="steady-state window in seconds (default 300)")
    parser.add_argument("--json", action="store_true", help="print machine-readable results")
    parser.add_argument("--no-lnxlink", action="store_true", help="measure Pilot and the floor only")
    parser.add_argument("--no-auto", action="store_true", help="skip `pilot run` with no profile (the picked pack)")
    parser.add_argument("--lnxlink-venv", metavar="DIR", help="reuse (or create and keep) LNXlink's venv here")
    parser.add_argument("--stress", action="store_true", help="one Pilot with 1000 sensors at 1 s")
    parser.add_argument("--stress-window", type=float, default=60.0, help="stress: measured seconds (default 60)")
    parser.add_argument("--keep", action="store_true", help="keep the work directory (logs, configs)")
    args = parser.parse_args(argv)
    work = Path(tempfile.mkdtemp(prefix="pilot-bench-agent-"))
    load_before = os.getloadavg()[0]
    try:
        result = stress(args, work) if args.stress else compare(args, work)
    except BaseException:
        if not args.keep:
            shutil.rmtree(work, ignore_errors=True)
        raise
    result["pilot_source"] = source_state()
    result["notes"].insert(0, f"Pilot measured at {result['pilot_source']}")
    return finish(result, load_before, work, args.keep, args.json, (print_stress if args.stress else print_compare))


if __name__ == "__main__":
    raise SystemExit(main())
