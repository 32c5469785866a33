"""`optional: true` on a command: left out where its action cannot work on this host, like an optional
sensor without its probe; a command that is not optional is kept (it answers `unavailable` when pressed)."""

from __future__ import annotations

import logging

from pilot.actions import ActionContext
from pilot.agent.runtime import without_unusable_commands
from tests.support.profiles import compile_text

PROFILE = """pilot: 1
device: {name: Desk}
commands:
  lock_maybe: {action: session.lock, optional: true}
  lock_always: {action: session.lock}
  note_maybe: {action: mqtt.publish, args: {topic: pilot/x/note, payload: hi}, optional: true}
"""


def ctx(tools: set[str]) -> ActionContext:
    return ActionContext(platform="linux", environ={}, which=lambda name: f"/usr/bin/{name}" if name in tools else None)


def test_an_optional_command_whose_action_cannot_work_here_is_left_out(caplog):
    plan = compile_text(PROFILE)
    with caplog.at_level(logging.INFO, logger="pilot"):
        here = without_unusable_commands(plan, ctx(set()))
    assert [c.id for c in here.commands] == ["lock_always", "note_maybe"]
    assert [r.getMessage() for r in caplog.records] == [
        "optional command lock_maybe left out: loginctl (systemd-logind) is not installed"
    ]


def test_where_the_action_works_every_command_stays():
    plan = compile_text(PROFILE)
    here = without_unusable_commands(plan, ctx({"loginctl"}))
    assert here is plan
    assert [c.id for c in here.commands] == ["lock_maybe", "lock_always", "note_maybe"]


def test_optional_is_compiled_into_the_plan():
    plan = compile_text(PROFILE)
    assert [(c.id, c.optional) for c in plan.commands] == [
        ("lock_maybe", True),
        ("lock_always", False),
        ("note_maybe", True),
    ]
