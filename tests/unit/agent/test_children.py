"""Child sets: a profile's `children:` compiled, and the runner that turns each poll of a source into
child devices (discovery with via_device, availability, one JSON state) and removes vanished ones.

The source here is a list the test controls; the Proxmox source on top of a fake API is tested in
tests/unit/sources/ and live in tests/live/agent/test_proxmox_guests.py."""

from __future__ import annotations

import json
import logging
import threading

import pytest

from pilot.agent.children import ChildSetRunner
from pilot.sources import Bound, Instance, SourceError
from tests.support.profiles import compile_text

PROFILE = """\
pilot: 1
device: {id: pve1, name: PVE One}
children:
  guests:
    source: proxmox.guests
    args: {url: "https://pve.lan:8006", token_id: "pilot@pve!watch", token_file: /etc/pilot/pve-token}
    every: 30s
    sensors:
      cpu: {min_change: 5}
      status: {}
      running: {}
    commands:
      shutdown: {}
      start: {}
"""


@pytest.fixture
def plan(tmp_path):
    return compile_text(PROFILE, folder=tmp_path)


class Bus:
    """What the runner publishes, in order: (topic, payload, retain)."""

    def __init__(self) -> None:
        self.sent: list[tuple[str, str, bool]] = []

    def result(self, topic: str, payload: str, qos: int = 1, retain: bool = False) -> None:
        self.sent.append((topic, payload, retain))

    def telemetry(self, topic: str, payload: str, retain: bool = True) -> None:
        self.sent.append((topic, payload, retain))

    def take(self) -> list[tuple[str, str, bool]]:
        out, self.sent = self.sent, []
        return out


def vm(key: str, name: str, cpu: float = 1.0, status: str = "running", available: bool = True) -> Instance:
    return Instance(key, name, {"cpu": cpu, "status": status, "running": status == "running"}, available)


def runner(plan, polls: list, bus: Bus, clock: list[float], known: dict | None = None, record: list | None = None):
    def poll():
        item = polls.pop(0)
        if isinstance(item, Exception):
            raise item
        return item

    return ChildSetRunner(
        plan,
        plan.children[0],
        poll,
        bus.result,
        bus.telemetry,
        lambda set_id, names: (record if record is not None else []).append((set_id, dict(names))),
        known=dict(known or {}),
        clock=lambda: clock[0],
    )


def test_children_compile_to_typed_sets_with_the_sources_descriptions(plan):
    (guests,) = plan.children
    assert guests.id == "guests" and guests.source == "proxmox.guests" and guests.topic == "pilot/pve1/guests"
    assert guests.every == 30.0 and guests.max_silence == 600.0 and guests.model == "Proxmox VE guest"
    assert [(s.id, s.entity.platform, s.min_change) for s in guests.sensors] == [
        ("cpu", "sensor", 5),
        ("status", "sensor", None),
        ("running", "binary_sensor", None),
    ]
    cpu = guests.sensors[0]
    assert cpu.entity.unique_id == "pilot_pve1_guests_{key}_cpu" and cpu.entity.unit_of_measurement == "%"
    assert cpu.precision == 1
    assert [(c.id, c.policy_id, c.action, c.args, c.confirm) for c in guests.commands] == [
        ("shutdown", "guests.shutdown", "proxmox.power", {"power": "shutdown"}, 10.0),  # confirmed by default
        ("start", "guests.start", "proxmox.power", {"power": "start"}, None),
    ]


def test_without_sensors_or_commands_the_source_offers_its_usual_set(tmp_path):
    text = PROFILE.split("    sensors:")[0]
    (guests,) = compile_text(text, folder=tmp_path).children
    assert [s.id for s in guests.sensors] == [
        "status",
        "running",
        "cpu",
        "memory_used",
        "memory_percent",
        "disk_read",
        "disk_write",
        "network_in",
        "network_out",
        "uptime",
        "node",
    ]
    assert [c.id for c in guests.commands] == ["start", "shutdown", "stop", "reboot", "suspend", "resume"]


def test_require_signed_signs_child_commands_too(tmp_path):
    text = PROFILE + "policies: {require_signed: true, hmac: {keyring: keys.txt}}\n"
    (guests,) = compile_text(text, folder=tmp_path).children
    assert all(c.signed for c in guests.commands)


def test_a_first_poll_announces_each_guest_as_a_device_under_the_host(plan):
    bus, clock, record = Bus(), [100.0], []
    run = runner(plan, [[vm("101", "web"), vm("102", "db", status="stopped")]], bus, clock, record=record)
    run.run_once()
    sent = bus.take()
    assert [t for t, _, _ in sent] == [
        "homeassistant/device/pve1_guests_101/config",
        "pilot/pve1/guests/101/availability",
        "pilot/pve1/guests/101/state",
        "homeassistant/device/pve1_guests_102/config",
        "pilot/pve1/guests/102/availability",
        "pilot/pve1/guests/102/state",
    ]
    assert all(retain for _, _, retain in sent)
    config = json.loads(sent[0][1])
    assert config["device"] == {
        "identifiers": ["pilot_pve1_guests_101"],
        "name": "web",
        "via_device": "pilot_pve1",
        "model": "Proxmox VE guest",
    }
    assert config["availability_mode"] == "all"
    assert [a["topic"] for a in config["availability"]] == [
        "pilot/pve1/availability",
        "pilot/pve1/guests/101/availability",
    ]
    cpu = config["components"]["pilot_pve1_guests_101_cpu"]
    assert cpu["state_topic"] == "pilot/pve1/guests/101/state"
    assert cpu["value_template"] == "{{ value_json.cpu }}"
    assert cpu["default_entity_id"] == "sensor.pve_one_guests_101_cpu"
    shutdown = config["components"]["pilot_pve1_guests_101_shutdown"]
    assert shutdown["command_topic"] == "pilot/pve1/guests/101/cmd/shutdown/set"
    assert shutdown["platform"] == "button" and shutdown["payload_press"] == "PRESS"
    assert sent[1][1] == "online"
    assert json.loads(sent[2][1]) == {"cpu": 1.0, "status": "running", "running": True}
    assert json.loads(sent[5][1]) == {"cpu": 1.0, "status": "stopped", "running": False}
    assert record == [("guests", {"101": "web", "102": "db"})]


def test_an_unchanged_guest_is_not_published_again_until_max_silence(plan):
    bus, clock = Bus(), [100.0]
    polls = [[vm("101", "web", cpu=10.0)], [vm("101", "web", cpu=14.9)], [vm("101", "web", cpu=14.9)]]
    run = runner(plan, polls, bus, clock)
    run.run_once()
    bus.take()
    clock[0] = 130.0
    run.run_once()  # cpu moved 4.9, under its min_change of 5
    assert bus.take() == []
    clock[0] = 100.0 + 600.0
    run.run_once()  # ten minutes since the last state: published whatever changed
    assert bus.take() == [("pilot/pve1/guests/101/state", '{"cpu":14.9,"status":"running","running":true}', True)]


def test_a_change_past_the_deadband_or_of_any_other_field_is_published(plan):
    bus, clock = Bus(), [100.0]
    polls = [[vm("101", "web", cpu=10.0)], [vm("101", "web", cpu=15.0)], [vm("101", "web", cpu=15.0, status="paused")]]
    run = runner(plan, polls, bus, clock)
    run.run_once()
    bus.take()
    run.run_once()
    assert [json.loads(p)["cpu"] for _, p, _ in bus.take()] == [15.0]
    run.run_once()
    assert [json.loads(p)["status"] for _, p, _ in bus.take()] == ["paused"]


def test_a_renamed_guest_is_announced_again_under_the_same_identity(plan):
    bus, clock = Bus(), [100.0]
    run = runner(plan, [[vm("101", "web")], [vm("101", "www")]], bus, clock)
    run.run_once()
    bus.take()
    run.run_once()
    sent = bus.take()
    assert [t for t, _, _ in sent] == ["homeassistant/device/pve1_guests_101/config"]
    assert json.loads(sent[0][1])["device"]["name"] == "www"


def test_a_vanished_guest_leaves_home_assistant_and_its_retained_topics_are_cleared(plan):
    bus, clock, record = Bus(), [100.0], []
    run = runner(plan, [[vm("101", "web"), vm("102", "db")], [vm("101", "web")]], bus, clock, record=record)
    run.run_once()
    bus.take()
    run.run_once()
    assert bus.take() == [
        ("homeassistant/device/pve1_guests_102/config", "", True),
        ("pilot/pve1/guests/102/availability", "", True),
        ("pilot/pve1/guests/102/state", "", True),
    ]
    assert record[-1] == ("guests", {"101": "web"})


def test_a_guest_announced_before_a_restart_and_gone_since_is_removed_at_the_first_poll(plan):
    bus, clock = Bus(), [100.0]
    run = runner(plan, [[vm("101", "web")]], bus, clock, known={"101": "web", "103": "old"})
    run.run_once()
    topics = [t for t, p, _ in bus.take() if p == ""]
    assert topics == [
        "homeassistant/device/pve1_guests_103/config",
        "pilot/pve1/guests/103/availability",
        "pilot/pve1/guests/103/state",
    ]


def test_a_guest_on_a_node_that_is_down_is_unavailable_and_the_others_are_not(plan):
    bus, clock = Bus(), [100.0]
    run = runner(plan, [[vm("101", "web"), vm("102", "db", status="unknown", available=False)]], bus, clock)
    run.run_once()
    availability = {t: p for t, p, _ in bus.take() if t.endswith("/availability")}
    assert availability == {
        "pilot/pve1/guests/101/availability": "online",
        "pilot/pve1/guests/102/availability": "offline",
    }


def test_a_failing_source_makes_every_guest_unavailable_logs_once_per_reason_and_backs_off(plan, caplog):
    bus, clock = Bus(), [100.0]
    polls = [
        [vm("101", "web")],
        SourceError("unauthorized", "401 authentication failure"),
        SourceError("unauthorized", "401 authentication failure"),
        SourceError("server_error", "500"),
        [vm("101", "web")],
    ]
    run = runner(plan, polls, bus, clock)
    run.run_once()
    bus.take()
    with caplog.at_level(logging.INFO, logger="pilot.children"):
        clock[0] = 130.0
        run.run_once()
        assert bus.take() == [("pilot/pve1/guests/101/availability", "offline", True)]
        assert run.not_before == 160.0  # one interval after the first failure
        clock[0] = 159.0
        run.run_once()  # too early: the source is not asked
        assert len(polls) == 3
        clock[0] = 160.0
        run.run_once()
        assert run.not_before == 220.0  # then twice as long
        clock[0] = 220.0
        run.run_once()
        assert run.not_before == 340.0
        clock[0] = 340.0
        run.run_once()
    errors = [r.getMessage() for r in caplog.records if r.levelno == logging.ERROR]
    assert len(errors) == 2  # unauthorized once, server_error once
    assert "cannot read proxmox.guests (unauthorized: 401 authentication failure)" in errors[0]
    assert any("answers again" in r.getMessage() for r in caplog.records)
    assert ("pilot/pve1/guests/101/availability", "online", True) in bus.take()


def test_the_backoff_stops_growing_at_five_minutes(plan):
    bus, clock = Bus(), [0.0]
    run = runner(plan, [SourceError("timeout", "no answer")] * 20, bus, clock)
    for _ in range(12):
        clock[0] = run.not_before
        run.run_once()
    assert run.not_before - clock[0] == 300.0


def test_a_source_that_raises_anything_is_reported_not_fatal(plan, caplog):
    bus, clock = Bus(), [0.0]
    run = runner(plan, [ZeroDivisionError("division by zero")], bus, clock)
    with caplog.at_level(logging.ERROR, logger="pilot.children"):
        run.run_once()
    assert "(error: ZeroDivisionError: division by zero)" in caplog.records[0].getMessage()


def test_hostile_instances_are_cleaned_or_skipped_before_they_reach_a_topic(plan):
    bus, clock = Bus(), [0.0]
    hostile = [
        Instance("../x", "evil", {"cpu": 1.0}),  # would climb the topic tree
        Instance("a/b", "evil", {"cpu": 1.0}),
        Instance("+", "evil", {"cpu": 1.0}),  # an MQTT wildcard
        Instance("k" * 65, "evil", {"cpu": 1.0}),
        Instance("8\n", "evil", {"cpu": 1.0}),  # `$` in a pattern would let this one through
        Instance("7", "line\nbreak\x1b[31m" + "n" * 500, {"cpu": float("nan"), "status": "s" * 10_000}),
    ]
    run = runner(plan, [hostile], bus, clock)
    run.run_once()
    sent = bus.take()
    assert {t.split("/")[-2] if t.startswith("pilot/") else t for t, _, _ in sent} == {
        "homeassistant/device/pve1_guests_7/config",
        "7",
    }
    name = json.loads(sent[0][1])["device"]["name"]
    assert name == ("linebreak[31m" + "n" * 500)[:100]
    state = json.loads(sent[2][1])
    assert state["cpu"] is None and len(state["status"]) == 255


def test_a_guest_reported_without_a_name_keeps_the_name_it_was_announced_with(plan):
    bus, clock = Bus(), [0.0]
    run = runner(plan, [[vm("101", "web")], [vm("101", "", status="unknown", available=False)]], bus, clock)
    run.run_once()
    bus.take()
    run.run_once()
    assert [t for t, _, _ in bus.take()] == ["pilot/pve1/guests/101/availability", "pilot/pve1/guests/101/state"]


def test_an_empty_answer_removes_every_device_only_when_it_repeats(plan, caplog):
    """Proxmox answers a token that lost VM.Audit with an empty list, not an error: one empty answer
    must not wipe every guest's device and history from Home Assistant."""
    bus, clock = Bus(), [0.0]
    run = runner(plan, [[vm("101", "web")], [], [], []], bus, clock)
    run.run_once()
    bus.take()
    with caplog.at_level(logging.WARNING, logger="pilot.children"):
        run.run_once()
        run.run_once()
    assert bus.take() == [("pilot/pve1/guests/101/availability", "offline", True)]
    assert len(caplog.records) == 1 and "lists no instance where there were 1" in caplog.records[0].getMessage()
    run.run_once()  # the third empty answer in a row
    assert [t for t, p, _ in bus.take() if p == ""] == [
        "homeassistant/device/pve1_guests_101/config",
        "pilot/pve1/guests/101/availability",
        "pilot/pve1/guests/101/state",
    ]


def test_an_optional_set_whose_source_is_absent_is_skipped_quietly(tmp_path, caplog):
    from dataclasses import replace

    plan = compile_text(PROFILE, folder=tmp_path)
    plan = replace(plan, children=(replace(plan.children[0], optional=True),))
    bus, clock = Bus(), [0.0]
    absent = SourceError("absent", "the token file /etc/pilot/pve-token does not exist")
    polls = [absent, absent]
    run = runner(plan, polls, bus, clock)
    with caplog.at_level(logging.INFO, logger="pilot.children"):
        run.run_once()
        clock[0] = 10_000.0
        run.run_once()  # not asked again: polls wait for a reload
    assert [(r.levelno, r.getMessage()) for r in caplog.records] == [
        (logging.INFO, "children guests: skipped (the token file /etc/pilot/pve-token does not exist)")
    ]
    assert bus.take() == [] and len(polls) == 1


def test_an_absent_source_in_a_set_that_is_not_optional_is_an_error(plan, caplog):
    bus, clock = Bus(), [0.0]
    run = runner(plan, [SourceError("absent", "no local pvesh")], bus, clock)
    with caplog.at_level(logging.ERROR, logger="pilot.children"):
        run.run_once()
    assert "cannot read proxmox.guests (absent: no local pvesh)" in caplog.records[0].getMessage()


def test_the_proxmox_source_is_absent_without_its_token_file_or_a_local_pvesh(tmp_path):
    from pilot.registry import SOURCES

    factory = SOURCES.get("proxmox.guests").factory
    with pytest.raises(SourceError) as missing:
        factory(url="https://pve.lan:8006", token_id="root@pam!pilot", token_file=str(tmp_path / "nope"))
    assert missing.value.reason == "absent" and str(tmp_path / "nope") in missing.value.detail
    with pytest.raises(SourceError) as local:
        factory()  # no url: the local pvesh, which this machine (not a Proxmox host) lacks
    assert local.value.reason == "absent" and "not a Proxmox VE host" in local.value.detail


def test_a_poll_that_answers_after_a_reload_stopped_its_runner_publishes_nothing(plan):
    """A reload stops the old runner while its source may still be answering (a slow API): the old
    answer must not reach the broker next to the new runner's."""
    bus, clock = Bus(), [0.0]
    run = runner(plan, [], bus, clock)
    run.poll = lambda: (run.stopped.set(), [vm("101", "web")])[1]  # the reload lands during the request
    run.run_once()
    assert bus.take() == []


def test_policies_confirm_and_cooldowns_name_child_commands_too(tmp_path):
    text = PROFILE + "policies:\n  confirm: [guests.start]\n  cooldowns: {guests.shutdown: 10m}\n"
    (guests,) = compile_text(text, folder=tmp_path).children
    shutdown, start = guests.commands
    assert (start.id, start.confirm, start.cooldown) == ("start", 10.0, 0.0)
    assert (shutdown.id, shutdown.confirm, shutdown.cooldown) == ("shutdown", 10.0, 600.0)


def test_a_source_that_cannot_be_set_up_is_set_up_again_at_each_poll(tmp_path):
    """A CA file or token created after the agent started is picked up without a restart."""
    from pilot.agent.children import bind_source

    (guests,) = compile_text(PROFILE.replace("/etc/pilot/pve-token", str(tmp_path / "token")), folder=tmp_path).children
    bound = bind_source(guests)
    with pytest.raises(SourceError) as first:
        bound.poll()
    assert first.value.reason == "absent"
    (tmp_path / "token").write_text("secret\n")
    with pytest.raises(SourceError) as second:
        bound.poll()  # set up now; the API itself (pve.lan) is not reachable from here
    assert second.value.reason in ("unreachable", "timeout", "tls")


def test_the_polling_thread_survives_a_bug_in_a_poll(plan, caplog):
    from pilot.agent.children import Children

    calls = []

    def poll():
        calls.append(1)
        if len(calls) == 1:
            return [Instance("101", "web", None)]  # fields that are not a map: the runner itself fails
        return [vm("101", "web")]

    bus = Bus()
    children = Children(plan, bus.result, bus.telemetry, (dict, lambda r: None), lambda spec: Bound(poll))
    ticks = []

    def until(predicate) -> None:
        for _ in range(1000):
            if predicate():
                return
            threading.Event().wait(0.01)

    with caplog.at_level(logging.ERROR, logger="pilot.children"):
        children.start(lambda every, fn, first_delay: ticks.append(fn))
        until(lambda: any("unexpected error while polling" in r.getMessage() for r in caplog.records))
        ticks[0]()  # the next tick: a second poll, on the same thread
        until(lambda: any(t == "pilot/pve1/guests/101/state" for t, _, _ in bus.sent))
    children.stop()
    assert len(calls) == 2
    assert any(t == "pilot/pve1/guests/101/state" for t, _, _ in bus.sent)


def test_fields_and_commands_left_out_of_a_set_are_sent_in_removal_form(plan):
    """Dropping `memory_used` from a set (or making a command signed) removes that entity from each
    guest's device instead of leaving it unavailable there."""
    from pilot.agent.children import child_discovery

    config = json.loads(child_discovery(plan, plan.children[0], vm("101", "web")).payload)
    removed = {uid: c for uid, c in config["components"].items() if set(c) == {"platform"}}
    assert removed["pilot_pve1_guests_101_memory_used"] == {"platform": "sensor"}
    assert removed["pilot_pve1_guests_101_stop"] == {"platform": "button"}
    assert "pilot_pve1_guests_101_cpu" not in removed and "pilot_pve1_guests_101_start" not in removed
    assert len(removed) == 15 - 3 + 6 - 2  # every field and command the source offers, less the chosen


def test_the_devices_of_a_set_the_profile_no_longer_has_are_removed_once(plan):
    from pilot.agent.children import dropped_sets

    record = {"guests": {"101": "web"}, "vms": {"7": "old", "../x": "evil"}, "bad/set": {"1": "x"}}
    messages, kept = dropped_sets(plan, record)
    assert messages == [
        ("homeassistant/device/pve1_vms_7/config", "", 1, True),
        ("pilot/pve1/vms/7/availability", "", 1, True),
        ("pilot/pve1/vms/7/state", "", 1, True),
    ]
    assert kept == {"guests": {"101": "web"}}
