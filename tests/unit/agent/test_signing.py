"""pilot-cmd-v1: envelopes, verification order, keyrings and the durable nonce store."""

from __future__ import annotations

import json
import os
import time
from datetime import timedelta

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

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


# ------------------------------------------------------------------ envelope strictness (Hostile input, round two)

B64 = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"


def _other_spellings(text: str) -> list[str]:
    """Spellings of the same bytes: the last character of a 43- or 22-character base64url string
    carries 2 or 4 unused bits."""
    unused = 2 if len(text) == 43 else 4
    index = B64.index(text[-1])
    top = index & ~((1 << unused) - 1)
    return [text[:-1] + B64[top | low] for low in range(1 << unused) if top | low != index]


@pytest.mark.parametrize(
    "mutate",
    [
        lambda e: e.update(nonce=e["nonce"] + "\n"),
        lambda e: e.update(kid=e["kid"] + "\n"),
        lambda e: e.update(sig=e["sig"] + "\n"),
        lambda e: e.update(v=True),
        lambda e: e.update(v=1.0),
        lambda e: e.update(ts=True),
        lambda e: e.update(ts=float(e["ts"])),
        lambda e: e.update(cmd="\ud800"),
        lambda e: e.update(cmd="PRESS\udfff"),
        lambda e: e.update(kid="k\u00e91"),
        lambda e: e.update(nonce="\uff21" * 22),  # fullwidth letters: not ASCII base64url
    ],
)
def test_non_canonical_fields_are_malformed(mutate):
    env = envelope()
    mutate(env)
    payload = json.dumps(env).encode()  # ensure_ascii: a lone surrogate travels as a \ud800 escape
    assert reason(lambda: signing.parse_envelope(payload)) == "malformed"


def test_only_the_canonical_spelling_of_a_signature_or_nonce_is_accepted():
    env = envelope()
    others = _other_spellings(env["sig"])
    assert len(others) == 3
    for sig in others:
        assert signing.b64url_decode(sig) == signing.b64url_decode(env["sig"])  # same bytes, same HMAC
        assert reason(lambda sig=sig: check({**env, "sig": sig})) == "malformed"
    for nonce in _other_spellings(env["nonce"]):
        assert reason(lambda nonce=nonce: check({**env, "nonce": nonce})) == "malformed"
    assert check(env).cmd == "PRESS"


@pytest.mark.parametrize(
    "payload",
    [
        b'{"v":1,"v":1,"kid":"k1","ts":1,"nonce":"AAAAAAAAAAAAAAAAAAAAAA","cmd":"x","sig":"' + b"A" * 43 + b'"}',
        b'{"v":1,"kid":"k1","ts":NaN,"nonce":"AAAAAAAAAAAAAAAAAAAAAA","cmd":"x","sig":"' + b"A" * 43 + b'"}',
        b'{"v":1,"kid":"k1","ts":Infinity,"nonce":"AAAAAAAAAAAAAAAAAAAAAA","cmd":"x","sig":"' + b"A" * 43 + b'"}',
    ],
)
def test_duplicate_keys_and_non_json_constants_are_malformed(payload):
    assert reason(lambda: signing.parse_envelope(payload)) == "malformed"


# hypothesis: the parser's contract over arbitrary envelope-shaped input

JSON_SCALARS = st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=50)
FIELD = {
    "v": st.one_of(st.just(1), JSON_SCALARS),
    "kid": st.one_of(st.just("k1"), st.text(max_size=40), JSON_SCALARS),
    "ts": st.one_of(st.integers(min_value=-1, max_value=2**41), st.floats(), st.booleans(), st.text(max_size=12)),
    "nonce": st.one_of(st.text(alphabet=B64 + "\n=+/", min_size=20, max_size=24), JSON_SCALARS),
    "cmd": st.one_of(st.text(max_size=60), JSON_SCALARS),
    "sig": st.one_of(st.text(alphabet=B64 + "\n=+/", min_size=41, max_size=45), JSON_SCALARS),
}
ENVELOPES = st.fixed_dictionaries(FIELD, optional={"extra": JSON_SCALARS})


@settings(max_examples=300, deadline=timedelta(milliseconds=200))
@given(env=ENVELOPES)
def test_parse_envelope_accepts_exactly_the_strict_shape(env):
    payload = json.dumps(env).encode()
    try:
        parsed = signing.parse_envelope(payload)
    except Rejected as exc:
        assert exc.reason == "malformed"
        return
    assert set(parsed) == signing.ENVELOPE_KEYS
    assert type(parsed["v"]) is int and parsed["v"] == 1
    assert type(parsed["ts"]) is int and 0 < parsed["ts"] < 2**40
    assert signing.KID_RE.fullmatch(parsed["kid"]) and "\n" not in parsed["kid"]
    assert signing.b64url(signing.b64url_decode(parsed["nonce"])) == parsed["nonce"]
    assert len(signing.b64url_decode(parsed["nonce"])) == 16
    assert signing.b64url(signing.b64url_decode(parsed["sig"])) == parsed["sig"]
    parsed["cmd"].encode("utf-8")  # never raises past the parser
    try:  # and the verifier answers with a reason, never an exception
        signing.verify(parsed, {"k1": KEY}, DEVICE, TOPIC, now=NOW, window=60)
    except Rejected as exc:
        assert exc.reason in ("unauthorized", "expired")


@settings(max_examples=200, deadline=timedelta(milliseconds=200))
@given(cmd=st.text(max_size=200), ts=st.integers(min_value=1, max_value=2**40 - 1))
def test_every_signed_envelope_parses_and_verifies(cmd, ts):
    env = signing.sign(KEY, DEVICE, TOPIC, cmd, ts=ts)
    parsed = signing.parse_envelope(json.dumps(env).encode())
    assert signing.verify(parsed, {"k1": KEY}, DEVICE, TOPIC, now=ts, window=60).cmd == cmd


@settings(max_examples=200, deadline=timedelta(milliseconds=200))
@given(data=st.binary(max_size=300))
def test_parse_envelope_only_ever_rejects_malformed(data):
    try:
        signing.parse_envelope(data)
    except Rejected as exc:
        assert exc.reason == "malformed"


# ------------------------------------------------------------------ result signatures (pilot-result-v1)


def test_result_canonical_form_is_exactly_the_documented_one():
    text = signing.canonical_result("k1", "dev1", TOPIC, "n" * 22, "rejected", "cooldown", 5).decode()
    assert text.split("\n") == ["pilot-result-v1", "k1", "dev1", TOPIC, "n" * 22, "rejected", "cooldown", "5"]
    assert signing.canonical_result("k1", "dev1", TOPIC, "n" * 22, "ok", None, 5).endswith(b"\nok\n\n5")


def test_a_result_verifies_only_with_every_field_and_the_key():
    nonce = envelope()["nonce"]
    body = {"status": "ok", "ts": NOW, "nonce": nonce}
    body["sig"] = signing.sign_result(KEY, DEVICE, TOPIC, nonce, "ok", None, NOW)
    assert signing.verify_result(body, KEY, DEVICE, TOPIC, nonce)
    other_key = Key("k1", b"x" * 32)
    assert not signing.verify_result(body, other_key, DEVICE, TOPIC, nonce)
    assert not signing.verify_result(body, KEY, "dev2", TOPIC, nonce)
    assert not signing.verify_result(body, KEY, DEVICE, "pilot/dev1/cmd/reboot/set", nonce)
    assert not signing.verify_result(body, KEY, DEVICE, TOPIC, "B" * 22)
    for change in ({"status": "dry_run"}, {"reason": "x"}, {"ts": NOW + 1}, {"ts": float(NOW)}, {"nonce": "A" * 22}):
        assert not signing.verify_result({**body, **change}, KEY, DEVICE, TOPIC, nonce), change
    for sig in _other_spellings(body["sig"]):
        assert not signing.verify_result({**body, "sig": sig}, KEY, DEVICE, TOPIC, nonce)
    assert not signing.verify_result({k: v for k, v in body.items() if k != "sig"}, KEY, DEVICE, TOPIC, nonce)
    assert not signing.verify_result(["ok"], KEY, DEVICE, TOPIC, nonce)


# ------------------------------------------------------------------ durable nonces


class Clock:
    def __init__(self, start: float = 1000.0) -> None:
        self.now = start

    def __call__(self) -> float:
        return self.now


def test_a_short_write_is_rolled_back_and_the_next_record_is_whole(tmp_path, monkeypatch):
    path = tmp_path / "nonces.log"
    store = NonceStore(path, 60, clock=Clock())
    store.admit("a" * 22, NOW)
    size = path.stat().st_size
    real = signing.write_all

    def short(fd, data):  # what a nearly full disk or RLIMIT_FSIZE does: part of it, then an error
        os.write(fd, data[:7])
        raise OSError(27, "File too large")

    monkeypatch.setattr(signing, "write_all", short)
    assert reason(lambda: store.admit("b" * 22, NOW)) == "unavailable"
    assert path.stat().st_size == size
    monkeypatch.setattr(signing, "write_all", real)
    store.admit("c" * 22, NOW)
    assert path.read_text() == f"{'a' * 22} {NOW}\n{'c' * 22} {NOW}\n"
    restarted = NonceStore(path, 60, clock=Clock())
    assert restarted.healthy
    assert reason(lambda: restarted.admit("c" * 22, NOW)) == "replayed"
    restarted.admit("b" * 22, NOW)  # never admitted before: it never ran


def test_a_failed_rollback_leaves_the_store_dirty_until_a_full_rewrite(tmp_path, monkeypatch):
    path = tmp_path / "nonces.log"
    store = NonceStore(path, 60, clock=Clock())
    store.admit("a" * 22, NOW)

    def short(fd, data):
        os.write(fd, data[:5])
        raise OSError(28, "No space left on device")

    def no_truncate(fd, size):
        raise OSError(5, "Input/output error")

    monkeypatch.setattr(signing, "write_all", short)
    monkeypatch.setattr(signing.os, "ftruncate", no_truncate)
    assert reason(lambda: store.admit("b" * 22, NOW)) == "unavailable"
    assert store.dirty and not store.healthy
    assert reason(lambda: store.admit("c" * 22, NOW)) == "unavailable"  # rewrite fails too (short write)
    assert not NonceStore(path, 60).healthy  # the partial record is never read as a record
    monkeypatch.undo()
    store.admit("d" * 22, NOW)  # the rewrite from memory succeeds first, then the append
    assert store.healthy
    lines = path.read_text().splitlines()
    assert lines[0].startswith("watermark ") and lines[1:] == [f"{'a' * 22} {NOW}", f"{'d' * 22} {NOW}"]
    assert reason(lambda: NonceStore(path, 60).admit("a" * 22, NOW)) == "replayed"


@pytest.mark.parametrize(
    "content",
    [
        b"%s 1764246000\n%s 17642" % (b"a" * 22, b"b" * 22),  # torn tail
        b"%s 17%s 1764246000\n" % (b"a" * 22, b"b" * 22),  # glued: a partial record and the next one
        b"%s\n 1764246000\n" % (b"a" * 22),  # a nonce with a trailing newline, split in two
        b"%s 1764246000 \n" % (b"a" * 22),
        b"%s 1764246000\r\n" % (b"a" * 22),
        b"%s  1764246000\n" % (b"a" * 22),
        b"\n",
        b"%s 1764246000\n\xff\n" % (b"a" * 22),
        b"watermark x\n",
    ],
)
def test_any_unreadable_record_fails_the_store_with_a_reason(tmp_path, content, caplog):
    path = tmp_path / "nonces.log"
    path.write_bytes(content)
    store = NonceStore(path, 60)
    assert store.error is not None and "line" in store.error
    assert reason(lambda: store.admit("z" * 22, NOW)) == "unavailable"
    assert "signed commands are refused" in caplog.text
    assert path.read_bytes() == content  # never "repaired" by dropping what it cannot read


def test_forgetting_follows_the_monotonic_clock_and_a_watermark_keeps_forgotten_nonces_dead(tmp_path):
    """A wall-clock jump cannot make the store forget a nonce: only elapsed (monotonic) time does, and
    what it forgets stays refused, whatever the wall clock says when the envelope comes back."""
    mono = Clock()
    path = tmp_path / "nonces.log"
    store = NonceStore(path, 60, clock=mono, compact_every=2)
    store.admit("a" * 22, NOW)
    mono.now += 119  # less than 2 * window: kept, however far the wall clock has moved
    assert reason(lambda: store.admit("a" * 22, NOW)) == "replayed"
    mono.now += 2
    store.admit("b" * 22, NOW + 121)  # prunes `a`, raises the watermark, compacts (every 2 appends)
    assert store.watermark == NOW
    # the wall clock is set back: the old envelope would verify again, its nonce is forgotten
    assert reason(lambda: store.admit("a" * 22, NOW)) == "expired"
    assert reason(lambda: store.admit("q" * 22, NOW - 5)) == "expired"
    restarted = NonceStore(path, 60, clock=Clock())  # the watermark was written with the compaction
    assert restarted.watermark == NOW
    assert reason(lambda: restarted.admit("a" * 22, NOW)) == "expired"
    assert reason(lambda: restarted.admit("b" * 22, NOW + 121)) == "replayed"


def test_nonces_read_at_start_are_kept_for_two_windows_of_elapsed_time(tmp_path):
    path = tmp_path / "nonces.log"
    path.write_text(f"{'a' * 22} {NOW - 10_000}\n")  # old by the sender's clock: kept anyway
    mono = Clock()
    store = NonceStore(path, 60, clock=mono)
    mono.now += 100
    store.admit("b" * 22, NOW)
    assert reason(lambda: store.admit("a" * 22, NOW - 10_000)) == "replayed"


# ------------------------------------------------------------------ the keyring file


def test_a_keyring_symlink_is_refused_even_to_a_private_file(tmp_path):
    ring = tmp_path / "keyring"
    ring.write_text(signing.new_key_line("k1") + "\n")
    ring.chmod(0o600)
    link = tmp_path / "link"
    link.symlink_to(ring)
    with pytest.raises(signing.KeyringError, match=r"link.* is a symbolic link"):
        signing.load_keyring(link)


@pytest.mark.parametrize(
    "mode, word",
    [(0o640, "readable"), (0o604, "readable"), (0o620, "writable"), (0o602, "writable"), (0o610, "executable")],
)
def test_a_keyring_others_can_use_is_refused_naming_file_and_mode(tmp_path, mode, word):
    ring = tmp_path / "keyring"
    ring.write_text(signing.new_key_line("k1") + "\n")
    ring.chmod(mode)
    with pytest.raises(signing.KeyringError, match=f"{ring}.* is {word} by others \\(mode {mode:04o}\\)"):
        signing.load_keyring(ring)


def test_a_keyring_owned_by_another_user_is_refused(tmp_path):
    if os.geteuid() != 0:
        pytest.skip("giving a file to another user needs root")
    ring = tmp_path / "keyring"
    ring.write_text(signing.new_key_line("k1") + "\n")
    ring.chmod(0o600)
    os.chown(ring, 4242, -1)
    with pytest.raises(signing.KeyringError, match="owned by uid 4242, not by the service user"):
        signing.load_keyring(ring)


def test_a_keyring_that_is_not_a_regular_file_is_refused(tmp_path):
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo, 0o600)
    with pytest.raises(signing.KeyringError, match="not a regular file"):
        signing.load_keyring(fifo)  # O_NONBLOCK: opening a FIFO does not hang
