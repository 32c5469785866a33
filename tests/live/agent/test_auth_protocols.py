"""Username with a password from a file, and both MQTT 3.1.1 and 5, against a real Mosquitto."""

from __future__ import annotations

import os
import shutil
import subprocess

import pytest

from testkit.broker import Mosquitto, Watcher


@pytest.fixture
def auth_broker(tmp_path):
    tool = shutil.which("mosquitto_passwd") or "/usr/bin/mosquitto_passwd"
    if not os.access(tool, os.X_OK):
        pytest.skip("mosquitto_passwd not installed")
    passwd = tmp_path / "passwd"
    subprocess.run([tool, "-b", "-c", str(passwd), "pilot", "s3cret pass"], check=True, capture_output=True)
    passwd.chmod(0o600)
    # a second listener with auth; the default one stays anonymous for the watcher
    from testkit.broker import free_port

    port = free_port()
    b = Mosquitto(
        extra_conf=f"listener {port} 127.0.0.1\nallow_anonymous false\npassword_file {passwd}\n", per_listener=True
    )
    yield b.start(), port
    b.cleanup()


def write_profile(tmp_path, body: str):
    p = tmp_path / "auth.yaml"
    p.write_text(
        "pilot: 1\ndevice: {id: authrig, name: Auth rig}\n"
        + body
        + "sensors:\n  cpu: {probe: cpu.percent, every: 1s}\n"
    )
    return p


@pytest.mark.parametrize("protocol", ["3.1.1", "5"])
def test_password_from_file_and_protocol_versions(auth_broker, tmp_path, run_agent, protocol):
    broker, auth_port = auth_broker
    secret = tmp_path / "mqtt.pass"
    secret.write_text("s3cret pass\n")
    profile = write_profile(tmp_path, f"mqtt: {{username: pilot, password_file: {secret}, protocol: '{protocol}'}}\n")
    watcher = Watcher(broker.port).start()
    try:
        agent = run_agent(profile, auth_port)
        assert watcher.wait_for(lambda m: m.topic == "pilot/authrig/state/cpu", timeout=15), agent.output()
    finally:
        watcher.stop()


def test_wrong_password_is_refused_and_retried(auth_broker, tmp_path, run_agent):
    broker, auth_port = auth_broker
    secret = tmp_path / "mqtt.pass"
    secret.write_text("wrong\n")
    profile = write_profile(tmp_path, f"mqtt: {{username: pilot, password_file: {secret}}}\n")
    watcher = Watcher(broker.port).start()
    try:
        agent = run_agent(profile, auth_port)
        assert watcher.wait_for(lambda m: m.topic.startswith("pilot/authrig/"), timeout=4) is None
        assert agent.proc.poll() is None
        assert "broker refused the connection" in agent.output()
    finally:
        watcher.stop()
