"""Promises of docs/security.md checked in process where no other test pins them exactly."""

from __future__ import annotations

import re

from pilot.service.privileges import render_polkit
from tests.support.profiles import compile_text

HEAD = "pilot: 1\ndevice: {id: box, name: Box}\ncommands:\n"


def granted(rule: str) -> set[str]:
    """The action ids a generated polkit rule lets the service user run (its quoted strings)."""
    return set(re.findall(r'"(org\.[a-z0-9.-]+)"', rule))


def test_privileges_grant_exactly_the_logind_actions_the_profiles_commands_use(tmp_path):
    plan = compile_text(
        HEAD + "  off: {action: power.shutdown, platform: button}\n"
        "  lock: {action: session.lock, platform: button}\n"
        "  backup: {action: process.run, args: {argv: [/bin/true]}, platform: button}\n"
        "policies:\n  allow: [off, lock, backup]\n",
        folder=tmp_path,
    )
    assert granted(render_polkit(plan, user="pilot")) == {
        "org.freedesktop.login1.power-off",
        "org.freedesktop.login1.power-off-multiple-sessions",  # others logged in must not block it
        "org.freedesktop.login1.lock-sessions",
    }


def test_a_profile_whose_commands_need_no_privilege_gets_no_polkit_rule(tmp_path):
    plan = compile_text(
        HEAD + "  backup: {action: process.run, args: {argv: [/bin/true]}, platform: button}\n"
        "policies:\n  allow: [backup]\n",
        folder=tmp_path,
    )
    assert render_polkit(plan, user="pilot") == ""


def test_a_command_left_out_of_the_allowlist_is_granted_nothing(tmp_path):
    """It can never run (the allowlist refuses it on every path), so its privilege would be pure exposure."""
    plan = compile_text(
        HEAD + "  off: {action: power.shutdown, platform: button}\n"
        "  lock: {action: session.lock, platform: button}\n"
        "policies:\n  allow: [lock]\n",
        folder=tmp_path,
    )
    assert granted(render_polkit(plan, user="pilot")) == {"org.freedesktop.login1.lock-sessions"}


def test_without_an_allowlist_every_declared_command_is_granted_what_it_needs(tmp_path):
    plan = compile_text(HEAD + "  off: {action: power.shutdown, platform: button}\n", folder=tmp_path)
    assert granted(render_polkit(plan, user="pilot")) == {
        "org.freedesktop.login1.power-off",
        "org.freedesktop.login1.power-off-multiple-sessions",
    }
