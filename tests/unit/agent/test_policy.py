"""Each guard alone, with an injected clock; then regressions of the chain in a CommandService
(the chain itself, row by row, is in test_guard_chain.py)."""

from __future__ import annotations

import json
import threading

import pytest

from pilot.actions._base import RecordingSystem
from pilot.agent import policy, signing
from pilot.agent.commands import CommandService
from pilot.plan import Command, Entity, Policy
from pilot.profile.loader import load_text
from tests.support.profiles import compile_text


def command(platform="button", **extra):
    options = extra.pop("options", None)
    entity = Entity(
        platform=platform, unique_id="u", name="n", default_entity_id=f"{platform}.n", options=options, extra=extra
    )
    return Command(
        id="c", action="power.shutdown", entity=entity, command_topic="t/set", result_topic="t/result", state_topic=None
    )


def test_size_and_retained():
    assert policy.check_size(b"x" * 4096, 4096) is None
    assert policy.check_size(b"x" * 4097, 4096) == "too_large"
    assert policy.check_retained(True) == "retained" and policy.check_retained(False) is None


def test_allowlist():
    c = command()
    assert policy.check_allowed(c, Policy(allow=None)) is None
    assert policy.check_allowed(c, Policy(allow=("c",))) is None
    assert policy.check_allowed(c, Policy(allow=("other",))) == "not_allowed"
    assert policy.check_allowed(None, Policy()) == "not_allowed"


@pytest.mark.parametrize(
    "platform, extra, text, value",
    [
        ("button", {}, "PRESS", "PRESS"),
        ("button", {}, " PRESS\t", "PRESS"),  # surrounding blanks are not part of the value
        ("button", {}, "press", None),
        ("switch", {}, "ON", "ON"),
        ("switch", {}, "OFF", "OFF"),
        ("switch", {}, "on", None),
        ("number", {"min": 0.8, "max": 4.0, "step": 0.1}, "1.6", 1.6),
        ("number", {"min": 0.8, "max": 4.0, "step": 0.1}, "4.05", None),
        ("number", {"min": 0.8, "max": 4.0, "step": 0.1}, "1.65", None),
        ("number", {"min": 0, "max": 100}, "nan", None),
        ("number", {"min": 0, "max": 100}, "inf", None),
        ("number", {"min": 0, "max": 100}, "50", 50),
        ("number", {"min": 0, "max": 100}, "fifty", None),
        # on the step, one outside each end; each end itself is allowed
        ("number", {"min": 1, "max": 10, "step": 1}, "0", None),
        ("number", {"min": 1, "max": 10, "step": 1}, "11", None),
        ("number", {"min": 1, "max": 10, "step": 1}, "1", 1),
        ("number", {"min": 1, "max": 10, "step": 1}, "10", 10),
        # no step: only the range counts, one end at a time
        ("number", {"min": 1, "max": 10}, "0.5", None),
        ("number", {"min": 1, "max": 10}, "10.5", None),
        ("number", {"min": 1, "max": 10}, "2.25", 2.25),
        ("number", {"max": 10}, "-1e9", -1_000_000_000),
        ("number", {"min": 1}, "1e9", 1_000_000_000),
        # steps count from min, which need not be a multiple of the step
        ("number", {"min": 0.3, "max": 10, "step": 1}, "1.3", 1.3),
        ("number", {"min": 0.3, "max": 10, "step": 1}, "1", None),
        ("number", {"min": 0.3, "max": 10, "step": 1}, "2.6", None),
        ("select", {"options": ("a", "b")}, "b", "b"),
        ("select", {"options": ("a", "b")}, "c", None),
        ("text", {"max_length": 3}, "abc", "abc"),
        ("text", {"max_length": 3}, "abcd", None),
        ("text", {}, "", ""),  # no min_length: empty text is a value
        ("text", {"min_length": 2}, "a", None),
        ("text", {"min_length": 2}, "ab", "ab"),
        ("text", {}, "x" * 255, "x" * 255),  # Home Assistant's limit is the default max_length
        ("text", {}, "x" * 256, None),
        ("text", {"max_length": 1000}, "x" * 256, None),  # and the ceiling of any max_length
        ("text", {"pattern": "[a-z]+"}, "ab1", None),
        ("text", {"pattern": "[a-z]+"}, "abc", "abc"),
        ("light", {}, "ON", None),  # a platform the guard does not know takes no value at all
    ],
)
def test_values_per_platform(platform, extra, text, value):
    got, reason = policy.check_value(command(platform, **extra), text)
    assert (got, reason) == ((value, None) if value is not None else (None, "bad_value"))
    assert type(got) is type(value)  # 50 stays an int: "50", not "50.0", reaches a program's argv


def test_decode_text_refuses_binary_and_control_characters():
    assert policy.decode_text(b"PRESS") == "PRESS"
    assert policy.decode_text("h\u00e9 \u2603".encode()) == "h\u00e9 \u2603"
    assert policy.decode_text(b"a\tb c") == "a\tb c"  # tab and space are text
    assert policy.decode_text(b"\xff") is None
    assert policy.decode_text(b"PR\x00ESS") is None
    assert policy.decode_text(b"a\nb") is None
    assert policy.decode_text(b"\x1f") is None
    assert policy.decode_text(b"\x1b[2J") is None


def test_cooldown_uses_the_monotonic_clock():
    now = [100.0]
    cd = policy.Cooldowns(lambda: now[0])
    assert cd.check("c", 10) is None
    cd.mark("c")
    now[0] = 109.9
    assert cd.check("c", 10) == "cooldown"
    assert cd.check("other", 10) is None  # per command
    assert cd.check("c", 0) is None  # no cooldown configured
    now[0] = 110.0
    assert cd.check("c", 10) is None


def test_confirm_needs_a_second_press_within_the_window():
    now = [0.0]
    conf = policy.Confirmations(lambda: now[0])
    assert conf.press("c", 20) is False
    now[0] = 19.0
    assert conf.press("c", 20) is True
    assert conf.press("c", 20) is False  # a confirmed press disarms; this one arms again (at 19)
    now[0] = 50.0
    assert conf.press("c", 20) is False  # 31 s after arming: too late, so it only arms again
    now[0] = 70.0
    assert conf.press("c", 20) is True  # exactly at the end of the window still confirms


def test_confirm_is_per_command_and_per_value():
    now = [0.0]
    conf = policy.Confirmations(lambda: now[0])
    assert conf.press("c", 20) is False
    assert conf.press("other", 20, "PRESS") is False  # another command's press confirms nothing
    assert conf.press("c", 20, "PRESS") is True  # a button's value is PRESS, the default
    assert conf.press("sw", 20, "OFF") is False
    assert conf.press("sw", 20, "ON") is False  # ON does not confirm OFF: it re-arms with ON
    assert conf.press("sw", 20, "ON") is True


def test_rate_limit_sliding_window():
    now = [0.0]
    rate = policy.RateLimit(2, 10, lambda: now[0])
    assert rate.allow() and rate.allow() and not rate.allow()
    now[0] = 10.0
    assert rate.allow()
    assert policy.RateLimit(None, None).allow()


def test_rate_limit_counts_its_own_period():
    """ "2 per 10 s" is not "2 per second": the window slides, each event leaving 10 s after it came."""
    now = [0.0]
    rate = policy.RateLimit(2, 10, lambda: now[0])
    assert rate.allow()
    now[0] = 4.0
    assert rate.allow()
    for now[0] in (4.0, 5.0, 9.99):
        assert not rate.allow()
    now[0] = 10.0  # the event at 0 has left; the one at 4 has not
    assert rate.allow()
    assert not rate.allow()
    now[0] = 14.0
    assert rate.allow()
    assert not rate.allow()


def test_rate_limit_without_a_period_counts_per_second():
    now = [0.0]
    rate = policy.RateLimit(1, None, lambda: now[0])
    assert rate.allow()
    now[0] = 0.99
    assert not rate.allow()
    now[0] = 1.0
    assert rate.allow()


def test_no_rate_limit_allows_everything():
    rate = policy.RateLimit(None, None, lambda: 0.0)
    assert all(rate.allow() for _ in range(1000))


# ------------------------------------------------------------------ the guard chain
# Regressions from a code review (675ba29): each test below failed before its fix.


class Wire(list):
    """What a CommandService publishes, as (topic, payload); an action answers from the pool's thread,
    so a test waits for that answer on a condition rather than sleeping."""

    def __init__(self) -> None:
        super().__init__()
        self.changed = threading.Condition()

    def __call__(self, topic: str, payload: str, qos: int, retain: bool) -> None:
        with self.changed:
            self.append((topic, payload))
            self.changed.notify_all()

    def wait_results(self, command: str, count: int, timeout: float = 20.0) -> list[dict]:
        with self.changed:
            assert self.changed.wait_for(lambda: len(results(self, command)) >= count, timeout), list(self)
        return results(self, command)


def service(tmp_path, text: str, guards=None, mono=None):
    """A CommandService on the profile `text`, recording actions; `guards` from a previous one on reload."""
    wire = Wire()
    clock = {} if mono is None else {"mono": mono}
    svc = CommandService(
        compile_text(text), wire, RecordingSystem(str(tmp_path / "calls.jsonl")), tmp_path, guards=guards, **clock
    )
    return svc, wire


def results(published, command):
    return [json.loads(p) for t, p in published if t.endswith(f"/cmd/{command}/result")]


COOLING = """pilot: 1
device: {id: d, name: D}
commands:
  job: {action: process.run, args: {argv: [/bin/true]}, policy: {cooldown: 1h}}
  sw: {action: process.run, args: {argv: [/bin/echo, "{value}"], value_arg: "{value}"}, platform: switch,
       policy: {confirm: 20s}}
"""


def test_a_reload_keeps_cooldowns_and_running_actions(tmp_path):
    """A reload reset what the guards remember (cooldowns, armed confirmations, running actions):
    anyone could run a command twice by making the agent reload."""
    now = [1000.0]
    old, published = service(tmp_path, COOLING, mono=lambda: now[0])
    old.handle("pilot/d/cmd/job/set", b"PRESS", False)
    assert [r["status"] for r in published.wait_results("job", 1)] == ["ok"]
    now[0] += 60
    new, published2 = service(tmp_path, COOLING, guards=old.guards, mono=lambda: now[0])
    new.handle("pilot/d/cmd/job/set", b"PRESS", False)
    assert results(published2, "job")[-1]["reason"] == "cooldown"


def test_confirmation_is_tied_to_the_value_that_armed_it(tmp_path):
    """A confirmation did not have to repeat the value that armed it: OFF armed the switch, ON ran."""
    now = [1000.0]
    svc, published = service(tmp_path, COOLING, mono=lambda: now[0])
    svc.handle("pilot/d/cmd/sw/set", b"OFF", False)
    now[0] += 1.0
    svc.handle("pilot/d/cmd/sw/set", b"ON", False)  # an action would run on the pool: none is started
    assert [r["status"] for r in results(published, "sw")] == ["armed", "armed"]
    assert not svc.guards.running and svc.guards.stats.executed == 0
    assert not (tmp_path / "calls.jsonl").exists()


def test_unsigned_rejections_are_answered_in_a_small_burst_then_once_a_second(tmp_path):
    """Every rejected unsigned command was answered, so anyone could make the agent publish as fast
    as they sent junk; rejections are now answered at most 3 in 3 s per command (and still counted).
    The burst of 3 lets a press, its confirmation and the refusal of a third press all be answered:
    with 1 a second, the cooldown refusal of a confirmed press went unanswered."""
    now = [1000.0]
    svc, published = service(tmp_path, COOLING, mono=lambda: now[0])
    for _ in range(200):
        svc.handle("pilot/d/cmd/sw/set", b"maybe", False)
    assert len(results(published, "sw")) == 3
    now[0] += 2.9
    svc.handle("pilot/d/cmd/sw/set", b"maybe", False)
    assert len(results(published, "sw")) == 3
    now[0] += 0.2  # 3.1 s after the burst, the window has moved on: three more answers
    for _ in range(50):
        svc.handle("pilot/d/cmd/sw/set", b"maybe", False)
    assert len(results(published, "sw")) == 6
    assert svc.guards.stats.rejected["bad_value"] == 251


def test_signed_command_text_with_control_characters_is_malformed(tmp_path):
    """Signed command text skipped the character checks unsigned text gets (a terminal escape went
    through); it is now held to the same characters."""
    ring = tmp_path / "ring"
    ring.write_text(signing.new_key_line("k1") + "\n")
    ring.chmod(0o600)
    text = (
        COOLING.replace(
            "commands:",
            "commands:\n  signed: {action: process.run, args: {argv: [/bin/true]}, "
            "platform: text, policy: {signed: true}}",
        )
        + f"policies: {{hmac: {{keyring: {ring}}}}}\n"
    )
    svc, published = service(tmp_path, text)
    key = signing.load_keyring(ring)["k1"]
    env = signing.sign(key, "d", "pilot/d/cmd/signed/set", "ok\x1b[2J")
    svc.handle("pilot/d/cmd/signed/set", json.dumps(env).encode(), False)
    assert results(published, "signed")[-1] == {**results(published, "signed")[-1], "reason": "malformed"}


def test_a_bad_text_pattern_is_refused_and_never_raises_at_run_time():
    """A text command's `pattern` that is not a regular expression passed validation; checking a
    value against it would have raised. It is a validation error, and a bad one that reaches the
    guard anyway only refuses the value."""
    from pilot.profile.validate import validate_document

    doc, _ = load_text(
        "p.yaml",
        b"pilot: 1\ncommands:\n  t: {action: process.run, args: {argv: [/bin/true]}, platform: text, pattern: '('}\n",
    )
    assert any("regular expression" in d.message for d in validate_document(doc))
    command = compile_text(
        "pilot: 1\ndevice: {id: d, name: D}\ncommands:\n  t: {action: process.run, "
        "args: {argv: [/bin/true]}, platform: text}\n"
    ).commands[0]
    broken = type(command.entity)(**{**command.entity.__dict__, "extra": {"pattern": "("}})
    assert policy.check_value(type(command)(**{**command.__dict__, "entity": broken}), "x") == (None, "bad_value")
