"""Deploying a profile from the console, without a broker: the exact signed request `pilot deploy` sends,
answers believed only when signed for our nonce, the device's rollout state in the fleet from our own sends
and from its retained `<base>/deploy` topic, and hostile messages on both topics."""

from __future__ import annotations

import asyncio
import json

import pytest

from pilot.agent import deploy as wire
from pilot.agent import signing
from pilot.console.commands import CommandSender, PressError
from pilot.console.config import ConsoleConfig
from pilot.console.deploy import ProfileSender
from pilot.console.fleet import Fleet
from pilot.console.ingest import Ingest

NOW = 1_800_000_000
PROFILE = "pilot: 1\ndevice: {id: d1}\nsensors:\n  cpu: {probe: cpu.percent}\n"


class Wire:
    def __init__(self) -> None:
        self.sent: list[tuple[str, bytes, int]] = []
        self.up = True

    def __call__(self, topic: str, payload: bytes, qos: int = 1) -> bool:
        self.sent.append((topic, payload, qos))
        return self.up


def rig(keyring, timeout: float = 5.0):
    fleet = Fleet()
    with fleet.lock:
        fleet.device("d1")
    out = Wire()
    sender = CommandSender(out, keyring, "console", timeout=5, clock=lambda: NOW)
    profiles = ProfileSender(out, sender, fleet, "pilot", timeout=timeout, get_timeout=timeout, clock=lambda: NOW)
    sender.profile_results = profiles.on_result
    return fleet, out, sender, profiles


def signed(key, request_topic, nonce, status="ok", reason=None, **extra) -> bytes:
    sig = signing.sign_result(key, "d1", request_topic, nonce, status, reason, NOW)
    body = {"status": status, "ts": NOW, "nonce": nonce, "sig": sig, **extra}
    if reason:
        body["reason"] = reason
    return json.dumps(body).encode()


def run(profiles, sender, out, work, answers):
    async def scenario():
        task = asyncio.create_task(work())
        while not out.sent:
            await asyncio.sleep(0)
        topic, payload, _qos = out.sent[-1]
        for raw in answers(topic, payload):
            sender.on_result("d1", "pilot/d1/cmd/_profile/result", raw)
        await asyncio.sleep(0)
        return await task

    return asyncio.run(scenario())


def test_a_deploy_is_the_signed_request_the_agent_checks_and_a_signed_answer_applies_it(keyring):
    fleet, out, sender, profiles = rig(keyring)
    key = signing.load_keyring(keyring)["console"]
    seen = []

    def answers(topic, payload):
        seen.append(fleet.summaries()[0]["deploy"])
        envelope = json.loads(payload)["envelope"]
        return [signed(key, topic, envelope["nonce"], "ok", op="set", profile_hash="abc123")]

    answer = run(profiles, sender, out, lambda: profiles.deploy("d1", PROFILE, "ada"), answers)
    assert answer == {
        "status": "ok",
        "reason": None,
        "detail": None,
        "errors": [],
        "profile_hash": "abc123",
        "verified": True,
    }
    topic, payload, qos = out.sent[0]
    assert (topic, qos) == ("pilot/d1/cmd/_profile/set", 1)
    parsed = wire.parse_deploy(payload)
    assert parsed.text == PROFILE and wire.binds(parsed.envelope, PROFILE)
    verified = signing.verify(parsed.envelope, {"console": key}, "d1", topic, now=NOW, window=60)
    assert (verified.kid, verified.by) == ("console", "ada")
    digest = wire.text_sha256(PROFILE)
    assert seen == [{"state": "sending", "reason": None, "ts": NOW, "by": "ada", "sha256": digest}]
    assert fleet.summaries()[0]["deploy"] == {
        "state": "applied",
        "reason": None,
        "ts": NOW,
        "by": "ada",
        "sha256": digest,
    }


def test_a_forged_answer_is_counted_and_the_real_rollback_taken_with_its_errors_bounded(keyring):
    fleet, out, sender, profiles = rig(keyring)
    key = signing.load_keyring(keyring)["console"]
    other = signing.Key("console", b"\x01" * 32, "active", None)

    def answers(topic, payload):
        nonce = json.loads(payload)["envelope"]["nonce"]
        return [
            signed(other, topic, nonce, "ok", op="set"),
            b"\xff\xfe",
            b"[" * 10_000,
            signed(key, topic, nonce, "rolled_back", "broker_unreachable", op="set", detail="x" * 900),
        ]

    answer = run(profiles, sender, out, lambda: profiles.deploy("d1", PROFILE, "ada"), answers)
    assert (answer["status"], answer["reason"], answer["verified"]) == ("rolled_back", "broker_unreachable", True)
    assert len(answer["detail"]) == 500
    assert sender.stats.forged == 1
    state = fleet.summaries()[0]["deploy"]
    assert (state["state"], state["reason"]) == ("rolled_back", "broker_unreachable")


def test_an_invalid_profile_answer_carries_at_most_twenty_error_lines(keyring):
    fleet, out, sender, profiles = rig(keyring)
    key = signing.load_keyring(keyring)["console"]
    errors = [f"office.yaml:{i}:1: error: bad" for i in range(50)] + [5, None]

    def answers(topic, payload):
        nonce = json.loads(payload)["envelope"]["nonce"]
        return [signed(key, topic, nonce, "rejected", "invalid_profile", op="set", errors=errors)]

    answer = run(profiles, sender, out, lambda: profiles.deploy("d1", PROFILE, "ada"), answers)
    assert answer["errors"] == errors[:20]
    assert fleet.summaries()[0]["deploy"]["state"] == "rejected"


def test_a_device_without_our_key_answers_unsigned_and_that_is_passed_on_unverified(keyring):
    fleet, out, sender, profiles = rig(keyring)
    unsigned = json.dumps({"status": "rejected", "reason": "unavailable", "op": "set", "ts": NOW}).encode()
    ok_unsigned = json.dumps({"status": "ok", "op": "set"}).encode()  # a made-up "ok" is never taken
    answer = run(
        profiles, sender, out, lambda: profiles.deploy("d1", PROFILE, "ada"), lambda t, p: [ok_unsigned, unsigned]
    )
    assert (answer["status"], answer["reason"], answer["verified"]) == ("rejected", "unavailable", False)
    assert fleet.summaries()[0]["deploy"]["reason"] == "unavailable"


def test_no_answer_is_no_answer(keyring):
    fleet, out, sender, profiles = rig(keyring, timeout=0.1)
    answer = run(profiles, sender, out, lambda: profiles.deploy("d1", PROFILE, "ada"), lambda t, p: [])
    assert (answer["status"], answer["verified"]) == ("timeout", False)
    assert fleet.summaries()[0]["deploy"]["state"] == "no_answer"


def test_get_returns_the_text_the_device_runs_with_what_it_redacted(keyring):
    fleet, out, sender, profiles = rig(keyring)
    key = signing.load_keyring(keyring)["console"]

    def answers(topic, payload):
        env = json.loads(payload)
        assert topic == "pilot/d1/cmd/_profile/get" and env["cmd"] == "get" and env["by"] == "ada"
        extra = {"op": "get", "profile": PROFILE, "name": "office.yaml", "redacted": ["$.mqtt.password", 7]}
        return [signed(key, topic, env["nonce"], "ok", **extra)]

    answer = run(profiles, sender, out, lambda: profiles.get("d1", "ada"), answers)
    assert answer == {
        "text": PROFILE,
        "sha256": wire.text_sha256(PROFILE),
        "name": "office.yaml",
        "redacted": ["$.mqtt.password"],
    }
    assert fleet.summaries()[0]["deploy"] is None  # reading is not a rollout


def test_a_set_answer_does_not_answer_a_get(keyring):
    fleet, out, sender, profiles = rig(keyring, timeout=0.1)
    key = signing.load_keyring(keyring)["console"]

    def answers(topic, payload):
        nonce = json.loads(payload)["nonce"]
        return [signed(key, "pilot/d1/cmd/_profile/set", nonce, "ok", op="get", profile="x: 1\n")]

    from pilot.console.deploy import NoAnswer

    with pytest.raises(NoAnswer):
        run(profiles, sender, out, lambda: profiles.get("d1", "ada"), answers)


def test_without_a_key_or_a_broker_nothing_is_sent(keyring, tmp_path):
    fleet, out, sender, profiles = rig(keyring)
    out.up = False
    with pytest.raises(PressError) as down:
        asyncio.run(profiles.deploy("d1", PROFILE, "ada"))
    assert down.value.reason == "broker_unavailable"
    sender.keyring_path = None
    with pytest.raises(PressError) as nokey:
        asyncio.run(profiles.deploy("d1", PROFILE, "ada"))
    assert nokey.value.reason == "console_has_no_key"
    with pytest.raises(PressError) as big:
        sender.keyring_path = keyring
        asyncio.run(profiles.deploy("d1", "x" * wire.MAX_DEPLOY_BYTES, "ada"))
    assert big.value.reason == "too_large"


# ------------------------------------------------------------------ the retained <base>/deploy topic
@pytest.fixture
def ingest(tmp_path):
    fleet = Fleet()
    ingest = Ingest(ConsoleConfig(state_dir=tmp_path), fleet, storage=None, clock=lambda: NOW)
    ingest.handle("pilot/d1/availability", b"online")
    return ingest, fleet


def test_the_retained_deploy_state_shows_on_the_device_and_is_streamed(ingest):
    ingest, fleet = ingest
    assert "pilot/+/deploy" in ingest.subscriptions()
    before = fleet.changes.seq
    state = {"state": "rolled_back", "reason": "start_failed", "profile_hash": "h", "sha256": "a" * 64}
    state |= {"kid": "ci", "by": "deploy-bot", "ts": NOW - 5}
    ingest.handle("pilot/d1/deploy", json.dumps(state).encode(), retained=True)
    assert fleet.summaries()[0]["deploy"] == {
        "state": "rolled_back",
        "reason": "start_failed",
        "ts": NOW - 5,
        "by": "deploy-bot",
        "sha256": "a" * 64,
    }
    assert ("device", "d1", "") in fleet.changes.since(before)
    ingest.handle("pilot/d1/deploy", b"")  # pilot forget
    assert fleet.summaries()[0]["deploy"] is None


@pytest.mark.parametrize(
    ("payload", "reason"),
    [
        (b"\xff\xfe", "bad_deploy"),
        (b"[" * 3000, "bad_deploy"),
        (b'{"state": "pwned"}', "bad_deploy"),
        (b'{"state": NaN}', "bad_deploy"),
        (b'"applied"', "bad_deploy"),
        (b'{"state": "applied", "pad": "' + b"x" * 5000 + b'"}', "too_large"),
    ],
)
def test_hostile_deploy_states_are_counted_and_change_nothing(ingest, payload, reason):
    ingest, fleet = ingest
    ingest.handle("pilot/d1/deploy", payload)
    assert ingest.stats.dropped == {reason: 1}
    assert fleet.summaries()[0]["deploy"] is None


def test_odd_fields_of_a_deploy_state_are_dropped_not_shown(ingest):
    ingest, fleet = ingest
    odd = {"state": "applied", "reason": "<script>", "sha256": "Z" * 64, "by": "a\nb", "ts": 1e20}
    ingest.handle("pilot/d1/deploy", json.dumps(odd).encode())
    assert fleet.summaries()[0]["deploy"] == {"state": "applied", "reason": None, "ts": NOW, "by": None, "sha256": None}
    ingest.handle("pilot/nobody/deploy", b'{"state": "applied"}')  # no device made from a deploy state
    assert [d["id"] for d in fleet.summaries()] == ["d1"]


def test_a_get_answer_may_be_large_but_other_results_stay_small(ingest):
    ingest, fleet = ingest
    got = []
    ingest.on_result = lambda device, topic, payload: got.append(topic)
    ingest.handle("pilot/d1/cmd/_profile/result", b"x" * 300_000)
    ingest.handle("pilot/d1/cmd/lamp/result", b"x" * 9000)
    ingest.handle("pilot/d1/cmd/_profile/result", b"x" * (2 * 262_144 + 1))
    assert got == ["pilot/d1/cmd/_profile/result"]
    assert ingest.stats.dropped == {"too_large": 2}
