"""url.open: the exact argv a press plans on each platform (what dry-run reports and System would run),
and every URL it must refuse, from the profile (validator, at its position) and from the value."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from pilot.actions import ActionError, Unsupported
from pilot.actions._base import RecordingSystem
from pilot.profile.validate import validate_file
from pilot.registry import ACTIONS
from tests.support.files import write

URL = ACTIONS.get("url.open")
SESSION = {"DISPLAY": ":0", "XAUTHORITY": "/home/a/.Xauthority", "PATH": "/usr/bin", "SECRET": "no"}


@pytest.fixture
def desktop(make_ctx):
    return make_ctx(tools=["xdg-open"], environ=SESSION)


def test_a_button_opens_the_profiles_url_with_xdg_open_and_only_the_session_environment(desktop) -> None:
    (call,) = URL.factory(desktop, "PRESS", url="https://www.home-assistant.io/docs?a=1&b=2")
    assert call.argv == ("xdg-open", "https://www.home-assistant.io/docs?a=1&b=2")
    assert dict(call.env) == {"DISPLAY": ":0", "XAUTHORITY": "/home/a/.Xauthority", "PATH": "/usr/bin"}
    assert call.timeout == 15.0


def test_a_text_command_opens_its_value(desktop) -> None:
    (call,) = URL.factory(desktop, "http://example.org/a%20b#frag")
    assert call.argv == ("xdg-open", "http://example.org/a%20b#frag")


def test_macos_and_windows_use_their_own_handlers_without_a_shell(make_ctx) -> None:
    (mac,) = URL.factory(make_ctx(tools=["open"], platform="darwin"), None, url="https://example.org/")
    assert mac.argv == ("open", "https://example.org/")
    (win,) = URL.factory(make_ctx(platform="windows"), None, url="https://example.org/?q=a&calc")
    assert win.argv == ("rundll32.exe", "url.dll,FileProtocolHandler", "https://example.org/?q=a&calc")


def test_dry_run_records_the_argv_and_runs_nothing(desktop, tmp_path: Path) -> None:
    (call,) = URL.factory(desktop, None, url="https://example.org/")
    record = tmp_path / "calls.jsonl"
    RecordingSystem(str(record)).perform(call)
    assert json.loads(record.read_text())["argv"] == ["xdg-open", "https://example.org/"]
    assert call.describe() == "xdg-open https://example.org/"


def test_without_a_desktop_it_says_why(make_ctx) -> None:
    assert URL.available(make_ctx(tools=["xdg-open"], environ={})) == (
        "no desktop session here (no DISPLAY, WAYLAND_DISPLAY or DBUS_SESSION_BUS_ADDRESS)"
    )
    assert URL.available(make_ctx(environ=SESSION)) == "xdg-open is not installed (xdg-utils)"
    with pytest.raises(Unsupported):
        URL.factory(make_ctx(environ=SESSION), None, url="https://example.org/")


HOSTILE = [
    ("javascript:alert(1)", "only http and https URLs are opened"),
    ("file:///etc/passwd", "only http and https URLs are opened"),
    ("data:text/html,<script>x</script>", "only http and https URLs are opened"),
    ("vscode://open?file=/etc/shadow", "only http and https URLs are opened"),
    ("ftp://example.org/", "only http and https URLs are opened"),
    ("/etc/passwd", "only http and https URLs are opened"),
    ("-oProxyCommand=x", "only http and https URLs are opened"),
    ("http://", "the URL names no host"),
    ("https://bank.example@evil.example/", "user name before its host"),
    ("https://user:pw@example.org/", "user name before its host"),
    ("https://example.org/\nhttps://evil.example/", "spaces, control or invisible characters"),
    ("https://example.org/ x", "spaces, control or invisible characters"),
    ("https://example.org/\x1b[31m", "spaces, control or invisible characters"),
    ("https://example.org/\x00", "spaces, control or invisible characters"),
    ("https://example.org/\u202egnp.exe", "spaces, control or invisible characters"),
    ("https://exa\u200bmple.org/", "spaces, control or invisible characters"),
    ("https://example.org/\udcff", "spaces, control or invisible characters"),  # non-UTF-8 bytes, surrogate-escaped
    ("https://exämple.org/", "outside ASCII"),
    ("https://example.org:99999/", "not a valid URL"),
    ("https://[::1/", "not a valid URL"),
    ("https://example.org/" + "a" * 2029, "2049 characters long; at most 2048"),
    ("", "needs a URL"),
    (42, "needs a URL"),
]


@pytest.mark.parametrize(("value", "message"), HOSTILE, ids=[repr(v)[:40] for v, _ in HOSTILE])
def test_hostile_values_are_refused_before_anything_is_planned(desktop, value, message: str) -> None:
    with pytest.raises(ActionError, match=message.replace("[", r"\[")):
        URL.factory(desktop, value)


def test_the_longest_url_allowed_is_opened(desktop) -> None:
    url = "https://example.org/" + "a" * 2028
    assert len(url) == 2048
    assert URL.factory(desktop, url)[0].argv[-1] == url


def test_a_button_without_a_url_is_refused(desktop) -> None:
    with pytest.raises(ActionError, match="needs `url` in args"):
        URL.factory(desktop, "PRESS")


def test_hosts_limit_what_a_value_may_open(desktop) -> None:
    hosts = ["example.org", "Docs.Example.org"]
    assert URL.factory(desktop, "https://docs.example.org./x", hosts=hosts)[0].argv[-1] == "https://docs.example.org./x"
    with pytest.raises(ActionError, match="is not one of the hosts"):
        URL.factory(desktop, "https://example.org.evil.example/", hosts=hosts)
    with pytest.raises(ActionError, match="is not one of the hosts"):
        URL.factory(desktop, "https://sub.example.org/", hosts=hosts)


PROFILE = """\
pilot: 1
device: {{name: Browser}}
commands:
  docs: {{action: url.open, args: {{url: {url}}}}}
"""


def test_a_profile_url_validates(tmp_path: Path) -> None:
    assert validate_file(write(tmp_path, "p.yaml", PROFILE.format(url='"https://example.org/?a=1"')))[1] == []


@pytest.mark.parametrize(
    "url", ['"javascript:alert(1)"', '"file:///etc/passwd"', '"https://a b.org/"', '"https://example.org/\\n"']
)
def test_the_validator_refuses_a_bad_profile_url_at_its_position(tmp_path: Path, url: str) -> None:
    text = PROFILE.format(url=url)
    diags = validate_file(write(tmp_path, "p.yaml", text))[1]
    column = text.splitlines()[3].index(url) + 1
    assert [(d.line, d.col, d.message) for d in diags] == [
        (4, column, "only an http:// or https:// URL of printable ASCII characters without spaces")
    ]
