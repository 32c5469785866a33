"""A `command` step of a rule or schedule goes through the guards a command from MQTT meets, except the
signature and the confirmation (the step comes from the device's own profile), and is audited with its
origin: the allowlist, the value check, the cooldown and the rate limit all still refuse it."""

from __future__ import annotations

import json
import time

from pilot.actions._base import RecordingSystem
from pilot.agent import signing
from pilot.agent.commands import CommandService
from tests.support.profiles import compile_text

PROFILE = """pilot: 1
device: {{id: d, name: D}}
commands:
  job: {{action: process.run, args: {{argv: [/bin/echo, job]}}, policy: {{cooldown: 1h}}}}
  level: {{action: process.run, args: {{argv: [/bin/echo, "{{value}}"], value_arg: "{{value}}"}}, platform: number,
          min: 0, max: 10}}
  sw: {{action: process.run, args: {{argv: [/bin/echo, "{{value}}"], value_arg: "{{value}}"}}, platform: switch,
       policy: {{confirm: 20s}}}}
  denied: {{action: process.run, args: {{argv: [/bin/echo, denied]}}}}
  signed: {{action: process.run, args: {{argv: [/bin/echo, signed]}}, policy: {{signed: true}}}}
policies:
  allow: [job, level, sw, signed]
  rate_limit: {{max: 3, per: 1m}}
  hmac: {{keyring: {ring}}}
"""


class Clock:
    def __init__(self) -> None:
        self.now = 5000.0

    def __call__(self) -> float:
        return self.now


def service(tmp_path):
    ring = tmp_path / "ring"
    ring.write_text(signing.new_key_line("k1") + "\n")
    ring.chmod(0o600)
    clock = Clock()
    published: list[tuple[str, str]] = []
    record = tmp_path / "calls.jsonl"
    svc = CommandService(
        compile_text(PROFILE.format(ring=ring)),
        lambda t, p, q, r: published.append((t, p)),
        RecordingSystem(str(record)),
        tmp_path,
        mono=clock,
    )
    return svc, published, record, clock


def settle(svc, timeout=10.0):
    """Actions run on the service's pool: wait until none is running (a predicate, not a timing)."""
    deadline = time.monotonic() + timeout
    while svc.guards.running and time.monotonic() < deadline:
        time.sleep(0.01)
    assert not svc.guards.running


def audit(published):
    return [json.loads(p) for t, p in published if t == "pilot/d/audit"]


def argvs(record):
    return [json.loads(line)["argv"] for line in record.read_text().splitlines()] if record.exists() else []


def test_a_rule_step_is_audited_with_the_rule_as_its_origin_and_a_schedule_step_with_the_schedule(tmp_path):
    svc, published, record, clock = service(tmp_path)
    svc.run_local("level", 3, "rule:overheat")
    settle(svc)
    svc.run_local("level", 4, "schedule:nightly")
    settle(svc)
    assert audit(published) == [
        {"event_type": "ok", "command": "level", "origin": "rule:overheat"},
        {"event_type": "ok", "command": "level", "origin": "schedule:nightly"},
    ]
    assert argvs(record) == [["/bin/echo", "3"], ["/bin/echo", "4"]]


def test_a_rule_cannot_run_a_command_the_allowlist_leaves_out(tmp_path):
    svc, published, record, _ = service(tmp_path)
    svc.run_local("denied", None, "rule:r")
    svc.run_local("undeclared", None, "schedule:s")
    settle(svc)
    assert audit(published) == [
        {"event_type": "rejected", "command": "denied", "origin": "rule:r", "reason": "not_allowed"},
        {"event_type": "rejected", "command": None, "origin": "schedule:s", "reason": "not_allowed"},
    ]
    assert argvs(record) == []


def test_a_rule_step_value_outside_the_command_range_is_refused(tmp_path):
    svc, published, record, _ = service(tmp_path)
    svc.run_local("level", 11, "rule:r")
    settle(svc)
    assert audit(published) == [
        {"event_type": "rejected", "command": "level", "origin": "rule:r", "reason": "bad_value"}
    ]
    assert argvs(record) == []


def test_a_rule_step_within_the_command_cooldown_is_refused_and_runs_after_it(tmp_path):
    svc, published, record, clock = service(tmp_path)
    svc.run_local("job", None, "rule:r")
    settle(svc)
    clock.now += 3599
    svc.run_local("job", None, "schedule:s")
    settle(svc)
    clock.now += 1
    svc.run_local("job", None, "schedule:s")
    settle(svc)
    assert [(e["event_type"], e["origin"], e.get("reason")) for e in audit(published)] == [
        ("ok", "rule:r", None),
        ("rejected", "schedule:s", "cooldown"),
        ("ok", "schedule:s", None),
    ]
    assert argvs(record) == [["/bin/echo", "job"], ["/bin/echo", "job"]]


def test_rule_steps_share_the_profile_rate_limit_with_commands_from_mqtt(tmp_path):
    svc, published, record, clock = service(tmp_path)
    for value in (1, 2, 3, 4):
        svc.run_local("level", value, "rule:r")
        settle(svc)
    assert [e.get("reason") for e in audit(published)] == [None, None, None, "rate_limited"]
    clock.now += 60
    svc.run_local("level", 5, "rule:r")
    settle(svc)
    assert argvs(record) == [["/bin/echo", "1"], ["/bin/echo", "2"], ["/bin/echo", "3"], ["/bin/echo", "5"]]


def test_a_rule_step_needs_no_confirmation_and_no_signature(tmp_path):
    svc, published, record, _ = service(tmp_path)
    svc.run_local("sw", "ON", "rule:r")  # from MQTT, the first press would only arm it
    settle(svc)
    svc.run_local("signed", None, "rule:r")  # from MQTT, it needs a pilot-cmd-v1 envelope
    settle(svc)
    assert [(e["command"], e["event_type"]) for e in audit(published)] == [("sw", "ok"), ("signed", "ok")]
    assert argvs(record) == [["/bin/echo", "ON"], ["/bin/echo", "signed"]]
