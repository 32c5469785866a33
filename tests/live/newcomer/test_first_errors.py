"""The first things a newcomer gets wrong end in one clear line, never a traceback: a password or CA
file that is not there, and a broker address that does not speak MQTT."""

from __future__ import annotations

import subprocess
import sys
import time

from pilot.cli import main
from testkit.agent import AgentProcess, pilot_argv, pilot_env
from tests.support.files import write

BODY = "pilot: 1\ndevice: {id: firsterr, name: First}\nsensors:\n  cpu_usage: {probe: cpu.percent, every: 10s}\n"


def _pilot(*argv: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "pilot", *argv], env=pilot_env(), capture_output=True, text=True, timeout=60
    )


def test_a_missing_password_file_is_one_line_from_run_and_send_and_a_warning_from_validate(tmp_path, capsys):
    missing = tmp_path / "nowhere" / "mqtt.pass"
    profile = write(
        tmp_path,
        "p.yaml",
        BODY + f"mqtt: {{host: 127.0.0.1, username: pilot, password_file: {missing}}}\n"
        "commands:\n  backup: {action: process.run, args: {argv: [/bin/true]}}\n",
    )
    run = _pilot("run", str(profile), "--state-dir", str(tmp_path / "s"))
    assert run.returncode == 2 and "Traceback" not in run.stderr
    assert f"cannot read mqtt.password_file {missing}: No such file or directory" in run.stderr
    send = _pilot("send", str(profile), "backup", "--state-dir", str(tmp_path / "s"))
    assert send.returncode == 2 and "Traceback" not in send.stderr
    assert f"mqtt.password_file {missing}" in send.stderr
    capsys.readouterr()
    assert main(["validate", str(profile)]) == 0
    assert "the MQTT password" in capsys.readouterr().out
    assert main(["validate", "--strict", str(profile)]) == 1


def test_a_missing_ca_file_names_the_file(tmp_path):
    ca = tmp_path / "ca.pem"
    profile = write(tmp_path, "p.yaml", BODY + f"mqtt: {{host: 127.0.0.1, tls: {{ca_file: {ca}}}}}\n")
    run = _pilot("run", str(profile), "--state-dir", str(tmp_path / "s"))
    assert run.returncode == 2 and "Traceback" not in run.stderr
    assert f"cannot read mqtt.tls.ca_file {ca}" in run.stderr


def test_a_port_that_is_not_mqtt_is_explained_in_the_log(tmp_path, http_server):
    profile = write(tmp_path, "p.yaml", BODY)
    agent = AgentProcess(
        pilot_argv(profile, http_server.port, tmp_path / "s"), env=pilot_env(), log=tmp_path / "agent.log"
    ).start()
    try:
        deadline = time.monotonic() + 30
        while "not an MQTT broker" not in agent.output().lower() and time.monotonic() < deadline:
            time.sleep(0.2)
    finally:
        agent.stop()
    assert "not an mqtt broker" in agent.output().lower(), agent.tail()
