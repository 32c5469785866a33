"""What the desktop integrations add to the agent: CPU per hour, memory and threads (issue 16).

Two `pilot run --dry-run` agents run side by side on a private mosquitto, with the same
environment:

* base: profiles/linux-desktop/desktop.yaml without base/desktop (base/linux plus the pack's
  own fans, disk I/O, NVMe temperature, users).
* desktop: the same plus every new probe at its default interval: base/desktop as shipped
  (idle, idle time, locked, media state/title/artist, volume, muted, microphone in use, at the
  pack's intervals), the camera in use as base/desktop offers it (every 30 s), and one sensor
  each of command.output, systemd.unit, updates.pending and disk.health with no `every` (the
  sensor default, 30 s; the probes' own defaults: updates 1h, smartctl 10m).

So that the probes do real work and are not left out, the bench starts what the tests start:
a private dbus-daemon session bus with the test MPRIS player and GNOME's idle monitor on it,
a second one standing in for the system bus with the test logind (testkit/dbus.py), and
PulseAudio with a null sink in a private XDG_RUNTIME_DIR (`--audio pipewire`: PipeWire and
WirePlumber instead, as tests/unit/probes/test_probe_audio.py starts them; `--audio pipewire-pulse`:
those and pipewire-pulse, the usual desktop of today; `--audio none`).
command.output reads a file with /usr/bin/cat (root-owned, as the probe requires). The
camera and microphone probes scan the real /proc; updates.pending runs the real apt;
disk.health runs the real smartctl on the root disk. What this host cannot offer (systemd
not PID 1, no SMART disk, no camera) is reported from the agent's own log and discovery.

Figures per agent, over a steady window (default 120 s, after a 30 s warm-up that starts
when the second agent's discovery arrived; `--quick`: 45 s after 15 s):

* CPU/h: utime+stime (+ reaped children's) of the process tree from /proc/PID/stat, scaled
  to CPU-seconds per hour; the live threads' schedstat run time beside it as a cross-check.
* start CPU: the same counter from exec to the window's start (start-up, the first apt run...);
  agents started earlier have a longer pre-window, so compare it only between agents started
  close together.
* RSS and PSS of the tree (smaps_rollup), the root's VmRSS and VmHWM at the window's end.
* threads: entries of /proc/PID/task at the end; processes: the tree.

`--split` adds one agent per group of new sensors (base plus only that group: session, media,
audio, privacy, program, updates, smart), run beside the others, to show which group costs what.
Before the agents start, the bench also times the privacy probes' /proc scan in-process (CPU
per scan, processes and fd links seen): its cost grows with the host's open files, and a host
with a webcam pays it once per camera reading (the agents here may skip it: see privacy.py).

Then the issue's targets: desktop - base <= 1 MiB RSS and <= 1 CPU-s/h, and no extra thread
per probe (extra threads < the number of new sensors). Reported, never asserted.

    python bench/desktop.py [--window 120] [--warmup 30] [--quick] [--split]
                            [--audio pulseaudio|pipewire|pipewire-pulse|none] [--json] [--keep]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(REPO), str(REPO / "engine")]

from bench._proc import finish, table  # noqa: E402
from bench.agent import (  # noqa: E402
    MeasuredAgent,
    cpu_seconds,
    cpu_seconds_precise,
    memory_mb,
    pilot_agent,
    ready,
    wait_discovery,
)
from testkit.broker import Mosquitto, Watcher  # noqa: E402
from testkit.dbus import Logind, MprisPlayer, MutterIdleMonitor, bus_environment, private_buses  # noqa: E402

DESKTOP_PACK = REPO / "profiles" / "linux-desktop" / "desktop.yaml"
BASE_DESKTOP = REPO / "profiles" / "base" / "desktop.yaml"
FIXED_PATH = "/usr/sbin:/usr/bin:/sbin:/bin"
ROOT_DISK = "/dev/vda"

# sensor id -> its spec, added beside base/desktop's own; no `every`: the defaults (the camera: as base/desktop
# offers it, commented out)
EXTRA_SENSORS: dict[str, dict] = {
    "camera_in_use": {"probe": "privacy.camera_in_use", "args": {}, "every": "30s"},
    "program_value": {"probe": "command.output", "args": {"argv": ["/usr/bin/cat", "VALUE_FILE"], "parse": "number"}},
    "unit_state": {"probe": "systemd.unit", "args": {"unit": "dbus.service"}},
    "updates": {"probe": "updates.pending", "args": {}},
    "disk_health": {"probe": "disk.health", "args": {"device": "ROOT_DISK"}},
}
# --split: one more agent per group, base plus that group's sensors only
GROUPS = {
    "session": ("user_idle", "idle_time", "screen_locked"),
    "media": ("media_state", "media_title", "media_artist"),
    "audio": ("volume", "muted"),
    "privacy": ("camera_in_use", "microphone_in_use"),
    "program": ("program_value",),
    "updates": ("updates",),
    "smart": ("disk_health",),
}
EXTENDS = "extends: [base/linux, base/desktop]"


# ------------------------------------------------------------------ profiles


def new_sensor_specs(value_file: Path, disk: str) -> dict[str, dict]:
    """base/desktop's sensors as the pack writes them, then the bench's extra ones."""
    from ruamel.yaml import YAML

    specs = dict(YAML(typ="safe").load(BASE_DESKTOP.read_text())["sensors"])
    for sensor, spec in EXTRA_SENSORS.items():
        text = json.dumps(spec).replace("VALUE_FILE", str(value_file)).replace("ROOT_DISK", disk)
        specs[sensor] = {"name": sensor, **json.loads(text), "optional": True}
    return specs


def write_profile(path: Path, device_id: str, extends: str, sensors: dict[str, dict]) -> Path:
    """linux-desktop/desktop.yaml with another `extends`, a device id and `sensors` appended (as JSON,
    which is YAML) to its sensors block."""
    text = DESKTOP_PACK.read_text()
    if EXTENDS not in text or not text.rstrip().splitlines()[-1].startswith("  "):
        raise RuntimeError(f"{DESKTOP_PACK} no longer extends {EXTENDS} and ends with sensors; update the bench")
    text = text.replace(EXTENDS, f"{extends}\ndevice: {{id: {device_id}}}")
    lines = [f"  {sensor}: {json.dumps(spec)}" for sensor, spec in sensors.items()]
    path.write_text(text.rstrip() + "\n" + "\n".join(lines) + "\n")
    return path


# ------------------------------------------------------------------ sound servers


def _wait(check, what: str, timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise RuntimeError(f"{what} did not come up")
        time.sleep(0.2)


def _answers(tool: str, env: dict[str, str]) -> bool:
    argv = (
        [tool, "get-volume", "@DEFAULT_AUDIO_SINK@"] if tool == "wpctl" else [tool, "get-sink-mute", "@DEFAULT_SINK@"]
    )
    try:
        done = subprocess.run(argv, env=env, capture_output=True, timeout=10)
    except (OSError, subprocess.TimeoutExpired):
        return False
    return done.returncode == 0 and done.stdout.startswith(b"Volume:" if tool == "wpctl" else b"Mute:")


class SoundServer:
    """PulseAudio (null sink) or PipeWire + WirePlumber in a private runtime dir, stopped by process group."""

    def __init__(self, kind: str, work: Path) -> None:
        self.kind = kind
        self.runtime = work / f"{kind}-runtime"
        self.runtime.mkdir(mode=0o700)
        self.env = {
            "PATH": FIXED_PATH,
            "LANG": "C.UTF-8",
            "XDG_RUNTIME_DIR": str(self.runtime),
            "HOME": str(self.runtime),
        }
        self.procs: list[subprocess.Popen] = []

    def _start(self, argv: list[str], env: dict[str, str]) -> None:
        with open(self.runtime / f"{Path(argv[0]).name}.log", "ab") as out:
            self.procs.append(
                subprocess.Popen(argv, env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
            )

    def start(self) -> SoundServer:
        if self.kind == "pulseaudio":
            argv = ["pulseaudio", "-n", "--daemonize=no", "--exit-idle-time=-1", "--use-pid-file=no"]
            argv += ["--load=module-native-protocol-unix", "--load=module-null-sink sink_name=pilot_bench"]
            self._start(argv, self.env)
            _wait(lambda: _answers("pactl", self.env), "PulseAudio")
            return self
        bus = f"unix:path={self.runtime}/bus"
        self._start(["dbus-daemon", "--session", "--nofork", f"--address={bus}"], self.env)
        _wait(lambda: (self.runtime / "bus").exists(), "PipeWire's session bus")
        env = {**self.env, "DBUS_SESSION_BUS_ADDRESS": bus}
        self._start(["pipewire"], env)
        _wait(lambda: (self.runtime / "pipewire-0").exists(), "PipeWire")
        self._start(["wireplumber"], env)
        sink = "{ factory.name=support.null-audio-sink node.name=pilot_bench media.class=Audio/Sink "
        sink += "object.linger=1 audio.position=[FL FR] }"

        def sink_ready() -> bool:
            if _answers("wpctl", self.env):
                return True
            subprocess.run(["pw-cli", "create-node", "adapter", sink], env=self.env, capture_output=True, timeout=10)
            return _answers("wpctl", self.env)

        _wait(sink_ready, "the PipeWire sink")
        if self.kind == "pipewire-pulse":  # the usual desktop: PipeWire serving PulseAudio's protocol too
            self._start(["pipewire-pulse"], env)
            _wait(lambda: (self.runtime / "pulse" / "native").exists(), "pipewire-pulse")
        return self

    def stop(self) -> None:
        for proc in reversed(self.procs):
            if proc.poll() is not None:
                continue
            os.killpg(proc.pid, 15)
            try:
                proc.wait(5)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, 9)
                proc.wait(5)


def pick_audio(choice: str, notes: list[str]) -> str:
    tools = {
        "pulseaudio": ("pulseaudio", "pactl"),
        "pipewire": ("pipewire", "wireplumber", "wpctl", "pw-cli", "dbus-daemon"),
        "pipewire-pulse": ("pipewire", "wireplumber", "pipewire-pulse", "wpctl", "pw-cli", "dbus-daemon"),
    }
    if choice == "none":
        notes.append("audio: no sound server started (--audio none); volume and muted are left out")
        return "none"
    missing = [t for t in tools[choice] if not shutil.which(t)]
    if missing:
        notes.append(f"audio: {choice} cannot run here ({', '.join(missing)} not installed); volume and muted left out")
        return "none"
    return choice


# ------------------------------------------------------------------ what the agent turned on


def live_sensors(watcher: Watcher, device_id: str) -> list[str]:
    """Component ids in the agent's latest device discovery."""
    found = watcher.latest(f"homeassistant/device/{device_id}/config")
    if found is None:
        return []
    try:
        payload = json.loads(found.payload)
    except ValueError:
        return []
    components = payload.get("cmps") or payload.get("components") or {}
    return sorted(uid.removeprefix(f"pilot_{device_id}_") for uid in components)


def last_values(watcher: Watcher, device_id: str, sensors: list[str]) -> dict[str, str]:
    """The last payload per topic under pilot/<id>/ whose topic or JSON keys name one of `sensors`."""
    values: dict[str, str] = {}
    for m in list(watcher.messages):
        if not m.topic.startswith(f"pilot/{device_id}/"):
            continue
        text = m.payload.decode(errors="replace")
        try:
            doc = json.loads(text)
        except ValueError:
            doc = None
        if isinstance(doc, dict):
            for key, value in doc.items():
                if key in sensors:
                    values[key] = json.dumps(value)[:40]
        for sensor in sensors:
            if f"/{sensor}/" in m.topic + "/" or m.topic.endswith(f"/{sensor}"):
                values[sensor] = text[:40]
    return values


def left_out(agent: MeasuredAgent, sensors: list[str]) -> dict[str, str]:
    """sensor -> the agent's log line that names it as skipped or unavailable."""
    out: dict[str, str] = {}
    for line in agent.output().splitlines():
        low = line.lower()
        if not any(w in low for w in ("skip", "unavailable", "left out", "optional")):
            continue
        for sensor in sensors:
            if sensor in line and sensor not in out:
                out[sensor] = line.strip()[:240]
    return out


# ------------------------------------------------------------------ measuring


def tasks(pid: int) -> int:
    return sum(1 for _ in Path(f"/proc/{pid}/task").iterdir())


def vm_rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


def thread_names(pid: int) -> list[str]:
    names = []
    for task in sorted(Path(f"/proc/{pid}/task").iterdir(), key=lambda t: int(t.name)):
        try:
            names.append((task / "comm").read_text().strip())
        except OSError:
            pass
    return names


def proc_scan_cost(scans: int = 20) -> dict[str, float]:
    """CPU time of one privacy scan of this host's /proc (the full walk; the camera and the microphone
    share one per tick, the camera only while sysfs lists a video node, the microphone only without
    /proc/asound), measured in this process before the agents start, with the processes and links seen."""
    from pilot.probes.privacy import MICROPHONE, device_in_use

    pids = [e.name for e in os.scandir("/proc") if e.name.isdigit()]
    links = 0
    for pid in pids:
        try:
            links += len(os.listdir(f"/proc/{pid}/fd"))
        except OSError:
            pass
    started = time.process_time()
    for _ in range(scans):
        device_in_use(Path("/proc"), MICROPHONE)
    per_scan = (time.process_time() - started) / scans
    return {
        "processes": len(pids),
        "links": links,
        "ms_per_scan": per_scan * 1000,
        "us_per_link": per_scan * 1e6 / max(links, 1),
    }


def plan_agents(args: argparse.Namespace, work: Path, port: int, specs: dict[str, dict]) -> list[MeasuredAgent]:
    """base, desktop (base/desktop as shipped, its commands included, plus the extra probes) and with
    --split one agent per group of new sensors."""
    profiles = [
        ("base", "benchbase", write_profile(work / "base.yaml", "benchbase", "extends: [base/linux]", {})),
        (
            "desktop",
            "benchdesk",
            write_profile(
                work / "desktop.yaml",
                "benchdesk",
                EXTENDS,
                {k: v for k, v in specs.items() if k in EXTRA_SENSORS},
            ),
        ),
    ]
    if args.split:
        for group, sensors in GROUPS.items():
            device = f"benchg{group}"
            chosen = {k: v for k, v in specs.items() if k in sensors}
            profiles.append(
                (f"+{group}", device, write_profile(work / f"{group}.yaml", device, "extends: [base/linux]", chosen))
            )
    agents = []
    for name, device, profile in profiles:
        agent = pilot_agent(profile, port, work / f"{device}-state", work, device, "--dry-run", name=name)
        agent.figures["device_id"] = device
        agents.append(agent)
    return agents


def take_window(agents: list[MeasuredAgent], watcher: Watcher, seconds: float, notes: list[str]) -> None:
    running = [a for a in agents if a.running()]
    before = {a.name: (cpu_seconds(a.proc.pid), cpu_seconds_precise(a.proc.pid)) for a in running}
    start = time.monotonic()
    for a in running:
        a.figures["start_cpu_s"] = before[a.name][0]
    time.sleep(seconds)
    end = time.monotonic()
    for a in running:
        if not a.running():
            notes.append(f"{a.name} died during the window: {a.tail(lines=5)}")
            continue
        cpu, precise = cpu_seconds(a.proc.pid), cpu_seconds_precise(a.proc.pid)
        a.figures.update(
            cpu_s=cpu - before[a.name][0],
            cpu_s_per_h=(cpu - before[a.name][0]) * 3600 / (end - start),
            cpu_s_per_h_schedstat=(precise - before[a.name][1]) * 3600 / (end - start),
            vmrss_mb=vm_rss_mb(a.proc.pid),
            tasks=tasks(a.proc.pid),
            thread_names=thread_names(a.proc.pid),
            msgs=len([m for m in watcher.messages if start <= m.at <= end and a.owns(m.topic)]),
            **memory_mb(a.proc.pid),
        )


def measure(args: argparse.Namespace, work: Path) -> dict:
    notes: list[str] = []
    audio_kind = pick_audio(args.audio, notes)
    value_file = work / "value.txt"
    value_file.write_text("42\n")
    disk = ROOT_DISK if os.path.exists(ROOT_DISK) else "/dev/sda"
    specs = new_sensor_specs(value_file, disk)
    broker = Mosquitto().start()
    watcher = Watcher(broker.port, topics=("homeassistant/#", "pilot/#", "bench/#")).start()
    sound: SoundServer | None = None
    agents: list[MeasuredAgent] = []
    peers = []
    scan = proc_scan_cost()
    result: dict = {
        "proc_scan": scan,
        "window_s": args.window,
        "warmup_s": args.warmup,
        "audio": audio_kind,
        "agents": {},
        "notes": notes,
    }
    try:
        ready(watcher)
        with private_buses() as (session, system):
            try:
                peers = [
                    MprisPlayer(session.address, status="Playing", title="Bench Song", artist=["Bench Artist"]).start(),
                    MutterIdleMonitor(session.address, idle_ms=1234).start(),
                    Logind(system.address).start(),
                ]
                if audio_kind != "none":
                    sound = SoundServer(audio_kind, work).start()
                env = {"PATH": FIXED_PATH, **bus_environment(session, system)}
                if sound is not None:
                    env["XDG_RUNTIME_DIR"] = str(sound.runtime)
                agents = plan_agents(args, work, broker.port, specs)
                for agent in agents:
                    agent.env.update(env)
                    agent.start()
                    agent.figures["discovery_s"] = wait_discovery(agent, watcher)
                    if not agent.running():
                        notes.append(f"{agent.name} exited at start: {agent.tail(lines=8)}")
                time.sleep(args.warmup)
                take_window(agents, watcher, args.window, notes)
                live = live_sensors(watcher, "benchdesk")
                result["new_live"] = [s for s in specs if s in live]
                result["new_missing"] = {s: "" for s in specs if s not in live}
                result["new_missing"].update(
                    {k: v for k, v in left_out(agents[1], list(specs)).items() if k not in live}
                )
                result["values"] = last_values(watcher, "benchdesk", list(specs))
                result["live_counts"] = {
                    a.name: len(live_sensors(watcher, str(a.figures["device_id"]))) for a in agents
                }
                result["dbus_calls"] = {
                    name: len(p.calls) for name, p in zip(("MPRIS", "Mutter idle", "logind"), peers)
                }
            finally:
                for agent in agents:
                    agent.stop()
                if sound is not None:
                    sound.stop()
                for peer in peers:
                    peer.stop()
    finally:
        watcher.stop()
        broker.cleanup()
    for a in agents:
        result["agents"][a.name] = a.figures
    result["targets"] = targets(result)
    result["notes"].append(
        "all agents ran at once on one broker with the same buses and sound server, started in turn (each after "
        "the previous one's discovery); CPU and memory are per process tree, so one agent's work is not billed "
        "to another; the stand-in D-Bus peers and the sound server run outside the agents and are not counted"
    )
    return result


def targets(result: dict) -> list[dict]:
    base, desk = result["agents"].get("base", {}), result["agents"].get("desktop", {})
    rows = []
    if "rss_mb" in base and "rss_mb" in desk:
        new = len(result.get("new_live", []))
        for label, key, limit in (
            ("RSS added, agent process (VmRSS, MiB)", "vmrss_mb", 1.0),
            ("RSS added, process tree (MiB)", "rss_mb", 1.0),
            ("PSS added, process tree (MiB)", "pss_mb", 1.0),
            ("CPU added (CPU-s/h)", "cpu_s_per_h", 1.0),
        ):
            added = desk[key] - base[key]
            rows.append({"target": label, "added": f"{added:+.2f}", "limit": f"<= {limit}", "meets": added <= limit})
        extra = desk["tasks"] - base["tasks"]
        rows.append(
            {
                "target": f"threads added ({new} new sensors live)",
                "added": f"{extra:+d}",
                "limit": f"< {new}",
                "meets": extra < new,
            }
        )
    return rows


# ------------------------------------------------------------------ report


def show(result: dict) -> None:
    base = result["agents"].get("base", {})
    rows = []
    for name, f in result["agents"].items():
        if "cpu_s_per_h" not in f:
            rows.append((name, "no figures", *[""] * 10))
            continue
        added = f["cpu_s_per_h"] - base["cpu_s_per_h"] if "cpu_s_per_h" in base else 0.0
        added_rss = f["vmrss_mb"] - base["vmrss_mb"] if "vmrss_mb" in base else 0.0
        rows.append(
            (
                name,
                result["live_counts"].get(name, ""),
                f"{f['cpu_s_per_h']:.1f}",
                f"{f['cpu_s_per_h_schedstat']:.1f}",
                f"{added:+.1f}",
                f"{f['start_cpu_s']:.2f}",
                f"{f['vmrss_mb']:.1f}",
                f"{added_rss:+.2f}",
                f"{f['rss_mb']:.1f}",
                f"{f['pss_mb']:.1f}",
                f"{f['hwm_mb']:.1f}",
                f"{f['tasks']}/{f['processes']}",
            )
        )
    print(
        f"Desktop integrations: base vs base + new probes, {result['window_s']:.0f} s window after "
        f"{result['warmup_s']:.0f} s warm-up, audio: {result['audio']}"
    )
    heads = (
        "agent",
        "sensors",
        "CPU-s/h",
        "(schedstat)",
        "vs base",
        "start CPU-s",
        "VmRSS MiB",
        "vs base",
        "tree RSS",
        "tree PSS",
        "VmHWM",
        "threads/procs",
    )
    print(table(rows, heads))
    for name in ("base", "desktop"):
        if "thread_names" in result["agents"].get(name, {}):
            print(f"  {name} threads: {', '.join(result['agents'][name]['thread_names'])}")
    print()
    print(f"new sensors live in `desktop` ({len(result.get('new_live', []))}): {', '.join(result.get('new_live', []))}")
    for sensor, why in result.get("new_missing", {}).items():
        print(f"  left out: {sensor}{': ' + why if why else ''}")
    print(f"last values: {result.get('values')}")
    scan = result["proc_scan"]
    print(
        f"privacy /proc scan here: {scan['processes']} processes, {scan['links']} fd links, "
        f"{scan['ms_per_scan']:.2f} ms CPU a scan ({scan['us_per_link']:.1f} us a link); one scan serves both "
        "probes in a tick, and runs only while sysfs lists a video node or /proc/asound is absent"
    )
    print(f"D-Bus calls the stand-in peers answered (all agents): {result.get('dbus_calls')}")
    print()
    trows = [(t["target"], t["added"], t["limit"], {True: "yes", False: "NO"}[t["meets"]]) for t in result["targets"]]
    print(table(trows, ("target (desktop - base)", "added", "limit", "met")))
    for note in result["notes"]:
        print(f"- {note}")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--window", type=float, default=120.0)
    parser.add_argument("--warmup", type=float, default=30.0)
    parser.add_argument("--quick", action="store_true", help="45 s window after 15 s warm-up")
    parser.add_argument("--split", action="store_true", help="one more agent per group of new sensors")
    parser.add_argument("--audio", choices=("pulseaudio", "pipewire", "pipewire-pulse", "none"), default="pulseaudio")
    parser.add_argument("--json", action="store_true")
    parser.add_argument("--keep", action="store_true")
    args = parser.parse_args()
    if args.quick:
        args.window, args.warmup = 45.0, 15.0
    load_before = os.getloadavg()[0]
    work = Path(tempfile.mkdtemp(prefix="pilot-bench-desktop-"))
    result = measure(args, work)
    return finish(result, load_before, work, args.keep, args.json, show)


if __name__ == "__main__":
    raise SystemExit(main())
