"""A press that the guards refuse is answered, so the person who pressed sees why: `pilot send` prints
the refusal at once, and Home Assistant's audit event entity records it."""

from __future__ import annotations

import json
import subprocess
import sys
import time

from testkit.agent import pilot_env
from tests.support.files import write

PROFILE = """\
pilot: 1
device: {id: pressfb, name: Press}
commands:
  backup:
    action: process.run
    args: {argv: [/bin/true]}
    platform: button
    policy: {confirm: 10s, cooldown: 60s}
"""


def _send(profile, port, state_dir):
    argv = [
        sys.executable,
        "-m",
        "pilot",
        "send",
        str(profile),
        "backup",
        "--broker",
        f"127.0.0.1:{port}",
        "--state-dir",
        str(state_dir),
        "--timeout",
        "30",
    ]
    return subprocess.run(argv, env=pilot_env(), capture_output=True, text=True, timeout=90)


def test_a_second_press_within_the_cooldown_is_refused_at_once_and_audited(broker, watcher, run_agent, tmp_path):
    profile = write(tmp_path, "press.yaml", PROFILE)
    agent = run_agent(profile, broker.port, "--dry-run")
    assert watcher.wait_for(lambda m: m.topic == "pilot/pressfb/availability" and m.payload == b"online", timeout=20), (
        agent.tail()
    )
    first = _send(profile, broker.port, tmp_path / "send-state")
    assert first.returncode == 0, first.stderr
    assert json.loads(first.stdout)["status"] == "dry_run"
    since = time.monotonic()
    second = _send(profile, broker.port, tmp_path / "send-state")
    # the agent's own answer (a timeout would print no refusal): no stopwatch needed to tell them apart
    assert second.returncode == 1, second.stderr
    assert json.loads(second.stdout) == {**json.loads(second.stdout), "status": "rejected", "reason": "cooldown"}
    audit = watcher.wait_for(
        lambda m: m.topic == "pilot/pressfb/audit" and b"cooldown" in m.payload, timeout=20, since=since
    )
    assert audit is not None and json.loads(audit.payload)["event_type"] == "rejected"
