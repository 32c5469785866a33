"""TLS mistakes on the broker's side: a certificate from another CA, an expired one, a wrong host name.

The agent must send nothing (no MQTT CONNECT, let alone a topic) over a connection it cannot trust,
say why in one log line, and keep retrying with backoff instead of exiting or logging every attempt.
The broker's log shows each refused TLS handshake ("Client connection from 127.0.0.1 failed: ...
alert bad certificate"); a CONNECT that got through would show as "New client connected ... as pilot-<id>".
"""

from __future__ import annotations

import shutil
import time

import pytest

from testkit.pki import make_ca, make_cert, make_expired_cert
from tests.support.harness import figure, free_port

pytestmark = pytest.mark.skipif(shutil.which("openssl") is None, reason="openssl CLI not installed")

WATCH = 8.0  # seconds of retries observed


@pytest.fixture(scope="module")
def pki(tmp_path_factory):
    d = tmp_path_factory.mktemp("faults-pki")
    make_ca(d, "ca")
    make_ca(d, "otherca")
    make_cert(d, "otherca", "foreign", "DNS:localhost,IP:127.0.0.1")
    make_expired_cert(d, "ca", "expired", "DNS:localhost,IP:127.0.0.1")
    make_cert(d, "ca", "wrongname", "DNS:broker.invalid")
    return d


CASES = {
    "other_ca": ("foreign", "unable to get local issuer certificate"),
    "expired": ("expired", "certificate has expired"),
    "wrong_host": ("wrongname", "Hostname mismatch"),
}


@pytest.mark.parametrize("mistake", list(CASES))
def test_tls_mistakes_send_nothing_and_retry_quietly(mistake, pki, tmp_path, brokers, watchers, agents):
    case = f"TLS: {mistake}"
    server, reason = CASES[mistake]
    tls_port = free_port()
    broker = brokers(
        extra_conf=f"listener {tls_port} 127.0.0.1\ncertfile {pki / f'{server}.crt'}\n"
        f"keyfile {pki / f'{server}.key'}\ntls_version tlsv1.2\n"
        "log_type error\nlog_type warning\nlog_type notice\nlog_type information\n"
    )
    w = watchers(broker.port)  # the plain listener, for observing
    device = f"tls{mistake.replace('_', '')}"
    profile = tmp_path / "tls.yaml"
    profile.write_text(
        f"pilot: 1\ndevice: {{id: {device}, name: TLS rig}}\nmqtt:\n  keepalive: 5\n"
        f"  tls: {{ca_file: {pki / 'ca.crt'}}}\nsensors:\n  cpu: {{probe: cpu.percent, every: 1s}}\n"
    )
    agent = agents(profile, tls_port, host="localhost")  # the name checked against the certificate
    started = time.monotonic()
    time.sleep(WATCH)
    assert agent.running(), f"a TLS failure must be retried, not fatal\n{agent.tail()}"
    topics = sorted(
        {
            m.topic
            for m in w.messages
            if m.topic.startswith(f"pilot/{device}/") or m.topic.startswith(f"homeassistant/device/{device}")
        }
    )
    log = (broker.dir / "broker.log").read_text(errors="replace")
    # Mosquitto logs a refused handshake either as a "New connection ... on port" line (when it
    # accepted the socket first) or as a single "Client connection from ... failed" line: each
    # attempt shows as exactly one of the two
    attempts = log.count(f"on port {tls_port}.") + log.count("Client connection from 127.0.0.1 failed")
    connects = log.count(f"as pilot-{device}")
    lines = [r["msg"] for r in agent.records() if "TLS" in r["msg"]]
    figure(case, "agent topics on the broker (== 0)", len(topics))
    figure(case, "MQTT CONNECTs that reached the broker (== 0)", connects)
    figure(case, f"TLS attempts in {WATCH:g} s (>= 2, backoff)", attempts)
    figure(case, "TLS log lines (== 1)", len(lines))
    figure(case, "log line", lines[0] if lines else "none")
    assert topics == [] and connects == 0
    assert len(lines) == 1 and "TLS certificate rejected" in lines[0] and reason in lines[0], lines
    assert 2 <= attempts <= 7, (
        f"{attempts} attempts in {WATCH} s: expected a backoff of 0.5, 1, 2, 4 s (jittered)\n"
        f"{log[-3000:]}\n{agent.tail()}"
    )
    assert "Traceback" not in agent.output()
    assert time.monotonic() - started < WATCH + 5
