"""pilot-cmd-v1: envelopes, verification order, keyrings and the durable nonce store."""

from __future__ import annotations

import json
import os
import time

import pytest

from pilot.agent import signing
from pilot.agent.signing import Key, NonceStore, Rejected

KEY = Key("k1", b"0123456789abcdef0123456789abcdef")
DEVICE, TOPIC = "dev1", "pilot/dev1/cmd/shutdown/set"
NOW = 1_764_246_000


def envelope(**overrides):
    env = signing.sign(KEY, DEVICE, TOPIC, "PRESS", ts=NOW)
    env.update(overrides)
    return env


def check(env, *, keys=None, device=DEVICE, topic=TOPIC, now=NOW, window=60):
    payload = json.dumps(env).encode()
    parsed = signing.parse_envelope(payload)
    return signing.verify(parsed, keys if keys is not None else {"k1": KEY}, device, topic, now=now, window=window)


def reason(fn):
    with pytest.raises(Rejected) as info:
        fn()
    return info.value.reason


def test_a_good_envelope_verifies_and_returns_the_command():
    verified = check(envelope())
    assert verified.cmd == "PRESS" and verified.kid == "k1" and len(verified.nonce) == 22


def test_canonical_form_is_exactly_the_design():
    import hashlib

    text = signing.canonical("k1", "dev1", "t", 5, "n" * 22, b"PRESS").decode()
    assert text.split("\n") == ["pilot-cmd-v1", "k1", "dev1", "t", "5", "n" * 22, hashlib.sha256(b"PRESS").hexdigest()]


@pytest.mark.parametrize(
    "mutate",
    [
        lambda e: e.update(cmd="PRESS "),
        lambda e: e.update(sig=("A" if e["sig"][0] != "A" else "B") + e["sig"][1:]),
        lambda e: e.update(nonce=("A" if e["nonce"][0] != "A" else "B") + e["nonce"][1:]),
        lambda e: e.update(ts=e["ts"] + 1),
    ],
)
def test_any_flipped_field_is_unauthorized(mutate):
    env = envelope()
    mutate(env)
    assert reason(lambda: check(env)) == "unauthorized"


def test_signed_for_another_device_or_topic_is_unauthorized():
    assert reason(lambda: check(envelope(), device="dev2")) == "unauthorized"
    assert reason(lambda: check(envelope(), topic="pilot/dev1/cmd/reboot/set")) == "unauthorized"


def test_unknown_revoked_and_expired_keys_are_unauthorized():
    assert reason(lambda: check(envelope(), keys={})) == "unauthorized"
    assert reason(lambda: check(envelope(), keys={"k1": Key("k1", KEY.secret, "revoked")})) == "unauthorized"
    assert reason(lambda: check(envelope(), keys={"k1": Key("k1", KEY.secret, not_after=NOW - 1)})) == "unauthorized"
    assert check(envelope(), keys={"k1": Key("k1", KEY.secret, "verify_only")}).cmd == "PRESS"


@pytest.mark.parametrize("skew, ok", [(60, True), (61, False), (-60, True), (-61, False)])
def test_timestamps_at_and_just_past_the_window(skew, ok):
    if ok:
        assert check(envelope(), now=NOW + skew).cmd == "PRESS"
    else:
        assert reason(lambda: check(envelope(), now=NOW + skew)) == "expired"


@pytest.mark.parametrize(
    "payload",
    [
        b"PRESS",
        b"\xff\xfe",
        b"{}",
        b"[]",
        b'{"v": 1}',
        b"null",
        b"[" * 5000 + b"]" * 5000,
        json.dumps({**signing.sign(KEY, DEVICE, TOPIC, "PRESS", ts=NOW), "extra": 1}).encode(),
        json.dumps({**signing.sign(KEY, DEVICE, TOPIC, "PRESS", ts=NOW), "v": 2}).encode(),
        json.dumps({**signing.sign(KEY, DEVICE, TOPIC, "PRESS", ts=NOW), "ts": "1764246000"}).encode(),
        json.dumps({**signing.sign(KEY, DEVICE, TOPIC, "PRESS", ts=NOW), "nonce": "short"}).encode(),
        json.dumps({**signing.sign(KEY, DEVICE, TOPIC, "PRESS", ts=NOW), "kid": "../etc"}).encode(),
    ],
)
def test_malformed_envelopes(payload):
    assert reason(lambda: signing.parse_envelope(payload)) == "malformed"


def test_nonce_store_rejects_replays_and_survives_restart(tmp_path):
    clock = [float(NOW)]
    store = NonceStore(tmp_path / "nonces.log", 60, clock=lambda: clock[0])
    store.admit("a" * 22, NOW)
    assert reason(lambda: store.admit("a" * 22, NOW)) == "replayed"
    restarted = NonceStore(tmp_path / "nonces.log", 60, clock=lambda: clock[0])
    assert reason(lambda: restarted.admit("a" * 22, NOW)) == "replayed"
    assert oct(os.stat(tmp_path / "nonces.log").st_mode & 0o777) == "0o600"


def test_nonce_store_is_bounded_and_refuses_busy_rather_than_evicting(tmp_path):
    clock = [float(NOW)]
    store = NonceStore(tmp_path / "n.log", 60, capacity=3, clock=lambda: clock[0])
    for i in range(3):
        store.admit(f"{i:022d}", NOW)
    assert reason(lambda: store.admit("x" * 22, NOW)) == "busy"
    clock[0] += 500  # every stored nonce is now outside any window: they can be dropped
    store.admit("x" * 22, NOW + 500)


def test_nonce_store_fails_closed(tmp_path):
    blocker = tmp_path / "dir-not-file"
    blocker.mkdir()
    store = NonceStore(blocker, 60)  # reading a directory fails: the store is unhealthy
    assert reason(lambda: store.admit("a" * 22, NOW)) == "unavailable"
    readonly = tmp_path / "ro"
    readonly.mkdir()
    store = NonceStore(readonly / "sub" / "n.log", 60)
    readonly.chmod(0o500)
    try:
        if os.geteuid() != 0:
            assert reason(lambda: store.admit("b" * 22, NOW)) == "unavailable"
    finally:
        readonly.chmod(0o700)


def test_keyring_permissions_and_format(tmp_path):
    ring = tmp_path / "keyring"
    ring.write_text("# comment\n" + signing.new_key_line("k1") + "\nold " + signing.b64url(b"x" * 32) + " revoked\n")
    ring.chmod(0o644)
    with pytest.raises(signing.KeyringError, match="readable by others"):
        signing.load_keyring(ring)
    ring.chmod(0o600)
    keys = signing.load_keyring(ring)
    assert keys["k1"].state == "active" and keys["old"].state == "revoked"
    ring.write_text("k1 c2hvcnQ\n")
    with pytest.raises(signing.KeyringError, match="shorter than 16 bytes"):
        signing.load_keyring(ring)


def test_a_corrupt_nonce_store_fails_closed_instead_of_crashing(tmp_path):
    """Regression (code review, 675ba29): a nonce log that is not text raised UnicodeDecodeError and
    crashed the agent; the store now fails closed (signed commands answer `unavailable`)."""
    log = tmp_path / "nonces.log"
    log.write_bytes(b"\xff\xfe not text\n")
    store = signing.NonceStore(log, 60)
    with pytest.raises(signing.Rejected) as info:
        store.admit("a" * 22, time.time())
    assert info.value.reason == "unavailable"
