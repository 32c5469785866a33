"""`pilot keygen` and `pilot sign`, the tools docs/security.md gives for keys and envelopes.

The expected signature is computed here from the key line and the documented canonical string
(docs/mqtt.md), with hmac and hashlib only, so the test does not trust the code it checks.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import stat

from pilot.cli import main


def secret_of(line: str) -> bytes:
    text = line.split()[1]
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def test_keygen_appends_a_private_active_key_and_refuses_a_second_key_with_the_same_id(tmp_path, capsys):
    keyring = tmp_path / "etc" / "keyring"
    assert main(["keygen", "--keyring", str(keyring), "--kid", "k1"]) == 0
    assert main(["keygen", "--keyring", str(keyring), "--kid", "k2"]) == 0
    lines = keyring.read_text().splitlines()
    assert [line.split()[0] for line in lines] == ["k1", "k2"]
    assert all(line.split()[2] == "active" and len(secret_of(line)) >= 32 for line in lines)
    assert stat.S_IMODE(keyring.stat().st_mode) == 0o600
    printed = capsys.readouterr().out
    assert lines[1] in printed.splitlines()  # the line to give the sender
    assert main(["keygen", "--keyring", str(keyring), "--kid", "k1"]) == 1
    assert "already in" in capsys.readouterr().err
    assert keyring.read_text().splitlines() == lines


def test_sign_prints_an_envelope_whose_signature_is_the_documented_hmac(tmp_path, capsys):
    keyring = tmp_path / "keyring"
    main(["keygen", "--keyring", str(keyring), "--kid", "k1"])
    capsys.readouterr()
    topic = "pilot/box/cmd/shutdown/set"
    assert main(["sign", "--keyring", str(keyring), "--device", "box", "--topic", topic, "PRESS"]) == 0
    env = json.loads(capsys.readouterr().out)
    assert set(env) == {"v", "kid", "ts", "nonce", "cmd", "sig"} and env["v"] == 1 and env["cmd"] == "PRESS"
    message = "\n".join(
        ["pilot-cmd-v1", "k1", "box", topic, str(env["ts"]), env["nonce"], hashlib.sha256(b"PRESS").hexdigest()]
    ).encode()
    digest = hmac.new(secret_of(keyring.read_text()), message, hashlib.sha256).digest()
    assert env["sig"] == base64.urlsafe_b64encode(digest).rstrip(b"=").decode()


def test_sign_uses_only_an_active_key(tmp_path, capsys):
    """Rotation: a key marked verify_only (or revoked) still exists but no longer signs."""
    keyring = tmp_path / "keyring"
    main(["keygen", "--keyring", str(keyring), "--kid", "old"])
    keyring.write_text(keyring.read_text().replace(" active", " verify_only"))
    capsys.readouterr()
    argv = ["sign", "--keyring", str(keyring), "--device", "box", "--topic", "pilot/box/cmd/x/set", "PRESS"]
    assert main(argv) == 1 and "no active key" in capsys.readouterr().err
    assert main([*argv[:3], "--kid", "old", *argv[3:]]) == 1
