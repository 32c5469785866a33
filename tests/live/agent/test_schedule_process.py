"""Schedules as the processes see them: `pilot plan` prints each schedule's next three fire times, and
the agent loads APScheduler (about 5 MB) only when the profile has schedules."""

from __future__ import annotations

import re
import subprocess
import sys
from datetime import datetime
from zoneinfo import ZoneInfo

import pytest

from testkit.agent import pilot_env
from tests.support.files import write

PROFILE = """\
pilot: 1
device: {{id: schedrig, name: Schedules}}
sensors:
  cpu: {{probe: cpu.percent, every: 10s}}
{schedules}"""
SCHEDULES = """schedules:
  nightly: {cron: "30 23 * * 1-5", timezone: Europe/Berlin, do: [{publish: {topic: x/y, payload: "1"}}]}
"""


def test_plan_prints_the_next_three_fire_times_of_each_schedule(tmp_path):
    profile = write(tmp_path, "sched.yaml", PROFILE.format(schedules=SCHEDULES))
    plan = subprocess.run(
        [sys.executable, "-m", "pilot", "plan", str(profile)],
        env=pilot_env(),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert plan.returncode == 0, plan.stderr
    line = next(x for x in plan.stdout.splitlines() if x.strip().startswith("nightly:"))
    times = [datetime.fromisoformat(t) for t in re.search(r"next: (.*)$", line).group(1).split(", ")]
    assert len(times) == 3 and times == sorted(times) and len(set(times)) == 3, line
    berlin = [t.astimezone(ZoneInfo("Europe/Berlin")) for t in times]
    assert all((t.hour, t.minute) == (23, 30) and t.weekday() < 5 for t in berlin), line


@pytest.mark.parametrize("schedules, loaded", [("", False), (SCHEDULES, True)], ids=["no-schedules", "schedules"])
def test_the_agent_loads_apscheduler_only_for_a_profile_with_schedules(broker, tmp_path, run_agent, schedules, loaded):
    profile = write(tmp_path, "sched.yaml", PROFILE.format(schedules=schedules))
    agent = run_agent(profile, broker.port, "--once", "--dry-run", env={"PYTHONPROFILEIMPORTTIME": "1"})
    assert agent.wait(60) == 0, agent.tail()
    imported = {
        line.rsplit("|", 1)[1].strip() for line in agent.output().splitlines() if line.startswith("import time:")
    }
    assert "pilot.agent.runtime" in imported, "the import log was not captured"
    assert any(m.split(".")[0] == "apscheduler" for m in imported) is loaded
