"""pilot.agent.brokercheck against real servers: Mosquitto (plain, password, TLS), a web server, a port
where nothing listens, a silent and a hanging-up server, and a name that cannot resolve (`.invalid`)."""

from __future__ import annotations

import socket
import threading

import pytest

from pilot.agent.brokercheck import TlsOptions, check_broker, check_settings
from pilot.plan import Mqtt
from tests.live.newcomer.conftest import PASSWORD, write_password


def test_plain_broker_connects_and_reports_its_version(auth_broker):
    broker, _ = auth_broker
    result = check_broker("127.0.0.1", broker.port)
    assert result.ok and result.kind == "ok", result.text()
    assert "mosquitto" in result.details.get("version", "")


def test_mqtt5_reports_the_brokers_limits(auth_broker):
    broker, _ = auth_broker
    result = check_broker("127.0.0.1", broker.port, protocol="5")
    assert result.ok, result.text()
    assert result.details["protocol"] == "5" and "receive_maximum" in result.details


@pytest.mark.parametrize("protocol", ["3.1.1", "5"])
def test_right_password_connects_wrong_one_is_explained(auth_broker, protocol):
    _, port = auth_broker
    assert check_broker("127.0.0.1", port, username="pilot", password=PASSWORD, protocol=protocol).ok
    wrong = check_broker("127.0.0.1", port, username="pilot", password="nope", protocol=protocol)
    assert not wrong.ok and wrong.kind == "auth"
    assert "user name or password is wrong" in wrong.summary and "password file" in wrong.advice


def test_anonymous_client_on_a_password_listener_is_told_it_needs_credentials(auth_broker):
    _, port = auth_broker
    result = check_broker("127.0.0.1", port)
    assert result.kind == "auth" and "without a user name and password" in result.summary


def test_settings_read_the_password_file(auth_broker, tmp_path):
    _, port = auth_broker
    secret = write_password(tmp_path)
    assert check_settings(Mqtt(username="pilot", password_file=str(secret)), "127.0.0.1", port).ok
    missing = check_settings(Mqtt(username="pilot", password_file=str(tmp_path / "none")), "127.0.0.1", port)
    assert missing.kind == "config" and "cannot read the password file" in missing.summary


def test_web_server_is_not_mqtt(http_server):
    result = check_broker("127.0.0.1", http_server.port)
    assert result.kind == "not_mqtt" and "web server" in result.summary, result.text()
    assert "HTTP/1.1 400 Bad Request" in result.summary and "1883" in result.advice


def test_nothing_listening_is_refused(closed_port):
    result = check_broker("127.0.0.1", closed_port)
    assert result.kind == "refused" and "nothing is listening" in result.summary


def test_unresolvable_name_is_a_dns_failure():
    result = check_broker("no-such-broker.invalid", 1883)
    assert result.kind == "dns" and "cannot find the host 'no-such-broker.invalid'" in result.summary


def _server(behaviour):
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen(4)
    held = []

    def serve():
        while True:
            try:
                conn, _ = sock.accept()
            except OSError:
                return
            behaviour(conn)
            held.append(conn)

    threading.Thread(target=serve, daemon=True).start()
    return sock, held


@pytest.mark.parametrize(
    "behaviour, kind, words",
    [
        (lambda c: (c.recv(100), c.sendall(b"\x00\xffgarbage\x01")), "not_mqtt", "not in MQTT"),
        (lambda c: c.close(), "not_mqtt", "closed the connection without answering"),
        (lambda c: c.sendall(b"SSH-2.0-OpenSSH_9.2\r\n"), "not_mqtt", "SSH server"),
        (lambda c: None, "timeout", "sent no MQTT answer within 1 s"),
    ],
    ids=["garbage", "hangs-up", "ssh", "silent"],
)
def test_servers_that_are_not_brokers(behaviour, kind, words):
    sock, held = _server(behaviour)
    try:
        result = check_broker("127.0.0.1", sock.getsockname()[1], timeout=1.0)
        assert result.kind == kind and words in result.summary, result.text()
    finally:
        sock.close()
        for conn in held:
            conn.close()


def test_tls_with_the_right_ca_connects(pki, tls_broker):
    _, ports = tls_broker
    result = check_broker("localhost", ports["server"], tls=TlsOptions(ca_file=str(pki / "ca.crt")))
    assert result.ok, result.text()
    assert result.details["tls_version"].startswith("TLS")


def test_tls_to_a_plain_port_and_plain_to_a_tls_port(pki, tls_broker):
    broker, ports = tls_broker
    to_plain = check_broker("localhost", broker.port, tls=TlsOptions(ca_file=str(pki / "ca.crt")))
    assert to_plain.kind == "tls" and "speaks plain MQTT, not TLS" in to_plain.summary, to_plain.text()
    to_tls = check_broker("localhost", ports["server"])
    assert to_tls.kind == "tls" and "speaks TLS, but the connection was plain" in to_tls.summary, to_tls.text()


@pytest.mark.parametrize(
    "port, ca, words",
    [
        ("server", "otherca", "is not trusted"),
        ("elsewhere", "ca", "is not for 'localhost'"),
        ("expired", "ca", "has expired"),
        ("mutual", "ca", "client certificate, and none was given"),
    ],
)
def test_tls_certificate_problems_are_named(pki, tls_broker, port, ca, words):
    _, ports = tls_broker
    result = check_broker("localhost", ports[port], tls=TlsOptions(ca_file=str(pki / f"{ca}.crt")))
    assert result.kind == "tls" and words in result.summary, result.text()


def test_client_certificate_and_our_own_tls_files(pki, tls_broker):
    _, ports = tls_broker
    good = TlsOptions(str(pki / "ca.crt"), str(pki / "client.crt"), str(pki / "client.key"))
    assert check_broker("localhost", ports["mutual"], tls=good).ok
    mismatched = TlsOptions(str(pki / "ca.crt"), str(pki / "client.crt"), str(pki / "server.key"))
    assert check_broker("localhost", ports["mutual"], tls=mismatched).kind == "tls_config"
    missing = check_broker("localhost", ports["server"], tls=TlsOptions(ca_file=str(pki / "nope.crt")))
    assert missing.kind == "tls_config" and "does not exist" in missing.summary
