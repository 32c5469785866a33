"""No broker configured: `pilot run` brings up a local trial broker; no profile: the matching pack."""

from __future__ import annotations

import json
import socket
import subprocess
import sys
import time

import pytest

from testkit.broker import Mosquitto, Watcher
from tests.live.agent.conftest import REPO


def _listening(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.2):
            return True
    except OSError:
        return False


@pytest.mark.parametrize("kind", ["mosquitto", "amqtt"])
def test_trial_broker_started_when_no_broker_is_configured(tmp_path, run_agent, kind):
    if kind == "amqtt":
        pytest.importorskip("amqtt")
    if _listening(1883):
        pytest.skip("something already listens on 1883 (the test for that case is below)")
    profile = tmp_path / "p.yaml"
    profile.write_text(
        "pilot: 1\ndevice: {id: trial1, name: Trial}\nsensors:\n  cpu: {probe: cpu.percent, every: 1s}\n"
    )
    agent = run_agent(
        profile,
        None,
        "--duration",
        "8",
        state_dir=tmp_path / "s",
        env={"PILOT_TRIAL_BROKER": kind},
        base_env={"PATH": "/usr/bin:/bin:/usr/sbin"},
    )
    try:
        deadline = time.monotonic() + 10
        while not _listening(1883) and time.monotonic() < deadline:
            time.sleep(0.05)
        watcher = Watcher(1883).start()
        try:
            assert watcher.wait_for(lambda m: m.topic == "pilot/trial1/state/cpu", timeout=10), agent.output()
        finally:
            watcher.stop()
        assert agent.wait(20) == 0
        out = agent.output()
        assert f"started a private trial broker ({kind}) on 127.0.0.1:1883" in out
        assert "mosquitto_sub -h 127.0.0.1 -p 1883" in out
        time.sleep(0.3)
        assert not _listening(1883), "the trial broker is stopped with the agent"
    finally:
        agent.kill()


def test_a_broker_already_on_1883_is_left_alone(tmp_path, run_agent):
    """The demo used to adopt whatever listened on 1883, possibly the user's real Home Assistant
    broker, and announce a device there: a private trial broker on another port is started instead."""
    if _listening(1883):
        pytest.skip("something already listens on 1883: this test needs to be the one that does")
    squatter = Mosquitto(port=1883).start()
    watcher = Watcher(1883).start()
    try:
        profile = tmp_path / "p.yaml"
        profile.write_text("pilot: 1\ndevice: {id: trial2, name: Trial}\nsensors:\n  cpu: {probe: cpu.percent}\n")
        agent = run_agent(profile, None, "--duration", "4", "--dry-run", state_dir=tmp_path / "s")
        assert agent.wait(30) == 0, agent.output()
        out = agent.output()
        assert "something already listens on 1883; it is left alone" in out
        assert "DRY RUN: every command is checked by the guards and answered, but nothing is executed" in out
        assert not [m for m in watcher.messages if "trial2" in m.topic], "nothing may reach the broker on 1883"
    finally:
        watcher.stop()
        squatter.cleanup()


def test_no_profile_runs_the_pack_that_matches_this_machine(broker, watcher, tmp_path, run_agent):
    agent = run_agent(None, broker.port, "--once", state_dir=tmp_path / "s", base_env={"PATH": "/usr/bin:/bin"})
    assert agent.wait(60) == 0, agent.output()
    detect = json.loads(
        subprocess.run(
            [sys.executable, "-m", "pilot", "detect", "--json"],
            env={"PYTHONPATH": str(REPO / "engine")},
            capture_output=True,
            text=True,
        ).stdout
    )
    best = next(p for p in detect["packs"] if p["name"] == detect["best"])
    assert f"using {best['default_profile']}" in agent.output()
    device = detect["facts"]["device_id"]
    msg = watcher.wait_for(lambda m: m.topic == f"homeassistant/device/{device}/config", timeout=10)
    assert msg is not None
    assert f"pilot_{device}_cpu_usage" in json.loads(msg.payload)["components"]
