"""`pilot console user …`, `pilot console run`'s flags and `pilot console service …`, driven through
`pilot.cli.main(argv)` with a temporary users file (and, for the service, --root and recorded commands)."""

from __future__ import annotations

import io
import os
import stat
import subprocess
import sys
from pathlib import Path

import pytest

from pilot import cli
from pilot.console.auth import Role, UsersFile

REPO = Path(__file__).resolve().parents[3]


def run(capsys, *argv: str, stdin: str | None = None, monkeypatch=None) -> tuple[int, str, str]:
    if stdin is not None:
        monkeypatch.setattr(sys, "stdin", io.TextIOWrapper(io.BytesIO(stdin.encode("utf-8", "surrogateescape"))))
    capsys.readouterr()
    code = cli.main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


@pytest.fixture
def users_file(tmp_path) -> Path:
    return tmp_path / "console-users"


def add(capsys, monkeypatch, users_file, name="alice", role="admin", password="correct horse"):
    return run(
        capsys,
        "console",
        "user",
        "add",
        name,
        "--role",
        role,
        "--users",
        str(users_file),
        "--password-stdin",
        stdin=password + "\n",
        monkeypatch=monkeypatch,
    )


def test_user_add_from_stdin_writes_a_private_file_the_console_accepts(capsys, monkeypatch, users_file):
    code, out, err = add(capsys, monkeypatch, users_file)
    assert (code, err) == (0, "")
    assert out == f"added alice (admin) to {users_file}\n"
    assert stat.S_IMODE(os.stat(users_file).st_mode) == 0o600
    user = UsersFile(users_file).verify("alice", "correct horse")
    assert user is not None and user.role == Role.ADMIN


def test_user_add_prompts_twice_and_refuses_two_different_passwords(capsys, monkeypatch, users_file):
    answers = iter(["first password", "second password"])
    monkeypatch.setattr("getpass.getpass", lambda prompt="": next(answers))
    code, out, err = run(capsys, "console", "user", "add", "bob", "--role", "viewer", "--users", str(users_file))
    assert code == 1
    assert err == "pilot: error: the two passwords differ; nothing changed\n"
    assert not users_file.exists()
    answers = iter(["same password", "same password"])
    code, out, err = run(capsys, "console", "user", "add", "bob", "--role", "viewer", "--users", str(users_file))
    assert code == 0
    assert UsersFile(users_file).verify("bob", "same password") is not None


def test_user_list_passwd_role_remove(capsys, monkeypatch, users_file):
    add(capsys, monkeypatch, users_file, "carol", "viewer")
    add(capsys, monkeypatch, users_file, "alice", "operator")
    code, out, _ = run(capsys, "console", "user", "list", "--users", str(users_file))
    assert (code, out) == (0, "alice  operator\ncarol  viewer\n")
    code, _, _ = run(capsys, "console", "user", "role", "carol", "admin", "--users", str(users_file))
    assert code == 0
    code, _, _ = run(
        capsys,
        "console",
        "user",
        "passwd",
        "alice",
        "--users",
        str(users_file),
        "--password-stdin",
        stdin="the new password\r\n",
        monkeypatch=monkeypatch,
    )
    assert code == 0
    assert UsersFile(users_file).verify("alice", "the new password") is not None
    code, _, _ = run(capsys, "console", "user", "remove", "alice", "--users", str(users_file))
    assert code == 0
    code, out, _ = run(capsys, "console", "user", "list", "--users", str(users_file))
    assert out == "carol  admin\n"


def test_errors_are_one_plain_line(capsys, monkeypatch, users_file):
    add(capsys, monkeypatch, users_file)
    cases = [
        (
            ("console", "user", "add", "alice", "--role", "admin", "--password-stdin"),
            "correct horse\n",
            "pilot: error: user 'alice' already exists in {f}; `pilot console user passwd` changes it\n",
        ),
        (
            ("console", "user", "add", "bob", "--role", "admin", "--password-stdin"),
            "short\n",
            "pilot: error: a password has at least 8 characters; nothing changed\n",
        ),
        (
            ("console", "user", "add", "bob", "--role", "admin", "--password-stdin"),
            "x" * 5000 + "\n",
            "pilot: error: a password has at most 1024 characters; nothing changed\n",
        ),
        (
            ("console", "user", "add", "bob", "--role", "admin", "--password-stdin"),
            "tab\there-password\n",
            "pilot: error: a password may not contain control characters; nothing changed\n",
        ),
        (
            ("console", "user", "add", "bob:x", "--role", "admin", "--password-stdin"),
            "correct horse\n",
            "pilot: error: user name 'bob:x' is not allowed: use 1 to 32 of a-z 0-9 _ . -\n",
        ),
        (
            ("console", "user", "add", "bo\x1bb", "--role", "admin", "--password-stdin"),
            "correct horse\n",
            "pilot: error: user name 'bo\\x1bb' is not allowed: use 1 to 32 of a-z 0-9 _ . -\n",
        ),
        (("console", "user", "remove", "nobody"), None, "pilot: error: no user 'nobody' in {f}\n"),
        (
            ("console", "user", "passwd", "nobody", "--password-stdin"),
            "correct horse\n",
            "pilot: error: no user 'nobody' in {f}\n",
        ),
    ]
    for argv, stdin, expected in cases:
        code, out, err = run(capsys, *argv, "--users", str(users_file), stdin=stdin, monkeypatch=monkeypatch)
        assert (code, out, err) == (1, "", expected.format(f=users_file)), argv
    assert [u.name for u in UsersFile(users_file).list()] == ["alice"]


def test_a_shared_users_file_is_refused_with_the_fix(capsys, monkeypatch, users_file):
    add(capsys, monkeypatch, users_file)
    users_file.chmod(0o644)
    code, out, err = run(capsys, "console", "user", "list", "--users", str(users_file))
    assert code == 1
    assert err == (
        f"pilot: error: users file {users_file} is readable by others (mode 0644); run: chmod 600 {users_file}\n"
    )


def test_a_broken_line_is_named_by_file_and_line(capsys, users_file):
    users_file.write_text("# users\nalice:root:$argon2id$v=19$m=8,t=1,p=1$c2FsdHNhbHQ$aGFzaA\n")
    users_file.chmod(0o600)
    code, _, err = run(capsys, "console", "user", "list", "--users", str(users_file))
    assert code == 1
    assert err == f"pilot: error: {users_file}:2: role 'root' is not one of viewer, operator, admin\n"


def test_non_utf8_on_stdin_is_refused(capsys, monkeypatch, users_file):
    code, _, err = run(
        capsys,
        "console",
        "user",
        "add",
        "bob",
        "--role",
        "admin",
        "--password-stdin",
        "--users",
        str(users_file),
        stdin="caf\udce9-password\n",
        monkeypatch=monkeypatch,
    )
    assert (code, err) == (1, "pilot: error: the password on stdin is not UTF-8 text\n")


def test_an_unknown_role_is_a_usage_error(capsys, users_file):
    code, _, err = run(capsys, "console", "user", "role", "alice", "root", "--users", str(users_file))
    assert code == 2
    assert "invalid choice: 'root'" in err


def test_run_parses_its_flags_and_hands_them_to_the_server(capsys, monkeypatch):
    import types

    seen = {}
    fake = types.ModuleType("pilot.console.server")
    fake.main = lambda args: seen.setdefault("args", args) and 0
    monkeypatch.setitem(sys.modules, "pilot.console.server", fake)
    monkeypatch.setattr("pilot.console.server", fake, raising=False)
    code, _, _ = run(
        capsys,
        "console",
        "run",
        "--config",
        "/etc/pilot/console.yaml",
        "--broker",
        "mqtt.lan:8883",
        "--listen",
        "[::1]:9000",
        "--db",
        "postgresql://c@db/console",
        "--users",
        "/u",
        "--tls-cert",
        "c.pem",
        "--tls-key",
        "k.pem",
        "--anonymous-read",
        "--keyring",
        "/k",
        "--kid",
        "wall",
        "--state-dir",
        "/s",
    )
    args = seen["args"]
    assert code == 0
    assert (args.config, args.broker, args.listen, args.db) == (
        "/etc/pilot/console.yaml",
        ("mqtt.lan", 8883),
        ("::1", 9000),
        "postgresql://c@db/console",
    )
    assert (args.users, args.tls_cert, args.tls_key, args.anonymous_read) == ("/u", "c.pem", "k.pem", True)
    assert (args.keyring, args.kid, args.state_dir) == ("/k", "wall", "/s")
    seen.clear()
    run(capsys, "console", "run")
    args = seen["args"]  # nothing given: None everywhere, so the config file's values (or defaults) stand
    assert (args.config, args.broker, args.listen, args.db, args.anonymous_read, args.kid) == (None,) * 6


@pytest.mark.parametrize("listen", ["8470", "host:", "host:0", "host:70000", ":80x"])
def test_run_refuses_a_listen_address_without_a_port(capsys, listen):
    code, _, err = run(capsys, "console", "run", "--listen", listen)
    assert code == 2
    assert "HOST:PORT" in err


def test_pilot_version_does_not_load_the_console():
    probe = (
        "import sys; from pilot import cli\n"
        "try:\n    cli.main(['--version'])\nexcept SystemExit:\n    pass\n"
        "print(sorted(m for m in sys.modules if m.startswith(('argon2', 'starlette', 'uvicorn', 'pilot.console'))))"
    )
    env = {**os.environ, "PYTHONPATH": str(REPO / "engine")}
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, env=env, check=True).stdout
    assert out.strip().splitlines()[-1] == "[]"


def test_console_user_help_and_bare_console_print_usage(capsys):
    code, out, _ = run(capsys, "console")
    assert code == 2 and "run" in out and "user" in out and "service" in out
    code, out, _ = run(capsys, "console", "user")
    assert code == 2 and "passwd" in out


# ------------------------------------------------------------------ service


def test_service_install_print_shows_the_unit_and_commands(capsys, tmp_path, monkeypatch):
    monkeypatch.setenv("PILOT_SERVICE_RECORD", str(tmp_path / "commands.jsonl"))
    code, out, err = run(
        capsys, "console", "service", "install", "--system", "--print", "--exec", "/opt/pilot/bin/pilot"
    )
    assert code == 0, err
    assert "==> /etc/systemd/system/pilot-console.service (mode 0644) <==" in out
    assert (
        "ExecStart=/opt/pilot/bin/pilot console run --config /etc/pilot/console.yaml "
        "--state-dir /var/lib/pilot-console" in out
    )
    assert "$ systemctl enable --now pilot-console" in out
    assert not (tmp_path / "commands.jsonl").exists()  # --print ran nothing


def test_service_install_under_root_writes_the_unit_and_records_no_command(capsys, tmp_path, monkeypatch):
    record = tmp_path / "commands.jsonl"
    monkeypatch.setenv("PILOT_SERVICE_RECORD", str(record))
    root = tmp_path / "root"
    (root / "etc/pilot").mkdir(parents=True)
    (root / "etc/pilot/console.yaml").write_text("broker: {host: mqtt.lan}\n")
    code, out, err = run(
        capsys, "console", "service", "install", "--system", "--root", str(root), "--exec", "/opt/pilot/bin/pilot"
    )
    assert code == 0, err
    unit = (root / "etc/systemd/system/pilot-console.service").read_text()
    assert "User=pilot-console" in unit.splitlines()
    assert "not run (--root): systemctl enable --now pilot-console" in out
    assert not record.exists()


def test_service_install_refuses_a_config_the_service_cannot_see(capsys, tmp_path):
    code, _, err = run(
        capsys,
        "console",
        "service",
        "install",
        "--system",
        "--print",
        "--exec",
        "/opt/pilot/bin/pilot",
        "--config",
        "/home/me/console.yaml",
    )
    assert code == 1
    assert (
        "install would refuse: the console configuration /home/me/console.yaml is hidden from the service by "
        "ProtectHome=true" in err
    )


def test_service_uninstall_and_status_go_through_the_runner(capsys, tmp_path, monkeypatch):
    import json

    record = tmp_path / "commands.jsonl"
    monkeypatch.setenv("PILOT_SERVICE_RECORD", str(record))
    root = tmp_path / "root"
    unit = root / "etc/systemd/system/pilot-console.service"
    unit.parent.mkdir(parents=True)
    unit.write_text("[Unit]\n")
    code, out, _ = run(capsys, "console", "service", "uninstall", "--system", "--root", str(root))
    assert code == 0
    assert not unit.exists()
    run(capsys, "console", "service", "status", "--system")
    calls = [json.loads(line) for line in record.read_text().splitlines()]
    assert calls == [["systemctl", "status", "pilot-console", "--no-pager"]]


# ------------------------------------------------------------------ the container recipe


def test_the_dockerfile_pins_its_base_runs_as_non_root_and_serves_8470():
    lines = [line.strip() for line in (REPO / "Dockerfile").read_text().splitlines() if line.strip()]
    base = [line.split()[1] for line in lines if line.startswith("FROM ")]
    assert base == ["python:3.11-slim-bookworm"]
    assert not any(":latest" in line or line.startswith("FROM ") and ":" not in line for line in lines)
    users = [line.split()[1] for line in lines if line.startswith("USER ")]
    assert users and users[-1].split(":")[0] not in ("root", "0")
    assert "EXPOSE 8470" in lines
    assert 'VOLUME ["/data"]' in lines
    assert lines[-1].startswith('CMD ["pilot", "console", "run", "--config", "/config/console.yaml"')
    assert any(line.startswith("RUN pip install") and ".[console" in line for line in lines)
