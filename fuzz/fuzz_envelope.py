#!/usr/bin/env python3
"""atheris target: the signed-command envelope parser and verifier (pilot.signing).

    python fuzz/fuzz_envelope.py -runs=100000 [-max_len=4096] [CORPUS_DIR...]

Half the inputs are raw bytes handed to `parse_envelope` as a command payload would be; the other half
are built by a FuzzedDataProvider into envelope-shaped JSON (each field valid or not, some signed with
the target's key, then possibly altered), so that `verify` is reached past the shape check and the
HMAC. Properties: `parse_envelope` returns a dict with exactly the envelope keys (and perhaps `by`) or raises
`Rejected("malformed")`; what it accepts has the strict shape (`v` and `ts` plain ints, not bools or
floats; `kid` whole-matched; `nonce` and `sig` in their one canonical base64url spelling; `cmd`
encodable as UTF-8, so no lone surrogate reaches the HMAC); `verify` returns a `Verified` whose
fields are the envelope's, or raises `Rejected` with a reason from `pilot.agent.policy.REASONS`;
nothing else is ever raised. A verified envelope's `pilot-result-v1` signature verifies, and not
for another status.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import atheris

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "engine"))

with atheris.instrument_imports():
    from pilot.agent import policy, signing

KEY = signing.Key("k1", b"fuzz-secret-0123456789abcdef")
KEYS = {
    "k1": KEY,
    "old": signing.Key("old", b"o" * 32, "revoked"),
    "late": signing.Key("late", b"l" * 32, "active", not_after=1_000_000_000),
}
DEVICE = "fuzzrig"
TOPIC = "pilot/fuzzrig/cmd/shutdown/set"
NOW = 1_764_246_000
WINDOW = 60.0


def _value(fdp: atheris.FuzzedDataProvider, valid):
    choice = fdp.ConsumeIntInRange(0, 7)
    if choice <= 3:
        return valid
    if choice == 4:  # with surrogates: JSON carries them as \ud800 escapes
        return fdp.ConsumeUnicode(fdp.ConsumeIntInRange(0, 60))
    if choice == 5:
        return fdp.ConsumeInt(8)
    if choice == 6:
        return fdp.ConsumeFloat()
    return [None, True, {}, [], "", 1.5][fdp.ConsumeIntInRange(0, 5)]


def _structured(fdp: atheris.FuzzedDataProvider) -> bytes:
    cmd = fdp.ConsumeUnicodeNoSurrogates(fdp.ConsumeIntInRange(0, 40)) if fdp.ConsumeBool() else "PRESS"
    ts = NOW + fdp.ConsumeIntInRange(-200, 200)
    by = ["alice", "ops@home", "x" * 64][fdp.ConsumeIntInRange(0, 2)] if fdp.ConsumeBool() else None
    env = signing.sign(KEY, DEVICE, TOPIC, cmd, ts=ts, by=by)
    if fdp.ConsumeBool():  # alter fields after signing
        for key in sorted(env):
            env[key] = _value(fdp, env[key])
    if fdp.ConsumeIntInRange(0, 9) == 0:
        env[fdp.ConsumeUnicodeNoSurrogates(8)] = fdp.ConsumeInt(4)
    if fdp.ConsumeIntInRange(0, 9) == 0:
        env.pop(sorted(env)[fdp.ConsumeIntInRange(0, len(env) - 1)], None)
    return json.dumps(env, ensure_ascii=fdp.ConsumeBool()).encode("utf-8", "surrogatepass")


def TestOneInput(data: bytes) -> None:
    fdp = atheris.FuzzedDataProvider(data)
    payload = data if not data or data[0] & 1 else _structured(fdp)
    try:
        env = signing.parse_envelope(payload)
    except signing.Rejected as exc:
        if exc.reason != "malformed":
            raise AssertionError(f"parse_envelope rejected with {exc.reason!r}, not 'malformed'") from exc
        return
    if set(env) not in (signing.ENVELOPE_KEYS, signing.ENVELOPE_KEYS_BY):
        raise AssertionError(f"parse_envelope accepted keys {sorted(env)}")
    if "by" in env and not (isinstance(env["by"], str) and signing.BY_RE.fullmatch(env["by"])):
        raise AssertionError("parse_envelope accepted a `by` that is not a name")
    if type(env["v"]) is not int or env["v"] != 1 or type(env["ts"]) is not int:
        raise AssertionError("parse_envelope accepted a v or ts that is not a plain integer")
    for field, size in (("nonce", 16), ("sig", 32)):
        if not signing.canonical_b64url(env[field], size):
            raise AssertionError(f"parse_envelope accepted a non-canonical {field}")
    if not signing.encodable(env["cmd"]):
        raise AssertionError("parse_envelope accepted a cmd with no UTF-8 form")
    try:
        verified = signing.verify(env, KEYS, DEVICE, TOPIC, now=NOW, window=WINDOW)
    except signing.Rejected as exc:
        if exc.reason not in policy.REASONS:
            raise AssertionError(f"verify rejected with unknown reason {exc.reason!r}") from exc
        return
    fields = (verified.cmd, verified.nonce, verified.kid, verified.ts, verified.by)
    if fields != (env["cmd"], env["nonce"], env["kid"], env["ts"], env.get("by")):
        raise AssertionError("verify returned other fields than the envelope's")
    if abs(NOW - verified.ts) > WINDOW:
        raise AssertionError("verify accepted a timestamp outside the window")
    key = KEYS[verified.kid]
    sig = signing.sign_result(key, DEVICE, TOPIC, verified.nonce, "ok", None, NOW)
    body = {"status": "ok", "ts": NOW, "nonce": verified.nonce, "sig": sig}
    if not signing.verify_result(body, key, DEVICE, TOPIC, verified.nonce):
        raise AssertionError("a result signature did not verify")
    if signing.verify_result({**body, "status": "dry_run"}, key, DEVICE, TOPIC, verified.nonce):
        raise AssertionError("a result signature verified for another status")


def main() -> None:
    atheris.Setup(sys.argv, TestOneInput)
    atheris.Fuzz()


if __name__ == "__main__":
    main()
