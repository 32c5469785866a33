"""pilot(1), generated from the argument parser (pilot.manpage; packaging/build.py ships it as
/usr/share/man/man1/pilot.1.gz, and tests/packaging checks that the packages hold it)."""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys

import pytest

from pilot import __version__
from pilot.cli import build_parser
from pilot.manpage import commands, render, roff


@pytest.fixture(scope="module")
def page() -> str:
    return render(date="2025-01-02")


def sub_page(page: str, name: str) -> str:
    """The part of the page about one command, hyphens unescaped."""
    return page.split(f'.SS "{name}"\n', 1)[1].split(".SS ", 1)[0].replace("\\-", "-")


def test_every_command_and_option_is_on_the_page(page):
    found = list(commands(build_parser()))
    names = [name for name, _, _ in found]
    assert {"pilot validate", "pilot run", "pilot send", "pilot service", "pilot service install"} <= set(names)
    for name, _, sub in found:
        assert f'.SS "{name}"' in page, name
        part = sub_page(page, name)
        assert f".B {name} [-h]" in part, name  # the usage line
        for action in sub._actions:
            if action.help != argparse.SUPPRESS and not isinstance(action, argparse._HelpAction):
                for option in action.option_strings:
                    assert option in part, (name, option)
    assert "--duration" not in sub_page(page, "pilot run")  # suppressed: not for users


def test_the_page_reads_as_the_help_does(page):
    assert page.startswith('.\\" pilot.1: generated') and '\n.TH PILOT 1 "2025-01-02"' in page
    assert f'"pilot {__version__}"' in page
    assert ".B --broker HOST:PORT\nuse this broker instead of the profile's" in sub_page(page, "pilot run")
    assert "PILOT_PACKS_PATH" in page and "PILOT_SYSTEM_RECORD" not in page  # users' variables only
    assert not any(line.startswith(("'", ". ")) for line in page.splitlines())  # no accidental requests


def test_roff_escapes():
    assert roff("a\\b --x") == "a\\eb \\-\\-x"
    assert roff(".hidden") == "\\&.hidden" and roff("'q") == "\\&'q"
    assert roff("two\n  lines") == "two lines"


def test_the_module_writes_the_file_and_uses_source_date_epoch(tmp_path):
    env = {**os.environ, "SOURCE_DATE_EPOCH": "1700000000", "PYTHONPATH": os.pathsep.join(sys.path)}
    subprocess.run([sys.executable, "-m", "pilot.manpage", "-o", str(tmp_path / "pilot.1")], check=True, env=env)
    assert '.TH PILOT 1 "2023-11-14"' in (tmp_path / "pilot.1").read_text(encoding="utf-8")


@pytest.mark.skipif(not shutil.which("man"), reason="man is not installed")
def test_man_renders_it(page, tmp_path):
    (tmp_path / "pilot.1").write_text(page, encoding="utf-8")
    env = {**os.environ, "MANWIDTH": "100", "LC_ALL": "C.UTF-8", "MANPAGER": "cat", "PAGER": "cat"}
    shown = subprocess.run(["man", "-l", str(tmp_path / "pilot.1")], capture_output=True, text=True, env=env)
    assert shown.returncode == 0, shown.stderr
    assert "pilot service install" in shown.stdout and "EXIT STATUS" in shown.stdout
    if shutil.which("groff"):  # -ww: every warning; none expected
        lint = subprocess.run(
            ["groff", "-man", "-Tutf8", "-ww", "-z", str(tmp_path / "pilot.1")], capture_output=True, text=True
        )
        assert lint.returncode == 0 and lint.stderr == "", lint.stderr
