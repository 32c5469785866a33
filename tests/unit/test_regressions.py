"""Regression tests for problems a code review found (each failed before its fix)."""

from __future__ import annotations

import json
import time

import pytest

from pilot.agent import policy, signing
from pilot.actions._base import ActionError, Call, RecordingSystem, System
from pilot.agent.commands import CommandService
from pilot.profile.loader import load_text
from pilot.probes import ProbeContext
from pilot.agent.sensorset import SensorSet
from tests.support.profiles import compile_text


def service(tmp_path, text: str, carry=None):
    published: list[tuple[str, str]] = []
    svc = CommandService(compile_text(text), lambda t, p, q, r: published.append((t, p)),
                         RecordingSystem(str(tmp_path / "calls.jsonl")), tmp_path, carry=carry)
    return svc, published


def results(published, command):
    return [json.loads(p) for t, p in published if t.endswith(f"/cmd/{command}/result")]


def wait_idle(svc, timeout=5.0):
    deadline = time.monotonic() + timeout
    while svc._running and time.monotonic() < deadline:
        time.sleep(0.01)


def test_derived_chains_are_computed_in_dependency_order(tmp_path):
    root = tmp_path / "sys"
    (root / "class" / "t").mkdir(parents=True)
    (root / "class" / "t" / "x").write_text("1\n")
    plan = compile_text("pilot: 1\ndevice: {id: d, name: D}\nsensors:\n"
                   "  x: {probe: sysfs.read, args: {path: /sys/class/t/x, parse: int}, every: 1s}\n"
                   "  c: {expr: 'b + a + x'}\n  b: {expr: 'a + x'}\n  a: {expr: 'x * 2'}\n")
    sensors = SensorSet(plan, ProbeContext(sysfs_root=root), lambda topic, payload: None)
    for value in (10, 30, 7):
        (root / "class" / "t" / "x").write_text(f"{value}\n")
        sensors.read_all()
        v = sensors.values()
        assert (v["a"], v["b"], v["c"]) == (2 * value, 3 * value, 6 * value)


COOLING = """pilot: 1
device: {id: d, name: D}
commands:
  job: {action: process.run, args: {argv: [/bin/true]}, policy: {cooldown: 1h}}
  sw: {action: process.run, args: {argv: [/bin/echo, "{value}"], value_arg: "{value}"}, platform: switch,
       policy: {confirm: 20s}}
"""


def test_a_reload_keeps_cooldowns_and_running_actions(tmp_path):
    old, published = service(tmp_path, COOLING)
    old.handle("pilot/d/cmd/job/set", b"PRESS", False)
    wait_idle(old)
    new, published2 = service(tmp_path, COOLING, carry=old)
    new.handle("pilot/d/cmd/job/set", b"PRESS", False)
    assert results(published2, "job")[-1]["reason"] == "cooldown"


def test_confirmation_is_tied_to_the_value_that_armed_it(tmp_path):
    svc, published = service(tmp_path, COOLING)
    svc.handle("pilot/d/cmd/sw/set", b"OFF", False)
    time.sleep(1.1)  # unsigned replies are throttled to one a second
    svc.handle("pilot/d/cmd/sw/set", b"ON", False)
    wait_idle(svc)
    assert [r["status"] for r in results(published, "sw")] == ["armed", "armed"]
    assert not (tmp_path / "calls.jsonl").exists()


def test_unsigned_rejections_are_answered_at_most_once_a_second(tmp_path):
    svc, published = service(tmp_path, COOLING)
    for _ in range(200):
        svc.handle("pilot/d/cmd/sw/set", b"maybe", False)
    assert len(results(published, "sw")) == 1
    assert svc.stats.rejected["bad_value"] == 200


def test_signed_command_text_with_control_characters_is_malformed(tmp_path):
    ring = tmp_path / "ring"
    ring.write_text(signing.new_key_line("k1") + "\n")
    ring.chmod(0o600)
    text = COOLING.replace("commands:", "commands:\n  signed: {action: process.run, args: {argv: [/bin/true]}, "
                                        "platform: text, policy: {signed: true}}") + \
        f"policies: {{hmac: {{keyring: {ring}}}}}\n"
    svc, published = service(tmp_path, text)
    key = signing.load_keyring(ring)["k1"]
    env = signing.sign(key, "d", "pilot/d/cmd/signed/set", "ok\x1b[2J")
    svc.handle("pilot/d/cmd/signed/set", json.dumps(env).encode(), False)
    assert results(published, "signed")[-1] == {**results(published, "signed")[-1], "reason": "malformed"}


def test_a_corrupt_nonce_store_fails_closed_instead_of_crashing(tmp_path):
    log = tmp_path / "nonces.log"
    log.write_bytes(b"\xff\xfe not text\n")
    store = signing.NonceStore(log, 60)
    with pytest.raises(signing.Rejected) as info:
        store.admit("a" * 22, time.time())
    assert info.value.reason == "unavailable"


def test_a_timeout_kills_the_whole_process_group():
    started = time.monotonic()
    with pytest.raises(ActionError, match="timed out"):
        System().perform(Call("exec", argv=("/bin/sh", "-c", "sleep 30 & sleep 60"), timeout=1, capture=True))
    assert time.monotonic() - started < 10  # a grandchild holding the pipe no longer hangs it


def test_a_bad_text_pattern_is_refused_and_never_raises_at_run_time():
    from pilot.profile.validate import validate_document

    doc, _ = load_text("p.yaml", b"pilot: 1\ncommands:\n  t: {action: process.run, args: {argv: [/bin/true]}, "
                                 b"platform: text, pattern: '('}\n")
    assert any("regular expression" in d.message for d in validate_document(doc))
    command = compile_text("pilot: 1\ndevice: {id: d, name: D}\ncommands:\n  t: {action: process.run, "
                      "args: {argv: [/bin/true]}, platform: text}\n").commands[0]
    broken = type(command.entity)(**{**command.entity.__dict__, "extra": {"pattern": "("}})
    assert policy.check_value(type(command)(**{**command.__dict__, "entity": broken}), "x") == (None, "bad_value")


@pytest.mark.parametrize("text, message", [
    (b"%YAML 1.3\n---\na: 1\n", "unsupported %YAML version"),
    (b"a: " + b"1" * 5000 + b"\n", "cannot be read"),
    (b"? [a]\n: 1\n", "map keys must be plain text"),
])
def test_loader_edge_cases_are_diagnostics(text, message):
    doc, diags = load_text("t.yaml", text)
    assert doc is None and message in diags[0].message
