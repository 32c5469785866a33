"""Fixtures for agent tests: a real broker, a watcher, and the agent as a subprocess."""

from __future__ import annotations

from pathlib import Path

import pytest

from testkit.agent import AgentProcess, pilot_run
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


@pytest.fixture
def run_agent(tmp_path):
    """run_agent(profile, port, *extra) -> a started `pilot run`, stopped (SIGTERM, then SIGKILL) after the test."""
    started: list[AgentProcess] = []

    def start(profile: Path, port: int, *extra: str, state_dir: Path | None = None, env: dict | None = None,
              host: str = "127.0.0.1") -> AgentProcess:
        agent = pilot_run(profile, port, state_dir or tmp_path / "state", *extra, env=env, host=host).start()
        started.append(agent)
        return agent

    yield start
    for agent in started:
        agent.stop()
