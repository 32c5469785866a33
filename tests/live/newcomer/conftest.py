"""Real parts for the newcomer path (`pilot init`, `check`, `forget`): brokers with a password and with
TLS, certificates made with openssl, a web server on a TCP port and a port where nothing listens."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import threading
from pathlib import Path

import pytest

from testkit.broker import Mosquitto, free_port
from testkit.pki import make_ca, make_cert, make_expired_cert

PASSWORD = "correct horse 42"


def _passwd_tool() -> str:
    tool = shutil.which("mosquitto_passwd") or "/usr/bin/mosquitto_passwd"
    if not os.access(tool, os.X_OK):
        pytest.skip("mosquitto_passwd not installed")
    return tool


@pytest.fixture(scope="module")
def auth_broker(tmp_path_factory):
    """(broker, port of a listener that needs user `pilot` with PASSWORD); broker.port stays anonymous."""
    d = tmp_path_factory.mktemp("auth")
    passwd = d / "passwd"
    subprocess.run([_passwd_tool(), "-b", "-c", str(passwd), "pilot", PASSWORD], check=True, capture_output=True)
    passwd.chmod(0o600)
    port = free_port()
    b = Mosquitto(
        extra_conf=f"listener {port} 127.0.0.1\nallow_anonymous false\npassword_file {passwd}\n", per_listener=True
    ).start()
    yield b, port
    b.cleanup()


@pytest.fixture(scope="module")
def pki(tmp_path_factory):
    if shutil.which("openssl") is None:
        pytest.skip("openssl CLI not installed")
    d = tmp_path_factory.mktemp("pki")
    make_ca(d, "ca")
    make_ca(d, "otherca")
    make_cert(d, "ca", "server", "DNS:localhost,IP:127.0.0.1")
    make_cert(d, "ca", "elsewhere", "DNS:broker.example")
    make_expired_cert(d, "ca", "expired", "DNS:localhost,IP:127.0.0.1")
    make_cert(d, "ca", "client", "DNS:client")
    return d


@pytest.fixture(scope="module")
def tls_broker(pki):
    """(broker, {server certificate name: TLS port}): one TLS listener per server certificate."""
    ports = {name: free_port() for name in ("server", "elsewhere", "expired")}
    ports["mutual"] = free_port()
    conf = ""
    for name, port in ports.items():
        cert = "server" if name == "mutual" else name
        conf += (
            f"listener {port} 127.0.0.1\ncafile {pki / 'ca.crt'}\ncertfile {pki / f'{cert}.crt'}\n"
            f"keyfile {pki / f'{cert}.key'}\n"
        )
        if name == "mutual":
            conf += "require_certificate true\n"
    b = Mosquitto(extra_conf=conf).start()
    yield b, ports
    b.cleanup()


class HttpServer:
    """A TCP server that answers every connection like a web server (and so is not MQTT)."""

    def __init__(self) -> None:
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(8)
        self.port = self.sock.getsockname()[1]
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    def _serve(self) -> None:
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            with conn:
                conn.settimeout(2)
                try:
                    conn.recv(4096)
                    conn.sendall(b"HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\nConnection: close\r\n\r\n")
                except OSError:
                    pass

    def close(self) -> None:
        self.sock.close()


@pytest.fixture
def http_server():
    server = HttpServer()
    yield server
    server.close()


@pytest.fixture
def closed_port() -> int:
    return free_port()  # bound and released: nothing listens there


def write_password(folder: Path, text: str = PASSWORD) -> Path:
    path = folder / "mqtt.pass"
    path.write_text(text + "\n")
    path.chmod(0o600)
    return path
