"""The action contract: an action *plans* exact system calls; one System object performs them.

An action never touches the machine itself. Its factory returns the list of
`Call`s it needs (an argv to execute, a file to write, an MQTT message); the
agent hands them to `System.perform`, or, in dry-run, reports them verbatim.
Tests replace only `System` (the lowest layer) with a recorder, so they see
the exact arguments a real run would use and nothing is ever powered off.
"""

from __future__ import annotations

import json
import os
import signal
import threading
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from pilot import environment


class ActionError(Exception):
    """The action cannot run here or with this value; the message is safe to show a user."""


class Unsupported(ActionError):
    """This machine lacks what the action needs (no X11, no backlight, not Linux)."""


@dataclass(frozen=True)
class Call:
    """One operation on the system, exactly as it will be performed."""

    kind: str  # "exec" | "write" | "publish" | "request" | "datagram"
    argv: tuple[str, ...] = ()
    path: str | None = None
    data: str | None = None
    timeout: float | None = None
    cwd: str | None = None
    env: tuple[tuple[str, str], ...] | None = None  # None: inherit nothing but PATH and LANG
    capture: bool = False
    topic: str | None = None
    retain: bool = False
    # "request": `method` on `path` through the connection of child set `via` (a Proxmox API)
    # "datagram": the bytes `data` (hex) as one UDP datagram to `path` ("IPv4:port"; broadcast allowed)
    method: str | None = None
    via: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return {k: v for k, v in asdict(self).items() if v not in (None, (), False)}

    def describe(self) -> str:
        if self.kind == "exec":
            return " ".join(self.argv)
        if self.kind == "write":
            return f"write {self.data!r} to {self.path}"
        if self.kind == "request":
            return f"{self.method} {self.path} (through {self.via})"
        if self.kind == "datagram":
            return f"send {len(self.data or '') // 2} bytes over UDP to {self.path}: {self.data}"
        return f"publish {self.data!r} to {self.topic}"


@dataclass
class Outcome:
    returncode: int = 0
    output: str = ""
    interrupted: bool = False


@dataclass
class ActionContext:
    """What an action may look at while planning: roots tests point at recorded trees."""

    sysfs_root: Path = field(default_factory=lambda: Path(environment.get("PILOT_SYSFS_ROOT") or "/sys"))
    platform: str = field(default_factory=lambda: os.name and __import__("platform").system().lower())
    environ: dict[str, str] = field(default_factory=lambda: dict(os.environ))
    which: Callable[[str], str | None] = field(default_factory=lambda: __import__("shutil").which)

    def sys(self, *parts: str) -> Path:
        return self.sysfs_root.joinpath(*parts)


class System:
    """Performs calls for real. The only place in Pilot that changes the machine."""

    def __init__(self, publish: Callable[[str, str, bool], None] | None = None) -> None:
        self._publish = publish
        self._running: dict[int, Any] = {}  # pid -> subprocess.Popen
        self._lock = threading.Lock()
        # child set id -> what performs a "request" on its connection (set by the agent's children)
        self.requesters: dict[str, Callable[[str, str], str]] = {}

    def perform(self, call: Call) -> Outcome:
        if call.kind == "request":
            requester = self.requesters.get(call.via or "")
            if requester is None:
                raise ActionError(f"no connection for {call.via!r}")
            return Outcome(output=requester(call.method or "", call.path or ""))
        if call.kind == "write":
            with open(call.path, "w", encoding="utf-8") as handle:  # sysfs: one write, no temp file
                handle.write(call.data or "")
            return Outcome()
        if call.kind == "datagram":
            return _send_datagram(call)
        if call.kind == "publish":
            if self._publish is None:
                raise ActionError("MQTT is not connected")
            self._publish(call.topic or "", call.data or "", call.retain)
            return Outcome()
        import subprocess  # loaded when an action first runs, not by every agent

        env = (
            dict(call.env)
            if call.env is not None
            else {k: v for k, v in os.environ.items() if k in ("PATH", "LANG", "LC_ALL")}
        )
        proc = subprocess.Popen(
            list(call.argv),
            cwd=call.cwd,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE if call.capture else subprocess.DEVNULL,
            stderr=subprocess.STDOUT if call.capture else subprocess.DEVNULL,
            start_new_session=True,
        )
        with self._lock:
            self._running[proc.pid] = proc
        try:
            out, _ = proc.communicate(timeout=call.timeout)
        except subprocess.TimeoutExpired:
            _kill_group(proc.pid, signal.SIGKILL)  # the whole session: a grandchild may hold the pipe
            try:
                proc.communicate(timeout=5)
            except subprocess.TimeoutExpired:
                pass
            raise ActionError(f"timed out after {call.timeout:g} s") from None
        finally:
            with self._lock:
                self._running.pop(proc.pid, None)
        return Outcome(proc.returncode, (out or b"").decode(errors="replace")[-4096:], interrupted=proc.returncode < 0)

    def interrupt_all(self, grace: float = 2.0) -> None:
        """On SIGTERM: stop what is still running (each action's whole process group, since
        actions start their own session), then kill what ignored the request."""
        import time

        with self._lock:
            pids = list(self._running)
        for pid in pids:
            _kill_group(pid, signal.SIGTERM)
        deadline = time.monotonic() + grace
        while time.monotonic() < deadline:
            with self._lock:
                if not self._running:
                    return
            time.sleep(0.02)
        with self._lock:
            pids = list(self._running)
        for pid in pids:
            _kill_group(pid, signal.SIGKILL)


def _send_datagram(call: Call) -> Outcome:
    import socket

    host, _, port = (call.path or "").rpartition(":")
    try:
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_BROADCAST, 1)  # Wake-on-LAN goes to a broadcast address
            sent = sock.sendto(bytes.fromhex(call.data or ""), (host, int(port)))
    except OSError as exc:
        raise ActionError(f"cannot send to {call.path}: {exc.strerror or exc}") from None
    return Outcome(output=f"sent {sent} bytes")


def _kill_group(pid: int, sig: int) -> None:
    try:
        os.killpg(pid, sig)
    except (ProcessLookupError, PermissionError, OSError):
        pass


class RecordingSystem(System):
    """Appends every call to a JSON-lines file instead of performing it (PILOT_SYSTEM_RECORD).

    For tests and for trying a profile on a machine you do not want to touch; `pilot run`
    logs a warning at start when it is active."""

    def __init__(self, path: str, publish: Callable[[str, str, bool], None] | None = None) -> None:
        super().__init__(publish)
        self.path = path

    def perform(self, call: Call) -> Outcome:
        line = json.dumps(call.to_dict(), sort_keys=True)
        with open(self.path, "a", encoding="utf-8") as handle:
            handle.write(line + "\n")
            handle.flush()
            os.fsync(handle.fileno())
        if call.kind == "publish" and self._publish is not None:
            self._publish(call.topic or "", call.data or "", call.retain)
        delay = float(environment.get("PILOT_SYSTEM_RECORD_DELAY") or 0)
        if delay:
            import time

            time.sleep(delay)  # lets tests hold an action "running"
        return Outcome(output="recorded")


def system_from_env(publish: Callable[[str, str, bool], None] | None = None) -> System:
    path = environment.get("PILOT_SYSTEM_RECORD")
    return RecordingSystem(path, publish) if path else System(publish)
