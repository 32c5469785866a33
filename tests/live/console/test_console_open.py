"""`pilot console --open` (the desktop's "Pilot settings"): a console for this machine only, on 127.0.0.1,
that signs its user in through a one-time link, talks to the broker this machine's profile names and edits
that profile's folder. A real process, a real broker; the browser is replaced by following the link with
an HTTP client (--no-browser prints it)."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from testkit.agent import pilot_env
from testkit.broker import Mosquitto

LINK = re.compile(r"sign in once with: (http://127\.0\.0\.1:(\d+)/auth/link\?t=([A-Za-z0-9_-]{43})&next=(\S+))")


@pytest.fixture(scope="module")
def broker():
    b = Mosquitto().start()
    yield b
    b.cleanup()


def start(tmp_path: Path, *args: str) -> tuple[subprocess.Popen, re.Match]:
    env = {**pilot_env(), "XDG_CONFIG_HOME": str(tmp_path / "config"), "XDG_STATE_HOME": str(tmp_path / "state")}
    proc = subprocess.Popen(
        [sys.executable, "-m", "pilot", "console", "--open", "--no-browser", *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env=env,
    )
    seen = []
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        line = proc.stdout.readline()
        if not line:
            break
        seen.append(line)
        found = LINK.search(line)
        if found:
            return proc, found
    proc.kill()
    raise AssertionError("no sign-in link printed:\n" + "".join(seen))


def stop(proc: subprocess.Popen) -> None:
    proc.terminate()
    try:
        proc.wait(10)
    except subprocess.TimeoutExpired:
        proc.kill()


def test_the_link_signs_the_user_in_once_as_admin_and_opens_the_profile_in_the_editor(tmp_path, broker):
    folder = tmp_path / "config" / "pilot"
    folder.mkdir(parents=True)
    profile = folder / "pilot.yaml"
    profile.write_text(
        f"pilot: 1\ndevice: {{name: Desk}}\nmqtt: {{host: 127.0.0.1, port: {broker.port}}}\n"
        "sensors:\n  cpu: {probe: cpu.percent}\n"
    )
    proc, link = start(tmp_path)
    try:
        url, port, _token, after = link.groups()
        base = f"http://127.0.0.1:{port}"
        assert after == "%2Feditor%3Ffile%3Dpilot.yaml"
        with httpx.Client(base_url=base, follow_redirects=False, timeout=10) as client:
            assert client.get("/api/session").status_code == 401  # nobody is signed in without the link
            first = client.get(url)
            assert first.status_code == 303 and first.headers["location"] == "/editor?file=pilot.yaml"
            cookie = first.headers["set-cookie"]
            assert "HttpOnly" in cookie and "SameSite=Strict" in cookie
            me = client.get("/api/session").json()
            assert me["role"] == "admin" and not me["anonymous"]
            files = client.get("/api/editor/files").json()
            assert files["dir"] == str(folder) and [f["name"] for f in files["files"]] == ["pilot.yaml"]
            deadline = time.monotonic() + 15
            while not client.get("/healthz").json()["broker"] and time.monotonic() < deadline:
                time.sleep(0.2)
            assert client.get("/healthz").json()["broker"] is True  # the broker the profile names
        with httpx.Client(base_url=base, follow_redirects=False, timeout=10) as stranger:
            again = stranger.get(url)  # the same link a second time: used up
            assert again.status_code == 303 and again.headers["location"] == "/login"
            assert "set-cookie" not in again.headers
            assert stranger.get("/api/session").status_code == 401
    finally:
        stop(proc)
    assert (tmp_path / "state" / "pilot-console" / "console-users").stat().st_mode & 0o077 == 0


# `/€` and `/devices/ā` have no Latin-1 form, which a Location header needs: the redirect raised after the
# link was used up (500, traceback)
@pytest.mark.parametrize(
    "target", ["//evil.example/", "/\\evil.example", "https://evil.example/", "/\x1b[2J", "/\u20ac", "/devices/\u0101"]
)
def test_a_link_never_redirects_off_the_console(tmp_path, target):
    proc, link = start(tmp_path, "--profile", str(tmp_path / "absent.yaml"))
    try:
        _url, port, token, _after = link.groups()
        with httpx.Client(base_url=f"http://127.0.0.1:{port}", follow_redirects=False, timeout=10) as client:
            answer = client.get("/auth/link", params={"t": token, "next": target})
            assert answer.status_code == 303 and answer.headers["location"] == "/"
            assert client.get("/api/session").status_code == 200
    finally:
        stop(proc)


def test_a_made_up_link_signs_no_one_in(tmp_path):
    proc, link = start(tmp_path)
    try:
        _url, port, token, _after = link.groups()
        with httpx.Client(base_url=f"http://127.0.0.1:{port}", follow_redirects=False, timeout=10) as client:
            for guess in ("A" * 43, token[:-1], token + "A", "", "%00" * 43):
                answer = client.get(f"/auth/link?t={guess}")
                assert answer.status_code == 303 and answer.headers["location"] == "/login"
                assert "set-cookie" not in answer.headers
            assert client.get(f"/auth/link?t={token}").headers["location"] == "/"  # still good once
    finally:
        stop(proc)


def test_without_no_browser_the_link_goes_to_the_users_browser(tmp_path):
    """The desktop entry's path: the link is handed to the browser ($BROWSER, as Python's webbrowser and
    xdg-open honour it), never printed; here the "browser" is a script that writes down what it was given."""
    opened = tmp_path / "opened"
    browser = tmp_path / "browser"
    browser.write_text(f'#!/bin/sh\nprintf "%s\\n" "$1" >> {opened}\n')
    browser.chmod(0o755)
    env = {**pilot_env(), "XDG_STATE_HOME": str(tmp_path / "state"), "BROWSER": str(browser)}
    env["XDG_CONFIG_HOME"] = str(tmp_path / "config")
    proc = subprocess.Popen(
        [sys.executable, "-m", "pilot", "console", "--open"],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env=env,
    )
    try:
        deadline = time.monotonic() + 30
        while not (opened.exists() and opened.read_text().endswith("\n")) and time.monotonic() < deadline:
            time.sleep(0.1)
        links = opened.read_text().splitlines()
        assert len(links) == 1 and links[0].startswith("http://127.0.0.1:"), links
        with httpx.Client(follow_redirects=False, timeout=10) as client:
            answer = client.get(links[0])
            assert answer.status_code == 303 and answer.headers["location"] == "/editor"
    finally:
        stop(proc)
    assert "auth/link" not in proc.stdout.read()  # the link went to the browser only


@pytest.mark.skipif(
    not hasattr(os, "geteuid") or os.geteuid() != 0, reason="running a client as another user needs root"
)
def test_another_local_user_holding_the_link_is_not_signed_in_and_the_link_stays_good(tmp_path):
    """The link is on the browser's command line, which every local user can read in /proc: a client whose
    socket another uid opened goes to the sign-in page, and the link still signs the console's own user in."""
    proc, link = start(tmp_path)
    try:
        url, port, _token, _after = link.groups()
        path = url.split(f":{port}", 1)[1]
        probe = (
            "import http.client,sys;"
            f"c=http.client.HTTPConnection('127.0.0.1',{port},timeout=10);"
            f"c.request('GET',{path!r});r=c.getresponse();"
            "print(r.status, r.getheader('location'), r.getheader('set-cookie'))"
        )
        other = subprocess.run(
            ["/usr/bin/python3", "-c", probe], user=65534, capture_output=True, text=True, timeout=30, cwd="/"
        )
        assert other.returncode == 0, other.stderr
        assert other.stdout.split() == ["303", "/login", "None"]
        with httpx.Client(follow_redirects=False, timeout=10) as client:
            mine = client.get(url)
            assert mine.status_code == 303 and mine.headers["location"] != "/login"
            assert "pilot_session=" in mine.headers["set-cookie"]
    finally:
        stop(proc)


def test_a_user_already_known_below_admin_is_made_admin_and_keeps_their_password(tmp_path):
    from pilot.cli.console import local_user
    from pilot.console import auth

    state = tmp_path / "state" / "pilot-console"
    state.mkdir(parents=True, mode=0o700)
    users = auth.UsersFile(state / "console-users")
    name = local_user()
    users.add(name, "viewer", "a-viewer-password-1")
    proc, link = start(tmp_path, "--profile", str(tmp_path / "absent.yaml"))
    try:
        url, port, _token, _after = link.groups()
        with httpx.Client(base_url=f"http://127.0.0.1:{port}", follow_redirects=False, timeout=10) as client:
            assert client.get(url).status_code == 303
            assert client.get("/api/session").json()["role"] == "admin"
    finally:
        stop(proc)
    assert users.get(name).role.label == "admin"
    assert users.verify(name, "a-viewer-password-1") is not None
