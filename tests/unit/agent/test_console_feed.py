"""What the agent publishes for a console: the commands, rules and schedules in `capabilities`, and
the retained `<base>/activity` topic that counts rule and schedule firings.

Clocks and the timer are injected: nothing sleeps. The Agent is built but never started (no broker);
what it would publish is recorded by replacing its session's publish.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from pilot.agent.runtime import Activity, Agent, AgentOptions
from pilot.agent.state import StateDir
from tests.support.profiles import compile_text

PROFILE = """pilot: 1
device: {id: feed, name: Feed}
sensors:
  cpu: {probe: cpu.percent, every: 30s}
commands:
  press: {action: process.run, args: {argv: [/bin/true]}}
  screen: {action: process.run, args: {argv: [/bin/echo, "{value}"], value_arg: "{value}"}, platform: switch,
           name: Screen power}
  cpu_max: {action: process.run, args: {argv: [/bin/echo, "{value}"], value_arg: "{value}"}, platform: number,
            min: 0.8, max: 4, step: 0.1, unit: GHz}
  mode: {action: process.run, args: {argv: [/bin/true]}, platform: select, options: [quiet, fast]}
  note: {action: process.run, args: {argv: [/bin/true]}, platform: text, min_length: 2, max_length: 20,
         pattern: "[a-z]*"}
  shutdown: {action: process.run, args: {argv: [/bin/true]}, policy: {signed: true, confirm: 20s}}
  hidden: {action: process.run, args: {argv: [/bin/true]}}
rules:
  hot:
    when: "cpu > 90"
    do: [{publish: {topic: "~/events", payload: "hot"}}]
    expose: true
  cpu_low: {when: "cpu < 1", do: [{publish: {topic: "~/events", payload: "idle"}}]}
schedules:
  nightly_backup: {cron: "30 23 * * *", do: [{publish: {topic: "~/events", payload: "night"}}]}
  often: {every: 5m, do: [{publish: {topic: "~/events", payload: "tick"}}]}
policies:
  allow: [press, screen, cpu_max, mode, note, shutdown]
  hmac: {keyring: /nonexistent/keyring, window: 60s}
"""


@pytest.fixture
def agent(tmp_path: Path):
    plan = compile_text(PROFILE, folder=tmp_path / "profile")
    agent = Agent(plan, AgentOptions(host="127.0.0.1", port=1, state_dir=StateDir(tmp_path / "state")))
    agent.wire = []
    agent.session.publish_result = lambda topic, payload, qos=1, retain=False: agent.wire.append(
        (topic, payload, qos, retain)
    )
    agent.session.publish_telemetry = lambda topic, payload, retain=True: None
    return agent


def test_capabilities_list_every_allowed_command_with_its_platform_fields_and_the_signed_ones(agent):
    caps = json.loads(json.dumps(agent.capabilities()))  # as published
    assert caps["commands"] == [
        {
            "id": "press",
            "platform": "button",
            "name": "Press",
            "signed": False,
            "confirm_within": None,
            "command_topic": "pilot/feed/cmd/press/set",
            "payload_press": "PRESS",
        },
        {
            "id": "screen",
            "platform": "switch",
            "name": "Screen power",
            "signed": False,
            "confirm_within": None,
            "command_topic": "pilot/feed/cmd/screen/set",
            "state_topic": "pilot/feed/cmd/screen/state",
            "payload_on": "ON",
            "payload_off": "OFF",
        },
        {
            "id": "cpu_max",
            "platform": "number",
            "name": "CPU max",
            "signed": False,
            "confirm_within": None,
            "command_topic": "pilot/feed/cmd/cpu_max/set",
            "state_topic": "pilot/feed/cmd/cpu_max/state",
            "min": 0.8,
            "max": 4,
            "step": 0.1,
            "unit": "GHz",
        },
        {
            "id": "mode",
            "platform": "select",
            "name": "Mode",
            "signed": False,
            "confirm_within": None,
            "command_topic": "pilot/feed/cmd/mode/set",
            "state_topic": "pilot/feed/cmd/mode/state",
            "options": ["quiet", "fast"],
        },
        {
            "id": "note",
            "platform": "text",
            "name": "Note",
            "signed": False,
            "confirm_within": None,
            "command_topic": "pilot/feed/cmd/note/set",
            "state_topic": "pilot/feed/cmd/note/state",
            "min_length": 2,
            "max_length": 20,
        },
        {
            "id": "shutdown",  # signed: not in Home Assistant's discovery, but a console can sign it
            "platform": "button",
            "name": "Shutdown",
            "signed": True,
            "confirm_within": 20.0,
            "command_topic": "pilot/feed/cmd/shutdown/set",
            "payload_press": "PRESS",
        },
    ]  # `hidden` is declared but not allowed: a console could only ever be told not_allowed
    assert caps["rules"] == [{"id": "hot", "name": "Hot"}, {"id": "cpu_low", "name": "CPU low"}]
    assert caps["schedules"] == [
        {"id": "nightly_backup", "name": "Nightly backup", "cron": "30 23 * * *", "every": None},
        {"id": "often", "name": "Often", "cron": None, "every": 300.0},
    ]


def test_capabilities_keep_their_earlier_keys(agent):
    caps = agent.capabilities()
    assert {"pilot_version", "profile", "profile_hash", "probes", "actions", "registry", "dry_run"} <= set(caps)


# ------------------------------------------------------------------ Activity, alone


class Clock:
    def __init__(self) -> None:
        self.wall, self.mono = 1_764_246_000.0, 100.0
        self.timers: list[tuple[float, object]] = []  # (delay asked, callback)
        self.connected = True

    def tick(self, seconds: float) -> None:
        self.wall += seconds
        self.mono += seconds


def activity(clock: Clock, wire: list) -> Activity:
    return Activity(
        "pilot/x/activity",
        lambda topic, payload: wire.append((topic, json.loads(payload))),
        lambda delay, fn: clock.timers.append((delay, fn)),
        connected=lambda: clock.connected,
        wall=lambda: clock.wall,
        mono=lambda: clock.mono,
    )


def test_nothing_is_published_while_nothing_fired():
    clock, wire = Clock(), []
    feed = activity(clock, wire)
    feed.announce()
    feed.flush()
    feed.rearm()
    assert wire == [] and clock.timers == []


def test_a_first_firing_is_published_at_once_and_later_ones_at_most_once_per_5_seconds():
    clock, wire = Clock(), []
    feed = activity(clock, wire)
    feed.fired("rule", "hot")
    assert wire == [("pilot/x/activity", {"rules": {"hot": {"last": 1764246000, "count": 1}}, "schedules": {}})]
    clock.tick(2)
    feed.fired("rule", "hot")
    clock.tick(1)
    feed.fired("schedule", "night")
    assert len(wire) == 1  # held back, coalesced
    assert [delay for delay, _ in clock.timers] == [3.0]  # one timer: 5 s after the publish
    clock.tick(2)
    clock.timers.pop()[1]()  # the timer fires
    assert wire[1:] == [
        (
            "pilot/x/activity",
            {
                "rules": {"hot": {"last": 1764246002, "count": 2}},
                "schedules": {"night": {"last": 1764246003, "count": 1}},
            },
        )
    ]
    clock.tick(5)
    feed.fired("schedule", "night")  # 5 s after the last publish: at once again
    assert wire[-1][1]["schedules"] == {"night": {"last": 1764246010, "count": 2}}
    assert len(wire) == 3 and clock.timers == []


def test_a_firing_while_disconnected_waits_for_the_next_announcement():
    clock, wire = Clock(), []
    feed = activity(clock, wire)
    clock.connected = False
    feed.fired("rule", "hot")
    assert wire == []
    clock.connected = True
    feed.announce()  # on connect
    assert wire == [("pilot/x/activity", {"rules": {"hot": {"last": 1764246000, "count": 1}}, "schedules": {}})]
    feed.announce()  # every connect republishes it (a broker that lost its retained copy)
    assert len(wire) == 2


def test_a_reload_forgets_dropped_items_and_sets_a_waiting_publish_again():
    clock, wire = Clock(), []
    feed = activity(clock, wire)
    feed.fired("rule", "hot")
    feed.fired("schedule", "night")
    clock.tick(1)
    feed.fired("rule", "gone")
    assert len(clock.timers) == 1
    clock.timers.clear()  # the ticker was cleared by the reload
    feed.keep({"hot"}, set())
    feed.rearm()
    assert [delay for delay, _ in clock.timers] == [4.0]
    clock.tick(4)
    clock.timers.pop()[1]()
    assert wire[-1][1] == {"rules": {"hot": {"last": 1764246000, "count": 1}}, "schedules": {}}


# ------------------------------------------------------------------ through the agent


def test_the_agent_counts_rule_and_schedule_firings_and_publishes_them_retained(agent):
    plan = agent.plan
    agent.announce()
    assert [t for t, *_ in agent.wire if t.endswith("/activity")] == []  # nothing fired: no publish
    agent._rule_fired(plan.rules[0])  # the session is not connected (never started): nothing yet
    assert [t for t, *_ in agent.wire if t.endswith("/activity")] == []
    agent.announce()  # the connect: published with the announcement
    [(topic, payload, qos, retain)] = [w for w in agent.wire if w[0].endswith("/activity")]
    assert (topic, qos, retain) == ("pilot/feed/activity", 1, True)
    body = json.loads(payload)
    assert list(body) == ["rules", "schedules"] and body["schedules"] == {}
    assert body["rules"]["hot"]["count"] == 1 and isinstance(body["rules"]["hot"]["last"], int)
    agent.activity._connected = lambda: True  # connected from here on
    agent._schedule_fired(plan.schedules[0])  # within 5 s of that publish: left to the timer
    assert len([w for w in agent.wire if w[0].endswith("/activity")]) == 1
    mark = len(agent.wire)
    agent.announce()  # a reconnect: the counts so far
    [(_, payload, _, retain)] = [w for w in agent.wire[mark:] if w[0].endswith("/activity")]
    body = json.loads(payload)
    assert retain and body["rules"]["hot"]["count"] == 1 and body["schedules"]["nightly_backup"]["count"] == 1
