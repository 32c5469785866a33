"""`pilot console run` start-up: a mistake is one line and exit status 2; a broker that is down is not one."""

from __future__ import annotations

import socket
import subprocess
import sys

import httpx

from testkit.agent import pilot_env
from testkit.broker import free_port
from testkit.console import ConsoleProcess


def run(tmp_path, *args: str) -> subprocess.CompletedProcess:
    argv = [sys.executable, "-m", "pilot", "console", "run", "--state-dir", str(tmp_path / "state")]
    argv += ["--users", str(tmp_path / "users"), "--listen", f"127.0.0.1:{free_port()}", *args]
    return subprocess.run(argv, capture_output=True, text=True, env=pilot_env(), timeout=60)


def test_a_settings_mistake_is_one_line_naming_file_line_and_column(tmp_path):
    (tmp_path / "console.yaml").write_text("broker:\n  port: eighteen\n")
    done = run(tmp_path, "--config", str(tmp_path / "console.yaml"))
    assert done.returncode == 2
    assert done.stderr == f"pilot: error: {tmp_path / 'console.yaml'}:2:3: broker.port must be a whole number\n"


def test_an_unreadable_broker_password_file_is_one_line(tmp_path):
    (tmp_path / "console.yaml").write_text(f"broker: {{username: u, password_file: {tmp_path / 'absent'}}}\n")
    done = run(tmp_path, "--config", str(tmp_path / "console.yaml"), "--anonymous-read")
    assert done.returncode == 2
    assert done.stderr.splitlines()[-1].startswith(f"pilot: error: cannot read broker.password_file {tmp_path}")
    assert "Traceback" not in done.stderr


def test_a_port_in_use_is_one_line(tmp_path):
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        done = run(tmp_path, "--anonymous-read", "--listen", f"127.0.0.1:{port}")
    assert done.returncode == 2
    assert f"pilot: error: cannot listen on 127.0.0.1:{port}" in done.stderr
    assert "Traceback" not in done.stderr


def test_a_broker_that_is_down_is_waited_for_while_the_pages_are_served(tmp_path):
    console = ConsoleProcess(free_port(), anonymous_read=True).start()
    try:
        fleet = httpx.get(console.url + "/api/fleet").json()
        assert fleet["broker"]["connected"] is False and fleet["devices"] == []
        assert console.proc.poll() is None
    finally:
        console.cleanup()


def test_allowed_hosts_refuses_requests_naming_another_host(tmp_path):
    """DNS rebinding: a hostile page's name pointed at the console is not one the console answers to."""
    (tmp_path / "console.yaml").write_text("http: {allowed_hosts: [console.lan]}\n")
    config = ["--config", str(tmp_path / "console.yaml")]
    console = ConsoleProcess(free_port(), anonymous_read=True, extra_args=config).start()
    try:
        assert httpx.get(console.url + "/api/fleet", headers={"host": "evil.example"}).status_code == 400
        allowed = httpx.get(console.url + "/api/fleet", headers={"host": f"console.lan:{console.port}"})
        assert allowed.status_code == 200
    finally:
        console.cleanup()
