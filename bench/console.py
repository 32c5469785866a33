"""Whole-process cost of `pilot console run` under a simulated fleet, on one real broker.

What runs (all on this machine, loopback only):

* a private Mosquitto on a free port (testkit/broker.py);
* the console as a subprocess: `python -m pilot console run --broker ... --listen 127.0.0.1:PORT
  --db sqlite:///WORK/console.db --anonymous-read --state-dir WORK --users WORK/users`, with one admin
  user (for `/api/stats`) added by `pilot console user add`;
* testkit/fleet.py: `--devices` (1,000) simulated Pilot agents with `--sensors` (20) state sensors each,
  every `--period` (10 s) seconds, i.e. 2,000 states/s, plus discovery, capabilities, health and
  activity, all retained, exactly as real agents send them; devices spread evenly over the period.

Figures (printed, never asserted; the targets come from the console's design issue):

* steady window (`--window`, default 90 s, after `--warmup` 30 s at the nominal rate):
  - CPU: utime+stime of the console process from /proc/PID/stat over the window, as % of one core;
  - RSS: VmRSS sampled every 2 s (median, last) and VmHWM (the peak since start, announcement included);
  - ingest lag: twice a second a *marker* (a cpu_usage value with a unique fraction, testkit.fleet.mark)
    is published on the connection of the device that published last (its own next round is a period
    away, so nothing overwrites the marker before the console shows it). The bench holds one fleet event
    stream (`/api/events`, as a browser on the fleet page does) and reads each marker back: *ingest lag*
    is the console's own receipt time of the value (the `ts` the stream carries) minus the publish time;
    *end-to-end lag* is the time the bench read it from the stream minus the publish time (this one
    includes the stream's coalescing, at most four events a second);
  - SQLite growth: console.db + -wal + -shm sizes at the window's ends, extrapolated to a day, and the
    raw rows added per second from `/api/stats` (raw readings are kept 48 h, then rolled up into minutes
    and hours, so a day's growth holds for the first two days; after that the file grows by the rolled
    tiers only);
* the fleet page: headless Chromium (Playwright, /usr/bin/chromium) opens `/` with the fleet running;
  time from navigation start until the `--devices`-th row is in the DOM, then the time from typing a
  device's name into the search box until the filtered list is drawn (the next animation frame).
  Three loads: the first cold, then two reloads;
* maximum ingest: the simulator's rate is raised step by step (`--ramp`, default 2k..30k msg/s, each
  step `--step` seconds after 5 s to settle); a step is kept up with when the console's `received`
  counter advanced by at least 97 % of what the simulator published in that step and the markers' ingest
  lag p99 stayed under 2 s. The figure is the highest such rate; the console's CPU in each step is shown.

The machine's load average is noted at start and end: other work on a 2-core machine skews every figure.

    python bench/console.py [--devices 1000] [--sensors 20] [--period 10] [--warmup 30] [--window 90]
                            [--step 20] [--ramp 2000,4000,...] [--no-page] [--no-ramp] [--json] [--keep]
"""

from __future__ import annotations

import argparse
import json
import os
import random
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(REPO), str(REPO / "engine")]

import httpx  # noqa: E402

from bench._proc import finish, summary, table, wait_for_console  # noqa: E402
from testkit.agent import AgentProcess, pilot_env  # noqa: E402
from testkit.broker import Mosquitto, free_port  # noqa: E402
from testkit.fleet import FleetSimulator, Marker  # noqa: E402

CLK_TCK = os.sysconf("SC_CLK_TCK")
ADMIN, ADMIN_PASSWORD = "bench", "bench-password-not-secret-1"
DEFAULT_RAMP = (2000, 4000, 6000, 8000, 10000, 12500, 15000, 20000, 25000, 30000)
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--headless=new",
    "--disable-gpu",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
TARGETS = {"cpu_pct": 25.0, "rss_mb": 150.0, "lag_p99_s": 1.0, "max_msgs": 10000.0, "page_s": 1.0}


# ------------------------------------------------------------------ the console process, from outside


def cpu_seconds(pid: int) -> float:
    """utime + stime of the whole process (every thread), from /proc/PID/stat."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLK_TCK


def status_mb(pid: int, key: str) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(key + ":"):
            return int(line.split()[1]) / 1024
    return 0.0


def db_bytes(db: Path) -> int:
    return sum(p.stat().st_size for p in (db, Path(f"{db}-wal"), Path(f"{db}-shm")) if p.exists())


@dataclass
class Api:
    """HTTP to the console: anonymous reads, and an admin session for /api/stats."""

    base: str
    client: httpx.Client = field(init=False)

    def __post_init__(self) -> None:
        self.client = httpx.Client(base_url=self.base, timeout=30)

    def login(self) -> None:
        r = self.client.post(
            "/api/login", json={"username": ADMIN, "password": ADMIN_PASSWORD}, headers={"origin": self.base}
        )
        r.raise_for_status()

    def stats(self) -> dict:
        r = self.client.get("/api/stats")
        r.raise_for_status()
        return r.json()

    def wait_devices(self, count: int, timeout: float) -> float:
        """Seconds until the console knows `count` devices (from /api/stats), or raise."""
        start = time.monotonic()
        while time.monotonic() - start < timeout:
            try:
                if self.stats().get("devices", 0) >= count:
                    return time.monotonic() - start
            except httpx.HTTPError:
                pass
            time.sleep(0.2)
        raise RuntimeError(f"the console did not list {count} devices within {timeout:.0f} s")


# ------------------------------------------------------------------ lag probe: markers read back from the event stream


@dataclass(frozen=True, slots=True)
class Seen:
    phase: str
    ingest_s: float  # the console's receipt time (the stream's ts) minus the publish time
    e2e_s: float  # the bench reading it from the stream minus the publish time


class LagProbe:
    """Publishes markers and reads them back from one fleet event stream (`/api/events`)."""

    def __init__(self, sim: FleetSimulator, base: str, rate: float = 2.0) -> None:
        self.sim, self.base, self.interval = sim, base, 1.0 / rate
        self.phase = "warmup"
        self.pending: dict[tuple[str, str, str], tuple[Marker, str]] = {}
        self.seen: list[Seen] = []
        self.sent: dict[str, int] = {}
        self.errors: list[str] = []
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._threads = [
            threading.Thread(target=self._read, name="lag-read", daemon=True),
            threading.Thread(target=self._mark, name="lag-mark", daemon=True),
        ]
        self._connected = threading.Event()

    def start(self) -> LagProbe:
        self._threads[0].start()
        if not self._connected.wait(30):
            raise RuntimeError("the event stream did not open")
        self._threads[1].start()
        return self

    def stop(self) -> None:
        self._stop.set()
        for t in self._threads:
            t.join(5)

    def _mark(self) -> None:
        while not self._stop.wait(self.interval):
            try:
                marker = self.sim.mark(self.sim.last_index, "cpu_usage")
            except Exception as exc:  # noqa: BLE001 - a bench records, it does not stop
                self.errors.append(f"mark: {exc}")
                continue
            with self._lock:
                self.pending[(marker.device, marker.key, marker.payload)] = (marker, self.phase)
                self.sent[self.phase] = self.sent.get(self.phase, 0) + 1

    def _read(self) -> None:
        with httpx.Client(base_url=self.base, timeout=httpx.Timeout(30, read=60)) as client:
            while not self._stop.is_set():
                try:
                    with client.stream("GET", "/api/events") as response:
                        response.raise_for_status()
                        self._connected.set()
                        event = ""
                        for line in response.iter_lines():
                            if self._stop.is_set():
                                return
                            if line.startswith("event:"):
                                event = line[6:].strip()
                            elif line.startswith("data:") and event == "update":
                                self._update(json.loads(line[5:]), time.time())
                except (httpx.HTTPError, ValueError) as exc:
                    self.errors.append(f"stream: {exc}")
                    time.sleep(0.5)

    def _update(self, body: dict, now: float) -> None:
        states = body.get("states") or []
        with self._lock:
            if not self.pending:
                return
            for device, key, value, ts in states:
                found = self.pending.pop((device, key, value), None)
                if found is not None:
                    marker, phase = found
                    self.seen.append(Seen(phase, ts - marker.sent_wall, now - marker.sent_wall))

    def take(self, phase: str) -> tuple[list[Seen], int]:
        """The markers of `phase` read back, and how many were sent in it."""
        with self._lock:
            return [s for s in self.seen if s.phase == phase], self.sent.get(phase, 0)


def lag_figures(seen: list[Seen], sent: int) -> dict:
    out: dict = {"sent": sent, "seen": len(seen)}
    if seen:
        out["ingest"] = summary([s.ingest_s for s in seen])
        out["e2e"] = summary([s.e2e_s for s in seen])
    return out


# ------------------------------------------------------------------ the fleet page in Chromium


PAGE_INIT = """
window.__bench = {rows: null};
new MutationObserver(() => {
  if (window.__bench.rows === null &&
      document.querySelectorAll('#devices > li.device').length >= %d) {
    window.__bench.rows = performance.now();
  }
}).observe(document, {childList: true, subtree: true});
"""

SEARCH = """async (q) => {
  const box = document.querySelector('#search');
  const t0 = performance.now();
  box.value = q;
  box.dispatchEvent(new Event('input', {bubbles: true}));
  await new Promise((resolve) => requestAnimationFrame(() => setTimeout(resolve, 0)));
  return {ms: performance.now() - t0, rows: document.querySelectorAll('#devices > li.device').length};
}"""


def page_figures(base: str, devices: int, query: str, loads: int = 3) -> dict:
    try:
        from playwright.sync_api import sync_playwright
    except ImportError as exc:
        return {"error": f"playwright is not installed: {exc}"}
    out: dict = {"loads": []}
    try:
        with sync_playwright() as pw:
            browser = pw.chromium.launch(executable_path="/usr/bin/chromium", args=CHROMIUM_ARGS, headless=True)
            try:
                page = browser.new_page(viewport={"width": 1280, "height": 900})
                page.add_init_script(PAGE_INIT % devices)
                for n in range(loads):
                    if n == 0:
                        page.goto(base + "/", wait_until="commit")
                    else:
                        page.reload(wait_until="commit")
                    # polled from here: the page's CSP (no eval) refuses wait_for_function's predicate
                    deadline = time.monotonic() + 60
                    rows_ms = None
                    while rows_ms is None and time.monotonic() < deadline:
                        rows_ms = page.evaluate("() => window.__bench && window.__bench.rows")
                        time.sleep(0.02)
                    if rows_ms is None:
                        raise RuntimeError(f"fewer than {devices} rows after 60 s")
                    search = page.evaluate(SEARCH, query)
                    out["loads"].append(
                        {
                            "rows_ms": round(rows_ms, 1),
                            "search_ms": round(search["ms"], 1),
                            "rows_after_search": search["rows"],
                            "interactive_ms": round(rows_ms + search["ms"], 1),
                        }
                    )
                    page.evaluate(SEARCH, "")  # the next load starts from an empty box either way
            finally:
                browser.close()
    except Exception as exc:  # noqa: BLE001 - a browser that fails is a line in the report, not a crash
        out["error"] = f"{type(exc).__name__}: {exc}"
    return out


# ------------------------------------------------------------------ the run


def start_console(work: Path, broker_port: int) -> tuple[AgentProcess, str]:
    env = pilot_env()
    users = work / "users"
    add = subprocess.run(
        [sys.executable, "-m", "pilot", "console", "user", "add", ADMIN, "--role", "admin", "--password-stdin"]
        + ["--users", str(users)],
        input=ADMIN_PASSWORD + "\n",
        text=True,
        env=env,
        capture_output=True,
    )
    if add.returncode != 0:
        raise RuntimeError(f"pilot console user add failed: {add.stderr.strip()}")
    port = free_port()
    argv = [sys.executable, "-m", "pilot", "console", "run", "--broker", f"127.0.0.1:{broker_port}"]
    argv += ["--listen", f"127.0.0.1:{port}", "--db", f"sqlite:///{work / 'console.db'}", "--anonymous-read"]
    argv += ["--state-dir", str(work / "state"), "--users", str(users)]
    console = AgentProcess(argv, log=work / "console.log", env=env).start()
    base = f"http://127.0.0.1:{port}"
    wait_for_console(console, base)
    return console, base


def steady(args, sim: FleetSimulator, console: AgentProcess, api: Api, probe: LagProbe, db: Path) -> dict:
    probe.phase = "warmup"
    time.sleep(args.warmup)
    probe.phase = "steady"
    pid = console.pid
    s0, cpu0, size0, t0 = api.stats(), cpu_seconds(pid), db_bytes(db), time.monotonic()
    pub0 = sim.counters.published
    rss: list[float] = []
    while time.monotonic() - t0 < args.window:
        rss.append(status_mb(pid, "VmRSS"))
        time.sleep(2)
    elapsed = time.monotonic() - t0
    s1, cpu1, size1 = api.stats(), cpu_seconds(pid), db_bytes(db)
    probe.phase = "after"
    time.sleep(1.5)  # the last markers are read back
    seen, sent = probe.take("steady")
    raw0, raw1 = s0["storage"].get("rows_raw", 0), s1["storage"].get("rows_raw", 0)
    return {
        "seconds": round(elapsed, 1),
        "published_per_s": round((sim.counters.published - pub0) / elapsed),
        "received_per_s": round((s1["ingest"]["received"] - s0["ingest"]["received"]) / elapsed),
        "cpu_pct": round(100 * (cpu1 - cpu0) / elapsed, 1),
        "rss_mb": {"median": round(statistics.median(rss), 1), "last": round(rss[-1], 1)},
        "hwm_mb": round(status_mb(pid, "VmHWM"), 1),
        "db_bytes_start": size0,
        "db_bytes_end": size1,
        "db_mb_per_day": round((size1 - size0) / elapsed * 86400 / 2**20, 1),
        "raw_rows_per_s": round((raw1 - raw0) / elapsed) if raw1 else None,
        "dropped": s1["ingest"].get("dropped"),
        "samples_lost": s1["ingest"].get("samples_lost"),
        "lag": lag_figures(seen, sent),
    }


def ramp(args, sim: FleetSimulator, console: AgentProcess, api: Api, probe: LagProbe) -> dict:
    steps = []
    best = 0
    per_round = len(sim.devices) * len(sim.kinds)
    for rate in args.ramp:
        sim.period = per_round / rate
        probe.phase = f"settle-{rate}"
        time.sleep(5)
        probe.phase = f"ramp-{rate}"
        s0, cpu0, pub0, t0 = api.stats(), cpu_seconds(console.pid), sim.counters.published, time.monotonic()
        time.sleep(args.step)
        elapsed = time.monotonic() - t0
        s1, cpu1, pub1 = api.stats(), cpu_seconds(console.pid), sim.counters.published
        probe.phase = f"tail-{rate}"
        time.sleep(2)
        seen, sent = probe.take(f"ramp-{rate}")
        published = (pub1 - pub0) / elapsed
        received = (s1["ingest"]["received"] - s0["ingest"]["received"]) / elapsed
        lag = lag_figures(seen, sent)
        p99 = lag["ingest"]["p99"] if seen else float("inf")
        kept = received >= 0.97 * published and p99 < 2.0 and len(seen) >= 0.8 * sent
        steps.append(
            {
                "rate": rate,
                "published_per_s": round(published),
                "received_per_s": round(received),
                "cpu_pct": round(100 * (cpu1 - cpu0) / elapsed, 1),
                "rss_mb": round(status_mb(console.pid, "VmRSS"), 1),
                "lag_p50_s": round(lag["ingest"]["p50"], 3) if seen else None,
                "lag_p99_s": round(p99, 3) if seen else None,
                "markers": f"{len(seen)}/{sent}",
                "kept_up": kept,
            }
        )
        print(f"  ramp {rate}/s: {steps[-1]}", file=sys.stderr, flush=True)
        if kept:
            best = max(best, round(published))
        else:
            break
    sim.period = args.period
    return {"steps": steps, "max_sustained_per_s": best, "hwm_mb": round(status_mb(console.pid, "VmHWM"), 1)}


def machine() -> dict:
    model = ""
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            model = line.split(":", 1)[1].strip()
            break
    mem = 0
    for line in Path("/proc/meminfo").read_text().splitlines():
        if line.startswith("MemTotal:"):
            mem = int(line.split()[1]) // 1024
    return {"cpus": os.cpu_count(), "model": model, "memory_mb": mem, "python": sys.version.split()[0]}


def run(args) -> dict:
    work = Path(tempfile.mkdtemp(prefix="pilot-bench-console-"))
    result: dict = {"machine": machine(), "notes": [], "work": str(work), "config": {}}
    broker = Mosquitto().start()
    console = sim = probe = None
    try:
        sim = FleetSimulator(
            "127.0.0.1", broker.port, devices=args.devices, sensors=args.sensors, period=args.period, seed=args.seed
        )
        result["config"] = {
            "devices": args.devices,
            "sensors": args.sensors,
            "period_s": args.period,
            "nominal_per_s": round(sim.rate),
            "connections": sim.connections_wanted,
        }
        # The console first, then the agents announcing one after another (`--announce-pace` devices/s).
        # A console started on a broker that already holds the fleet's retained messages is not measured
        # here: see the notes in docs/benchmarks.md (it misses most of them).
        t = time.monotonic()
        console, base = start_console(work, broker.port)
        api = Api(base)
        api.login()
        result["console_start_s"] = round(time.monotonic() - t, 2)
        t = time.monotonic()
        sim.announce(pace=args.announce_pace)
        announced = sim.counters.published
        api.wait_devices(args.devices, 120)
        while api.stats()["ingest"]["received"] < announced and time.monotonic() - t < 120:
            time.sleep(0.2)
        result["startup_s"] = round(time.monotonic() - t, 2)
        result["startup_received"] = api.stats()["ingest"]["received"]
        result["announced"] = announced
        result["announce_pace"] = args.announce_pace
        sim.start()
        probe = LagProbe(sim, base).start()
        print(f"fleet announced, {sim.rate:.0f} states/s; steady window...", file=sys.stderr, flush=True)
        result["steady"] = steady(args, sim, console, api, probe, work / "console.db")
        if args.page:
            print("fleet page in Chromium...", file=sys.stderr, flush=True)
            query = sim.devices[len(sim.devices) // 2].name
            result["page"] = page_figures(base, args.devices, query)
        if args.do_ramp:
            print("ramp...", file=sys.stderr, flush=True)
            result["ramp"] = ramp(args, sim, console, api, probe)
        result["simulator"] = {
            "published": sim.counters.published,
            "late_ticks": sim.counters.late_ticks,
            "errors": sim.counters.errors[:3],
        }
        result["probe_errors"] = probe.errors[:5]
        result["console_log_tail"] = console.tail(lines=5) if console.running() else console.tail(2000)
    finally:
        if probe is not None:
            probe.stop()
        if sim is not None:
            sim.stop(offline=False)
        if console is not None:
            console.stop()
        broker.cleanup()
    return result


def verdict(value: float | None, target: float, below: bool = True) -> str:
    if value is None:
        return "n/a"
    ok = value <= target if below else value >= target
    return "meets" if ok else "MISSES"


def print_report(r: dict) -> None:
    c, s = r["config"], r["steady"]
    print(
        f"Console under {c['devices']} devices x {c['sensors']} sensors every {c['period_s']:g} s "
        f"({c['nominal_per_s']} states/s nominal, {c['connections']} simulator connections)"
    )
    print(
        f"announcement ({r['announce_pace']} devices/s): {r['startup_received']} of {r['announced']} messages "
        f"read, all devices listed {r['startup_s']} s after the first\n"
    )
    lag = s["lag"]
    ing = lag.get("ingest") or {}
    e2e = lag.get("e2e") or {}
    rows = [
        ("CPU (% of one core)", s["cpu_pct"], "<= 25", verdict(s["cpu_pct"], 25)),
        ("RSS median / last (MB)", f"{s['rss_mb']['median']} / {s['rss_mb']['last']}", "<= 150",
         verdict(s["rss_mb"]["last"], 150)),
        ("RSS peak VmHWM (MB)", s["hwm_mb"], "<= 150", verdict(s["hwm_mb"], 150)),
        ("ingest lag p50 / p99 (s)", f"{ing.get('p50', 0):.3f} / {ing.get('p99', 0):.3f}", "p99 <= 1",
         verdict(ing.get("p99"), 1.0)),
        ("end-to-end lag p50 / p99 (s)", f"{e2e.get('p50', 0):.3f} / {e2e.get('p99', 0):.3f}", "", ""),
        ("markers read back", f"{lag['seen']}/{lag['sent']}", "", ""),
        ("received / published per s", f"{s['received_per_s']} / {s['published_per_s']}", "", ""),
        ("SQLite growth (MB/day)", s["db_mb_per_day"], "", ""),
        ("raw rows per s", s["raw_rows_per_s"], "", ""),
    ]  # fmt: skip
    print(f"Steady window, {s['seconds']} s:")
    print(table(rows, ("figure", "value", "target", "")))
    if s.get("dropped"):
        print(f"dropped by the console: {s['dropped']}")
    page = r.get("page")
    if page:
        print("\nFleet page (headless Chromium):")
        if page.get("error"):
            print(f"  error: {page['error']}")
        loads = page.get("loads") or []
        if loads:
            rows = [
                (n + 1, ld["rows_ms"], ld["search_ms"], ld["rows_after_search"], ld["interactive_ms"],
                 verdict(ld["interactive_ms"] / 1000, 1.0))
                for n, ld in enumerate(loads)
            ]  # fmt: skip
            print(table(rows, ("load", "all rows (ms)", "search (ms)", "rows found", "interactive (ms)", "< 1 s")))
    ramp_ = r.get("ramp")
    if ramp_:
        print("\nMaximum ingest (rate raised step by step):")
        rows = [
            (st["rate"], st["published_per_s"], st["received_per_s"], st["cpu_pct"], st["rss_mb"],
             st["lag_p50_s"], st["lag_p99_s"], st["markers"], "yes" if st["kept_up"] else "NO")
            for st in ramp_["steps"]
        ]  # fmt: skip
        print(
            table(
                rows,
                (
                    "target/s",
                    "published/s",
                    "received/s",
                    "CPU %",
                    "RSS MB",
                    "lag p50",
                    "lag p99",
                    "markers",
                    "kept up",
                ),
            )
        )
        best = ramp_["max_sustained_per_s"]
        print(f"max sustained: {best} msg/s ({verdict(best, 10000, below=False)} >= 10,000); "
              f"VmHWM after the ramp {ramp_['hwm_mb']} MB")  # fmt: skip
    m = r["machine"]
    print(f"\nmachine: {m['cpus']} CPUs ({m['model']}), {m['memory_mb']} MB, Python {m['python']}")
    for note in r["notes"]:
        print(note)
    if r.get("probe_errors"):
        print(f"probe errors: {r['probe_errors']}")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--devices", type=int, default=1000)
    ap.add_argument("--sensors", type=int, default=20)
    ap.add_argument("--period", type=float, default=10.0)
    ap.add_argument("--seed", type=int, default=random.randrange(1 << 16))
    ap.add_argument("--announce-pace", type=float, default=100.0, help="devices announcing per second")
    ap.add_argument("--warmup", type=float, default=30.0)
    ap.add_argument("--window", type=float, default=90.0)
    ap.add_argument("--step", type=float, default=20.0, help="seconds measured at each ramp rate")
    ap.add_argument("--ramp", type=lambda s: [int(x) for x in s.split(",")], default=list(DEFAULT_RAMP))
    ap.add_argument("--no-ramp", dest="do_ramp", action="store_false")
    ap.add_argument("--no-page", dest="page", action="store_false")
    ap.add_argument("--quick", action="store_true", help="short windows (warm-up 10 s, window 30 s, steps 10 s)")
    ap.add_argument("--json", action="store_true")
    ap.add_argument("--keep", action="store_true", help="keep the work directory (console log, database)")
    args = ap.parse_args()
    if args.quick:
        args.warmup, args.window, args.step = 10.0, 30.0, 10.0
    load_before = os.getloadavg()[0]
    result = run(args)
    return finish(result, load_before, result["work"], args.keep, args.json, print_report)


if __name__ == "__main__":
    raise SystemExit(main())
