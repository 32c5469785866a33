"""No broker configured: `pilot run` brings up a local trial broker; no profile: the matching pack."""

from __future__ import annotations

import json
import socket
import subprocess
import sys
import time

import pytest

from tests.live.agent.conftest import REPO
from testkit.broker import Watcher


def _listening(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.2):
            return True
    except OSError:
        return False


@pytest.mark.parametrize("kind", ["mosquitto", "amqtt"])
def test_trial_broker_started_when_no_broker_is_configured(tmp_path, kind):
    if kind == "amqtt":
        pytest.importorskip("amqtt")
    if _listening(1883):
        pytest.skip("something already listens on 1883; the agent would use it instead")
    profile = tmp_path / "p.yaml"
    profile.write_text("pilot: 1\ndevice: {id: trial1, name: Trial}\nsensors:\n  cpu: {probe: cpu.percent, every: 1s}\n")
    log = tmp_path / "agent.log"
    proc = subprocess.Popen([sys.executable, "-m", "pilot", "run", str(profile), "--state-dir", str(tmp_path / "s"),
                             "--duration", "8"], env={"PYTHONPATH": str(REPO / "engine"), "PATH": "/usr/bin:/bin:/usr/sbin",
                                                      "PILOT_TRIAL_BROKER": kind, "PILOT_ALLOW_ROOT": "1"},
                            stdout=open(log, "wb"), stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 10
        while not _listening(1883) and time.monotonic() < deadline:
            time.sleep(0.05)
        watcher = Watcher(1883).start()
        try:
            assert watcher.wait_for(lambda m: m.topic == "pilot/trial1/state/cpu", timeout=10), log.read_text()
        finally:
            watcher.stop()
        assert proc.wait(20) == 0
        out = log.read_text()
        assert f"started a local trial broker ({kind}) on 127.0.0.1:1883" in out
        assert "mosquitto_sub -h 127.0.0.1 -p 1883" in out
        time.sleep(0.3)
        assert not _listening(1883), "the trial broker is stopped with the agent"
    finally:
        if proc.poll() is None:
            proc.kill()


def test_no_profile_runs_the_pack_that_matches_this_machine(broker, watcher, tmp_path):
    proc = subprocess.run([sys.executable, "-m", "pilot", "run", "--once", "--broker", f"127.0.0.1:{broker.port}",
                           "--state-dir", str(tmp_path / "s")], env={"PYTHONPATH": str(REPO / "engine"),
                                                                      "PATH": "/usr/bin:/bin", "PILOT_ALLOW_ROOT": "1"},
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    detect = json.loads(subprocess.run([sys.executable, "-m", "pilot", "detect", "--json"],
                                       env={"PYTHONPATH": str(REPO / "engine")}, capture_output=True,
                                       text=True).stdout)
    best = next(p for p in detect["packs"] if p["name"] == detect["best"])
    assert f"using {best['default_profile']}" in proc.stderr
    device = detect["facts"]["device_id"]
    msg = watcher.wait_for(lambda m: m.topic == f"homeassistant/device/{device}/config", timeout=10)
    assert msg is not None
    assert "pilot_%s_cpu_usage" % device in json.loads(msg.payload)["components"]
