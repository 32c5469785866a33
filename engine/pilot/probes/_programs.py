"""Run a helper program for a probe: no shell, a cleared environment, a deadline and output caps.

Every probe that reads another program's output (smartctl, systemctl, wpctl, apt-get, a
profile's own `command.output` program) goes through `run_program`, so the rules hold in one
place: argv is a list and never reaches a shell; the program is an absolute path or a bare
name found on a fixed PATH (never the agent's own PATH, which a user's shell may have
prepended to); the environment is cleared to PATH and LANG plus what the caller names; the
program runs in its own process group, and the whole group is killed at the deadline, so a
grandchild that keeps the pipe open cannot hold the probe; stdout is kept up to `max_output`
bytes and stderr up to 4 KiB, and a program that keeps writing past a flood limit is killed.

A failure is data, not an exception: the result says what happened in one line (`problem`),
and the probe turns that into "unavailable".
"""

from __future__ import annotations

import atexit
import os
import re
import shutil
import signal
import subprocess
import threading
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

FIXED_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
BASE_ENV = {"PATH": FIXED_PATH, "LANG": "C.UTF-8"}
STDERR_CAP = 4096
# Past max_output the rest is read and thrown away (a program may print a little more and
# exit cleanly); past this much more, it is flooding and is killed.
FLOOD_SLACK = 1 << 20
MAX_TIMEOUT = 300.0
_ENV_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_CHUNK = 65536
_running: set[int] = set()  # process groups started here and not yet reaped
_running_lock = threading.Lock()


@dataclass(frozen=True)
class ProgramResult:
    """What one run of a program gave: its status, its (capped) output, and what went wrong."""

    returncode: int | None
    stdout: bytes
    stderr: bytes
    truncated: bool = False
    timed_out: bool = False
    error: str | None = None  # it could not be started at all (not found, not executable, bad argv)

    @property
    def ok(self) -> bool:
        """It ran to the end by itself, exited 0, and its whole output is here."""
        return self.error is None and not self.timed_out and not self.truncated and self.returncode == 0

    def text(self) -> str:
        return self.stdout.decode("utf-8", errors="replace")

    def stderr_line(self) -> str:
        """The first non-empty stderr line, printable and short: for a reason shown to a user."""
        for line in self.stderr.decode("utf-8", errors="replace").splitlines():
            line = "".join(ch if ch.isprintable() else "?" for ch in line.strip())
            if line:
                return line[:200]
        return ""

    def problem(self, limit: int | None = None) -> str | None:
        """One line saying why this result is no reading, or None when it is `ok`."""
        if self.error is not None:
            return self.error
        if self.timed_out:
            return "did not finish in time and was stopped"
        if self.truncated:
            return f"wrote more than {limit} bytes" if limit else "wrote more output than allowed"
        if self.returncode is None:
            return "did not exit"
        if self.returncode < 0:
            try:
                name = signal.Signals(-self.returncode).name
            except ValueError:
                name = f"signal {-self.returncode}"
            return f"was killed by {name}"
        if self.returncode != 0:
            detail = self.stderr_line()
            return f"exited with status {self.returncode}" + (f": {detail}" if detail else "")
        return None


def _failed(message: str) -> ProgramResult:
    return ProgramResult(returncode=None, stdout=b"", stderr=b"", error=message)


def resolve(program: str) -> tuple[str | None, str | None]:
    """(absolute path, None) for a program that can run, or (None, why not)."""
    if not isinstance(program, str) or not program or "\x00" in program:
        return None, "the program name is empty or holds a NUL byte"
    if program.startswith("/"):
        path = program
    elif "/" in program:
        return None, f"{program[:80]!r} is a relative path: give an absolute path or a bare name"
    else:
        found = shutil.which(program, path=FIXED_PATH)
        if found is None:
            return None, f"{program[:80]} is not installed (not found on {FIXED_PATH})"
        path = found
    if not os.path.isfile(path):
        return None, f"{path[:200]} does not exist"
    if not os.access(path, os.X_OK):
        return None, f"{path[:200]} is not executable"
    return path, None


def _environment(extra: Mapping[str, str] | None) -> dict[str, str] | str:
    env = dict(BASE_ENV)
    for name, value in (extra or {}).items():
        if not isinstance(name, str) or not _ENV_NAME.fullmatch(name):
            return f"invalid environment variable name {str(name)[:40]!r}"
        if not isinstance(value, str) or "\x00" in value:
            return f"environment variable {name} must be text without NUL bytes"
        env[name] = value
    return env


def run_program(
    argv: Sequence[str],
    *,
    timeout: float = 5.0,
    max_output: int = 65536,
    env: Mapping[str, str] | None = None,
    stdin: bytes | None = None,
) -> ProgramResult:
    """Run argv (no shell) and return its capped output; never raises for anything the program does."""
    if isinstance(argv, (str, bytes)) or not argv:
        return _failed("argv must be a non-empty list of arguments")
    if not all(isinstance(arg, str) for arg in argv):
        return _failed("every argument must be text")
    if any("\x00" in arg for arg in argv):
        return _failed("an argument holds a NUL byte")
    if not (0 < timeout <= MAX_TIMEOUT) or max_output < 1:
        return _failed(f"timeout must be within (0, {MAX_TIMEOUT:g}] s and max_output at least 1 byte")
    path, why = resolve(argv[0])
    if path is None:
        return _failed(why or "cannot run")
    environment = _environment(env)
    if isinstance(environment, str):
        return _failed(environment)
    # Popen, not os.posix_spawn: CPython (3.10+) already starts the child with vfork here, so the
    # agent's memory is not copied; posix_spawn would save about 0.1 ms of the agent's CPU a run, but
    # Python 3.11 gives it no way to close the agent's inheritable descriptors (close_fds below).
    try:
        proc = subprocess.Popen(
            [path, *argv[1:]],
            env=environment,
            stdin=subprocess.PIPE if stdin is not None else subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            start_new_session=True,  # its own process group, so the deadline can kill all of it
            close_fds=True,
        )
    except OSError as exc:
        return _failed(f"{path[:200]} could not be started ({exc.strerror or type(exc).__name__})")
    with _running_lock:
        _running.add(proc.pid)
    try:
        if os.name != "posix":
            return _collect_plain(proc, timeout=timeout, max_output=max_output, stdin=stdin)
        return _collect(proc, timeout=timeout, max_output=max_output, stdin=stdin)
    finally:
        with _running_lock:
            _running.discard(proc.pid)


@atexit.register
def stop_all() -> None:
    """Kill every program group still running (the agent is exiting): a probe's helper must not
    outlive the agent just because it runs in its own session."""
    with _running_lock:
        groups = list(_running)
    for pgid in groups:
        try:
            os.killpg(pgid, signal.SIGKILL)  # type: ignore[attr-defined]
        except (ProcessLookupError, PermissionError, AttributeError):  # AttributeError: not POSIX
            pass


def _kill_group(proc: subprocess.Popen[bytes]) -> None:
    if hasattr(os, "killpg"):
        try:
            os.killpg(proc.pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass
    try:
        proc.kill()  # the leader itself, should it have left the group
    except ProcessLookupError:
        pass


def _collect_plain(
    proc: subprocess.Popen[bytes], *, timeout: float, max_output: int, stdin: bytes | None
) -> ProgramResult:
    """Windows (pipes cannot be selected there; untested on real Windows): the deadline holds, but the
    output is cut to its caps only after it was read, so a flood costs memory until the deadline."""
    timed_out = False
    try:
        out, err = proc.communicate(input=stdin, timeout=timeout)
    except subprocess.TimeoutExpired:
        timed_out = True
        _kill_group(proc)
        try:
            out, err = proc.communicate(timeout=5)
        except subprocess.TimeoutExpired:  # a grandchild still holds the pipes: give up on them
            out, err = b"", b""
    return ProgramResult(
        returncode=proc.returncode,
        stdout=(out or b"")[:max_output],
        stderr=(err or b"")[:STDERR_CAP],
        truncated=len(out or b"") > max_output,
        timed_out=timed_out,
    )


def _collect(proc: subprocess.Popen[bytes], *, timeout: float, max_output: int, stdin: bytes | None) -> ProgramResult:
    """Read stdout and stderr together until both close, the deadline passes, or it floods."""
    import selectors

    deadline = time.monotonic() + timeout
    out = bytearray()
    err = bytearray()
    discarded = 0
    truncated = timed_out = killed = False
    pending = memoryview(stdin or b"")
    with selectors.DefaultSelector() as selector:
        assert proc.stdout is not None and proc.stderr is not None
        selector.register(proc.stdout, selectors.EVENT_READ, "out")
        selector.register(proc.stderr, selectors.EVENT_READ, "err")
        if proc.stdin is not None:
            os.set_blocking(proc.stdin.fileno(), False)
            if pending:
                selector.register(proc.stdin, selectors.EVENT_WRITE, "in")
            else:
                proc.stdin.close()
        while selector.get_map():
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                timed_out = True
                break
            for key, _ in selector.select(remaining):
                stream = key.fileobj
                if key.data == "in":
                    try:
                        written = os.write(stream.fileno(), pending[:_CHUNK])  # type: ignore[union-attr]
                        pending = pending[written:]
                    except BlockingIOError:
                        continue
                    except (BrokenPipeError, OSError):
                        pending = pending[:0]
                    if not pending:
                        selector.unregister(stream)
                        stream.close()  # type: ignore[union-attr]
                    continue
                chunk = os.read(stream.fileno(), _CHUNK)  # type: ignore[union-attr]
                if not chunk:
                    selector.unregister(stream)
                    continue
                if key.data == "err":
                    err += chunk[: max(0, STDERR_CAP - len(err))]
                    continue
                room = max_output - len(out)
                out += chunk[:room]
                if len(chunk) > room:
                    truncated = True
                    discarded += len(chunk) - room
                    if discarded > FLOOD_SLACK:
                        killed = True
                        break
            if killed:
                break
        if timed_out or killed:
            _kill_group(proc)
    for stream in (proc.stdout, proc.stderr, proc.stdin):
        if stream is not None and not stream.closed:
            stream.close()
    if not (timed_out or killed):
        try:
            proc.wait(timeout=max(0.0, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:  # closed its output but kept running
            timed_out = True
            _kill_group(proc)
    try:
        returncode: int | None = proc.wait(timeout=5)
    except subprocess.TimeoutExpired:  # unkillable (stuck in the kernel): leave it, report it
        returncode = None
    return ProgramResult(
        returncode=returncode,
        stdout=bytes(out),
        stderr=bytes(err),
        truncated=truncated,
        timed_out=timed_out,
    )
