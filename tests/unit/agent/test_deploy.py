"""The agent's side of a signed profile deploy (pilot.agent.deployer), without a broker or a thread.

The Agent is built but never started; what it publishes is recorded. Profiles are compiled by the
compile worker's own function (pilot.profile.worker.compile_here) in this process. The wall clock
is fixed, the worker runs when the test says so, and the wait for a new MQTT session is a function
the test chooses: nothing sleeps.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pytest

from pilot.agent import deploy, signing
from pilot.agent.deployer import Deployer, redact
from pilot.agent.runtime import Agent, AgentOptions
from pilot.agent.state import StateDir
from pilot.profile.worker import compile_here

NOW = 1_800_000_000
DEVICE = "dep1"
BASE = f"pilot/{DEVICE}"


def profile(keyring: Path, extra: str = "", mqtt: str = "{host: 127.0.0.1, port: 1883}") -> str:
    return (
        "pilot: 1\n"
        f"device: {{id: {DEVICE}, name: Deploy rig}}\n"
        f"mqtt: {mqtt}\n"
        "sensors:\n"
        "  up: {probe: system.uptime, every: 30s}\n"
        f"{extra}"
        f"policies:\n  hmac: {{keyring: {keyring}, window: 60s}}\n"
    )


class Line:
    """A stand-in MQTT session for the switch tests: records what is published, connects when told."""

    def __init__(self, settings, host: str, port: int) -> None:
        self.settings, self.host, self.port = settings, host, port
        self.wire: list[tuple[str, str, int, bool]] = []
        self.started = self.stopped = False
        self.stats = type("Stats", (), {"last_error": "connection refused"})()

    def publish_result(self, topic, payload, qos=1, retain=False):
        self.wire.append((topic, payload, qos, retain))

    def publish_telemetry(self, topic, payload, retain=True):
        pass

    def start(self):
        self.started = True

    def stop(self, timeout: float = 3.0):
        self.stopped = True

    connected = False

    def alive(self):
        return self.started and not self.stopped


class Rig:
    def __init__(self, tmp: Path, *, keyring: bool = True) -> None:
        self.tmp = tmp
        self.keyring = tmp / "keyring"
        self.keyring.write_text(signing.new_key_line("k1") + "\n" + signing.new_key_line("k2") + "\n")
        self.keyring.chmod(0o600)
        self.keys = signing.load_keyring(self.keyring)
        self.folder = tmp / "profiles"
        self.folder.mkdir()
        self.path = self.folder / "device.yaml"
        self.original = profile(self.keyring).replace("policies:", "# the original\npolicies:").encode()
        if not keyring:
            self.original = self.original.replace(f"  hmac: {{keyring: {self.keyring}, window: 60s}}\n".encode(), b"")
            self.original = self.original.replace(b"policies:\n", b"")
        self.path.write_bytes(self.original)
        plan = compile_here(str(self.path)).plan
        assert plan is not None
        self.agent = Agent(plan, AgentOptions(host="127.0.0.1", port=1883, state_dir=StateDir(tmp / "state")))
        self.wire: list[tuple[str, str, int, bool]] = []
        self.agent.session.publish_result = lambda t, p, qos=1, retain=False: self.wire.append((t, p, qos, retain))
        self.agent.session.publish_telemetry = lambda t, p, retain=True: None
        self.queued: list = []
        self.waits: list[float] = []
        self.connects = True
        self.lines: list[Line] = []
        self.agent.new_session = self.new_session
        self.deployer = Deployer(
            self.agent,
            lambda path: compile_here(path),
            self.path,
            connect_deadline=7.5,
            wall=lambda: NOW,
            mono=lambda: 100.0,
            spawn=self.queued.append,
            wait_connected=self.wait,
        )
        self.agent.deployer = self.deployer

    def new_session(self, plan, host, port):
        line = Line(plan.mqtt, host, port)
        self.lines.append(line)
        return line

    def wait(self, session, timeout: float) -> bool:
        self.waits.append(timeout)
        return self.connects

    def run_queued(self) -> None:
        while self.queued:
            self.queued.pop(0)()

    def request(self, text: str, *, kid: str = "k1", ts: int = NOW, by: str | None = "ci") -> deploy.Request:
        return deploy.build_deploy(self.keys[kid], DEVICE, BASE, text, by=by, ts=ts)

    def send(self, payload: bytes, *, retained: bool = False, run: bool = True) -> None:
        self.agent._on_message(deploy.set_topic(BASE), payload, retained)
        if run:
            self.run_queued()

    def answers(self, wire=None) -> list[dict]:
        return [json.loads(p) for t, p, _, _ in (self.wire if wire is None else wire) if t == deploy.result_topic(BASE)]

    def answer(self, request: deploy.Request) -> dict:
        """The one answer that verifies for `request` (the signature checked with its key)."""
        raw = [p for t, p, _, _ in self.wire if t == deploy.result_topic(BASE)]
        good = [deploy.read_answer(p.encode(), self.keys[request.kid], DEVICE, request) for p in raw]
        good = [a for a in good if a is not None]
        assert len(good) == 1, self.wire
        return good[0]

    def states(self) -> list[dict]:
        return [json.loads(p) for t, p, _, retain in self.wire if t == f"{BASE}/deploy" and retain]

    def audit(self) -> list[dict]:
        return [json.loads(p) for t, p, _, _ in self.wire if t == f"{BASE}/audit"]

    def nonce_log(self) -> str:
        path = self.tmp / "state" / "profile-nonces.log"
        return path.read_text() if path.exists() else ""


@pytest.fixture
def rig(tmp_path):
    return Rig(tmp_path)


def with_sensor(rig: Rig) -> str:
    return profile(rig.keyring, "  load: {probe: cpu.load, every: 30s}\n")


# ------------------------------------------------------------------ applied


def test_a_signed_deploy_is_written_atomically_kept_as_previous_reloaded_and_answered_signed(rig):
    text = with_sensor(rig)
    request = rig.request(text)
    rig.send(request.payload)
    answer = rig.answer(request)
    assert answer["status"] == "ok" and answer["op"] == "set" and "reason" not in answer
    assert answer["profile_hash"] == rig.agent.plan.profile_hash
    assert rig.path.read_text() == text
    assert (rig.folder / "device.yaml.previous").read_bytes() == rig.original
    assert [s.id for s in rig.agent.plan.sensors] == ["up", "load"]
    assert rig.agent.plan.sources[0] == str(rig.path)  # named as a restart would name it, not the candidate
    assert sorted(p.name for p in rig.folder.iterdir()) == ["device.yaml", "device.yaml.previous"]  # no temp left
    assert rig.states() == [
        {
            "state": "applied",
            "reason": None,
            "profile_hash": rig.agent.plan.profile_hash,
            "sha256": deploy.text_sha256(text),
            "kid": "k1",
            "by": "ci",
            "ts": NOW,
        }
    ]
    assert rig.audit() == [
        {
            "event_type": "ok",
            "command": "_profile/set",
            "origin": "mqtt",
            "kid": "k1",
            "by": "ci",
            "sha256": deploy.text_sha256(text),
        }
    ]
    assert request.nonce in rig.nonce_log()


def test_the_same_envelope_again_is_replayed_and_changes_nothing(rig):
    request = rig.request(with_sensor(rig))
    rig.send(request.payload)
    rig.wire.clear()
    rig.path.write_bytes(rig.original)  # so a second apply would show
    rig.send(request.payload)
    answers = rig.answers()
    assert [(a["status"], a["reason"]) for a in answers] == [("rejected", "replayed")]
    assert rig.path.read_bytes() == rig.original and rig.states() == []


# ------------------------------------------------------------------ refused before anything runs


def test_an_unsigned_profile_is_malformed_and_answered_without_a_nonce(rig):
    rig.send(json.dumps({"profile": with_sensor(rig)}).encode())
    rig.send(with_sensor(rig).encode())
    assert [(a["status"], a["reason"], "nonce" in a) for a in rig.answers()] == [("rejected", "malformed", False)]
    assert rig.agent.health.inbound_dropped == 1  # the second answer inside the same second is suppressed
    assert rig.path.read_bytes() == rig.original


def test_a_key_the_device_does_not_hold_is_unauthorized_and_spends_nothing(rig, tmp_path):
    stranger = signing.Key("k1", b"\x07" * 32)
    request = deploy.build_deploy(stranger, DEVICE, BASE, with_sensor(rig), ts=NOW)
    rig.send(request.payload)
    assert [(a["status"], a["reason"], "sig" in a) for a in rig.answers()] == [("rejected", "unauthorized", False)]
    assert rig.nonce_log() == "" and rig.path.read_bytes() == rig.original


def test_an_old_envelope_is_expired(rig):
    request = rig.request(with_sensor(rig), ts=NOW - 3600)
    rig.send(request.payload)
    assert [a["reason"] for a in rig.answers()] == ["expired"] and rig.nonce_log() == ""


def test_a_text_that_is_not_the_signed_one_is_bad_hash_unsigned_and_the_nonce_stays_unspent(rig):
    text = with_sensor(rig)
    request = rig.request(text)
    swapped = json.loads(request.payload)
    swapped["profile"] = text + "# one more line\n"
    rig.send(json.dumps(swapped).encode())
    assert [(a["status"], a["reason"], "nonce" in a) for a in rig.answers()] == [("rejected", "bad_hash", False)]
    assert rig.nonce_log() == "" and rig.path.read_bytes() == rig.original and rig.states() == []
    rig.send(request.payload)  # the real one still applies
    assert rig.answer(request)["status"] == "ok"


def test_too_large_and_retained_are_refused_before_parsing(rig):
    request = rig.request(with_sensor(rig))
    rig.send(b"{" * (deploy.MAX_DEPLOY_BYTES + 1))
    rig.deployer.junk.allow = lambda: True  # one answer per case, not one a second
    rig.send(request.payload, retained=True)
    assert [a["reason"] for a in rig.answers()] == ["too_large", "retained"]
    assert rig.nonce_log() == "" and rig.path.read_bytes() == rig.original


@pytest.mark.parametrize(
    "payload",
    [
        b"\xff\xfe{}",
        b"[" * 100_000 + b"]" * 100_000,
        b'{"envelope": {}, "profile": "x"}',
        b'{"envelope": 1, "profile": "x", "extra": 2}',
        b'{"envelope": {}, "envelope": {}, "profile": "x"}',
        b'{"envelope": {}, "profile": "\\ud800"}',
        b'{"envelope": {}, "profile": NaN}',
        b"null",
    ],
    ids=["not-utf8", "deeply-nested", "empty-envelope", "extra-key", "duplicate-key", "lone-surrogate", "nan", "null"],
)
def test_hostile_shapes_are_malformed(rig, payload):
    rig.send(payload)
    assert [(a["status"], a["reason"]) for a in rig.answers()] == [("rejected", "malformed")]
    assert rig.nonce_log() == ""


def test_a_device_without_a_keyring_refuses_every_deploy_unavailable(tmp_path):
    rig = Rig(tmp_path, keyring=False)
    request = rig.request(with_sensor(rig))
    rig.send(request.payload)
    assert [(a["status"], a["reason"]) for a in rig.answers()] == [("rejected", "unavailable")]
    assert rig.path.read_bytes() == rig.original
    assert rig.agent.capabilities()["profile_file"]["deploy"] is False


def test_a_second_deploy_while_one_runs_is_busy_and_can_be_sent_again(rig):
    first, second = rig.request(with_sensor(rig)), rig.request(profile(rig.keyring, "  t: {probe: cpu.percent}\n"))
    rig.send(first.payload, run=False)
    rig.send(second.payload, run=False)
    busy = [a for a in rig.answers() if a.get("nonce") == second.nonce]
    assert [a["status"] for a in busy] == ["busy"]
    assert signing.verify_result(busy[0], rig.keys["k1"], DEVICE, second.topic, second.nonce)
    rig.send(first.payload, run=False)  # the running one, sent again: unsigned, not the sender's answer
    assert [a.get("reason") for a in rig.answers() if "nonce" not in a] == ["replayed"]
    rig.run_queued()
    assert second.nonce not in rig.nonce_log()
    rig.send(second.payload)
    assert [a["status"] for a in rig.answers() if a.get("nonce") == second.nonce] == ["busy", "ok"]


# ------------------------------------------------------------------ refused or rolled back by the work


def test_an_invalid_profile_is_refused_with_errors_named_after_the_devices_file(rig):
    text = profile(rig.keyring, "  bad: {probe: cpu.percnt, every: 30s}\n")
    request = rig.request(text)
    rig.send(request.payload)
    answer = rig.answer(request)
    assert (answer["status"], answer["reason"]) == ("rejected", "invalid_profile")
    assert answer["errors"] and all(e.startswith("device.yaml:6:") for e in answer["errors"]), answer["errors"]
    assert "cpu.percent" in answer["errors"][0]  # the validator's did-you-mean
    assert rig.path.read_bytes() == rig.original
    assert sorted(p.name for p in rig.folder.iterdir()) == ["device.yaml"]
    assert rig.states()[0]["state"] == "rejected" and rig.states()[0]["reason"] == "invalid_profile"


def test_control_characters_in_the_text_are_an_invalid_profile_not_a_crash(rig):
    request = rig.request(with_sensor(rig).replace("Deploy rig", "Deploy\x00\x1b[31m rig"))
    rig.send(request.payload)
    answer = rig.answer(request)
    assert (answer["status"], answer["reason"]) == ("rejected", "invalid_profile")
    assert all("\x1b" not in e and "\x00" not in e for e in answer["errors"])


def test_at_most_20_errors_come_back(rig):
    sensors = "".join(f"  s{i}: {{probe: nope.{i}}}\n" for i in range(30))
    request = rig.request(profile(rig.keyring, sensors))
    rig.send(request.payload)
    assert len(rig.answer(request)["errors"]) == deploy.MAX_ERRORS


def test_a_profile_whose_keyring_cannot_be_read_is_rolled_back_start_failed(rig):
    text = profile(rig.tmp / "missing-keyring", "  load: {probe: cpu.load}\n")
    request = rig.request(text)
    rig.send(request.payload)
    answer = rig.answer(request)
    assert (answer["status"], answer["reason"]) == ("rolled_back", "start_failed")
    assert "keyring" in answer["detail"]
    assert rig.path.read_bytes() == rig.original and [s.id for s in rig.agent.plan.sensors] == ["up"]


def test_a_plan_that_fails_to_start_restores_the_file_the_previous_file_and_the_plan(rig):
    (rig.folder / "device.yaml.previous").write_bytes(b"# an older one\n")
    old_plan = rig.agent.plan
    real_reload = rig.agent.reload

    def reload(plan):
        if plan is not old_plan:
            raise OSError("cannot start")
        real_reload(plan)

    rig.agent.reload = reload
    request = rig.request(with_sensor(rig))
    rig.send(request.payload)
    answer = rig.answer(request)
    assert (answer["status"], answer["reason"]) == ("rolled_back", "start_failed")
    assert rig.path.read_bytes() == rig.original
    assert (rig.folder / "device.yaml.previous").read_bytes() == b"# an older one\n"
    assert rig.agent.plan is old_plan
    assert rig.states()[0]["state"] == "rolled_back"


# ------------------------------------------------------------------ new connection settings


def test_new_mqtt_settings_that_reach_no_broker_in_time_roll_back_to_the_old_session(rig):
    old_session, old_plan = rig.agent.session, rig.agent.plan
    rig.connects = False
    request = rig.request(profile(rig.keyring, mqtt="{host: 127.0.0.1, port: 1}"))
    rig.send(request.payload)
    assert rig.waits == [7.5]  # the deadline given to the deployer
    answer = rig.answer(request)
    assert (answer["status"], answer["reason"]) == ("rolled_back", "broker_unreachable")
    assert "7.5 s" in answer["detail"] and "connection refused" in answer["detail"]
    assert rig.path.read_bytes() == rig.original and not (rig.folder / "device.yaml.previous").exists()
    assert rig.agent.session is old_session and rig.agent.plan is old_plan
    assert [(line.port, line.started, line.stopped) for line in rig.lines] == [(1, True, True)]
    assert rig.agent.options.port == 1883 and not rig.agent.switching


def test_new_mqtt_settings_on_the_same_broker_replace_the_session_and_come_back_fresh_on_failure(rig):
    rig.connects = False
    rig.agent.session.stop = lambda timeout=3.0: rig.wire.append(("stopped", "", 0, False))
    request = rig.request(profile(rig.keyring, mqtt="{host: 127.0.0.1, port: 1883, keepalive: 20}"))
    rig.send(request.payload)
    assert ("stopped", "", 0, False) in rig.wire  # one client id on one broker: the old one leaves first
    candidate, fresh = rig.lines
    assert candidate.settings.keepalive == 20 and candidate.stopped
    assert rig.agent.session is fresh and fresh.started and fresh.settings.keepalive != 20
    answer = [json.loads(p) for t, p, _, _ in fresh.wire if t == deploy.result_topic(BASE)]
    assert [(a["status"], a["reason"]) for a in answer] == [("rolled_back", "broker_unreachable")]


def test_new_mqtt_settings_that_connect_take_over_and_the_old_broker_hears_the_answer(rig):
    old_session = rig.agent.session
    old_session.stop = lambda timeout=3.0: rig.wire.append(("stopped", "", 0, False))
    request = rig.request(profile(rig.keyring, mqtt="{host: 127.0.0.2, port: 1884}"))
    rig.send(request.payload)
    (candidate,) = rig.lines
    assert rig.agent.session is candidate and (rig.agent.options.host, rig.agent.options.port) == ("127.0.0.2", 1884)
    old_answer = rig.answer(request)  # on the old session, before it closed
    assert old_answer["status"] == "ok" and rig.wire[-1] == ("stopped", "", 0, False)
    assert [a["status"] for a in rig.answers(candidate.wire)] == ["ok"]
    assert rig.path.read_text().count("1884") == 1


def test_the_old_broker_keeps_the_retained_deploy_state_on_the_devices_topic(rig):
    rig.agent.session.stop = lambda timeout=3.0: None
    request = rig.request(profile(rig.keyring, mqtt="{host: 127.0.0.2, port: 1884}"))
    rig.send(request.payload)
    told = [(json.loads(p)["state"], q, r) for t, p, q, r in rig.wire if t == f"{BASE}/deploy"]
    assert told == [("applied", 1, True)]


# ------------------------------------------------------------------ get


def test_get_answers_the_running_file_with_inline_secrets_redacted_and_signed(rig):
    secret = "hunter2-very-secret"
    text = profile(rig.keyring, "").replace(
        "sensors:",
        "commands:\n  backup: {action: process.run,\n"
        f"           args: {{argv: [/bin/true], env: {{API_TOKEN: {secret}}}}}}}\nsensors:",
    )
    rig.path.write_text(text)
    request = deploy.build_get(rig.keys["k2"], DEVICE, BASE, ts=NOW)
    rig.agent._on_message(request.topic, request.payload, False)
    rig.run_queued()
    answer = rig.answer(request)
    assert answer["status"] == "ok" and answer["name"] == "device.yaml"
    assert answer["sha256"] == deploy.text_sha256(text)
    assert secret not in answer["profile"] and "API_TOKEN: <redacted>" in answer["profile"]
    assert answer["redacted"] == ["commands.backup.args.API_TOKEN"]  # flow mappings: the keys on its lines


def test_get_refuses_a_deploy_envelope_and_an_unsigned_request(rig):
    stolen = json.loads(rig.request(with_sensor(rig)).payload)["envelope"]
    rig.agent._on_message(deploy.get_topic(BASE), json.dumps(stolen).encode(), False)  # signed for _profile/set
    rig.run_queued()
    assert [(a["status"], a["reason"], "profile" in a) for a in rig.answers()] == [("rejected", "unauthorized", False)]


def test_a_replayed_get_is_refused_and_a_retained_one_is_never_read(rig):
    request = deploy.build_get(rig.keys["k2"], DEVICE, BASE, ts=NOW)
    for _ in range(2):
        rig.agent._on_message(request.topic, request.payload, False)
        rig.run_queued()
    assert [(a["status"], a.get("reason"), "profile" in a) for a in rig.answers()] == [
        ("ok", None, True),
        ("rejected", "replayed", False),
    ]
    rig.wire.clear()
    fresh = deploy.build_get(rig.keys["k2"], DEVICE, BASE, ts=NOW)
    rig.agent._on_message(fresh.topic, fresh.payload, True)
    rig.run_queued()
    assert [(a["status"], a["reason"], "profile" in a) for a in rig.answers()] == [("rejected", "retained", False)]


def test_capabilities_name_the_running_file_and_its_hash(rig):
    caps = rig.agent.capabilities()
    assert caps["profile_file"] == {
        "sha256": hashlib.sha256(rig.original).hexdigest(),
        "name": "device.yaml",
        "deploy": True,
    }
    assert caps["profile"] == "device"  # the profile's name, as before


# ------------------------------------------------------------------ redaction alone


def test_redact_keeps_layout_and_names_each_path():
    text = (
        "mqtt:\n"
        '  password: "a,b # c"  # kept comment\n'
        "  password_file: /etc/pilot/pw\n"
        "probes:\n"
        "  api:\n"
        "    token: |\n"
        "      line one\n"
        "    other: fine\n"
    )
    shown, paths = redact(text)
    assert shown == (
        "mqtt:\n"
        "  password: <redacted>  # kept comment\n"
        "  password_file: /etc/pilot/pw\n"
        "probes:\n"
        "  api:\n"
        "    token: <redacted>\n"
        "      <redacted>\n"
        "    other: fine\n"
    )
    assert paths == ["mqtt.password", "probes.api.token"]
