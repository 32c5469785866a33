"""`enabled: false` on a sensor or a command: still checked, never compiled, and nothing may use it.
What the console's form switch writes, and how a profile turns off something its pack declares."""

from __future__ import annotations

from pathlib import Path

from pilot.profile.validate import validate_file
from tests.support.profiles import compile_text

BASE = """pilot: 1
device: {name: Desk}
sensors:
  cpu: {probe: cpu.percent, enabled: false}
  mem: {probe: memory.used_percent}
commands:
  nap: {action: power.suspend, enabled: false}
  lock: {action: session.lock}
policies:
  allow: [nap, lock]
"""


def diagnostics(tmp_path: Path, text: str) -> list[str]:
    path = tmp_path / "p.yaml"
    path.write_text(text)
    _doc, diags = validate_file(path)
    return [d.text().replace(str(tmp_path) + "/", "") for d in diags]


def test_what_is_turned_off_is_not_in_the_plan():
    plan = compile_text(BASE)
    assert [s.id for s in plan.sensors] == ["mem"]
    assert [c.id for c in plan.commands] == ["lock"]


def test_the_hash_covers_the_switch():
    assert compile_text(BASE).profile_hash != compile_text(BASE.replace("enabled: false", "enabled: true")).profile_hash


def test_enabled_true_is_the_same_as_leaving_it_out():
    on = compile_text(BASE.replace("enabled: false", "enabled: true"))
    assert [s.id for s in on.sensors] == ["cpu", "mem"] and [c.id for c in on.commands] == ["nap", "lock"]


def test_a_turned_off_sensor_is_still_checked(tmp_path):
    text = BASE.replace("cpu: {probe: cpu.percent, enabled: false}", "cpu: {probe: cpu.percnt, enabled: false}")
    assert diagnostics(tmp_path, text) == [
        "p.yaml:4:16: error: $.sensors.cpu.probe: unknown probe 'cpu.percnt' (did you mean 'cpu.percent'?)"
    ]


def test_enabled_is_a_boolean(tmp_path):
    found = diagnostics(tmp_path, BASE.replace("enabled: false}\n  mem", "enabled: 'no'}\n  mem"))
    assert len(found) == 1 and found[0].startswith(
        "p.yaml:4:38: error: $.sensors.cpu.enabled: expected true or false"
    ), found


def test_an_expression_may_not_use_a_sensor_that_is_turned_off(tmp_path):
    text = BASE.replace("  mem:", "  hot: {expr: cpu > 90, platform: binary_sensor}\n  mem:")
    assert diagnostics(tmp_path, text) == [
        "p.yaml:5:15: error: $.sensors.hot.expr: sensor 'cpu' is turned off (`enabled: false` under `sensors`)"
    ]


def test_a_rule_may_not_run_a_command_that_is_turned_off(tmp_path):
    text = BASE + "rules:\n  tired: {when: mem > 95, do: [{command: nap}]}\n"
    assert diagnostics(tmp_path, text) == [
        "p.yaml:12:42: error: $.rules.tired.do[0].command: "
        "command 'nap' is turned off (`enabled: false` under `commands`)"
    ]


def test_an_unknown_name_still_gets_its_did_you_mean(tmp_path):
    text = BASE + "rules:\n  tired: {when: mem > 95, do: [{command: lok}]}\n"
    assert diagnostics(tmp_path, text) == [
        "p.yaml:12:42: error: $.rules.tired.do[0].command: "
        "no command 'lok' is declared under `commands` (did you mean 'lock'?)"
    ]


def test_a_profile_turns_off_what_its_pack_declares(tmp_path):
    pack = tmp_path / "base.yaml"
    pack.write_text(BASE.replace(", enabled: false", ""))
    own = tmp_path / "own.yaml"
    own.write_text(
        "pilot: 1\nextends: ./base.yaml\nsensors:\n  mem: {enabled: false}\ncommands:\n  lock: {enabled: false}\n"
    )
    _doc, diags = validate_file(own)
    assert [d.text() for d in diags] == []
    plan = compile_text(own.read_text(), folder=tmp_path, name="own2.yaml")
    assert [s.id for s in plan.sensors] == ["cpu"] and [c.id for c in plan.commands] == ["nap"]
