"""Property test of the command path in-process: whatever arrives on a command topic, the guard chain
never raises, and every answer is a known status whose rejection reason is one of pilot.agent.policy.REASONS.

Inputs: random bytes and text, numbers, envelope-shaped JSON with each field valid or damaged, and
envelopes properly signed with the rig's key (some then tampered with), on every declared command,
undeclared ones and malformed topics, retained or not. The CommandService runs with a System that
only records, and a monotonic clock that moves 5 s per reading, so cooldowns, confirmations and the
once-a-second junk reply limit never hide an answer.
"""

from __future__ import annotations

import json
import threading
import time
from itertools import count

import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from pilot.actions._base import Outcome, System
from pilot.agent import policy, signing
from pilot.agent.commands import CommandService
from tests.support.profiles import compile_text

DEVICE = "fuzzrig"
BASE = f"pilot/{DEVICE}"
STATUSES = {"ok", "rejected", "failed", "dry_run", "armed", "interrupted"}
RESULT_KEYS = {"status", "reason", "nonce", "ts", "confirm_within", "detail", "calls", "sig"}
KEY = signing.Key("k1", b"fuzz-secret-0123456789abcdef")


def _profile(keyring: str) -> bytes:
    return (
        f"pilot: 1\ndevice: {{id: {DEVICE}, name: Fuzz rig}}\n"
        "commands:\n"
        "  shutdown: {action: power.shutdown, platform: button, policy: {signed: true}}\n"
        "  reboot: {action: power.reboot, platform: button, policy: {confirm: 20s}}\n"
        "  lock: {action: session.lock, platform: button, policy: {cooldown: 1h}}\n"
        "  backup: {action: process.run, args: {argv: [/bin/echo, backup]}, platform: button}\n"
        '  level: {action: process.run, args: {argv: [/bin/echo, "{value}"], value_arg: "{value}"}, '
        "platform: number, min: 0, max: 100, step: 0.5}\n"
        '  mode: {action: process.run, args: {argv: [/bin/echo, "{value}"], value_arg: "{value}"}, '
        "platform: select, options: [eco, fast]}\n"
        '  power: {action: process.run, args: {argv: [/bin/echo, "{value}"], value_arg: "{value}"}, '
        "platform: switch, policy: {signed: true}}\n"
        f'  note: {{action: mqtt.publish, args: {{topic: {BASE}/note, payload: "n {{value}}"}}, platform: text, '
        'max_length: 20, pattern: "[a-z ]*"}\n'
        "policies:\n  allow: [shutdown, reboot, lock, backup, level, mode, power, note]\n"
        f"  hmac: {{keyring: {keyring}, window: 60s}}\n  rate_limit: {{max: 1000, per: 1m}}\n"
    ).encode()


class MemorySystem(System):
    def __init__(self) -> None:
        super().__init__(publish=lambda topic, payload, retain: None)
        self.calls = []

    def perform(self, call):
        self.calls.append(call)
        return Outcome(output="recorded")


@pytest.fixture(scope="module")
def rig(tmp_path_factory):
    d = tmp_path_factory.mktemp("fuzz-rig")
    keyring = d / "keyring"
    keyring.write_text(f"k1 {signing.b64url(KEY.secret)} active\n")
    keyring.chmod(0o600)
    plan = compile_text(_profile(str(keyring)), folder=d, name="fuzz.yaml")
    assert plan.device.id == DEVICE
    published: list[tuple[str, str]] = []
    lock = threading.Lock()
    ticks = count()

    def publish(topic, payload, qos, retain):
        with lock:
            published.append((topic, payload))

    service = CommandService(plan, publish, MemorySystem(), d / "state", mono=lambda: next(ticks) * 5.0)
    yield plan, service, published, lock
    service.stop(timeout=2)


COMMANDS = ["shutdown", "reboot", "lock", "backup", "level", "mode", "power", "note"]
JUNK_IDS = ["nope", "_reload", "", "a/b", "+", "#", "shutdown/extra", "x" * 300]
TOPICS = st.one_of(  # mostly declared commands, so that the later guards are reached
    st.sampled_from(COMMANDS * 6 + JUNK_IDS).map(lambda c: f"{BASE}/cmd/{c}/set"),
    st.sampled_from([f"{BASE}/cmd/set", f"{BASE}/cmd//set", "other/topic", ""]),
)
RETAINED = st.sampled_from([False] * 9 + [True])
B64 = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"


def _field(valid, junk):
    return st.one_of(st.just(valid), junk)


ANY_JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=30),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4),
    max_leaves=10,
)
ENVELOPE_SHAPED = st.fixed_dictionaries(
    {
        "v": _field(1, ANY_JSON),
        "kid": _field("k1", st.one_of(st.text(max_size=40), ANY_JSON)),
        "ts": _field(int(time.time()), st.one_of(st.integers(), st.floats(), st.booleans(), st.text(max_size=12))),
        "nonce": _field("A" * 22, st.one_of(st.text(alphabet=B64, min_size=0, max_size=30), ANY_JSON)),
        "cmd": _field("PRESS", st.one_of(st.text(max_size=50), ANY_JSON)),
        "sig": _field("B" * 43, st.one_of(st.text(alphabet=B64 + "=+/", min_size=40, max_size=46), ANY_JSON)),
    },
    optional={"extra": ANY_JSON},
).map(lambda d: json.dumps(d).encode())


@st.composite
def signed(draw):
    """A correctly signed envelope for a real command topic, sometimes tampered with after signing."""
    command = draw(st.sampled_from(COMMANDS))
    value = draw(st.sampled_from(["PRESS", "ON", "OFF", "42", "42.5", "eco", "hello", "", "\u00e9t\u00e9"]))
    ts = int(time.time()) + draw(st.sampled_from([0, 0, 0, -30, 59, -61, 3600, -3600]))
    env = signing.sign(KEY, DEVICE, f"{BASE}/cmd/{command}/set", value, ts=ts)
    tamper = draw(st.sampled_from([None, None, "cmd", "ts", "nonce", "sig", "kid"]))
    if tamper == "cmd":
        env["cmd"] = env["cmd"] + "x"
    elif tamper == "ts":
        env["ts"] += 1
    elif tamper == "nonce":
        env["nonce"] = "C" * 22
    elif tamper == "sig":
        env["sig"] = ("A" if env["sig"][0] != "A" else "B") + env["sig"][1:]
    elif tamper == "kid":
        env["kid"] = "k2"
    return f"{BASE}/cmd/{command}/set", json.dumps(env).encode(), (env["nonce"] if tamper is None else None)


PAYLOADS = st.one_of(
    st.binary(max_size=600),
    st.text(max_size=200).map(str.encode),
    st.sampled_from(
        [
            b"PRESS",
            b"ON",
            b"OFF",
            b"eco",
            b"fast",
            b"50",
            b"50.5",
            b"-0",
            b"1e309",
            b"nan",
            b"inf",
            b" PRESS ",
            b"PRESS\n",
            b"\x00",
            b"[" * 1000 + b"]" * 1000,
            b"{}" * 3000,
        ]
    ),
    st.floats(allow_nan=True, allow_infinity=True).map(lambda f: repr(f).encode()),
    st.integers().map(lambda i: str(i).encode()),
    ENVELOPE_SHAPED,
)
PLAUSIBLE = st.sampled_from(
    [
        ("backup", b"PRESS"),
        ("reboot", b"PRESS"),
        ("lock", b"PRESS"),
        ("level", b"50"),
        ("level", b"99.5"),
        ("mode", b"eco"),
        ("mode", b"fast"),
        ("note", b"hi there"),
    ]
).map(lambda c: (f"{BASE}/cmd/{c[0]}/set", c[1], None))
MESSAGES = st.one_of(st.tuples(TOPICS, PAYLOADS, st.none()), signed(), signed(), PLAUSIBLE)


def _settle(service: CommandService, timeout: float = 2.0) -> None:
    deadline = time.monotonic() + timeout
    while service.guards.running and time.monotonic() < deadline:
        time.sleep(0.002)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(message=MESSAGES, retained=RETAINED)
def test_command_payloads_never_raise_and_answer_known_reasons(rig, message, retained):
    plan, service, published, lock = rig
    topic, payload, good_nonce = message

    # the envelope parser alone
    try:
        env = signing.parse_envelope(payload)
    except signing.Rejected as exc:
        assert exc.reason in policy.REASONS
    else:
        assert set(env) == signing.ENVELOPE_KEYS
        try:
            signing.verify(env, {"k1": KEY}, DEVICE, topic, now=time.time(), window=60)
        except signing.Rejected as exc:
            assert exc.reason in policy.REASONS

    # the value guard alone, for every declared command
    text = policy.decode_text(payload)
    for command in plan.commands:
        if text is not None:
            value, reason = policy.check_value(command, text)
            assert reason is None or (reason in policy.REASONS and value is None), (command.id, text, value, reason)

    # the whole chain
    with lock:
        start = len(published)
    service.handle(topic, payload, retained)
    _settle(service)
    with lock:
        new = published[start:]
    results = [json.loads(p) for t, p in new if t.endswith("/result")]
    assert results, f"no answer to {topic!r} {payload[:60]!r}"
    for body in results:
        event(f"{body.get('status')}/{body.get('reason')}")  # shown by --hypothesis-show-statistics
        assert set(body) <= RESULT_KEYS, body
        assert body["status"] in STATUSES, body
        if body["status"] == "rejected":
            assert body["reason"] in policy.REASONS, body
        if "nonce" in body:
            assert body["nonce"] == good_nonce and not retained, body  # echoed only after the signature verified
    for t, p in new:
        if t.endswith("/audit"):
            audit = json.loads(p)
            assert audit["origin"] == "mqtt" and audit["event_type"] in STATUSES
            assert audit.get("reason") is None or audit["reason"] in policy.REASONS or audit["event_type"] == "failed"
