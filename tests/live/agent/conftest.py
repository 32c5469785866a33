"""Fixtures for agent tests: a real broker, a watcher, and the agent as a subprocess."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from testkit.broker import Mosquitto, Watcher

REPO = Path(__file__).resolve().parents[3]


@pytest.fixture(scope="session")
def broker():
    b = Mosquitto().start()
    yield b
    b.cleanup()


@pytest.fixture
def fresh_broker():
    b = Mosquitto().start()
    yield b
    b.cleanup()


@pytest.fixture
def watcher(broker):
    w = Watcher(broker.port).start()
    yield w
    w.stop()


class AgentProcess:
    def __init__(self, profile: Path, port: int, state_dir: Path, *extra: str, env: dict | None = None,
                 host: str = "127.0.0.1") -> None:
        self.argv = [sys.executable, "-m", "pilot", "run", str(profile), "--broker", f"{host}:{port}",
                     "--state-dir", str(state_dir), *extra]
        self.env = {**os.environ, "PYTHONPATH": str(REPO / "engine"), **(env or {})}
        self.log = state_dir.parent / f"agent-{time.monotonic_ns()}.log"
        self.proc: subprocess.Popen | None = None

    def start(self) -> "AgentProcess":
        self.proc = subprocess.Popen(self.argv, env=self.env, stdout=open(self.log, "wb"), stderr=subprocess.STDOUT)
        return self

    def output(self) -> str:
        return self.log.read_text(errors="replace")

    def signal(self, sig: int) -> None:
        assert self.proc is not None
        self.proc.send_signal(sig)

    def wait(self, timeout: float = 10.0) -> int:
        assert self.proc is not None
        return self.proc.wait(timeout)

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


@pytest.fixture
def run_agent(tmp_path):
    started: list[AgentProcess] = []

    def start(profile: Path, port: int, *extra: str, state_dir: Path | None = None, env: dict | None = None,
              host: str = "127.0.0.1"):
        agent = AgentProcess(profile, port, state_dir or tmp_path / "state", *extra, env=env, host=host).start()
        started.append(agent)
        return agent

    yield start
    for agent in started:
        agent.stop()
