"""command.output in a real agent (--dry-run) on a real broker: hostile programs leave it unaffected.

A program that hangs, floods, fails or prints non-UTF-8 publishes nothing and is named once in the
log with its reason, while a good program sensor and a built-in sensor keep publishing, and no
stopped program is left running.
"""

from __future__ import annotations

import json
from pathlib import Path

from tests.support.files import write

BASE = "pilot/progrig"


def _script(folder: Path, name: str, body: str) -> str:
    path = folder / name
    path.write_text("#!/bin/sh\n" + body + "\n")
    path.chmod(0o755)
    return str(path)


def _running(marker: str) -> list[int]:
    """Processes whose command line holds `marker`."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            cmdline = (entry / "cmdline").read_bytes()
        except OSError:
            continue
        if marker.encode() in cmdline:
            found.append(int(entry.name))
    return found


def test_hostile_programs_give_no_reading_and_leave_the_agent_unaffected(broker, watcher, run_agent, tmp_path):
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    counter = tmp_path / "count"
    counter.write_text("0")
    good = _script(bin_dir, "good", f"n=$(($(cat {counter}) + 1)); echo $n > {counter}; echo $n")
    status = _script(bin_dir, "status", 'echo \'{"backup": {"age_h": 7, "ok": true}}\'')
    hang = _script(bin_dir, "hang-forever", "echo 1; sleep 600; echo never")  # sh stays, with its path
    failing = _script(bin_dir, "failing", "echo 5; echo 'no such sensor' >&2; exit 4")
    binary = _script(bin_dir, "binary", "printf '4\\3772\\n'")
    profile = write(
        tmp_path,
        "programs.yaml",
        f"""\
pilot: 1
device: {{id: progrig, name: Program sensors}}
sensors:
  uptime: {{probe: system.uptime, every: 1s}}
  runs: {{probe: command.output, every: 1s, args: {{argv: [{good}], every: 1s}}}}
  backup_age: {{probe: command.output, every: 1s, args: {{argv: [{status}], parse: json, json_path: backup.age_h}}}}
  backup_ok: {{probe: command.output, platform: binary_sensor, every: 1s,
               args: {{argv: [{status}], parse: bool, json_path: backup.ok}}}}
  hang: {{probe: command.output, every: 1s, args: {{argv: [{hang}], timeout: 1s, every: 1s}}}}
  flood: {{probe: command.output, every: 1s, args: {{argv: [/usr/bin/yes, "1"], max_output: 1000, every: 1s}}}}
  failing: {{probe: command.output, every: 1s, args: {{argv: [{failing}], every: 1s}}}}
  binary: {{probe: command.output, every: 1s, args: {{argv: [{binary}], every: 1s}}}}
""",
    )
    agent = run_agent(profile, broker.port, "--dry-run", "--log-format", "json")

    # the good program runs again and again while the hanging one is stopped at each turn
    got = watcher.wait_for(lambda m: m.topic == f"{BASE}/state/runs" and int(m.payload) >= 4, timeout=60)
    assert got is not None, agent.tail()
    assert watcher.wait_for(lambda m: m.topic == f"{BASE}/state/backup_age", timeout=10).payload == b"7"
    assert watcher.wait_for(lambda m: m.topic == f"{BASE}/state/backup_ok", timeout=10).payload == b"ON"
    assert len({m.payload for m in watcher.on(f"{BASE}/state/uptime")}) >= 3  # the loop itself never waited

    # each hostile program: nothing published, one line naming it and why
    for sensor in ("hang", "flood", "failing", "binary"):
        assert watcher.on(f"{BASE}/state/{sensor}") == [], sensor
    reasons = {
        hang: "did not finish in time and was stopped",
        "/usr/bin/yes 1": "wrote more than 1000 bytes",
        failing: "exited with status 4: no such sensor",
        binary: "the output is not UTF-8 (byte 1)",
    }
    for program, reason in reasons.items():
        lines = [r["msg"] for r in agent.lines(f"command.output {program}")]
        assert len(lines) == 1, (program, lines, agent.tail())
        assert lines[0].endswith(f"no reading: {reason}"), lines[0]

    assert agent.running(), agent.tail()
    assert len(_running(hang)) <= 1  # at most the turn now running: every stopped one was killed
    discovery = json.loads(
        watcher.wait_for(lambda m: m.topic == "homeassistant/device/progrig/config", timeout=10).payload
    )
    assert discovery["components"]["pilot_progrig_backup_ok"]["platform"] == "binary_sensor"
    agent.stop()
    assert _running(hang) == []


def test_unit_and_volume_commands_in_dry_run_show_the_exact_call_and_run_nothing(broker, watcher, run_agent, tmp_path):
    import shutil
    import time

    import pytest

    if not (shutil.which("systemctl") and shutil.which("pactl")):
        pytest.skip("systemctl and pactl are needed for these commands to be available")
    runtime = tmp_path / "runtime"  # a user session without PipeWire: pactl is the tool
    runtime.mkdir()
    profile = write(
        tmp_path,
        "units.yaml",
        """\
pilot: 1
device: {id: progrig, name: Program sensors}
commands:
  restart_backup: {action: systemd.restart, args: {unit: backup.service}, platform: button}
  volume: {action: audio.set_volume, platform: number, min: 0, max: 100}
""",
    )
    record = tmp_path / "calls.jsonl"
    env = {"PILOT_SYSTEM_RECORD": str(record), "XDG_RUNTIME_DIR": str(runtime), "HOME": str(tmp_path)}
    started = time.monotonic()
    agent = run_agent(profile, broker.port, "--dry-run", env=env)
    assert watcher.wait_for(
        lambda m: m.topic == f"{BASE}/availability" and m.payload == b"online", timeout=20, since=started
    ), agent.tail()
    time.sleep(0.3)  # the agent subscribes before `online`; slack for the watcher

    def press(command: str, payload: str) -> dict:
        sent = time.monotonic()
        watcher.publish(f"{BASE}/cmd/{command}/set", payload)
        got = watcher.wait_for(lambda m: m.topic == f"{BASE}/cmd/{command}/result", timeout=10, since=sent)
        assert got is not None, agent.tail()
        return json.loads(got.payload)

    body = press("restart_backup", "PRESS")
    assert body["status"] == "dry_run", body
    assert body["calls"] == [
        {"kind": "exec", "argv": ["systemctl", "--no-ask-password", "restart", "--", "backup.service"], "timeout": 90}
    ]
    body = press("volume", "37")
    assert body["status"] == "dry_run", body
    assert [c["argv"] for c in body["calls"]] == [["pactl", "set-sink-volume", "@DEFAULT_SINK@", "37%"]]
    body = press("volume", "3e1")  # a number all the same: argv holds the percent Pilot formats, not the text
    assert [c["argv"][-1] for c in body["calls"]] == ["30%"]
    hostile_sent = time.monotonic()
    for hostile in ("101", "-1", "37; reboot", "--help", "\u0000", "nan"):
        watcher.publish(f"{BASE}/cmd/volume/set", hostile)  # refused by the guards (answers limited to 1/s)
    watcher.publish(f"{BASE}/cmd/volume/set", "50")  # processed after them, in order
    done = watcher.wait_for(
        lambda m: m.topic == f"{BASE}/cmd/volume/result" and json.loads(m.payload)["status"] == "dry_run",
        timeout=10,
        since=hostile_sent,
    )
    assert done is not None, agent.tail()
    answers = [json.loads(m.payload) for m in watcher.on(f"{BASE}/cmd/volume/result", since=hostile_sent)]
    assert [a["status"] for a in answers].count("dry_run") == 1, answers
    planned = [line.split("(mqtt): ", 1)[1] for line in agent.output().splitlines() if "dry-run volume" in line]
    assert planned == [f"pactl set-sink-volume @DEFAULT_SINK@ {v}%" for v in (37, 30, 50)]
    assert not record.exists() or record.read_text() == ""  # dry-run: nothing reached the System


def test_run_once_publishes_a_program_sensors_first_answer(broker, watcher, run_agent, tmp_path):
    program = _script(tmp_path, "answer", "sleep 3; echo 42")  # slower than --once's first second
    profile = write(
        tmp_path,
        "once.yaml",
        f"pilot: 1\ndevice: {{id: progrig, name: Program sensors}}\nsensors:\n"
        f"  answer: {{probe: command.output, args: {{argv: [{program}], timeout: 10s}}}}\n",
    )
    agent = run_agent(profile, broker.port, "--once", "--dry-run")
    assert agent.wait(60) == 0, agent.tail()
    got = watcher.wait_for(lambda m: m.topic == f"{BASE}/state/answer", timeout=10)
    assert got is not None and got.payload == b"42", agent.tail()
