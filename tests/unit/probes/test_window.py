"""desktop.active_window: xprop's answers parsed and made safe, the exact argv and environment through the
real run_program (a stand-in xprop script that prints xprop's formats and records how it was called),
every failure a reason and no reading, and the probe kept out of every pack."""

from __future__ import annotations

import json
import os
import shutil
import stat
from pathlib import Path

import pytest

from pilot.probes import ProbeContext, ProbeUnavailable
from pilot.probes._background import Worker
from pilot.probes._programs import run_program
from pilot.probes.window import (
    MAX_TITLE,
    WindowError,
    active_window_id,
    read_active_title,
    safe_title,
    window_title,
)
from pilot.registry import PROBES
from tests.support.probes import REPO

# xprop's output formats (xprop(1); the text of x11-utils 7.7's xprop for these properties)
ROOT = "_NET_ACTIVE_WINDOW(WINDOW): window id # 0x3a00007\n"
ROOT_NONE = "_NET_ACTIVE_WINDOW(WINDOW): window id # 0x0\n"
ROOT_NOT_FOUND = "_NET_ACTIVE_WINDOW:  not found.\n"
NAMES = '_NET_WM_NAME(UTF8_STRING) = "Inbox – Thunderbird"\nWM_NAME(STRING) = "Inbox - Thunderbird"\n'


def test_the_active_window_id() -> None:
    assert active_window_id(ROOT) == "0x3a00007"
    assert active_window_id("_NET_ACTIVE_WINDOW(WINDOW): window id # 0x3A0000F\n") == "0x3a0000f"
    assert active_window_id(ROOT_NONE) is None
    with pytest.raises(WindowError, match="does not publish _NET_ACTIVE_WINDOW"):
        active_window_id(ROOT_NOT_FOUND)
    with pytest.raises(WindowError):
        active_window_id("_NET_ACTIVE_WINDOW(WINDOW): window id # 0x123456789\n")  # more than 32 bits


@pytest.mark.parametrize(
    ("output", "title"),
    [
        (NAMES, "Inbox – Thunderbird"),
        ('_NET_WM_NAME:  not found.\nWM_NAME(STRING) = "xterm"\n', "xterm"),
        ('_NET_WM_NAME(UTF8_STRING) = ""\n', ""),
        ('_NET_WM_NAME(UTF8_STRING) = "say \\"hi\\" \\\\ bye"\n', 'say "hi" \\ bye'),
        ('_NET_WM_NAME(UTF8_STRING) = "two\\nlines"\n', "two\\nlines"),
        ('_NET_WM_NAME(UTF8_STRING) = "caf\\303\\251"\n', "café"),  # UTF-8 bytes in octal
        ('_NET_WM_NAME(UTF8_STRING) = "bad \\377 byte"\n', "bad \ufffd byte"),
        ('_NET_WM_NAME(UTF8_STRING) = "\\033[31mred"\n', "\\x1b[31mred"),
        ('_NET_WM_NAME(UTF8_STRING) = "evil\u202egpj.exe"\n', "evil\\u202egpj.exe"),
        ('_NET_WM_NAME(UTF8_STRING) = "a\u200bb"\n', "a\\u200bb"),
    ],
)
def test_titles_are_decoded_and_made_safe(output: str, title: str) -> None:
    assert window_title(output) == title


def test_a_window_without_a_title_is_none() -> None:
    assert window_title("_NET_WM_NAME:  not found.\nWM_NAME:  not found.\n") is None


def test_long_titles_are_cut_to_what_home_assistant_keeps() -> None:
    cut = safe_title("x" * 1000)
    assert len(cut) == MAX_TITLE == 255 and cut.endswith("…")
    assert safe_title("x" * 255) == "x" * 255
    escaped = safe_title("\x1b" * 200)  # escaping first, then the cut: no half escape can fake more
    assert len(escaped) == 255


@pytest.fixture
def fake_xprop(tmp_path: Path):
    """An executable that answers like xprop from files, and writes its argv and environment to a log."""

    def make(root: str, names: str, *, exit_code: int = 0, stderr: str = "") -> tuple[str, Path]:
        (tmp_path / "root.txt").write_text(root, encoding="utf-8")
        (tmp_path / "names.txt").write_text(names, encoding="utf-8")
        log = tmp_path / "calls.jsonl"
        script = tmp_path / "xprop"
        script.write_text(
            "#!/usr/bin/env python3\n"
            "import json, os, sys\n"
            f"d = {str(tmp_path)!r}\n"
            "call = {'argv': sys.argv[1:], 'env': dict(os.environ)}\n"
            "open(os.path.join(d, 'calls.jsonl'), 'a').write(json.dumps(call) + '\\n')\n"
            f"sys.stderr.write({stderr!r})\n"
            "name = 'root.txt' if sys.argv[1] == '-root' else 'names.txt'\n"
            "sys.stdout.write(open(os.path.join(d, name), encoding='utf-8').read())\n"
            f"sys.exit({exit_code})\n",
            encoding="utf-8",
        )
        script.chmod(script.stat().st_mode | stat.S_IXUSR)
        return str(script), log

    return make


def _calls(log: Path) -> list[dict]:
    return [json.loads(line) for line in log.read_text().splitlines()]


def test_the_exact_argv_and_only_the_display_reach_xprop(fake_xprop) -> None:
    xprop, log = fake_xprop(ROOT, NAMES)
    environ = {"DISPLAY": ":1", "XAUTHORITY": "/home/a/.Xauthority", "HOME": "/home/a", "SECRET": "x"}
    assert read_active_title(environ, run_program, xprop) == "Inbox – Thunderbird"
    calls = _calls(log)
    assert [c["argv"] for c in calls] == [
        ["-root", "_NET_ACTIVE_WINDOW"],
        ["-id", "0x3a00007", "_NET_WM_NAME", "WM_NAME"],
    ]
    for call in calls:
        assert {k: v for k, v in call["env"].items() if k in ("DISPLAY", "XAUTHORITY", "HOME", "SECRET")} == {
            "DISPLAY": ":1",
            "XAUTHORITY": "/home/a/.Xauthority",
        }


def test_no_focused_window_is_an_empty_title_and_one_run(fake_xprop) -> None:
    xprop, log = fake_xprop(ROOT_NONE, NAMES)
    assert read_active_title({"DISPLAY": ":1"}, run_program, xprop) == ""
    assert len(_calls(log)) == 1


def test_xprop_failing_is_one_line(fake_xprop) -> None:
    xprop, _ = fake_xprop("", "", exit_code=1, stderr="/usr/bin/xprop:  unable to open display ':1'\n")
    with pytest.raises(WindowError) as caught:
        read_active_title({"DISPLAY": ":1"}, run_program, xprop)
    assert str(caught.value) == "xprop exited with status 1: /usr/bin/xprop:  unable to open display ':1'"


def test_a_flooding_xprop_is_cut_off(fake_xprop) -> None:
    xprop, _ = fake_xprop(ROOT, '_NET_WM_NAME(UTF8_STRING) = "' + "y" * 20000 + '"\n')
    with pytest.raises(WindowError, match="wrote more than 16384 bytes"):
        read_active_title({"DISPLAY": ":1"}, run_program, xprop)


def test_the_probe_reads_on_the_background_worker(fake_xprop) -> None:
    xprop, log = fake_xprop(ROOT, NAMES)
    now = [100.0]
    worker = Worker(start=False)

    def runner(argv, **kw):
        return run_program([xprop, *argv[1:]], **kw)

    entry = PROBES.get("desktop.active_window")
    read = entry.factory(
        ProbeContext(), every="10s", environ={"DISPLAY": ":1"}, runner=runner, clock=lambda: now[0], worker=worker
    )
    assert read() is None  # nothing read yet: the first run is queued, not done on the caller's thread
    assert log.exists() is False
    assert worker.run_pending() == 1
    assert read() == "Inbox – Thunderbird"
    (Path(log).parent / "names.txt").write_text('_NET_WM_NAME(UTF8_STRING) = "Terminal"\n', encoding="utf-8")
    now[0] += 5
    assert read() == "Inbox – Thunderbird" and worker.run_pending() == 0  # younger than `every`
    now[0] += 6
    assert read() == "Inbox – Thunderbird"
    assert worker.run_pending() == 1
    assert read() == "Terminal"


def test_bad_every_is_unavailable() -> None:
    entry = PROBES.get("desktop.active_window")
    with pytest.raises(ProbeUnavailable, match="at least 1s"):
        entry.factory(ProbeContext(), every=0.5, environ={}, worker=Worker(start=False))
    with pytest.raises(ProbeUnavailable, match="not a duration"):
        entry.factory(ProbeContext(), every="soon", environ={}, worker=Worker(start=False))


def test_without_x11_it_says_why(monkeypatch) -> None:
    entry = PROBES.get("desktop.active_window")
    monkeypatch.delenv("DISPLAY", raising=False)
    monkeypatch.setenv("WAYLAND_DISPLAY", "wayland-0")
    assert "Wayland" in entry.available(ProbeContext())
    monkeypatch.delenv("WAYLAND_DISPLAY")
    assert entry.available(ProbeContext()) == "no X11 session here (DISPLAY is not set)"


def test_it_is_in_no_pack() -> None:
    packs = REPO / "profiles"
    users = [p for p in packs.rglob("*.yaml") if "desktop.active_window" in p.read_text(encoding="utf-8")]
    assert users == []
    assert os.path.isdir(packs)


@pytest.mark.skipif(not shutil.which("xprop") == "/usr/bin/xprop", reason="xprop is not installed as /usr/bin/xprop")
def test_the_real_xprop_without_an_x_server_is_one_line(tmp_path: Path) -> None:
    with pytest.raises(WindowError) as caught:
        read_active_title({"DISPLAY": f"unix:{tmp_path}/no-such-display"})  # nothing listens there
    assert str(caught.value) == (
        f"xprop exited with status 1: /usr/bin/xprop:  unable to open display 'unix:{tmp_path}/no-such-display'"
    )
