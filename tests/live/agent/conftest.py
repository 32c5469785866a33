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
    """run_agent(profile, port, *extra) -> a started `pilot run`, stopped (SIGTERM, then SIGKILL) after the test.

    profile None: no profile argument (the agent picks a pack); port None: no --broker (a trial broker).
    `env` is added to this process's environment, or to `base_env` when given."""
    started: list[AgentProcess] = []

    def start(
        profile: Path | None,
        port: int | None,
        *extra: str,
        state_dir: Path | None = None,
        env: dict | None = None,
        base_env: dict | None = None,
        host: str = "127.0.0.1",
    ) -> AgentProcess:
        agent = pilot_run(
            profile, port, state_dir or tmp_path / "state", *extra, env=env, base_env=base_env, host=host
        ).start()
        started.append(agent)
        return agent

    yield start
    for agent in started:
        agent.stop()
