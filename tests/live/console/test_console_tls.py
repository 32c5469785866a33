"""The console served over HTTPS from certificate files: TLS 1.2 at least, and the session cookie is Secure."""

from __future__ import annotations

import ssl

import httpx
import pytest

from testkit.broker import Mosquitto
from testkit.console import ConsoleProcess
from testkit.pki import make_ca, make_cert


@pytest.fixture(scope="module")
def console(tmp_path_factory):
    pki = tmp_path_factory.mktemp("pki")
    make_ca(pki, "ca")
    make_cert(pki, "ca", "console", "IP:127.0.0.1")
    broker = Mosquitto().start()
    served = ConsoleProcess(
        broker.port,
        users=[("ada", "admin", "ada-admin-password")],
        tls=(pki / "console.crt", pki / "console.key", pki / "ca.crt"),
    ).start()
    yield served
    served.cleanup()
    broker.cleanup()


def test_sign_in_over_https_sets_a_secure_httponly_strict_cookie(console):
    answer = console.client().post("/api/login", json={"username": "ada", "password": "ada-admin-password"})
    assert answer.status_code == 200
    cookie = answer.headers["set-cookie"]
    assert {"Secure", "HttpOnly", "SameSite=Strict", "Path=/"} <= {part.strip() for part in cookie.split(";")}


def test_tls_below_1_2_is_refused(console):
    context = ssl.create_default_context(cafile=str(console.tls[2]))
    context.minimum_version = ssl.TLSVersion.TLSv1
    context.maximum_version = ssl.TLSVersion.TLSv1_1
    context.set_ciphers("ALL:@SECLEVEL=0")
    with pytest.raises(httpx.ConnectError):
        httpx.get(console.url + "/healthz", verify=context, timeout=5)
    assert httpx.get(console.url + "/healthz", verify=console.verify(), timeout=5).status_code == 200


def test_plain_http_gets_no_answer_on_the_tls_port(console):
    with pytest.raises(httpx.HTTPError):
        httpx.get(f"http://127.0.0.1:{console.port}/healthz", timeout=5)
