"""systemd.unit: systemctl's output as a unit state, the exact argv, strict unit names, no systemd."""

from __future__ import annotations

import json
import logging
import shutil
from pathlib import Path

import jsonschema
import pytest

from pilot.probes import ProbeContext, ProbeUnavailable
from pilot.probes import systemd as probe
from pilot.probes._background import Worker
from pilot.probes._programs import ProgramResult, run_program
from pilot.registry import PROBES

FIXTURES = Path(__file__).resolve().parents[2] / "fixtures" / "systemctl"
ENTRY = PROBES.get("systemd.unit")


def recorded(name: str, returncode: int = 0) -> ProgramResult:
    return ProgramResult(returncode=returncode, stdout=(FIXTURES / name).read_bytes(), stderr=b"")


def replay(name: str, returncode: int = 0):
    """A runner that answers every call with a recorded output and keeps the argv it was given."""
    calls: list[list[str]] = []

    def run(argv, **kwargs) -> ProgramResult:
        calls.append(list(argv))
        return recorded(name, returncode)

    run.calls = calls  # type: ignore[attr-defined]
    return run


@pytest.mark.parametrize(
    ("fixture", "state"),
    [("active-service.txt", "active"), ("failed-service.txt", "failed"), ("inactive-timer.txt", "inactive")],
)
def test_states_from_recorded_outputs(fixture: str, state: str) -> None:
    runner = replay(fixture)
    assert probe.unit_state("backup.service", runner) == state
    assert runner.calls == [
        ["systemctl", "show", "--property=LoadState,ActiveState,SubState,Result", "--", "backup.service"]
    ]


@pytest.mark.parametrize(("fixture", "load"), [("not-found.txt", "not-found"), ("masked.txt", "masked")])
def test_a_unit_that_is_not_loaded_is_unavailable(fixture: str, load: str) -> None:
    with pytest.raises(ProbeUnavailable, match=f"^unit nope.service is {load}$"):
        probe.unit_state("nope.service", replay(fixture))


def test_systemctl_failing_is_unavailable_with_its_first_error_line() -> None:
    result = ProgramResult(
        returncode=int((FIXTURES / "not-booted.rc").read_text()),
        stdout=(FIXTURES / "not-booted.stdout").read_bytes(),
        stderr=(FIXTURES / "not-booted.stderr").read_bytes(),
    )
    with pytest.raises(ProbeUnavailable) as caught:
        probe.unit_state("ssh.service", lambda argv, **kw: result)
    assert str(caught.value) == (
        "systemctl show ssh.service exited with status 1: "
        "System has not been booted with systemd as init system (PID 1). Can't operate."
    )


def test_junk_output_is_unavailable() -> None:
    junk = ProgramResult(returncode=0, stdout=b"ActiveState=exploded\n\xff\xfe", stderr=b"")
    with pytest.raises(ProbeUnavailable, match="no known ActiveState"):
        probe.unit_state("x.service", lambda argv, **kw: junk)


def test_the_unit_name_reaches_a_real_program_as_one_argument(tmp_path: Path) -> None:
    """The runner swaps systemctl for a script that records its argv exactly (one JSON list)."""
    record = tmp_path / "argv.json"
    script = tmp_path / "systemctl"
    script.write_text(
        "#!/usr/bin/python3\nimport json, sys\n"
        f"open({str(record)!r}, 'w').write(json.dumps(sys.argv[1:]))\n"
        f"sys.stdout.write(open({str(FIXTURES / 'active-service.txt')!r}).read())\n"
    )
    script.chmod(0o755)
    assert probe.unit_state("foo@x\\x2dy.service", lambda argv, **kw: run_program([str(script), *argv[1:]], **kw))
    assert json.loads(record.read_text()) == [
        "show",
        "--property=LoadState,ActiveState,SubState,Result",
        "--",
        "foo@x\\x2dy.service",
    ]


HOSTILE = [
    "backup",  # no type: systemctl would add .service, polkit would see another name
    "-H.service",
    "--host=evil.service",
    ".hidden.service",
    "a b.service",
    "a;reboot.service",
    "a/../b.service",
    "a\nb.service",
    "a.service\n",
    "a\x00.service",
    "ünïcode.service",
    "x" * 250 + ".service",
    "x.service.exe",
    "x.sh",
    "",
]


@pytest.mark.parametrize("name", HOSTILE)
def test_names_that_are_not_plain_unit_names_are_refused(name: str) -> None:
    with pytest.raises(ValueError, match="is not a unit name"):
        probe.check_unit(name)
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate({"unit": name}, ENTRY.params)
    assert "is not a unit name" in (ENTRY.available(ProbeContext(), unit=name) or "")
    with pytest.raises(ProbeUnavailable, match="is not a unit name"):
        ENTRY.factory(ProbeContext(), unit=name, worker=Worker(start=False))


@pytest.mark.parametrize(
    "name", ["backup.service", "getty@tty1.service", "fstrim.timer", "home.mount", "a:b_c-d.socket"]
)
def test_plain_unit_names_pass(name: str) -> None:
    assert probe.check_unit(name) == name
    jsonschema.validate({"unit": name}, ENTRY.params)


@pytest.fixture
def booted(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """As on a host booted with systemd (/run/systemd/system exists)."""
    (tmp_path / "run-systemd-system").mkdir()
    monkeypatch.setattr(probe, "SYSTEMD_RUNTIME", str(tmp_path / "run-systemd-system"))


def test_the_reader_never_runs_systemctl_itself_and_refreshes_on_the_worker(booted) -> None:
    worker = Worker(start=False)
    now = [0.0]
    runner = replay("active-service.txt")
    read = ENTRY.factory(
        ProbeContext(),
        unit="backup.service",
        every="10s",
        via="systemctl",
        runner=runner,
        clock=lambda: now[0],
        worker=worker,
    )
    assert read() is None and runner.calls == []
    worker.run_pending()
    assert read() == "active" and len(runner.calls) == 1
    now[0] = 10
    assert read() == "active"
    worker.run_pending()
    assert len(runner.calls) == 2


def test_a_missing_unit_reads_as_unavailable_with_one_log_line(booted, caplog: pytest.LogCaptureFixture) -> None:
    worker = Worker(start=False)
    read = ENTRY.factory(
        ProbeContext(), unit="nope.service", via="systemctl", runner=replay("not-found.txt"), worker=worker
    )
    with caplog.at_level(logging.WARNING, logger="pilot.probes"):
        worker.run_pending()
        assert read() is None
    assert [r.getMessage() for r in caplog.records] == [
        "probe systemd.unit nope.service (systemctl): no reading: unit nope.service is not-found"
    ]


def test_availability_says_when_systemd_is_not_running(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(probe, "SYSTEMD_RUNTIME", str(tmp_path / "absent"))
    assert ENTRY.available(ProbeContext(), unit="backup.service") == (
        "systemd is not running here (this system was not booted with systemd)"
    )
    (tmp_path / "present").mkdir()
    monkeypatch.setattr(probe, "SYSTEMD_RUNTIME", str(tmp_path / "present"))
    monkeypatch.setattr(probe, "resolve", lambda name: ("/usr/bin/systemctl", None))
    assert ENTRY.available(ProbeContext(), unit="backup.service", via="systemctl") is None
    monkeypatch.setattr(probe, "resolve", lambda name: (None, "absent"))
    assert ENTRY.available(ProbeContext(), unit="backup.service", via="systemctl") == "systemctl is not installed"


def test_every_below_a_second_is_refused() -> None:
    with pytest.raises(ProbeUnavailable, match="at least 1s"):
        ENTRY.factory(ProbeContext(), unit="a.service", every="100ms", worker=Worker(start=False))


# ------------------------------------------------------------------ over D-Bus, against a systemd-like peer


@pytest.mark.parametrize(
    ("unit", "path"),
    [
        ("dbus.service", "/org/freedesktop/systemd1/unit/dbus_2eservice"),
        ("getty@tty1.service", "/org/freedesktop/systemd1/unit/getty_40tty1_2eservice"),
        ("1x-y.timer", "/org/freedesktop/systemd1/unit/_31x_2dy_2etimer"),
    ],
)
def test_unit_object_paths_use_sd_bus_escaping(unit: str, path: str) -> None:
    assert probe.unit_path(unit) == path


@pytest.fixture
def systemd_bus():
    """A private system-like bus with an org.freedesktop.systemd1 peer knowing three units."""
    from pilot.probes import _dbus
    from testkit.dbus import NO_REPLY, DBusDaemon, Peer

    if not shutil.which("dbus-daemon"):
        pytest.skip("dbus-daemon is not installed")
    with DBusDaemon() as daemon:
        peer = Peer(daemon.address, ("org.freedesktop.systemd1",))
        units = {"backup.service": ("loaded", "failed"), "nope.service": ("not-found", "inactive")}
        for name, (load, active) in units.items():
            peer.properties[(probe.unit_path(name), probe.UNIT_INTERFACE)] = {
                "LoadState": ("s", load),
                "ActiveState": ("s", active),
            }
        peer.properties[(probe.unit_path("hung.service"), probe.UNIT_INTERFACE)] = {
            "LoadState": ("s", lambda: NO_REPLY),
            "ActiveState": ("s", "active"),
        }
        with peer:
            yield {"DBUS_SYSTEM_BUS_ADDRESS": daemon.address}, peer
        _dbus.close_all()


def test_states_over_dbus(systemd_bus) -> None:
    environ, peer = systemd_bus
    assert probe.unit_state_dbus("backup.service", environ) == "failed"
    with pytest.raises(ProbeUnavailable, match="^unit nope.service is not-found$"):
        probe.unit_state_dbus("nope.service", environ)
    with pytest.raises(ProbeUnavailable, match="^systemd over D-Bus: .*InvalidArgs"):
        probe.unit_state_dbus("unknown.service", environ)
    gets = [c.body for c in peer.received("Get") if c.path == probe.unit_path("backup.service")]
    assert gets == [(probe.UNIT_INTERFACE, "LoadState"), (probe.UNIT_INTERFACE, "ActiveState")]


def test_a_hung_systemd_is_unavailable_after_the_timeout_and_the_bus_stays_usable(systemd_bus) -> None:
    environ, _ = systemd_bus
    with pytest.raises(ProbeUnavailable, match="^systemd over D-Bus"):
        probe.unit_state_dbus("hung.service", environ)
    assert probe.unit_state_dbus("backup.service", environ) == "failed"


def test_auto_reads_over_dbus_where_the_system_bus_answers(systemd_bus, booted) -> None:
    environ, peer = systemd_bus
    worker = Worker(start=False)
    runner = replay("active-service.txt")
    read = ENTRY.factory(ProbeContext(), unit="backup.service", runner=runner, worker=worker, environ=environ)
    worker.run_pending()
    assert read() == "failed"  # the peer's answer, not the recorded systemctl output
    assert runner.calls == []


def test_auto_falls_back_to_systemctl_without_a_system_bus(booted, monkeypatch: pytest.MonkeyPatch) -> None:
    no_bus = {"DBUS_SYSTEM_BUS_ADDRESS": "unix:path=/nonexistent/system_bus_socket"}
    monkeypatch.setattr(probe, "resolve", lambda name: ("/usr/bin/systemctl", None))
    assert probe.choose_via("auto", no_bus) == ("systemctl", None)
    assert probe.choose_via("dbus", no_bus) == (
        None,
        "the system bus is not running (no socket at /nonexistent/system_bus_socket)",
    )
    monkeypatch.setattr(probe, "resolve", lambda name: (None, "absent"))
    assert probe.choose_via("auto", no_bus) == (None, "systemctl is not installed")
