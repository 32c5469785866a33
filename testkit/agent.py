"""The agent as a subprocess, for tests and benches: one launcher (`AgentProcess`, with `pilot_run`
building `python -m pilot run ...`), process measurements from /proc, the actions it recorded
(PILOT_SYSTEM_RECORD) and signed command envelopes."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


# ------------------------------------------------------------------ the agent


class AgentProcess:
    """A command as a subprocess: stdin from /dev/null, stdout and stderr appended to `log`.

    `env` is the child's whole environment (default: this process's). `pilot_run()` builds one for
    `python -m pilot run`; benches also start other agents (LNXlink, a bare floor) with it.
    """

    def __init__(self, argv: list[str], *, log: Path, env: Mapping[str, str] | None = None) -> None:
        self.argv = list(argv)
        self.env = dict(os.environ if env is None else env)
        self.log = log
        self.proc: subprocess.Popen | None = None
        self.started = 0.0  # time.monotonic() just before exec
        self.started_wall = 0.0  # time.time() just before exec, comparable with JSON log records' `ts`

    def start(self) -> AgentProcess:
        self.log.parent.mkdir(parents=True, exist_ok=True)
        self.started_wall, self.started = time.time(), time.monotonic()
        with open(self.log, "ab") as out:
            self.proc = subprocess.Popen(
                self.argv, env=self.env, stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT
            )
        return self

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def output(self) -> str:
        return self.log.read_text(errors="replace") if self.log.exists() else ""

    def tail(self, chars: int = 4000, lines: int | None = None) -> str:
        """The end of the output: its last `lines` lines if given, else its last `chars` characters."""
        if lines is not None:
            return "\n".join(self.output().splitlines()[-lines:])
        return self.output()[-chars:]

    def records(self) -> list[dict]:
        """The log's JSON records (`--log-format json`); other lines are skipped."""
        out = []
        for line in self.output().splitlines():
            try:
                record = json.loads(line)
            except ValueError:
                continue
            if isinstance(record, dict) and "msg" in record:
                out.append(record)
        return out

    def lines(self, text: str, after: float = 0.0) -> list[dict]:
        """JSON log records whose message contains text, written at or after wall time `after`."""
        return [r for r in self.records() if text in r["msg"] and r["ts"] >= after - 0.0005]

    def wait_log(self, text: str, timeout: float, after: float = 0.0) -> dict | None:
        """The first JSON log record that contains text, waiting up to `timeout` seconds while it runs."""
        deadline = time.monotonic() + timeout
        while True:
            found = self.lines(text, after)
            if found:
                return found[0]
            if time.monotonic() >= deadline or not self.running():
                return None
            time.sleep(0.05)

    def wait_output(self, text: str, timeout: float) -> bool:
        """Whether text appears in the output (any log format) within `timeout` seconds while it runs."""
        deadline = time.monotonic() + timeout
        while text not in self.output():
            if time.monotonic() >= deadline or not self.running():
                return text in self.output()
            time.sleep(0.05)
        return True

    def signal(self, sig: int) -> None:
        assert self.proc is not None
        self.proc.send_signal(sig)

    def wait(self, timeout: float = 10.0) -> int:
        assert self.proc is not None
        return self.proc.wait(timeout)

    def stop(self, timeout: float = 10.0) -> None:
        """SIGTERM, then SIGKILL if it has not exited within `timeout` seconds."""
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()

    def kill(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()


def pilot_argv(
    profile: Path | None,
    port: int | None,
    state_dir: Path | None,
    *extra: str,
    host: str = "127.0.0.1",
    log_format: str | None = None,
) -> list[str]:
    """`python -m pilot run [PROFILE] [--broker HOST:PORT] [--state-dir DIR] [--log-format F] EXTRA...`"""
    argv = [sys.executable, "-m", "pilot", "run"]
    if profile is not None:
        argv.append(str(profile))
    if port is not None:
        argv += ["--broker", f"{host}:{port}"]
    if state_dir is not None:
        argv += ["--state-dir", str(state_dir)]
    if log_format is not None:
        argv += ["--log-format", log_format]
    return argv + list(extra)


def pilot_env(env: Mapping[str, str] | None = None, base: Mapping[str, str] | None = None) -> dict[str, str]:
    """`base` (default: this process's environment) with Pilot's package on PYTHONPATH, PILOT_ALLOW_ROOT=1
    (tests and benches run as root in CI; `pilot run` refuses root otherwise) and then `env`."""
    return {
        **(os.environ if base is None else base),
        "PYTHONPATH": str(REPO / "engine"),
        "PILOT_ALLOW_ROOT": "1",
        **(env or {}),
    }


def pilot_run(
    profile: Path | None,
    port: int | None,
    state_dir: Path | None,
    *extra: str,
    env: Mapping[str, str] | None = None,
    base_env: Mapping[str, str] | None = None,
    host: str = "127.0.0.1",
    log_format: str | None = None,
    log: Path | None = None,
    log_dir: Path | None = None,
) -> AgentProcess:
    """`pilot run` as an AgentProcess, not yet started. The log is `log`, else a fresh
    `agent-<ns>.log` in `log_dir` (default: the state directory's parent)."""
    if log is None:
        folder = log_dir or (state_dir.parent if state_dir is not None else None)
        if folder is None:
            raise ValueError("pilot_run needs log, log_dir or state_dir")
        log = folder / f"agent-{time.monotonic_ns()}.log"
    return AgentProcess(
        pilot_argv(profile, port, state_dir, *extra, host=host, log_format=log_format),
        env=pilot_env(env, base_env),
        log=log,
    )


# ------------------------------------------------------------------ process measurements


def rss_kb(pid: int) -> int:
    with open(f"/proc/{pid}/status") as handle:
        for line in handle:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    raise RuntimeError(f"no VmRSS for {pid}")


def fd_count(pid: int) -> int:
    return len(os.listdir(f"/proc/{pid}/fd"))


def thread_count(pid: int) -> int:
    return len(os.listdir(f"/proc/{pid}/task"))


def children(pid: int) -> list[int]:
    out = []
    for task in os.listdir(f"/proc/{pid}/task"):
        try:
            out += [int(x) for x in open(f"/proc/{pid}/task/{task}/children").read().split()]
        except OSError:
            pass
    return out


def alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as handle:
            return handle.read().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


# ------------------------------------------------------------------ recorded actions


def recorded_calls(record: Path) -> list[dict]:
    if not record.exists():
        return []
    return [json.loads(line) for line in record.read_text().splitlines() if line.strip()]


# ------------------------------------------------------------------ signing


@dataclass
class Signer:
    """Signs commands for one device with the keys of a keyring file (as `pilot send` would)."""

    keyring: Path
    device: str
    base: str
    keys: dict = field(default_factory=dict)

    def __post_init__(self) -> None:
        from pilot.agent import signing

        self.keys = signing.load_keyring(self.keyring)

    def sign(self, command: str, value: str = "PRESS", *, ts: int | None = None, kid: str = "k1") -> dict:
        """A signed envelope for `value` on the command's set topic (a fresh nonce each time)."""
        from pilot.agent import signing

        return signing.sign(self.keys[kid], self.device, f"{self.base}/cmd/{command}/set", value, ts=ts)

    def envelope(self, command: str, value: str = "PRESS", *, ts: int | None = None, kid: str = "k1") -> str:
        """The same as JSON text, ready to publish."""
        return json.dumps(self.sign(command, value, ts=ts, kid=kid))


def new_keyring(path: Path) -> Path:
    """A fresh keyring file with one key, `k1`, readable by its owner only (the agent refuses others)."""
    from pilot.agent import signing

    path.write_text(signing.new_key_line("k1") + "\n")
    path.chmod(0o600)
    return path
