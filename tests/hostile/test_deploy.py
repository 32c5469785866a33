"""Hostile input on `<base>/cmd/_profile/set` and `_profile/get`, against a real agent on a real broker.

Every refusal leaves the profile file byte for byte as it was and spends no nonce unless the request
was verified; a sender who proved no key gets one unsigned answer a second (so the tests pause a
second between such requests); nothing reaches a traceback. The rig is the live deploy test's.
"""

from __future__ import annotations

import json
import time

import pytest

from pilot.agent import deploy, signing
from testkit.broker import Watcher
from tests.live.agent.test_deploy import BASE, DEVICE, DeployRig

JUNK_PAUSE = 1.05  # answers to senders without a key: at most one a second


@pytest.fixture(scope="module")
def rig(tmp_path_factory, broker):
    watcher = Watcher(broker.port).start()
    r = DeployRig(tmp_path_factory.mktemp("deploy"), broker, watcher)
    r.start()
    yield r
    r.stop()
    assert "Traceback" not in r.agent.output()
    watcher.stop()


@pytest.fixture(autouse=True)
def untouched(rig):
    """Each refusal: the file as it was, no temporary file left, no deploy state published."""
    since = time.monotonic()
    before = rig.path.read_bytes()
    time.sleep(JUNK_PAUSE)
    yield
    assert rig.path.read_bytes() == before
    assert sorted(p.name for p in rig.folder.iterdir() if p.name.startswith(".")) == []
    # a verified attempt publishes its state (rejected); a request that proved no key publishes none
    assert [json.loads(m.payload)["state"] for m in rig.watcher.on(f"{BASE}/deploy", since=since)] in ([], ["rejected"])


def nonces(rig: DeployRig) -> str:
    path = rig.state / "profile-nonces.log"
    return path.read_text() if path.exists() else ""


def junk(rig: DeployRig, payload: bytes, **kwargs) -> dict:
    answer = rig.unsigned_answer(rig.publish(payload, **kwargs))
    assert "nonce" not in answer and "sig" not in answer
    return answer


def test_an_unsigned_profile_is_malformed(rig):
    assert junk(rig, rig.text().encode())["reason"] == "malformed"


def test_a_profile_without_an_envelope_is_malformed(rig):
    assert junk(rig, json.dumps({"profile": rig.text()}).encode())["reason"] == "malformed"


def test_a_key_the_device_does_not_hold_is_unauthorized_and_no_nonce_is_spent(rig):
    stranger = signing.Key("k1", b"\x01" * 32)
    request = deploy.build_deploy(stranger, DEVICE, BASE, rig.text(name="Forged"))
    assert junk(rig, request.payload)["reason"] == "unauthorized"
    assert request.nonce not in nonces(rig)


def test_a_deploy_signed_for_another_device_is_unauthorized(rig):
    request = deploy.build_deploy(rig.key, "otherdevice", BASE, rig.text(name="Elsewhere"))
    assert junk(rig, request.payload)["reason"] == "unauthorized"


def test_a_swapped_text_is_bad_hash_and_the_nonce_stays_unspent(rig):
    request = deploy.build_deploy(rig.key, DEVICE, BASE, rig.text())
    swapped = json.loads(request.payload)
    swapped["profile"] = rig.text(name="Swapped")
    assert junk(rig, json.dumps(swapped).encode())["reason"] == "bad_hash"
    assert request.nonce not in nonces(rig)


def test_too_large_is_refused_unread(rig):
    request = deploy.build_deploy(rig.key, DEVICE, BASE, rig.text())
    padded = request.payload[:-1] + b" " * (deploy.MAX_DEPLOY_BYTES - len(request.payload) + 1) + b"}"
    assert len(padded) == deploy.MAX_DEPLOY_BYTES + 1
    assert junk(rig, padded)["reason"] == "too_large"
    assert request.nonce not in nonces(rig)


def test_a_retained_deploy_is_refused_when_the_broker_hands_it_over_on_connect(rig):
    """A subscriber already connected gets a retained message with the retain flag clear (MQTT);
    the danger is the copy the broker keeps and hands over on every (re)connect, flag set."""
    request = deploy.build_deploy(rig.key, DEVICE, BASE, rig.text(name="Ghost"))
    rig.stop()
    try:
        rig.watcher.publish(deploy.set_topic(BASE), request.payload, retain=True)
        since = time.monotonic()
        rig.start()
        assert rig.unsigned_answer(since)["reason"] == "retained"
    finally:
        rig.watcher.publish(deploy.set_topic(BASE), b"", retain=True)  # the broker forgets it
    assert request.nonce not in nonces(rig)


def test_non_utf8_is_malformed(rig):
    assert junk(rig, b'{"envelope": {}, "profile": "\xff\xfe"}')["reason"] == "malformed"


def test_deeply_nested_json_is_malformed(rig):
    assert junk(rig, b'{"envelope": ' + b"[" * 50_000 + b"]" * 50_000 + b', "profile": ""}')["reason"] == "malformed"


def test_raw_control_characters_in_the_json_are_malformed(rig):
    request = deploy.build_deploy(rig.key, DEVICE, BASE, rig.text())
    raw = request.payload.replace(b"Deploy rig", b"Deploy\x00\x1b rig")
    assert junk(rig, raw)["reason"] == "malformed"


def test_control_characters_in_a_signed_text_are_an_invalid_profile_named_after_the_devices_file(rig):
    answer = rig.deploy(rig.text(name="Deploy\x1b[2J\x07 rig"))
    assert (answer["status"], answer["reason"]) == ("rejected", "invalid_profile")
    assert answer["errors"] and all(e.startswith("device.yaml:") for e in answer["errors"])
    assert not any("\x1b" in e or "\x07" in e for e in answer["errors"])


def test_a_profile_invalid_for_this_version_comes_back_with_file_line_and_column(rig):
    answer = rig.deploy(rig.text(sensors="  load: {probe: cpu.lod, every: 30s}\n"))
    assert (answer["status"], answer["reason"]) == ("rejected", "invalid_profile")
    assert answer["errors"][0].startswith("device.yaml:7:"), answer["errors"]
    assert "cpu.load" in answer["errors"][0]


def test_a_replayed_deploy_is_refused_and_changes_nothing(rig):
    request = deploy.build_deploy(rig.key, DEVICE, BASE, rig.text(sensors="  x: {probe: cpu.lod}\n"))
    first = rig.answer(request, rig.publish(request.payload))
    assert first["reason"] == "invalid_profile"  # verified and spent, though refused
    since = rig.publish(request.payload)
    again = rig.wait(deploy.result_topic(BASE), lambda m: json.loads(m.payload).get("reason") == "replayed", since)
    assert again is not None
    body = json.loads(again.payload)
    assert body["nonce"] == request.nonce and body["status"] == "rejected"
    assert deploy.read_answer(again.payload, rig.key, DEVICE, request) is None  # a sender waits for its own
    assert deploy.read_answer(again.payload.replace(b"replayed", b"busy"), rig.key, DEVICE, request) is None


def test_get_refuses_oversized_unsigned_and_set_envelopes(rig):
    assert junk(rig, b"x" * 5000, topic=deploy.get_topic(BASE))["reason"] == "too_large"
    time.sleep(JUNK_PAUSE)
    assert junk(rig, b"get", topic=deploy.get_topic(BASE))["reason"] == "malformed"
    time.sleep(JUNK_PAUSE)
    envelope = json.loads(deploy.build_deploy(rig.key, DEVICE, BASE, rig.text()).payload)["envelope"]
    assert junk(rig, json.dumps(envelope).encode(), topic=deploy.get_topic(BASE))["reason"] == "unauthorized"
