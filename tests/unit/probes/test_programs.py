"""run_program against real programs: no shell, a cleared environment, deadlines and caps that hold."""

from __future__ import annotations

import os
import stat
import subprocess
import sys
import time
from pathlib import Path

import pytest

from pilot.probes._programs import FIXED_PATH, STDERR_CAP, run_program

SH = "/bin/sh"  # the tests use a shell as the *program* under test; run_program never adds one


def test_output_and_status_of_a_plain_program() -> None:
    result = run_program(["/bin/echo", "hello", "world"])
    assert result.ok
    assert result.returncode == 0
    assert result.stdout == b"hello world\n"
    assert result.problem() is None


def test_shell_syntax_reaches_the_program_literally(tmp_path: Path) -> None:
    marker = tmp_path / "touched"
    hostile = f"$(touch {marker}); `touch {marker}` | touch {marker} && touch {marker}"
    result = run_program(["/bin/echo", hostile, ";", "*"])
    assert result.stdout == (hostile + " ; *\n").encode()
    assert not marker.exists()


def test_the_environment_is_cleared_to_path_and_lang(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PILOT_SECRET_TOKEN", "hunter2")
    monkeypatch.setenv("LD_PRELOAD", "/tmp/evil.so")
    result = run_program(["/usr/bin/env"], env={"EXTRA": "1"})
    assert sorted(result.text().splitlines()) == ["EXTRA=1", "LANG=C.UTF-8", f"PATH={FIXED_PATH}"]


def test_a_bare_name_is_found_on_the_fixed_path_not_the_agents(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    fake = tmp_path / "echo"
    fake.write_text("#!/bin/sh\necho planted\n")
    fake.chmod(0o755)
    monkeypatch.setenv("PATH", f"{tmp_path}:{os.environ.get('PATH', '')}")
    result = run_program(["echo", "real"])
    assert result.stdout == b"real\n"


@pytest.mark.parametrize(
    ("argv", "reason"),
    [
        ([], "non-empty list"),
        ("/bin/echo hi", "non-empty list"),
        (["bin/echo"], "relative path"),
        (["./echo"], "relative path"),
        (["/no/such/program"], "does not exist"),
        (["no-such-program-pilot"], "is not installed"),
        (["/bin/echo", "a\x00b"], "NUL"),
        (["/bin/echo", 3], "must be text"),
    ],
)
def test_argv_that_cannot_run_is_a_clear_error_not_an_exception(argv: object, reason: str) -> None:
    result = run_program(argv)  # type: ignore[arg-type]
    assert not result.ok
    assert result.returncode is None
    assert reason in (result.error or "")
    assert result.problem() == result.error


def test_a_file_that_is_not_executable_is_refused(tmp_path: Path) -> None:
    script = tmp_path / "script"
    script.write_text("#!/bin/sh\necho hi\n")
    script.chmod(stat.S_IRUSR | stat.S_IWUSR)
    assert "is not executable" in (run_program([str(script)]).error or "")


def test_bad_environment_names_are_refused() -> None:
    assert "invalid environment variable name" in (run_program(["/bin/true"], env={"A=B": "x"}).error or "")
    assert "NUL" in (run_program(["/bin/true"], env={"A": "x\x00"}).error or "")


def test_a_program_that_hangs_is_killed_at_the_deadline_with_its_grandchildren() -> None:
    # the child starts a grandchild that holds stdout open, prints its pid, then waits
    result = run_program([SH, "-c", "sleep 60 & echo $!; wait"], timeout=0.5)
    assert result.timed_out
    assert not result.ok
    assert result.problem() == "did not finish in time and was stopped"
    grandchild = int(result.stdout.split()[0])
    deadline = time.monotonic() + 10  # SIGKILL was sent; its delivery is the kernel's, not instant
    while _process_state(grandchild) not in (None, "Z") and time.monotonic() < deadline:
        time.sleep(0.01)
    state = _process_state(grandchild)
    assert state in (None, "Z"), f"grandchild {grandchild} still {state}"


def _process_state(pid: int) -> str | None:
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except FileNotFoundError:
        return None
    return text.rsplit(")", 1)[1].split()[0]


def test_a_program_that_closes_its_output_and_keeps_running_is_stopped() -> None:
    result = run_program([SH, "-c", "exec >&- 2>&-; sleep 60"], timeout=0.5)
    assert result.timed_out
    assert result.returncode == -9


def test_a_flood_is_cut_at_max_output_and_the_program_killed() -> None:
    result = run_program(["/usr/bin/yes"], max_output=1000, timeout=30)
    assert result.truncated
    assert not result.timed_out
    assert result.stdout == b"y\n" * 500
    assert result.returncode == -9
    assert result.problem(1000) == "wrote more than 1000 bytes"


def test_a_little_more_than_max_output_is_discarded_and_the_program_exits_by_itself() -> None:
    result = run_program([SH, "-c", "head -c 3000 /dev/zero"], max_output=1000)
    assert result.truncated
    assert result.returncode == 0
    assert result.stdout == b"\x00" * 1000
    assert not result.ok


def test_stderr_is_capped() -> None:
    result = run_program([SH, "-c", "head -c 100000 /dev/zero | tr '\\0' e >&2; echo done"])
    assert result.ok
    assert result.stdout == b"done\n"
    assert result.stderr == b"e" * STDERR_CAP


def test_a_non_zero_exit_says_its_status_and_first_stderr_line() -> None:
    result = run_program([SH, "-c", "echo partial; printf '\\n  boom\\033[31m\\nsecond\\n' >&2; exit 3"])
    assert not result.ok
    assert result.returncode == 3
    assert result.stdout == b"partial\n"
    assert result.problem() == "exited with status 3: boom?[31m"


def test_death_by_a_signal_is_named() -> None:
    result = run_program([SH, "-c", "kill -TERM $$"])
    assert result.returncode == -15
    assert result.problem() == "was killed by SIGTERM"


def test_non_utf8_output_is_kept_as_bytes_and_decoded_with_replacement() -> None:
    result = run_program(["/usr/bin/printf", "ok \\377\\376 end"])
    assert result.ok
    assert result.stdout == b"ok \xff\xfe end"
    assert result.text() == "ok \ufffd\ufffd end"


def test_stdin_reaches_the_program_in_full() -> None:
    data = bytes(range(256)) * 4096  # 1 MiB: more than a pipe holds, so writing must not block reading
    result = run_program(["/bin/cat"], stdin=data, max_output=len(data))
    assert result.ok
    assert result.stdout == data


def test_a_program_that_ignores_its_stdin_does_not_hang_the_writer() -> None:
    result = run_program(["/bin/echo", "early"], stdin=b"x" * (1 << 20))
    assert result.stdout == b"early\n"
    assert result.returncode == 0


def test_out_of_range_limits_are_refused() -> None:
    assert run_program(["/bin/true"], timeout=0).error
    assert run_program(["/bin/true"], timeout=10_000).error
    assert run_program(["/bin/true"], max_output=0).error


def test_a_program_still_running_when_the_agent_exits_is_killed(tmp_path: Path) -> None:
    marker = f"pilot-exit-test-{os.getpid()}"
    code = (
        "import threading, time\n"
        "from pilot.probes._programs import run_program\n"
        f"argv = ['/bin/sh', '-c', 'sleep 600; echo', '{marker}']\n"
        "threading.Thread(target=run_program, args=(argv,), kwargs={'timeout': 300}, daemon=True).start()\n"
        "time.sleep(0.5)\n"
    )
    env = {"PYTHONPATH": str(Path(__file__).resolve().parents[3] / "engine"), "PATH": FIXED_PATH}
    subprocess.run([sys.executable, "-c", code], env=env, check=True, timeout=60)
    assert _processes_with(marker) == []


def _processes_with(marker: str) -> list[int]:
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                if marker.encode() in (entry / "cmdline").read_bytes():
                    found.append(int(entry.name))
            except OSError:
                continue
    return found


def _popen(argv: list[str]) -> subprocess.Popen:
    return subprocess.Popen(
        argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, start_new_session=True
    )


def test_the_windows_reader_keeps_the_deadline_and_the_caps() -> None:
    """The plain communicate() path used where pipes cannot be selected, driven here on Linux."""
    from pilot.probes._programs import _collect_plain

    hung = _collect_plain(_popen([SH, "-c", "sleep 60"]), timeout=0.5, max_output=100, stdin=None)
    assert hung.timed_out and not hung.ok
    capped = _collect_plain(_popen([SH, "-c", "head -c 300 /dev/zero"]), timeout=10, max_output=100, stdin=None)
    assert capped.truncated and capped.stdout == b"\x00" * 100
    echoed = _collect_plain(_popen(["/bin/cat"]), timeout=10, max_output=100, stdin=b"in")
    assert echoed.ok and echoed.stdout == b"in"


def test_no_descriptor_of_the_agent_reaches_the_program_not_even_an_inheritable_one(tmp_path: Path) -> None:
    # A C library's descriptor opened without O_CLOEXEC is inheritable; close_fds still keeps it from the
    # program (the promise os.posix_spawn could not keep on Python 3.11: no close-from file action there)
    secret = tmp_path / "secret"
    secret.write_text("the agent's")
    fd = os.open(secret, os.O_RDONLY)
    assert fd > 3  # pytest holds 0-2 and more: not a number ls's own listing descriptor could take
    try:
        os.set_inheritable(fd, True)
        result = run_program(["/bin/ls", "/proc/self/fd"])
    finally:
        os.close(fd)
    assert result.ok
    listed = set(result.text().split())
    assert str(fd) not in listed
    assert len(listed - {"0", "1", "2"}) <= 1  # stdin, stdout, stderr and the folder ls reads; nothing of the agent


def test_the_program_leads_its_own_session_and_process_group() -> None:
    result = run_program(["/bin/cat", "/proc/self/stat"])  # proc(5): pid (comm) state ppid pgrp session ...
    pid = result.text().split()[0]
    ppid, pgrp, session = result.text().rsplit(")", 1)[1].split()[1:4]
    assert int(ppid) == os.getpid()
    assert pid == pgrp == session and int(pgrp) != os.getpgrp()
