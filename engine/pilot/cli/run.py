"""`pilot run` and `pilot demo`: turn a profile into a running agent.

The plan is compiled in a child process (or read from a cache), the broker
is chosen (profile, --broker, or a local trial broker), and the agent runs
until SIGTERM or SIGINT, publishing `offline` on the way out.
"""

from __future__ import annotations

import argparse
import logging
import os
import signal
import sys
import threading
import time
from pathlib import Path
from typing import Any

log = logging.getLogger("pilot")


def parse_broker(text: str) -> tuple[str, int]:
    host, _, port = text.rpartition(":")
    if not host:
        return text, 1883
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
    return host, int(port)


def pick_profile() -> Path | None:
    from pilot import facts
    from pilot.profile import packs

    matching = packs.matching(facts.host_facts())
    for pack in matching:
        if pack.default_profile:
            return pack.default_profile
    return None


def _load_plan(profile: str, state_dir: Path) -> Any:
    from pilot.profile.worker import CompileError, compile_profile
    from pilot.plan import Plan

    result = compile_profile(profile, cache_dir=state_dir)
    if not result.get("ok"):
        raise CompileError(result.get("diagnostics", []))
    return Plan.from_dict(result["plan"])


ROOT_REFUSAL = ("pilot: error: refusing to run as root: every command would run with full privileges. Run Pilot "
                "as a dedicated user (`pilot service install` creates one), or set `service: {allow_root: true}` "
                "in the profile (PILOT_ALLOW_ROOT=1 in the environment does the same; --dry-run is always allowed)")


def refuse_root(plan: Any, dry_run: bool, environ: Any = os.environ) -> bool:
    """True when `pilot run` must not start: euid 0 without allow_root, --dry-run or PILOT_ALLOW_ROOT=1."""
    if not hasattr(os, "geteuid") or os.geteuid() != 0 or dry_run:
        return False
    return not (plan.policy.allow_root or environ.get("PILOT_ALLOW_ROOT") == "1")


def cmd_run(args: argparse.Namespace, stop: threading.Event | None = None) -> int:
    """Run until SIGTERM/SIGINT, or until `stop` is set (the Windows service passes its own event)."""
    from pilot.agent import logs, sdnotify

    logs.setup(args.log_format, args.log_level)
    if args.show_states:
        logging.getLogger("pilot.agent").setLevel(logging.DEBUG)
    from pilot.profile.worker import CompileError
    from pilot.agent.state import StateDir, default_state_dir

    state_path = Path(args.state_dir) if args.state_dir else default_state_dir()
    profile = args.profile
    if profile is None:
        picked = pick_profile()
        if picked is None:
            print("pilot: error: no profile given and no shipped pack matches this machine (see `pilot detect`)",
                  file=sys.stderr)
            return 2
        profile = str(picked)
        log.info("no profile given: using %s (the pack that matches this machine)", profile)
    if not os.path.isfile(profile):
        print(f"pilot: error: {profile}: no such file", file=sys.stderr)
        return 2
    try:
        plan = _load_plan(profile, state_path)
    except CompileError as exc:
        print(str(exc), file=sys.stderr)
        print(f"pilot: {profile} is not valid; nothing started", file=sys.stderr)
        return 1
    except (RuntimeError, OSError) as exc:
        print(f"pilot: error: {exc}", file=sys.stderr)
        return 1
    if refuse_root(plan, args.dry_run):
        print(ROOT_REFUSAL, file=sys.stderr)
        return 2

    broker = None
    if args.broker:
        host, port = parse_broker(args.broker)
    elif plan.mqtt.host:
        host, port = plan.mqtt.host, plan.mqtt.port or 1883
    else:
        from pilot.agent import broker as trial

        host, port = "127.0.0.1", 1883
        if not trial.listening(host, port):
            try:
                broker = trial.start(port)
            except RuntimeError as exc:
                print(f"pilot: error: {exc}", file=sys.stderr)
                return 1
            log.info("no broker configured: started a local trial broker (%s) on %s:%d", broker.kind, host, port)
            print(f"Watch it:  mosquitto_sub -h {host} -p {port} -v -t 'pilot/#' -t 'homeassistant/#'",
                  file=sys.stderr)
        else:
            log.info("no broker configured: using the one listening on %s:%d", host, port)

    from pilot.agent.runtime import Agent, AgentOptions

    options = AgentOptions(host=host, port=port, state_dir=StateDir(state_path), dry_run=args.dry_run)
    if os.environ.get("PILOT_HA_DELAY"):  # tests shorten Home Assistant's birth delay
        low, _, high = os.environ["PILOT_HA_DELAY"].partition(",")
        options.ha_delay = (float(low), float(high or low))
    agent = Agent(plan, options)
    reloader = Reloader(agent, profile, state_path)
    agent.reload_handler = reloader.from_mqtt
    if stop is None or threading.current_thread() is threading.main_thread():
        stop = stop or threading.Event()
        signal.signal(signal.SIGTERM, lambda *_: stop.set())
        signal.signal(signal.SIGINT, lambda *_: stop.set())
        if hasattr(signal, "SIGBREAK"):  # Windows: Ctrl-Break
            signal.signal(signal.SIGBREAK, lambda *_: stop.set())
        if hasattr(signal, "SIGHUP"):
            signal.signal(signal.SIGHUP, lambda *_: threading.Thread(target=_reload_notified, args=(reloader,),
                                                                     daemon=True).start())
    try:
        if args.once:
            return _run_once(agent, args.timeout)
        agent.start()
        sdnotify.ready(f"started; connecting to {host}:{port}")
        # WatchdogSec=: ping at half the period, and only while the MQTT thread and the ticker are alive
        watchdog = sdnotify.watchdog_interval()
        period = min(5.0, watchdog) if watchdog else 5.0
        shown = None
        deadline = time.monotonic() + args.duration if args.duration else None
        while not stop.is_set():
            stop.wait(period if deadline is None else max(0.0, min(period, deadline - time.monotonic())))
            if deadline is not None and time.monotonic() >= deadline:
                break
            if not agent.healthy():
                log.error("the MQTT network thread died; exiting so the service manager restarts us")
                return 1
            if watchdog:
                sdnotify.watchdog()
            text = f"{'online' if agent.session.connected else 'offline: broker unreachable'} ({host}:{port})"
            if text != shown:
                shown = text
                sdnotify.status(text)
        log.info("stopping")
        return 0
    finally:
        sdnotify.stopping()
        agent.stop()
        if broker is not None:
            broker.stop()


def _reload_notified(reloader: "Reloader") -> None:
    """SIGHUP (systemd's ExecReload): tell systemd we are reloading, and ready again after."""
    from pilot.agent import sdnotify

    sdnotify.reloading()
    try:
        reloader.run("SIGHUP")
    except Exception:  # a reload must never take the agent down with it
        log.exception("reload failed; the running profile stays")
    finally:
        sdnotify.ready()


class Reloader:
    """Re-validate the profile and swap the plan in; a broken profile leaves the old plan running."""

    MIN_INTERVAL = 5.0  # seconds between two reloads; requests in between fold into one

    def __init__(self, agent: Any, profile: str, state_dir: Path) -> None:
        self.agent, self.profile, self.state_dir = agent, profile, state_dir
        self._lock = threading.Lock()
        self._wanted = threading.Event()
        self._origin = ""
        self._last = 0.0
        self._worker: threading.Thread | None = None

    def request(self, origin: str) -> None:
        """Ask for a reload without blocking the caller (a signal handler or paho's thread).
        One worker runs them; a flood of requests folds into one reload every few seconds."""
        self._origin = origin
        self._wanted.set()
        if self._worker is None or not self._worker.is_alive():
            self._worker = threading.Thread(target=self._work, name="pilot-reload", daemon=True)
            self._worker.start()

    def _work(self) -> None:
        while self._wanted.wait(timeout=30):
            wait = self._last + self.MIN_INTERVAL - time.monotonic()
            if wait > 0:
                time.sleep(wait)
            self._wanted.clear()
            self._last = time.monotonic()
            try:
                self.run(self._origin)
            except Exception:  # a reload must never take the agent down with it
                log.exception("reload failed; the running profile stays")
                self._reply({"status": "failed", "reason": "unavailable"})

    def _reply(self, body: dict) -> None:
        import json

        topic = f"{self.agent.plan.topics.base}/cmd/_reload/result"
        self.agent.session.publish_result(topic, json.dumps({**body, "ts": int(time.time())}), 1, False)

    def from_mqtt(self, payload: bytes) -> None:
        """Runs on paho's thread: cheap checks only, then a request for the worker."""
        topic = f"{self.agent.plan.topics.base}/cmd/_reload/set"
        if len(payload) > self.agent.plan.policy.max_payload:
            return
        if self.agent.plan.policy.require_signed:
            if self.agent.commands is None:
                return
            reason, nonce = self.agent.commands.verify_control(topic, payload, False)
            if reason:
                if nonce or self.agent.commands.junk_replies.allow():  # junk: one answer a second
                    self._reply({"status": "rejected", "reason": reason, **({"nonce": nonce} if nonce else {})})
                return
        self.request("mqtt")

    def run(self, origin: str) -> None:
        from pilot.profile.worker import CompileError, format_diagnostics
        from pilot.plan import Plan
        from pilot.agent.runtime import connection_key

        with self._lock:
            log.info("reload requested (%s): validating %s", origin, self.profile)
            try:
                from pilot.profile.worker import compile_profile

                result = compile_profile(self.profile, cache_dir=self.state_dir)
            except (RuntimeError, OSError) as exc:
                log.error("reload failed, keeping the running profile: %s", exc)
                self._reply({"status": "failed", "reason": "unavailable"})
                return
            if not result.get("ok"):
                diagnostics = result.get("diagnostics", [])
                log.error("reload refused, keeping the running profile:\n%s", format_diagnostics(diagnostics))
                self._reply({"status": "rejected", "reason": "invalid_profile",
                             "errors": [CompileError([d]).args[0] for d in diagnostics[:20]]})
                return
            plan = Plan.from_dict(result["plan"])
            if connection_key(plan) != connection_key(self.agent.plan):
                log.error("reload refused: broker, TLS, topic prefix or device id changed; restart Pilot to apply")
                self._reply({"status": "rejected", "reason": "restart_required"})
                return
            self.agent.reload(plan)
            self._reply({"status": "ok", "profile_hash": plan.profile_hash})


def _run_once(agent: Any, timeout: float) -> int:
    agent.options.state_dir.ensure()
    agent.session.start()
    started = time.monotonic()
    if not agent.session.wait_connected(timeout):
        log.error("could not reach the broker within %.0f s: %s", timeout, agent.session.stats.last_error)
        return 1
    time.sleep(max(0.0, 1.0 - (time.monotonic() - started)))  # usage and rate probes need an interval
    agent.read_all()
    deadline = time.monotonic() + timeout
    while agent.session.pending() and time.monotonic() < deadline:
        time.sleep(0.02)
    time.sleep(0.2)  # let paho write what it was handed
    return 0


def cmd_demo(args: argparse.Namespace) -> int:
    """The README's first command: run the agent for this machine, dry-run, on a trial broker."""
    argv = ["run", "--dry-run", "--show-states"]
    if args.duration:
        argv += ["--duration", str(args.duration)]
    from pilot.cli import main

    return main(argv)


def register(sub: Any) -> None:
    p = sub.add_parser("run", help="run the agent: telemetry, discovery and commands over MQTT")
    p.add_argument("profile", nargs="?", metavar="PROFILE", help="profile file; default: the matching shipped pack")
    p.add_argument("--broker", metavar="HOST:PORT", help="use this broker instead of the profile's")
    p.add_argument("--state-dir", metavar="DIR", help="where state is kept (default: XDG state dir or /var/lib/pilot)")
    p.add_argument("--dry-run", action="store_true", help="run every guard but never execute an action")
    p.add_argument("--once", action="store_true", help="publish discovery and one round of sensors, then exit")
    p.add_argument("--timeout", type=float, default=15.0, help="--once: how long to wait for the broker")
    p.add_argument("--duration", type=float, default=0, help=argparse.SUPPRESS)
    p.add_argument("--show-states", action="store_true", help="log every value as it is published")
    p.add_argument("--log-format", choices=["text", "json"], default="text")
    p.add_argument("--log-level", choices=["debug", "info", "warning", "error"], default="info")
    p.set_defaults(func=cmd_run)

    p = sub.add_parser("demo", help="run the agent for this machine in dry-run on a local trial broker")
    p.add_argument("--duration", type=float, default=0, help="stop after this many seconds")
    p.set_defaults(func=cmd_demo)
