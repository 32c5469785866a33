"""Signed profile deploy against a real agent (`pilot run --dry-run`) on a real Mosquitto, and
`pilot deploy` end to end: a new sensor shows up in discovery, a wrong broker port rolls back to
the old file (byte for byte) and the old connection, a profile that cannot start rolls back, and
the exit status and `--json` report say what each device did.

The agent is started without --broker: its profile names the broker, so a deployed profile's
mqtt settings really move it (and a wrong port really fails). `--deploy-deadline 3` keeps the
rollback test short; the deadline's default (20 s) is a unit test's business.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

import pytest

from pilot.agent import deploy, signing
from testkit.agent import new_keyring, pilot_env, pilot_run
from testkit.broker import Mosquitto, Watcher, free_port
from tests.support.deploy_profiles import deploy_profile
from tests.support.harness import ready_watcher

DEVICE = "deploy01"
BASE = f"pilot/{DEVICE}"


def profile_text(keyring: Path, port: int, *, sensors: str = "", name: str = "Deploy rig") -> str:
    return deploy_profile(DEVICE, name, keyring, port, sensors)


class DeployRig:
    """One agent whose profile is a file a deploy may replace, with the keyring to sign deploys."""

    def __init__(self, tmp: Path, broker: Mosquitto, watcher: Watcher) -> None:
        self.tmp, self.broker, self.watcher = tmp, broker, watcher
        self.keyring = new_keyring(tmp / "keyring")
        self.key = signing.load_keyring(self.keyring)["k1"]
        self.folder = tmp / "profiles"
        self.folder.mkdir(exist_ok=True)
        self.path = self.folder / "device.yaml"
        self.original = profile_text(self.keyring, broker.port).encode()
        self.path.write_bytes(self.original)
        self.state = tmp / "state"
        self.agent = None

    def text(self, **kwargs) -> str:
        port = kwargs.pop("port", self.broker.port)
        return profile_text(self.keyring, port, **kwargs)

    def start(self):
        since = time.monotonic()
        self.agent = pilot_run(
            self.path, None, self.state, "--dry-run", "--deploy-deadline", "3", "--log-format", "json"
        ).start()
        assert self.wait(f"{BASE}/availability", lambda m: m.payload == b"online", since, 30), self.agent.tail()
        time.sleep(0.3)  # the agent subscribes before `online`; let the broker settle
        return self.agent

    def stop(self) -> None:
        if self.agent is not None:
            self.agent.stop()

    def wait(self, topic: str, predicate=lambda m: True, since: float = 0.0, timeout: float = 30.0):
        return self.watcher.wait_for(lambda m: m.topic == topic and predicate(m), timeout=timeout, since=since)

    def publish(self, payload: bytes, *, topic: str | None = None, retain: bool = False) -> float:
        since = time.monotonic()
        self.watcher.publish(topic or deploy.set_topic(BASE), payload, retain=retain)
        return since

    def answer(self, request: deploy.Request, since: float, timeout: float = 30.0) -> dict:
        """The answer to `request` whose signature verifies with our key."""
        found = self.wait(
            deploy.result_topic(BASE),
            lambda m: deploy.read_answer(m.payload, self.key, DEVICE, request) is not None,
            since,
            timeout,
        )
        assert found is not None, f"no signed answer\n{self.agent.tail() if self.agent else ''}"
        return json.loads(found.payload)

    def unsigned_answer(self, since: float, timeout: float = 10.0) -> dict:
        found = self.wait(deploy.result_topic(BASE), lambda m: b'"nonce"' not in m.payload, since, timeout)
        assert found is not None, f"no answer\n{self.agent.tail() if self.agent else ''}"
        return json.loads(found.payload)

    def deploy(self, text: str, *, by: str | None = "tests", timeout: float = 30.0) -> dict:
        request = deploy.build_deploy(self.key, DEVICE, BASE, text, by=by)
        return self.answer(request, self.publish(request.payload), timeout)

    def get(self) -> dict:
        request = deploy.build_get(self.key, DEVICE, BASE)
        return self.answer(request, self.publish(request.payload, topic=request.topic))

    def cli(self, *args: str, timeout: float = 90.0) -> subprocess.CompletedProcess:
        return subprocess.run(
            [sys.executable, "-m", "pilot", "deploy", *args, "--state-dir", str(self.tmp / "cli-state")],
            capture_output=True,
            text=True,
            env=pilot_env(),
            timeout=timeout,
        )


@pytest.fixture
def rig(tmp_path, broker, watcher):
    r = DeployRig(tmp_path, broker, watcher)
    yield r
    r.stop()


def retained(rig: DeployRig, topic: str):
    """What the broker keeps on `topic`, as a new subscriber gets it (retain flag set)."""
    late = Watcher(rig.broker.port, topics=(topic,)).start()
    try:
        found = late.wait_for(lambda m: m.topic == topic and m.retain, timeout=10)
    finally:
        late.stop()
    assert found is not None, f"nothing retained on {topic}"
    return found


def discovered(rig: DeployRig, since: float, component: str):
    def has(m) -> bool:
        try:
            return f"{DEVICE}_{component}" in json.loads(m.payload).get("cmps", m.payload.decode())
        except (ValueError, AttributeError):
            return component in m.payload.decode(errors="replace")

    return rig.wait(f"homeassistant/device/{DEVICE}/config", has, since)


def test_pilot_deploy_adds_a_sensor_that_home_assistant_discovers_and_reports_it_applied(rig):
    rig.start()
    new = rig.folder / "next.yaml"
    text = rig.text(sensors="  load: {probe: cpu.load, every: 30s}\n")
    new.write_text(text)
    since = time.monotonic()
    done = rig.cli(str(new), "--to", DEVICE, "--keyring", str(rig.keyring), "--by", "ci-bot")
    assert done.returncode == 0, done.stdout + done.stderr + rig.agent.tail()
    assert done.stdout.startswith(f"{DEVICE}: applied (profile hash ") and done.stdout.count("\n") == 1
    assert b"load" in retained(rig, f"homeassistant/device/{DEVICE}/config").payload
    assert discovered(rig, since, "load") is not None, rig.agent.tail()
    assert rig.path.read_text() == text  # comments and all: the text, not a re-rendering
    assert (rig.folder / "device.yaml.previous").read_bytes() == rig.original
    body = json.loads(retained(rig, f"{BASE}/deploy").payload)
    assert (body["state"], body["kid"], body["by"], body["sha256"]) == (
        "applied",
        "k1",
        "ci-bot",
        deploy.text_sha256(text),
    )
    caps = rig.wait(f"{BASE}/capabilities", lambda m: b'"load"' in m.payload or b"cpu.load" in m.payload, since)
    assert json.loads(caps.payload)["profile_file"] == {
        "sha256": deploy.text_sha256(text),
        "name": "device.yaml",
        "deploy": True,
    }
    audit = rig.wait(f"{BASE}/audit", lambda m: b"_profile/set" in m.payload, since)
    assert json.loads(audit.payload)["by"] == "ci-bot"


def test_pilot_forget_empties_the_deploy_state(rig):
    rig.start()
    assert rig.deploy(rig.text(name="Renamed"))["status"] == "ok"
    retained(rig, f"{BASE}/deploy")
    rig.stop()
    done = subprocess.run(
        [sys.executable, "-m", "pilot", "forget", str(rig.path), "--state-dir", str(rig.state)],
        capture_output=True,
        text=True,
        env=pilot_env(),
        timeout=60,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert f"{BASE}/deploy" in done.stdout
    fresh = ready_watcher(rig.broker.port, topics=(f"{BASE}/deploy",))
    try:
        assert fresh.on(f"{BASE}/deploy") == []
    finally:
        fresh.stop()


def test_a_wrong_broker_port_rolls_back_to_the_old_file_and_connection_and_the_agent_still_answers(rig):
    rig.start()
    (rig.folder / "device.yaml.previous").write_bytes(b"# from an earlier deploy\n")
    wrong = rig.folder / "wrong-port.yaml"
    wrong.write_text(rig.text(port=free_port()))  # a port nothing listens on
    done = rig.cli(
        str(wrong),
        "--to",
        DEVICE,
        "--to",
        "nosuchdevice",
        "--keyring",
        str(rig.keyring),
        "--broker",
        f"127.0.0.1:{rig.broker.port}",  # the profile's own port is the wrong one
        "--timeout",
        "12",
        "--json",
    )
    assert done.returncode == 1, done.stdout + done.stderr
    report = json.loads(done.stdout)
    mine, ghost = report["devices"]
    assert (mine["status"], mine["reason"]) == ("rolled_back", "broker_unreachable"), rig.agent.tail()
    assert "3 s" in mine["detail"]
    assert (ghost["device"], ghost["status"]) == ("nosuchdevice", "no_answer")
    assert rig.path.read_bytes() == rig.original
    assert (rig.folder / "device.yaml.previous").read_bytes() == b"# from an earlier deploy\n"
    assert not [p.name for p in rig.folder.iterdir() if p.name.startswith(".")]
    state = json.loads(retained(rig, f"{BASE}/deploy").payload)
    assert (state["state"], state["reason"]) == ("rolled_back", "broker_unreachable")
    # still online on the old connection, and answering
    assert rig.agent.running()
    got = rig.get()
    assert got["status"] == "ok" and got["sha256"] == deploy.text_sha256(rig.original.decode())
    assert "t0ps3cret-value" not in got["profile"] and got["redacted"]
    assert rig.deploy(rig.text(name="Deploy rig renamed"))["status"] == "ok"  # and deploys work again


def test_a_profile_whose_keyring_cannot_be_read_rolls_back_start_failed(rig):
    rig.start()
    text = profile_text(rig.tmp / "no-such-keyring", rig.broker.port)
    answer = rig.deploy(text)
    assert (answer["status"], answer["reason"]) == ("rolled_back", "start_failed"), answer
    assert "keyring" in answer["detail"]
    assert rig.path.read_bytes() == rig.original
    assert rig.deploy(rig.text(sensors="  load: {probe: cpu.load}\n"))["status"] == "ok"


def test_new_mqtt_settings_that_connect_move_the_agent_to_a_new_session(rig, tmp_path):
    rig.start()
    since = time.monotonic()
    answer = rig.deploy(rig.text().replace("port:", "keepalive: 20, port:"))
    assert answer["status"] == "ok", rig.agent.tail()
    online = rig.wait(f"{BASE}/availability", lambda m: m.payload == b"online", since)
    assert online is not None
    time.sleep(0.5)
    assert rig.get()["status"] == "ok"  # the new session answers
    assert rig.agent.running()


def test_pilot_deploy_refuses_an_invalid_profile_locally_and_sends_nothing(rig):
    bad = rig.folder / "bad.yaml"
    bad.write_text(rig.text(sensors="  load: {probe: cpu.lod}\n"))
    since = time.monotonic()
    done = rig.cli(str(bad), "--to", DEVICE, "--keyring", str(rig.keyring))
    assert done.returncode == 1 and done.stdout == ""
    assert f"{bad}:7:" in done.stderr and "cpu.load" in done.stderr  # file:line:column, with the did-you-mean
    time.sleep(0.3)
    assert rig.watcher.on(deploy.set_topic(BASE), since=since) == []


def test_pilot_deploy_reports_a_device_without_our_key_as_no_signed_answer(rig, tmp_path):
    rig.start()
    other = new_keyring(tmp_path / "other-keyring")
    new = rig.folder / "next.yaml"
    new.write_text(rig.text(sensors="  load: {probe: cpu.load}\n"))
    done = rig.cli(str(new), "--to", DEVICE, "--keyring", str(other), "--timeout", "4")
    assert done.returncode == 1
    assert done.stdout.strip() == (
        f"{DEVICE}: no answer within 4 s (ignored 1 unsigned answer(s): rejected/unauthorized)"
    ), done.stdout
    assert rig.path.read_bytes() == rig.original
