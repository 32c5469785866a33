"""A real Mosquitto for tests: started on a free loopback port, stopped by PID."""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import paho.mqtt.client as paho
from paho.mqtt.enums import CallbackAPIVersion


def find_mosquitto() -> str | None:
    return shutil.which("mosquitto") or next(
        (p for p in ("/usr/sbin/mosquitto", "/usr/local/sbin/mosquitto") if os.access(p, os.X_OK)), None
    )


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class Mosquitto:
    def __init__(self, port: int | None = None, extra_conf: str = "", per_listener: bool = False) -> None:
        self.binary = find_mosquitto()
        if self.binary is None:
            raise RuntimeError("mosquitto is not installed; `./dev test` installs it")
        self.port = port or free_port()
        self.dir = Path(tempfile.mkdtemp(prefix="pilot-test-broker-"))
        self.extra_conf = extra_conf
        self.per_listener = per_listener  # listener-specific auth (allow_anonymous, password_file)
        self.proc: subprocess.Popen | None = None

    def start(self) -> Mosquitto:
        conf = self.dir / "mosquitto.conf"
        # as root, mosquitto drops to the `mosquitto` user, which cannot read the test's private files
        user = "user root\n" if os.geteuid() == 0 else ""
        per_listener = "per_listener_settings true\n" if self.per_listener else ""
        conf.write_text(
            f"{per_listener}{user}persistence false\nlistener {self.port} 127.0.0.1\n"
            f"allow_anonymous true\n{self.extra_conf}\n"
        )
        self.proc = subprocess.Popen(
            [self.binary, "-c", str(conf)], stdout=subprocess.DEVNULL, stderr=open(self.dir / "broker.log", "ab")
        )
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=0.2):
                    return self
            except OSError:
                if self.proc.poll() is not None:
                    raise RuntimeError((self.dir / "broker.log").read_text()) from None
                time.sleep(0.02)
        raise RuntimeError("mosquitto did not start")

    def stop(self, sig: int = signal.SIGTERM) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(sig)
            try:
                self.proc.wait(5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()

    def restart(self, sig: int = signal.SIGTERM) -> None:
        self.stop(sig)
        self.start()

    def cleanup(self) -> None:
        self.stop(signal.SIGKILL)
        shutil.rmtree(self.dir, ignore_errors=True)


@dataclass
class Received:
    topic: str
    payload: bytes
    retain: bool
    at: float


@dataclass
class Watcher:
    """A paho subscriber that records every message, for assertions."""

    port: int
    topics: tuple[str, ...] = ("#",)
    messages: list[Received] = field(default_factory=list)

    def __post_init__(self) -> None:
        self._cond = threading.Condition()
        self.client = paho.Client(CallbackAPIVersion.VERSION2, client_id=f"watcher-{os.getpid()}-{id(self)}")
        self.client.on_message = self._on_message
        self.client.on_connect = lambda c, u, f, rc, p: [c.subscribe(t, 1) for t in self.topics]

    def _on_message(self, client, userdata, msg) -> None:
        with self._cond:
            self.messages.append(Received(msg.topic, msg.payload, bool(msg.retain), time.monotonic()))
            self._cond.notify_all()

    def start(self) -> Watcher:
        self.client.connect("127.0.0.1", self.port)
        self.client.loop_start()
        return self

    def stop(self) -> None:
        self.client.loop_stop()
        self.client.disconnect()

    def publish(self, topic: str, payload: str | bytes, retain: bool = False, qos: int = 1) -> None:
        self.client.publish(topic, payload, qos=qos, retain=retain).wait_for_publish(5)

    def wait_for(self, predicate, timeout: float = 10.0, since: float = 0.0) -> Received | None:
        deadline = time.monotonic() + timeout
        with self._cond:
            while True:
                for m in self.messages:
                    if m.at >= since and predicate(m):
                        return m
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    return None
                self._cond.wait(remaining)

    def on(self, topic: str, since: float = 0.0) -> list[Received]:
        with self._cond:
            return [m for m in self.messages if m.topic == topic and m.at >= since]

    def latest(self, topic: str) -> Received | None:
        found = self.on(topic)
        return found[-1] if found else None
