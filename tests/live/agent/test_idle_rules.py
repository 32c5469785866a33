"""A rule that can never fire here (it reads a sensor this host skips, or its step needs an action
this host lacks) is named by `pilot plan` and by `pilot run` at start, instead of passing silently."""

from __future__ import annotations

import subprocess
import sys

from testkit.agent import pilot_env
from tests.support.files import write

PROFILE = """\
pilot: 1
device: {id: idlerules, name: Idle}
sensors:
  battery: {probe: battery.level, every: 30s, optional: true}
  low: {expr: "battery < 20", platform: binary_sensor}
  cpu: {probe: cpu.percent, every: 10s}
commands:
  bright: {action: display.brightness, platform: number, min: 0, max: 100}
rules:
  save_power: {when: "low", do: [{notify: "battery low"}]}
  dim_when_busy: {when: "cpu > 1000", do: [{command: bright, value: 10}]}
  fine: {when: "cpu > 999", do: [{publish: {topic: x/y, payload: "1"}}]}
"""


def test_plan_and_run_name_the_rules_that_cannot_work_here(broker, tmp_path, run_agent):
    profile = write(tmp_path, "idle.yaml", PROFILE)
    empty_sysfs = tmp_path / "sys"
    empty_sysfs.mkdir()  # no battery and no backlight on this "machine"
    env = {"PILOT_SYSFS_ROOT": str(empty_sysfs)}
    plan = subprocess.run(
        [sys.executable, "-m", "pilot", "plan", str(profile)],
        env=pilot_env(env),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert plan.returncode == 0, plan.stderr
    expected = [
        "rule save_power can never fire here: it reads low (derived from battery, which has no value)",
        "rule dim_when_busy will fail here: its step `command: bright` needs an action this host lacks",
    ]
    for line in expected:
        assert line in plan.stdout, plan.stdout
    assert "rule fine" not in plan.stdout
    agent = run_agent(profile, broker.port, "--once", "--dry-run", env=env)
    assert agent.wait(60) == 0, agent.output()
    for line in expected:
        assert line in agent.output(), agent.output()
