"""pilot-cmd-v1: envelopes, verification order, keyrings and the durable nonce store."""

from __future__ import annotations

import errno
import json
import os
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


def test_nonce_store_fails_closed(tmp_path, monkeypatch):
    blocker = tmp_path / "dir-not-file"
    blocker.mkdir()
    store = NonceStore(blocker, 60, clock=Clock())  # reading a directory fails: the store is unhealthy
    assert reason(lambda: store.admit("a" * 22, NOW)) == "unavailable"
    # a directory that cannot be created (read-only file system): injected, so it holds as root too
    faults = Faults(tmp_path / "ro", monkeypatch)
    store = NonceStore(tmp_path / "ro" / "sub" / "n.log", 60, clock=Clock())
    faults.arm("mkdir", errno.EROFS)
    assert reason(lambda: store.admit("b" * 22, NOW)) == "unavailable"
    assert not (tmp_path / "ro").exists()
    faults.clear()
    store.admit("b" * 22, NOW)
    assert (tmp_path / "ro" / "sub" / "n.log").read_text() == f"{'b' * 22} {NOW}\n"


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
    store = signing.NonceStore(log, 60, clock=Clock())
    with pytest.raises(signing.Rejected) as info:
        store.admit("a" * 22, NOW)
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


class Faults:
    """Faults injected at the lowest layer the store uses (os.open, os.write, os.fsync, os.ftruncate,
    os.replace, os.mkdir), only for paths under `root`: a full disk, a read-only or failing file system
    without root, a real device or a real full disk. pytest and logging never see a fault.

    `arm(call, errno, times=None, only=None)`: the call fails with errno (`times` times, or until
    `clear()`), for paths ending in `only` if given. `budget`: bytes an armed write still gets down
    before it raises (a short write then an error). `chunk`: at most this many bytes per os.write, with
    no error (0: os.write returns 0, as it may on a full disk)."""

    CALLS = ("open", "write", "fsync", "close", "ftruncate", "replace", "mkdir", "fstat")

    def __init__(self, root, monkeypatch) -> None:
        self.root = os.fspath(root)
        self.armed: dict[str, list] = {}
        self.budget: int | None = None
        self.chunk: int | None = None
        self.paths: dict[int, str] = {}  # our open descriptors -> their paths
        self.opened: list[tuple[str, int]] = []  # (path, flags) of every open under root
        self.double_closes: list[str] = []  # paths whose descriptor was closed twice
        self.real = {name: getattr(os, name) for name in self.CALLS}
        for name in self.CALLS:
            monkeypatch.setattr(os, name, getattr(self, "_" + name))

    def arm(self, call: str, err: int, times: int | None = None, only: str | None = None) -> None:
        self.armed[call] = [err, times, only]

    def clear(self) -> None:
        self.armed.clear()
        self.budget = self.chunk = None

    def _mine(self, path) -> bool:
        return os.fspath(path).startswith(self.root)

    def _fault(self, call: str, path: str) -> None:
        entry = self.armed.get(call)
        if entry is None or (entry[2] is not None and not path.endswith(entry[2])):
            return
        if entry[1] is not None:
            entry[1] -= 1
            if entry[1] == 0:
                del self.armed[call]
        raise OSError(entry[0], os.strerror(entry[0]))

    def _open(self, path, flags, mode=0o777, *, dir_fd=None):
        if self._mine(path):
            self._fault("open" if flags & (os.O_WRONLY | os.O_RDWR) else "open_read", os.fspath(path))
        fd = self.real["open"](path, flags, mode, dir_fd=dir_fd)
        if self._mine(path):
            self.paths[fd] = os.fspath(path)
            self.opened.append((os.fspath(path), flags))
        return fd

    def _close(self, fd):
        path = self.paths.pop(fd, None)
        try:
            self.real["close"](fd)  # as Linux does: the descriptor is freed even when close reports an error
        except OSError as exc:
            if exc.errno == errno.EBADF and path is not None:
                self.double_closes.append(path)  # closed behind our back (a file object), then again
            raise
        if path is not None:
            self._fault("close", path)

    def _write(self, fd, data):
        path = self.paths.get(fd)
        if path is None:
            return self.real["write"](fd, data)
        if self.chunk is not None:
            data = data[: self.chunk]
            if not data:
                return 0
        entry = self.armed.get("write")
        if entry is not None and self.budget and (entry[2] is None or path.endswith(entry[2])):
            written = self.real["write"](fd, data[: self.budget])
            self.budget -= written
            return written
        self._fault("write", path)
        return self.real["write"](fd, data)

    def _fsync(self, fd):
        if fd in self.paths:
            self._fault("fsync", self.paths[fd])
        return self.real["fsync"](fd)

    def _ftruncate(self, fd, size):
        if fd in self.paths:
            self._fault("ftruncate", self.paths[fd])
        return self.real["ftruncate"](fd, size)

    def _replace(self, src, dst, **kwargs):
        if self._mine(dst):
            self._fault("replace", os.fspath(dst))
        return self.real["replace"](src, dst, **kwargs)

    def _fstat(self, fd):
        if fd in self.paths:
            self._fault("fstat", self.paths[fd])
        return self.real["fstat"](fd)

    def _mkdir(self, path, mode=0o777, **kwargs):
        if self._mine(path):
            self._fault("mkdir", os.fspath(path))
        return self.real["mkdir"](path, mode, **kwargs)


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
    assert not NonceStore(path, 60, clock=Clock()).healthy  # the partial record is never read as a record
    monkeypatch.undo()
    store.admit("d" * 22, NOW)  # the rewrite from memory succeeds first, then the append
    assert store.healthy
    lines = path.read_text().splitlines()
    assert lines[0].startswith("watermark ") and lines[1:] == [f"{'a' * 22} {NOW}", f"{'d' * 22} {NOW}"]
    assert reason(lambda: NonceStore(path, 60, clock=Clock()).admit("a" * 22, NOW)) == "replayed"


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
    store = NonceStore(path, 60, clock=Clock())
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


# ------------------------------------------------------------------ faults at the lowest layer (no root needed)

A, B, C, D = ("a" * 22, "b" * 22, "c" * 22, "d" * 22)


def record(*nonces, ts=NOW) -> str:
    return "".join(f"{n} {ts}\n" for n in nonces)


def replayed_after_restart(path, nonce, ts=NOW) -> bool:
    store = NonceStore(path, 60, clock=Clock())
    assert store.healthy, store.error
    try:
        store.admit(nonce, ts)
    except Rejected as exc:
        return exc.reason == "replayed"
    return False


def test_short_writes_without_an_error_still_put_down_whole_records(tmp_path, monkeypatch):
    path = tmp_path / "nonces.log"
    faults = Faults(tmp_path, monkeypatch)
    faults.chunk = 3  # the file system takes three bytes per write(2)
    store = NonceStore(path, 60, clock=Clock(), compact_every=2)
    store.admit(A, NOW)
    assert path.read_text() == record(A)
    store.admit(B, NOW)  # and the compaction's rewrite too
    assert path.read_text() == "watermark 0\n" + record(A, B)
    assert store.healthy and replayed_after_restart(path, A) and replayed_after_restart(path, B)


@pytest.mark.parametrize("err", [errno.ENOSPC, errno.EROFS, errno.EIO, errno.EFBIG])
def test_a_write_that_fails_midway_is_rolled_back_and_the_store_recovers(tmp_path, monkeypatch, err):
    path = tmp_path / "nonces.log"
    faults = Faults(tmp_path, monkeypatch)
    store = NonceStore(path, 60, clock=Clock())
    store.admit(A, NOW)
    faults.arm("write", err)
    faults.budget = 7  # seven bytes reach the file, then the error
    assert reason(lambda: store.admit(B, NOW)) == "unavailable"
    assert path.read_text() == record(A) and store.healthy  # the partial record was truncated away
    faults.budget = None
    assert reason(lambda: store.admit(B, NOW)) == "unavailable"  # fails before any byte: nothing to undo
    assert path.read_text() == record(A)
    faults.clear()
    store.admit(C, NOW)
    store.admit(B, NOW)  # refused before: it never ran, so it is not a replay
    assert path.read_text() == record(A, C, B)
    assert all(replayed_after_restart(path, n) for n in (A, B, C))


def test_a_write_that_returns_zero_is_a_full_disk_not_a_loop(tmp_path, monkeypatch):
    path = tmp_path / "nonces.log"
    faults = Faults(tmp_path, monkeypatch)
    store = NonceStore(path, 60, clock=Clock())
    faults.chunk = 0
    assert reason(lambda: store.admit(A, NOW)) == "unavailable"
    assert path.read_bytes() == b"" and store.healthy
    faults.clear()
    store.admit(A, NOW)
    assert path.read_text() == record(A)


@pytest.mark.parametrize("err", [errno.EROFS, errno.EIO, errno.ENOSPC, errno.EACCES])
def test_a_log_that_cannot_be_opened_for_writing_refuses_and_recovers(tmp_path, monkeypatch, err, caplog):
    path = tmp_path / "nonces.log"
    faults = Faults(tmp_path, monkeypatch)
    store = NonceStore(path, 60, clock=Clock())
    store.admit(A, NOW)
    faults.arm("open", err)
    assert reason(lambda: store.admit(B, NOW)) == "unavailable"
    assert reason(lambda: store.admit(B, NOW)) == "unavailable"  # for as long as the fault lasts
    assert os.strerror(err) in caplog.text and str(path) in caplog.text
    assert path.read_text() == record(A) and store.healthy
    faults.clear()
    store.admit(B, NOW)
    assert path.read_text() == record(A, B)


def test_a_failed_fsync_is_rolled_back_when_the_rollback_works(tmp_path, monkeypatch):
    path = tmp_path / "nonces.log"
    faults = Faults(tmp_path, monkeypatch)
    store = NonceStore(path, 60, clock=Clock())
    store.admit(A, NOW)
    faults.arm("fsync", errno.EIO, times=1)  # the record's fsync fails, the rollback's succeeds
    assert reason(lambda: store.admit(B, NOW)) == "unavailable"
    assert path.read_text() == record(A) and store.healthy
    store.admit(B, NOW)
    assert path.read_text() == record(A, B)


def test_a_store_that_cannot_fsync_stays_dirty_and_never_renames_a_log_into_place(tmp_path, monkeypatch):
    """fsync fails for good (EIO): the rollback cannot be made durable, so the store is dirty and every
    signed command is refused; each rewrite attempt fails before its rename, leaving no tmp file and
    the old log in place. When the fault stops, the first command rewrites the log from memory."""
    path = tmp_path / "nonces.log"
    faults = Faults(tmp_path, monkeypatch)
    store = NonceStore(path, 60, clock=Clock())
    store.admit(A, NOW)
    faults.arm("fsync", errno.EIO)
    assert reason(lambda: store.admit(B, NOW)) == "unavailable"
    assert store.dirty and not store.healthy
    for nonce in (C, B):
        assert reason(lambda nonce=nonce: store.admit(nonce, NOW)) == "unavailable"
        assert path.read_text() == record(A)
        assert sorted(p.name for p in tmp_path.iterdir()) == ["nonces.log"]
    assert reason(lambda: store.admit(A, NOW)) == "replayed"  # memory still knows every admitted nonce
    faults.clear()
    store.admit(D, NOW)
    assert store.healthy
    assert path.read_text() == "watermark 0\n" + record(A) + record(D)
    assert replayed_after_restart(path, A) and replayed_after_restart(path, D)
    assert not replayed_after_restart(path, B) and not replayed_after_restart(path, C)


@pytest.mark.parametrize(
    "call, err, budget",
    [
        ("write", errno.ENOSPC, 12),  # a partial tmp file
        ("write", errno.EIO, None),  # an empty one
        ("fsync", errno.EIO, None),
        ("open", errno.EROFS, None),
        ("replace", errno.EIO, None),
    ],
)
def test_a_failed_compaction_renames_nothing_into_place_and_is_retried(tmp_path, monkeypatch, call, err, budget):
    """The append-only log stays the truth when a compaction fails at any step; the command that
    triggered it was recorded (appended and fsynced) and is admitted. The next admission retries."""
    path = tmp_path / "nonces.log"
    faults = Faults(tmp_path, monkeypatch)
    store = NonceStore(path, 60, clock=Clock(), compact_every=2)
    store.admit(A, NOW)
    faults.arm(call, err, only=".tmp" if call != "replace" else None)
    faults.budget = budget
    store.admit(B, NOW)  # appended, then the compaction fails
    assert store.healthy
    assert path.read_text() == record(A, B)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["nonces.log"]
    assert replayed_after_restart(path, A) and replayed_after_restart(path, B)
    store.admit(C, NOW)  # still failing: appended, compaction retried and failed again
    assert path.read_text() == record(A, B, C)
    faults.clear()
    store.admit(D, NOW)
    assert path.read_text() == "watermark 0\n" + record(A, B, C, D)
    assert all(replayed_after_restart(path, n) for n in (A, B, C, D))


@pytest.mark.parametrize("err", [errno.EIO, errno.EACCES])
def test_a_log_that_cannot_be_opened_at_start_fails_the_store_until_restart(tmp_path, monkeypatch, err, caplog):
    path = tmp_path / "nonces.log"
    path.write_text(record(A))
    faults = Faults(tmp_path, monkeypatch)
    faults.arm("open_read", err)
    store = NonceStore(path, 60, clock=Clock())
    assert store.error == f"cannot be opened ({os.strerror(err)})"
    assert "signed commands are refused" in caplog.text
    faults.clear()
    assert reason(lambda: store.admit(B, NOW)) == "unavailable"  # only a restart clears a failed store
    assert path.read_text() == record(A)
    assert replayed_after_restart(path, A)


# ------------------------------------------------------------------ compaction and forgetting, exactly


def test_every_compaction_writes_the_whole_log_and_a_restart_refuses_every_admitted_nonce(tmp_path):
    path = tmp_path / "nonces.log"
    mono = Clock()
    store = NonceStore(path, 60, clock=mono, compact_every=3)
    admitted = []
    for i in range(8):
        nonce = f"{i:022d}"
        store.admit(nonce, NOW + i)
        admitted.append((nonce, NOW + i))
        mono.now += 1
        for old, ts in admitted:
            assert replayed_after_restart(path, old, ts), (i, old)
    # compactions after the 3rd and 6th admissions; the 7th and 8th are appended
    assert path.read_text() == "watermark 0\n" + "".join(f"{n} {ts}\n" for n, ts in admitted)


def test_a_compaction_drops_only_forgotten_nonces_and_writes_the_watermark(tmp_path):
    path = tmp_path / "nonces.log"
    mono = Clock()
    store = NonceStore(path, 60, clock=mono, compact_every=3)
    store.admit(A, NOW + 7)  # admitted first, with the newest ts: the watermark is the max of forgotten ts
    mono.now += 10
    store.admit(B, NOW)
    mono.now += 110  # A: 120 s (2 windows) since admission, forgotten; B: 110 s, kept
    store.admit(C, NOW + 200)  # prunes A, then compacts
    assert store.watermark == NOW + 7
    assert path.read_text() == f"watermark {NOW + 7}\n" + record(B, ts=NOW) + record(C, ts=NOW + 200)
    restarted = NonceStore(path, 60, clock=Clock())
    assert restarted.watermark == NOW + 7
    assert reason(lambda: restarted.admit(A, NOW + 7)) == "expired"
    assert reason(lambda: restarted.admit(B, NOW)) == "replayed"  # a ts below the watermark, still known


def test_the_watermark_only_rises_whatever_order_nonces_are_forgotten_in(tmp_path):
    mono = Clock()
    path = tmp_path / "n.log"
    path.write_text(f"watermark {NOW + 3}\n")
    store = NonceStore(path, 60, clock=mono)
    store.admit(A, NOW + 7)
    store.admit(B, NOW + 5)  # admitted later, older by its ts
    store.admit(C, NOW + 4)
    mono.now += 120
    store.admit(D, NOW + 200)  # forgets A, B and C
    assert store.watermark == NOW + 7
    assert reason(lambda: store.admit("e" * 22, NOW + 7)) == "expired"


def test_prune_keeps_every_nonce_inside_two_windows_when_the_store_is_full(tmp_path):
    mono = Clock()
    store = NonceStore(tmp_path / "n.log", 60, capacity=3, clock=mono)
    store.admit(A, NOW)
    mono.now += 50
    store.admit(B, NOW + 50)
    mono.now += 50
    store.admit(C, NOW + 100)
    mono.now += 19.5  # A is 119.5 s old: nothing may be forgotten yet
    assert reason(lambda: store.admit(D, NOW + 120)) == "busy"
    assert store.watermark == 0
    mono.now += 0.5  # A is exactly 2 windows old: forgotten; B (70 s) and C (20 s) are not
    store.admit(D, NOW + 120)
    assert store.watermark == NOW
    assert reason(lambda: store.admit(A, NOW)) == "expired"
    assert reason(lambda: store.admit(B, NOW + 50)) == "replayed"
    assert reason(lambda: store.admit(C, NOW + 100)) == "replayed"
    assert reason(lambda: store.admit("e" * 22, NOW + 120)) == "busy"  # B, C, D: full, none forgettable


def test_a_window_of_zero_forgets_a_nonce_only_after_time_has_passed(tmp_path):
    """Boundaries of the monotonic rule, window 30: kept at 59.9 s, forgotten at 60 s."""
    mono = Clock()
    store = NonceStore(tmp_path / "n.log", 30, clock=mono)
    store.admit(A, NOW)
    mono.now += 59.9
    store.admit(B, NOW)
    assert store.watermark == 0 and reason(lambda: store.admit(A, NOW)) == "replayed"
    mono.now += 0.1
    store.admit(C, NOW + 1)
    assert store.watermark == NOW


def test_a_log_is_read_whole_with_every_record_and_the_highest_watermark(tmp_path):
    path = tmp_path / "nonces.log"
    path.write_text(f"watermark {NOW - 5}\n" + record(A) + f"watermark {NOW - 9}\n" + record(B, C, ts=NOW + 1))
    store = NonceStore(path, 60, clock=Clock())
    assert store.healthy and store.watermark == NOW - 5
    for nonce, ts in ((A, NOW), (B, NOW + 1), (C, NOW + 1)):
        assert reason(lambda nonce=nonce, ts=ts: store.admit(nonce, ts)) == "replayed"
    assert reason(lambda: store.admit(D, NOW - 5)) == "expired"
    store.admit(D, NOW - 4)


@pytest.mark.parametrize(
    "content, message",
    [
        (record(A) + "b" * 22 + " 17", "line 2 is an incomplete record (no newline)"),
        (record(A) + "watermark\n", "line 2 is not a nonce record"),
        (record(A, B) + "x\n" + record(C), "line 3 is not a nonce record"),
    ],
)
def test_a_bad_line_is_named_by_its_number(content, message):
    with pytest.raises(signing.NonceStoreError) as info:
        signing.read_nonce_log(content.encode())
    assert str(info.value) == message


def test_a_log_path_that_is_not_a_regular_file_fails_the_store(tmp_path):
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo, 0o600)
    fd = os.open(fifo, os.O_RDWR | os.O_NONBLOCK)  # a writer, so opening it for reading does not hang
    try:
        store = NonceStore(fifo, 60, clock=Clock())
    finally:
        os.close(fd)
    assert store.error == "is not a regular file" and not store.healthy


# ------------------------------------------------------------------ keyring lines, exactly

SECRET16 = signing.b64url(b"s" * 16)


def keyring(tmp_path, text: str, mode: int = 0o600):
    ring = tmp_path / "keyring"
    ring.write_text(text)
    ring.chmod(mode)
    return ring


def test_keyring_fields_are_all_kept(tmp_path):
    ring = keyring(
        tmp_path,
        f"a {SECRET16}\n"
        "\n"
        "   # a comment line between keys, then a blank one\n"
        "\n"
        f"b-2_X {SECRET16} verify_only not_after=1764246000.5  # trailing # comment\n"
        f"c {SECRET16} not_after=17 revoked\n"
        f"d {signing.b64url(bytes(range(22)))}\n",  # 30 characters: two characters of padding to restore
    )
    assert signing.load_keyring(ring) == {
        "a": Key("a", b"s" * 16, "active", None),
        "b-2_X": Key("b-2_X", b"s" * 16, "verify_only", 1764246000.5),
        "c": Key("c", b"s" * 16, "revoked", 17.0),
        "d": Key("d", bytes(range(22)), "active", None),
    }


@pytest.mark.parametrize(
    "line, message",
    [
        (f"k1 {SECRET16} revokd", "unknown field 'revokd'"),
        (f"k1 {SECRET16} not_before=5", "unknown field 'not_before=5'"),
        (f"k1 {SECRET16} not_after=soon", "not_after is not a number"),
        (f"k1 {SECRET16} not_after=inf", "not_after is not a number"),
        (f"k1 {SECRET16} not_after=nan", "not_after is not a number"),
        (f"k1 {SECRET16} not_after=1=2", "not_after is not a number"),
        ("k1", "expected `kid secret [state] [not_after=TIME]`"),
        (f"k/1 {SECRET16}", "expected `kid secret"),
        (f"{'k' * 33} {SECRET16}", "expected `kid secret"),
        (f"k\u00e9 {SECRET16}", "expected `kid secret"),
        ("k1 " + signing.b64url(b"s" * 15), "the secret is shorter than 16 bytes"),
        ("k1 A", "the secret is not base64url"),
    ],
)
def test_a_bad_keyring_line_is_refused_naming_file_and_line(tmp_path, line, message):
    ring = keyring(tmp_path, f"# keys\nok {SECRET16}\n{line}\n")
    with pytest.raises(signing.KeyringError) as info:
        signing.load_keyring(ring)
    assert str(info.value).startswith(f"{ring}:3: ") and message in str(info.value)


def test_a_kid_of_32_characters_is_the_longest_accepted(tmp_path):
    assert set(signing.load_keyring(keyring(tmp_path, f"{'k' * 32} {SECRET16}\n"))) == {"k" * 32}


def test_a_new_key_line_is_a_fresh_32_byte_active_key(tmp_path):
    line = signing.new_key_line("k9")
    kid, secret, state = line.split(" ")
    assert (kid, state, len(secret)) == ("k9", "active", 43)
    assert signing.load_keyring(keyring(tmp_path, line + "\n"))["k9"].secret == signing.b64url_decode(secret)
    assert signing.new_key_line("k9") != line


def test_a_keyring_just_at_the_size_limit_is_read_and_one_byte_more_is_refused(tmp_path):
    key = f"\nk1 {SECRET16}\n"  # last: a read cut short would lose it
    ring = keyring(tmp_path, "#" * (signing.MAX_KEYRING - len(key)) + key)
    assert set(signing.load_keyring(ring)) == {"k1"}
    ring = keyring(tmp_path, "#" * (signing.MAX_KEYRING - len(key) + 1) + key)
    with pytest.raises(signing.KeyringError, match=f"larger than {signing.MAX_KEYRING} bytes"):
        signing.load_keyring(ring)


def test_a_keyring_that_is_not_utf8_or_missing_is_refused(tmp_path):
    ring = tmp_path / "keyring"
    ring.write_bytes(b"k1 \xff\xfe\n")
    ring.chmod(0o600)
    with pytest.raises(signing.KeyringError, match="is not UTF-8 text"):
        signing.load_keyring(ring)
    with pytest.raises(signing.KeyringError, match="cannot read keyring .*missing: No such file"):
        signing.load_keyring(tmp_path / "missing")


def stat_of(mode: int, uid: int) -> os.stat_result:
    return os.stat_result((mode, 1, 1, 1, uid, 0, 10, 0, 0, 0))


@pytest.mark.parametrize(
    "mode, word",
    [
        (0o660, "readable"),
        (0o606, "readable"),
        (0o640, "readable"),
        (0o604, "readable"),
        (0o644, "readable"),
        (0o670, "readable"),
        (0o630, "writable"),
        (0o603, "writable"),
        (0o611, "executable"),
        (0o601, "executable"),
    ],
)
def test_check_private_refuses_any_group_or_other_bit(mode, word):
    with pytest.raises(signing.KeyringError) as info:
        signing.check_private("ring", stat_of(0o100000 | mode, os.geteuid()))
    assert str(info.value) == f"keyring ring is {word} by others (mode {mode:04o}); run: chmod 600 ring"


@pytest.mark.parametrize("mode", [0o600, 0o400, 0o700, 0o200])
def test_check_private_accepts_a_file_only_its_owner_can_use(mode):
    signing.check_private("ring", stat_of(0o100000 | mode, os.geteuid()))


def test_check_private_accepts_the_service_user_or_root_as_owner_and_no_one_else(monkeypatch):
    """Without root: the effective uid is injected, the owner is a stat result."""
    monkeypatch.setattr(signing.os, "geteuid", lambda: 1000)
    signing.check_private("ring", stat_of(0o100600, 1000))
    signing.check_private("ring", stat_of(0o100600, 0))
    for uid in (1001, 999, 4242):
        with pytest.raises(signing.KeyringError) as info:
            signing.check_private("ring", stat_of(0o100600, uid))
        assert str(info.value) == (
            f"keyring ring is owned by uid {uid}, not by the service user (uid 1000) or root; run: chown 1000 ring"
        )
    with pytest.raises(signing.KeyringError, match="^keyring ring is not a regular file$"):
        signing.check_private("ring", stat_of(0o040700, 1000))


# ------------------------------------------------------------------ envelope boundaries


@pytest.mark.parametrize(
    "change, ok",
    [
        ({"ts": 1}, True),
        ({"ts": 0}, False),
        ({"ts": -1}, False),
        ({"ts": 2**40 - 1}, True),
        ({"ts": 2**40}, False),
        ({"cmd": "x" * 4096}, True),
        ({"cmd": "x" * 4097}, False),
        ({"kid": "k" * 32}, True),
        ({"kid": "k" * 33}, False),
        ({"kid": ""}, False),
    ],
)
def test_envelope_field_limits(change, ok):
    env = {**envelope(), **change}
    payload = json.dumps(env).encode()
    if ok:
        assert signing.parse_envelope(payload) == env
    else:
        assert reason(lambda: signing.parse_envelope(payload)) == "malformed"


@pytest.mark.parametrize(
    "text, size, ok",
    [
        ("A" * 43, 32, True),
        ("A" * 42 + "E", 32, True),
        ("A" * 42 + "B", 32, False),  # unused bits set
        ("A" * 44, 32, False),
        ("A" * 42, 32, False),
        ("A" * 22, 16, True),
        ("A" * 21 + "Q", 16, True),
        ("A" * 21 + "B", 16, False),
        ("A" * 41 + "!!", 32, False),  # decodes to too few characters: a padding error, not an exception
        ("A" * 42 + "\u00c0", 32, False),
    ],
)
def test_canonical_b64url_accepts_only_the_one_spelling(text, size, ok):
    assert signing.canonical_b64url(text, size) is ok


def test_a_key_is_usable_up_to_and_including_its_not_after():
    keys = {"k1": Key("k1", KEY.secret, not_after=NOW + 10)}
    assert check(envelope(), keys=keys, now=NOW + 10).cmd == "PRESS"
    assert reason(lambda: check(envelope(), keys=keys, now=NOW + 10.5)) == "unauthorized"


def test_verified_carries_the_envelope_fields():
    env = envelope()
    assert check(env, now=NOW + 3) == signing.Verified("PRESS", env["nonce"], "k1", NOW)


def test_a_forged_result_with_an_odd_signature_string_is_refused_not_raised():
    body = {"status": "ok", "ts": NOW, "nonce": "A" * 22}
    for sig in ("A" * 41 + "!!", "=" * 43, "A" * 43 + "=", "", None, 5):
        assert not signing.verify_result({**body, "sig": sig}, KEY, DEVICE, TOPIC, "A" * 22)
    # correctly signed over the very field values, but a field is not of its fixed shape
    for bad in ({"status": "OK"}, {"status": ""}, {"reason": ""}, {"reason": 5}, {"ts": "1"}, {"ts": True}):
        signed = {**body, **bad}
        why = signed.get("reason")
        signed["sig"] = signing.sign_result(
            KEY, DEVICE, TOPIC, "A" * 22, signed["status"], None if why is None else str(why), signed["ts"]
        )
        assert not signing.verify_result(signed, KEY, DEVICE, TOPIC, "A" * 22), bad


# ------------------------------------------------------------------ what the store says, and how it opens files


def messages(caplog) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.name == "pilot.signing"]


def test_each_store_fault_is_logged_naming_the_file_and_the_error(tmp_path, monkeypatch, caplog):
    path = tmp_path / "nonces.log"
    faults = Faults(tmp_path, monkeypatch)
    store = NonceStore(path, 60, clock=Clock())
    faults.arm("open", errno.EROFS, times=1)
    reason(lambda: store.admit(A, NOW))
    faults.arm("write", errno.ENOSPC, times=1)
    reason(lambda: store.admit(A, NOW))
    faults.arm("fstat", errno.EIO, times=1)
    reason(lambda: store.admit(A, NOW))
    assert store.dirty  # the size before the write is unknown: nothing can be rolled back
    faults.arm("write", errno.EIO, times=1)  # the rewrite fails
    reason(lambda: store.admit(A, NOW))
    store.admit(A, NOW)
    assert messages(caplog) == [
        f"cannot open the nonce store {path}: Read-only file system; signed commands answer unavailable",
        f"cannot record a nonce in {path}: No space left on device; the command is refused (unavailable)",
        f"cannot record a nonce in {path}: Input/output error",
        f"cannot rewrite the nonce store {path}: Input/output error",
        f"the nonce store {path} was rewritten; signed commands are accepted again",
    ]
    assert path.read_text() == "watermark 0\n" + record(A)


def test_a_failed_rollback_is_logged(tmp_path, monkeypatch, caplog):
    path = tmp_path / "nonces.log"
    faults = Faults(tmp_path, monkeypatch)
    store = NonceStore(path, 60, clock=Clock())
    faults.arm("write", errno.ENOSPC, times=1)
    faults.arm("ftruncate", errno.EIO, times=1)
    reason(lambda: store.admit(A, NOW))
    assert messages(caplog)[-1] == (
        f"cannot roll back a partial nonce record in {path}: Input/output error; signed commands are refused "
        "until the log is rewritten"
    )
    assert store.dirty is True


def test_a_failed_store_logs_why_and_what_to_do(tmp_path, caplog):
    path = tmp_path / "nonces.log"
    path.write_text("junk\n")
    NonceStore(path, 60, clock=Clock())
    assert messages(caplog) == [
        f"the nonce store {path} line 1 is not a nonce record; signed commands are refused (unavailable) until it "
        "is repaired and Pilot restarted (a nonce in it may belong to a command that already ran: remove the file "
        "only after Pilot has been stopped for longer than the signature window)"
    ]


def test_a_log_that_cannot_be_read_at_start_fails_the_store(tmp_path, monkeypatch):
    path = tmp_path / "nonces.log"
    path.write_text(record(A))
    faults = Faults(tmp_path, monkeypatch)
    faults.arm("fstat", errno.EIO)
    store = NonceStore(path, 60, clock=Clock())
    assert store.error == "cannot be read (Input/output error)"


def test_a_dirty_store_refuses_while_its_rewrite_fails_even_if_appending_would_work(tmp_path, monkeypatch):
    path = tmp_path / "nonces.log"
    faults = Faults(tmp_path, monkeypatch)
    store = NonceStore(path, 60, clock=Clock())
    store.admit(A, NOW)
    faults.arm("write", errno.ENOSPC, times=1)
    faults.arm("ftruncate", errno.EIO, times=1)
    assert reason(lambda: store.admit(B, NOW)) == "unavailable"
    assert store.dirty
    faults.arm("open", errno.ENOSPC, only=".tmp")  # the log can be appended to, a new file cannot be made
    assert reason(lambda: store.admit(C, NOW)) == "unavailable"
    assert store.dirty and C not in path.read_text()
    faults.clear()
    store.admit(C, NOW)
    assert not store.dirty and path.read_text() == "watermark 0\n" + record(A, C)


def test_the_store_opens_no_link_and_leaks_no_descriptor_to_child_processes(tmp_path, monkeypatch):
    """Every descriptor is close-on-exec (an action's child never inherits the log); the log and its
    tmp file are opened with O_NOFOLLOW; the tmp file is the log's name plus `.tmp`."""
    path = tmp_path / "nonces.log"
    path.write_text(record(A))
    faults = Faults(tmp_path, monkeypatch)
    store = NonceStore(path, 60, clock=Clock(), compact_every=1)
    store.admit(B, NOW)
    assert [p for p, _ in faults.opened] == [str(path), str(path), str(path) + ".tmp", str(tmp_path)]
    for name, flags in faults.opened:
        assert flags & os.O_CLOEXEC, name
        if name != str(tmp_path):
            assert flags & os.O_NOFOLLOW, name
    assert path.stat().st_mode & 0o777 == 0o600


def test_links_in_place_of_the_log_or_its_tmp_file_are_not_followed(tmp_path, caplog):
    victim = tmp_path / "victim"
    victim.write_text("precious\n")
    link = tmp_path / "nonces.log"
    link.symlink_to(victim)
    store = NonceStore(link, 60, clock=Clock())
    assert store.error is not None and store.error.startswith("cannot be opened")
    link.unlink()
    store = NonceStore(link, 60, clock=Clock())
    link.symlink_to(victim)
    assert reason(lambda: store.admit(A, NOW)) == "unavailable"
    link.unlink()
    (tmp_path / "nonces.log.tmp").symlink_to(victim)
    store = NonceStore(link, 60, clock=Clock(), compact_every=1)
    store.admit(A, NOW)  # appended; the compaction refuses the planted link and fails
    assert victim.read_text() == "precious\n"
    assert link.read_text() == record(A)


def test_directories_and_files_the_store_creates_are_private(tmp_path, monkeypatch):
    old = os.umask(0o022)
    try:
        path = tmp_path / "state" / "pilot" / "nonces.log"
        faults = Faults(tmp_path, monkeypatch)
        store = NonceStore(path, 60, clock=Clock(), compact_every=2)
        store.admit(A, NOW)
        assert (tmp_path / "state" / "pilot").stat().st_mode & 0o777 == 0o700  # parents: as `mkdir -p` makes them
        assert path.stat().st_mode & 0o777 == 0o600
        # the directory vanishes while the store is dirty: the rewrite makes it again, private
        faults.arm("write", errno.ENOSPC, times=1)
        faults.arm("ftruncate", errno.EIO, times=1)
        reason(lambda: store.admit(B, NOW))
        path.unlink()
        (tmp_path / "state" / "pilot").rmdir()
        (tmp_path / "state").rmdir()
        store.admit(C, NOW)  # rewrite (creates the directories), append, then compaction (2 appends)
        assert (tmp_path / "state" / "pilot").stat().st_mode & 0o777 == 0o700  # parents: as `mkdir -p` makes them
        assert path.stat().st_mode & 0o777 == 0o600
        assert path.read_text() == "watermark 0\n" + record(A, C)
    finally:
        os.umask(old)


def test_compaction_runs_every_compact_every_admissions_exactly(tmp_path, monkeypatch):
    path = tmp_path / "nonces.log"
    faults = Faults(tmp_path, monkeypatch)
    store = NonceStore(path, 60, clock=Clock(), compact_every=3)
    rewrites = []
    for i in range(9):
        store.admit(f"{i:022d}", NOW)
        rewrites.append(sum(1 for p, _ in faults.opened if p.endswith(".tmp")))
    assert rewrites == [0, 0, 1, 1, 1, 2, 2, 2, 3]


def test_the_defaults_are_a_10000_nonce_cache_and_a_compaction_every_1000_records(tmp_path, monkeypatch):
    """docs/security.md: "every 1000 records"; the cache bound. fsync is stubbed: 10 000 admissions."""
    path = tmp_path / "nonces.log"
    monkeypatch.setattr(os, "fsync", lambda fd: None)
    store = NonceStore(path, 60, clock=Clock())
    assert store.watermark == 0 and store.dirty is False and store.error is None
    for i in range(999):
        store.admit(f"{i:022d}", NOW)
    assert not path.read_text().startswith("watermark")
    store.admit(f"{999:022d}", NOW)
    assert path.read_text().startswith("watermark 0\n")
    for i in range(1000, 10_000):
        store.admit(f"{i:022d}", NOW)
    assert reason(lambda: store.admit("x" * 22, NOW)) == "busy"


def test_a_fresh_store_or_a_log_without_a_watermark_accepts_the_smallest_ts(tmp_path):
    store = NonceStore(tmp_path / "n.log", 60, clock=Clock())
    store.admit(A, 1)
    assert NonceStore(tmp_path / "n.log", 60, clock=Clock()).watermark == 0
    NonceStore(tmp_path / "n.log", 60, clock=Clock()).admit(B, 1)


def test_sign_takes_its_time_and_nonce_when_not_given(monkeypatch):
    monkeypatch.setattr(signing, "time", type("FakeTime", (), {"time": staticmethod(lambda: 1764246000.9)}))
    first, second = (signing.sign(KEY, DEVICE, TOPIC, "PRESS") for _ in range(2))
    assert first["ts"] == second["ts"] == 1764246000
    assert first["nonce"] != second["nonce"]
    assert signing.canonical_b64url(first["nonce"], 16)
    assert check(first, now=NOW).cmd == "PRESS"


def test_b64url_is_unpadded_urlsafe_base64():
    assert signing.b64url(b"\x00\x00\x17") == "AAAX"
    assert signing.b64url(b"\xfb\xff") == "-_8"
    assert signing.b64url(b"\xff") == "_w"
    assert signing.b64url_decode("_w") == b"\xff"
    assert signing.b64url_decode("AAAX") == b"\x00\x00\x17"


def test_verify_called_with_an_undecodable_signature_is_malformed():
    """parse_envelope never lets one through; verify still answers with a reason, not an exception."""
    assert reason(
        lambda: signing.verify({**envelope(), "sig": "A"}, {"k1": KEY}, DEVICE, TOPIC, now=NOW, window=60)
    ) == ("malformed")


def test_a_rejection_carries_its_reason_as_its_text():
    assert str(Rejected("busy")) == "busy" and Rejected("busy").reason == "busy"


def test_the_keyring_cannot_be_read_when_fstat_fails(tmp_path, monkeypatch):
    ring = keyring(tmp_path, f"k1 {SECRET16}\n")
    faults = Faults(tmp_path, monkeypatch)
    faults.arm("fstat", errno.EIO)
    with pytest.raises(signing.KeyringError) as info:
        signing.load_keyring(ring)
    assert str(info.value) == f"cannot read keyring {ring}: Input/output error"


def test_an_error_from_close_after_a_durable_record_does_not_escape_or_lose_the_nonce(tmp_path, monkeypatch):
    """Regression (fault injection): close(2) reporting EIO after the record was fsynced raised an
    OSError out of `admit` (not a reason), and the nonce, durable in the log, was missing from memory:
    the same envelope was admitted again in the same process."""
    path = tmp_path / "nonces.log"
    ring = keyring(tmp_path, f"k1 {SECRET16}\n")
    path.write_text(record(A))
    faults = Faults(tmp_path, monkeypatch)
    faults.arm("close", errno.EIO)
    store = NonceStore(path, 60, clock=Clock())  # the read at start is not disturbed either
    assert store.healthy
    assert set(signing.load_keyring(ring)) == {"k1"}
    store.admit(B, NOW)
    assert reason(lambda: store.admit(B, NOW)) == "replayed"
    faults.clear()
    assert path.read_text() == record(A, B)
    assert replayed_after_restart(path, A) and replayed_after_restart(path, B)


def test_every_descriptor_is_closed_exactly_once(tmp_path, monkeypatch):
    """A second close of a number already closed can close whatever another thread (the MQTT socket)
    opened in between: reading the log or the keyring through a file object must not close it too."""
    path = tmp_path / "nonces.log"
    path.write_text(record(A))
    ring = keyring(tmp_path, f"k1 {SECRET16}\n")
    faults = Faults(tmp_path, monkeypatch)
    store = NonceStore(path, 60, clock=Clock(), compact_every=1)
    store.admit(B, NOW)
    signing.load_keyring(ring)
    assert faults.double_closes == []
    assert faults.paths == {}  # and none is left open


def test_nonces_read_at_start_keep_their_ts_through_a_compaction(tmp_path):
    path = tmp_path / "nonces.log"
    path.write_text(record(A, ts=NOW - 3))
    mono = Clock()
    store = NonceStore(path, 60, clock=mono, compact_every=1)
    store.admit(B, NOW)
    assert path.read_text() == "watermark 0\n" + record(A, ts=NOW - 3) + record(B)
    mono.now += 120
    store.admit(C, NOW + 120)
    assert store.watermark == NOW  # the highest ts forgotten: A's (NOW - 3) and B's (NOW)
    assert store.dirty is False


# ------------------------------------------------------------------ `by`: who pressed


def named(by: object) -> dict:
    """An envelope signed by `sign` with a good name, then given `by` as written here (unsigned)."""
    env = signing.sign(KEY, DEVICE, TOPIC, "PRESS", ts=NOW, by="alice")
    env["by"] = by
    return env


@pytest.mark.parametrize(
    "by",
    [
        "",
        "a" * 65,
        "alice\n",
        "alice\nexecuted shutdown",
        "ali\rce",
        "ali\tce",
        "ali\x00ce",
        "ali\x1bce",
        "ali\u2028ce",
        "ali ce",
        "ali/ce",
        "alicé",
        "alice\u200b",
        None,
        1,
        True,
        ["alice"],
        {"name": "alice"},
    ],
)
def test_a_by_outside_its_pattern_is_malformed_before_any_signature_check(by):
    assert reason(lambda: check(named(by))) == "malformed"


def test_a_by_of_64_characters_of_every_allowed_kind_is_accepted():
    by = ("Az09_.@-" * 8)[:64]
    env = signing.sign(KEY, DEVICE, TOPIC, "PRESS", ts=NOW, by=by)
    assert check(env).by == by
    assert reason(lambda: check(named(by + "x"))) == "malformed"


def test_a_duplicated_by_key_is_malformed():
    env = signing.sign(KEY, DEVICE, TOPIC, "PRESS", ts=NOW, by="alice")
    body = json.dumps(env)[:-1]
    for extra in (', "by": "alice"', ', "by": "mallory"'):  # the same name twice, or two names: which was signed?
        payload = (body + extra + "}").encode()
        assert reason(lambda payload=payload: signing.parse_envelope(payload)) == "malformed"


def test_sign_refuses_a_name_the_agent_would_refuse():
    for by in ("", "a" * 65, "alice\n", "alice bob"):
        with pytest.raises(ValueError, match="`by` must be"):
            signing.sign(KEY, DEVICE, TOPIC, "PRESS", ts=NOW, by=by)


def test_an_envelope_without_by_verifies_with_by_none():
    assert check(envelope()).by is None
    assert "by" not in envelope()
