"""Known answers for `pilot-cmd-v1` and `pilot-result-v1`: fixed inputs, the exact bytes and signatures.

Every expected value below is a literal computed outside Pilot, from the format in docs/mqtt.md:
the canonical bytes written out by hand, SHA-256 and HMAC-SHA256 by openssl, e.g.

    printf 'PRESS' | openssl dgst -sha256 -r
    printf 'pilot-cmd-v1\\nk1\\n...' | openssl dgst -sha256 -mac HMAC -macopt hexkey:000102...1f -binary \\
        | openssl base64 -A | tr '+/' '-_' | tr -d '='

and checked again with Python's hmac on the hand-written bytes. Another implementation can check
itself against the same table, printed in docs/security.md (## Known-answer vectors).
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from pilot.agent import signing
from pilot.agent.signing import Key, Rejected

# the repository, or for a mutation run (tools/mutation.py) the copy around mutmut's `mutants/` folder
DOCS = next(p / "docs" for p in Path(__file__).resolve().parents if (p / "docs" / "security.md").is_file())
B64 = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"

# the key: bytes 0x00..0x1f, as a keyring line
KEYRING_LINE = "k1 AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8 active"
SECRET = bytes.fromhex("000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f")
DEVICE = "office-pc"

# (topic, ts, nonce, cmd, canonical bytes, sig)
COMMANDS = [
    (
        "pilot/office-pc/cmd/shutdown/set",
        1764246000,
        "AAECAwQFBgcICQoLDA0ODw",  # bytes 0x00..0x0f
        "PRESS",
        b"pilot-cmd-v1\nk1\noffice-pc\npilot/office-pc/cmd/shutdown/set\n1764246000\nAAECAwQFBgcICQoLDA0ODw\n"
        b"ca1df588864011a8a3d428cc5a53397cf5232f225477cea5c62d018bfb4579e4",
        "kjsxTRCBotckhZ_FK6zFk0jF4A39CUcYzdPlDcgNgZM",
    ),
    (
        "pilot/office-pc/cmd/volume/set",
        1764246001,
        "EBESExQVFhcYGRobHB0eHw",  # bytes 0x10..0x1f
        "42.5",
        b"pilot-cmd-v1\nk1\noffice-pc\npilot/office-pc/cmd/volume/set\n1764246001\nEBESExQVFhcYGRobHB0eHw\n"
        b"7b713affffacc53f6dbd3a5fd52117bc3eb5f3881789d2eb26b5f636daa066df",
        "lWggfpkvSWBwH2g225aN7_v94Oh3cMsf23298x6Wux0",
    ),
    (
        "pilot/office-pc/cmd/notify/set",
        1764246002,
        "8PHy8_T19vf4-fr7_P3-_w",  # bytes 0xf0..0xff: both base64url-only characters
        "Gr\u00fc\u00dfe \u2615 \u65e5\u672c",  # UTF-8: 47 72 c3bc c39f 65 20 e29895 20 e697a5 e69cac
        b"pilot-cmd-v1\nk1\noffice-pc\npilot/office-pc/cmd/notify/set\n1764246002\n8PHy8_T19vf4-fr7_P3-_w\n"
        b"c8f0bd4e39d0c821056b9f935e978e45ba70eb3212200c3dca91dc66ebeb75b7",
        "Gu-hMJ8z0u2TdWgAwI92UKNmyvALbpwwJfmb_Tqii2o",
    ),
]

# an envelope that names who pressed: (topic, ts, nonce, cmd, by, canonical bytes, sig, the sig of the same
# fields without `by`); `by` uses every punctuation character it may hold
BY_COMMAND = (
    "pilot/office-pc/cmd/shutdown/set",
    1764246005,
    "ICEiIyQlJicoKSorLC0uLw",  # bytes 0x20..0x2f
    "PRESS",
    "alice.ops@example-home_1",
    b"pilot-cmd-v1\nk1\noffice-pc\npilot/office-pc/cmd/shutdown/set\n1764246005\nICEiIyQlJicoKSorLC0uLw\n"
    b"ca1df588864011a8a3d428cc5a53397cf5232f225477cea5c62d018bfb4579e4\nalice.ops@example-home_1",
    "fbEM5Sxp7kwH3GsJOEpQmsK3Iw6Y7PDvedYmvtatgdE",
    "pGmh5lb8SXq7NCvOYL2zPxBPZN1WNTWaZXnyo0dISNk",
)

# (topic, nonce, status, reason, ts, canonical bytes, the result body as published, sig)
RESULTS = [
    (
        "pilot/office-pc/cmd/shutdown/set",
        "AAECAwQFBgcICQoLDA0ODw",
        "ok",
        None,
        1764246003,
        b"pilot-result-v1\nk1\noffice-pc\npilot/office-pc/cmd/shutdown/set\nAAECAwQFBgcICQoLDA0ODw\nok\n\n1764246003",
        b'{"status":"ok","ts":1764246003,"nonce":"AAECAwQFBgcICQoLDA0ODw",'
        b'"sig":"O3c14BLmdghHhudviMTwLq4dgdr2X9ngz7lIHZBSCJ8"}',
        "O3c14BLmdghHhudviMTwLq4dgdr2X9ngz7lIHZBSCJ8",
    ),
    (
        "pilot/office-pc/cmd/volume/set",
        "EBESExQVFhcYGRobHB0eHw",
        "rejected",
        "cooldown",
        1764246004,
        b"pilot-result-v1\nk1\noffice-pc\npilot/office-pc/cmd/volume/set\nEBESExQVFhcYGRobHB0eHw\n"
        b"rejected\ncooldown\n1764246004",
        b'{"status":"rejected","reason":"cooldown","ts":1764246004,"nonce":"EBESExQVFhcYGRobHB0eHw",'
        b'"sig":"9QkUlcBYaDJGIFtrcSt0jLHXVAxSl-m8z9NQSooukns"}',
        "9QkUlcBYaDJGIFtrcSt0jLHXVAxSl-m8z9NQSooukns",
    ),
]

WINDOW = 60


@pytest.fixture
def key(tmp_path):
    """The vectors' key, read the way the agent reads it: from a private keyring file."""
    ring = tmp_path / "keyring"
    ring.write_text(f"# known-answer key\n{KEYRING_LINE}\n")
    ring.chmod(0o600)
    keys = signing.load_keyring(ring)
    assert keys == {"k1": Key("k1", SECRET, "active", None)}
    return keys["k1"]


def flip_last(text: str) -> str:
    """Another canonical spelling with different bytes: flip the lowest *used* bit of the last
    character (a 43-character signature's last character has 2 unused bits, a 22-character nonce's 4)."""
    unused = 2 if len(text) == 43 else 4
    return text[:-1] + B64[B64.index(text[-1]) ^ (1 << unused)]


def verify(payload: bytes, keys: dict, *, device=DEVICE, topic: str, now: float):
    return signing.verify(signing.parse_envelope(payload), keys, device, topic, now=now, window=WINDOW)


def reason(fn) -> str:
    with pytest.raises(Rejected) as info:
        fn()
    return info.value.reason


@pytest.mark.parametrize("topic, ts, nonce, cmd, canon, sig", COMMANDS, ids=["press", "number", "utf8-text"])
def test_canonical_bytes_and_signature_are_the_known_answers(key, topic, ts, nonce, cmd, canon, sig):
    assert signing.canonical("k1", DEVICE, topic, ts, nonce, cmd.encode("utf-8")) == canon
    env = signing.sign(key, DEVICE, topic, cmd, ts=ts, nonce=nonce)
    assert env == {"v": 1, "kid": "k1", "ts": ts, "nonce": nonce, "cmd": cmd, "sig": sig}


@pytest.mark.parametrize("topic, ts, nonce, cmd, canon, sig", COMMANDS, ids=["press", "number", "utf8-text"])
def test_the_known_envelopes_verify_as_sent_on_the_wire(key, topic, ts, nonce, cmd, canon, sig):
    """The payload is written out as another sender would write it, not produced by `sign`."""
    text = f'{{"v":1,"kid":"k1","ts":{ts},"nonce":"{nonce}","cmd":{json.dumps(cmd)},"sig":"{sig}"}}'
    payload = text.encode()
    verified = verify(payload, {"k1": key}, topic=topic, now=ts + 0.5)
    assert (verified.cmd, verified.nonce, verified.kid, verified.ts) == (cmd, nonce, "k1", ts)
    raw = payload.replace(json.dumps(cmd).encode(), b'"' + cmd.encode("utf-8") + b'"')  # UTF-8, not \u escapes
    assert verify(raw, {"k1": key}, topic=topic, now=ts - WINDOW).cmd == cmd


@pytest.mark.parametrize("topic, ts, nonce, cmd, canon, sig", COMMANDS, ids=["press", "number", "utf8-text"])
def test_any_single_changed_field_of_a_known_envelope_is_unauthorized(key, topic, ts, nonce, cmd, canon, sig):
    keys = {"k1": key, "k2": Key("k2", SECRET)}  # k2: same secret, so only the kid in the MAC tells them apart
    good = {"v": 1, "kid": "k1", "ts": ts, "nonce": nonce, "cmd": cmd, "sig": sig}
    changes = [
        {"sig": flip_last(sig)},
        {"sig": B64[B64.index(sig[0]) ^ 1] + sig[1:]},
        {"sig": sig[:21] + B64[B64.index(sig[21]) ^ 1] + sig[22:]},
        {"kid": "k2"},
        {"ts": ts + 1},
        {"nonce": flip_last(nonce)},
        {"cmd": cmd + " "},
        {"cmd": cmd[:-1]},
    ]
    for change in changes:
        payload = json.dumps({**good, **change}).encode()
        assert reason(lambda payload=payload: verify(payload, keys, topic=topic, now=ts)) == "unauthorized", change
    payload = json.dumps(good).encode()
    assert reason(lambda: verify(payload, keys, device="office-pc2", topic=topic, now=ts)) == "unauthorized"
    assert reason(lambda: verify(payload, keys, topic=topic + "x", now=ts)) == "unauthorized"
    assert reason(lambda: verify(payload, {"k1": Key("k1", SECRET[:-1] + b"\x00")}, topic=topic, now=ts)) == (
        "unauthorized"
    )
    assert verify(payload, keys, topic=topic, now=ts).cmd == cmd  # and unchanged, it verifies


@pytest.mark.parametrize("topic, nonce, status, why, ts, canon, body, sig", RESULTS, ids=["ok", "rejected"])
def test_result_canonical_bytes_and_signature_are_the_known_answers(
    key, topic, nonce, status, why, ts, canon, body, sig
):
    assert signing.canonical_result("k1", DEVICE, topic, nonce, status, why, ts) == canon
    assert signing.sign_result(key, DEVICE, topic, nonce, status, why, ts) == sig
    assert signing.verify_result(json.loads(body), key, DEVICE, topic, nonce)


@pytest.mark.parametrize("topic, nonce, status, why, ts, canon, body, sig", RESULTS, ids=["ok", "rejected"])
def test_any_single_changed_field_of_a_known_result_is_refused(key, topic, nonce, status, why, ts, canon, body, sig):
    good = json.loads(body)
    changes = [
        {"sig": flip_last(sig)},
        {"sig": B64[B64.index(sig[0]) ^ 1] + sig[1:]},
        {"status": "failed"},
        {"reason": "busy" if why else "cooldown"},
        {"ts": ts + 1},
        {"nonce": flip_last(nonce)},
    ]
    for change in changes:
        assert not signing.verify_result({**good, **change}, key, DEVICE, topic, nonce), change
        assert not signing.verify_result({**good, **change}, key, DEVICE, topic, {**good, **change}["nonce"]), change
    assert not signing.verify_result(good, Key("k1", SECRET[:-1] + b"\x00"), DEVICE, topic, nonce)
    assert not signing.verify_result(good, key, "office-pc2", topic, nonce)
    assert not signing.verify_result(good, key, DEVICE, topic + "x", nonce)
    assert not signing.verify_result(good, Key("k2", SECRET), DEVICE, topic, nonce)  # the kid is signed too
    assert signing.verify_result(good, key, DEVICE, topic, nonce)


def test_an_envelope_with_by_has_the_known_canonical_bytes_and_signature(key):
    topic, ts, nonce, cmd, by, canon, sig, sig_without = BY_COMMAND
    assert signing.canonical("k1", DEVICE, topic, ts, nonce, cmd.encode(), by) == canon
    assert signing.sign(key, DEVICE, topic, cmd, ts=ts, nonce=nonce, by=by) == {
        "v": 1,
        "kid": "k1",
        "ts": ts,
        "nonce": nonce,
        "cmd": cmd,
        "by": by,
        "sig": sig,
    }
    # without `by` the bytes are exactly the old form: existing signers and vectors are unchanged
    assert signing.canonical("k1", DEVICE, topic, ts, nonce, cmd.encode()) == canon.rsplit(b"\n", 1)[0]
    assert signing.sign(key, DEVICE, topic, cmd, ts=ts, nonce=nonce)["sig"] == sig_without


def test_the_known_envelope_with_by_verifies_as_sent_on_the_wire_and_reports_who_pressed(key):
    topic, ts, nonce, cmd, by, _, sig, _ = BY_COMMAND
    text = f'{{"v":1,"kid":"k1","ts":{ts},"nonce":"{nonce}","cmd":"{cmd}","by":"{by}","sig":"{sig}"}}'
    verified = verify(text.encode(), {"k1": key}, topic=topic, now=ts)
    assert (verified.cmd, verified.nonce, verified.kid, verified.ts, verified.by) == (cmd, nonce, "k1", ts, by)
    reordered = f'{{"by":"{by}","sig":"{sig}","cmd":"{cmd}","nonce":"{nonce}","ts":{ts},"kid":"k1","v":1}}'
    assert verify(reordered.encode(), {"k1": key}, topic=topic, now=ts).by == by


def test_a_by_changed_added_or_removed_after_signing_is_unauthorized(key):
    """Who pressed is signed: nobody on the broker can put another name on a captured envelope."""
    topic, ts, nonce, cmd, by, _, sig, sig_without = BY_COMMAND
    good = {"v": 1, "kid": "k1", "ts": ts, "nonce": nonce, "cmd": cmd, "by": by, "sig": sig}
    forged = [
        {**good, "by": "mallory"},
        {**good, "by": by[:-1]},
        {**good, "by": by + "1"},
        {**good, "by": by.upper()},
        {k: v for k, v in good.items() if k != "by"},  # the name dropped: signed with it, so refused
        {**good, "sig": sig_without},  # the signature without `by`, on an envelope that names someone
    ]
    for env in forged:
        payload = json.dumps(env).encode()
        assert reason(lambda payload=payload: verify(payload, {"k1": key}, topic=topic, now=ts)) == "unauthorized", env
    unnamed = {k: v for k, v in good.items() if k != "by"} | {"sig": sig_without}
    assert verify(json.dumps(unnamed).encode(), {"k1": key}, topic=topic, now=ts).by is None
    assert verify(json.dumps(good).encode(), {"k1": key}, topic=topic, now=ts).by == by


def test_a_result_signature_is_never_a_command_signature(key):
    """Same key, same fields where they overlap: the scheme names keep the two domains apart."""
    topic, ts, nonce, cmd, _, sig = COMMANDS[0]
    assert sig not in {r[-1] for r in RESULTS}
    assert signing.canonical("k1", DEVICE, topic, ts, nonce, cmd.encode()).split(b"\n")[0] == b"pilot-cmd-v1"
    assert RESULTS[0][5].split(b"\n")[0] == b"pilot-result-v1"


def test_the_vectors_printed_in_security_md_are_these():
    """docs/security.md prints the table for other implementations: it must not drift from the tests."""
    text = (DOCS / "security.md").read_text()
    section = text.split("## Known-answer vectors", 1)[1].split("\n## ", 1)[0]
    assert KEYRING_LINE in section and SECRET.hex() in section
    for topic, ts, nonce, cmd, canon, sig in COMMANDS:
        for literal in (topic, str(ts), nonce, sig, canon.decode().replace("\n", "\\n"), json.dumps(cmd)):
            assert literal in section, literal
    for *_, canon, body, sig in RESULTS:
        for literal in (sig, canon.decode().replace("\n", "\\n"), body.decode()):
            assert literal in section, literal
    topic, ts, nonce, cmd, by, canon, sig, _ = BY_COMMAND
    for literal in (str(ts), nonce, by, sig, canon.decode().replace("\n", "\\n")):
        assert literal in section, literal
