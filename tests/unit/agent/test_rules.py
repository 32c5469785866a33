"""The rule engine on a fake clock: holds, hysteresis, cooldowns, missing inputs, hostile values."""

from __future__ import annotations

import logging
import math
import re
from pathlib import Path

from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from pilot import expressions
from pilot.agent.evaluator import Evaluator, History
from pilot.agent.rules import RuleEngine
from pilot.plan import Rule
from tests.support.profiles import compile_text
from tests.unit.profile.test_expressions import EXPRESSIONS, SENSORS


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def engine(*rules: Rule):
    clock = Clock()
    events: list[tuple[str, str, float]] = []
    wakes: list[float] = []
    ev = Evaluator(History({}), clock=clock)
    eng = RuleEngine(
        rules,
        ev,
        lambda r: events.append(("fire", r.id, clock.now)),
        lambda r: events.append(("clear", r.id, clock.now)),
        wakes.append,
        clock,
    )
    return eng, clock, events, wakes


def rule(**kw) -> Rule:
    kw.setdefault("do", ())
    kw.setdefault("inputs", ("temp",))
    return Rule(id=kw.pop("id", "hot"), **kw)


def test_fires_only_after_the_condition_held_for_the_whole_time():
    eng, clock, events, wakes = engine(rule(when="temp > 90", hold=120))
    eng.on_change(["temp"], {"temp": 95})
    assert events == [] and wakes == [1120.0]
    clock.now = 1060
    eng.on_change(["temp"], {"temp": 80})  # dipped: the hold starts over
    clock.now = 1070
    eng.on_change(["temp"], {"temp": 96})
    clock.now = 1180
    eng.poll({"temp": 96})
    assert events == []
    clock.now = 1190
    eng.poll({"temp": 96})  # no input changed, but the hold completed: fires on time
    assert events == [("fire", "hot", 1190)]
    clock.now = 1300
    eng.on_change(["temp"], {"temp": 99})
    assert events == [("fire", "hot", 1190)]  # fires once per activation, not on every reading


def test_hysteresis_clear_condition():
    eng, clock, events, _ = engine(rule(when="temp > 90", clear="temp < 70"))
    eng.on_change(["temp"], {"temp": 91})
    eng.on_change(["temp"], {"temp": 80})  # below `when` but above `clear`: stays active
    assert [e[0] for e in events] == ["fire"]
    eng.on_change(["temp"], {"temp": 69})
    assert [e[0] for e in events] == ["fire", "clear"]
    eng.on_change(["temp"], {"temp": 91})
    assert [e[0] for e in events] == ["fire", "clear", "fire"]


def test_without_clear_the_rule_clears_when_the_condition_ends():
    eng, clock, events, _ = engine(rule(when="temp > 90"))
    eng.on_change(["temp"], {"temp": 91})
    eng.on_change(["temp"], {"temp": 90})
    assert [e[0] for e in events] == ["fire", "clear"]


def test_cooldown_between_firings():
    eng, clock, events, _ = engine(rule(when="temp > 90", cooldown=600))
    eng.on_change(["temp"], {"temp": 91})
    eng.on_change(["temp"], {"temp": 50})
    clock.now += 60
    eng.on_change(["temp"], {"temp": 91})
    assert [e[0] for e in events] == ["fire", "clear"]
    clock.now += 600
    eng.on_change(["temp"], {"temp": 92})
    assert [e[0] for e in events] == ["fire", "clear", "fire"]


def test_missing_inputs_are_simply_not_true_and_errors_are_counted_once():
    eng, clock, events, _ = engine(rule(when="temp / load > 1", inputs=("temp", "load")))
    eng.on_change(["temp"], {"temp": 91})  # load has no value yet
    assert events == []
    for _ in range(5):
        eng.on_change(["load"], {"temp": 91, "load": 0})  # division by zero
    state = eng.states["hot"]
    assert events == [] and state.errors == 5 and len(state.error_kinds) == 1
    eng.on_change(["temp"], {"temp": math.nan, "load": 1})  # NaN input: missing
    assert events == []


def test_only_rules_whose_inputs_changed_are_evaluated():
    calls = []
    eng, clock, events, _ = engine(
        rule(id="a", when="temp > 1", inputs=("temp",)), rule(id="b", when="load > 1", inputs=("load",))
    )
    original = eng._evaluate
    eng._evaluate = lambda state, values: (calls.append(state.rule.id), original(state, values))
    eng.on_change(["temp"], {"temp": 5, "load": 5})
    assert calls == ["a"]


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    EXPRESSIONS,
    st.dictionaries(
        st.sampled_from(sorted(SENSORS)),
        st.one_of(
            st.floats(allow_nan=True, allow_infinity=True),
            st.integers(-(10**6), 10**6),
            st.booleans(),
            st.sampled_from(["on", "off", ""]),
        ),
    ),
)
def test_random_allowed_expressions_never_raise_out_of_the_engine(generated, values):
    text, names = generated
    assume(not expressions.check(text, SENSORS).errors)
    eng, clock, events, _ = engine(rule(when=text, inputs=tuple(sorted(names))))
    eng.on_change(list(names), values)  # must not raise, whatever the values
    eng.poll(values)


def test_window_functions_read_history_while_the_same_sensor_is_used_as_a_value():
    clock = Clock()
    ev = Evaluator(History({"cpu": 300}), clock=clock)
    for i, v in enumerate([10, 20, 30, 40]):
        clock.now = 1000 + i * 60
        ev.history.add("cpu", v, clock.now)
    assert ev.evaluate('cpu > 35 and avg(cpu, "5m") == 25', {"cpu": 40}) is True
    assert ev.evaluate('max_over(cpu, "2m")', {"cpu": 40}) == 40
    assert ev.evaluate('rate(cpu, "5m")', {"cpu": 40}) == 30 / 180


def test_each_distinct_evaluation_error_is_logged_once_and_counted_every_time(caplog):
    eng, clock, events, _ = engine(rule(when="temp / load > 1", inputs=("temp", "load")))
    with caplog.at_level(logging.WARNING, logger="pilot.rules"):
        for _ in range(3):
            eng.on_change(["load"], {"temp": 1, "load": 0})  # ZeroDivisionError
        for _ in range(3):
            eng.on_change(["load"], {"temp": 1, "load": "x"})  # TypeError
    assert eng.states["hot"].errors == 6
    assert [r.getMessage().split(":")[0] for r in caplog.records] == ["rule hot", "rule hot"]
    assert "ZeroDivisionError" in caplog.records[0].getMessage() and "TypeError" in caplog.records[1].getMessage()


def test_history_is_kept_only_for_windowed_sensors_and_only_as_long_as_the_longest_window():
    history = History({"cpu": 300})
    for t in range(0, 1000, 10):
        history.add("cpu", t, float(t))
        history.add("load", t, float(t))  # no expression reads a window of load
    assert history.window("load", 10_000, 990.0) == []
    kept = history.window("cpu", 10_000, 990.0)
    assert [t for t, _ in kept] == [float(t) for t in range(690, 1000, 10)]  # 990 - 300 = 690 and newer


def test_history_keeps_at_most_ten_thousand_samples_per_sensor():
    history = History({"cpu": 10**9})  # a window far longer than 10,000 readings
    for t in range(12_000):
        history.add("cpu", t, float(t))
    kept = history.window("cpu", 10**9, 12_000.0)
    assert len(kept) == 10_000 and kept[0] == (2000.0, 2000.0) and kept[-1] == (11_999.0, 11_999.0)


def test_the_example_in_rules_md_validates_and_means_what_its_comments_say():
    text = (Path(__file__).resolve().parents[3] / "docs" / "rules.md").read_text(encoding="utf-8")
    example = re.search(r"```yaml\n(.*?)```", text, re.S).group(1)
    plan = compile_text("pilot: 1\ndevice: {id: d, name: D}\n" + example)
    overheat = plan.rules[0]
    assert (overheat.hold, overheat.cooldown, overheat.clear) == (120.0, 1800.0, "cpu_temp < 75")
    assert overheat.state_topic == "pilot/d/rule/overheat/state" and overheat.entity.platform == "binary_sensor"
    assert [(s.kind, s.command, s.value) for s in overheat.do] == [
        ("command", "cpu_max_ghz", 1.6),
        ("notify", None, None),
    ]
    off, backup = plan.schedules
    assert (off.cron, off.timezone) == ("30 23 * * 1-5", "Europe/Berlin")
    assert (backup.every, backup.jitter) == (3600.0, 300.0)
