"""Fixtures for the fault-injection suite: fresh brokers, agents and watchers that clean up after
themselves, and a summary of every measured figure at the end of the run.

Each case runs the real agent (`pilot run`) as a subprocess against a real Mosquitto that the case
starts itself, because most cases stop, freeze, restart or cut off the broker. Test profiles use
`mqtt: {keepalive: 5}` (the schema's minimum) so that figures tied to the keepalive (detection of a
hung broker or a silent partition, the broker's last will) scale down from the 30 s default.
"""

from __future__ import annotations

import os
import signal

import pytest

from testkit.agent import AgentProcess, pilot_run
from testkit.broker import Mosquitto, find_mosquitto
from tests.support.harness import FIGURES, ready_watcher


def pytest_collection_modifyitems(config, items):
    if find_mosquitto() is None:
        skip = pytest.mark.skip(reason="mosquitto is not installed; `./dev test` installs it")
        for item in items:
            if "tests/live/faults/" in str(item.fspath) and "command_fuzz" not in str(item.fspath):
                item.add_marker(skip)


def pytest_terminal_summary(terminalreporter):
    if not FIGURES:
        return
    terminalreporter.section("fault-injection figures (observed)")
    width = max(len(c) for c, _, _ in FIGURES)
    name_width = max(len(n) for _, n, _ in FIGURES)
    for case, name, value in FIGURES:
        terminalreporter.write_line(f"{case.ljust(width)}  {name.ljust(name_width)}  {value}")
    path = os.environ.get("PILOT_FAULTS_REPORT")
    if path:
        with open(path, "w", encoding="utf-8") as handle:
            for case, name, value in FIGURES:
                handle.write(f"{case}\t{name}\t{value}\n")


@pytest.fixture
def brokers():
    """brokers(port=None, extra_conf="") -> a started Mosquitto, cleaned up (SIGKILL) after the test."""
    started: list[Mosquitto] = []

    def start(port: int | None = None, extra_conf: str = "") -> Mosquitto:
        b = Mosquitto(port=port, extra_conf=extra_conf)
        started.append(b)
        return b.start()

    yield start
    for b in started:
        if b.proc is not None and b.proc.poll() is None:
            try:
                b.proc.send_signal(signal.SIGCONT)  # a frozen broker cannot die of SIGKILL any faster, but be sure
            except OSError:
                pass
        b.cleanup()


@pytest.fixture
def watchers():
    started = []

    def start(port: int, topics: tuple[str, ...] = ("#",)):
        w = ready_watcher(port, topics)
        started.append(w)
        return w

    yield start
    for w in started:
        try:
            w.stop()
        except Exception:
            pass


@pytest.fixture
def agents(tmp_path):
    """agents(profile, port, *extra) -> a started `pilot run ... --log-format json`, stopped after the test."""
    started: list[AgentProcess] = []

    def start(
        profile, port: int, *extra: str, state_dir=None, env: dict | None = None, host: str = "127.0.0.1"
    ) -> AgentProcess:
        agent = pilot_run(
            profile,
            port,
            state_dir or tmp_path / "state",
            *extra,
            env=env,
            host=host,
            log_format="json",
            log_dir=tmp_path,
        ).start()
        started.append(agent)
        return agent

    yield start
    for agent in started:
        agent.stop(timeout=5)
