"""A local trial broker for `pilot run` when the profile names none.

Only for a first look: it listens on loopback, has no users and keeps
nothing on disk. Debian's mosquitto is used when installed; otherwise amqtt
(pure Python, `pip install 'pilot-agent[broker]'`).
"""

from __future__ import annotations

import importlib.util
import logging
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass

from pilot import environment

log = logging.getLogger("pilot.broker")


def listening(host: str, port: int, timeout: float = 0.3) -> bool:
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return True
    except OSError:
        return False


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def find_mosquitto() -> str | None:
    return shutil.which("mosquitto") or next(
        (p for p in ("/usr/sbin/mosquitto", "/usr/local/sbin/mosquitto") if os.access(p, os.X_OK)), None
    )


@dataclass
class EmbeddedBroker:
    process: subprocess.Popen
    port: int
    kind: str
    workdir: str

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(5)
            except subprocess.TimeoutExpired:
                self.process.kill()
        shutil.rmtree(self.workdir, ignore_errors=True)


def start(port: int = 1883) -> EmbeddedBroker:
    workdir = tempfile.mkdtemp(prefix="pilot-broker-")
    choice = environment.get("PILOT_TRIAL_BROKER") or ""  # "amqtt" to prefer the pure-Python broker
    mosquitto = find_mosquitto() if choice != "amqtt" else None
    if mosquitto:
        conf = os.path.join(workdir, "mosquitto.conf")
        with open(conf, "w") as handle:
            handle.write(f"listener {port} 127.0.0.1\nallow_anonymous true\npersistence false\n")
        proc = subprocess.Popen(
            [mosquitto, "-c", conf], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, start_new_session=True
        )
        kind = "mosquitto"
    elif importlib.util.find_spec("amqtt") is not None:
        conf = os.path.join(workdir, "amqtt.yaml")
        with open(conf, "w") as handle:
            handle.write(
                f"listeners:\n  default:\n    type: tcp\n    bind: 127.0.0.1:{port}\n"
                "plugins:\n  amqtt.plugins.authentication.AnonymousAuthPlugin:\n    allow_anonymous: true\n"
            )
        amqtt = shutil.which("amqtt") or os.path.join(os.path.dirname(sys.executable), "amqtt")
        proc = subprocess.Popen(
            [amqtt, "-c", conf], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, start_new_session=True
        )
        kind = "amqtt"
    else:
        shutil.rmtree(workdir, ignore_errors=True)
        raise RuntimeError(
            "no MQTT broker configured and none available to start: set `mqtt.host` in the "
            "profile, pass --broker HOST:PORT, or install one (apt-get install mosquitto, "
            "or pip install 'pilot-agent[broker]')"
        )
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            err = proc.stderr.read().decode(errors="replace") if proc.stderr else ""
            shutil.rmtree(workdir, ignore_errors=True)
            raise RuntimeError(f"the trial broker ({kind}) exited: {err.strip()[-500:]}")
        if listening("127.0.0.1", port):
            return EmbeddedBroker(proc, port, kind, workdir)
        time.sleep(0.05)
    proc.kill()
    raise RuntimeError(f"the trial broker ({kind}) did not start listening on port {port}")
