"""`pilot init` end to end: through a real terminal (pexpect) against a real Mosquitto with a password
file, from nothing to a written, valid profile that `pilot run --once --dry-run` connects with; the
flags path for scripts (password and TLS); and hostile answers, which are refused with a clear
reason while nothing is written."""

from __future__ import annotations

import os
import re
import stat
import subprocess
import sys
from pathlib import Path

import pytest

from testkit.agent import pilot_env
from tests.live.newcomer.conftest import PASSWORD, write_password

pexpect = pytest.importorskip("pexpect")


def env_for(home: Path) -> dict[str, str]:
    env = pilot_env({"HOME": str(home), "TERM": "dumb", "LC_ALL": "C.UTF-8"})
    env.pop("XDG_CONFIG_HOME", None)
    return env


def spawn(home: Path, *args: str):
    child = pexpect.spawn(
        sys.executable,
        ["-m", "pilot", "init", *args],
        env=env_for(home),
        encoding="utf-8",
        timeout=60,
        dimensions=(50, 250),
    )
    child.logfile_read = open(home.parent / "transcript.txt", "w", encoding="utf-8")  # noqa: SIM115
    return child


def converse(child, script: list[tuple[str, list[str]]]) -> None:
    """Answer each prompt (a regex) with its next answer, in any order, until the program ends."""
    answers = {pattern: list(replies) for pattern, replies in script}
    patterns = [pattern for pattern, _ in script]
    while True:
        i = child.expect([*patterns, pexpect.EOF])
        if i == len(patterns):
            return
        replies = answers[patterns[i]]
        assert replies, f"asked once more than expected: {patterns[i]!r}\n{child.before}"
        child.sendline(replies.pop(0))


def run_once(profile: Path, home: Path, state: Path) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "pilot", "run", str(profile), "--once", "--dry-run", "--state-dir", str(state)],
        capture_output=True,
        text=True,
        env=env_for(home),
        timeout=90,
    )


def test_interactive_from_nothing_to_a_running_agent(auth_broker, tmp_path):
    broker, port = auth_broker
    home = tmp_path / "home"
    home.mkdir()
    child = spawn(home)
    converse(
        child,
        [
            (r"Profile file \[.*?\]: ", [""]),
            (r"Broker host name or IP address.*?: ", ["127.0.0.1", ""]),
            (r"Does the broker use TLS.*?: ", ["n", ""]),
            (r"Port \[\d+\]: ", [str(port), ""]),
            (r"User name \(empty: connect without one\).*?: ", ["pilot", ""]),
            (r"Password \(not shown\): ", ["not the password", PASSWORD]),
            (r"What now\? .*?: ", ["e"]),
            (r"Build on .*?\? \[Y/n\]: ", [""]),
            (r"Which pack\? \[0\]: ", [""]),
            (r"Device name in Home Assistant \[.*?\]: ", ["Test desk"]),
            (r"Lock the screen\? \[Y/n\]: ", [""]),
            (r"Restart and shut down .*?: ", ["y"]),
            (r"Keep the pack's other commands .*?: ", [""]),
            (r"Require a signature on every command .*?: ", ["n"]),
            (r"Write them\? \[Y/n\]: ", ["y"]),
            (r"Install the service now\? \[y/N\]: ", ["n"]),
        ],
    )
    child.close()
    transcript = (tmp_path / "transcript.txt").read_text()
    if os.environ.get("INIT_TRANSCRIPT"):
        Path(os.environ["INIT_TRANSCRIPT"]).write_text(transcript)
    assert child.exitstatus == 0, transcript
    assert "user name or password is wrong" in transcript and "ok: connected and logged in" in transcript
    assert PASSWORD not in transcript, "the password is never echoed"

    profile = home / ".config/pilot/pilot.yaml"
    secret = home / ".config/pilot/mqtt.pass"
    assert profile.is_file() and secret.read_text() == PASSWORD + "\n"
    assert stat.S_IMODE(secret.stat().st_mode) == 0o600
    text = profile.read_text()
    assert '"Test desk"' in text and f"port: {port}" in text and "confirm: 20s, cooldown: 5m" in text
    valid = subprocess.run(
        [sys.executable, "-m", "pilot", "validate", str(profile)], capture_output=True, text=True, env=env_for(home)
    )
    assert valid.returncode == 0, valid.stdout + valid.stderr

    ran = run_once(profile, home, tmp_path / "state")
    assert ran.returncode == 0, ran.stderr
    assert f"connected to 127.0.0.1:{port}" in ran.stderr and "announced" in ran.stderr
    if os.environ.get("INIT_TRANSCRIPT"):  # docs/init.md shows this run
        checked = subprocess.run(
            [sys.executable, "-m", "pilot", "check", str(profile)], capture_output=True, text=True, env=env_for(home)
        )
        with open(os.environ["INIT_TRANSCRIPT"], "a", encoding="utf-8") as handle:
            handle.write(f"\n$ pilot check {profile}\n{checked.stdout}")
            handle.write(f"\n$ pilot run {profile} --once --dry-run\n{ran.stderr}")


def test_flags_with_a_password_file(auth_broker, tmp_path):
    _, port = auth_broker
    home = tmp_path / "home"
    home.mkdir()
    secret = write_password(tmp_path)
    profile = tmp_path / "conf" / "desk.yaml"
    args = [
        "--broker",
        f"127.0.0.1:{port}",
        "--username",
        "pilot",
        "--password-file",
        str(secret),
        "--commands",
        "lock,power",
        "--signed",
        "--name",
        "Scripted",
        "--non-interactive",
        "--output",
        str(profile),
    ]
    done = subprocess.run(
        [sys.executable, "-m", "pilot", "init", *args], capture_output=True, text=True, env=env_for(home), timeout=60
    )
    assert done.returncode == 0, done.stderr
    assert f"Broker 127.0.0.1:{port}: connected and logged in as pilot" in done.stdout
    keyring = tmp_path / "conf" / "keyring"
    assert stat.S_IMODE(keyring.stat().st_mode) == 0o600
    text = profile.read_text()
    assert "require_signed: true" in text and str(keyring) in text and str(secret) in text
    assert "pilot service install" in done.stdout
    ran = run_once(profile, home, tmp_path / "state")
    assert ran.returncode == 0 and f"connected to 127.0.0.1:{port}" in ran.stderr, ran.stderr

    again = subprocess.run(
        [sys.executable, "-m", "pilot", "init", *args], capture_output=True, text=True, env=env_for(home), timeout=60
    )
    assert again.returncode == 1 and "exists; give --force" in again.stderr
    assert profile.read_text() == text


def test_flags_with_tls(pki, tls_broker, tmp_path):
    _, ports = tls_broker
    home = tmp_path / "home"
    home.mkdir()
    profile = tmp_path / "tls.yaml"
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "pilot",
            "init",
            "--broker",
            f"localhost:{ports['server']}",
            "--tls-ca",
            str(pki / "ca.crt"),
            "--commands",
            "none",
            "--non-interactive",
            "--output",
            str(profile),
        ],
        capture_output=True,
        text=True,
        env=env_for(home),
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    assert f'ca_file: "{pki / "ca.crt"}"' in profile.read_text()
    ran = run_once(profile, home, tmp_path / "state")
    assert ran.returncode == 0 and f"connected to localhost:{ports['server']}" in ran.stderr, ran.stderr


@pytest.mark.parametrize(
    "args, words",
    [
        (["--broker", "evil\nhost:1883"], "contains control characters"),
        (["--broker", "evil host:1883"], "is not a host name or IP address"),
        (["--broker", "h" * 300 + ":1883"], "at most 253"),
        (["--broker", "127.0.0.1:1883", "--output", "conf/../../escape.yaml"], "contains `..`"),
        (
            ["--broker", "127.0.0.1:1883", "--username", "pi\x1blot", "--password-file", "/etc/hostname"],
            "contains control characters",
        ),
        (["--broker", "127.0.0.1:1883", "--username", "pilot"], "--username needs --password-file"),
        (["--broker", "127.0.0.1:1883", "--tls-ca", "/no/such/ca.pem"], "does not exist"),
        (["--broker", "127.0.0.1:1883", "--commands", "lock,format-disk"], "--commands takes"),
        (["--output", "x.yaml"], "--non-interactive needs --broker"),
    ],
)
def test_hostile_flags_are_refused_and_nothing_is_written(tmp_path, args, words):
    home = tmp_path / "home"
    home.mkdir()
    done = subprocess.run(
        [sys.executable, "-m", "pilot", "init", "--non-interactive", *args],
        capture_output=True,
        text=True,
        env=env_for(home),
        timeout=60,
        cwd=tmp_path,
    )
    assert done.returncode == 2, done.stdout + done.stderr
    assert words in done.stderr and "nothing written" in done.stderr
    assert list(home.iterdir()) == [] and sorted(p.name for p in tmp_path.iterdir()) == ["home"]


def test_wrong_password_in_flags_mode_writes_nothing(auth_broker, tmp_path):
    _, port = auth_broker
    home = tmp_path / "home"
    home.mkdir()
    secret = write_password(tmp_path, "wrong")
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "pilot",
            "init",
            "--non-interactive",
            "--broker",
            f"127.0.0.1:{port}",
            "--username",
            "pilot",
            "--password-file",
            str(secret),
            "--output",
            str(tmp_path / "p.yaml"),
        ],
        capture_output=True,
        text=True,
        env=env_for(home),
        timeout=60,
    )
    assert done.returncode == 1 and "user name or password is wrong" in done.stderr
    assert not (tmp_path / "p.yaml").exists()


def test_hostile_answers_in_the_terminal(tmp_path):
    home = tmp_path / "home"
    home.mkdir()
    child = spawn(home)
    child.expect(r"Profile file \[.*?\]: ")
    child.sendline("../escape.yaml")
    child.expect("contains `..`")
    child.sendline("x" * 2000 + ".yaml")
    child.expect("at most 1024 are allowed")
    child.sendline(str(tmp_path / "out" / "p.yaml"))
    child.expect(r"Broker host name.*?: ")
    child.sendline("")
    child.expect("a broker host is needed")
    child.sendline("evil\x07host")
    child.expect(re.escape("contains control characters"))
    child.sendline("\x1b[Aevil")
    child.expect(re.escape("contains control characters"))
    child.sendline("h" * 300)
    child.expect("at most 253 are allowed")
    child.sendline("evil\nhost")  # the line ends at \n: `evil` is a host name, `host` answers the next question
    child.expect(r"Does the broker use TLS.*?: ")
    child.expect("answer y or n")
    child.sendeof()
    child.expect(pexpect.EOF)
    child.close()
    assert child.exitstatus == 1
    assert "nothing written" in child.before
    assert list(home.iterdir()) == [] and not (tmp_path / "out").exists()


def test_too_many_bad_answers_give_up(tmp_path):
    home = tmp_path / "home"
    home.mkdir()
    child = spawn(home)
    child.expect(r"Profile file \[.*?\]: ")
    for _ in range(5):
        child.sendline("../x.yaml")
    child.expect("no usable answer after 5 tries; nothing written")
    child.expect(pexpect.EOF)
    child.close()
    assert child.exitstatus == 1 and list(home.iterdir()) == []


def test_without_a_terminal_it_says_how_to_script_it(tmp_path):
    done = subprocess.run(
        [sys.executable, "-m", "pilot", "init"],
        capture_output=True,
        text=True,
        env=env_for(tmp_path),
        stdin=subprocess.DEVNULL,
        timeout=60,
    )
    assert done.returncode == 2 and "--non-interactive" in done.stderr
