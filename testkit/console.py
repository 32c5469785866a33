"""A real `pilot console run` for tests, the browser suite and bench/console.py.

The console runs as its own process, as users run it, with its users file made through the same code as
`pilot console user add`, a keyring when asked, and a SQLite database in a temporary directory.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

from testkit.broker import free_port

ROOT = Path(__file__).resolve().parent.parent


@dataclass
class ConsoleProcess:
    broker_port: int
    users: list[tuple[str, str, str]] = field(default_factory=list)  # (name, role, password)
    anonymous_read: bool = False
    keyring: Path | None = None
    kid: str = "console"
    database: str | None = None
    extra_args: list[str] = field(default_factory=list)
    tls: tuple[Path, Path, Path] | None = None  # (certificate, key, the CA that signed it): serve HTTPS
    port: int = field(default_factory=free_port)
    dir: Path = field(default_factory=lambda: Path(tempfile.mkdtemp(prefix="pilot-test-console-")))
    proc: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        return f"{'https' if self.tls else 'http'}://127.0.0.1:{self.port}"

    def verify(self):
        """What httpx should trust: the test CA under TLS."""
        import ssl

        return ssl.create_default_context(cafile=str(self.tls[2])) if self.tls else True

    @property
    def users_file(self) -> Path:
        return self.dir / "console-users"

    @property
    def log_path(self) -> Path:
        return self.dir / "console.log"

    def argv(self) -> list[str]:
        argv = [
            sys.executable,
            "-m",
            "pilot",
            "console",
            "run",
            "--broker",
            f"127.0.0.1:{self.broker_port}",
            "--listen",
            f"127.0.0.1:{self.port}",
            "--db",
            self.database or f"sqlite:///{self.dir / 'console.db'}",
            "--users",
            str(self.users_file),
            "--state-dir",
            str(self.dir / "state"),
            "--kid",
            self.kid,
        ]
        if self.anonymous_read:
            argv.append("--anonymous-read")
        if self.keyring is not None:
            argv += ["--keyring", str(self.keyring)]
        if self.tls is not None:
            argv += ["--tls-cert", str(self.tls[0]), "--tls-key", str(self.tls[1])]
        return argv + self.extra_args

    def add_users(self) -> None:
        from pilot.console.auth import UsersFile

        users = UsersFile(self.users_file)
        for name, role, password in self.users:
            users.add(name, role, password)

    def start(self, wait: float = 20.0) -> ConsoleProcess:
        if self.users and not self.users_file.exists():
            self.add_users()
        env = dict(os.environ, PYTHONPATH=str(ROOT / "engine"), PYTHONUNBUFFERED="1")
        self.proc = subprocess.Popen(
            self.argv(), stdout=subprocess.DEVNULL, stderr=open(self.log_path, "ab"), env=env, cwd=self.dir
        )
        self.wait_ready(wait)
        return self

    def wait_ready(self, timeout: float) -> None:
        import httpx

        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc is not None and self.proc.poll() is not None:
                raise RuntimeError(f"the console exited {self.proc.returncode}:\n{self.log()}")
            try:
                httpx.get(self.url + "/healthz", timeout=1, verify=self.verify())
                return  # any answer: it listens (an allowed_hosts console refuses 127.0.0.1 with 400)
            except httpx.HTTPError:
                pass
            time.sleep(0.1)
        raise RuntimeError(f"the console did not answer within {timeout} s:\n{self.log()}")

    def wait_subscribed(self, timeout: float = 30.0) -> None:
        """Until the console is connected and every subscription's retained messages are in (`/healthz` ready)."""
        import httpx

        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                if httpx.get(self.url + "/healthz", timeout=2, verify=self.verify()).json().get("ready"):
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.1)
        raise RuntimeError(f"the console did not finish subscribing within {timeout} s:\n{self.log()}")

    def log(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")[-4000:]
        except OSError:
            return ""

    def client(self, name: str | None = None, password: str | None = None):
        """An httpx client; signed in (with its CSRF token as a default header) when a name is given."""
        import httpx

        client = httpx.Client(base_url=self.url, timeout=15, verify=self.verify())
        if name is not None:
            answer = client.post("/api/login", json={"username": name, "password": password})
            answer.raise_for_status()
            client.headers["X-CSRF-Token"] = answer.json()["csrf"]
        return client

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)

    def cleanup(self) -> None:
        self.stop()
        shutil.rmtree(self.dir, ignore_errors=True)
