"""systemd.start/stop/restart: exact argv, strict unit names, and a polkit rule scoped to those units.

The rule is checked by a real JavaScript engine (node): parsed with `node --check`, then run with
a stand-in `polkit` object against the requests systemd would make, so the test proves which
(user, unit, verb) it grants, not only that the text looks right.
"""

from __future__ import annotations

import dataclasses
import json
import shutil
import subprocess
from pathlib import Path

import jsonschema
import pytest

from pilot.actions import ActionError, Call, Unsupported
from pilot.diagnostics import ERROR
from pilot.profile.validate import validate_file
from pilot.registry import ACTIONS
from pilot.service.privileges import MANAGE_UNITS, UnsafeName, render, render_polkit
from tests.support.profiles import compile_text

HEAD = "pilot: 1\ndevice: {id: box, name: Box}\ncommands:\n"
NODE = shutil.which("node")


@pytest.mark.parametrize("verb", ["start", "stop", "restart"])
def test_each_verb_plans_one_exact_systemctl_call(make_ctx, verb: str) -> None:
    calls = ACTIONS.get(f"systemd.{verb}").factory(make_ctx(tools=["systemctl"]), "PRESS", unit="backup.service")
    assert calls == [
        Call(kind="exec", argv=("systemctl", "--no-ask-password", verb, "--", "backup.service"), timeout=90)
    ]


@pytest.mark.parametrize(
    "unit", ["backup", "--force.service", "-H.service", "a b.service", "a;b.service", "a\nb.service", "x.service\n"]
)
def test_a_unit_that_is_not_a_plain_name_is_refused(make_ctx, unit: str) -> None:
    entry = ACTIONS.get("systemd.stop")
    with pytest.raises(ActionError, match="is not a unit name"):
        entry.factory(make_ctx(tools=["systemctl"]), "PRESS", unit=unit)
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate({"unit": unit}, entry.params)


def test_without_systemctl_or_off_linux_it_says_why(make_ctx) -> None:
    entry = ACTIONS.get("systemd.start")
    assert entry.available(make_ctx(tools=[])) == "systemctl is not installed"
    assert entry.available(make_ctx(tools=["systemctl"], platform="windows")) == (
        "systemd actions are not supported on windows"
    )
    with pytest.raises(Unsupported):
        entry.factory(make_ctx(tools=[]), "PRESS", unit="a.service")


# ------------------------------------------------------------------ the polkit rule

PROFILE = (
    HEAD + "  restart_backup: {action: systemd.restart, args: {unit: backup.service}, platform: button}\n"
    "  stop_backup: {action: systemd.stop, args: {unit: backup.service}, platform: button}\n"
    "  start_trim: {action: systemd.start, args: {unit: fstrim.timer}, platform: button}\n"
    "  start_getty: {action: systemd.start, args: {unit: 'getty@tty2.service'}, platform: button}\n"
    "  stop_ssh: {action: systemd.stop, args: {unit: ssh.service}, platform: button}\n"
    "  off: {action: power.shutdown, platform: button}\n"
    "policies:\n  allow: [restart_backup, stop_backup, start_trim, start_getty, off]\n"
)


def decide(rule: str, requests: list[dict], tmp_path: Path) -> list[str | None]:
    """What polkit would answer each request with this rules file (None: the rule does not say)."""
    path = tmp_path / "50-pilot.rules.js"  # node parses only .js; polkit reads any name
    path.write_text(rule)
    check = subprocess.run([NODE, "--check", str(path)], capture_output=True, text=True, timeout=60)
    assert check.returncode == 0, check.stderr
    harness = """
const vm = require("vm"), fs = require("fs");
const rules = [];
const polkit = {Result: {YES: "yes", NO: "no", AUTH_ADMIN: "auth_admin"}, addRule: (f) => rules.push(f)};
vm.runInNewContext(fs.readFileSync(process.argv[1], "utf8"), {polkit: polkit});
const answers = JSON.parse(process.argv[2]).map((r) => {
  const action = {id: r.id, lookup: (k) => r.details[k]};
  for (const rule of rules) { const v = rule(action, {user: r.user}); if (v !== undefined) return v; }
  return null;
});
console.log(JSON.stringify(answers));
"""
    run = subprocess.run(
        [NODE, "-e", harness, str(path), json.dumps(requests)], capture_output=True, text=True, timeout=60
    )
    assert run.returncode == 0, run.stderr
    return json.loads(run.stdout)


def unit_request(unit: str | None, verb: str | None, user: str = "pilot") -> dict:
    details = {k: v for k, v in (("unit", unit), ("verb", verb)) if v is not None}
    return {"id": MANAGE_UNITS, "user": user, "details": details}


@pytest.mark.skipif(NODE is None, reason="node is not installed")
def test_the_rule_grants_exactly_the_named_verbs_on_the_named_units(tmp_path: Path) -> None:
    rule = render_polkit(compile_text(PROFILE, folder=tmp_path), user="pilot")
    cases = {
        ("backup.service", "restart"): "yes",
        ("backup.service", "stop"): "yes",
        ("fstrim.timer", "start"): "yes",
        ("getty@tty2.service", "start"): "yes",
        ("backup.service", "start"): None,  # not a verb the profile uses on it
        ("fstrim.timer", "stop"): None,
        ("ssh.service", "stop"): None,  # declared, but left out of policies.allow
        ("sshd.service", "restart"): None,
        ("backup", "restart"): None,  # polkit sees full names; a short one is another string
        ("backup.service", None): None,  # no verb detail (an old systemd): never granted
        (None, None): None,
    }
    requests = [unit_request(u, v) for u, v in cases]
    assert decide(rule, requests, tmp_path) == list(cases.values())
    others = [
        unit_request("backup.service", "restart", user="mallory"),
        {"id": "org.freedesktop.systemd1.reload-daemon", "user": "pilot", "details": {}},
        {"id": "org.freedesktop.login1.power-off", "user": "pilot", "details": {}},
        {"id": "org.freedesktop.login1.power-off", "user": "mallory", "details": {}},
    ]
    assert decide(rule, others, tmp_path) == [None, None, "yes", None]


@pytest.mark.skipif(NODE is None, reason="node is not installed")
def test_a_profile_with_only_unit_commands_gets_only_the_unit_rule(tmp_path: Path) -> None:
    plan = compile_text(
        HEAD + "  restart_backup: {action: systemd.restart, args: {unit: backup.service}, platform: button}\n",
        folder=tmp_path,
    )
    rule = render_polkit(plan, user="svc_pilot")
    assert rule.count("polkit.addRule") == 1 and MANAGE_UNITS in rule
    assert "indexOf(action.id)" not in rule  # no blanket list of action ids at all
    assert decide(rule, [unit_request("backup.service", "restart", user="svc_pilot")], tmp_path) == ["yes"]
    assert "restart_backup (restart backup.service)" in rule
    assert "systemd" in render(plan, user="svc_pilot")


def test_no_unit_command_allowed_means_no_unit_rule(tmp_path: Path) -> None:
    plan = compile_text(
        HEAD + "  stop_ssh: {action: systemd.stop, args: {unit: ssh.service}, platform: button}\n"
        "  lock: {action: session.lock, platform: button}\npolicies:\n  allow: [lock]\n",
        folder=tmp_path,
    )
    rule = render_polkit(plan, user="pilot")
    assert MANAGE_UNITS not in rule and "ssh.service" not in rule


def test_a_hostile_unit_name_never_reaches_the_rule(tmp_path: Path) -> None:
    hostile = 'x.service"]]; polkit.addRule(function(){return polkit.Result.YES;}); [["'
    profile = tmp_path / "p.yaml"
    line = f"  evil: {{action: systemd.start, args: {{unit: {json.dumps(hostile)}}}, platform: button}}"
    profile.write_text(HEAD + line + "\n")
    _, diags = validate_file(profile)
    column = line.index(json.dumps(hostile)) + 1
    assert [d.text().split(": ", 1)[0] for d in diags if d.severity == ERROR] == [f"{profile}:4:{column}"]
    # and should a plan bypass the validator, the generator refuses it
    plan = compile_text(PROFILE, folder=tmp_path)
    forged = dataclasses.replace(
        plan, commands=tuple(dataclasses.replace(c, args={"unit": hostile}) for c in plan.commands)
    )
    with pytest.raises(UnsafeName, match="is not a unit name"):
        render_polkit(forged, user="pilot")
