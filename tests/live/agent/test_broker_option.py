"""`--broker`: HOST alone keeps the profile's port; a malformed value is a usage error, not a traceback."""

from __future__ import annotations

import argparse
import subprocess

import pytest

from pilot.cli.common import parse_broker
from testkit.agent import pilot_argv, pilot_env
from tests.support.files import write


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("broker.lan", ("broker.lan", None)),
        ("broker.lan:8883", ("broker.lan", 8883)),
        ("[fd00::1]:1884", ("fd00::1", 1884)),
        ("fd00::1", ("fd00::1", None)),
        ("[fd00::1]", ("fd00::1", None)),
    ],
)
def test_parse_broker(text, expected):
    assert parse_broker(text) == expected


@pytest.mark.parametrize("text", ["127.0.0.1:1883x", "host:0", "host:70000", ":1883", "", "[]"])
def test_a_malformed_broker_is_a_usage_error(text):
    with pytest.raises(argparse.ArgumentTypeError):
        parse_broker(text)


def test_broker_host_alone_keeps_the_profiles_port(broker, tmp_path):
    profile = write(
        tmp_path,
        "p.yaml",
        f"pilot: 1\ndevice: {{id: portkeep, name: Port}}\nmqtt: {{port: {broker.port}}}\n"
        "sensors:\n  cpu_usage: {probe: cpu.percent, every: 10s}\n",
    )
    argv = pilot_argv(profile, None, tmp_path / "state", "--broker", "127.0.0.1", "--once", "--timeout", "10")
    proc = subprocess.run(argv, env=pilot_env(), capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr[-2000:]


def test_a_malformed_broker_on_the_command_line_says_so_in_one_line(tmp_path):
    proc = subprocess.run(
        pilot_argv(None, None, tmp_path / "state", "--broker", "127.0.0.1:1883x"),
        env=pilot_env(),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 2
    assert "Traceback" not in proc.stderr and "is not HOST or HOST:PORT" in proc.stderr
