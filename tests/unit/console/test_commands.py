"""The console's presses: values checked against what the device announced, answers believed only when
they prove themselves (our nonce and a valid result signature), forgeries counted and ignored."""

from __future__ import annotations

import asyncio
import json

import pytest

from pilot.agent import signing
from pilot.console.commands import CommandSender, PressError, value_for
from pilot.console.fleet import CommandInfo

NOW = 1_800_000_000
BUTTON = CommandInfo(id="halt", platform="button", topic="pilot/d1/cmd/halt/set", signed=True)
PLAIN = CommandInfo(id="lamp", platform="switch", topic="pilot/d1/cmd/lamp/set")


@pytest.mark.parametrize(
    ("command", "value", "expected"),
    [
        (CommandInfo(id="b", platform="button", topic="t", payload_press="GO"), "ignored", "GO"),
        (CommandInfo(id="s", platform="switch", topic="t"), "ON", "ON"),
        (CommandInfo(id="n", platform="number", topic="t", min=0, max=10), "10", "10"),
        (CommandInfo(id="o", platform="select", topic="t", options=("a", "b")), "b", "b"),
        (CommandInfo(id="x", platform="text", topic="t"), "héllo", "héllo"),
    ],
)
def test_values_pass_as_the_device_expects_them(command, value, expected):
    assert value_for(command, value) == expected


@pytest.mark.parametrize(
    ("command", "value"),
    [
        (CommandInfo(id="s", platform="switch", topic="t"), "on"),
        (CommandInfo(id="n", platform="number", topic="t", min=0, max=10), "10.5"),
        (CommandInfo(id="n", platform="number", topic="t", min=0, max=10), "-1"),
        (CommandInfo(id="n", platform="number", topic="t"), "ten"),
        (CommandInfo(id="n", platform="number", topic="t", min=0, max=10), "nan"),
        (CommandInfo(id="n", platform="number", topic="t"), "1e999"),
        (CommandInfo(id="n", platform="number", topic="t"), " 5 "),
        (CommandInfo(id="n", platform="number", topic="t"), "1_0"),
        (CommandInfo(id="o", platform="select", topic="t", options=("a",)), "c"),
        (CommandInfo(id="x", platform="text", topic="t"), "x" * 4097),
        (CommandInfo(id="x", platform="text", topic="t"), None),
        (CommandInfo(id="x", platform="text", topic="t"), {"nested": ["value"]}),
    ],
)
def test_values_the_device_would_refuse_are_refused_before_sending(command, value):
    with pytest.raises(PressError) as caught:
        value_for(command, value)
    assert caught.value.reason == "bad_value"


class Wire:
    """Stands where the broker is: records what the sender publishes."""

    def __init__(self) -> None:
        self.sent: list[tuple[str, str]] = []
        self.up = True

    def __call__(self, topic: str, payload: str) -> bool:
        self.sent.append((topic, payload))
        return self.up


def answer_with(sender: CommandSender, wire: Wire, make_answer) -> dict:
    async def scenario() -> dict:
        task = asyncio.create_task(sender.press("d1", BUTTON, None, "alice", "pilot"))
        while not wire.sent:
            await asyncio.sleep(0)
        for payload in make_answer(json.loads(wire.sent[-1][1])):
            sender.on_result("d1", "pilot/d1/cmd/halt/result", payload)
        return await task

    return asyncio.run(scenario())


def signed_answer(key, envelope, status="ok", reason=None, ts=NOW) -> bytes:
    sig = signing.sign_result(key, "d1", "pilot/d1/cmd/halt/set", envelope["nonce"], status, reason, ts)
    body = {"status": status, "ts": ts, "nonce": envelope["nonce"], "sig": sig}
    if reason:
        body["reason"] = reason
    return json.dumps(body).encode()


def test_a_signed_press_carries_the_console_kid_and_the_user_and_believes_a_signed_answer(keyring):
    wire = Wire()
    sender = CommandSender(wire, keyring, "console", timeout=5, clock=lambda: NOW)
    key = signing.load_keyring(keyring)["console"]
    answer = answer_with(sender, wire, lambda env: [signed_answer(key, env)])
    assert answer == {"status": "ok", "verified": True}
    topic, payload = wire.sent[0]
    envelope = json.loads(payload)
    assert topic == "pilot/d1/cmd/halt/set"
    assert (envelope["kid"], envelope["by"], envelope["cmd"], envelope["ts"]) == ("console", "alice", "PRESS", NOW)
    verified = signing.verify(
        signing.parse_envelope(payload.encode()), {"console": key}, "d1", topic, now=NOW, window=60
    )
    assert verified.by == "alice"


def test_a_forged_answer_with_our_nonce_is_counted_and_the_real_one_still_taken(keyring):
    wire = Wire()
    sender = CommandSender(wire, keyring, "console", timeout=5, clock=lambda: NOW)
    key = signing.load_keyring(keyring)["console"]
    other = signing.Key("console", b"\x01" * 32, "active", None)

    def answers(env):
        return [signed_answer(other, env, "ok"), signed_answer(key, env, "rejected", "cooldown")]

    answer = answer_with(sender, wire, answers)
    assert answer == {"status": "rejected", "reason": "cooldown", "verified": True}
    assert sender.stats.forged == 1


def test_an_unauthenticated_rejection_is_passed_on_marked_unverified_when_nothing_better_comes(keyring):
    """How a user learns the device does not know the console's key."""
    wire = Wire()
    sender = CommandSender(wire, keyring, "console", timeout=5, clock=lambda: NOW)
    answer = answer_with(sender, wire, lambda env: [b'{"status": "rejected", "reason": "unauthorized"}'])
    assert answer == {"status": "rejected", "reason": "unauthorized", "verified": False}


def test_garbage_answers_are_ignored_and_the_press_times_out(keyring):
    wire = Wire()
    sender = CommandSender(wire, keyring, "console", timeout=0.2, clock=lambda: NOW)
    junk = [b"\xff", b"[" * 5000, b'{"status": "OK!"}', b'{"status": "ok", "nonce": "someone-else"}']
    answer = answer_with(sender, wire, lambda env: junk)
    assert answer == {"status": "timeout", "verified": False}
    assert sender.stats.timeouts == 1


def test_no_keyring_no_signed_press(tmp_path):
    wire = Wire()
    sender = CommandSender(wire, None, "console", timeout=1)
    with pytest.raises(PressError) as caught:
        asyncio.run(sender.press("d1", BUTTON, None, "alice", "pilot"))
    assert caught.value.reason == "console_has_no_key"
    assert wire.sent == []


def test_a_verify_only_key_does_not_sign(tmp_path):
    path = tmp_path / "keyring"
    path.write_text(signing.new_key_line("console").replace("active", "verify_only") + "\n")
    path.chmod(0o600)
    sender = CommandSender(Wire(), path, "console", timeout=1)
    with pytest.raises(PressError) as caught:
        sender.key()
    assert caught.value.reason == "console_has_no_key"


def test_an_unsigned_press_sends_the_value_itself_and_its_answer_is_unverified():
    wire = Wire()
    sender = CommandSender(wire, None, "console", timeout=5)

    async def scenario():
        task = asyncio.create_task(sender.press("d1", PLAIN, "ON", "bob", "pilot"))
        while not wire.sent:
            await asyncio.sleep(0)
        sender.on_result("d1", "pilot/d1/cmd/lamp/result", b'{"status": "ok", "ts": 1}')
        return await task

    assert asyncio.run(scenario()) == {"status": "ok", "verified": False}
    assert wire.sent == [("pilot/d1/cmd/lamp/set", "ON")]


def test_a_broker_that_is_away_refuses_the_press():
    wire = Wire()
    wire.up = False
    sender = CommandSender(wire, None, "console", timeout=5)
    with pytest.raises(PressError) as caught:
        asyncio.run(sender.press("d1", PLAIN, "ON", "bob", "pilot"))
    assert caught.value.reason == "broker_unavailable"


@pytest.mark.parametrize(
    "forged",
    [
        b'{"status": "ok", "detail": "done"}',
        b'{"status": "dry_run"}',
        b'{"status": "rejected", "reason": "cooldown"}',
        b'{"status": "rejected"}',
    ],
)
def test_an_unsigned_answer_to_a_signed_press_is_never_taken_unless_it_is_a_pre_key_rejection(keyring, forged):
    """Anyone on the broker could otherwise make a signed press read as done."""
    wire = Wire()
    sender = CommandSender(wire, keyring, "console", timeout=0.5, clock=lambda: NOW)
    answer = answer_with(sender, wire, lambda env: [forged])
    assert answer == {"status": "timeout", "verified": False}
