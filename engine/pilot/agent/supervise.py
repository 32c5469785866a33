"""run_agent(): a Plan in, a running agent until told to stop, an exit code out.

`pilot run`, `pilot demo` and the Windows service all come through here. It
chooses the broker (the --broker override, the profile's, or a local trial
broker), refuses to run as root unless allowed, handles SIGTERM, SIGINT and
SIGHUP, talks to systemd (readiness, watchdog, status) and exits non-zero when
the MQTT thread dies so that the service manager restarts it.
"""

from __future__ import annotations

import logging
import os
import signal
import sys
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path

from pilot.agent import sdnotify
from pilot.agent.deployer import CONNECT_DEADLINE, Deployer
from pilot.agent.mqtt import unreadable_files
from pilot.agent.reload import Reloader
from pilot.agent.runtime import HA_DELAY, HEALTH_EVERY, Agent, AgentOptions, idle_rules
from pilot.agent.state import StateDir
from pilot.escaping import escape
from pilot.plan import CompileResult, Plan

log = logging.getLogger("pilot")

ROOT_REFUSAL = (
    "pilot: error: refusing to run as root: every command would run with full privileges. Run Pilot "
    "as a dedicated user (`pilot service install` creates one), or set `service: {allow_root: true}` "
    "in the profile (PILOT_ALLOW_ROOT=1 in the environment does the same; --dry-run is always allowed)"
)
TRIAL_HOST, TRIAL_PORT = "127.0.0.1", 1883


@dataclass
class RunOptions:
    state_dir: Path
    broker: tuple[str, int | None] | None = None  # --broker HOST[:PORT]; None and no profile broker: a trial broker
    dry_run: bool = False
    once: bool = False  # discovery and one round of sensors, then exit
    timeout: float = 15.0  # --once: how long to wait for the broker
    duration: float = 0.0  # stop after this many seconds (0: until told to stop)
    allow_root: bool = False  # PILOT_ALLOW_ROOT=1
    ha_delay: tuple[float, float] = HA_DELAY
    health_every: float = HEALTH_EVERY
    deploy_deadline: float = CONNECT_DEADLINE  # seconds a deployed profile's new MQTT settings have to connect


def refuse_root(plan: Plan, options: RunOptions) -> bool:
    """True when the agent must not start: euid 0 without allow_root (profile or environment) or --dry-run."""
    if not hasattr(os, "geteuid") or os.geteuid() != 0 or options.dry_run:
        return False
    return not (plan.service.allow_root or options.allow_root)


def run_agent(
    plan: Plan,
    options: RunOptions,
    stop: threading.Event | None = None,
    recompile: Callable[[], CompileResult] | None = None,
    compile_file: Callable[[str], CompileResult] | None = None,
    profile_file: str | None = None,
) -> int:
    """Run until SIGTERM/SIGINT, `stop` (the Windows service's event) or `options.duration`.
    `recompile` returns the profile compiled afresh; without it, reload requests are ignored.
    `compile_file` compiles any file (a deployed candidate) and `profile_file` is the file a deploy
    replaces; without both (a shipped pack), `_profile/set` and `_profile/get` are refused."""
    if refuse_root(plan, options):
        print(ROOT_REFUSAL, file=sys.stderr)
        return 2
    missing = unreadable_files(plan.mqtt)
    if missing:
        for line in missing:
            print(f"pilot: error: cannot read {escape(line)}", file=sys.stderr)
        return 2
    broker = None
    if options.broker:
        host, port = options.broker[0], options.broker[1] or plan.mqtt.port or 1883
    elif plan.mqtt.host:
        host, port = plan.mqtt.host, plan.mqtt.port or 1883
    else:
        from pilot.agent import broker as trial

        # never adopt a broker that happens to listen on 1883: it may be the user's real Home
        # Assistant broker, and a trial run would announce a device on it
        host = TRIAL_HOST
        port = TRIAL_PORT if not trial.listening(host, TRIAL_PORT) else trial.free_port()
        try:
            broker = trial.start(port)
        except RuntimeError as exc:
            print(f"pilot: error: {exc}", file=sys.stderr)
            return 1
        elsewhere = "" if port == TRIAL_PORT else f" (something already listens on {TRIAL_PORT}; it is left alone)"
        log.info(
            "no broker configured: started a private trial broker (%s) on %s:%d%s", broker.kind, host, port, elsewhere
        )
        print(f"Watch it:  mosquitto_sub -h {host} -p {port} -v -t 'pilot/#' -t 'homeassistant/#'", file=sys.stderr)
    if options.dry_run:
        log.warning("DRY RUN: every command is checked by the guards and answered, but nothing is executed")

    agent = Agent(
        plan,
        AgentOptions(
            host=host,
            port=port,
            state_dir=StateDir(options.state_dir),
            dry_run=options.dry_run,
            ha_delay=options.ha_delay,
            health_every=options.health_every,
            pinned=options.broker is not None,
            # a deploy needs a keyring at start: only then are messages up to 256 KiB let through (MQTT 5)
            deploys=compile_file is not None and profile_file is not None and bool(plan.policy.keyring),
        ),
    )
    for line in idle_rules(plan, set(agent.sensors.states)):
        log.warning("%s", line)
    reloader = Reloader(agent, recompile) if recompile is not None else None
    if reloader is not None:
        agent.reload_handler = reloader.from_mqtt
    if compile_file is not None and profile_file is not None:
        agent.deployer = Deployer(
            agent,
            compile_file,
            profile_file,
            connect_deadline=options.deploy_deadline,
            lock=reloader.lock if reloader is not None else None,
        )
    stop = _install_signals(stop, reloader)
    try:
        if options.once:
            return _run_once(agent, options.timeout)
        return _supervise(agent, stop, options.duration, f"{host}:{port}")
    finally:
        sdnotify.stopping()
        agent.stop()
        if broker is not None:
            broker.stop()


def _install_signals(stop: threading.Event | None, reloader: Reloader | None) -> threading.Event:
    """SIGTERM and SIGINT set `stop`; SIGHUP reloads. Signal handlers exist only on the main thread
    (the Windows service runs us on another one and sets `stop` itself)."""
    stop = stop or threading.Event()
    if threading.current_thread() is not threading.main_thread():
        return stop
    for name in ("SIGTERM", "SIGINT", "SIGBREAK"):  # SIGBREAK: Ctrl-Break on Windows
        if hasattr(signal, name):
            signal.signal(getattr(signal, name), lambda *_: stop.set())
    if hasattr(signal, "SIGHUP") and reloader is not None:
        signal.signal(
            signal.SIGHUP,
            lambda *_: threading.Thread(
                target=_reload_notified, args=(reloader,), name="pilot-sighup", daemon=True
            ).start(),
        )
    return stop


def _supervise(agent: Agent, stop: threading.Event, duration: float, where: str) -> int:
    agent.start()
    sdnotify.ready(f"started; connecting to {where}")
    # WatchdogSec=: ping at half the period, and only while the MQTT thread and the ticker are alive
    watchdog = sdnotify.watchdog_interval()
    period = min(5.0, watchdog) if watchdog else 5.0
    shown = None
    deadline = time.monotonic() + duration if duration else None
    while not stop.is_set():
        stop.wait(period if deadline is None else max(0.0, min(period, deadline - time.monotonic())))
        if deadline is not None and time.monotonic() >= deadline:
            break
        if not agent.healthy():
            log.error("the MQTT network thread died; exiting so the service manager restarts us")
            return 1
        if watchdog:
            sdnotify.watchdog()
        text = f"{'online' if agent.session.connected else 'offline: broker unreachable'} ({where})"
        if text != shown:
            shown = text
            sdnotify.status(text)
    log.info("stopping")
    return 0


def _reload_notified(reloader: Reloader) -> None:
    """SIGHUP (systemd's ExecReload): tell systemd we are reloading, and ready again after."""
    sdnotify.reloading()
    try:
        reloader.run("SIGHUP")
    except Exception:  # a reload must never take the agent down with it
        log.exception("reload failed; the running profile stays")
    finally:
        sdnotify.ready()


def _run_once(agent: Agent, timeout: float) -> int:
    agent.options.state_dir.ensure()
    agent.session.start()
    started = time.monotonic()
    if not agent.session.wait_connected(timeout):
        log.error("could not reach the broker within %.0f s: %s", timeout, agent.session.stats.last_error)
        return 1
    time.sleep(max(0.0, 1.0 - (time.monotonic() - started)))  # usage and rate probes need an interval
    from pilot.probes._background import settle

    settle(max(0.0, timeout - (time.monotonic() - started)))  # first answers of program-reading probes
    agent.read_all()
    deadline = time.monotonic() + timeout
    while agent.session.pending() and time.monotonic() < deadline:
        time.sleep(0.02)
    time.sleep(0.2)  # let paho write what it was handed
    return 0


def options_from_env(environ: Mapping[str, str], **given: object) -> RunOptions:
    """RunOptions with the environment's switches (docs/configuration.md). A value that cannot be
    read raises ValueError naming the variable."""
    from pilot import environment

    def seconds(name: str) -> list[float] | None:
        text = environment.get(name, environ)
        if text is None:
            return None
        try:
            values = [float(part) for part in text.split(",")]
        except ValueError:
            values = []
        if not values or len(values) > 2 or not all(0 <= v < 86400 for v in values):
            raise ValueError(f"{name}={text!r} is not a number of seconds")
        return values

    options = RunOptions(**given)  # type: ignore[arg-type]
    options.allow_root = environment.get("PILOT_ALLOW_ROOT", environ) == "1"
    delay = seconds("PILOT_HA_DELAY")
    if delay:
        options.ha_delay = (delay[0], delay[-1])
    every = seconds("PILOT_HEALTH_EVERY")
    if every:
        options.health_every = max(every[0], 0.1)
    return options
