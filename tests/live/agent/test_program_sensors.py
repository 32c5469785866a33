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
