"""updates.pending: apt and dnf answers (recorded where possible), security counts, at most hourly."""

from __future__ import annotations

import logging
import os
import re
import shutil
from pathlib import Path

import pytest

from pilot.probes import ProbeContext, ProbeUnavailable
from pilot.probes import updates as probe
from pilot.probes._background import Worker
from pilot.probes._programs import ProgramResult, run_program
from pilot.registry import PROBES

FIXTURES = Path(__file__).resolve().parents[2] / "fixtures" / "updates"
ENTRY = PROBES.get("updates.pending")


def recorded(stem: str, stdout: str | None = None) -> ProgramResult:
    def part(suffix: str) -> bytes:
        path = FIXTURES / f"{stem}{suffix}"
        return path.read_bytes() if path.exists() else b""

    rc = part(".rc")
    return ProgramResult(returncode=int(rc) if rc else 0, stdout=part(stdout or ".txt"), stderr=part(".stderr"))


class Replay:
    def __init__(self, stem: str) -> None:
        self.stem = stem
        self.calls: list[list[str]] = []

    def __call__(self, argv, **kwargs) -> ProgramResult:
        self.calls.append(list(argv))
        return recorded(self.stem)


@pytest.mark.parametrize(
    ("stem", "security", "count"),
    [
        ("apt-debian12", False, 91),  # recorded: 91 packages to upgrade
        ("apt-debian12", True, 0),  # none of them from the security suite
        ("apt-none", False, 0),
        ("apt-security", False, 5),
        ("apt-security", True, 4),  # tzdata comes from stable-updates
        ("ubuntu-security", True, 2),  # curl and libcurl4 are in jammy-security as well
    ],
)
def test_apt_counts(stem: str, security: bool, count: int) -> None:
    runner = Replay(stem)
    assert probe.pending("apt", security, runner) == count
    assert runner.calls == [["apt-get", "-s", "-o", "Debug::NoLocking=1", "upgrade"]]


def test_dnf_counts_package_lines_before_the_obsoleting_section() -> None:
    runner = Replay("dnf-updates")
    assert probe.pending("dnf", False, runner) == 4
    assert probe.pending("dnf", True, runner) == 4
    assert runner.calls == [["dnf", "-q", "check-update"], ["dnf", "-q", "check-update", "--security"]]


def test_dnf_exit_zero_is_no_update() -> None:
    assert probe.pending("dnf", False, lambda argv, **kw: ProgramResult(0, b"", b"")) == 0


@pytest.mark.parametrize(
    ("manager", "stem", "reason"),
    [
        (
            "apt",
            "apt-broken-sources",
            "apt-get exited with status 100: E: Malformed line 1 in source list /etc/hostname",
        ),
        ("dnf", "dnf-offline", "dnf exited with status 1: Error: Failed to download metadata for repo 'updates'"),
    ],
)
def test_a_failing_package_manager_is_unavailable_with_its_error(manager: str, stem: str, reason: str) -> None:
    with pytest.raises(ProbeUnavailable) as caught:
        probe.pending(manager, False, Replay(stem))
    assert str(caught.value).startswith(reason)


@pytest.mark.skipif(shutil.which("apt-get") is None, reason="apt-get is not installed")
def test_the_real_apt_get_agrees_with_its_own_summary_line() -> None:
    """Run the real simulation; the count must equal the `N upgraded` apt prints itself."""
    result = run_program(probe.argv_for("apt", False), timeout=probe.TIMEOUT, max_output=probe.MAX_OUTPUT)
    assert result.ok, result.problem()
    summary = re.search(r"^(\d+) upgraded, (\d+) newly installed", result.text(), re.MULTILINE)
    assert summary is not None, result.text()[-500:]
    assert int(summary.group(2)) == 0  # upgrade never installs a new package
    assert probe.pending("apt", False) == int(summary.group(1))


def test_the_reader_looks_at_most_once_an_hour_on_the_worker(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setattr(probe, "pick_manager", lambda manager: "dnf")
    worker, now, runner = Worker(start=False), [0.0], Replay("dnf-updates")
    read = ENTRY.factory(ProbeContext(), runner=runner, clock=lambda: now[0], worker=worker)
    assert read() is None
    worker.run_pending()
    assert read() == 4
    now[0] = 3599
    read()
    assert worker.pending() == []
    now[0] = 3600
    read()
    assert worker.run_pending() == 1 and len(runner.calls) == 2


def test_apt_runs_again_only_when_what_its_answer_depends_on_changed(tmp_path: Path) -> None:
    status, lists = tmp_path / "status", tmp_path / "lists"
    status.write_text("Package: a\n")
    lists.mkdir()
    os.utime(lists, ns=(0, 0))  # so the next change to the folder shows whatever the clock's granularity
    runner = Replay("apt-security")
    work = probe.apt_work(False, runner, (str(status), str(lists), str(tmp_path / "absent")))
    assert work() == 5 and len(runner.calls) == 1
    assert work() == 5 and len(runner.calls) == 1  # nothing changed: no second simulation
    (lists / "deb.debian.org_dists_bookworm_InRelease").write_text("new lists")  # `apt update`
    assert work() == 5 and len(runner.calls) == 2
    os.utime(status, ns=(1, 1))  # dpkg installed or held something
    work()
    assert len(runner.calls) == 3
    (tmp_path / "absent").write_text("Package: *\nPin: release a=stable\n")  # pinning appeared
    work()
    assert len(runner.calls) == 4
    work()
    assert len(runner.calls) == 4


def test_the_apt_reader_skips_the_simulation_while_nothing_changed(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setattr(probe, "pick_manager", lambda manager: "apt")
    worker, now, runner = Worker(start=False), [0.0], Replay("apt-security")
    read = ENTRY.factory(
        ProbeContext(), runner=runner, clock=lambda: now[0], worker=worker, state_paths=(str(tmp_path),)
    )
    worker.run_pending()
    now[0] = 3600
    read()
    worker.run_pending()
    assert read() == 5 and len(runner.calls) == 1


def test_a_failure_is_one_log_line_and_no_reading(monkeypatch: pytest.MonkeyPatch, caplog) -> None:
    monkeypatch.setattr(probe, "pick_manager", lambda manager: "dnf")
    worker = Worker(start=False)
    read = ENTRY.factory(ProbeContext(), runner=Replay("dnf-offline"), worker=worker)
    with caplog.at_level(logging.WARNING, logger="pilot.probes"):
        worker.run_pending()
    assert read() is None
    (line,) = [r.getMessage() for r in caplog.records]
    assert line.startswith("probe updates.pending dnf: no reading: dnf exited with status 1: Error: Failed")


def test_more_often_than_hourly_is_refused() -> None:
    with pytest.raises(ProbeUnavailable, match="at least 1h"):
        ENTRY.factory(ProbeContext(), every="59m", worker=Worker(start=False))


def test_availability_names_the_missing_tool(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(probe, "resolve", lambda name: (None, "absent"))
    assert ENTRY.available(ProbeContext()) == "neither apt-get nor dnf is installed"
    assert ENTRY.available(ProbeContext(), manager="dnf") == "dnf is not installed"
    monkeypatch.setattr(probe, "resolve", lambda name: ("/usr/bin/dnf", None) if name == "dnf" else (None, "x"))
    assert ENTRY.available(ProbeContext()) is None
    assert probe.pick_manager("auto") == "dnf"
    with pytest.raises(ProbeUnavailable, match="apt-get is not installed"):
        ENTRY.factory(ProbeContext(), manager="apt", worker=Worker(start=False))
