"""A private PostgreSQL 15 cluster for tests and benchmarks: initdb in a temporary directory, stopped and removed after.

PostgreSQL refuses to run as root, so as root (CI) the server runs as `nobody` (the directory handed to it);
otherwise as the current user. It listens on 127.0.0.1 on a free port and on a socket inside its directory, trusts
local connections (nothing outside this machine can reach it) and is stopped with `pg_ctl -m immediate stop`.

    with postgres_cluster() as pg:
        url = pg.create_database("t1")   # postgresql://pilot@127.0.0.1:PORT/t1
"""

from __future__ import annotations

import contextlib
import os
import pwd
import shutil
import socket
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path

VERSIONED_BIN = Path("/usr/lib/postgresql/15/bin")
SUPERUSER = "pilot"
# tests: nothing to keep across a crash, so no fsync (the bench asks for durable settings instead)
FAST = {"fsync": "off", "synchronous_commit": "off", "full_page_writes": "off"}
DURABLE = {"synchronous_commit": "off"}  # like SQLite's WAL + synchronous=NORMAL: commits may be lost, never the data


def find_bin(name: str) -> str:
    """A PostgreSQL program: from the version 15 directory Debian installs, else from PATH."""
    candidate = VERSIONED_BIN / name
    if os.access(candidate, os.X_OK):
        return str(candidate)
    found = shutil.which(name)
    if found is None:
        raise RuntimeError(f"PostgreSQL's {name} is not installed; `./dev test` installs postgresql-15")
    return found


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class PostgresCluster:
    def __init__(self, settings: dict[str, str] | None = None) -> None:
        self.settings = dict(FAST if settings is None else settings)
        self.dir = Path(tempfile.mkdtemp(prefix="pilot-test-pg-"))
        self.data = self.dir / "data"
        self.port = free_port()
        self.as_root = os.geteuid() == 0
        self.started = False

    def _run(self, argv: list[str], **kw) -> subprocess.CompletedProcess:
        """Run a PostgreSQL program as the cluster's owner (nobody when we are root)."""
        if self.as_root:
            argv = ["runuser", "-u", "nobody", "--", *argv]
        return subprocess.run(argv, capture_output=True, text=True, timeout=120, cwd=self.dir, **kw)

    def start(self) -> PostgresCluster:
        if self.as_root:
            nobody = pwd.getpwnam("nobody")
            os.chown(self.dir, nobody.pw_uid, nobody.pw_gid)
        try:
            self._check(
                self._run(
                    [find_bin("initdb"), "-D", str(self.data), "-U", SUPERUSER, "--auth=trust", "-E", "UTF8"]
                    + ["--no-locale", "--no-sync"]
                ),
                "initdb",
            )
            options = [f"-c listen_addresses=127.0.0.1 -p {self.port} -k {self.dir}"]
            options += [f"-c {key}={value}" for key, value in self.settings.items()]
            self._check(
                self._run(
                    [find_bin("pg_ctl"), "-w", "-t", "60", "-D", str(self.data), "-l", str(self.dir / "server.log")]
                    + ["-o", " ".join(options), "start"]
                ),
                "pg_ctl start",
            )
            self.started = True
        except BaseException:
            self.cleanup()
            raise
        return self

    def _check(self, done: subprocess.CompletedProcess, what: str) -> None:
        if done.returncode != 0:
            log = self.dir / "server.log"
            tail = log.read_text(errors="replace")[-2000:] if log.exists() else ""
            raise RuntimeError(f"{what} failed ({done.returncode}): {done.stderr.strip()[-2000:]}\n{tail}")

    def url(self, database: str = "postgres") -> str:
        return f"postgresql://{SUPERUSER}@127.0.0.1:{self.port}/{database}"

    def create_database(self, name: str) -> str:
        """A new empty database; its URL."""
        self._check(
            self._run([find_bin("createdb"), "-h", "127.0.0.1", "-p", str(self.port), "-U", SUPERUSER, name]),
            "createdb",
        )
        return self.url(name)

    def cleanup(self) -> None:
        if self.started:
            self._run([find_bin("pg_ctl"), "-D", str(self.data), "-m", "immediate", "stop"])
            self.started = False
        shutil.rmtree(self.dir, ignore_errors=True)


@contextlib.contextmanager
def postgres_cluster(settings: dict[str, str] | None = None) -> Iterator[PostgresCluster]:
    cluster = PostgresCluster(settings).start()
    try:
        yield cluster
    finally:
        cluster.cleanup()


@contextlib.contextmanager
def postgres_url(database: str = "pilot", settings: dict[str, str] | None = None) -> Iterator[str]:
    """A private cluster with one database; its URL."""
    with postgres_cluster(settings) as cluster:
        yield cluster.create_database(database)
