"""Each guard alone, with an injected clock."""

from __future__ import annotations

import pytest

from pilot.agent import policy
from pilot.plan import Command, Entity, Policy


def command(platform="button", **extra):
    options = extra.pop("options", None)
    entity = Entity(platform=platform, unique_id="u", name="n", default_entity_id=f"{platform}.n",
                    options=options, extra=extra)
    return Command(id="c", action="power.shutdown", entity=entity, command_topic="t/set", result_topic="t/result",
                   state_topic=None)


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


@pytest.mark.parametrize("platform, extra, text, value", [
    ("button", {}, "PRESS", "PRESS"), ("button", {}, "press", None), ("switch", {}, "ON", "ON"),
    ("switch", {}, "on", None), ("number", {"min": 0.8, "max": 4.0, "step": 0.1}, "1.6", 1.6),
    ("number", {"min": 0.8, "max": 4.0, "step": 0.1}, "4.05", None),
    ("number", {"min": 0.8, "max": 4.0, "step": 0.1}, "1.65", None),
    ("number", {"min": 0, "max": 100}, "nan", None), ("number", {"min": 0, "max": 100}, "inf", None),
    ("number", {"min": 0, "max": 100}, "50", 50), ("select", {"options": ("a", "b")}, "b", "b"),
    ("select", {"options": ("a", "b")}, "c", None), ("text", {"max_length": 3}, "abc", "abc"),
    ("text", {"max_length": 3}, "abcd", None), ("text", {"pattern": "[a-z]+"}, "ab1", None),
])
def test_values_per_platform(platform, extra, text, value):
    got, reason = policy.check_value(command(platform, **extra), text)
    assert (got, reason) == ((value, None) if value is not None else (None, "bad_value"))


def test_decode_text_refuses_binary_and_control_characters():
    assert policy.decode_text(b"PRESS") == "PRESS"
    assert policy.decode_text(b"\xff") is None
    assert policy.decode_text(b"PR\x00ESS") is None


def test_cooldown_uses_the_monotonic_clock():
    now = [100.0]
    cd = policy.Cooldowns(lambda: now[0])
    assert cd.check("c", 10) is None
    cd.mark("c")
    now[0] = 109.9
    assert cd.check("c", 10) == "cooldown"
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
    now[0] = 60.0
    assert conf.press("c", 20) is True


def test_rate_limit_sliding_window():
    now = [0.0]
    rate = policy.RateLimit(2, 10, lambda: now[0])
    assert rate.allow() and rate.allow() and not rate.allow()
    now[0] = 10.0
    assert rate.allow()
    assert policy.RateLimit(None, None).allow()
