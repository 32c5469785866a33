"""disk.health and friends on smartctl's JSON: recorded answers, the exit-status bit mask, sleeping disks."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import jsonschema
import pytest

from pilot.probes import ProbeContext, ProbeUnavailable
from pilot.probes import smart as probe
from pilot.probes._background import Worker
from pilot.probes._programs import ProgramResult, run_program
from pilot.registry import PROBES

FIXTURES = Path(__file__).resolve().parents[2] / "fixtures" / "smartctl"
NAMES = ("disk.health", "disk.temperature", "disk.power_on_hours", "disk.reallocated_sectors")


def answer(name: str) -> ProgramResult:
    doc = json.loads((FIXTURES / name).read_text())
    return ProgramResult(returncode=doc["smartctl"]["exit_status"], stdout=(FIXTURES / name).read_bytes(), stderr=b"")


class Replay:
    """A runner answering with recorded outputs in turn (the last one repeats), keeping each argv."""

    def __init__(self, *names: str) -> None:
        self.names = list(names)
        self.calls: list[list[str]] = []

    def __call__(self, argv, **kwargs) -> ProgramResult:
        self.calls.append(list(argv))
        name = self.names.pop(0) if len(self.names) > 1 else self.names[0]
        return answer(name)


def readers(runner, device: str = "/dev/sda", **args):
    worker, now = Worker(start=False), [0.0]
    read = {
        n: PROBES.get(n).factory(
            ProbeContext(), device=device, runner=runner, clock=lambda: now[0], worker=worker, **args
        )
        for n in NAMES
    }
    return read, worker, now


def values(read) -> tuple:
    return tuple(read[n]() for n in NAMES)


@pytest.mark.parametrize(
    ("fixture", "expected"),
    [
        ("ata-passed.json", (False, 34, 15210, 0)),
        ("ata-failing.json", (True, 41, 39871, 2048)),
        ("ata-error-log.json", (False, 29, 22004, 8)),  # exit 64: errors logged, the answer is whole
        ("nvme-passed.json", (False, 38, 4210, None)),  # NVMe keeps no reallocated-sector count
        ("nvme-critical.json", (True, 71, 28833, None)),
        ("scsi-passed.json", (False, 29, 30125, 12)),
    ],
)
def test_readings_from_smartctl_answers(fixture: str, expected: tuple) -> None:
    read, worker, _ = readers(Replay(fixture))
    assert values(read) == (None, None, None, None)  # nothing ran yet: the reads did not wait
    assert worker.run_pending() == 1  # one smartctl run serves the four probes of the disk
    assert values(read) == expected


@pytest.mark.parametrize(
    ("fixture", "reason"),
    [
        ("no-such-device.json", "smartctl /dev/sda: Smartctl open device: /dev/sda failed: No such device"),
        ("unknown-type.json", "smartctl /dev/sda: /dev/null: Unable to detect device type"),
        ("virtio-disk.json", "smartctl /dev/sda: /dev/vda: Unable to detect device type"),
        (
            "nvme-on-non-disk.json",
            "smartctl /dev/sda: Read NVMe Identify Controller failed: NVME_IOCTL_ADMIN_CMD: Inappropriate ioctl "
            "for device",
        ),
    ],
)
def test_recorded_answers_without_data_are_unavailable_with_smartctls_reason(
    fixture: str, reason: str, caplog: pytest.LogCaptureFixture
) -> None:
    read, worker, _ = readers(Replay(fixture))
    with caplog.at_level(logging.WARNING, logger="pilot.probes"):
        worker.run_pending()
    assert values(read) == (None, None, None, None)
    assert [r.getMessage() for r in caplog.records] == [f"probe disk.health /dev/sda: no reading: {reason}"]


def test_a_sleeping_disk_is_not_woken_and_keeps_its_last_reading() -> None:
    runner = Replay("ata-passed.json", "sat-on-non-disk.json")  # the real "Device is in SLEEP mode" answer
    read, worker, now = readers(runner, every="10m")
    worker.run_pending()
    assert values(read) == (False, 34, 15210, 0)
    now[0] = 600
    read["disk.health"]()
    worker.run_pending()
    assert len(runner.calls) == 2
    assert values(read) == (False, 34, 15210, 0)


def test_a_disk_asleep_from_the_start_has_no_reading_yet(caplog: pytest.LogCaptureFixture) -> None:
    read, worker, _ = readers(Replay("sat-on-non-disk.json"))
    with caplog.at_level(logging.WARNING, logger="pilot.probes"):
        worker.run_pending()
    assert values(read) == (None, None, None, None)
    assert (
        caplog.records[0]
        .getMessage()
        .endswith("no reading: /dev/sda is asleep and has not been read yet (smartctl does not wake it)")
    )


@pytest.mark.parametrize(
    ("stdout", "reason"),
    [
        (b"smartctl 6.6 2016-05-31\n=== START OF READ SMART DATA SECTION ===\n", "printed no JSON"),
        (b'{"smartctl": \xff}', "printed no JSON"),
        (b"[1, 2]", "printed JSON that is not an object"),
        (b"[" * 100000, "printed no JSON"),
        (b'{"smartctl": {"exit_status": "0"}}', "smartctl /dev/sda: exit status 0"),
        (
            b'{"smartctl": {"exit_status": 2, "messages": [{"string": "bad\\u001b[31m", "severity": "error"}]}}',
            "bad?[31m",
        ),
    ],
)
def test_junk_is_unavailable(stdout: bytes, reason: str) -> None:
    with pytest.raises(ProbeUnavailable) as caught:
        probe.parse_smartctl(stdout, "/dev/sda")
    assert reason in str(caught.value)


def test_failing_status_bit_counts_when_smart_status_is_missing() -> None:
    smart = probe.parse_smartctl(b'{"smartctl": {"exit_status": 8}, "temperature": {"current": 500}}', "/dev/sda")
    assert smart == probe.Smart(passed=False, temperature=None, power_on_hours=None, reallocated_sectors=None)


def test_the_exact_argv_reaches_a_real_program(tmp_path: Path) -> None:
    record = tmp_path / "argv.json"
    script = tmp_path / "smartctl"
    script.write_text(
        "#!/usr/bin/python3\nimport json, sys\n"
        f"open({str(record)!r}, 'w').write(json.dumps(sys.argv[1:]))\n"
        f"sys.stdout.write(open({str(FIXTURES / 'ata-passed.json')!r}).read())\n"
    )
    script.chmod(0o755)
    runner = lambda argv, **kw: run_program([str(script), *argv[1:]], **kw)
    read, worker, _ = readers(runner, device="/dev/disk/by-id/usb-WD_Elements_25A2-0:0", type="sat")
    worker.run_pending()
    assert read["disk.temperature"]() == 34
    assert json.loads(record.read_text()) == [
        "--json=c", "-H", "-A", "-n", "standby", "-d", "sat", "--", "/dev/disk/by-id/usb-WD_Elements_25A2-0:0"
    ]  # fmt: skip


@pytest.mark.parametrize(
    "device",
    ["sda", "/dev/", "/dev/../etc/shadow", "/dev/./sda", "/etc/shadow", "/dev/sda;reboot", "/dev/sd a", "/dev/sda\n",
     "/dev/-d", "-d /dev/sda", "/dev/sda\x00"],
)  # fmt: skip
def test_device_paths_that_are_not_plain_are_refused(device: str) -> None:
    for name in NAMES:
        entry = PROBES.get(name)
        with pytest.raises(jsonschema.ValidationError):
            jsonschema.validate({"device": device}, entry.params)
        assert "is not a device path" in (entry.available(ProbeContext(), device=device) or "")
        with pytest.raises(ProbeUnavailable, match="is not a device path"):
            entry.factory(ProbeContext(), device=device, worker=Worker(start=False))


@pytest.mark.parametrize("dtype", ["SAT", "sat;reboot", "-T", "sat,", "megaraid,0,1,2", "sat\n"])
def test_device_types_that_are_not_plain_are_refused(dtype: str) -> None:
    entry = PROBES.get("disk.health")
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate({"device": "/dev/sda", "type": dtype}, entry.params)
    with pytest.raises(ProbeUnavailable, match="is not a smartctl device type"):
        entry.factory(ProbeContext(), device="/dev/sda", type=dtype, worker=Worker(start=False))


def test_availability_names_what_is_missing(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    entry = PROBES.get("disk.health")
    monkeypatch.setattr(probe, "resolve", lambda name: (None, "absent"))
    assert entry.available(ProbeContext(), device="/dev/sda") == "smartctl is not installed (smartmontools)"
    monkeypatch.setattr(probe, "resolve", lambda name: ("/usr/sbin/smartctl", None))
    assert entry.available(ProbeContext(), device="/dev/disk/by-id/nope") == "/dev/disk/by-id/nope does not exist"


def test_every_below_a_minute_is_refused() -> None:
    with pytest.raises(ProbeUnavailable, match="at least 1m"):
        PROBES.get("disk.health").factory(ProbeContext(), device="/dev/sda", every="30s", worker=Worker(start=False))


@pytest.mark.parametrize("fixture", ["virtio-disk.json", "unknown-type.json"])  # exit status 1
def test_a_disk_without_smart_data_is_asked_again_at_every_not_each_minute(
    fixture: str, caplog: pytest.LogCaptureFixture
) -> None:
    runner = Replay(fixture)
    read, worker, now = readers(runner, every="10m")
    with caplog.at_level(logging.WARNING, logger="pilot.probes"):
        worker.run_pending()
        for t in (60, 120, 599):  # a failure would be retried from 60 s on
            now[0] = t
            assert values(read) == (None, None, None, None)
            assert worker.run_pending() == 0
        now[0] = 600
        read["disk.health"]()
        assert worker.run_pending() == 1
    assert len(runner.calls) == 2
    assert values(read) == (None, None, None, None)
    assert len(caplog.records) == 1  # the same answer is said once
    assert "no reading: smartctl /dev/sda: " in caplog.records[0].getMessage()
    assert caplog.records[0].getMessage().endswith("Unable to detect device type")


@pytest.mark.parametrize("fixture", ["no-such-device.json", "nvme-on-non-disk.json"])  # exit status 2
def test_a_disk_that_could_not_be_opened_is_retried_after_a_minute(fixture: str) -> None:
    runner = Replay(fixture)
    read, worker, now = readers(runner, every="10m")
    worker.run_pending()
    now[0] = 59
    read["disk.health"]()
    assert worker.run_pending() == 0
    now[0] = 60
    read["disk.health"]()
    assert worker.run_pending() == 1
    assert len(runner.calls) == 2


def test_a_disk_that_gains_its_data_reads_at_the_next_run() -> None:
    runner = Replay("virtio-disk.json", "ata-passed.json")  # e.g. a driver loaded, or the disk swapped
    read, worker, now = readers(runner, every="10m")
    worker.run_pending()
    assert values(read) == (None, None, None, None)
    now[0] = 600
    read["disk.health"]()
    worker.run_pending()
    assert values(read) == (False, 34, 15210, 0)
