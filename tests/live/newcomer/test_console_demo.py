"""`./dev console` as a newcomer meets it: `pilot console demo` brings a broker, this machine's agent and the
console up, prints how to sign in, and the agent is on the fleet page within seconds."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time

import httpx

from testkit.agent import pilot_env
from testkit.broker import free_port


def test_console_demo_prints_a_password_that_signs_in_and_shows_this_machine(tmp_path):
    port = free_port()
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "pilot",
            "console",
            "demo",
            "--listen",
            f"127.0.0.1:{port}",
            "--state-dir",
            str(tmp_path),
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env=pilot_env(),
        start_new_session=True,
    )
    try:
        password = None
        deadline = time.monotonic() + 30
        lines = []
        while password is None and time.monotonic() < deadline:
            line = proc.stdout.readline()
            lines.append(line)
            found = re.search(r"sign in as `demo` with the password (\S+)", line)
            password = found.group(1) if found else None
        assert password, "".join(lines)
        client = httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=10)
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            try:
                if client.post("/api/login", json={"username": "demo", "password": password}).status_code == 200:
                    break
            except httpx.HTTPError:
                time.sleep(0.2)
        devices = []
        while time.monotonic() < deadline and not (devices and devices[0]["dry_run"] is not None):
            devices = [d for d in client.get("/api/fleet").json()["devices"] if d["online"]]
            time.sleep(0.2)
        assert len(devices) == 1 and devices[0]["dry_run"] is True
    finally:
        os.killpg(proc.pid, signal.SIGINT)
        assert proc.wait(20) in (0, 130)  # Ctrl-C: the console, the agent and the broker all stop
