"""Commands on child devices (`children:`) through a real CommandService: the same guard chain as
any command, per instance, with the instance's target planned into the exact request.

Clocks are injected; the machine is never touched (the System records each call)."""

from __future__ import annotations

import json
import threading

import pytest

from pilot.actions._base import Call, Outcome, System
from pilot.agent import signing
from pilot.agent.commands import CommandService
from pilot.sources import Instance
from testkit.agent import new_keyring
from tests.support.profiles import compile_text

PROFILE = """\
pilot: 1
device: {{id: pve1, name: PVE}}
children:
  guests:
    source: proxmox.guests
    args: {{url: "https://pve.lan:8006", token_id: "root@pam!pilot", token_file: /etc/pilot/pve-token}}
    commands:
      start: {{}}
      shutdown: {{}}
      reboot: {{policy: {{confirm: false, cooldown: 1h}}}}
      stop: {{policy: {{signed: true}}}}
policies:
  allow: [guests.start, guests.shutdown, guests.reboot, guests.stop]
  hmac: {{keyring: {ring}}}
"""

GUESTS = {
    "101": Instance("101", "web", {}, True, {"node": "pve1", "kind": "qemu", "vmid": 101}),
    "205": Instance("205", "cache", {}, True, {"node": "pve-2", "kind": "lxc", "vmid": 205}),
}


class Recorder(System):
    def __init__(self) -> None:
        super().__init__()
        self.calls: list[dict] = []
        self.done = threading.Semaphore(0)

    def perform(self, call: Call) -> Outcome:
        self.calls.append(call.to_dict())
        self.done.release()
        return Outcome(output="UPID:pve1:0001")


@pytest.fixture
def rig(tmp_path):
    ring = new_keyring(tmp_path / "keys")
    plan = compile_text(PROFILE.format(ring=ring), folder=tmp_path)
    clock = {"mono": 1000.0, "wall": 1_700_000_000.0}
    wire: list[tuple[str, str]] = []
    system = Recorder()
    svc = CommandService(
        plan,
        lambda topic, payload, qos, retain: wire.append((topic, payload)),
        system,
        tmp_path / "state",
        mono=lambda: clock["mono"],
        wall=lambda: clock["wall"],
    )
    svc.instances = lambda set_id, key: GUESTS.get(key) if set_id == "guests" else None
    key = signing.load_keyring(ring)["k1"]
    yield (
        svc,
        system,
        wire,
        clock,
        lambda topic: json.dumps(signing.sign(key, "pve1", topic, "PRESS", ts=1_700_000_000)),
    )
    svc.stop(timeout=1)


def answers(wire, topic_end: str) -> list[dict]:
    return [json.loads(p) for t, p in wire if t.endswith(topic_end)]


def wait_answer(wire, topic_end: str, count: int) -> list[dict]:
    for _ in range(1000):
        found = answers(wire, topic_end)
        if len(found) >= count:
            return found
        threading.Event().wait(0.01)
    return answers(wire, topic_end)


def test_a_press_reaches_the_instance_with_its_exact_request(rig):
    svc, system, wire, _clock, _signer = rig
    svc.handle_child("pilot/pve1/guests/205/cmd/start/set", b"PRESS", False)
    assert system.done.acquire(timeout=10)
    assert system.calls == [
        {"kind": "request", "method": "POST", "path": "/nodes/pve-2/lxc/205/status/start", "via": "guests"}
    ]
    (result,) = wait_answer(wire, "guests/205/cmd/start/result", 1)
    assert result["status"] == "ok"
    audit = [json.loads(p) for t, p in wire if t == "pilot/pve1/audit"]
    assert audit == [{"event_type": "ok", "command": "guests/205/start", "origin": "mqtt"}]


def test_shutdown_is_confirmed_per_instance_by_default(rig):
    svc, system, wire, _clock, _signer = rig
    svc.handle_child("pilot/pve1/guests/101/cmd/shutdown/set", b"PRESS", False)
    svc.handle_child("pilot/pve1/guests/205/cmd/shutdown/set", b"PRESS", False)
    assert [a["status"] for a in answers(wire, "/cmd/shutdown/result")] == ["armed", "armed"]
    assert system.calls == []
    svc.handle_child("pilot/pve1/guests/101/cmd/shutdown/set", b"PRESS", False)  # the second press, on 101
    assert system.done.acquire(timeout=10)
    assert system.calls == [
        {"kind": "request", "method": "POST", "path": "/nodes/pve1/qemu/101/status/shutdown", "via": "guests"}
    ]


def test_a_cooldown_holds_per_instance(rig):
    svc, system, wire, clock, _signer = rig
    svc.handle_child("pilot/pve1/guests/101/cmd/reboot/set", b"PRESS", False)
    assert system.done.acquire(timeout=10)
    wait_answer(wire, "guests/101/cmd/reboot/result", 1)
    svc.handle_child("pilot/pve1/guests/101/cmd/reboot/set", b"PRESS", False)
    assert answers(wire, "guests/101/cmd/reboot/result")[-1]["reason"] == "cooldown"
    svc.handle_child("pilot/pve1/guests/205/cmd/reboot/set", b"PRESS", False)  # another guest: its own cooldown
    assert system.done.acquire(timeout=10)
    clock["mono"] += 3600
    svc.handle_child("pilot/pve1/guests/101/cmd/reboot/set", b"PRESS", False)
    assert system.done.acquire(timeout=10)
    assert [c["path"] for c in system.calls] == [
        "/nodes/pve1/qemu/101/status/reboot",
        "/nodes/pve-2/lxc/205/status/reboot",
        "/nodes/pve1/qemu/101/status/reboot",
    ]


def test_a_signed_child_command_needs_a_signature_bound_to_its_instance(rig):
    svc, system, wire, clock, sign = rig
    svc.handle_child("pilot/pve1/guests/101/cmd/stop/set", b"PRESS", False)
    assert answers(wire, "guests/101/cmd/stop/result")[-1]["reason"] == "malformed"
    clock["mono"] += 1  # rejections that prove no key are answered once a second
    # signed for guest 205, sent to guest 101: the topic is in the signature
    svc.handle_child("pilot/pve1/guests/101/cmd/stop/set", sign("pilot/pve1/guests/205/cmd/stop/set").encode(), False)
    assert answers(wire, "guests/101/cmd/stop/result")[-1]["reason"] == "unauthorized"
    topic = "pilot/pve1/guests/101/cmd/stop/set"
    svc.handle_child(topic, sign(topic).encode(), False)
    assert answers(wire, "guests/101/cmd/stop/result")[-1]["status"] == "armed"  # stop is confirmed by default
    svc.handle_child(topic, sign(topic).encode(), False)  # a second signed press (a fresh nonce)
    assert system.done.acquire(timeout=10), wire
    assert system.calls[-1]["path"] == "/nodes/pve1/qemu/101/status/stop"


def test_unknown_instances_commands_and_shapes_are_refused_without_a_call(rig):
    svc, system, wire, _clock, _signer = rig
    for topic in (
        "pilot/pve1/guests/999/cmd/start/set",  # no such guest (now)
        "pilot/pve1/guests/101/cmd/destroy/set",  # no such command
        "pilot/pve1/other/101/cmd/start/set",  # no such set
        "pilot/pve1/guests/1 01/cmd/start/set",  # not a key
    ):
        svc.handle_child(topic, b"PRESS", False)
    assert system.calls == []
    refused = [json.loads(p)["reason"] for t, p in wire if t.endswith("/result")]
    assert refused == ["not_allowed"]  # junk is answered at most once a second overall
    assert [t for t, _ in wire if t.endswith("/result")] == ["pilot/pve1/guests/999/cmd/start/result"]


def test_the_allowlist_names_child_commands_by_set_and_command(tmp_path):
    ring = new_keyring(tmp_path / "keys")
    text = PROFILE.format(ring=ring).replace(
        "allow: [guests.start, guests.shutdown, guests.reboot, guests.stop]", "allow: [guests.shutdown]"
    )
    plan = compile_text(text, folder=tmp_path)
    wire: list[tuple[str, str]] = []
    system = Recorder()
    svc = CommandService(plan, lambda t, p, q, r: wire.append((t, p)), system, tmp_path / "state")
    svc.instances = lambda set_id, key: GUESTS.get(key)
    try:
        svc.handle_child("pilot/pve1/guests/101/cmd/start/set", b"PRESS", False)
        assert system.calls == []
        assert json.loads(wire[0][1])["reason"] == "not_allowed"
    finally:
        svc.stop(timeout=1)


def test_dry_run_shows_the_request_and_performs_nothing(tmp_path):
    ring = new_keyring(tmp_path / "keys")
    plan = compile_text(PROFILE.format(ring=ring), folder=tmp_path)
    wire: list[tuple[str, str]] = []
    system = Recorder()
    svc = CommandService(plan, lambda t, p, q, r: wire.append((t, p)), system, tmp_path / "state", dry_run=True)
    svc.instances = lambda set_id, key: GUESTS.get(key)
    try:
        svc.handle_child("pilot/pve1/guests/101/cmd/start/set", b"PRESS", False)
        (result,) = wait_answer(wire, "guests/101/cmd/start/result", 1)
        assert result["status"] == "dry_run"
        assert result["calls"] == [
            {"kind": "request", "method": "POST", "path": "/nodes/pve1/qemu/101/status/start", "via": "guests"}
        ]
        assert system.calls == []
    finally:
        svc.stop(timeout=1)


# ------------------------------------------------------------------ hostile input on the new topic


def test_hostile_payloads_on_a_child_command_are_refused_before_anything_runs(rig):
    svc, system, wire, clock, sign = rig
    topic = "pilot/pve1/guests/101/cmd/start/set"
    cases = [
        (b"P" * 4097, False, "too_large"),  # over policies.max_payload (4096 by default)
        (b"PRESS", True, "retained"),  # a retained press would fire on every reconnect
        (b"\xff\xfePRESS", False, "malformed"),  # not UTF-8
        (b"PRE\x1bSS", False, "malformed"),  # a control character
        (b"[" * 4000, False, "bad_value"),  # deeply nested JSON within the cap: not a button value
    ]
    for payload, retained, reason in cases:
        clock["mono"] += 5  # past every reply throttle: each case gets its own answer
        svc.handle_child(topic, payload, retained)
        assert answers(wire, "guests/101/cmd/start/result")[-1]["reason"] == reason, (payload[:20], reason)
    assert system.calls == []


def test_a_replayed_signed_press_on_a_child_runs_once(rig):
    svc, system, wire, clock, sign = rig
    topic = "pilot/pve1/guests/205/cmd/stop/set"
    first, second = sign(topic).encode(), sign(topic).encode()
    svc.handle_child(topic, first, False)  # armed (stop confirms by default)
    svc.handle_child(topic, second, False)  # runs
    assert system.done.acquire(timeout=10)
    wait_answer(wire, "guests/205/cmd/stop/result", 2)
    clock["mono"] += 5
    svc.handle_child(topic, second, False)  # the same envelope again
    assert answers(wire, "guests/205/cmd/stop/result")[-1]["reason"] == "replayed"
    assert len(system.calls) == 1


def test_topic_levels_that_are_not_plain_words_never_reach_a_result_topic(rig):
    svc, system, wire, clock, _sign = rig
    for key in ("1\x1b01", "10 1", "\u202e101", "1" * 65, "", "101\n"):
        clock["mono"] += 5
        svc.handle_child(f"pilot/pve1/guests/{key}/cmd/start/set", b"PRESS", False)
    results = [t for t, _ in wire if t.endswith("/result")]
    assert results and set(results) == {"pilot/pve1/cmd/_unknown/result"}
    assert system.calls == []


def test_a_guest_gone_since_its_last_press_is_refused_not_acted_on_from_memory(rig):
    svc, system, wire, clock, _sign = rig
    topic = "pilot/pve1/guests/205/cmd/start/set"
    svc.handle_child(topic, b"PRESS", False)
    assert system.done.acquire(timeout=10)
    wait_answer(wire, "guests/205/cmd/start/result", 1)
    present = dict(GUESTS)
    svc.instances = lambda set_id, key: None if key == "205" else present.get(key)  # the next poll lost it
    clock["mono"] += 5
    svc.handle_child(topic, b"PRESS", False)
    assert answers(wire, "guests/205/cmd/start/result")[-1]["reason"] == "not_allowed"
    assert len(system.calls) == 1


def test_presses_on_many_guests_leave_no_per_guest_state_but_their_guards(rig):
    """Thousands of guests pressed over months must not grow the service: only what a guard needs to
    remember (a cooldown, an armed confirmation) is kept per guest; the reply budget is per set command."""
    svc, system, wire, clock, _sign = rig
    many = {
        str(k): Instance(str(k), f"vm{k}", {}, True, {"node": "pve1", "kind": "qemu", "vmid": k})
        for k in range(100, 300)
    }
    svc.instances = lambda set_id, key: many.get(key)
    for key in many:
        svc.handle_child(f"pilot/pve1/guests/{key}/cmd/start/set", b"PRESS", False)
        assert system.done.acquire(timeout=10)  # one at a time: four running at once would be `busy`
    assert len(system.calls) == 200
    assert set(svc.guards.replies) == {"guests.start"}
