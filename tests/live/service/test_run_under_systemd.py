"""`pilot run` as systemd sees it: READY, STATUS, WATCHDOG, RELOADING/READY on SIGHUP, STOPPING on SIGTERM,
and the refusal to run as root."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from pilot.agent.supervise import options_from_env, refuse_root
from pilot.plan import Plan, Service
from testkit.agent import pilot_run
from tests.support.files import BASIC, REPO, write

pytestmark = pytest.mark.skipif(not hasattr(socket, "AF_UNIX") or os.name == "nt", reason="needs AF_UNIX and signals")


def _env(**extra: str) -> dict[str, str]:
    env = {
        k: v
        for k, v in os.environ.items()
        if k not in ("NOTIFY_SOCKET", "WATCHDOG_USEC", "WATCHDOG_PID", "PILOT_ALLOW_ROOT", "PILOT_SERVICE_RECORD")
    }
    return {**env, "PYTHONPATH": str(REPO / "engine"), **extra}


def _closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]  # closed again when this returns: nothing listens there


class Notifications:
    def __init__(self, folder: Path) -> None:
        self.path = str(folder / "notify.sock")
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.bind(self.path)
        self.seen: list[str] = []

    def wait_for(self, predicate, timeout: float = 20.0, earlier: bool = False) -> str:
        """The next message that matches (or, with earlier=True, one already received)."""
        if earlier:
            for message in self.seen:
                if predicate(message):
                    return message
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            self.sock.settimeout(max(0.01, deadline - time.monotonic()))
            try:
                message = self.sock.recv(4096).decode()
            except TimeoutError:
                break
            self.seen.append(message)
            if predicate(message):
                return message
        raise AssertionError(f"no matching notification; got {self.seen}")

    def close(self) -> None:
        self.sock.close()


def test_run_notifies_ready_status_watchdog_reload_and_stopping(tmp_path):
    from testkit.broker import Mosquitto, find_mosquitto

    broker = Mosquitto().start() if find_mosquitto() else None
    port = broker.port if broker else _closed_port()
    notes = Notifications(tmp_path)
    # pilot_run sets PILOT_ALLOW_ROOT=1 on top of _env(), which drops any inherited one
    agent = pilot_run(
        BASIC,
        port,
        tmp_path / "state",
        base_env=_env(NOTIFY_SOCKET=notes.path, WATCHDOG_USEC="2000000"),
        log=tmp_path / "agent.log",
    ).start()
    try:
        assert notes.wait_for(lambda m: "READY=1" in m).startswith("READY=1")
        started = time.monotonic()
        notes.wait_for(lambda m: m == "WATCHDOG=1", timeout=5)
        notes.wait_for(lambda m: m == "WATCHDOG=1", timeout=5)
        assert time.monotonic() - started < 4, "WatchdogSec=2 means a ping at least every second"
        if broker is not None:
            status = notes.wait_for(lambda m: m.startswith("STATUS=online"), earlier=True)
            assert status == f"STATUS=online (127.0.0.1:{port})"
        else:
            notes.wait_for(lambda m: m.startswith("STATUS=offline"), earlier=True)
        agent.signal(signal.SIGHUP)
        notes.wait_for(lambda m: m.startswith("RELOADING=1\nMONOTONIC_USEC="))
        notes.wait_for(lambda m: m == "READY=1")
        agent.signal(signal.SIGTERM)
        notes.wait_for(lambda m: m == "STOPPING=1")
        assert agent.wait(15) == 0, agent.output()
    finally:
        agent.kill()
        notes.close()
        if broker is not None:
            broker.cleanup()


def test_without_watchdog_usec_there_is_no_watchdog_ping(tmp_path):
    notes = Notifications(tmp_path)
    agent = pilot_run(
        BASIC,
        _closed_port(),
        tmp_path / "state",
        "--duration",
        "6",
        base_env=_env(NOTIFY_SOCKET=notes.path),
        log=tmp_path / "agent.log",
    ).start()
    try:
        notes.wait_for(lambda m: m == "STOPPING=1", timeout=30)
        assert agent.wait(15) == 0
        assert "WATCHDOG=1" not in notes.seen and notes.seen[0].startswith("READY=1")
    finally:
        agent.kill()
        notes.close()


# ------------------------------------------------------------------ root


def _plan(allow_root: bool) -> Plan:
    return Plan.from_dict(
        {
            "profile": "p",
            "profile_hash": "h",
            "sources": [],
            "device": {"id": "d", "name": "d"},
            "mqtt": {},
            "topics": {"base": "b", "availability": "a", "capabilities": "c", "health": "h", "discovery": "x"},
            "policy": {},
            "service": {"allow_root": allow_root},
        }
    )


def _refused(plan: Plan, dry_run: bool, environ: dict[str, str]) -> bool:
    return refuse_root(plan, options_from_env(environ, state_dir=Path("unused"), dry_run=dry_run))


def test_refuse_root_rules(monkeypatch):
    monkeypatch.setattr(os, "geteuid", lambda: 0)
    assert _refused(_plan(False), dry_run=False, environ={}) is True
    assert _refused(_plan(True), dry_run=False, environ={}) is False
    assert _refused(_plan(False), dry_run=True, environ={}) is False
    assert _refused(_plan(False), dry_run=False, environ={"PILOT_ALLOW_ROOT": "1"}) is False
    assert _refused(_plan(False), dry_run=False, environ={"PILOT_ALLOW_ROOT": "yes"}) is True
    monkeypatch.setattr(os, "geteuid", lambda: 1000)
    assert _refused(_plan(False), dry_run=False, environ={}) is False


def test_allow_root_is_compiled_into_the_plan_and_survives_json(tmp_path):
    from pilot.profile.pipeline import compile_file

    _, result = compile_file(write(tmp_path, "p.yaml", "pilot: 1\nservice: {allow_root: true, user: root}\n"))
    assert result.plan is not None and not result.diagnostics
    assert result.plan.service == Service(user="root", allow_root=True)
    assert Plan.from_dict(result.plan.to_dict()).service.allow_root is True
    assert Service().allow_root is False


@pytest.mark.skipif(not hasattr(os, "geteuid") or os.geteuid() != 0, reason="the refusal applies to root only")
def test_pilot_run_as_root_is_refused_unless_allowed(tmp_path):
    argv = [sys.executable, "-m", "pilot", "run", "--broker", f"127.0.0.1:{_closed_port()}", "--duration", "1"]
    refused = subprocess.run(
        argv + [str(BASIC), "--state-dir", str(tmp_path / "s1")], env=_env(), capture_output=True, text=True, timeout=60
    )
    assert refused.returncode == 2, refused.stderr
    assert "refusing to run as root" in refused.stderr and "service: {allow_root: true}" in refused.stderr
    assert "PILOT_ALLOW_ROOT=1" in refused.stderr
    allowed = write(tmp_path, "allowed.yaml", BASIC.read_text() + "service: {allow_root: true}\n")
    for extra, env in (
        ([str(allowed)], _env()),
        ([str(BASIC), "--dry-run"], _env()),
        ([str(BASIC)], _env(PILOT_ALLOW_ROOT="1")),
    ):
        proc = subprocess.run(
            argv + extra + ["--state-dir", str(tmp_path / "s2")], env=env, capture_output=True, text=True, timeout=60
        )
        assert proc.returncode == 0, (extra, proc.stderr)
