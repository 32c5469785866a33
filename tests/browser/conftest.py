"""A whole console for the browser tests: a real Mosquitto, the real agent in dry-run, simulated devices
published as retained discovery, a users file, seeded history, `pilot console run` as a subprocess, and one
headless Chromium (Debian's, never a downloaded one) per module."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from testkit.agent import AgentProcess, pilot_env, pilot_run
from testkit.broker import Mosquitto, Watcher, free_port

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--headless=new",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
PASSWORD = "correct horse battery staple"
OPERATOR, VIEWER = "olive", "vera"
AGENT_ID = "office01"
HOSTILE_NAME = '<img src=x onerror="window.__pwned=1">'

PROFILE = """pilot: 1
device: {{id: office01, name: Office PC}}
sensors:
  cpu_usage: {{probe: cpu.percent, every: 2s, unit: "%", state_class: measurement}}
  memory_used: {{probe: memory.used_percent, every: 2s, unit: "%", state_class: measurement}}
  uptime: {{probe: system.uptime, every: 10s, entity_category: diagnostic}}
  cpu_busy: {{expr: "cpu_usage > 99.9", platform: binary_sensor}}
commands:
  reboot: {{action: power.reboot, args: {{method: systemctl}}, platform: button, policy: {{confirm: 20s}}}}
  backup: {{action: process.run, args: {{argv: [/bin/echo, backup]}}, platform: button}}
policies:
  allow: [reboot, backup]
  hmac: {{keyring: {keyring}, window: 60s}}
"""


def discovery(device_id: str, name: str, components: dict, *, model: str = "Simulated", version: str = "0.9.0") -> str:
    """Device-based discovery as a Pilot agent publishes it (the parts the console reads)."""
    comps = {}
    for key, comp in components.items():
        comps[f"pilot_{device_id}_{key}"] = {
            "unique_id": f"pilot_{device_id}_{key}",
            "state_topic": f"pilot/{device_id}/state/{key}",
            **comp,
        }
    return json.dumps(
        {
            "device": {
                "identifiers": [f"pilot_{device_id}"],
                "name": name,
                "manufacturer": "Pilot",
                "model": model,
                "sw_version": version,
            },
            "origin": {"name": "Pilot"},
            "components": comps,
        }
    )


SENSORS = {
    "cpu_usage": {"platform": "sensor", "name": "CPU usage", "unit_of_measurement": "%", "state_class": "measurement"},
    "memory_used": {
        "platform": "sensor",
        "name": "Memory used",
        "unit_of_measurement": "%",
        "state_class": "measurement",
    },
    "cpu_temp": {
        "platform": "sensor",
        "name": "CPU temperature",
        "unit_of_measurement": "°C",
        "state_class": "measurement",
    },
}


@dataclass
class SimDevice:
    id: str
    name: str
    online: bool
    values: dict[str, str]
    extra: dict = field(default_factory=dict)


SIMULATED = [
    SimDevice(
        "lab02",
        "Lab server",
        True,
        {"cpu_usage": "12.5", "memory_used": "48.1", "cpu_temp": "51"},
        {
            "fan_speed": {
                "platform": "number",
                "name": "Fan speed",
                "command_topic": "pilot/lab02/cmd/fan_speed/set",
                "min": 0,
                "max": 100,
                "step": 1,
                "unit_of_measurement": "%",
            }
        },
    ),
    SimDevice("kiosk03", "Hall kiosk", False, {"cpu_usage": "3.0", "memory_used": "71.9", "cpu_temp": "44"}),
    SimDevice("evil04", HOSTILE_NAME, True, {"cpu_usage": "1", "memory_used": "2", "cpu_temp": "3"}),
]


def publish_simulated(watcher: Watcher, devices: list[SimDevice]) -> None:
    for d in devices:
        watcher.publish(
            f"homeassistant/device/{d.id}/config", discovery(d.id, d.name, {**SENSORS, **d.extra}), retain=True
        )
        watcher.publish(f"pilot/{d.id}/availability", "online" if d.online else "offline", retain=True)
        for key, value in d.values.items():
            watcher.publish(f"pilot/{d.id}/state/{key}", value, retain=True)


@dataclass
class ConsoleRig:
    """Everything the tests reach: the broker, a watcher on it, the agent, the console's address and parts."""

    broker: Mosquitto
    watcher: Watcher
    agent: AgentProcess
    url: str
    http_port: int
    argv: list[str]
    env: dict[str, str]
    log: Path
    shots: Path
    proc: subprocess.Popen | None = None

    def start_console(self) -> None:
        with open(self.log, "ab") as out:
            self.proc = subprocess.Popen(
                self.argv, env=self.env, stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT
            )
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"the console exited:\n{self.log.read_text(errors='replace')[-3000:]}")
            try:  # ready: connected, and every subscription's retained messages read
                with urllib.request.urlopen(f"{self.url}/healthz", timeout=1) as answer:
                    if answer.status == 200 and json.loads(answer.read()).get("ready"):
                        return
            except (OSError, urllib.error.URLError, ValueError):
                pass
            time.sleep(0.1)
        raise RuntimeError(f"the console did not answer:\n{self.log.read_text(errors='replace')[-3000:]}")

    def stop_console(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()

    def console_output(self) -> str:
        return self.log.read_text(errors="replace")[-4000:]

    @classmethod
    def make(
        cls, base: Path, broker: Mosquitto, watcher: Watcher, agent: AgentProcess, http_port: int, argv: list[str]
    ) -> ConsoleRig:
        """A rig for a console run as argv on http_port, its log in base and its screenshots where
        PILOT_CONSOLE_SCREENSHOTS says (docs/img to refresh the documentation's), else in base."""
        shots = Path(os.environ.get("PILOT_CONSOLE_SCREENSHOTS") or base / "shots")
        shots.mkdir(parents=True, exist_ok=True)
        return cls(
            broker=broker,
            watcher=watcher,
            agent=agent,
            url=f"http://127.0.0.1:{http_port}",
            http_port=http_port,
            argv=argv,
            env=pilot_env(),
            log=base / "console.log",
            shots=shots,
        )

    def close(self) -> None:
        """Stops the console, the agent, the watcher and the broker, in that order."""
        self.stop_console()
        self.agent.stop()
        self.watcher.stop()
        self.broker.cleanup()


def seed_history(db_url: str, now: float) -> None:
    """30 days of the agent's CPU usage (one reading every 10 minutes): a chart over any range has data."""
    from pilot.console.storage import Sample, open_storage

    storage = open_storage(db_url)
    try:
        start = now - 30 * 86400
        samples = [Sample(AGENT_ID, "cpu_usage", start + i * 600, 20 + 15 * ((i % 144) / 144)) for i in range(30 * 144)]
        storage.add(samples)
        storage.maintain(now)
    finally:
        storage.close()


@pytest.fixture(scope="module")
def rig(tmp_path_factory):
    from pilot.agent import signing
    from pilot.console.auth import UsersFile

    base = tmp_path_factory.mktemp("console")
    broker = Mosquitto().start()
    watcher = Watcher(broker.port).start()
    keyring = base / "keyring"
    keyring.write_text(signing.new_key_line("console") + "\n")
    keyring.chmod(0o600)
    users = base / "users"
    ufile = UsersFile(users)
    ufile.add(OPERATOR, "operator", PASSWORD)
    ufile.add(VIEWER, "viewer", PASSWORD)
    db = base / "history.db"
    seed_history(f"sqlite:///{db}", time.time())
    publish_simulated(watcher, SIMULATED)

    profile = base / "office.yaml"
    profile.write_text(PROFILE.format(keyring=keyring))
    agent = pilot_run(
        profile, broker.port, base / "agent-state", "--dry-run", env={"LANG": "C.UTF-8"}, log=base / "agent.log"
    ).start()

    http_port = free_port()
    argv = [
        sys.executable, "-m", "pilot", "console", "run",
        "--broker", f"127.0.0.1:{broker.port}",
        "--listen", f"127.0.0.1:{http_port}",
        "--db", f"sqlite:///{db}",
        "--users", str(users),
        "--keyring", str(keyring),
        "--kid", "console",
        "--state-dir", str(base / "console-state"),
    ]  # fmt: skip
    console = ConsoleRig.make(base, broker, watcher, agent, http_port, argv)
    try:
        console.start_console()
        yield console
    finally:
        console.close()


@pytest.fixture(scope="module")
def browser():
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        yield b
        b.close()


@pytest.fixture
def page(browser, rig):
    """A fresh browser context (no cookies) at 1280x800; console errors and CSP violations are collected."""
    context = browser.new_context(viewport={"width": 1280, "height": 800}, base_url=rig.url)
    context.set_default_timeout(20_000)
    pg = context.new_page()
    pg.errors = []  # type: ignore[attr-defined]
    pg.on("pageerror", lambda exc: pg.errors.append(str(exc)))  # type: ignore[attr-defined]
    pg.on(
        "console",
        lambda msg: (
            pg.errors.append(msg.text) if msg.type == "error" and "Content Security Policy" in msg.text else None
        ),  # type: ignore[attr-defined]
    )
    yield pg
    context.close()


def sign_in(page, user: str, password: str = PASSWORD, path: str = "/") -> None:
    page.goto(path)
    page.wait_for_url("**/login**")
    page.fill("#username", user)
    page.fill("#password", password)
    page.click("#login-submit")
    page.wait_for_function("() => document.body.dataset.page !== 'login' && document.body.dataset.ready === '1'")
