"""Names that reach generated polkit, systemd, sudoers and tmpfiles files (issue "Hostile input, round two").

A profile's name is its file name, which may hold anything a file system allows: a newline, then
`polkit.addRule(function(a,s){return polkit.Result.YES;});` made `pilot privileges` emit a rule that
grants every action to every user. Each test writes such a profile into tmp_path and runs the real
command line (`pilot privileges`, `pilot service install --print` and `--root`): the output is
refused, or holds no code but the one rule. Nothing is installed on this machine: `--root` writes
under tmp_path and runs no command, `--print` writes nothing.
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from pilot.service import privileges, systemd

REPO = Path(__file__).resolve().parents[2]
PAYLOAD = "polkit.addRule(function(a,s){return polkit.Result.YES;});"
BODY = "pilot: 1\ndevice: {id: injrig, name: Inj}\ncommands:\n  shutdown: {action: power.shutdown}\n"
SEPARATORS = ["\n", "\r", "\u2028", "\u2029", "\x85", "\x0b", "\x1b"]
HOSTILE_NAMES = [f"office{sep}{PAYLOAD}{sep}var x=1;" for sep in SEPARATORS] + [
    'office"; polkit.addRule(function(a,s){return polkit.Result.YES;}); "',
    "office\\u000apolkit.addRule(function(a,s){return polkit.Result.YES;});",
    "office ExecStartPre=evil",
    "office%n$HOME",
    "-office",
]
SYSTEMD_ANALYZE = shutil.which("systemd-analyze")


def pilot(*argv: str, cwd: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(REPO / "engine"), "PILOT_SERVICE_RECORD": str(cwd / "service-calls.jsonl")}
    return subprocess.run(
        [sys.executable, "-m", "pilot", *argv], capture_output=True, text=True, env=env, cwd=cwd, timeout=120
    )


def write_profile(folder: Path, name: str, body: str = BODY) -> Path:
    path = folder / f"{name}.yaml"
    try:
        path.write_text(body)
    except (OSError, ValueError) as exc:  # a name this file system refuses cannot attack it either
        pytest.skip(f"file system refuses the name: {exc}")
    return path


def js_code_outside_strings_and_comments(js: str) -> str:
    """The JavaScript with string literals and comments removed (a strict tokenizer for what
    render_polkit writes); JavaScript line terminators included, as a JavaScript engine sees them."""
    out, i = [], 0
    while i < len(js):
        ch = js[i]
        if ch == '"' or ch == "'":
            j = i + 1
            while j < len(js) and js[j] != ch:
                assert js[j] not in "\n\r\u2028\u2029", f"line terminator inside a string literal: {js!r}"
                j += 2 if js[j] == "\\" else 1
            i = j + 1
            out.append('""')
        elif js.startswith("//", i):
            while i < len(js) and js[i] not in "\n\r\u2028\u2029":
                i += 1
        elif js.startswith("/*", i):
            end = js.index("*/", i + 2)
            i = end + 2
        else:
            out.append(ch)
            i += 1
    return "".join(out)


def assert_one_rule(js: str) -> None:
    code = js_code_outside_strings_and_comments(js)
    assert code.count("polkit.addRule") == 1, js
    assert "polkit.Result.YES" in code and code.count("polkit.Result.YES") == 1, js
    assert 'subject.user == ""' in code  # the user is a string literal, compared, never code
    for ch in js:
        assert ch == "\n" or " " <= ch <= "~", f"non-printable {ch!r} in {js!r}"


# ------------------------------------------------------------------ pilot privileges


def assert_refused_on_safe_lines(stderr: str) -> None:
    """The refusal names the rule (the validator's or install's own wording), and no line of the
    error output is one the hostile name wrote: its line breaks are printed as escapes."""
    assert "the file name must be letters" in stderr or "may contain only letters" in stderr, stderr[-2000:]
    for line in stderr.splitlines():
        assert not line.lstrip().startswith(("polkit.addRule", "var x", "[Service]", "ExecStart")), stderr[-2000:]


@pytest.mark.parametrize("name", HOSTILE_NAMES, ids=range(len(HOSTILE_NAMES)))
def test_pilot_privileges_refuses_a_hostile_profile_file_name(tmp_path, name):
    profile = write_profile(tmp_path, name)
    for extra in ([], ["--polkit"]):
        proc = pilot("privileges", str(profile), *extra, cwd=tmp_path)
        assert proc.returncode != 0, proc.stdout
        assert "addRule" not in proc.stdout, proc.stdout
        assert_refused_on_safe_lines(proc.stderr)


def test_pilot_privileges_still_prints_one_rule_for_a_plain_name(tmp_path):
    profile = write_profile(tmp_path, "office-2.main")
    proc = pilot("privileges", str(profile), "--polkit", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert_one_rule(proc.stdout)
    assert '"org.freedesktop.login1.power-off"' in proc.stdout


@pytest.mark.parametrize(
    "user", ["0", "1000", "-o", "a b", 'pilot"||true||"', "pilot\nALL ALL=(ALL) ALL", "x" * 40, ""]
)
def test_a_hostile_user_name_is_refused(user):
    with pytest.raises(ValueError):
        privileges.check_user(user)
    with pytest.raises(argparse.ArgumentTypeError):
        privileges.user_arg(user)


def test_render_refuses_a_hostile_user_even_if_the_cli_passed_it(tmp_path):
    """`pilot privileges --user` is checked by render itself until the CLI checks it with user_arg."""
    profile = write_profile(tmp_path, "office")
    proc = pilot("privileges", str(profile), "--user", 'x" || true || "', cwd=tmp_path)
    assert proc.returncode != 0 and "addRule" not in proc.stdout


def test_javascript_strings_escape_every_line_terminator():
    for sep in ["\n", "\r", "\u2028", "\u2029"]:
        literal = privileges.js_string(f'a{sep}"b')
        assert sep not in literal and literal.isascii()
    assert privileges.comment("a\u2028b\nc") == "a\\u2028b\\u000ac"


# ------------------------------------------------------------------ pilot service install


@pytest.mark.parametrize("name", HOSTILE_NAMES, ids=range(len(HOSTILE_NAMES)))
@pytest.mark.parametrize("mode", ["--print", "--root"])
def test_service_install_refuses_a_hostile_profile_file_name(tmp_path, name, mode):
    profile = write_profile(tmp_path, name)
    root = tmp_path / "root"
    argv = ["service", "install", "--system", str(profile)] + (
        ["--print"] if mode == "--print" else ["--root", str(root)]
    )
    proc = pilot(*argv, cwd=tmp_path)
    assert proc.returncode != 0, proc.stdout
    assert "addRule" not in proc.stdout and "ExecStart" not in proc.stdout
    assert_refused_on_safe_lines(proc.stderr)
    assert not root.exists() or not any(root.rglob("*"))  # nothing written


def test_service_install_refuses_a_hostile_service_user(tmp_path):
    profile = write_profile(tmp_path, "office", BODY + 'service: {user: "0"}\n')
    proc = pilot("service", "install", "--system", str(profile), "--print", cwd=tmp_path)
    assert proc.returncode != 0 and "User=" not in proc.stdout, proc.stdout
    assert "user" in proc.stderr  # the profile validator or install itself says why


def test_plan_install_refuses_a_hostile_user_the_validator_let_through(tmp_path):
    """Install checks the user itself, whatever the profile schema says about it."""
    import dataclasses

    profile = write_profile(tmp_path, "office")
    doc, plan, _ = systemd.load_profile(str(profile))
    for user in ("0", "-o", "a\nb", "x y"):
        hostile = dataclasses.replace(plan, service=dataclasses.replace(plan.service, user=user))
        with pytest.raises(systemd.InstallError, match="user name"):
            systemd.plan_install(str(profile), doc, hostile, system=True, exec_override="/usr/bin/pilot")


def test_service_install_refuses_an_extended_file_with_a_hostile_name(tmp_path):
    write_profile(tmp_path, f"common\n{PAYLOAD}", "pilot: 1\nsensors:\n  cpu: {probe: cpu.percent}\n")
    profile = write_profile(tmp_path, "office", BODY + f'extends: ["./common\\n{PAYLOAD}.yaml"]\n')
    proc = pilot("service", "install", "--system", str(profile), "--print", cwd=tmp_path)
    assert proc.returncode != 0 and "addRule" not in proc.stdout, proc.stdout + proc.stderr


def test_service_install_root_writes_one_rule_and_a_unit_systemd_accepts(tmp_path):
    profile = write_profile(tmp_path, "office")
    root = tmp_path / "root"
    proc = pilot(
        "service", "install", "--system", str(profile), "--root", str(root), "--exec", "/usr/bin/pilot", cwd=tmp_path
    )
    assert proc.returncode == 0, proc.stderr
    assert_one_rule((root / "etc/polkit-1/rules.d/50-pilot.rules").read_text())
    unit = (root / "etc/systemd/system/pilot.service").read_text()
    starts = [line for line in unit.splitlines() if line.startswith("ExecStart=")]
    assert starts == ["ExecStart=/usr/bin/pilot run /etc/pilot/office.yaml --state-dir /var/lib/pilot"]


# ------------------------------------------------------------------ the unit writers themselves


@pytest.mark.parametrize("bad", ["/etc/pilot/a\nExecStartPre=/bin/sh", "/x\r", "/x\u2028y", "/x\x85", "/x\x00"])
def test_unit_words_and_environment_refuse_control_characters(bad):
    with pytest.raises(ValueError):
        systemd.render_system_unit(["/usr/bin/pilot"], bad, "pilot")
    with pytest.raises(ValueError):
        systemd.render_user_unit(["/usr/bin/pilot"], bad)
    with pytest.raises(ValueError):
        systemd.render_user_unit(["/usr/bin/pilot"], "/p.yaml", env={"PYTHONPATH": bad})


def test_unit_words_are_quoted_with_systemd_rules():
    assert systemd.systemd_quote("/opt/a b/pilot") == '"/opt/a b/pilot"'
    assert systemd.systemd_quote('/x"; /bin/sh; "') == '"/x\\"; /bin/sh; \\""'
    assert systemd.systemd_quote("/x/%h/$HOME\\") == '"/x/%%h/$$HOME\\\\"'
    assert systemd.systemd_env("PYTHONPATH", "/opt/a b/$x%") == 'Environment="PYTHONPATH=/opt/a b/$x%%"'


def test_read_write_paths_keep_only_plain_folders(tmp_path):
    with pytest.raises(ValueError):
        systemd.render_system_unit(["/usr/bin/pilot"], "/etc/pilot/o.yaml", "pilot", rw_paths=["-/sys/a b"])
    with pytest.raises(ValueError):
        systemd.render_system_unit(["/usr/bin/pilot"], "/etc/pilot/o.yaml", "0")


def test_a_source_path_with_a_newline_stays_inside_its_comment():
    unit = systemd.render_system_unit(
        ["/usr/bin/pilot"], "/etc/pilot/o.yaml", "pilot", source="/home/x\nExecStartPre=/bin/sh -c evil"
    )
    assert not any(line.startswith("ExecStartPre") for line in unit.splitlines())


def _verify(unit: str, folder: Path) -> str:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "pilot.service").write_text(unit)
    env = {**os.environ, "SYSTEMD_LOG_COLOR": "0"}
    proc = subprocess.run(
        [SYSTEMD_ANALYZE, "verify", "--man=no", "--generators=no", str(folder / "pilot.service")],
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
    )
    return proc.stdout + proc.stderr


@pytest.mark.skipif(SYSTEMD_ANALYZE is None, reason="systemd-analyze is not installed")
def test_systemd_analyze_accepts_a_unit_with_awkward_but_allowed_paths(tmp_path):
    exe = tmp_path / "my pilot" / "pilot"
    exe.parent.mkdir()
    exe.write_text("#!/bin/sh\nexit 0\n")
    exe.chmod(0o755)
    unit = systemd.render_system_unit(
        [str(exe)],
        "/etc/pilot/o.yaml",
        "pilot",
        env={"PYTHONPATH": '/opt/a "b"\\c $d %e'},
        source="/home/ann/x\u2028y.yaml",
    )
    out = _verify(unit, tmp_path / "units")
    syntax = re.compile(r"Unknown (key|section|lvalue)|Failed to parse|Invalid|Missing|bad unit file|ignoring", re.I)
    problems = [line for line in out.splitlines() if syntax.search(line) and "pilot.service" in line]
    assert not problems, out


def test_pilot_privileges_offers_no_sudo_path_it_could_not_use(tmp_path):
    """The 'sudoers alternative' named systemctl poweroff only, and could not have worked for any
    action: they ask logind over D-Bus, and the unit's NoNewPrivileges=true blocks sudo. The output
    now says so instead of offering it."""
    profile = write_profile(tmp_path, "office", BODY)
    proc = pilot("privileges", str(profile), cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert "NOPASSWD" not in proc.stdout and "sudoers" not in proc.stdout
    assert "Pilot has no sudo path" in proc.stdout and "service: {user: root, allow_root: true}" in proc.stdout
